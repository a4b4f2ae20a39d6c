"""Weight-only quantization of the model's linear layers for faster decoding on a CPU.

Decoding one token at a time is bound by how many weight bytes are read per token, not by
arithmetic. Weights kept as int8 (one scale per output row) or int4 (groups of 32, with a scale
and zero per group) are read 2x or 4x faster than bfloat16, and torch ships CPU kernels that
multiply with them directly (aten._weight_int8pack_mm, aten._weight_int4pack_mm_for_cpu).

int8 is the default: re-quantizing the GGUF's weights to int4 moved the hidden states enough to
cost mood accuracy (see bench/NOTES.md). The tied output/embedding matrix becomes int8, shared by
the embedding lookup and the output layer, which also frees the bf16 copy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

log = logging.getLogger(__name__)

GROUP = 32
# measured here: the int4 kernel wins for one row (a decode step), dense bf16 from a few rows on
DENSE_ABOVE_ROWS = 4
# int8: unpack and use the dense matmul from this many rows on (a long prompt, a batch of messages)
INT8_DEQUANT_ABOVE_ROWS = 64
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
    weight_q: torch.Tensor  # buffers, declared for the type checker
    scales: torch.Tensor
    bias: nn.Parameter | None
    file_rows: FileRows | None = None  # set where the matrix is memory-mapped (bot/model/light.py)
    def __init__(self, linear: nn.Linear | None, dtype: torch.dtype, shape: tuple[int, int, bool] | None = None) -> None:
        super().__init__()
        if linear is None:  # an empty shell for a snapshot to fill (see bot/model/snapshot.py)
            assert shape is not None
            out_f, in_f, has_bias = shape
            self.register_buffer("weight_q", torch.empty(out_f, in_f, dtype=torch.int8, device="meta"))
            self.register_buffer("scales", torch.empty(out_f, dtype=dtype, device="meta"))
            self.bias = nn.Parameter(torch.empty(out_f, dtype=dtype, device="meta"), requires_grad=False) if has_bias else None
            self.in_features, self.out_features = in_f, out_f
            return
        q, scales = _int8(linear.weight)
        self.register_buffer("weight_q", q)
        self.register_buffer("scales", scales.to(dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(dtype), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.scales.dtype)
        out = int8_linear(flat, self.weight_q, self.scales, self.act_scales()).to(self.scales.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def rows(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The int8 rows and the scales of `ids` (the embedding lookup, a few output rows)."""
        if self.file_rows is not None and ids.numel() <= FileRows.MOST:
            return self.file_rows(ids), self.scales[ids]
        return self.weight_q[ids], self.scales[ids]

    def act_scales(self) -> torch.Tensor:
        """The scales in the activation dtype of the int8 kernel (made once, not saved)."""
        cached = self.__dict__.get("_act_scales")
        if cached is None or cached.device != self.scales.device:
            cached = self.scales.to(ACT_DTYPE)
            self.__dict__["_act_scales"] = cached
        return cached


# torch's int8 weight-only kernel has a vectorized path for bfloat16 activations only: measured on an
# AVX2 CPU, float32 activations took 81 ms for the 262k x 640 output matrix and bfloat16 ones 14.5 ms.
# The model's own dtype (float32 where the CPU lacks bf16 instructions) is kept everywhere else.
ACT_DTYPE = torch.bfloat16


def int8_linear(x: torch.Tensor, weight_q: torch.Tensor, scales: torch.Tensor, act_scales: torch.Tensor) -> torch.Tensor:
    """x @ (weight_q * scales).T for 2-D x: the int8 kernel in its fast activation dtype for a few
    rows; for many rows (a long prompt, a batch) the kernel is slow, and unpacking the weight once
    for the dense matmul computes the same product faster."""
    if x.shape[0] > INT8_DEQUANT_ABOVE_ROWS:
        return nn.functional.linear(x, weight_q.to(x.dtype) * scales.to(x.dtype)[:, None])
    out: torch.Tensor = torch.ops.aten._weight_int8pack_mm(x.to(ACT_DTYPE), weight_q, act_scales)
    return out


class Int4Linear(nn.Module):
    """int4 weights for decoding; the dense weight stays for many rows at once (a prompt, a batch),
    where torch's dense matmul beats the int4 kernel."""

    weight_q: torch.Tensor
    scale_zero: torch.Tensor
    dense: torch.Tensor | None
    bias: nn.Parameter | None

    def __init__(
        self, linear: nn.Linear | None, dtype: torch.dtype, keep_dense: bool = True,
        shape: tuple[int, int, bool] | None = None,
    ) -> None:
        super().__init__()
        if linear is None:  # an empty shell for a snapshot to fill
            assert shape is not None
            n, k, has_bias = shape
            self.dense = nn.Parameter(torch.empty(n, k, dtype=dtype, device="meta"), requires_grad=False) if keep_dense else None
            self.register_buffer("weight_q", torch.empty(n, k // 2, dtype=torch.uint8, device="meta"))
            self.register_buffer("scale_zero", torch.empty(k // GROUP, n, 2, dtype=dtype, device="meta"))
            self.bias = nn.Parameter(torch.empty(n, dtype=dtype, device="meta"), requires_grad=False) if has_bias else None
            self.in_features, self.out_features = k, n
            return
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
        out: torch.Tensor = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight_q, GROUP, self.scale_zero)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class FileRows:
    """Rows of a memory-mapped int8 matrix read from its file with pread, not through the mapping.

    The output matrix doubles as the input embedding, so any token's row may be looked up. Through
    the mapping, each lookup makes the page-cache folio around the row resident in this process:
    4 KB where the file came in page by page, but up to 2 MB where the kernel holds it in large
    folios (a freshly written snapshot on ext4 here). Reading 94 rows that way made 144 MB resident.
    pread copies just the row; the mapping stays untouched."""

    MOST = 4096  # more rows at once (building a shortlist, first start only) go through the mapping

    def __init__(self, fd: int, offset: int, width: int, count: int) -> None:
        self.fd, self.offset, self.width, self.count = fd, offset, width, count

    @classmethod
    def of(cls, tensor: torch.Tensor) -> FileRows | None:
        """A reader for `tensor` if it lies whole in one file mapping of this process (Linux), else None."""
        if tensor.dtype != torch.int8 or tensor.dim() != 2 or not tensor.is_contiguous():
            return None
        address, size = tensor.data_ptr(), tensor.numel()
        try:
            with open("/proc/self/maps", encoding="utf-8") as maps:
                for line in maps:
                    fields = line.split(maxsplit=5)
                    low, high = (int(x, 16) for x in fields[0].split("-"))
                    if not low <= address < high:
                        continue
                    if len(fields) < 6 or address + size > high or fields[5].rstrip().endswith("(deleted)"):
                        return None
                    fd = os.open(fields[5].rstrip("\n"), os.O_RDONLY)
                    if os.fstat(fd).st_ino != int(fields[4]):  # the file was replaced since it was mapped
                        os.close(fd)
                        return None
                    return cls(fd, address - low + int(fields[2], 16), tensor.shape[1], tensor.shape[0])
        except (OSError, ValueError):
            return None
        return None

    def __copy__(self) -> FileRows:
        return self  # one owner of the descriptor: a copy closing it would leave the original reading a reused number

    def __deepcopy__(self, memo: dict[int, Any]) -> FileRows:
        return self

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        flat = [int(i) for i in ids.reshape(-1)]
        if flat and not 0 <= min(flat) <= max(flat) < self.count:  # as indexing would, not other bytes of the file
            raise IndexError(f"row ids outside 0..{self.count - 1}")
        if not flat:
            return torch.empty(*ids.shape, self.width, dtype=torch.int8)
        data = b"".join(os.pread(self.fd, self.width, self.offset + i * self.width) for i in flat)
        if len(data) != len(flat) * self.width:
            raise OSError("short read from the serving snapshot")
        return torch.frombuffer(bytearray(data), dtype=torch.int8).view(*ids.shape, self.width)


class Int8Embedding(nn.Module):
    """An embedding lookup over the int8 output matrix (the two are tied), scaled as the model's was."""

    def __init__(self, head: Int8Linear, embed_scale: float | None) -> None:
        super().__init__()
        self.head = head
        self.embed_scale = embed_scale

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        q, scales = self.head.rows(ids)
        rows = q.to(scales.dtype) * scales.unsqueeze(-1)
        if self.embed_scale is not None:
            rows = rows * self.embed_scale
        return rows


def _kernel_works(mode: Mode, dtype: torch.dtype) -> bool:
    try:
        probe = nn.Linear(64, 32, bias=False).to(dtype)
        layer = Int4Linear(probe, dtype) if mode == "int4" else Int8Linear(probe, dtype)
        x = torch.randn(2, 64, dtype=dtype)
        return bool(torch.allclose(layer(x).float(), probe(x).float(), atol=0.5, rtol=0.2))
    except (RuntimeError, NotImplementedError):
        return False


@dataclass(frozen=True)
class Swap:
    """One module the quantization replaced: where, with what, and its shape."""

    path: str
    kind: Literal["int8", "int4", "int4+dense", "embed"]
    out_features: int = 0
    in_features: int = 0
    bias: bool = False


@dataclass
class Plan:
    """What `quantize` did, so that a snapshot can rebuild the same modules empty and fill them."""

    swaps: list[Swap] = field(default_factory=list)
    embed_scale: float | None = None  # the tied embedding's scale (Gemma multiplies by sqrt(hidden))

    def __bool__(self) -> bool:
        return bool(self.swaps)

    def to_data(self) -> dict[str, Any]:
        """Plain lists and numbers: a snapshot is loaded with torch.load(weights_only=True)."""
        return {"swaps": [[s.path, s.kind, s.out_features, s.in_features, s.bias] for s in self.swaps],
                "embed_scale": self.embed_scale}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Plan:
        swaps = [Swap(str(p), k, int(o), int(i), bool(b)) for p, k, o, i, b in data["swaps"]]
        scale = data.get("embed_scale")
        return cls(swaps, None if scale is None else float(scale))


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def quantize(model: nn.Module, mode: Mode, keep_dense: bool = False) -> tuple[str, Plan]:
    """Swap the decoder's linear layers (and the tied output matrix) for quantized ones, in place.

    Returns what was done, for the log, and the plan of swapped modules (a snapshot replays it).
    Falls back to the dense model where the kernels are missing.
    """
    plan = Plan()
    if mode == "none":
        return "dense weights", plan
    dtype = next(model.parameters()).dtype
    if dtype not in (torch.bfloat16, torch.float32) or not _kernel_works(mode, dtype) or not _kernel_works("int8", dtype):
        log.warning("weight-only %s kernels are not available here; keeping dense weights", mode)
        return "dense weights (quantized kernels unavailable)", plan
    body: nn.Module = model.get_decoder() if hasattr(model, "get_decoder") else model.model  # type: ignore[operator,assignment]
    prefix = next(name for name, module in model.named_modules() if module is body)
    for name, child in list(body.named_modules()):
        if isinstance(child, nn.Linear) and child.in_features % GROUP == 0 and child.out_features % 16 == 0:
            replacement = Int4Linear(child, dtype, keep_dense) if mode == "int4" else Int8Linear(child, dtype)
            path = f"{prefix}.{name}"
            _set(model, path, replacement)
            kind = "int4+dense" if mode == "int4" and keep_dense else mode
            plan.swaps.append(Swap(path, kind, child.out_features, child.in_features, child.bias is not None))
    if mode == "int8":
        _store_siblings_together(body)
    head = model.get_output_embeddings()  # type: ignore[operator]
    if isinstance(head, nn.Linear):
        embeddings = model.get_input_embeddings()  # type: ignore[operator]
        tied = embeddings.weight.data_ptr() == head.weight.data_ptr()
        quantized_head = Int8Linear(head, dtype)
        model.lm_head = quantized_head
        plan.swaps.append(Swap("lm_head", "int8", head.out_features, head.in_features, head.bias is not None))
        if tied:  # one int8 copy serves the lookup and the output layer; the dense copy is freed
            scale = getattr(embeddings, "embed_scale", None)
            scale_value = float(scale) if scale is not None else None
            body.embed_tokens = Int8Embedding(quantized_head, scale_value)
            plan.swaps.append(Swap(f"{prefix}.embed_tokens", "embed"))
            plan.embed_scale = scale_value
    layout = f"groups of {GROUP}" if mode == "int4" else "one scale per row"
    dense = ", dense copy for prompts" if mode == "int4" and keep_dense else ""
    return f"weight-only {mode} ({layout}){dense}, output matrix int8", plan


# linear layers that read the same input: their int8 rows are stored back to back, so that one
# matmul can serve them all (bot/model/fast.py) without a second copy of the weights
SIBLINGS = (("self_attn", ("q_proj", "k_proj", "v_proj")), ("mlp", ("gate_proj", "up_proj")))


def store_together(modules: list[Int8Linear]) -> None:
    """Give several int8 layers one storage for their rows and one for their scales (views, no copy kept)."""
    q = torch.cat([m.weight_q for m in modules])
    scales = torch.cat([m.scales for m in modules])
    start = 0
    for m in modules:
        end = start + m.out_features
        m.weight_q, m.scales = q[start:end], scales[start:end]
        m.__dict__.pop("_act_scales", None)
        start = end


def stored_together(modules: list[Int8Linear]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The rows and scales of `modules` as single tensors when they already lie back to back in one
    storage (a snapshot keeps that layout), else None."""
    out = []
    for name in ("weight_q", "scales"):
        parts = [getattr(m, name) for m in modules]
        first = parts[0]
        offset = first.storage_offset()
        for part in parts:
            if part.untyped_storage().data_ptr() != first.untyped_storage().data_ptr() or \
                    part.storage_offset() != offset or not part.is_contiguous():
                return None
            offset += part.numel()
        rows = sum(p.shape[0] for p in parts)
        out.append(first.new_empty(0).set_(first.untyped_storage(), first.storage_offset(),
                                           (rows, *first.shape[1:]), first.stride()))
    return out[0], out[1]


def _store_siblings_together(body: nn.Module) -> None:
    for layer in getattr(body, "layers", []):
        for parent_name, names in SIBLINGS:
            parent = getattr(layer, parent_name, None)
            modules = [getattr(parent, n, None) for n in names]
            if all(isinstance(m, Int8Linear) for m in modules):
                store_together(modules)  # type: ignore[arg-type]


def apply_plan(model: nn.Module, plan: Plan, dtype: torch.dtype) -> None:
    """Replay a quantization plan with empty modules, for a snapshot's state dict to fill."""
    for swap in plan.swaps:
        shape = (swap.out_features, swap.in_features, swap.bias)
        if swap.kind in ("int4", "int4+dense"):
            _set(model, swap.path, Int4Linear(None, dtype, keep_dense=swap.kind == "int4+dense", shape=shape))
        elif swap.kind == "int8":
            _set(model, swap.path, Int8Linear(None, dtype, shape=shape))
    for swap in plan.swaps:  # after the output layer exists: the embedding shares its int8 rows
        if swap.kind == "embed":
            _set(model, swap.path, Int8Embedding(model.get_submodule("lm_head"), plan.embed_scale))  # type: ignore[arg-type]
