"""The one way cached model files and folders are written: whole or not at all.

Converted checkpoints, merged checkpoints, serving snapshots, prompt-prefix caches and the
tokenizer copy are written beside their final name and renamed into place, so a crash or a full
disk mid-write never leaves a half file that a later start would trust.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from bot.errors import EngineError


def older_than(copy: Path, sources: list[Path]) -> bool:
    """Whether a cached `copy` was written before one of the `sources` it was made from (a file
    replaced in place, which keeps the name the copy is filed under). Missing files count as not."""
    try:
        stamp = copy.stat().st_mtime_ns
        return any(source.stat().st_mtime_ns > stamp for source in sources if source.exists())
    except OSError:
        return False


def save_file(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(partial)` for a temporary name beside `path`, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        write(partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def save_dir(path: Path, fill: Callable[[Path], None]) -> None:
    """Call `fill(partial)` for a temporary folder beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        fill(partial)
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def save_checkpoint(path: Path, model: Any, tokenizer: Any, what: str) -> None:
    """A transformers model and its tokenizer saved as one folder, whole or not at all."""

    def fill(partial: Path) -> None:
        model.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))

    try:
        save_dir(path, fill)
    except OSError as exc:
        raise EngineError(f"could not save the {what} model to {path}: {exc}") from exc
