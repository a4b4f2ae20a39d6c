"""Scoring a fixed prompt: a cached prefix, the hidden states at the answer position, label tokens.

One forward pass per batch of messages: the prefix's key/value cache is computed once and reused,
and only the answer words' rows of the output layer are multiplied. Contextual calibration
removes the prefix's own preference for a label, measured on content-free inputs.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Protocol, Sequence

import torch

from bot import prompts
from bot.errors import EngineError
from bot.model.fast import KV, FastGemma
from bot.model.quant import Int8Linear


class Encoder(Protocol):
    """What a scorer needs from the engine: the model, the tokenizer and the prefix cache."""

    model: Any
    tokenizer: Any
    softcap: float | None

    def encode(self, text: str, special: bool = False) -> list[int]: ...

    def prefix_cache(self, ids: list[int]) -> Any: ...

    @property
    def fast(self) -> FastGemma | None: ...


@contextlib.contextmanager
def _stop_after(body: Any, layers: int | None) -> Iterator[None]:
    """Run only the first `layers` decoder layers (the final norm still applies).

    Safe here because the model is only ever used from the engine's one worker thread."""
    full = body.config.num_hidden_layers
    if layers is None or layers >= full:
        yield
        return
    body.config.num_hidden_layers = layers
    try:
        yield
    finally:
        body.config.num_hidden_layers = full


def _output_rows(model: Any, ids: list[int]) -> torch.Tensor:
    """The output layer's rows for the given tokens, dense or quantized."""
    head = model.get_output_embeddings()
    if isinstance(head, Int8Linear):
        q, scales = head.rows(torch.tensor(ids))
        return (q.float() * scales.float()[:, None]).clone()
    rows: torch.Tensor = head.weight[ids].detach().float().clone()
    return rows


class Scorer:
    """Scores a fixed set of answer words after a few-shot prefix, in one forward pass per batch.

    The prefix's key/value cache is computed once and reused; only the answer words' rows of the
    output layer are multiplied. Contextual calibration removes the prefix's own preference.
    """

    def __init__(self, engine: Encoder, prefix: str, item: str, words: Sequence[str]) -> None:
        self.engine = engine
        self.item = item
        self.token_ids = [engine.encode(word)[0] for word in words]
        if len(set(self.token_ids)) != len(self.token_ids):
            raise EngineError(f"the tokenizer maps two answer words {list(words)} to one token")
        self.rows = _output_rows(engine.model, self.token_ids)
        self.prefix_ids = engine.encode(prefix, special=True)
        # the fast path keeps its own prefix cache, made on first use (bot/model/fast.py)
        self.prefix_cache = None if engine.fast is not None else engine.prefix_cache(self.prefix_ids)
        self._prefix_kv: KV | None = None
        self._bias: torch.Tensor | None = None

    @property
    def bias(self) -> torch.Tensor:
        """The prefix's own preference, measured on content-free inputs (computed on first use)."""
        if self._bias is None:
            self._bias = self.log_probs(prompts.CONTENT_FREE).exp().mean(dim=0).log()
        return self._bias

    def hidden(self, texts: Sequence[str], layers: Sequence[int] = (), with_mean: bool = False) -> torch.Tensor:
        """Hidden states at the answer position, float32, shaped (texts, layers or 1, hidden size).

        With no `layers`: the model's last (normed) hidden state. With `layers`: the raw outputs of
        those decoder layers (0-based), and the forward stops soon after the deepest of them; with
        `with_mean` too, followed by each layer's mean over the message's prompt line (the message
        and the few template tokens around it; texts, 2 * layers, hidden): the same pass, so the
        crisis head may read them at no cost. `with_mean` needs `layers`.
        """
        if with_mean and not layers:
            raise ValueError("the mean states are read from named layers")
        engine = self.engine
        items = [engine.encode(self.item.format(text=t.replace("\n", " "))) for t in texts]
        if engine.fast is not None:
            return self._hidden_fast(engine.fast, items, layers, with_mean)
        lengths = torch.tensor([len(i) for i in items])
        width = int(lengths.max())
        pad = engine.tokenizer.pad_token_id or 0
        # right padding: with causal attention, pads after the last real token cannot change it
        ids = torch.tensor([i + [pad] * (width - len(i)) for i in items])
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        if self.prefix_cache is None:  # the fast path's scorer was made without one
            self.prefix_cache = engine.prefix_cache(self.prefix_ids)
        cache = copy.deepcopy(self.prefix_cache)
        if len(texts) > 1:
            cache.batch_repeat_interleave(len(texts))
        full_mask = torch.cat([torch.ones(len(texts), len(self.prefix_ids), dtype=torch.long), mask], dim=1)
        body = engine.model.get_decoder()
        rows = torch.arange(len(texts))
        with torch.inference_mode():
            if not layers:
                out = body(input_ids=ids, attention_mask=full_mask, past_key_values=cache, use_cache=True)
                last: torch.Tensor = out.last_hidden_state[rows, lengths - 1].float()[:, None, :]
                return last
            # one layer past the deepest asked for, so that none of them is the (normed) last state
            with _stop_after(body, max(layers) + 2):
                out = body(input_ids=ids, attention_mask=full_mask, past_key_values=cache, use_cache=True,
                           output_hidden_states=True)
            # hidden_states[0] is the embedding output; [i + 1] the output of layer i
            states = [out.hidden_states[i + 1][rows, lengths - 1].float() for i in layers]
            if with_mean:
                weights = (mask / lengths[:, None]).float()[:, :, None]  # pads weigh nothing
                states += [(out.hidden_states[i + 1].float() * weights).sum(1) for i in layers]
            return torch.stack(states, dim=1)

    def _hidden_fast(self, fast: FastGemma, items: list[list[int]], layers: Sequence[int],
                     with_mean: bool = False) -> torch.Tensor:
        """`hidden` on the fast path: one message at a time after the cached prefix, stopping after
        the deepest layer asked for."""
        with torch.inference_mode():
            if self._prefix_kv is None:
                self._prefix_kv = fast.new_kv(len(self.prefix_ids))
                fast.forward(self.prefix_ids, self._prefix_kv)
            rows = []
            for item in items:
                kv = self._prefix_kv.extended(len(item))
                if not layers:
                    last, _ = fast.forward(item, kv)
                    rows.append(last)
                else:
                    _, states = fast.forward(item, kv, layers=max(layers) + 1, collect=layers)
                    row = [state[-1].float() for state in states]
                    if with_mean:
                        row += [state.float().mean(0) for state in states]
                    rows.append(torch.stack(row))
        return torch.stack(rows).float()

    def normed(self, texts: Sequence[str], layers: Sequence[int], with_mean: bool = False) -> torch.Tensor:
        """The final norm applied to the outputs after each of `layers` layers: (texts, len(layers) * hidden),
        with `with_mean` followed by the same for each layer's mean over the message (see `hidden`)."""
        raw = self.hidden(texts, [layer - 1 for layer in layers], with_mean)
        with torch.inference_mode():
            out: torch.Tensor = self.engine.model.get_decoder().norm(raw.to(self.engine.model.dtype)).float()
        return out.reshape(len(texts), -1)

    def log_probs(self, texts: Sequence[str]) -> torch.Tensor:
        """Uncalibrated log-probabilities over the answer words, one row per text."""
        logits = self.hidden(texts)[:, 0, :] @ self.rows.T
        if self.engine.softcap:
            logits = torch.tanh(logits / self.engine.softcap) * self.engine.softcap
        return torch.log_softmax(logits, dim=-1)

    def probs(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.softmax(self.log_probs(texts) - self.bias, dim=-1)
