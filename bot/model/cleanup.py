"""`python -m bot cache`: what the model cache folder holds, and removing what no config uses.

A start builds what its configuration needs under `model.cache_dir` (the assembled GGUF, its
conversion, the adapter merged in, the serving snapshot and the files derived from it) and never
removes anything: another bot may share the folder with another adapter, and a start that deleted
its files would make that bot rebuild them (or remove a build in progress). So each new adapter or
checkpoint leaves about 0.8 GB behind until the operator prunes, naming every config that shares
the folder. Only the model's own folders are pruned; the llama.cpp wheel and wechaty's state stay.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.model import native
from bot.model.loader import locate

MODEL_FOLDERS = ("gguf", "converted", "merged", "serving", "prefix", "kernels")
PARTIAL = re.compile(r"\.tmp(\d+)$")  # bot/model/cache.py writes beside the final name, then renames


@dataclass
class Entry:
    path: Path
    size: int
    state: str  # "in use", "building", "unused" or "other" (not the model's: never pruned)


@dataclass
class Keep:
    exact: set[Path]
    stems: set[str]  # serving snapshots: every file named after one (tokenizer, shortlist, prompt caches)

    def holds(self, path: Path) -> bool:
        if path in self.exact:
            return True
        folder, name = path.parent.name, path.name
        if folder == "serving":
            return any(name.startswith(stem + ".") for stem in self.stems)
        if folder == "prefix":
            return any(name.startswith(stem + "-") for stem in self.stems)
        return False


def in_use(configs: list[Settings], cache_dir: Path) -> Keep:
    """The cache entries the configs' models are served from; configs of a model server or of another
    folder add nothing.

    Raises ModelNotFoundError or EngineError where a config's model cannot be located, so that a
    typo in a config never turns into removing what it uses."""
    keep = Keep(set(), set())
    for settings in configs:
        if settings.model.backend != "local" or Path(settings.model.cache_dir).expanduser() != cache_dir:
            continue  # a model server's config serves nothing from this folder
        where = locate(settings.model, assemble=False)
        keep.exact |= {where.source, where.source.with_name(where.source.name + ".verified"), where.weights, where.served}
        keep.stems.add(where.serving(cache_dir).stem)
    try:
        keep.exact.add(native.library_path(cache_dir))
    except OSError:  # an installation without the kernel source builds none
        pass
    return keep


def survey(cache_dir: Path, keep: Keep) -> list[Entry]:
    if not cache_dir.is_dir():
        return []
    entries = []
    for folder in sorted(cache_dir.iterdir()):
        if folder.name not in MODEL_FOLDERS or not folder.is_dir():
            entries.append(Entry(folder, _size(folder), "other"))
            continue
        for path in sorted(folder.iterdir()):
            entries.append(Entry(path, _size(path), _state(path, keep)))
    return entries


def _state(path: Path, keep: Keep) -> str:
    partial = PARTIAL.search(path.name)
    if partial:
        return "building" if _alive(int(partial.group(1))) else "unused"  # a crashed build's leftover
    return "in use" if keep.holds(path) else "unused"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, but another user's
        return True
    return True


def _size(path: Path) -> int:
    try:
        if path.is_file() or path.is_symlink():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def remove(entry: Entry) -> str | None:
    """Remove one unused entry; the reason it could not be, or None."""
    try:
        if entry.path.is_dir() and not entry.path.is_symlink():
            shutil.rmtree(entry.path)
        else:
            entry.path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return str(exc)
    return None


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
