"""The one model, shared by mood classification and reply generation.

`ModelEngine` is synchronous and must be called from one thread; `AsyncEngine` runs it on
a single worker thread with a timeout on every call, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import torch

from bot import prompts
from bot.config import ModelSettings, SentimentSettings
from bot.domain import LABEL_TOKEN_CRISIS_THRESHOLD, ChatTurn, FaqMatch, Label, Sentiment, Strategy, crisis_scale
from bot.errors import EngineError, EngineTimeout
from bot.model import fast, native, vocab
from bot.model.cache import save_file
from bot.model.fast import KV, FastGemma, Shortlist
from bot.model.generate import best_of_fast, complete, complete_fast
from bot.model.heads import Readout, reply_layers, shipped_path
from bot.model.loader import LoadedModel
from bot.model.mood import Scorer

log = logging.getLogger(__name__)

LABELS = (Label.POSITIVE, Label.NEGATIVE, Label.NEUTRAL)
MAX_PROMPT_TOKENS = 1536
FEATURE_CACHE = 64


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
        hidden = self.model.config.hidden_size
        self.readout = _pick_readout(sentiment.readout, loaded.fingerprint, hidden, "mood")
        self.crisis_head = _pick_readout(sentiment.crisis_head, loaded.fingerprint, hidden, "crisis")
        self.handoff_head = _pick_readout(sentiment.handoff_head, loaded.fingerprint, hidden, "handoff")
        self.reply_head = _pick_readout(settings.reply_head, loaded.fingerprint, hidden, "reply")
        self.match_head = _pick_readout(settings.match_head, loaded.fingerprint, hidden, "match")
        self._matcher: Scorer | None = None
        # mood, crisis and hand-off read the same features: the checks after classify() cost nothing
        self._features: dict[str, torch.Tensor] = {}
        self.fast: FastGemma | None = None
        self.head: Shortlist | None = None
        if settings.decoder in ("auto", "torch") and fast.supported(self.model):
            self.fast = FastGemma(self.model, max_positions=MAX_PROMPT_TOKENS + settings.max_new_tokens + 64)
            if settings.decoder == "auto":
                self.fast.use_native(native.load(Path(settings.cache_dir).expanduser()))
            source = vocab.shortlist_file(self.tokenizer) if settings.output_vocab == "auto" else None
            output = self.model.get_output_embeddings()
            if source is not None and self.cache_key:
                self.head = Shortlist.cached(output, source, Path(settings.cache_dir).expanduser() / "serving", self.cache_key)
            else:
                self.head = Shortlist(output, None if source is None else vocab.read_shortlist(source, len(self.tokenizer)))
            log.debug("decoder: bot/model/fast.py, output rows %d of %d", len(self.head.ids), self.head.vocab)
        words = [prompts.LABEL_WORDS[label] for label in LABELS]
        if self.tuned:  # the prompt the adapter's mood and crisis heads were trained on
            self.mood = Scorer(self, prompts.TUNED_MOOD_PREFIX, prompts.TUNED_MOOD_ITEM, words)
        else:
            self.mood = Scorer(self, prompts.CLASSIFY_PREFIX, prompts.CLASSIFY_ITEM, words)
        self.crisis = Scorer(self, prompts.CRISIS_PREFIX, prompts.CRISIS_ITEM, prompts.CRISIS_WORDS)

    def encode(self, text: str, special: bool = False) -> list[int]:
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
            layers = [(layer.keys, layer.values) for layer in cache.layers]
            save_file(path, lambda partial: torch.save(layers, partial))
        return cache

    # --- classification -------------------------------------------------------------

    def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        if not texts:
            return []
        results: list[Sentiment] = []
        size = self.settings.classify_batch_size
        for start in range(0, len(texts), size):
            results.extend(self.sentiment_of(row) for row in self.mood_probs(texts[start : start + size]))
        return results

    def head_layers(self) -> tuple[int, ...]:
        layers: set[int] = set()
        for head in (self.readout, self.crisis_head, self.handoff_head):
            if head is not None:
                layers.update(head.layers)
        return tuple(sorted(layers))

    def _pooled(self) -> bool:
        return any(head is not None and head.pooled for head in (self.readout, self.crisis_head, self.handoff_head))

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """(texts, layers, hidden): the normed states the heads read, computed once per text; where a
        head reads the message's mean states too, (texts, 2 * layers, hidden), the means after."""
        layers, pooled = self.head_layers(), self._pooled()
        missing = list(dict.fromkeys(t for t in texts if t not in self._features))
        if missing:
            got = self.mood.normed(missing, layers, pooled).reshape(len(missing), len(layers) * (1 + pooled), -1)
            for text, row in zip(missing, got):
                self._features[text] = row
            while len(self._features) > FEATURE_CACHE:
                self._features.pop(next(iter(self._features)))
        return torch.stack([self._features[t] for t in texts])

    def forget_features(self) -> None:
        """Drop the cached features (the benchmark times each message's own forward pass)."""
        self._features.clear()

    def _head_input(self, head: Readout, texts: Sequence[str]) -> torch.Tensor:
        layers = self.head_layers()
        feats = self.features(texts)
        index = [layers.index(layer) for layer in head.layers]
        if head.pooled:
            index += [len(layers) + i for i in index]
        return feats[:, index].reshape(len(texts), -1)

    def label_token_probs(self, texts: Sequence[str]) -> torch.Tensor:
        """(texts, 3) calibrated label-token probabilities, the readout left aside (the benchmark compares)."""
        return self.mood.probs(texts)

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

        Put on one scale (bot/domain.py `crisis_scale`): the scorer's own threshold (the head's, chosen
        on validation for recall, or the label-token question's) maps to 0.5, so that
        `escalation.crisis_threshold` means the same for every model and backend."""
        if self.crisis_head is None:
            return crisis_scale(float(self.crisis.probs([text])[0, 0]), LABEL_TOKEN_CRISIS_THRESHOLD)
        p = float(self.crisis_head.probs(self._head_input(self.crisis_head, [text]))[0, 0])
        return crisis_scale(p, self.crisis_head.threshold, self.crisis_head.sure)

    def needs_person(self, text: str) -> bool | None:
        """Whether the message is one a colleague should answer (an order, a refund, a fact the bot
        lacks), by the hand-off head; None without one."""
        if self.handoff_head is None:
            return None
        p = float(self.handoff_head.probs(self._head_input(self.handoff_head, [text]))[0, 0])
        return p >= self.handoff_head.threshold

    def match_features(self, pairs: Sequence[tuple[str, str, float]], layers: Sequence[int]) -> torch.Tensor:
        """The match head's input for (question, FAQ answer, BM25 score) pairs: the normed states after
        `layers` layers at the answer position of the match prompt, then the BM25 score."""
        if self._matcher is None:
            self._matcher = Scorer(self, prompts.MATCH_PREFIX, prompts.MATCH_ITEM, prompts.CRISIS_WORDS)
        states = self._matcher.normed([prompts.match_text(q, a) for q, a, _ in pairs], layers)
        return torch.cat([states, torch.tensor([[score] for _, _, score in pairs])], dim=1)

    def faq_match(self, question: str, answer: str, score: float) -> FaqMatch | None:
        """Whether the FAQ answer answers the question, by the match head (one forward pass of the
        match prompt, about 70 ms here); None without a head: the BM25 score alone decides."""
        head = self.match_head
        if head is None:
            return None
        p = float(head.probs(self.match_features([(question, answer, score)], head.layers))[0, 0])
        return FaqMatch(round(p, 4), p >= head.threshold, head.sure is not None and p >= head.sure)

    def sentiment_of(self, probs: torch.Tensor) -> Sentiment:
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
                ids = self.encode(text)
            else:
                text = prompts.transcript(system, strategy, lang, history)
                ids = self.encode(text, special=True)
            if len(ids) <= MAX_PROMPT_TOKENS or len(history) <= 1:
                return ids[-MAX_PROMPT_TOKENS:], text
            history = history[1:]  # drop the oldest turn until the prompt fits

    def reply_ids(self, history: list[ChatTurn], strategy: Strategy, lang: str, system: str,
                  knowledge: Sequence[str] = ()) -> tuple[list[int], list[str]]:
        """The reply prompt's token ids and the strings that end a reply, in the format being served."""
        if self.tuned:  # the format the adapter was trained on; <end_of_turn> ends the reply
            text = prompts.tuned_reply_prompt(strategy, lang, history, list(knowledge))
            return self.encode(text, special=True)[-MAX_PROMPT_TOKENS:], []
        if knowledge:
            system = prompts.with_knowledge(system, knowledge)
        ids, _ = self._prompt(system, strategy, lang, history)
        return ids, prompts.stop_strings(lang)

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
        ids, stops = self.reply_ids(history, strategy, lang, system, knowledge)
        if self.fast is not None and self.head is not None:
            if attempt == 0 and self.reply_head is not None and self.settings.reply_branches > 1:
                return best_of_fast(self.fast, self.head, self.tokenizer, ids, stops, deadline,
                                    self.settings.max_new_tokens, self.settings.max_reply_chars,
                                    self.settings.reply_branches, self.reply_score)
            return complete_fast(self.fast, self.head, self.tokenizer, ids, stops, deadline, attempt,
                                 self.settings.max_new_tokens, self.settings.max_reply_chars)
        return complete(self.model, self.tokenizer, ids, stops, deadline, attempt,
                        self.settings.max_new_tokens, self.settings.max_reply_chars)

    def reply_features(self, prompt: tuple[KV, torch.Tensor], reply: str) -> torch.Tensor:
        """The reply head's input: the reply's tokens (and the end of its turn) run after the
        prefilled prompt, each of the head's layers' raw outputs averaged over them; (features,)."""
        if self.fast is None:
            raise EngineError("the reply head needs this project's decode loop (model.decoder auto or torch)")
        layers = self.reply_head.layers if self.reply_head is not None else reply_layers(self.model.config.num_hidden_layers)
        ids = self.encode(reply) + self.encode(prompts.END_TURN, special=True)
        with torch.inference_mode():
            _, states = self.fast.forward(ids, prompt[0].extended(len(ids)), collect=[n - 1 for n in layers])
        return torch.cat([state.float().mean(0) for state in states])

    def reply_score(self, prompt: tuple[KV, torch.Tensor], reply: str) -> float:
        """The reply head's predicted grade for `reply` to the prefilled prompt (higher is better)."""
        assert self.reply_head is not None
        return float(self.reply_head.logits(self.reply_features(prompt, reply)[None])[0, 0])


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
    try:
        readout = Readout.load(path)
    except Exception as exc:  # any damaged or foreign file: torch.load raises many kinds
        raise EngineError(f"the {head} head {path} cannot be read: {exc}") from exc
    if readout.mean.shape[-1] != readout.state_features(hidden_size) + len(readout.extra):
        raise EngineError(f"the {head} head {path} was trained for another model ({readout.mean.shape[-1]} features)")
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
        self.name = engine.name
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._lock = threading.Lock()

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

    async def needs_person(self, text: str) -> bool | None:
        result: bool | None = await self._run(self.engine.needs_person, text)
        return result

    async def faq_match(self, question: str, answer: str, score: float) -> FaqMatch | None:
        result: FaqMatch | None = await self._run(self.engine.faq_match, question, answer, score)
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
