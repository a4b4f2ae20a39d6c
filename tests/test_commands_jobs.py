"""Admin commands from an admin and from a stranger; scheduled jobs called directly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot import jobs
from bot.app import Application
from bot.clock import ManualClock
from bot.config import Settings
from bot.store import Store
from tests.fakes import FakeEngine, RecordingSender, build_app, make_message

SAD = "I feel so sad"


build = build_app


async def send(app: Application, clock: ManualClock, text: str, who: str = "boss", **kw: Any) -> list[str]:
    clock.advance(seconds=30)
    before = len(app.outbound.sender.sent)  # type: ignore[attr-defined]
    await app.process(make_message(text, sender_id=who, chat_id=kw.pop("chat_id", who), sender_name=who.title(),
                                   sent_at=clock.now(), **kw))
    return [m.text for m in app.outbound.sender.sent[before:]]  # type: ignore[attr-defined]


async def test_admin_commands(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    for _ in range(3):
        await send(app, clock, SAD, who="alice")
    [help_text] = await send(app, clock, "#help")
    assert "#ack <id>" in help_text
    [status] = await send(app, clock, "#status")
    assert "model: fake" in status and "Today: 3 messages" in status and "😟 3" in status and "Open alerts: 1" in status
    [mood] = await send(app, clock, "#mood Alice")
    assert mood.startswith("Alice: 😟 😟 😟")
    [listing] = await send(app, clock, "#alerts")
    assert listing.startswith("#1 [") and "Alice" in listing
    assert await send(app, clock, "#ack 1") == ["Alert #1 acknowledged."]
    assert await send(app, clock, "#ack 1") == ["No open alert #1."]
    assert await send(app, clock, "#alerts") == ["No open alerts."]
    assert await send(app, clock, "#mute Alice 30") == ["Alerts for Alice muted for 30 min."]
    assert store.state("alice").muted_until == clock.now() + timedelta(minutes=30)
    assert await send(app, clock, "#mood nobody") == ["No contact called 'nobody' has written yet."]
    assert await send(app, clock, "#ack x") == ["Usage: #ack <id>"]


async def test_pause_and_resume_auto_replies(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    await send(app, clock, "#pause")
    assert await send(app, clock, "hello", who="alice") == []
    assert len(store.moods("alice")) == 1  # the mood is still recorded
    await send(app, clock, "#resume")
    assert await send(app, clock, "hello", who="alice") == ["[plain] I hear you."]


async def test_a_stranger_is_treated_as_an_ordinary_message(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    replies = await send(app, clock, "#status", who="mallory")
    assert replies == ["[plain] I hear you."]  # answered like any message; no status leaks
    # answered like any message (and not with the same words twice in a row)
    assert await send(app, clock, "#pause", who="mallory") == ["[plain] Tell me more."]
    assert not app.state.paused


async def test_daily_digest_job(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    for _ in range(3):
        await send(app, clock, SAD, who="alice")
    await send(app, clock, "great news, so happy", who="bob")
    before = len(sender.sent)
    text = await jobs.daily_digest(app.async_store, clock, app.alerter)
    assert "Messages: 4" in text and "Alice: -0.90" in text and "Bob" not in text.split("Open alerts")[0]
    assert "Open alerts: 1" in text
    assert [m.chat_id for m in sender.sent[before:]] == ["boss"]


async def test_reminder_job(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, alerts={"remind_after_minutes": 30})
    for _ in range(3):
        await send(app, clock, SAD, who="alice")
    remind = lambda: jobs.remind_unacknowledged(app.async_store, clock, app.alerter, 30)  # noqa: E731
    assert await remind() == 0  # too recent
    clock.advance(minutes=31)
    assert await remind() == 1
    assert "Reminder, not acknowledged yet: #1 [" in sender.sent[-1].text
    assert await remind() == 0  # reminded once per period


async def test_an_unacknowledged_critical_alert_is_reminded_sooner(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, alerts={"remind_after_minutes": 60, "critical_remind_after_minutes": 10})
    await send(app, clock, "I want to kill myself", who="alice")
    for _ in range(3):
        await send(app, clock, SAD, who="bob")
    clock.advance(minutes=11)
    remind = lambda: jobs.remind_unacknowledged(app.async_store, clock, app.alerter, 60, 10)  # noqa: E731
    assert await remind() == 1  # the crisis only
    assert "[critical]" in sender.sent[-1].text
    clock.advance(minutes=50)
    assert await remind() == 2  # now bob's too, and alice's again


async def test_prune_job(clock: ManualClock, store: Store) -> None:
    app, _ = build(clock, store, store={"retention_days": 1})
    await send(app, clock, SAD, who="alice")
    clock.advance(days=2)
    assert await jobs.prune_old(app.async_store, clock, 1) >= 1
    assert store.moods("alice") == []


async def test_scheduler_is_owned_by_start_and_stop(clock: ManualClock, store: Store) -> None:
    engine = FakeEngine()
    app = Application(Settings.model_validate({"schedule": {"digest_time": "08:15"}}), engine, RecordingSender(), clock, store)
    async with app:
        assert sorted(app.scheduler.job_names()) == ["daily_digest", "prune_old", "remind_unacknowledged"]
        assert app.scheduler.running
    assert not app.scheduler.running
    assert engine.closed  # leaving the app closes the engine (and the store)
