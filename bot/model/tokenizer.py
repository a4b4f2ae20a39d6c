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
import logging
from pathlib import Path
from typing import Any

from bot.model.cache import older_than, save_file

log = logging.getLogger(__name__)

KINDS = ("gemma3_text",)


class RawTokenizer:
    """The part of a transformers tokenizer that the bot calls, over a `tokenizers.Tokenizer`."""

    chat_template = None

    def __init__(self, backend: Any, special: dict[str, str]) -> None:
        self.backend = backend
        self.bos_token: str | None = special.get("bos_token")
        self.eos_token: str | None = special.get("eos_token")
        self.unk_token: str | None = special.get("unk_token")
        self.pad_token: str | None = special.get("pad_token")
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
            # transformers rebuilds the post-processor from these flags; the Rust tokenizer follows
            # tokenizer.json alone, which adds <bos> and no <eos> for the checked models
            and tok_config.get("add_bos_token", True) is True
            and tok_config.get("add_eos_token", False) is False
        )

    @classmethod
    def load(cls, directory: Path, compact: Path | None = None) -> "RawTokenizer":
        """The tokenizer of the checkpoint at `directory`; with `compact`, from a copy of its
        tokenizer.json kept there (written on first use) that the Rust side reads faster."""
        from tokenizers import Tokenizer  # the Rust library that transformers' fast tokenizers wrap

        tok_config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        special = {k: text for k, v in tok_config.items() if k.endswith("_token") and (text := _content(v)) is not None}
        source = directory / "tokenizer.json"
        backend = _read_compact(source, compact) if compact is not None else None
        return cls(Tokenizer.from_file(str(source)) if backend is None else backend, special)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def __call__(self, text: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        if isinstance(text, list):  # a batch, as train/shortlist.py passes it
            found = self.backend.encode_batch(text, add_special_tokens=add_special_tokens)
            return {"input_ids": [list(e.ids) for e in found]}
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


def _content(value: Any) -> str | None:
    """A special token as tokenizer_config.json names it: a string, or {"content": ..., ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_compact(source: Path, compact: Path) -> Any:
    """The tokenizer from its compact copy, written first where missing or damaged; None on failure."""
    from tokenizers import Tokenizer

    if compact.exists() and older_than(compact, [source]):  # tokenizer.json replaced in place
        log.info("tokenizer.json is newer than its compact copy; writing the copy again")
        compact.unlink(missing_ok=True)
    for _ in range(2):  # a damaged copy is written again once
        if not compact.exists():
            try:
                save_file(compact, lambda partial: write_compact(source, partial))
            except (OSError, ValueError) as exc:
                log.info("compact tokenizer not written (%s)", exc)
                return None
        try:
            return Tokenizer.from_file(str(compact))
        except Exception as exc:  # the Rust side raises a bare Exception for a bad file
            log.warning("compact tokenizer %s unusable (%s); writing it again", compact.name, exc)
            compact.unlink(missing_ok=True)
    return None


def write_compact(source: Path, target: Path) -> None:
    """`source` rewritten for a faster load, the same tokenizer: BPE merges as "a b" strings rather
    than pairs (the Rust loader reads 515k strings faster than 515k two-element lists: 0.9 s
    against 1.2 s here) and no indentation. A merge whose parts hold a space keeps the pair form."""
    data = json.loads(source.read_text(encoding="utf-8"))
    merges = data.get("model", {}).get("merges")
    if isinstance(merges, list) and all(isinstance(m, list) and len(m) == 2 for m in merges):
        if not any(" " in part for m in merges for part in m):
            data["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    target.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
