"""The output shortlist: the token ids that Chinese and English replies use (built by train/shortlist.py).

Gemma's 262k-token vocabulary serves 140 languages; the bot answers in two. Reading only the
shortlist's rows of the output matrix cuts the largest weight read of a decode step. The list is
tied to the tokenizer by a digest of its pieces, and refused for any other tokenizer.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

VOCAB_DIR = Path(__file__).resolve().parent.parent / "vocab"


def tokenizer_digest(tokenizer: Any) -> str:
    """Names a tokenizer by its size and a sample of its pieces (cheap enough for every start)."""
    size = len(tokenizer)
    sample = tokenizer.convert_ids_to_tokens(list(range(0, size, max(1, size // 4096))))
    raw = json.dumps([size, sample], ensure_ascii=False).encode()
    return f"v{size}-{hashlib.sha256(raw).hexdigest()[:12]}"


def shortlist_file(tokenizer: Any) -> Path | None:
    """The shipped shortlist file for this tokenizer, or None (the full vocabulary is used)."""
    path = VOCAB_DIR / f"{tokenizer_digest(tokenizer)}.json.gz"
    return path if path.exists() else None


def read_shortlist(path: Path, vocab_size: int) -> torch.Tensor | None:
    """The ids a shortlist file holds, or None when they do not fit a vocabulary of `vocab_size`."""
    with gzip.open(path, "rt", encoding="utf-8") as src:
        data = json.load(src)
    runs = torch.tensor(data["runs"], dtype=torch.long)
    starts, lengths = runs[:, 0], runs[:, 1]
    # every run expanded at once (a loop over 50k runs took half a second of the start-up)
    run_starts = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    ids = torch.repeat_interleave(starts, lengths) + torch.arange(int(lengths.sum())) - run_starts
    if int(ids.max()) >= vocab_size:
        log.warning("the output shortlist %s does not fit this tokenizer; using the full vocabulary", path.name)
        return None
    return ids


def shortlist(tokenizer: Any) -> torch.Tensor | None:
    """The shipped shortlist's ids for this tokenizer, or None (the full vocabulary is used)."""
    path = shortlist_file(tokenizer)
    return None if path is None else read_shortlist(path, len(tokenizer))
