"""The openai backend against a real model server: llama-cpp-python's llama.cpp server on 127.0.0.1
serving the embedded GGUF (marked `server`). Mood, the crisis check and replies over the API, the
agreement with the local label-token path, and the server going away and coming back."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import Application
from bot.config import ModelSettings, SentimentSettings, Settings
from bot.domain import ChatTurn, Label, Strategy
from bot.remote import RemoteEngine
from tests.fakes import RecordingSender, speaker
from tests.llama_server import LlamaServer


def guard_leak(reply: str) -> str | None:
    from bot.guard import check

    reason = check(reply, "", "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in reply) else "en", None, [reply])
    return reason if reason == "template leak" else None

pytestmark = pytest.mark.server

# a fixed set, none of it from the evaluation data
FIXED = [
    ("今天考试没考好，心情很低落", Label.NEGATIVE),
    ("太好了，我拿到offer了，超级开心！", Label.POSITIVE),
    ("I hate this, worst day ever.", Label.NEGATIVE),
    ("I just got engaged, so happy!", Label.POSITIVE),
    ("What time does the store open tomorrow?", Label.NEUTRAL),
    ("请问明天几点开门？", Label.NEUTRAL),
    ("My dog died this morning and I can't stop crying.", Label.NEGATIVE),
    ("我们周末去爬山吧，天气很好", Label.POSITIVE),
    ("The meeting moved to room 204.", Label.NEUTRAL),
    ("又加班到十二点，真的受够了", Label.NEGATIVE),
    ("Thank you so much, this made my day!", Label.POSITIVE),
    ("快递到了吗？", Label.NEUTRAL),
]
# The tolerance against the local label-token path: labels agree on at least 11 of the 12, and no
# calibrated probability differs by more than 0.15. The runtimes differ: llama.cpp computes on the
# Q4_K_M weights, the local engine on weights dequantized from them and re-quantized to int8, and
# the API path sees only the top 20 tokens. Measured here: 12 of 12 agree, largest difference 0.074.
MIN_AGREE = 11
MAX_PROB_DIFF = 0.15


def remote(url: str, **settings: Any) -> RemoteEngine:
    engine = RemoteEngine(ModelSettings(backend="openai", base_url=url, timeout_s=60, **settings),
                          SentimentSettings(readout="none"))
    engine.check()
    return engine


async def test_mood_crisis_and_replies_over_the_server(llama_server: LlamaServer) -> None:
    engine = remote(llama_server.base_url)
    assert engine.model == "gemma-3-270m" and not engine.batch  # llama-cpp-python: one prompt per request
    moods = await engine.classify_batch([text for text, _ in FIXED])
    right = sum(m.label is label for m, (_, label) in zip(moods, FIXED))
    assert right >= 7, [(t, m.label.value) for (t, _), m in zip(FIXED, moods)]  # a 270M model: most, not all
    assert all(abs(sum(m.scores.values()) - 1) < 1e-3 for m in moods)
    crisis = await engine.crisis_score("我真的不想活了，活着太痛苦了")
    calm = await engine.crisis_score("What time does the store open tomorrow?")
    assert crisis > calm
    for lang, text in (("zh", "今天考试没考好，心情很低落"), ("en", "I failed my exam and I feel awful.")):
        system = f"You are a kind friend. {'请用简体中文回复。' if lang == 'zh' else 'Reply in English.'}"
        reply = await engine.generate([ChatTurn("user", text)], Strategy.COMFORT, lang, system)
        # the server formats the chat with Gemma's template: nothing of the prompt or another template leaks
        assert reply.strip() and guard_leak(reply) is None and "kind friend" not in reply, (lang, reply)
    engine.close()


@pytest.mark.model
async def test_labels_agree_with_the_local_label_token_path(llama_server: LlamaServer) -> None:
    """The same GGUF, the same prompt, the same calibration: the API path and ModelEngine (readout
    none) agree on at least MIN_AGREE of the fixed messages and within MAX_PROB_DIFF per score."""
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model

    settings = ModelSettings(adapter="none")  # the server serves the GGUF as shipped, without the adapter
    local = ModelEngine(load_model(settings), settings, SentimentSettings(readout="none"))
    texts = [text for text, _ in FIXED]
    here = local.classify_batch(texts)
    there = await remote(llama_server.base_url).classify_batch(texts)
    agree = sum(a.label is b.label for a, b in zip(here, there))
    worst = max(abs(a.scores[k] - b.scores[k]) for a, b in zip(here, there) for k in a.scores)
    detail = [(t, a.label.value, b.label.value, a.scores, b.scores) for t, a, b in zip(texts, here, there)]
    assert agree >= MIN_AGREE and worst <= MAX_PROB_DIFF, detail


async def test_server_down_falls_back_then_recovers(llama_server: LlamaServer, clock: Any, store: Any) -> None:
    server = LlamaServer(llama_server.gguf)  # a server of its own, to stop and start again
    server.start()
    try:
        now = [0.0]
        engine = RemoteEngine(ModelSettings(backend="openai", base_url=server.base_url, timeout_s=30, retries=1,
                                            breaker_failures=2, breaker_reset_s=5),
                              SentimentSettings(readout="none"), monotonic=lambda: now[0])
        engine.check()
        settings = Settings.model_validate({"admin": {"ids": ["boss"]}, "schedule": {"enabled": False}})
        sender = RecordingSender()
        app = Application(settings, engine, sender, clock, store)

        say = speaker(app, sender, clock)

        # whether the reply guard keeps a 270M model's reply is not the point here: that the server answers is
        await say("I failed my exam and I feel awful.")
        assert len(store.moods("alice")) == 1 and engine.breaker.state == "closed"
        server.stop()
        [reply, handoff] = await say("Still feeling awful today.")
        assert reply == settings.reply.unavailable["en"]  # the model did not answer: no generated reply
        assert handoff.startswith("🙋 Hand-off #1: the model did not answer")  # and a person is told
        # one failed request a turn (later stages do not wait for the model again): the second opens the breaker
        assert engine.breaker.state == "closed"
        await say("Still awful.")
        assert engine.breaker.state == "open"
        [status] = await say("#status", who="boss")
        assert "DOWN" in status and "replies fall back" in status
        assert len(store.moods("alice")) == 1  # the unknown mood was not recorded as a guess
        server.start()  # the same port
        now[0] = 6  # past breaker_reset_s
        await say("Thanks, I feel a bit better now.")
        assert engine.breaker.state == "closed"
        assert (await engine.generate([ChatTurn("user", "Thanks!")], Strategy.PLAIN, "en", "Reply in English.")).strip()
        [status] = await say("#status", who="boss")
        assert ": up" in status and len(store.moods("alice")) == 2
        await app.__aexit__(None, None, None)
    finally:
        server.stop()


async def test_a_bot_started_before_its_server_works_once_the_server_is_up(
        llama_server: LlamaServer, clock: Any, store: Any) -> None:
    """llama-cpp-python refuses a list of prompts with HTTP 500: a bot that could not learn that at
    start must not read the refusal as the server being down, for ever."""
    server = LlamaServer(llama_server.gguf)
    now = [0.0]
    engine = RemoteEngine(ModelSettings(backend="openai", base_url=server.base_url, timeout_s=30, retries=1,
                                        breaker_failures=2, breaker_reset_s=5),
                          SentimentSettings(readout="none"), monotonic=lambda: now[0])
    engine.check()  # nothing listens yet: the breaker opens, the bot starts anyway
    assert engine.breaker.state == "open" and engine.batch is None and engine.model == ""
    settings = Settings.model_validate({"admin": {"ids": ["boss"]}, "schedule": {"enabled": False}})
    app = Application(settings, engine, RecordingSender(), clock, store)
    say = speaker(app, app.outbound.sender, clock)  # type: ignore[arg-type]
    try:
        server.start()
        now[0] = 6  # past breaker_reset_s: the next call is the trial
        await say("I failed my exam and I feel awful.")
        assert engine.breaker.state == "closed" and engine.batch is False and engine.model == "gemma-3-270m"
        await say("我们周末去爬山吧，天气很好")
        assert len(store.moods("alice")) == 2 and engine.unknown == 0
        [status] = await say("#status", who="boss")
        assert ": up" in status
        await app.__aexit__(None, None, None)
    finally:
        server.stop()
