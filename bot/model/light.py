"""The served Gemma 3 model without transformers' modeling code: a warm start in a third of the time.

Building the model's skeleton through transformers imports its modeling stack (torch._dynamo,
torch.distributed, sympy: about 3.5 s and 100 MB here) only to hold the snapshot's tensors. The
fast path (bot/model/fast.py) and the mood scorer read a few attributes of it: the config, the
layers' int8 linears and norm weights, the embedding, the final norm and the output layer. This
module puts the snapshot's tensors (memory-mapped, nothing copied) behind exactly those
attributes. It is used only for what it knows: a gemma3_text snapshot quantized to int8 and
served on the fast path; anything else is loaded through transformers (bot/model/snapshot.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from bot.model.quant import FileRows, Int8Embedding, Int8Linear, Plan

log = logging.getLogger(__name__)

KIND = "gemma3_text"
LINEARS = {"self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")


class GemmaNorm(nn.Module):
    """Gemma's RMSNorm, as transformers computes it: in float32, scaled by (1 + weight)."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = x.float()
        hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps)
        return (hidden * (1.0 + self.weight.float())).type_as(x)


class LightGemma:
    """The attributes of a transformers Gemma3ForCausalLM that the fast path and the scorer read."""

    def __init__(self, config: SimpleNamespace, body: SimpleNamespace, lm_head: Int8Linear, dtype: torch.dtype) -> None:
        self.config = config
        self.body = body
        self.lm_head = lm_head
        self.dtype = dtype

    def get_decoder(self) -> SimpleNamespace:
        return self.body

    def get_output_embeddings(self) -> Int8Linear:
        return self.lm_head


def _int8(state: dict[str, torch.Tensor], path: str) -> Int8Linear:
    q, scales = state[f"{path}.weight_q"], state[f"{path}.scales"]
    module = Int8Linear(None, scales.dtype, shape=(q.shape[0], q.shape[1], False))
    module.weight_q, module.scales = q, scales  # the snapshot's (memory-mapped) tensors, not copies
    return module


def _fits(config: dict[str, Any], plan: Plan, state: dict[str, torch.Tensor], extra: dict[str, Any]) -> str | None:
    """Why this snapshot cannot be served without transformers, or None when it can."""
    if config.get("model_type") != KIND or config.get("num_key_value_heads") != 1:
        return f"model type {config.get('model_type')} with {config.get('num_key_value_heads')} key/value heads"
    if any(swap.kind not in ("int8", "embed") for swap in plan.swaps):
        return "not an int8 snapshot"
    if any(name.endswith(".bias") for name in state):
        return "linear layers with biases"
    if not any(swap.kind == "embed" for swap in plan.swaps):
        return "an input embedding of its own"
    if not any(name.startswith("model.rotary_emb.") and name.endswith("inv_freq") for name in extra):
        return "no rotary frequencies"
    expected = {f"model.layers.{i}.{part}.{name}.weight_q" for i in range(int(config["num_hidden_layers"]))
                for part, names in LINEARS.items() for name in names} | {"lm_head.weight_q"}
    missing = expected - state.keys()
    return f"{len(missing)} int8 weights missing" if missing else None


def load(path: Path, weights: Path, dtype: torch.dtype) -> tuple[LightGemma, str] | None:
    """The snapshot at `path` behind LightGemma, or None when it is not one this module serves."""
    config = json.loads((weights / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != KIND:  # decided before the snapshot is read, which transformers reads again
        log.debug("serving snapshot %s goes through transformers: model type %s", path.name, config.get("model_type"))
        return None
    data = torch.load(path, mmap=True, weights_only=True)
    plan, state, extra = Plan.from_data(data["plan"]), data["state"], data["extra"]
    why = _fits(config, plan, state, extra)
    if why:
        log.debug("serving snapshot %s goes through transformers: %s", path.name, why)
        return None
    eps = float(config["rms_norm_eps"])
    lm_head = _int8(state, "lm_head")
    # the embedding's lookups read rows from the file, so the mapping of this 168 MB matrix stays
    # untouched outside the output shortlist's own copy (bot/model/quant.py FileRows)
    lm_head.file_rows = FileRows.of(lm_head.weight_q)
    layers = []
    for i in range(int(config["num_hidden_layers"])):
        prefix = f"model.layers.{i}"
        parts = {part: SimpleNamespace(**{name: _int8(state, f"{prefix}.{part}.{name}") for name in names})
                 for part, names in LINEARS.items()}
        for name in ("q_norm", "k_norm"):
            setattr(parts["self_attn"], name, GemmaNorm(state[f"{prefix}.self_attn.{name}.weight"], eps))
        norms = {name: GemmaNorm(state[f"{prefix}.{name}.weight"], eps) for name in NORMS}
        layers.append(SimpleNamespace(**parts, **norms))
    rotary = SimpleNamespace(**{name.rpartition(".")[2]: value for name, value in extra.items()
                                if name.startswith("model.rotary_emb.")})
    body = SimpleNamespace(
        embed_tokens=Int8Embedding(lm_head, plan.embed_scale),
        layers=layers,
        norm=GemmaNorm(state["model.norm.weight"], eps),
        rotary_emb=rotary,
    )
    return LightGemma(SimpleNamespace(**config), body, lm_head, dtype), str(data["description"])
