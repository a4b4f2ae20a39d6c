"""A forward pass and decode loop of our own for the Gemma 3 text models, batch of one.

transformers' `generate()` spends much of a decode step of this small model in Python: module
calls, mask building, cache bookkeeping and logits processors (measured on a 2-core AVX2 machine:
45 ms a token, where the int8 weight reads take about 15). This module runs the same arithmetic
with a few plain tensor operations per layer (about 25 ms a token there, bench/SPEED.md):

- q/k/v and gate/up are fused into one int8 matrix each (the modules' buffers become views of
  the fused matrices, so no weight is stored twice);
- a key/value cache of fixed size per call, written in place, no per-step allocation of a
  cache object; the prefix of a fixed prompt is reused by copying its rows;
- greedy decoding over the output shortlist (bot/model/vocab.py), with the repetition penalty
  applied to the tokens seen as transformers applies it (the reply's own, or the prompt's too), so
  no reply needs transformers' generate().

It is used only for models it knows (model_type gemma3_text with int8 linear layers); anything
else keeps the transformers path. `tests/test_fast.py` checks it against transformers.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import logging
import math
import pickle
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from bot.errors import EngineTimeout
from bot.model import native, vocab
from bot.model.cache import save_file
from bot.model.quant import ACT_DTYPE, Int8Linear, int8_linear, store_together, stored_together

log = logging.getLogger(__name__)
KIND = "gemma3_text"
# prompts up to this many tokens run in C; longer ones through torch, whose dense matmul on the
# unpacked weights wins from about there (measured: 124 against 229 ms for 65 tokens, 275 against
# 284 for 128, 595 against 509 for 256)
NATIVE_ROWS = 128


@dataclass
class _Int8:
    """One (possibly fused) int8 weight: rows, per-row scales, and the scales for the int8 kernel."""

    q: torch.Tensor
    scales: torch.Tensor
    act: torch.Tensor

    @classmethod
    def of(cls, q: torch.Tensor, scales: torch.Tensor) -> _Int8:
        return cls(q, scales, scales.to(ACT_DTYPE))

    def __call__(self, x: torch.Tensor, lib: ctypes.CDLL | None = None) -> torch.Tensor:
        """x @ (q * scales).T; `lib`: one row (the output shortlist's) through the C kernels."""
        if lib is None or x.shape[0] != 1 or not self.q.is_contiguous():
            return int8_linear(x, self.q, self.scales, self.act).float()
        if x.dim() != 2 or x.shape[1] != self.q.shape[1]:  # C would read past the row
            raise ValueError(f"input of shape {tuple(x.shape)} for a {tuple(self.q.shape)} matrix")
        x = x.float().contiguous()
        out, scratch = torch.empty(1, self.q.shape[0]), torch.empty(x.shape)
        lib.mb_matvec(self.q.data_ptr(), self.act_f32.data_ptr(), x.data_ptr(), scratch.data_ptr(), out.data_ptr(),
                      self.q.shape[0], self.q.shape[1], torch.get_num_threads())
        return out

    @cached_property
    def act_f32(self) -> torch.Tensor:
        """The kernel's bfloat16 scales as float32, for the C kernels."""
        return self.act.float().contiguous()


def _fuse(modules: Sequence[Int8Linear]) -> _Int8:
    """One int8 matrix for several linear layers that read the same input.

    quantize() stores such layers back to back and the serving snapshot keeps that, so this is
    usually a view; otherwise the rows are copied together once and the modules keep views."""
    together = stored_together(list(modules))
    if together is None:
        store_together(list(modules))
        together = stored_together(list(modules))
        assert together is not None
    return _Int8.of(*together)


@dataclass
class _Layer:
    qkv: _Int8
    o: _Int8
    gate_up: _Int8
    down: _Int8
    norm_in: torch.Tensor  # each (1 + weight), as Gemma's RMSNorm applies it
    norm_qk: torch.Tensor  # (heads + 1, head_dim): q's norm for each query head (the attention scale folded in), k's
    norm_post_attn: torch.Tensor
    norm_pre_ff: torch.Tensor
    norm_post_ff: torch.Tensor
    sliding: bool


class KV:
    """Keys and values of one sequence for every layer, written in place."""

    def __init__(self, layers: int, length: int, head_dim: int) -> None:
        self.k = torch.zeros(layers, length, head_dim)
        self.v = torch.zeros(layers, length, head_dim)
        self.used = 0
        self.native: tuple[Any, Any] | None = None  # (runner, its C layer table for this cache): _native_layers

    def extended(self, extra: int) -> KV:
        """A copy with room for `extra` more tokens (a cached prefix, reused by one call)."""
        new = KV(self.k.shape[0], self.used + extra, self.k.shape[2])
        new.k[:, : self.used] = self.k[:, : self.used]
        new.v[:, : self.used] = self.v[:, : self.used]
        new.used = self.used
        return new


def supported(model: Any) -> bool:
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != KIND or getattr(config, "num_key_value_heads", 0) != 1:
        return False
    body = model.get_decoder()
    return isinstance(model.get_output_embeddings(), Int8Linear) and \
        all(isinstance(getattr(layer.self_attn, name), Int8Linear)
               for layer in body.layers for name in ("q_proj", "k_proj", "v_proj", "o_proj")) and \
        all(isinstance(getattr(layer.mlp, name), Int8Linear) for layer in body.layers
            for name in ("gate_proj", "up_proj", "down_proj"))


class FastGemma:
    """The model's arithmetic, one sequence at a time, on its own weights (see the module doc)."""

    def __init__(self, model: Any, max_positions: int = 4096) -> None:
        config = model.config
        body = model.get_decoder()
        self.embed = body.embed_tokens
        self.final_norm = 1.0 + body.norm.weight.detach().float()
        self.eps = float(config.rms_norm_eps)
        self.heads = int(config.num_attention_heads)
        self.head_dim = int(config.head_dim)
        self.window = int(config.sliding_window)
        self.scaling = float(config.query_pre_attn_scalar) ** -0.5
        self.layers: list[_Layer] = []

        def weight(norm: Any) -> torch.Tensor:
            result: torch.Tensor = 1.0 + norm.weight.detach().float()
            return result

        for index, layer in enumerate(body.layers):
            attn, mlp = layer.self_attn, layer.mlp
            norm_qk = torch.stack([weight(attn.q_norm) * self.scaling] * self.heads + [weight(attn.k_norm)])
            self.layers.append(_Layer(
                qkv=_fuse([attn.q_proj, attn.k_proj, attn.v_proj]),
                o=_fuse([attn.o_proj]),
                gate_up=_fuse([mlp.gate_proj, mlp.up_proj]),
                down=_fuse([mlp.down_proj]),
                norm_in=weight(layer.input_layernorm),
                norm_qk=norm_qk,
                norm_post_attn=weight(layer.post_attention_layernorm),
                norm_pre_ff=weight(layer.pre_feedforward_layernorm),
                norm_post_ff=weight(layer.post_feedforward_layernorm),
                sliding=config.layer_types[index] == "sliding_attention",
            ))
        self.q_width = self.heads * self.head_dim
        self.inter = int(config.intermediate_size)
        self.inv_freq = {kind == "sliding_attention": getattr(body.rotary_emb, f"{kind}_inv_freq").float()
                         for kind in ("sliding_attention", "full_attention") if kind in config.layer_types}
        self.limit = int(config.max_position_embeddings)
        self.rope: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        self._grow_rope(max_positions)
        self.native: ctypes.CDLL | None = None

    def use_native(self, lib: ctypes.CDLL | None) -> None:
        """Decode steps through the C kernels of `lib` (bot/model/native.py); None: torch's."""
        if lib is not None and self.head_dim > native.HEAD_DIM_LIMIT:
            log.info("decode kernels not used: head_dim %d over %d", self.head_dim, native.HEAD_DIM_LIMIT)
            lib = None
        self.native = lib
        if lib is None:
            return
        self._dims = native.Dims(hidden=self.final_norm.numel(), heads=self.heads, head_dim=self.head_dim,
                                 inter=self.inter, window=self.window, threads=1, eps=self.eps)
        self._keep: list[torch.Tensor] = []  # what the C layer table points into

        def ptr(t: torch.Tensor) -> int:
            t = t.contiguous()
            self._keep.append(t)
            return t.data_ptr()

        self._template = []
        for layer in self.layers:
            self._template.append(dict(
                qkv=ptr(layer.qkv.q), o=ptr(layer.o.q), gate_up=ptr(layer.gate_up.q), down=ptr(layer.down.q),
                qkv_s=ptr(layer.qkv.act_f32), o_s=ptr(layer.o.act_f32), gate_up_s=ptr(layer.gate_up.act_f32),
                down_s=ptr(layer.down.act_f32), norm_in=ptr(layer.norm_in), norm_qk=ptr(layer.norm_qk),
                norm_post_attn=ptr(layer.norm_post_attn), norm_pre_ff=ptr(layer.norm_pre_ff),
                norm_post_ff=ptr(layer.norm_post_ff), sliding=int(layer.sliding)))

    def _native_layers(self, kv: KV) -> Any:
        """The C layer table for `kv`, made once per cache for this runner's weights."""
        if kv.native is None or kv.native[0] is not self._template:
            table = (native.Layer * len(self.layers))()
            for index, fields in enumerate(self._template):
                table[index] = native.Layer(k=kv.k[index].data_ptr(), v=kv.v[index].data_ptr(), **fields)
            kv.native = (self._template, table)
        return kv.native[1]

    def _native_forward(self, ids: Sequence[int], kv: KV, layers: int,
                        collect: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """forward() in C (bot/model/kernels.c): every layer of these tokens in one call."""
        assert self.native is not None
        start, count = kv.used, len(ids)
        x = self.embed(torch.tensor(list(ids))).float().contiguous()
        self._dims.threads = torch.get_num_threads()
        scratch = torch.empty(self.native.mb_scratch_floats(ctypes.byref(self._dims), count, start + count))
        outs = {index: torch.empty(count, x.shape[1]) for index in collect}
        targets = (ctypes.c_void_p * layers)(*[outs[i].data_ptr() if i in outs else None for i in range(layers)])
        # a model may have only one kind of layer: the other kind's tables are then never read
        local = self.rope.get(True) or self.rope[False]
        (cos_l, sin_l), (cos_g, sin_g) = local, self.rope.get(False) or local
        if self.native.mb_forward(self._native_layers(kv), layers, ctypes.byref(self._dims), x.data_ptr(), count, start,
                                  cos_l.data_ptr(), sin_l.data_ptr(), cos_g.data_ptr(), sin_g.data_ptr(), targets,
                                  scratch.data_ptr()) != 0:
            raise ValueError(f"the decode kernels refused {count} tokens of head_dim {self.head_dim}")
        kv.used = start + count
        return self._norm(x[-1:], self.final_norm), [outs[i] for i in collect]

    def _grow_rope(self, positions: int) -> None:
        """cos and sin tables for the first `positions` positions (grown when a longer text comes)."""
        steps = torch.arange(positions, dtype=torch.float32)
        for sliding, inv_freq in self.inv_freq.items():
            freqs = steps[:, None] * inv_freq[None, :]
            # rotate_half(x) * sin == x.roll(half) * [-sin, sin]: one roll instead of a split and a cat
            self.rope[sliding] = (torch.cat([freqs, freqs], -1).cos(), torch.cat([-freqs.sin(), freqs.sin()], -1))
        self.max_positions = positions

    def new_kv(self, length: int) -> KV:
        return KV(len(self.layers), length, self.head_dim)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        return nn.functional.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def forward(self, ids: Sequence[int], kv: KV, layers: int | None = None,
                collect: Sequence[int] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run `ids` after the `kv.used` tokens already in the cache.

        Returns the normed last hidden state of the last token (after `layers` layers when given)
        and, for each index in `collect`, the raw output of that layer (0-based) at every new token.
        """
        count = len(ids)
        start = kv.used
        if start + count > kv.k.shape[1] or start + count > self.limit:
            raise ValueError(f"{start + count} tokens do not fit the cache of {kv.k.shape[1]} (model limit {self.limit})")
        if start + count > self.max_positions:
            self._grow_rope(max(start + count, 2 * self.max_positions))
        if self.native is not None and count <= NATIVE_ROWS:
            todo_count = len(self.layers) if layers is None else min(layers, len(self.layers))
            if any(not 0 <= index < todo_count for index in collect):
                raise KeyError(f"layers {list(collect)} are not all among the {todo_count} run")
            return self._native_forward(ids, kv, todo_count, collect)
        x = self.embed(torch.tensor(ids)).float()
        positions = slice(start, start + count)
        mask: dict[bool, torch.Tensor | None] = {True: None, False: None}
        if count > 1:
            query = torch.arange(start, start + count)[:, None]
            key = torch.arange(start + count)[None, :]
            mask[False] = key > query
            mask[True] = (key > query) | (key <= query - self.window)
        rope = {sliding: (cos[positions, None, :], sin[positions, None, :]) for sliding, (cos, sin) in self.rope.items()}
        half = self.head_dim // 2
        qk_width = self.q_width + self.head_dim
        collected: dict[int, torch.Tensor] = {}
        todo = self.layers if layers is None else self.layers[:layers]
        for index, layer in enumerate(todo):
            qkv = layer.qkv(self._norm(x, layer.norm_in))
            # q and k (one kv head) normed together per head, then rotated together
            qk = self._norm(qkv[:, :qk_width].view(count, self.heads + 1, self.head_dim), None) * layer.norm_qk
            cos, sin = rope[layer.sliding]
            qk = torch.addcmul(qk * cos, qk.roll(half, -1), sin)
            kv.k[index, positions] = qk[:, self.heads]
            kv.v[index, positions] = qkv[:, qk_width:]
            low = max(0, start + count - self.window) if layer.sliding and count == 1 else 0
            keys, values = kv.k[index, low : start + count], kv.v[index, low : start + count]
            scores = (qk[:, : self.heads].reshape(count * self.heads, self.head_dim) @ keys.T).view(count, self.heads, -1)
            if mask[layer.sliding] is not None:
                scores = scores.masked_fill(mask[layer.sliding][:, None, :], -math.inf)  # type: ignore[index]
            attn = torch.softmax(scores, dim=-1).view(count * self.heads, -1) @ values
            x = x + self._norm(layer.o(attn.view(count, self.q_width)), layer.norm_post_attn)
            gate_up = layer.gate_up(self._norm(x, layer.norm_pre_ff))
            mixed = nn.functional.gelu(gate_up[:, : self.inter], approximate="tanh") * gate_up[:, self.inter :]
            x = x + self._norm(layer.down(mixed), layer.norm_post_ff)
            if index in collect:
                collected[index] = x
        kv.used = start + count
        return self._norm(x[-1:], self.final_norm), [collected[i] for i in collect]


class Shortlist:
    """The output layer restricted to the tokens the served languages use (bot/model/vocab.py).

    The full embedding stays for input; only the output rows are trimmed, and ids map back to the
    full vocabulary. Measured on the reply validation prompts: see bench/NOTES.md."""

    def __init__(self, head: Int8Linear, ids: torch.Tensor | None,
                 rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.head = head
        self.vocab = head.out_features
        self.ids = torch.arange(self.vocab) if ids is None else ids.long()
        self.extra: _Int8 | None = None  # rows added for one prompt (with_tokens, on the base shortlist)
        if len(self.ids) == self.vocab:
            self.rows = _Int8(head.weight_q, head.scales, head.act_scales())
        else:  # the kept rows (about a third of the matrix), contiguous for the kernel
            self.rows = _Int8.of(*(rows or (head.weight_q[self.ids].contiguous(), head.scales[self.ids])))
        # token id -> its row in the shortlist, or -1: the repetition penalty works in shortlist space
        self.row_of = torch.full((self.vocab,), -1, dtype=torch.long)
        self.row_of[self.ids] = torch.arange(len(self.ids))

    @classmethod
    def cached(cls, head: Int8Linear, source: Path, folder: Path, key: str) -> Shortlist:
        """The shortlist of the file `source` (bot/model/vocab.py), its ids and rows kept in a file
        under `folder` and memory-mapped back.

        Gathering the rows reads every page of the memory-mapped 262k-row output matrix, and those
        pages then stay resident (168 MB) although only the input embedding's few rows are used
        again. From the file, a warm start never touches the rest of the matrix, nor expands the
        shortlist file's runs again."""
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
        path = folder / f"{key}.shortlist-{digest}.pt"
        if path.exists():
            try:
                data = torch.load(path, mmap=True, weights_only=True)
                if _same_rows(head, data):
                    return cls(head, data["ids"], (data["q"], data["scales"]))
                log.warning("output shortlist cache %s is for other weights; rebuilding it", path.name)
            except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, pickle.UnpicklingError) as exc:
                log.warning("output shortlist cache %s unusable (%s); rebuilding it", path.name, exc)
        ids = vocab.read_shortlist(source, head.out_features)
        if ids is None:
            return cls(head, None)
        q, scales = head.weight_q[ids].contiguous(), head.scales[ids].contiguous()
        try:
            save_file(path, lambda partial: torch.save({"ids": ids, "q": q, "scales": scales}, partial))
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            log.info("output shortlist not cached (%s)", exc)
        else:  # this snapshot's caches for other shortlist files (60 MB each) are not read again
            for stale in folder.glob(f"{key}.shortlist-*.pt"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        return cls(head, ids, (q, scales))

    def with_tokens(self, tokens: Sequence[int]) -> Shortlist:
        """This shortlist plus those of `tokens` it lacks, for one call: a reply can always copy a
        word of the message ("ICU" in a Chinese message, a rare name) at the cost of a few rows."""
        given = torch.tensor(list(tokens), dtype=torch.long)
        extra = torch.unique(given[self.row_of[given] < 0])
        if not len(extra):
            return self
        out = copy.copy(self)
        out.ids = torch.cat([self.ids, extra])
        out.row_of = self.row_of.clone()
        out.row_of[extra] = torch.arange(len(self.ids), len(out.ids))
        out.extra = _Int8.of(*self.head.rows(extra))
        return out

    def logits(self, h: torch.Tensor, lib: ctypes.CDLL | None = None) -> torch.Tensor:
        """The shortlist's logits for one position (row i is token ids[i]); `lib`: through the C kernels."""
        result: torch.Tensor = self.rows(h, lib)[0]
        if self.extra is not None:
            result = torch.cat([result, self.extra(h, lib)[0]])
        return result


def _same_rows(head: Int8Linear, data: dict[str, torch.Tensor]) -> bool:
    """Whether cached shortlist rows are those of `head`: every scale and a sample of the rows
    compared (the sample reads a few pages of the output matrix, not all of them)."""
    ids, q, scales = data["ids"], data["q"], data["scales"]
    if ids.dtype != torch.long or not len(ids) or int(ids.min()) < 0 or int(ids.max()) >= head.out_features:
        return False
    if q.dtype != torch.int8 or q.shape != (len(ids), head.in_features) or scales.dtype != head.scales.dtype:
        return False
    sample = torch.arange(0, len(ids), 997)
    return torch.equal(scales, head.scales[ids]) and torch.equal(q[sample], head.rows(ids[sample])[0])


PENALTY = 1.1  # the greedy attempts' repetition penalty (bench/NOTES.md, "Repetition penalty")


def _penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty: seen tokens' logits divided (positive) or multiplied by it."""
    picked = logits[seen]
    logits[seen] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits


def prefill(fast: FastGemma, ids: list[int]) -> tuple[KV, torch.Tensor]:
    """The prompt's cache and last hidden state, for several continuations of one prompt."""
    kv = fast.new_kv(len(ids))
    with torch.inference_mode():
        h, _ = fast.forward(ids, kv)
    return kv, h


def decode(fast: FastGemma, head: Shortlist, ids: list[int], max_new_tokens: int, ends: Sequence[int],
           stop: Callable[[list[int]], bool], deadline: float | None, repetition_penalty: float = PENALTY,
           copyable: Sequence[int] = (), penalize_prompt: bool = True, first_rank: int = 0,
           prompt: tuple[KV, torch.Tensor] | None = None) -> list[int]:
    """Greedy decoding; the repetition penalty covers prompt and reply tokens, or with
    `penalize_prompt` False the reply's own tokens only (transformers' `prompt_ignore_length`).

    `copyable`: tokens (the prompt's own, special tokens left out) that may be emitted even where
    the shortlist lacks them. `first_rank` > 0 starts the reply with the first token ranked that far
    below the best and goes on greedily (a branch: bot/model/generate.py, `best_of_fast`); `prompt`
    is `prefill(fast, ids)`, shared by the branches and left unchanged."""
    head = head.with_tokens(copyable)
    with torch.inference_mode():
        if prompt is None:
            kv = fast.new_kv(len(ids) + max_new_tokens)
            h, _ = fast.forward(ids, kv)
        else:
            kv, h = prompt[0].extended(max_new_tokens), prompt[1]
        rows = head.row_of[torch.tensor(ids)]
        seen = set(rows[rows >= 0].tolist()) if penalize_prompt else set()
        new: list[int] = []
        while len(new) < max_new_tokens:
            if deadline is not None and time.monotonic() > deadline:
                raise EngineTimeout("generation ran past its deadline")
            logits = _penalize(head.logits(h, fast.native), torch.tensor(list(seen), dtype=torch.long),
                               repetition_penalty)
            if first_rank and not new:
                row = int(torch.topk(logits, min(first_rank + 1, len(logits))).indices[-1])
            else:
                row = int(torch.argmax(logits))
            token = int(head.ids[row])
            new.append(token)
            if token in ends or stop(new):
                break
            seen.add(row)
            h, _ = fast.forward([token], kv)
    return new
