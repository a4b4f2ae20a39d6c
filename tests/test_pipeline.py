"""The whole pipeline through Application.process with a fake engine and a recording sender."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app import Application
from bot.clock import ManualClock
from bot.config import Settings, TriggerSettings
from bot.domain import Label, Strategy
from bot.errors import EngineError
from tests.fakes import FakeEngine, RecordingSender, TimeoutEngine, make_message


@pytest.fixture(autouse=True)
def _store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every Application built here keeps its database in the test's own folder
    monkeypatch.setenv("MOODBOT_TEST_DATA", str(tmp_path))


def make_app(clock: ManualClock, engine: FakeEngine | None = None, **sections: object) -> tuple[Application, RecordingSender]:
    data = {"store": {"data_dir": os.environ["MOODBOT_TEST_DATA"]}, "schedule": {"enabled": False}, **sections}
    settings = Settings.model_validate(data)
    sender = RecordingSender()
    app = Application(settings, engine or FakeEngine(), sender, clock)
    app.outbound.retry_wait_s = 0
    return app, sender


@pytest.mark.parametrize(
    ("text", "label", "strategy"),
    [
        ("I feel so sad today", Label.NEGATIVE, Strategy.COMFORT),
        ("I'm so happy, great news!", Label.POSITIVE, Strategy.CELEBRATE),
        ("when do you open?", Label.NEUTRAL, Strategy.PLAIN),
        ("unsure about this", Label.NEUTRAL, Strategy.PLAIN),  # a weak mood is neutral (the engine decides): plain
    ],
)
async def test_strategy_follows_mood(clock: ManualClock, text: str, label: Label, strategy: Strategy) -> None:
    app, sender = make_app(clock)
    turn = await app.process(make_message(text))
    assert turn is not None and turn.sentiment is not None
    assert turn.sentiment.label is label
    assert turn.strategy is strategy
    assert [m.text for m in sender.sent] == [f"[{strategy.value}] I hear you."]


async def test_reply_in_the_senders_language(clock: ManualClock) -> None:
    engine = FakeEngine()
    app, sender = make_app(clock, engine)
    await app.process(make_message("今天心情很低落"))
    assert engine.generated[-1][2] == "zh"
    assert sender.sent[0].text.startswith("[comfort] 好的")


async def test_reply_in_the_wrong_language_falls_back(clock: ManualClock) -> None:
    app, sender = make_app(clock, FakeEngine(reply="Sure, here you go."))
    await app.process(make_message("你们周末营业吗？"))
    assert sender.sent[0].text in Settings().reply.fallbacks["plain"]["zh"]


@pytest.mark.parametrize(
    "message",
    [
        make_message("hi", is_self=True),
        make_message("   "),
        make_message("\x00\x01\x02"),
        make_message("old", sent_at=ManualClock().now() - timedelta(hours=2)),
    ],
    ids=["self", "blank", "control-only", "stale"],
)
async def test_filtered_messages_get_no_reply_and_no_model_call(clock: ManualClock, message: object) -> None:
    engine = FakeEngine()
    app, sender = make_app(clock, engine)
    turn = await app.process(message)  # type: ignore[arg-type]
    assert turn is not None and turn.stopped
    assert sender.sent == [] and engine.classified == []


async def test_duplicate_message_id_is_answered_once(clock: ManualClock) -> None:
    app, sender = make_app(clock)
    message = make_message("hello")
    await app.process(message)
    await app.process(message)
    assert len(sender.sent) == 1


async def test_non_text_is_ignored_or_answered_with_configured_text(clock: ManualClock) -> None:
    app, sender = make_app(clock)
    await app.process(make_message("", kind="image"))
    assert sender.sent == []
    app, sender = make_app(clock, triggers={"non_text_reply": "I can only read text."})
    await app.process(make_message("", kind="voice"))
    assert [m.text for m in sender.sent] == ["I can only read text."]


async def test_group_message_without_mention_is_recorded_not_answered(clock: ManualClock) -> None:
    app, sender = make_app(clock, triggers={"all_rooms": True})
    turn = await app.process(make_message("I'm so sad", chat_id="room@chatroom", is_group=True))
    assert turn is not None and turn.sentiment is not None and turn.sentiment.label is Label.NEGATIVE
    assert turn.record_only and sender.sent == []


async def test_group_mention_gets_a_reply_that_mentions_the_sender(clock: ManualClock) -> None:
    app, sender = make_app(clock, triggers={"allow_rooms": ["room@chatroom"]})
    await app.process(make_message("@moodbot great news!", chat_id="room@chatroom", is_group=True, mentions_me=True))
    assert sender.sent[0].chat_id == "room@chatroom" and sender.sent[0].mention_ids == ("alice",)


async def test_group_prefix_triggers_and_is_stripped(clock: ManualClock) -> None:
    engine = FakeEngine()
    app, sender = make_app(clock, engine, triggers={"all_rooms": True, "group_prefix": "#bot"})
    await app.process(make_message("#bot what time is it", chat_id="r@chatroom", is_group=True))
    assert engine.generated[-1][0][-1].text == "what time is it"
    assert len(sender.sent) == 1


async def test_rooms_not_allowed_are_ignored(clock: ManualClock) -> None:
    engine = FakeEngine()
    app, sender = make_app(clock, engine, triggers={"allow_rooms": ["other@chatroom"]})
    await app.process(make_message("@bot hi", chat_id="r@chatroom", is_group=True, mentions_me=True))
    assert sender.sent == [] and engine.classified == []


async def test_private_prefix_and_contact_lists(clock: ManualClock) -> None:
    app, sender = make_app(clock, triggers={"private_prefix": "bot ", "block_contacts": ["mallory"]})
    await app.process(make_message("hello"))
    await app.process(make_message("bot hello", sender_id="mallory", chat_id="mallory"))
    await app.process(make_message("bot hello"))
    assert len(sender.sent) == 1
    app, sender = make_app(clock, triggers={"allow_contacts": ["bob"]})
    await app.process(make_message("hello"))
    await app.process(make_message("hello", sender_id="bob", chat_id="bob"))
    assert [m.chat_id for m in sender.sent] == ["bob"]


async def test_engine_timeout_gives_the_fallback_reply(clock: ManualClock) -> None:
    app, sender = make_app(clock, TimeoutEngine())
    turn = await app.process(make_message("I feel sad"))
    assert turn is not None and turn.sentiment is not None and turn.sentiment.confidence == 0.0
    # the model did not answer: the unavailable line, and a hand-off so that a person answers
    assert len(sender.sent) == 1 and sender.sent[0].text == Settings().reply.unavailable["en"]
    assert [(a.kind, a.reason) for a in turn.alerts] == [("handoff", "the model did not answer")]


async def test_unexpected_stage_error_is_contained(clock: ManualClock) -> None:
    app, sender = make_app(clock, FakeEngine(fail=ZeroDivisionError("bug")))  # type: ignore[arg-type]
    turn = await app.process(make_message("hi"))
    assert turn is not None and turn.stopped == "error in reply"
    assert app.pipeline.errors == 1
    # the next message is still served
    app.engine.fail = None  # type: ignore[attr-defined]
    await app.process(make_message("hi again"))
    assert len(sender.sent) == 1


async def test_memory_keeps_recent_turns_and_expires(clock: ManualClock) -> None:
    engine = FakeEngine()
    app, _ = make_app(clock, engine, reply={"memory_ttl_minutes": 10})
    await app.process(make_message("first"))
    await app.process(make_message("second"))
    assert [t.text for t in engine.generated[-1][0]] == ["first", "[plain] I hear you.", "second"]
    clock.advance(minutes=11)
    await app.process(make_message("third", sent_at=clock.now()))
    assert [t.text for t in engine.generated[-1][0]] == ["third"]


async def test_long_input_is_truncated(clock: ManualClock) -> None:
    engine = FakeEngine()
    app, _ = make_app(clock, engine, reply={"max_input_chars": 50})
    await app.process(make_message("a" * 100_000))
    assert len(engine.classified[0]) == 50


async def test_one_chat_in_order_and_overload_still_records_the_mood(clock: ManualClock) -> None:
    engine = FakeEngine(delay=0.01)
    app, sender = make_app(clock, engine, queue={"size": 5, "max_inflight": 2})
    messages = [make_message(f"msg {i}") for i in range(8)]
    turns = await asyncio.gather(*(app.process(m) for m in messages))
    assert [t.busy for t in turns] == [False] * 5 + [True] * 3 and app.overloaded == 3
    assert [h[0][-1].text for h in engine.generated] == [f"msg {i}" for i in range(5)]  # in arrival order
    busy = Settings().queue.busy_reply["en"]
    # nobody is left unanswered (and the guard keeps the bot from saying the same words twice in a row)
    assert [m.text for m in sender.sent] == ["[plain] I hear you.", "[plain] Tell me more."] * 2 + ["[plain] I hear you."] + [busy] * 3
    assert len(app.store.moods("alice")) == 8  # every message's mood is recorded


async def test_an_overloaded_crisis_message_is_answered_in_full(clock: ManualClock) -> None:
    app, sender = make_app(clock, FakeEngine(delay=0.01), queue={"size": 1})
    turns = await asyncio.gather(app.process(make_message("hello")), app.process(make_message("I want to kill myself")))
    assert turns[1].busy and turns[1].crisis and turns[1].strategy is Strategy.CRISIS
    assert sender.sent[-1].text == Settings().crisis.text("reply", "en")  # vetted, never generated


async def test_engine_error_in_classify_is_not_fatal(clock: ManualClock) -> None:
    app, sender = make_app(clock, FakeEngine(fail=EngineError("broken")))
    turn = await app.process(make_message("hi"))
    assert turn is not None and turn.strategy is Strategy.PLAIN and turn.model_failed
    assert sender.sent[0].text == Settings().reply.unavailable["en"]


def test_trigger_settings_defaults_are_safe() -> None:
    settings = TriggerSettings()
    assert settings.all_rooms is False and settings.allow_rooms == []


@pytest.mark.parametrize(("first", "lang"), [("今天好累", "zh"), ("I'm so tired today", "en")])
async def test_a_message_without_letters_is_answered_in_the_chats_language(clock: ManualClock, first: str,
                                                                          lang: str) -> None:
    engine = FakeEngine()
    app, _ = make_app(clock, engine, reply={"default_language": "en" if lang == "zh" else "zh"})
    await app.process(make_message(first))
    await app.process(make_message("👍"))
    assert [language for _, _, language in engine.generated] == [lang, lang]


@pytest.mark.parametrize("default", ["zh", "en"])
async def test_a_first_message_without_letters_gets_the_default_language(clock: ManualClock, default: str) -> None:
    engine = FakeEngine()
    app, _ = make_app(clock, engine, reply={"default_language": default})
    await app.process(make_message("?? 👀"))
    assert engine.generated[-1][2] == default
