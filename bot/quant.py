"""Weight-only quantization of the model's linear layers for faster decoding on a CPU.

Decoding one token at a time is bound by how many weight bytes are read per token, not by
arithmetic. Weights kept as int4 (groups of 32, with a scale and zero per group) or int8 (one
scale per output row) are read 4x or 2x faster than bfloat16, and torch ships CPU kernels that
multiply with them directly (aten._weight_int4pack_mm_for_cpu, aten._weight_int8pack_mm).

The embedded model's GGUF stores most weights as Q4_K: 4-bit values on an affine grid per block
of 32, so int4 groups of 32 hold them almost exactly. The tied output/embedding matrix becomes
int8, shared by the embedding lookup and the output layer, which also frees the bf16 copy.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

log = logging.getLogger(__name__)

GROUP = 32
# measured here: the int4 kernel wins for one row (a decode step), dense bf16 from a few rows on
DENSE_ABOVE_ROWS = 4
Mode = Literal["none", "int8", "int4"]


def _int8(weight: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    # row chunks: a float32 copy of the whole 262k-row output matrix alone would be 670 MB
    q = torch.empty(weight.shape, dtype=torch.int8)
    scales = torch.empty(weight.shape[0], dtype=torch.float32)
    for start in range(0, weight.shape[0], chunk):
        w = weight[start : start + chunk].detach().float()
        s = (w.abs().amax(dim=1) / 127).clamp(min=1e-8)
        q[start : start + chunk] = (w / s[:, None]).round().clamp(-128, 127).to(torch.int8)
        scales[start : start + chunk] = s
    return q, scales


class Int8Linear(nn.Module):
    def __init__(self, linear: nn.Linear, dtype: torch.dtype) -> None:
        super().__init__()
        q, scales = _int8(linear.weight)
        self.register_buffer("weight_q", q)
        self.register_buffer("scales", scales.to(dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(dtype), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.scales.dtype)
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight_q, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class Int4Linear(nn.Module):
    """int4 weights for decoding; the dense weight stays for many rows at once (a prompt, a batch),
    where torch's dense matmul beats the int4 kernel."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, keep_dense: bool = True) -> None:
        super().__init__()
        self.dense = linear.weight if keep_dense else None
        n, k = linear.weight.shape
        w = linear.weight.detach().float().reshape(n, k // GROUP, GROUP)
        low, high = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-8)
        q = ((w - low) / scale).round().clamp(0, 15).to(torch.int32).reshape(n, k)
        # the kernel computes (q - 8) * scale + zero, so zero sits at the grid's midpoint
        zero = low + 8 * scale
        scale_zero = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], dim=-1).transpose(0, 1).contiguous()
        self.register_buffer("weight_q", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        self.register_buffer("scale_zero", scale_zero.to(dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(dtype), requires_grad=False)
        self.in_features, self.out_features = k, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.scale_zero.dtype)
        if self.dense is not None and flat.shape[0] > DENSE_ABOVE_ROWS:
            return nn.functional.linear(x, self.dense, self.bias)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight_q, GROUP, self.scale_zero)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class Int8Embedding(nn.Module):
    """An embedding lookup over the int8 output matrix (the two are tied), scaled as the model's was."""

    def __init__(self, head: Int8Linear, original: nn.Module) -> None:
        super().__init__()
        self.head = head
        self.embed_scale = getattr(original, "embed_scale", None)
        self.padding_idx = getattr(original, "padding_idx", None)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.head.weight_q[ids].to(self.head.scales.dtype) * self.head.scales[ids].unsqueeze(-1)
        if self.embed_scale is not None:
            rows = rows * self.embed_scale.to(rows.dtype)
        return rows


def _kernel_works(mode: Mode, dtype: torch.dtype) -> bool:
    try:
        probe = nn.Linear(64, 32, bias=False).to(dtype)
        layer = Int4Linear(probe, dtype) if mode == "int4" else Int8Linear(probe, dtype)
        x = torch.randn(2, 64, dtype=dtype)
        return bool(torch.allclose(layer(x).float(), probe(x).float(), atol=0.5, rtol=0.2))
    except (RuntimeError, NotImplementedError):
        return False


def quantize(model: nn.Module, mode: Mode) -> str:
    """Swap the decoder's linear layers (and the tied output matrix) for quantized ones, in place.

    Returns what was done, for the log. Falls back to the dense model where the kernels are missing.
    """
    if mode == "none":
        return "dense weights"
    dtype = next(model.parameters()).dtype
    if dtype not in (torch.bfloat16, torch.float32) or not _kernel_works(mode, dtype) or not _kernel_works("int8", dtype):
        log.warning("weight-only %s kernels are not available here; keeping dense weights", mode)
        return "dense weights (quantized kernels unavailable)"
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    for name, module in list(body.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child.in_features % GROUP == 0 and child.out_features % 16 == 0:
                replacement = Int4Linear(child, dtype) if mode == "int4" else Int8Linear(child, dtype)
                setattr(module, child_name, replacement)
    head = model.get_output_embeddings()
    if isinstance(head, nn.Linear):
        quantized_head = Int8Linear(head, dtype)
        model.lm_head = quantized_head
        embeddings = model.get_input_embeddings()
        if embeddings.weight.data_ptr() == head.weight.data_ptr():
            body.embed_tokens = Int8Embedding(quantized_head, embeddings)  # tied: one int8 copy serves both
    return f"weight-only {mode} (groups of {GROUP}), output matrix int8"
