"""`python -m bot cache`: what the model cache folder holds, and removing what no config uses.

A start builds what its configuration needs under `model.cache_dir` (the assembled GGUF, its
conversion, the adapter merged in, the serving snapshot and the files derived from it) and never
removes anything: another bot may share the folder with another adapter, and a start that deleted
its files would make that bot rebuild them (or remove a build in progress). So each new adapter or
checkpoint leaves about 0.8 GB behind until the operator prunes, naming every config that shares
the folder. Only the model's own folders are pruned; the llama.cpp wheel and wechaty's state stay,
and so do the assembled embedded GGUF (a llama.cpp server may be serving that very file to bots
whose config names only the server) and the compiled kernels (a few kB, keyed by another
installation's source).

What is kept is what the named configs use under this installation: a bot of another torch or
moodbot version sharing the folder names its snapshot differently and rebuilds it after a prune.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.model.loader import locate

MODEL_FOLDERS = ("gguf", "converted", "merged", "serving", "prefix", "kernels")
PARTIAL = re.compile(r"\.tmp(\d+)$")  # bot/model/cache.py writes beside the final name, then renames
# a partial file of a process this machine cannot see (another container or host on a shared
# folder) counts as a build in progress while it is this recent; a conversion takes minutes
BUILD_HOURS = 6


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
        if folder in ("gguf", "kernels"):
            return True
        if folder == "serving":
            return any(name.startswith(stem + ".") for stem in self.stems)
        if folder == "prefix":
            return any(name.startswith(stem + "-") for stem in self.stems)
        return False


def folder_of(settings: Settings) -> Path:
    return Path(settings.model.cache_dir).expanduser().resolve()


def serves_here(settings: Settings, cache_dir: Path) -> bool:
    """Whether the config's bot serves a local model from `cache_dir` (a model server's does not)."""
    return settings.model.backend == "local" and folder_of(settings) == cache_dir.resolve()


def in_use(configs: list[Settings], cache_dir: Path) -> Keep:
    """The cache entries the configs' local models are served from.

    Raises ModelNotFoundError or EngineError where a config's model cannot be located, so that a
    typo in a config never turns into removing what it uses."""
    keep = Keep(set(), set())
    for settings in configs:
        if not serves_here(settings, cache_dir):
            continue
        where = locate(settings.model, assemble=False)
        keep.exact |= {where.weights, where.served}
        keep.stems.add(where.serving(cache_dir).stem)
    keep.exact = {path.expanduser().resolve() for path in keep.exact}
    return keep


def survey(cache_dir: Path, keep: Keep) -> list[Entry]:
    """Every entry of the folder with its state. Raises OSError where the folder cannot be read."""
    cache_dir = cache_dir.resolve()
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
        # a leftover of a build that crashed, unless its process is alive or it was written lately
        recent = time.time() - path.lstat().st_mtime < BUILD_HOURS * 3600
        return "building" if recent or _alive(int(partial.group(1))) else "unused"
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
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} GB"
