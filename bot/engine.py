"""The one model, shared by mood classification and reply generation.

`ModelEngine` is synchronous and must be called from one thread; `AsyncEngine` runs it on
a single worker thread with a timeout on every call, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from bot import prompts
from bot.config import ModelSettings, SentimentSettings
from bot.domain import ChatTurn, Label, Sentiment, Strategy
from bot.errors import EngineError, EngineTimeout
from bot.model_loader import LoadedModel
from bot.quant import Int8Linear
from bot.readout import Readout, shipped_path
from bot.text import clean_reply

log = logging.getLogger(__name__)

LABELS = (Label.POSITIVE, Label.NEGATIVE, Label.NEUTRAL)
MAX_PROMPT_TOKENS = 1536
FEATURE_CACHE = 64


class _Stop:
    """Stops generation at a stop string or when the wall clock passes the deadline.

    transformers' own stop_strings criterion preprocesses the whole vocabulary (262k entries for
    Gemma): seconds and hundreds of MB on a CPU. Decoding the last few tokens is enough here."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: list[str], deadline: float | None) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = stops
        self.deadline = deadline
        self.hit = False  # the deadline, not a stop string, ended it

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.hit = self.deadline is not None and time.monotonic() > self.deadline
        tail = self.tokenizer.decode(input_ids[0, max(self.prompt_len, input_ids.shape[1] - 8) :])
        done = self.hit or any(stop in tail for stop in self.stops)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


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
        return (head.weight_q[ids].float() * head.scales[ids].float()[:, None]).clone()
    return head.weight[ids].detach().float().clone()


class _Scorer:
    """Scores a fixed set of answer words after a few-shot prefix, in one forward pass per batch.

    The prefix's key/value cache is computed once and reused; only the answer words' rows of the
    output layer are multiplied. Contextual calibration removes the prefix's own preference.
    """

    def __init__(self, engine: ModelEngine, prefix: str, item: str, words: Sequence[str]) -> None:
        self.engine = engine
        self.item = item
        self.token_ids = [engine._encode(word)[0] for word in words]
        if len(set(self.token_ids)) != len(self.token_ids):
            raise EngineError(f"the tokenizer maps two answer words {list(words)} to one token")
        self.rows = _output_rows(engine.model, self.token_ids)
        self.prefix_ids = engine._encode(prefix, special=True)
        self.prefix_cache = engine.prefix_cache(self.prefix_ids)
        self._bias: torch.Tensor | None = None

    @property
    def bias(self) -> torch.Tensor:
        """The prefix's own preference, measured on content-free inputs (computed on first use)."""
        if self._bias is None:
            self._bias = self.log_probs(prompts.CONTENT_FREE).exp().mean(dim=0).log()
        return self._bias

    def hidden(self, texts: Sequence[str], layers: Sequence[int] = ()) -> torch.Tensor:
        """Hidden states at the answer position, float32, shaped (texts, layers or 1, hidden size).

        With no `layers`: the model's last (normed) hidden state. With `layers`: the raw outputs of
        those decoder layers (0-based), and the forward stops soon after the deepest of them.
        """
        engine = self.engine
        items = [engine._encode(self.item.format(text=t.replace("\n", " "))) for t in texts]
        lengths = torch.tensor([len(i) for i in items])
        width = int(lengths.max())
        pad = engine.tokenizer.pad_token_id or 0
        # right padding: with causal attention, pads after the last real token cannot change it
        ids = torch.tensor([i + [pad] * (width - len(i)) for i in items])
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        cache = copy.deepcopy(self.prefix_cache)
        if len(texts) > 1:
            cache.batch_repeat_interleave(len(texts))
        full_mask = torch.cat([torch.ones(len(texts), len(self.prefix_ids), dtype=torch.long), mask], dim=1)
        body = engine.model.get_decoder()
        rows = torch.arange(len(texts))
        with torch.inference_mode():
            if not layers:
                out = body(input_ids=ids, attention_mask=full_mask, past_key_values=cache, use_cache=True)
                return out.last_hidden_state[rows, lengths - 1].float()[:, None, :]
            # one layer past the deepest asked for, so that none of them is the (normed) last state
            with _stop_after(body, max(layers) + 2):
                out = body(input_ids=ids, attention_mask=full_mask, past_key_values=cache, use_cache=True,
                           output_hidden_states=True)
            # hidden_states[0] is the embedding output; [i + 1] the output of layer i
            return torch.stack([out.hidden_states[i + 1][rows, lengths - 1].float() for i in layers], dim=1)

    def normed(self, texts: Sequence[str], layers: Sequence[int]) -> torch.Tensor:
        """The final norm applied to the outputs after each of `layers` layers: (texts, len(layers) * hidden)."""
        raw = self.hidden(texts, [layer - 1 for layer in layers])
        with torch.inference_mode():
            out = self.engine.model.get_decoder().norm(raw.to(self.engine.model.dtype)).float()
        return out.reshape(len(texts), -1)

    def log_probs(self, texts: Sequence[str]) -> torch.Tensor:
        """Uncalibrated log-probabilities over the answer words, one row per text."""
        logits = self.hidden(texts)[:, 0, :] @ self.rows.T
        if self.engine.softcap:
            logits = torch.tanh(logits / self.engine.softcap) * self.engine.softcap
        return torch.log_softmax(logits, dim=-1)

    def probs(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.softmax(self.log_probs(texts) - self.bias, dim=-1)


class ModelEngine:
    def __init__(self, loaded: LoadedModel, settings: ModelSettings, sentiment: SentimentSettings) -> None:
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.name = loaded.name
        self.settings = settings
        self.min_confidence = sentiment.min_confidence
        self.softcap = getattr(self.model.config, "final_logit_softcapping", None)
        self.cache_key = loaded.cache_key
        self.tuned = loaded.tuned
        words = [prompts.LABEL_WORDS[label] for label in LABELS]
        if self.tuned:  # the prompt the adapter's mood and crisis heads were trained on
            self.mood = _Scorer(self, prompts.TUNED_MOOD_PREFIX, prompts.TUNED_MOOD_ITEM, words)
        else:
            self.mood = _Scorer(self, prompts.CLASSIFY_PREFIX, prompts.CLASSIFY_ITEM, words)
        self.crisis = _Scorer(self, prompts.CRISIS_PREFIX, prompts.CRISIS_ITEM, prompts.CRISIS_WORDS)
        hidden = self.model.config.hidden_size
        self.readout = _pick_readout(sentiment.readout, loaded.fingerprint, hidden, "mood")
        self.crisis_head = _pick_readout(sentiment.crisis_head, loaded.fingerprint, hidden, "crisis")
        # mood and crisis read the same features: the crisis check after classify() costs nothing
        self._features: dict[str, torch.Tensor] = {}

    def _encode(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def prefix_cache(self, ids: list[int]) -> Any:
        """The key/value cache of a fixed prompt prefix; kept on disk beside the serving snapshot,
        so that a warm start does not evaluate the prefixes again."""
        from transformers import DynamicCache

        path = None
        window = getattr(self.model.config, "sliding_window", None)
        # a sliding-window layer keeps only its window, and a restored cache would lose the count
        if self.cache_key and not (window and len(ids) >= window):
            digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
            path = Path(self.settings.cache_dir).expanduser() / "prefix" / f"{self.cache_key}-{digest}.pt"
            if path.exists():
                try:
                    layers = torch.load(path, weights_only=True)
                    cache = DynamicCache(config=self.model.config)
                    for index, (keys, values) in enumerate(layers):
                        cache.update(keys, values, index)
                    return cache
                except (OSError, RuntimeError, ValueError) as exc:
                    log.warning("prefix cache %s unusable (%s); recomputing", path.name, exc)
        with torch.inference_mode():
            cache = self.model(torch.tensor([ids]), use_cache=True).past_key_values
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + f".tmp{os.getpid()}")
            torch.save([(layer.keys, layer.values) for layer in cache.layers], partial)
            partial.replace(path)
        return cache

    # --- classification -------------------------------------------------------------

    def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        if not texts:
            return []
        results: list[Sentiment] = []
        size = self.settings.classify_batch_size
        for start in range(0, len(texts), size):
            results.extend(self._to_sentiment(row) for row in self.mood_probs(texts[start : start + size]))
        return results

    def head_layers(self) -> tuple[int, ...]:
        layers: set[int] = set()
        for head in (self.readout, self.crisis_head):
            if head is not None:
                layers.update(head.layers)
        return tuple(sorted(layers))

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """(texts, layers, hidden): the normed states the heads read, computed once per text."""
        layers = self.head_layers()
        missing = list(dict.fromkeys(t for t in texts if t not in self._features))
        if missing:
            got = self.mood.normed(missing, layers).reshape(len(missing), len(layers), -1)
            for text, row in zip(missing, got):
                self._features[text] = row
            while len(self._features) > FEATURE_CACHE:
                self._features.pop(next(iter(self._features)))
        return torch.stack([self._features[t] for t in texts])

    def _head_input(self, head: Readout, texts: Sequence[str]) -> torch.Tensor:
        layers = self.head_layers()
        feats = self.features(texts)
        return feats[:, [layers.index(layer) for layer in head.layers]].reshape(len(texts), -1)

    def mood_probs(self, texts: Sequence[str]) -> torch.Tensor:
        """(texts, 3) calibrated probabilities in LABELS order: the trained readout where there is one."""
        if self.readout is None:
            return self.mood.probs(texts)
        probs = self.readout.probs(self._head_input(self.readout, texts))
        order = [self.readout.labels.index(label.value) for label in LABELS]
        return probs[:, order]

    def classify(self, text: str) -> Sentiment:
        return self.classify_batch([text])[0]

    def crisis_score(self, text: str) -> float:
        """Calibrated probability that the message signals a crisis (self-harm, suicide).

        With a trained crisis head it is scaled so that its own threshold (chosen on validation for
        recall) maps to 0.5: `escalation.crisis_threshold` then means the same for every head."""
        if self.crisis_head is None:
            return float(self.crisis.probs([text])[0, 0])
        p = float(self.crisis_head.probs(self._head_input(self.crisis_head, [text]))[0, 0])
        t = self.crisis_head.threshold
        return 0.5 * p / t if p < t else 0.5 + 0.5 * (p - t) / max(1e-9, 1 - t)

    def _to_sentiment(self, probs: torch.Tensor) -> Sentiment:
        """The label and the confidence that the neutral rule used, from calibrated probabilities.

        A positive or negative label needs at least `min_confidence`; below that the message is
        neutral, and the confidence printed is the probability that it is *not* the polar label."""
        scores = {label.value: round(float(p), 4) for label, p in zip(LABELS, probs)}
        best = int(torch.argmax(probs))
        label, confidence = LABELS[best], float(probs[best])
        if label is not Label.NEUTRAL and confidence < self.min_confidence:
            label, confidence = Label.NEUTRAL, 1.0 - confidence
        return Sentiment(label, round(min(confidence, 1.0), 4), scores)

    # --- generation -----------------------------------------------------------------

    def _prompt(self, system: str, strategy: Strategy, lang: str, history: list[ChatTurn]) -> tuple[list[int], str]:
        while True:
            if getattr(self.tokenizer, "chat_template", None):
                text = self.tokenizer.apply_chat_template(
                    prompts.chat_messages(system, history),
                    add_generation_prompt=True,
                    tokenize=False,
                    enable_thinking=False,  # Qwen3: answer directly; other templates ignore it
                )
                ids = self._encode(text)
            else:
                text = prompts.transcript(system, strategy, lang, history)
                ids = self._encode(text, special=True)
            if len(ids) <= MAX_PROMPT_TOKENS or len(history) <= 1:
                return ids[-MAX_PROMPT_TOKENS:], text
            history = history[1:]  # drop the oldest turn until the prompt fits

    def generate(
        self,
        history: list[ChatTurn],
        strategy: Strategy,
        lang: str,
        system: str,
        knowledge: Sequence[str] = (),
        attempt: int = 0,
        deadline: float | None = None,
    ) -> str:
        """One reply. `attempt` > 0 asks again with other settings (the reply guard rejected one)."""
        if self.tuned:
            text = prompts.tuned_reply_prompt(strategy, lang, history, list(knowledge))
            ids = self._encode(text, special=True)[-MAX_PROMPT_TOKENS:]
            stops: list[str] = []
        else:
            if knowledge:
                system = prompts.with_knowledge(system, knowledge)
            ids, _ = self._prompt(system, strategy, lang, history)
            stops = prompts.stop_strings(lang)
        return self._complete(ids, stops, deadline, attempt)

    def _complete(self, ids: list[int], stops: list[str], deadline: float | None, attempt: int) -> str:
        stopper = _Stop(self.tokenizer, len(ids), stops, deadline)
        input_ids = torch.tensor([ids])
        ends = [self.tokenizer.eos_token_id]
        end_turn = self.tokenizer.convert_tokens_to_ids(prompts.END_TURN)
        if isinstance(end_turn, int) and end_turn != self.tokenizer.unk_token_id:
            ends.append(end_turn)
        if attempt:  # the first answer was rejected: sample, away from the words already used
            torch.manual_seed(1000 + attempt + len(ids))
            options: dict[str, Any] = dict(do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.3,
                                           no_repeat_ngram_size=3)
        else:
            options = dict(do_sample=False, repetition_penalty=1.1)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=self.settings.max_new_tokens,
                stopping_criteria=[stopper],
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=ends,
                **options,
            )
        if stopper.hit:
            raise EngineTimeout("generation ran past its deadline")
        raw = self.tokenizer.decode(out[0][len(ids):], skip_special_tokens=True)
        return clean_reply(raw, max_chars=self.settings.max_reply_chars)


def echoes(reply: str, message: str) -> bool:
    """True when the reply is mostly the sender's own words back."""
    def core(text: str) -> str:
        return re.sub(r"[\W_]+", "", text.lower())

    a, b = core(reply), core(message)
    if not a or not b:
        return False
    return a in b or (b in a and len(b) >= 0.6 * len(a))


def _pick_readout(choice: str, fingerprint: str | None, hidden_size: int, head: str) -> Readout | None:
    if choice == "none":
        return None
    if choice == "auto":
        path = shipped_path(fingerprint, head) if fingerprint else None
        if path is None or not path.exists():
            return None
    else:
        path = Path(choice).expanduser()
        if not path.exists():
            raise EngineError(f"the {head} head {path} does not exist")
    readout = Readout.load(path)
    if readout.mean.shape[-1] != hidden_size * len(readout.layers):
        raise EngineError(f"the {head} head {path} was trained for another model (hidden size {readout.mean.shape[-1]})")
    if fingerprint and readout.fingerprint != fingerprint:
        # a head fitted to other weights reads features that no longer mean the same: refuse it
        raise EngineError(
            f"the {head} head {path} was trained for the weights {readout.fingerprint}, not the ones being served "
            f"({fingerprint}); rebuild it with `python -m train.heads`"
        )
    log.debug("%s head: %s (layers %s)", head, path.name, readout.layers)
    return readout


class AsyncEngine:
    """Runs a ModelEngine on one worker thread; every call has a timeout."""

    def __init__(self, engine: ModelEngine, timeout_s: float) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.engine.name

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, fn, *args)
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError as exc:
            raise EngineTimeout(f"the model did not answer within {self.timeout_s:g} s") from exc
        except EngineError:
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            raise EngineError(f"the model failed: {exc}") from exc

    async def classify(self, text: str) -> Sentiment:
        result: Sentiment = await self._run(self.engine.classify, text)
        return result

    async def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        result: list[Sentiment] = await self._run(self.engine.classify_batch, list(texts))
        return result

    async def crisis_score(self, text: str) -> float:
        result: float = await self._run(self.engine.crisis_score, text)
        return result

    async def generate(
        self,
        history: list[ChatTurn],
        strategy: Strategy,
        lang: str,
        system: str,
        knowledge: Sequence[str] = (),
        attempt: int = 0,
    ) -> str:
        # the deadline also stops the worker thread, so a slow reply cannot hold the model after its timeout
        deadline = time.monotonic() + self.timeout_s
        result: str = await self._run(
            self.engine.generate, history, strategy, lang, system, tuple(knowledge), attempt, deadline
        )
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
