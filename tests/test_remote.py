"""The remote engine (model.backend: openai) against a scripted OpenAI-compatible server (no network):
label-token scoring and calibration, batching, the breaker, fallback and recovery, #status, start-up."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from bot import prompts
from bot.app import build_engine
from bot.config import ModelSettings, SentimentSettings, Settings
from bot.domain import ChatTurn, Label, Strategy
from bot.errors import EngineError
from bot.remote import (
    Breaker,
    NoLogprobs,
    RateLimited,
    RemoteEngine,
    ServerUnavailable,
    calibrated,
    content_free_bias,
    retry_after,
    word_probs,
)
from tests.fakes import RecordingSender, speaker

URL = "http://model.test/v1"


class FakeServer:
    """Answers /models, /completions (top log-probabilities) and /chat/completions like vLLM would."""

    def __init__(self, logprobs: bool = True, lists: bool = True) -> None:
        self.logprobs = logprobs
        self.lists = lists  # False: one prompt per request, like llama-cpp-python's server
        self.down = False
        self.refusing = False
        self.requests: list[dict[str, Any]] = []
        self.calls = 0  # every request, answered or not

    def top(self, prompt: str) -> dict[str, float]:
        message = prompt.rsplit("Message: ", 1)[1].split("\n", 1)[0]
        if prompt.startswith(prompts.CRISIS_PREFIX):
            p_yes = 0.9 if "end it" in message else 0.3 if message in prompts.CONTENT_FREE else 0.1
            return {" yes": math.log(p_yes), " no": math.log(1 - p_yes - 0.01), " maybe": math.log(0.01)}
        if message in prompts.CONTENT_FREE:
            # the prompt's own bias: it likes " positive" when there is nothing to judge
            dist = {" positive": 0.6, " neutral": 0.25, " negative": 0.1}
        elif "sad" in message:
            dist = {" negative": 0.55, " neg": 0.05, " positive": 0.15, " neutral": 0.2}
        elif "great" in message:
            dist = {" positive": 0.85, "positive": 0.05, " neutral": 0.05}  # " negative" outside the top
        else:
            dist = {" positive": 0.45, " neutral": 0.4, " negative": 0.1}
        return {k: math.log(v) for k, v in dist.items()}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if self.refusing and not path.endswith("/models"):  # a revoked key; /models needs none here
            return httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}})
        if path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "tiny-instruct"}]})
        body = json.loads(request.content)
        self.requests.append(body)
        if path.endswith("/chat/completions"):
            last = body["messages"][-1]["content"]
            return httpx.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant",
                                                                                   "content": f"I hear you: {last}"}}]})
        batch = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if len(batch) > 1 and not self.lists:
            return httpx.Response(500, text="AssertionError")
        choices = []
        for index, prompt in enumerate(batch):
            logprobs = {"tokens": ["x"], "top_logprobs": [self.top(prompt)]} if self.logprobs else None
            choices.append({"index": index, "text": " x", "logprobs": logprobs})
        return httpx.Response(200, json={"choices": choices[::-1]})  # order must come from "index"


def engine_for(server: FakeServer, clock: list[float] | None = None, wall: Any = None, **settings: Any) -> RemoteEngine:
    model = ModelSettings(backend="openai", base_url=URL, retries=0, breaker_failures=2, breaker_reset_s=10,
                          **settings)
    transport = httpx.MockTransport(server)
    now = clock or [0.0]
    engine = RemoteEngine(model, SentimentSettings(readout="none"), monotonic=lambda: now[0],
                          transports=(transport, transport), clock=wall)
    engine.check()
    return engine


def test_word_probs_sums_spellings_and_floors_missing_words() -> None:
    words = [" positive", " negative", " neutral"]
    top = {" positive": math.log(0.5), "Pos": math.log(0.1), " ne": math.log(0.2), " the": math.log(0.05)}
    probs = word_probs(top, words)
    assert probs is not None
    # " ne" could start negative or neutral: counted for neither; both get the least listed probability
    assert probs[0] == pytest.approx(0.6 / 0.7) and probs[1] == probs[2] == pytest.approx(0.05 / 0.7)
    assert word_probs({" the": 0.0}, words) is None


def test_calibration_removes_the_prompts_own_preference() -> None:
    bias = content_free_bias([[0.6, 0.1, 0.3], [0.6, 0.1, 0.3]])
    [row] = calibrated([[0.6, 0.1, 0.3]], bias)
    assert row == pytest.approx([1 / 3] * 3)


async def test_mood_crisis_and_reply_over_the_api() -> None:
    server = FakeServer()
    engine = engine_for(server)
    assert engine.model == "tiny-instruct" and engine.batch
    sad, great, plain = await engine.classify_batch(["so sad today", "great news", "the bus is at 9"])
    assert sad.label is Label.NEGATIVE and great.label is Label.POSITIVE and plain.label is Label.NEUTRAL
    assert sum(sad.scores.values()) == pytest.approx(1.0, abs=1e-3)
    # one request for the three messages; every prompt starts with the same prefix (prefix caching)
    last = server.requests[-1]
    assert len(last["prompt"]) == 3 and all(p.startswith(prompts.CLASSIFY_PREFIX) for p in last["prompt"])
    assert last["max_tokens"] == 1 and last["logprobs"] == 20
    # on the shared crisis scale, 0.5 and above flags (bot/domain.py crisis_scale)
    assert await engine.crisis_score("I want to end it") >= 0.5
    assert await engine.crisis_score("so tired") < 0.5
    reply = await engine.generate([ChatTurn("user", "hello")], Strategy.PLAIN, "en", "Be kind.", knowledge=("Opens at 9",))
    assert reply == "I hear you: hello"
    chat = server.requests[-1]
    assert chat["messages"][0]["role"] == "system" and "- Opens at 9" in chat["messages"][0]["content"]
    engine.close()


async def test_one_prompt_per_request_where_the_server_refuses_lists() -> None:
    server = FakeServer(lists=False)
    engine = engine_for(server)
    assert not engine.batch
    del server.requests[:]
    labels = [s.label for s in await engine.classify_batch(["so sad", "great"])]
    assert labels == [Label.NEGATIVE, Label.POSITIVE]
    assert all(isinstance(r["prompt"], str) for r in server.requests)


def test_a_server_without_logprobs_is_refused_at_start() -> None:
    with pytest.raises(NoLogprobs, match="no token log-probabilities"):
        engine_for(FakeServer(logprobs=False))


def test_a_refused_start_up_check_is_an_error_that_says_so() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "model 'nope' not found"})

    transport = httpx.MockTransport(refuse)
    engine = RemoteEngine(ModelSettings(backend="openai", base_url=URL, name="nope"), SentimentSettings(),
                          transports=(transport, transport))
    with pytest.raises(EngineError, match="HTTP 404.*not found"):
        engine.check()


def test_a_server_down_at_start_opens_the_breaker() -> None:
    server = FakeServer()
    server.down = True
    engine = engine_for(server)
    assert engine.breaker.state == "open" and "DOWN" in engine.status()


async def test_the_model_name_is_not_asked_for_while_the_breaker_is_open() -> None:
    server = FakeServer()
    server.down = True
    now = [0.0]
    engine = engine_for(server, now)  # down at start: no name learnt, the breaker open
    calls = server.calls
    with pytest.raises(EngineError):
        await engine.classify("hello")
    assert server.calls == calls  # failed at the breaker: no GET models first
    server.down, now[0] = False, 11.0  # back, and the breaker half-open
    await engine.classify("hello")  # the trial answers and closes the breaker
    await engine.classify("hello")
    assert engine.model == "tiny-instruct"


def test_breaker_opens_after_failures_and_lets_one_trial_through() -> None:
    now = [0.0]
    breaker = Breaker(failures=2, reset_s=5, monotonic=lambda: now[0])
    breaker.failure("x")
    assert breaker.allow()
    breaker.failure("x")
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 6
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.success()
    assert breaker.state == "closed"


async def test_server_down_falls_back_and_says_so_then_recovers(clock: Any, store: Any) -> None:
    from bot.app import Application

    server = FakeServer()
    now = [0.0]
    engine = engine_for(server, now)
    settings = Settings.model_validate({"admin": {"ids": ["boss"]}, "schedule": {"enabled": False}})
    sender = RecordingSender()
    app = Application(settings, engine, sender, clock, store)

    say = speaker(app, sender, clock)

    assert await say("so sad") == ["I hear you: so sad"]
    server.down = True
    for n in range(3):
        calls = server.calls
        turn_replies = await say("so sad again")
        if n == 0:  # the mood request failed: the turn asks the model nothing more (crisis check, reply)
            assert server.calls - calls == 1
        # no generated reply and no promise left hanging: the unavailable line, and a person is told
        assert turn_replies[0] == settings.reply.unavailable["en"]
        assert [m.chat_id for m in sender.sent[-len(turn_replies):]] == ["alice", "boss"]
        assert turn_replies[1].startswith(f"🙋 Hand-off #{n + 1}: the model did not answer")
    assert engine.breaker.state == "open"
    [status] = await say("#status", who="boss")
    assert "DOWN" in status and "moods unknown" in status
    # unknown moods are not recorded as a guess: only the first message's mood is in the history
    assert [p.label for p in store.moods("alice")] == [Label.NEGATIVE]
    calls = len(server.requests)
    await say("sad still")
    assert len(server.requests) == calls  # the open breaker fails fast, without calling the server
    server.down = False
    now[0] = 11  # past breaker_reset_s: the next call is the trial
    assert await say("great news") == ["I hear you: great news"]
    [status] = await say("#status", who="boss")
    assert ": up" in status
    await app.__aexit__(None, None, None)  # closes the engine and the store, as leaving `async with` does


def test_backend_is_chosen_by_config() -> None:
    with pytest.raises(Exception, match="base_url"):
        Settings.model_validate({"model": {"backend": "openai"}})
    settings = Settings.model_validate({"model": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1",
                                                  "timeout_s": 1, "retries": 0}})
    engine = build_engine(settings)  # nothing listens on port 9: it starts with the breaker open
    assert isinstance(engine, RemoteEngine) and engine.breaker.state == "open"


def test_api_key_comes_from_the_environment_and_is_never_shown() -> None:
    from bot.config import load_settings

    settings = load_settings(None, env={"MOODBOT__MODEL__BACKEND": "openai", "MOODBOT__MODEL__BASE_URL": URL,
                                        "MOODBOT__MODEL__API_KEY": "12345"})
    assert settings.model.api_key is not None and settings.model.api_key.get_secret_value() == "12345"
    assert "12345" not in repr(settings) and "12345" not in RemoteEngine(settings.model, SentimentSettings()).status()


async def test_engine_errors_are_engine_errors() -> None:
    server = FakeServer()
    engine = engine_for(server)
    server.down = True
    with pytest.raises(EngineError):
        await engine.classify("so sad")


class HungServer:
    """A real HTTP listener on loopback that accepts requests and never answers (a hung model server)."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: Any = None

    async def __aenter__(self) -> str:
        import asyncio
        import contextlib

        async def hold(reader: Any, writer: Any) -> None:
            self.requests += 1
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def test_a_hung_server_costs_one_deadline_and_a_crisis_does_not_wait_for_it(clock: Any, store: Any) -> None:
    from bot.app import Application
    from bot.config import CrisisSettings

    first, second = HungServer(), HungServer()
    async with first as url, second as crisis_url:
        # retries within one deadline: a hung server is asked once per request, not retries + 1 times
        engine = RemoteEngine(ModelSettings(backend="openai", base_url=url, name="m", timeout_s=0.3, retries=2),
                              SentimentSettings(readout="none"))
        with pytest.raises(EngineError, match="no answer"):
            await engine.classify("so sad")
        assert engine.mood.bias is None and first.requests == 1  # never answered, asked once
        engine.close()

        # a crisis the phrase list names gets the vetted reply and the alert; the turn asks the hung
        # server once (the mood, bounded) and nothing more
        settings = Settings.model_validate({"admin": {"ids": ["boss"]}, "schedule": {"enabled": False}})
        model = ModelSettings(backend="openai", base_url=crisis_url, name="m", timeout_s=0.3, retries=2)
        app = Application(settings, RemoteEngine(model, SentimentSettings(readout="none")), RecordingSender(), clock, store)
        say = speaker(app, app.outbound.sender, clock)  # type: ignore[arg-type]
        sent = await say("I want to kill myself")
        assert sent[0] == CrisisSettings().text("reply", "en") and any("[critical]" in line for line in sent[1:])
        [point] = store.moods("alice")
        assert point.label is Label.NEGATIVE  # unread, a crisis is recorded as negative, not as neutral
        assert second.requests == 1
        await app.__aexit__(None, None, None)


async def test_answers_of_the_wrong_shape_are_engine_errors_and_status_says_so() -> None:
    server = FakeServer()
    engine = engine_for(server)
    for bad in ([], {"choices": ["x"]}, {"choices": [{"index": 0, "logprobs": ["x"]}]}):
        server_answer = httpx.MockTransport(lambda request, bad=bad: httpx.Response(200, json=bad))
        engine.client._http = None
        engine.client._transport = server_answer
        with pytest.raises(EngineError):
            await engine.classify("so sad")
    status = engine.status()
    assert "REFUSES the last 3 requests" in status and engine.breaker.state == "closed"
    engine.client._http, engine.client._transport = None, httpx.MockTransport(server)
    await engine.classify("so sad")
    assert engine.status().endswith(": up")
    engine.close()


async def test_a_broken_trial_answer_does_not_keep_the_breaker_shut() -> None:
    server = FakeServer()
    now = [0.0]
    engine = engine_for(server, now)
    engine.breaker.open("HTTP 503")
    now[0] = 11  # half-open: the next request is the trial

    def broken_gzip(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip at all")

    engine.client._http, engine.client._transport = None, httpx.MockTransport(broken_gzip)
    with pytest.raises(EngineError):
        await engine.classify("so sad")
    engine.client._http, engine.client._transport = None, httpx.MockTransport(server)
    now[0] = 22  # past the reset again: another trial is let through, and it succeeds
    assert (await engine.classify("so sad")).label is Label.NEGATIVE
    assert engine.breaker.state == "closed"
    engine.close()


async def test_a_broken_answer_to_the_batch_probe_is_an_engine_error() -> None:
    engine = engine_for(FakeServer())
    engine.batch = None  # not learnt at start: the first list of texts probes the server

    def broken_gzip(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip at all")

    engine.client._http, engine.client._transport = None, httpx.MockTransport(broken_gzip)
    with pytest.raises(EngineError, match="DecodingError"):  # not httpx's own error, which no stage expects
        await engine.classify_batch(["so sad", "so happy"])
    assert engine.breaker.failed == 1  # counted as a failure, as any request's broken answer is
    engine.close()


async def test_a_conversation_too_long_for_the_server_drops_its_oldest_turns() -> None:
    server = FakeServer()
    engine = engine_for(server)

    def small_context(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/chat/completions") and len(body["messages"]) > 4:
            return httpx.Response(400, json={"error": {"message": "This model's maximum context length is 2048 tokens"}})
        return server(request)

    engine.client._http, engine.client._transport = None, httpx.MockTransport(small_context)
    history = [ChatTurn("user", "one"), ChatTurn("assistant", "ok"), ChatTurn("user", "two"),
               ChatTurn("assistant", "ok"), ChatTurn("user", "three")]
    assert await engine.generate(history, Strategy.PLAIN, "en", "Be kind.") == "I hear you: three"
    assert [m["content"] for m in server.requests[-1]["messages"][1:]] == ["two", "ok", "three"]
    engine.close()


@pytest.mark.parametrize("url", ["127.0.0.1:8080/v1", "localhost:8080/v1", "ftp://gpu-box/v1", "http:///v1"])
def test_a_base_url_without_http_or_host_is_refused(url: str) -> None:
    with pytest.raises(Exception, match="must be an http"):
        ModelSettings(backend="openai", base_url=url)


def test_a_page_that_is_not_the_api_is_a_clear_error_at_start() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>login</html>"))
    engine = RemoteEngine(ModelSettings(backend="openai", base_url="http://model.test/"), SentimentSettings(),
                          transports=(transport, transport))
    with pytest.raises(EngineError, match="does not look like an OpenAI-compatible API .*end in /v1"):
        engine.check()


# --- Retry-After and rate limits -----------------------------------------------------------------


class Paced:
    """An engine whose time is a list: `sleep` records each pause and moves the monotonic clock and
    the wall clock by it, so that no test waits."""

    def __init__(self, answers: list[httpx.Response], clock: Any, **settings: Any) -> None:
        self.answers = answers
        self.calls = 0
        self.now = [0.0]
        self.pauses: list[float] = []
        self.clock = clock
        transport = httpx.MockTransport(self.answer)
        model = ModelSettings(backend="openai", base_url=URL, name="m", **{"retries": 3, "breaker_failures": 2, **settings})
        self.engine = RemoteEngine(model, SentimentSettings(readout="none"), monotonic=lambda: self.now[0],
                                   transports=(transport, transport), sleep=self.sleep, clock=clock)

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]})

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now[0] += seconds
        self.clock.advance(seconds=seconds)

    async def reply(self) -> str:
        return await self.engine.generate([ChatTurn("user", "hi")], Strategy.PLAIN, "en", "Be kind.")


def limited(status: int = 429, after: str | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"retry-after": after} if after is not None else {}, text="slow down")


async def test_retry_after_in_seconds_is_the_pause_before_the_next_attempt(clock: Any) -> None:
    paced = Paced([limited(after="7")], clock, timeout_s=60)
    assert await paced.reply() == "ok"
    assert paced.pauses == [7.0] and paced.calls == 2  # the server's 7 s, not the client's 0.25-0.75 s backoff
    assert paced.engine.breaker.state == "closed" and paced.engine.breaker.failed == 0


async def test_retry_after_past_the_deadline_stops_at_once_without_sleeping(clock: Any) -> None:
    paced = Paced([limited(after="120")], clock, timeout_s=60)
    with pytest.raises(RateLimited, match=r"HTTP 429 slow down \(Retry-After 120 s: past this request's 60 s deadline"):
        await paced.reply()
    assert paced.pauses == [] and paced.calls == 1
    # a rate limit is the server up: no strike against the breaker, and #status says it refuses
    assert paced.engine.breaker.failed == 0 and paced.engine.breaker.state == "closed"
    assert "REFUSES the last 1 requests (HTTP 429 slow down" in paced.engine.status()
    # the remaining deadline counts, not the whole: 30 s waited already, a 40 s Retry-After is too long
    paced = Paced([limited(after="30"), limited(after="40")], clock, timeout_s=60)
    with pytest.raises(RateLimited, match="Retry-After 40 s"):
        await paced.reply()
    assert paced.pauses == [30.0] and paced.calls == 2


async def test_retry_after_as_an_http_date(clock: Any) -> None:
    from datetime import timedelta
    from email.utils import format_datetime

    when = format_datetime(clock.now() + timedelta(seconds=5), usegmt=True)  # "Thu, 01 Jan 2026 12:00:05 GMT"
    paced = Paced([limited(503, when)], clock, timeout_s=60)
    assert await paced.reply() == "ok" and paced.pauses == [5.0]
    # a 503 that asks for longer than the deadline: not retried, and it is a failure of the server
    late = format_datetime(clock.now() + timedelta(minutes=10), usegmt=True)
    paced = Paced([limited(503, late)], clock, timeout_s=60)
    with pytest.raises(ServerUnavailable, match="HTTP 503 .*Retry-After 600 s: past"):
        await paced.reply()
    assert paced.pauses == [] and paced.engine.breaker.failed == 1


def test_retry_after_header_forms(clock: Any) -> None:
    now = clock.now()
    assert retry_after(limited(after="2.5"), now) == 2.5
    assert retry_after(limited(after="-3"), now) == 0.0
    assert retry_after(limited(after="Wed, 31 Dec 2025 12:00:00 GMT"), now) == 0.0  # in the past: now
    assert retry_after(limited(after="Thu, 01 Jan 2026 12:01:00 -0000"), now) == 60.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert retry_after(limited(after=bad), now) is None  # the client's own backoff then


async def test_rate_limits_do_not_open_the_breaker_but_server_errors_do(clock: Any) -> None:
    paced = Paced([limited(after="120") for _ in range(4)], clock, timeout_s=60, retries=0)
    for _ in range(4):
        with pytest.raises(RateLimited):
            await paced.reply()
    # the server asked for 120 s: the three requests after the first were not sent at all
    assert paced.engine.breaker.state == "closed" and paced.calls == 1 and paced.pauses == []
    assert "REFUSES the last 4 requests (asked to wait 120 s more (Retry-After))" in paced.engine.status()
    paced.now[0] = 121
    for _ in range(3):
        with pytest.raises(RateLimited):
            await paced.reply()
    assert paced.calls == 2  # one more sent when the time was up, then held again
    paced.now[0] = 242
    paced.answers = [httpx.Response(503, text="overloaded"), httpx.Response(503, text="overloaded")]
    for _ in range(2):
        with pytest.raises(ServerUnavailable):
            await paced.reply()
    assert paced.engine.breaker.state == "open"


def test_a_rate_limited_start_up_check_starts_with_the_breaker_closed() -> None:
    transport = httpx.MockTransport(lambda request: limited(after="30"))
    engine = RemoteEngine(ModelSettings(backend="openai", base_url=URL, name="m"), SentimentSettings(),
                          transports=(transport, transport))
    engine.check()
    assert engine.breaker.state == "closed" and engine.mood.bias is None  # calibrated at the first use


async def test_a_trial_answered_429_closes_the_breaker_instead_of_leaving_it_stuck(clock: Any) -> None:
    paced = Paced([limited(after="120")], clock, timeout_s=60, breaker_reset_s=10)
    paced.engine.breaker.open("HTTP 502")
    paced.now[0] = 11  # half-open: this request is the trial
    with pytest.raises(RateLimited):
        await paced.reply()
    assert paced.engine.breaker.state == "closed"
    paced.now[0] += 120
    assert await paced.reply() == "ok"


async def test_every_request_waits_out_the_server_s_retry_after(clock: Any) -> None:
    paced = Paced([limited(after="120")], clock, timeout_s=60, retries=0)
    with pytest.raises(RateLimited):
        await paced.reply()
    paced.now[0] = 100  # 20 s left of the server's 120: within this request's deadline, so it waits
    assert await paced.reply() == "ok"
    assert paced.pauses == [20.0] and paced.calls == 2


async def test_a_half_open_trial_held_by_retry_after_does_not_keep_the_breaker_shut(clock: Any) -> None:
    paced = Paced([httpx.Response(503, headers={"retry-after": "300"}, text="down")], clock, timeout_s=60,
                  retries=0, breaker_failures=1, breaker_reset_s=10)
    with pytest.raises(ServerUnavailable):
        await paced.reply()
    assert paced.engine.breaker.state == "open"
    paced.now[0] = 11  # half-open, but the server asked for 300 s: the trial is not sent
    with pytest.raises(RateLimited):
        await paced.reply()
    paced.now[0] = 301  # the next trial is let through, and it succeeds
    assert await paced.reply() == "ok" and paced.engine.breaker.state == "closed"


# --- the "model server down" alert and the "back" notice -------------------------------------------


def _watched(clock: Any, store: Any) -> tuple[FakeServer, list[float], RemoteEngine, Any, Any, Any]:
    """An app on a fake model server, `say` to send it a message, `watch` to run one check."""
    from bot.app import Application

    server = FakeServer()
    now = [0.0]
    engine = engine_for(server, now, wall=clock)
    settings = Settings.model_validate({"admin": {"ids": ["boss"]}, "schedule": {"enabled": False}})
    sender = RecordingSender()
    app = Application(settings, engine, sender, clock, store)

    async def watch() -> list[str]:
        clock.advance(seconds=30)  # one check interval (schedule.model_check_every_s)
        before = len(sender.sent)
        assert await app.scheduler.run("watch_model_server")
        return [m.text for m in sender.sent[before:]]

    return server, now, engine, app, speaker(app, sender, clock), watch


async def test_one_alert_when_the_server_goes_down_and_one_notice_when_it_is_back(clock: Any, store: Any) -> None:
    server, now, engine, app, say, watch = _watched(clock, store)

    await say("so sad")
    assert await watch() == []
    server.down = True
    for _ in range(3):
        await say("so sad again")  # each message: the unavailable line and its hand-off, as before
    assert engine.breaker.state == "open" and engine.breaker.down_since is not None
    down_at = engine.breaker.down_since.astimezone().strftime("%H:%M")  # schedule.timezone null: local time
    [alert] = await watch()
    assert alert.startswith("🔌 Alert #4: model server down since " + down_at) and "ConnectError" in alert
    assert "tiny-instruct via http://model.test/v1" in alert
    for _ in range(3):  # more failing messages and checks: nothing more about the server
        await say("still sad")
        assert await watch() == []
    [open_model] = [a for a in store.open_alerts() if a.kind == "model"]
    assert open_model.reason.startswith(f"model server down since {down_at}: ")
    server.down = False
    now[0] = 100  # past breaker_reset_s: the check itself is the trial, no message needed
    [back] = await watch()
    assert back == "✅ model server back after 4 min (tiny-instruct via http://model.test/v1)."
    assert engine.breaker.state == "closed"
    assert await watch() == []
    assert [a for a in store.open_alerts() if a.kind == "model"] == []  # the outage alert is not reminded any more
    assert ("moodbot", "ack") in [(a["actor"], a["action"]) for a in store.actions()]
    await app.__aexit__(None, None, None)


async def test_one_alert_when_the_server_refuses_every_request_and_one_notice_when_it_answers(
        clock: Any, store: Any) -> None:
    server, _, engine, app, say, watch = _watched(clock, store)

    await say("so sad")
    server.refusing = True  # the key was revoked: the server is up and says 401 to everything
    await say("so sad again")
    assert await watch() == []  # one message refused is not yet an outage
    for _ in range(2):
        await say("still sad")
    assert engine.breaker.state == "closed" and engine.breaker.refusing_since is not None
    [alert] = await watch()
    assert "model server refuses every request since" in alert and "HTTP 401" in alert and "Incorrect API key" in alert
    await say("sad")
    assert await watch() == []  # still refusing: nothing more, and the ping to /models does not end it
    server.refusing = False
    assert await watch() == []  # no request of use since: not back yet
    await say("fine now")
    [back] = await watch()
    assert back.startswith("✅ model server back after")
    assert [a for a in store.open_alerts() if a.kind == "model"] == []
    await app.__aexit__(None, None, None)
