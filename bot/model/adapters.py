"""The LoRA adapter the embedded model was fine-tuned with, merged into the weights once.

The adapter (peft's format: adapter_config.json + adapter_model.safetensors) ships in
bot/adapters/. At start-up it is merged into a dense copy of the checkpoint, which is saved under
the cache folder and then quantized and snapshotted like any checkpoint: still one model, and
start-up and decoding cost the same as without an adapter.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import torch

from bot.errors import EngineError
from bot.model.cache import save_checkpoint

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "adapters"  # package data: bot/adapters/
EMBEDDED_ADAPTER = SHIPPED_DIR / "gemma3-270m-moodbot"
WEIGHTS_FILE = "adapter_model.safetensors"


def resolve(choice: str, embedded: bool) -> Path | None:
    """The adapter folder for `model.adapter`: auto (the shipped one, embedded model only), none, or a path."""
    if choice == "none":
        return None
    if choice == "auto":
        # a checkpoint named by model.path is served as it is unless its own adapter is configured
        return EMBEDDED_ADAPTER if embedded and (EMBEDDED_ADAPTER / WEIGHTS_FILE).exists() else None
    path = Path(choice).expanduser()
    if not (path / WEIGHTS_FILE).exists() or not (path / "adapter_config.json").exists():
        raise EngineError(f"model.adapter {path} is not a LoRA adapter folder (adapter_config.json + {WEIGHTS_FILE})")
    return path


def digest(adapter: Path) -> str:
    """Names the adapter's exact weights: part of every cache key and head fingerprint derived from it."""
    h = hashlib.sha256()
    for name in ("adapter_config.json", WEIGHTS_FILE):
        h.update((adapter / name).read_bytes())
    return h.hexdigest()[:12]


def merged_path(weights: Path, adapter_digest: str, cache_dir: Path) -> Path:
    return cache_dir / "merged" / f"{weights.name}+{adapter_digest}"


def merged_checkpoint(weights: Path, adapter: Path, dtype: torch.dtype, cache_dir: Path) -> Path:
    """A dense checkpoint with the adapter merged in, built once under `cache_dir`."""
    return merge_into(merged_path(weights, digest(adapter), cache_dir), weights, adapter, dtype)


def merge_into(target: Path, weights: Path, adapter: Path, dtype: torch.dtype) -> Path:
    """The merged checkpoint at `target` (merged_path's name), built there unless it already is."""
    if (target / "config.json").exists():
        return target
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bot.model.loader import quiet_transformers  # loader imports this module

    quiet_transformers()
    log.info("merging the adapter %s into %s once", adapter.name, weights.name)
    # merge in float32: the LoRA product is small next to the weights and would round away in bf16
    base = AutoModelForCausalLM.from_pretrained(str(weights), dtype=torch.float32, local_files_only=True)
    with warnings.catch_warnings():
        # peft asks transformers a deprecated question while loading; the console is for the conversation
        warnings.filterwarnings("ignore", category=FutureWarning)
        merged = PeftModel.from_pretrained(base, str(adapter), is_trainable=False).merge_and_unload().to(dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(weights), local_files_only=True)

    save_checkpoint(target, merged, tokenizer, "merged")
    return target
