"""Escalation scenarios through the whole pipeline, with a clock the tests move (no sleeping)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Application
from bot.clock import ManualClock
from bot.config import EscalationSettings
from bot.domain import ContactState, Label, MoodPoint, Strategy
from bot.store import Store
from handlers.escalation import decide
from tests.fakes import RecordingSender, build_app, make_message

SAD = "I feel so sad"
FINE = "I'm happy, great day"


build = build_app


async def say(app: Application, clock: ManualClock, text: str, who: str = "alice", minutes: float = 1, **kw: Any) -> Any:
    clock.advance(minutes=minutes)
    return await app.process(make_message(text, sender_id=who, chat_id=kw.pop("chat_id", who), sent_at=clock.now(), **kw))


def alerts_sent(sender: RecordingSender) -> list[str]:
    return [m.text for m in sender.sent if m.chat_id == "boss"]


async def test_three_negatives_raise_exactly_one_alert_and_the_fourth_none(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    for _ in range(2):
        await say(app, clock, SAD)
    assert alerts_sent(sender) == []
    await say(app, clock, SAD)
    [text] = alerts_sent(sender)
    assert "Mood alert #1" in text and "alice" in text and "3 negative messages in 30 min" in text
    await say(app, clock, SAD)  # within the cooldown and the same episode
    assert len(alerts_sent(sender)) == 1
    assert len(store.open_alerts()) == 1 and store.undelivered_alerts() == []


async def test_negatives_spread_beyond_the_window_do_not_alert(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, escalation={"score_threshold": -1.0})
    for _ in range(3):
        await say(app, clock, SAD, minutes=20)
    assert alerts_sent(sender) == []


async def test_rearmed_after_recovery_and_cooldown(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, escalation={"cooldown_minutes": 60, "score_points": 4})
    for _ in range(3):
        await say(app, clock, SAD)
    assert len(alerts_sent(sender)) == 1
    for _ in range(4):
        await say(app, clock, FINE, minutes=5)  # the mood recovers: re-armed
    assert store.state("alice").armed
    for _ in range(3):
        await say(app, clock, SAD)  # a new episode, but still inside the cooldown
    assert len(alerts_sent(sender)) == 1
    clock.advance(minutes=60)
    for _ in range(3):
        await say(app, clock, SAD)
    assert len(alerts_sent(sender)) == 2


async def test_no_rearm_without_recovery(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, escalation={"cooldown_minutes": 10})
    for _ in range(3):
        await say(app, clock, SAD)
    clock.advance(minutes=120)
    for _ in range(3):
        await say(app, clock, SAD)  # the same long episode: no storm
    assert len(alerts_sent(sender)) == 1


async def test_crisis_phrase_alerts_at_once_and_switches_the_reply(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    turn = await say(app, clock, "我觉得自己真的不想活了")
    assert turn.crisis and turn.strategy is Strategy.CRISIS
    [text] = alerts_sent(sender)
    assert "[critical]" in text
    replies = [m.text for m in sender.sent if m.chat_id == "alice"]
    assert replies == ["[crisis] 好的，我明白。"]
    await say(app, clock, "I want to kill myself")
    assert len(alerts_sent(sender)) == 1  # one crisis alert per episode


async def test_model_judgement_flags_crisis_without_a_listed_phrase(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    turn = await say(app, clock, "so sad, I just want to end it all")
    assert turn.crisis and "[critical]" in alerts_sent(sender)[0]
    app2, sender2 = build(clock, store, escalation={"model_crisis_check": False})
    turn = await say(app2, clock, "so sad, I just want to end it all", who="bob")
    assert not turn.crisis


async def test_group_moods_are_per_speaker(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, triggers={"all_rooms": True})
    room = {"chat_id": "r@chatroom", "is_group": True}
    await say(app, clock, SAD, who="alice", **room)
    await say(app, clock, SAD, who="bob", **room)
    await say(app, clock, SAD, who="carol", **room)
    assert alerts_sent(sender) == []  # three sad people, not one sad room
    await say(app, clock, SAD, who="alice", **room)
    await say(app, clock, SAD, who="alice", **room)
    [text] = alerts_sent(sender)
    assert "alice" in text and "r@chatroom" in text
    assert {p.contact_id for p in store.moods()} == {"alice", "bob", "carol"}


async def test_muted_contact_raises_no_alert(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    store.save_state(ContactState("alice", muted_until=clock.now() + timedelta(hours=1)))
    for _ in range(3):
        await say(app, clock, SAD)
    assert alerts_sent(sender) == []


def test_rolling_score_rule() -> None:
    settings = EscalationSettings(negative_count=3, score_threshold=-0.5)
    now = ManualClock().now()
    points = [
        MoodPoint("a", "a", now, Label.NEGATIVE, 0.9, str(i), "x") for i in range(4)
    ] + [MoodPoint("a", "a", now, Label.NEUTRAL, 0.9, "n", "x")]
    state, severity, reason = decide(ContactState("a"), points, [], False, now, settings)
    assert severity == "warning" and "mood score" in reason and not state.armed


async def test_webhook_and_log_get_the_alert(clock: ManualClock, store: Store, webhook: Any, caplog: pytest.LogCaptureFixture) -> None:
    app, sender = build(clock, store, alerts={"webhook_url": webhook.url, "webhook_secret": "s3cret"})
    for _ in range(3):
        await say(app, clock, SAD)
    assert [body["contact_id"] for body in webhook.received] == ["alice"]
    assert "ALERT #1 [high]" in caplog.text and webhook.bad_signatures == 0


@pytest.fixture
def webhook(tmp_path: Path) -> Any:
    from tests.webhook import Receiver

    receiver = Receiver(secret="s3cret")
    yield receiver
    receiver.close()
