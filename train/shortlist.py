"""Build the output shortlist: the tokens a Chinese or English reply can use (bot/model/vocab.py).

    pip install wordfreq==3.1.1   # build time only (code Apache-2.0, word lists CC-BY-SA 4.0)
    python -m train.shortlist     # writes bot/vocab/<model>.json.gz

Kept: every token of the most frequent English words (as written and capitalized, each also after a space) and
Chinese words in wordfreq's lists; every token made only of CJK characters, CJK or general
punctuation, digits or emoji; the byte-fallback and control tokens; every token of the project's
reply training data. The shortlist depends on the tokenizer only, so it is keyed by a digest of
the tokenizer's pieces and refused for any other tokenizer.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any, Iterable

from bot.model.vocab import VOCAB_DIR, tokenizer_digest

ROOT = Path(__file__).resolve().parent.parent
REPLY_FILES = [ROOT / "train" / "data" / "replies.jsonl"]


def _cjk_or_symbols(piece: str) -> bool:
    def ok(c: str) -> bool:
        o = ord(c)
        return (c.isdigit() and o < 128) or c in " \n\t" or 0x2000 <= o <= 0x206F or 0x3000 <= o <= 0x303F \
            or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xFF00 <= o <= 0xFFEF \
            or 0x1F300 <= o <= 0x1FAFF or 0x2600 <= o <= 0x27BF or 0xFE00 <= o <= 0xFE0F or o == 0x200D \
            or (o < 128 and not c.isalpha())
    text = piece.replace("\u2581", " ")
    return bool(text) and all(ok(c) for c in text)


def _tokens_of(tokenizer: Any, texts: Iterable[str]) -> set[int]:
    batch: list[str] = []
    found: set[int] = set()
    for text in texts:
        batch.append(text)
        if len(batch) == 5000:
            for row in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                found.update(row)
            batch = []
    if batch:
        for row in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            found.update(row)
    return found


def build(tokenizer: Any, english: int, chinese: int) -> list[int]:
    from wordfreq import top_n_list

    keep: set[int] = set()
    words = top_n_list("en", english)
    keep |= _tokens_of(tokenizer, (form for w in words for form in (" " + w, w, " " + w.capitalize(), w.capitalize())))
    keep |= _tokens_of(tokenizer, top_n_list("zh", chinese))
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    for index, piece in enumerate(pieces):
        if piece is None:
            continue
        special = piece.startswith("<") and piece.endswith(">") and index < 1000  # control and byte tokens
        if special or (len(piece) == 1 and ord(piece) < 128) or _cjk_or_symbols(piece):
            keep.add(index)
    for path in REPLY_FILES:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        keep |= _tokens_of(tokenizer, (r["reply"] for r in rows))
    return sorted(keep)


def _runs(ids: list[int]) -> list[list[int]]:
    """[start, length] runs: a compact, readable form of a sorted id list."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return runs


def main(argv: list[str] | None = None) -> int:
    from bot.config import load_settings
    from bot.model.loader import load_model

    parser = argparse.ArgumentParser(prog="python -m train.shortlist", description=__doc__.splitlines()[0])
    parser.add_argument("--english", type=int, default=30000, help="most frequent English words (default 30000)")
    parser.add_argument("--chinese", type=int, default=100000, help="most frequent Chinese words (default 100000)")
    args = parser.parse_args(argv)
    loaded = load_model(load_settings(None).model)
    tokenizer = loaded.tokenizer
    ids = build(tokenizer, args.english, args.chinese)
    digest = tokenizer_digest(tokenizer)
    VOCAB_DIR.mkdir(parents=True, exist_ok=True)
    path = VOCAB_DIR / f"{digest}.json.gz"
    payload = {"tokenizer": digest, "vocab_size": len(tokenizer), "english_words": args.english,
               "chinese_words": args.chinese, "count": len(ids), "runs": _runs(ids)}
    with gzip.open(path, "wt", encoding="utf-8") as out:
        json.dump(payload, out)
    print(f"{len(ids)} of {len(tokenizer)} tokens -> {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
