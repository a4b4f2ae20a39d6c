"""The decode step in C (bot/model/kernels.c), compiled once per machine and loaded with ctypes.

A decode step of the 270M model through torch is about a thousand small ops, and torch's int8
kernel reads weights at a third of the memory bandwidth (bench/NOTES.md). The C step runs every
layer in one call. It needs an x86-64 CPU with AVX2 and FMA and a C compiler (`$CC`, gcc or cc);
without either the torch path serves, as before, and the log says why once.

The library is built into the cache folder, named by a digest of the source and the flags, so a
changed kernel is rebuilt and a warm start only loads it (a few milliseconds). Built with gcc, it
needs libgomp.so.1, which torch's Linux wheels ship and load first under that very name, so both
share one thread pool. A second OpenMP runtime in the process (clang's libomp, Intel's libiomp5)
would still work, with two pools competing for the cores; the log says so when it happens.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from bot.model.cache import save_file

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno")
HEAD_DIM_LIMIT = 512  # kernels.c keeps one head in a stack array of this size


class Layer(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in (
        "qkv", "o", "gate_up", "down", "qkv_s", "o_s", "gate_up_s", "down_s",
        "norm_in", "norm_qk", "norm_post_attn", "norm_pre_ff", "norm_post_ff", "k", "v")] + [("sliding", ctypes.c_int)]


class Dims(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("hidden", "heads", "head_dim", "inter", "window", "threads")] + \
        [("eps", ctypes.c_float)]


def _cpu_ok() -> str | None:
    """Why this CPU cannot run the kernels, or None."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"a {platform.machine()} CPU"
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return "no /proc/cpuinfo to check for AVX2"
    missing = [flag for flag in ("avx2", "fma") if flag not in flags.split()]
    return f"a CPU without {', '.join(missing)}" if missing else None


def _build(target: Path) -> str | None:
    """Compile the kernels to `target`; why not, or None."""
    # gcc first: its -fopenmp links libgomp, the runtime torch has loaded (see the module doc)
    compiler = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if compiler is None:
        return "no C compiler: neither $CC, gcc nor cc"

    def write(partial: Path) -> None:
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(partial), "-lm"],
                       check=True, capture_output=True, text=True, timeout=120)

    try:
        save_file(target, write)
    except subprocess.CalledProcessError as exc:
        return f"the compiler failed: {exc.stderr.strip()[-400:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not compile: {exc}"
    return None


_loaded: dict[Path, ctypes.CDLL] = {}


def _open(target: Path) -> ctypes.CDLL:
    import torch  # noqa: F401  (its libgomp.so.1 must be loaded first, so that the kernels share it)

    lib = ctypes.CDLL(str(target))
    lib.mb_forward.restype = ctypes.c_int
    lib.mb_forward.argtypes = [ctypes.POINTER(Layer), ctypes.c_int, ctypes.POINTER(Dims), ctypes.c_void_p, ctypes.c_int,
                               ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    lib.mb_scratch_floats.restype = ctypes.c_long
    lib.mb_scratch_floats.argtypes = [ctypes.POINTER(Dims), ctypes.c_int, ctypes.c_int]
    lib.mb_matvec.restype = None
    lib.mb_matvec.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_long, ctypes.c_int, ctypes.c_int]
    lib.mb_matmat.restype = None
    lib.mb_matmat.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int, ctypes.c_long, ctypes.c_int, ctypes.c_int]
    runtimes = _openmp_runtimes()
    if len(runtimes) > 1:
        log.info("two OpenMP runtimes loaded (%s): the decode kernels' threads and torch's may compete for the cores",
                 ", ".join(sorted(runtimes)))
    return lib


def _openmp_runtimes() -> set[str]:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return set()
    return set(re.findall(r"(/\S*/lib(?:gomp|iomp5|omp)[^/\s]*\.so[.\d]*)$", maps, re.MULTILINE))


def library_path(cache_dir: Path) -> Path:
    """Where the kernels of this source and these flags are built."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:12]
    return cache_dir / "kernels" / f"decode-{key}.so"


def load(cache_dir: Path) -> ctypes.CDLL | None:
    """The compiled kernels (built on first use), or None with the reason logged."""
    why = _cpu_ok()
    target: Path | None = None
    if why is None:
        try:
            target = library_path(cache_dir)
        except OSError as exc:  # an installation without the source
            why = f"no kernel source ({exc})"
    if why is None and target is not None:
        if target in _loaded:
            return _loaded[target]
        built = False
        for _ in range(2):
            if not target.exists():
                log.info("compiling the decode kernels (once per machine)")
                why = _build(target)
                if why is not None:
                    break
                built = True
            try:
                _loaded[target] = _open(target)
                return _loaded[target]
            except (OSError, AttributeError) as exc:
                why = f"could not load {target.name}: {exc}"
                if built:  # a fresh build that does not load (a noexec cache folder...): not again
                    break
                target.unlink(missing_ok=True)  # a damaged file from before: built again once
    log.info("decode kernels not used (%s): decoding with torch's kernels", why)
    return None
