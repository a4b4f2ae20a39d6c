"""The model behind an OpenAI-compatible server (vLLM, the llama.cpp server, Ollama): `model.backend: openai`.

Mood and the crisis check are scored exactly as the local label-token path scores them (bot/engine.py
`_Scorer`): a one-token completion of the same few-shot prompt, read through its top log-probabilities
(each label's first-token probability, summed over spellings of the label's first token, renormalised
over the labels), then contextual calibration on the content-free inputs. Replies are chat completions.

Every request has a timeout, is retried with exponential backoff (or after the server's Retry-After,
within the request's deadline), waits for a slot under a concurrency limit and passes a circuit
breaker: while the server is down, calls fail at once with EngineError, so the stages fall back (an
unknown mood, the fallback reply) and #status says so; the watch job (bot/jobs.py) tells the admins.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import random
import re
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

import httpx

from bot import prompts
from bot.clock import SystemClock
from bot.config import ModelSettings, SentimentSettings
from bot.domain import LABEL_TOKEN_CRISIS_THRESHOLD, ChatTurn, FaqMatch, Label, Sentiment, Strategy, crisis_scale
from bot.errors import EngineError, EngineTimeout
from bot.protocols import Clock
from bot.text import clean_reply

log = logging.getLogger(__name__)

LABELS = (Label.POSITIVE, Label.NEGATIVE, Label.NEUTRAL)
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# how vLLM, the llama.cpp servers and others say the prompt does not fit the context
TOO_LONG = re.compile(r"context (length|window|size)|maximum context|exceeds? .*context|too (long|many tokens)", re.I)
BACKOFF_S = 0.5
PING_TIMEOUT_S = 10.0  # the watch job's GET models: short, so that a hung server does not hold the check


class ServerUnavailable(EngineError):
    """The model server did not answer (or the breaker is open): the caller falls back."""


class RateLimited(EngineError):
    """The server answered HTTP 429 to every attempt (or asked to wait past the request's deadline):
    it is up, but will not take this request now."""


class Refused(EngineError):
    """The server answered 4xx: this request is wrong (or too long), not the server down."""

    def __init__(self, message: str, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def too_long(self) -> bool:
        return self.status == 400 and bool(TOO_LONG.search(self.body))


def retry_after(response: httpx.Response, now: datetime) -> float | None:
    """The Retry-After header in seconds from `now` (RFC 9110: delay-seconds or an HTTP-date), or
    None when there is none or it cannot be read (then the client's own backoff applies)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)  # delay-seconds; a decimal is not the RFC's but is meant the same
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - now).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _snippet(response: httpx.Response) -> str:
    try:
        return " ".join(response.text.split())[:120]
    except (UnicodeError, httpx.HTTPError):
        return ""


class NoLogprobs(EngineError):
    """The server answers but returns no token log-probabilities, so mood cannot be scored (refused at start)."""


class Breaker:
    """A circuit breaker: `failures` failed requests in a row open it for `reset_s`; then one trial
    request is let through, and its success closes the breaker again."""

    def __init__(self, failures: int, reset_s: float, monotonic: Callable[[], float] = time.monotonic,
                 clock: Clock | None = None) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._monotonic = monotonic
        self._clock = clock or SystemClock()
        self.failed = 0
        self.opened_at: float | None = None
        self.down_since: datetime | None = None  # set while open (and half-open): when it opened
        self.last_error = ""
        # wall times of the last failure and the last answer: what the watch job compares with the
        # outage alerts in the store (bot/jobs.py watch_model_server)
        self.failed_at: datetime | None = None
        self.answered_at: datetime | None = None
        self._trial = False
        # Answers of no use: the server is up but refuses us (a revoked key: HTTP 401 to every
        # request). `failures` such refusals in a row, rate limits aside, are an outage of their own
        # for the watch job; `useful_at` is the last answer that was of use, which ends it.
        self.refused = 0  # answers in a row that were refusals (4xx), rate limits or not JSON
        self.last_refusal = ""
        self.lasting_refusals = 0  # of those, the ones that are not rate limits
        self.refusing_since: datetime | None = None
        self.refused_at: datetime | None = None
        self.useful_at: datetime | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self._monotonic() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True  # one request tries the server; the others keep failing fast meanwhile
            return True
        return False

    def success(self) -> None:
        if self.opened_at is not None:
            log.info("model server answers again; circuit closed")
        self.failed, self.opened_at, self.down_since, self._trial = 0, None, None, False
        self.answered_at = self._clock.now()

    def failure(self, error: str) -> None:
        self.failed += 1
        self.last_error = error
        self._trial = False
        self.failed_at = self._clock.now()
        if self.failed >= self.failures or self.opened_at is not None:
            if self.opened_at is None:
                log.warning("model server failing (%s); circuit open for %g s", error, self.reset_s)
                self.down_since = self.failed_at
            self.opened_at = self._monotonic()

    def refusal(self, reason: str, lasting: bool = True) -> None:
        """An answer of no use; `lasting` False for a rate limit, which asks us to slow down, no more."""
        self.refused += 1
        self.last_refusal = reason
        if not lasting:
            return
        self.lasting_refusals += 1
        self.refused_at = self._clock.now()
        if self.lasting_refusals >= self.failures and self.refusing_since is None:
            log.warning("model server refuses every request (%s)", reason)
            self.refusing_since = self.refused_at

    def useful(self) -> None:
        """An answer of use: the server is not refusing us."""
        self.refused, self.last_refusal, self.lasting_refusals, self.refusing_since = 0, "", 0, None
        self.useful_at = self._clock.now()

    def abandon(self) -> None:
        """A trial request was cancelled before it could tell: let the next one try."""
        self._trial = False

    def open(self, error: str) -> None:
        self.failed = self.failures - 1
        self.failure(error)


def _owner(token: str, words: Sequence[str]) -> int | None:
    """The answer word whose first token this token string may be (None when none or ambiguous)."""
    core = token.strip().lower()
    if not core:
        return None
    owners = [i for i, word in enumerate(words) if word.strip().lower().startswith(core)]
    return owners[0] if len(owners) == 1 else None


def word_probs(top: dict[str, float], words: Sequence[str]) -> list[float] | None:
    """Probabilities over `words` from one position's top log-probabilities, renormalised over the words.

    A word with no spelling among the top tokens gets the least listed probability: an upper bound,
    which keeps the calibration's logarithms finite. None when no word is listed at all."""
    sums = [0.0] * len(words)
    for token, logprob in top.items():
        index = _owner(token, words)
        if index is not None and logprob is not None:
            sums[index] += math.exp(logprob)
    if not any(sums):
        return None
    floor = min(math.exp(lp) for lp in top.values() if lp is not None)
    sums = [s or floor for s in sums]
    total = sum(sums)
    return [s / total for s in sums]


def _top_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    """The first generated token's top log-probabilities from a completions choice, or None."""
    logprobs = choice.get("logprobs") or {}
    if not isinstance(logprobs, dict):
        return None
    tops = logprobs.get("top_logprobs")
    if isinstance(tops, list) and tops and isinstance(tops[0], dict) and tops[0]:
        return {str(k): float(v) for k, v in tops[0].items()}
    content = logprobs.get("content")  # the chat-style shape some servers use for completions too
    if isinstance(content, list) and content and isinstance(content[0], dict) and content[0].get("top_logprobs"):
        return {str(t["token"]): float(t["logprob"]) for t in content[0]["top_logprobs"]}
    return None


def calibrated(rows: list[list[float]], bias: list[float]) -> list[list[float]]:
    """softmax(log p - bias) per row: the local _Scorer.probs."""
    out = []
    for row in rows:
        logits = [math.log(max(p, 1e-30)) - b for p, b in zip(row, bias)]
        top = max(logits)
        exps = [math.exp(x - top) for x in logits]
        total = sum(exps)
        out.append([e / total for e in exps])
    return out


def content_free_bias(rows: list[list[float]]) -> list[float]:
    """log of the mean probability over the content-free inputs: the prompt's own preference."""
    return [math.log(max(sum(col) / len(col), 1e-30)) for col in zip(*rows)]


def to_sentiment(probs: Sequence[float], min_confidence: float) -> Sentiment:
    """The same rule as ModelEngine._to_sentiment: a weak non-neutral answer counts as neutral."""
    scores = {label.value: round(float(p), 4) for label, p in zip(LABELS, probs)}
    best = max(range(len(LABELS)), key=lambda i: probs[i])
    label, confidence = LABELS[best], float(probs[best])
    if label is not Label.NEUTRAL and confidence < min_confidence:
        label, confidence = Label.NEUTRAL, 1.0 - confidence + float(probs[2])
    return Sentiment(label, round(min(confidence, 1.0), 4), scores)


class _Scorer:
    """One few-shot prompt and its answer words, scored over the completions API."""

    def __init__(self, engine: RemoteEngine, prefix: str, item: str, words: Sequence[str]) -> None:
        self.engine = engine
        self.prefix = prefix
        self.item = item
        self.words = tuple(words)
        self.bias: list[float] | None = None
        self._bias_lock = asyncio.Lock()

    def prompt(self, text: str) -> str:
        # the prefix is byte-identical in every request, so the server's prefix cache keeps it
        return self.prefix + self.item.format(text=text.replace("\n", " "))

    def parse(self, data: Any, count: int) -> list[list[float]]:
        client = self.engine.client
        try:
            try:
                rows = self._parse(data, count)
            except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
                # a proxy's page, an error object, another API: not an answer, and not a crash of the turn
                raise EngineError(f"the model server's answer is not a completions answer: {str(data)[:200]}") from exc
        except EngineError as exc:
            client.breaker.refusal(str(exc)[:120])
            raise
        client.breaker.useful()
        return rows

    def _parse(self, data: Any, count: int) -> list[list[float]]:
        choices = sorted(data.get("choices") or [], key=lambda c: int(c.get("index", 0)))
        if len(choices) != count:
            raise EngineError(f"the model server answered {len(choices)} choices for {count} prompts")
        rows = []
        for choice in choices:
            top = _top_logprobs(choice)
            if top is None:
                raise NoLogprobs(
                    f"the model server at {self.engine.base_url} returned no token log-probabilities, so mood "
                    "cannot be scored by label probability. Use vLLM, the llama.cpp server, or Ollama 0.12.11 "
                    "or newer (logprobs on the completions API); model.backend: local needs no server."
                )
            probs = word_probs(top, self.words)
            if probs is None:
                raise EngineError(f"none of {list(self.words)} among the top tokens {sorted(top)[:8]}")
            rows.append(probs)
        return rows

    def body(self, texts: Sequence[str]) -> dict[str, Any]:
        prompt: str | list[str] = [self.prompt(t) for t in texts] if len(texts) > 1 else self.prompt(texts[0])
        return {"model": self.engine.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                "logprobs": self.engine.settings.top_logprobs}

    async def log_free(self, texts: Sequence[str]) -> list[list[float]]:
        """Uncalibrated probabilities over the words, one row per text (batched when the server allows)."""
        if not texts:
            return []
        engine = self.engine
        size = engine.settings.classify_batch_size
        if engine.batch is None and len(texts) > 1:
            # not learnt at start (the server was down then): one list request tells, and a refusal
            # (llama-cpp-python answers HTTP 500 to a list) is not held against the server
            first = texts[:size]
            answer = await engine.client.probe("completions", self.body(first))
            rows = None
            if answer is not None:
                with contextlib.suppress(EngineError):
                    rows = self.parse(answer, len(first))
            engine.batch = rows is not None
            log.info("model server %s: %s", engine.base_url, "batched scoring" if engine.batch else "one prompt per request")
            if rows is not None:
                return rows + await self.log_free(texts[size:])
        if engine.batch and len(texts) > 1:
            parts = [texts[i : i + size] for i in range(0, len(texts), size)]
        else:
            parts = [[t] for t in texts]
        answers = await asyncio.gather(*(engine.client.post("completions", self.body(p)) for p in parts))
        return [row for part, data in zip(parts, answers) for row in self.parse(data, len(part))]

    async def probs(self, texts: Sequence[str]) -> list[list[float]]:
        if self.bias is None:
            async with self._bias_lock:
                if self.bias is None:
                    self.bias = content_free_bias(await self.log_free(prompts.CONTENT_FREE))
        return calibrated(await self.log_free(texts), self.bias)


class _Client:
    """POSTs JSON with a timeout, retries with backoff, a concurrency limit and the breaker."""

    def __init__(self, settings: ModelSettings, breaker: Breaker,
                 transport: httpx.AsyncBaseTransport | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, clock: Clock | None = None) -> None:
        assert settings.base_url
        self.settings = settings
        self._monotonic = monotonic  # each request's deadline
        self._sleep = sleep  # the pauses between attempts
        self._clock = clock or SystemClock()  # "now" for a Retry-After given as an HTTP-date
        self.base_url = settings.base_url.rstrip("/") + "/"
        self.breaker = breaker
        self.timeout = httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5.0))
        self.headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
        self._http: httpx.AsyncClient | None = None
        self._transport = transport
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._closing: asyncio.Task[None] | None = None
        # the monotonic time before which the server asked not to be sent anything (its last Retry-After):
        # every request waits for it, not only the one that was told
        self.not_before = 0.0

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            limits = httpx.Limits(max_connections=self.settings.max_concurrency)
            self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, headers=self.headers,
                                           limits=limits, transport=self._transport)
        return self._http

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        breaker = self.breaker
        if not breaker.allow():
            raise ServerUnavailable(f"the model server is down ({breaker.last_error}); circuit open")
        try:
            result = await self._post(path, body)
        except EngineError:
            raise
        except BaseException:
            # anything else (a cancelled turn, a bad gzip body): the trial, if this was it, did not tell
            breaker.abandon()
            raise
        return result

    async def probe(self, path: str, body: dict[str, Any]) -> Any:
        """One try, no retries and no strike for a refusal: the answer, or None when the server
        refused this request. A server that does not answer at all still counts against the breaker."""
        breaker = self.breaker
        if not breaker.allow():
            raise ServerUnavailable(f"the model server is down ({breaker.last_error}); circuit open")
        try:
            async with self._slots:
                response = await asyncio.wait_for(self.http.post(path, json=body), self.settings.timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            error = f"no answer within {self.settings.timeout_s:g} s"
            breaker.failure(error)
            raise EngineTimeout(f"the model server gave {error}") from None
        except httpx.HTTPError as exc:  # transport errors, and bodies that cannot be decoded, as _post counts them
            breaker.failure(f"{exc.__class__.__name__}: {exc}")
            raise ServerUnavailable(f"the model server failed: {exc.__class__.__name__}") from None
        except BaseException:
            breaker.abandon()
            raise
        breaker.success()
        if response.status_code >= 400:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        breaker = self.breaker
        error = ""
        wait: float | None = None  # the server's Retry-After on the last attempt
        limited = False  # the last attempt was answered HTTP 429
        # one deadline for all attempts: a hung server costs a turn timeout_s, not (retries + 1) times it
        deadline = self._monotonic() + self.settings.timeout_s
        hold = self.not_before - self._monotonic()
        if hold > 0:
            if self.not_before >= deadline:
                self.breaker.abandon()  # if this was the half-open trial, it told nothing: let the next one try
                self.breaker.refusal(f"asked to wait {hold:.3g} s more (Retry-After)", lasting=False)
                raise RateLimited(f"the model server asked to wait {hold:.3g} s more (Retry-After), past this "
                                  f"request's {self.settings.timeout_s:g} s deadline: not sent")
            await self._sleep(hold)
        async with self._slots:
            for attempt in range(self.settings.retries + 1):
                if attempt:
                    pause = wait if wait is not None else BACKOFF_S * 2 ** (attempt - 1) * (0.5 + random.random())
                    if self._monotonic() + pause >= deadline:
                        if wait is not None:  # asked to wait past the deadline: give up now, not after it
                            error += (f" (Retry-After {wait:g} s: past this request's {self.settings.timeout_s:g} s "
                                      "deadline, not retried)")
                        break
                    await self._sleep(pause)
                wait, limited = None, False
                left = deadline - self._monotonic()
                try:
                    response = await self.http.post(path, json=body, timeout=self.timeout_within(left))
                except httpx.TimeoutException as exc:
                    error = f"no answer within {self.settings.timeout_s:g} s ({exc.__class__.__name__})"
                    continue
                except httpx.HTTPError as exc:  # transport errors, and bodies that cannot be decoded
                    error = f"{exc.__class__.__name__}: {exc}"
                    continue
                if response.status_code in RETRY_STATUS:
                    error = f"HTTP {response.status_code} {_snippet(response)}".rstrip()
                    limited = response.status_code == 429
                    if response.status_code in (429, 503):  # the statuses RFC 9110 gives a Retry-After
                        wait = retry_after(response, self._clock.now())
                        if wait is not None:
                            self.not_before = max(self.not_before, self._monotonic() + wait)
                    continue
                if response.status_code >= 400:
                    # our request is wrong, not the server down: no retry and no strike against it
                    breaker.success()
                    self.breaker.refusal(f"HTTP {response.status_code} {_snippet(response)}".rstrip())
                    raise Refused(f"the model server refused the request: HTTP {response.status_code} "
                                  f"{response.text[:300]}", response.status_code, response.text)
                breaker.success()
                try:
                    result: dict[str, Any] = response.json()
                except ValueError as exc:
                    self.breaker.refusal(f"an answer that is not JSON: {_snippet(response)}")
                    raise EngineError(f"the model server's answer is not JSON: {response.text[:200]}") from exc
                return result
        if limited:
            # A rate limit is the server up and answering, asking this client to slow down: no strike
            # against the breaker. Opening it would fail every message fast for breaker_reset_s and tell
            # the admins the server is down when it is not; #status shows it as refusals instead. It is
            # an answer, so a half-open trial that gets it closes the breaker rather than staying stuck.
            breaker.success()
            self.breaker.refusal(error, lasting=False)
            raise RateLimited(f"the model server is rate limiting: {error}")
        breaker.failure(error)
        if error.startswith("no answer"):
            raise EngineTimeout(f"the model server gave {error}")
        raise ServerUnavailable(f"the model server failed: {error}")

    async def ping(self) -> None:
        """GET models as the breaker's trial (or as one more request while it is closed): whether the
        server answers, without waiting for a message. Does nothing while the breaker is open."""
        breaker = self.breaker
        if not breaker.allow():
            return
        try:
            async with self._slots:
                response = await self.http.get("models", timeout=self.timeout_within(PING_TIMEOUT_S))
        except httpx.TimeoutException:
            breaker.failure(f"no answer to GET models within {PING_TIMEOUT_S:g} s")
            return
        except httpx.HTTPError as exc:
            breaker.failure(f"{exc.__class__.__name__}: {exc}")
            return
        except BaseException:
            breaker.abandon()
            raise
        if response.status_code in RETRY_STATUS - {429}:
            breaker.failure(f"HTTP {response.status_code} {_snippet(response)}".rstrip())
        else:  # an answer, a refusal (a key /models wants) or a rate limit included: the server is up
            breaker.success()

    def timeout_within(self, left: float) -> httpx.Timeout:
        left = max(left, 0.05)
        return httpx.Timeout(left, connect=min(left, 5.0))

    def close(self) -> None:
        client, self._http = self._http, None
        if client is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop any more: the connections close with the process
            return
        self._closing = loop.create_task(client.aclose())


class RemoteEngine:
    """The Engine protocol over an OpenAI-compatible server."""

    def __init__(self, settings: ModelSettings, sentiment: SentimentSettings,
                 monotonic: Callable[[], float] = time.monotonic,
                 transports: tuple[httpx.AsyncBaseTransport, httpx.BaseTransport] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, clock: Clock | None = None) -> None:
        """`transports` (async, sync) replace the network in tests; `monotonic` (the breaker's reset and
        each request's deadline), `sleep` (the pauses between attempts) and `clock` (wall time: the
        breaker's down-since, an HTTP-date Retry-After) replace time."""
        assert settings.base_url
        self.settings = settings
        self.base_url = settings.base_url
        self.min_confidence = sentiment.min_confidence
        self.model = settings.name or ""
        self.name = f"{self.model or 'served model'} via {self.base_url}"
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_reset_s, monotonic, clock)
        self.client = _Client(settings, self.breaker, transports[0] if transports else None, monotonic, sleep, clock)
        self._sync_transport = transports[1] if transports else None
        # several prompts per completions request: learnt at start, or at the first batch if the server
        # was down then (None: not known yet); off where the server refuses lists
        self.batch: bool | None = None
        self.unknown = 0  # moods that could not be scored while the server was down
        words = [prompts.LABEL_WORDS[label] for label in LABELS]
        self.mood = _Scorer(self, prompts.CLASSIFY_PREFIX, prompts.CLASSIFY_ITEM, words)
        self.crisis = _Scorer(self, prompts.CRISIS_PREFIX, prompts.CRISIS_ITEM, prompts.CRISIS_WORDS)

    # --- start-up ----------------------------------------------------------------------------

    def check(self) -> None:
        """At start: name the model, calibrate both scorers, learn whether batches work, and refuse a
        server without log-probabilities. A server that is down only opens the breaker."""
        try:
            with httpx.Client(base_url=self.client.base_url, timeout=self.client.timeout,
                              headers=self.client.headers, transport=self._sync_transport) as http:
                if not self.model:
                    listed = http.get("models")
                    listed.raise_for_status()
                    self._name_model(listed.json())
                for scorer in (self.mood, self.crisis):
                    scorer.bias = content_free_bias(self._check_scorer(http, scorer))
        except (ValueError, KeyError, IndexError, TypeError) as exc:  # JSONDecodeError is a ValueError
            # e.g. base_url points at a web page or a login proxy
            hint = "" if self.base_url.rstrip("/").endswith("/v1") else " (OpenAI-compatible APIs usually end in /v1)"
            raise EngineError(f"the model server at {self.base_url} does not look like an OpenAI-compatible API"
                              f"{hint}: {exc.__class__.__name__} {str(exc)[:120]}") from None
        except httpx.HTTPStatusError as exc:
            code = exc.response.status_code
            if code < 500 and code not in RETRY_STATUS:  # a wrong model name or key: say so now, not later
                hint = "" if self.base_url.rstrip("/").endswith("/v1") or code != 404 else \
                    " (OpenAI-compatible APIs usually end in /v1)"
                raise EngineError(f"the model server at {self.base_url} refused the start-up check: HTTP {code} "
                                  f"{exc.response.text[:300]}{hint}") from None
            if code == 429:  # up but rate limiting: not down (see _Client._post); calibrated at the first use
                log.warning("the model server at %s rate limits the start-up check (HTTP 429): starting anyway",
                            self.base_url)
                return
            self.breaker.open(f"HTTP {code}")
            log.warning("the model server at %s answers HTTP %d: starting anyway; replies fall back and moods "
                        "stay unknown until it answers", self.base_url, code)
            return
        except httpx.TransportError as exc:
            self.breaker.open(f"{exc.__class__.__name__}: {exc}")
            log.warning("the model server at %s does not answer (%s): starting anyway; replies fall back and "
                        "moods stay unknown until it does", self.base_url, exc)
            return
        log.info("model server %s: %s, %s", self.base_url, self.model,
                 "batched scoring" if self.batch else "one prompt per scoring request")

    def _name_model(self, listed: Any) -> None:
        self.model = str(listed["data"][0]["id"])
        self.name = f"{self.model} via {self.base_url}"

    async def _ensure_model(self) -> None:
        """The served model's name, when the server was down at start and none was configured."""
        if self.model or self.breaker.state != "closed":
            return  # while the server is down the request fails fast at the breaker; ask once it answers
        try:
            response = await self.client.http.get("models", timeout=self.client.timeout_within(PING_TIMEOUT_S))
            response.raise_for_status()
            self._name_model(response.json())
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.debug("the served model's name is still unknown: %s", exc)  # the requests go out without one
            return
        log.info("model server %s serves %s", self.base_url, self.model)

    def _check_scorer(self, http: httpx.Client, scorer: _Scorer) -> list[list[float]]:
        texts = list(prompts.CONTENT_FREE)
        if self.batch is not False:
            answer = http.post("completions", json=scorer.body(texts))
            if answer.status_code < 400:
                try:
                    rows = scorer.parse(answer.json(), len(texts))
                    self.batch = True
                    return rows
                except NoLogprobs:
                    raise
                except EngineError:
                    pass
            self.batch = False  # e.g. llama-cpp-python's server takes one prompt per request
        rows = []
        for text in texts:
            answer = http.post("completions", json=scorer.body([text]))
            answer.raise_for_status()
            rows += scorer.parse(answer.json(), 1)
        return rows

    # --- the Engine protocol ----------------------------------------------------------------------

    async def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        await self._ensure_model()
        try:
            rows = await self.mood.probs(texts)
        except EngineError:
            self.unknown += len(texts)
            raise
        return [to_sentiment(row, self.min_confidence) for row in rows]

    async def classify(self, text: str) -> Sentiment:
        return (await self.classify_batch([text]))[0]

    async def crisis_score(self, text: str) -> float:
        """Calibrated probability of " yes" to the crisis question, on the shared scale (0.5 flags)."""
        return crisis_scale(float((await self.crisis.probs([text]))[0][0]), LABEL_TOKEN_CRISIS_THRESHOLD)

    async def needs_person(self, text: str) -> bool | None:
        """A model server gives no hidden states for the hand-off head to read."""
        return None

    async def faq_match(self, question: str, answer: str, score: float) -> FaqMatch | None:
        """Nor for the FAQ match head: the BM25 score alone decides."""
        return None

    async def generate(
        self,
        history: list[ChatTurn],
        strategy: Strategy,
        lang: str,
        system: str,
        knowledge: Sequence[str] = (),
        attempt: int = 0,
    ) -> str:
        if knowledge:
            system = prompts.with_knowledge(system, knowledge)
        stops = list(dict.fromkeys(prompts.stop_strings(lang)))[:4]  # the OpenAI API takes at most four
        # asked again (the guard refused the last reply): sample instead of the greedy answer
        await self._ensure_model()
        while True:
            body = {"model": self.model, "messages": prompts.chat_messages(system, history),
                    "max_tokens": self.settings.max_new_tokens, "temperature": 0.7 if attempt else 0.0,
                    "stop": stops}
            try:
                data = await self.client.post("chat/completions", body)
                break
            except Refused as exc:
                # the conversation outgrew the server's context: drop the oldest turns, as the local
                # engine does, rather than failing this chat until its memory expires
                if not exc.too_long or len(history) <= 1:
                    raise
                history = history[2:] if len(history) > 2 else history[-1:]
                log.info("reply prompt too long for the model server; dropped the oldest turns (%d left)", len(history))
        try:
            raw = str(data["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as exc:
            self.breaker.refusal("replies without a message")
            raise EngineError(f"the model server's reply has no message: {str(data)[:200]}") from exc
        self.breaker.useful()
        return clean_reply(raw, max_chars=self.settings.max_reply_chars)

    async def try_server(self) -> None:
        """Ask the server now (the watch job, while it is or was down): a half-open breaker's trial,
        so that a server that is back is seen without waiting for a message."""
        await self.client.ping()

    def status(self) -> str:
        """One line for #status: where the model is and whether it answers."""
        breaker = self.breaker
        if breaker.state == "closed" and breaker.refused:
            return (f"openai backend {self.base_url} ({self.model or '?'}): answers but REFUSES the last "
                    f"{breaker.refused} requests ({breaker.last_refusal}); {self.unknown} moods unknown so far")
        if breaker.state == "closed":
            return f"openai backend {self.base_url} ({self.model or '?'}): up"
        since = breaker.down_since.strftime("%H:%M UTC") if breaker.down_since else "?"
        return (f"openai backend {self.base_url}: DOWN since {since} ({breaker.last_error}); replies fall back, "
                f"{self.unknown} moods unknown so far")

    def close(self) -> None:
        self.client.close()
