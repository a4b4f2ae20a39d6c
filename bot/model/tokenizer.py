"""The served Gemma tokenizer on the `tokenizers` library alone, without transformers.

Loading Gemma's tokenizer through transformers imports its tokenizer stack and builds Python-side
tables over the 262k pieces: measured here, a third of the warm start and about 200 MB that the
Rust tokenizer underneath does not need. The bot uses a handful of that API (encode, decode,
token/id lookups and the special tokens), so this class gives exactly that over the same
tokenizer.json. It is used only for the model type it was checked against (tests compare it with
transformers' tokenizer on the real model); any other checkpoint keeps AutoTokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KINDS = ("gemma3_text",)
ROLES = ("bos", "eos", "unk", "pad")


class RawTokenizer:
    """The part of a transformers tokenizer that the bot calls, over a `tokenizers.Tokenizer`."""

    chat_template = None

    def __init__(self, backend: Any, special: dict[str, str]) -> None:
        self.backend = backend
        self._special = {role: special.get(f"{role}_token") for role in ROLES}
        # every added token marked special (turn markers, <unusedN>): none is text a reply may copy.
        # transformers lists only the five named ones, which the output shortlist holds anyway.
        self.all_special_ids = sorted(i for i, t in backend.get_added_tokens_decoder().items() if t.special)

    @staticmethod
    def serves(directory: Path) -> bool:
        """Whether the checkpoint at `directory` is one this class serves: a checked model type with
        a tokenizer.json and no chat template (a template needs transformers' jinja rendering)."""
        try:
            config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
            tok_config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (
            config.get("model_type") in KINDS
            and (directory / "tokenizer.json").exists()
            and "chat_template" not in tok_config
            and not (directory / "chat_template.jinja").exists()
        )

    @classmethod
    def load(cls, directory: Path) -> "RawTokenizer":
        from tokenizers import Tokenizer  # the Rust library that transformers' fast tokenizers wrap

        tok_config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        special = {k: v for k, v in tok_config.items() if k.endswith("_token") and isinstance(v, str)}
        return cls(Tokenizer.from_file(str(directory / "tokenizer.json")), special)

    def _id(self, role: str) -> int | None:
        token = self._special[role]
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_token(self) -> str | None:
        return self._special["bos"]

    @property
    def eos_token(self) -> str | None:
        return self._special["eos"]

    @property
    def pad_token(self) -> str | None:
        return self._special["pad"]

    @pad_token.setter
    def pad_token(self, token: str | None) -> None:
        self._special["pad"] = token

    @property
    def unk_token(self) -> str | None:
        return self._special["unk"]

    @property
    def bos_token_id(self) -> int | None:
        return self._id("bos")

    @property
    def eos_token_id(self) -> int | None:
        return self._id("eos")

    @property
    def unk_token_id(self) -> int | None:
        return self._id("unk")

    @property
    def pad_token_id(self) -> int | None:
        return self._id("pad")

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        return str(self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens))

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str | None]:
        return [self.backend.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, token: str) -> int | None:
        found = self.backend.token_to_id(token)
        return self.unk_token_id if found is None else int(found)
