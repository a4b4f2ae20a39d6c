"""A serving snapshot: the model exactly as it serves (quantized), saved once and memory-mapped back.

A warm start then skips from_pretrained's weight conversion and the quantization pass: it builds
the model's skeleton on the meta device, replays the quantization plan with empty modules and
assigns the saved tensors (torch.load with mmap, so nothing is copied up front).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from bot.model.cache import save_file
from bot.model.quant import Plan, apply_plan

log = logging.getLogger(__name__)

FORMAT = 5  # 5: sibling int8 layers (q/k/v, gate/up) stored back to back; 4: the plan is typed


def snapshot_path(cache_dir: Path, weights: Path, dtype: torch.dtype, mode: str) -> Path:
    config = weights / "config.json"
    stamp = f"{config.stat().st_mtime_ns}" if config.exists() else "?"
    raw = f"{weights.resolve()}|{stamp}|{dtype}|{mode}|{torch.__version__}|{FORMAT}"
    return cache_dir / "serving" / f"{weights.name}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}.pt"


def save(model: Any, plan: Plan, description: str, path: Path) -> None:
    state = model.state_dict()
    # buffers that state_dict leaves out (rotary frequencies and the like) are saved too
    extra = {name: buf for name, buf in model.named_buffers() if name not in state}
    payload = {"plan": plan.to_data(), "description": description, "state": state, "extra": extra}
    try:
        save_file(path, lambda partial: torch.save(payload, partial))
    except OSError as exc:
        log.warning("could not save the serving snapshot %s (%s); the next start quantizes again", path, exc)


def load(path: Path, weights: Path, dtype: torch.dtype) -> tuple[Any, str]:
    from transformers import AutoConfig, AutoModelForCausalLM

    data = torch.load(path, mmap=True, weights_only=True)
    config = AutoConfig.from_pretrained(str(weights), local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)  # type: ignore[no-untyped-call]
    apply_plan(model, Plan.from_data(data["plan"]), dtype)
    model.load_state_dict(data["state"], assign=True, strict=True)
    for name, value in data["extra"].items():
        owner, _, attr = name.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        module._buffers[attr] = value
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise ValueError(f"snapshot {path.name} left tensors unset: {leftover[:5]}")
    model.eval()
    return model, str(data["description"])
