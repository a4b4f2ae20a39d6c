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
    assert mood.startswith("Alice (alice): 😟 😟 😟")
    [listing] = await send(app, clock, "#alerts")
    assert listing.startswith("#1 [") and "Alice" in listing
    assert await send(app, clock, "#ack 1") == ["Alert #1 acknowledged."]
    assert await send(app, clock, "#ack 1") == ["No open alert #1 (already acknowledged, or no such id)."]
    assert await send(app, clock, "#alerts") == ["No open alerts."]
    assert await send(app, clock, "#mute Alice 30") == ["Alerts for Alice (alice) muted for 30 min."]
    assert store.state("alice").muted_until == clock.now() + timedelta(minutes=30)
    assert await send(app, clock, "#unmute alice") == ["Alerts for Alice (alice) are on again."]
    assert store.state("alice").muted_until == clock.now()
    # what a command changed is in the audit table, with who sent it, as the dashboard's actions are
    assert [(a["actor"], a["action"], a["target"]) for a in store.actions()][::-1] == [
        ("chat:Boss", "ack", "1"), ("chat:Boss", "mute", "alice"), ("chat:Boss", "unmute", "alice")]
    assert await send(app, clock, "#mood nobody") == ["No contact called 'nobody' has written yet."]
    assert await send(app, clock, "#ack x") == ["Usage: #ack <id>"]
    # digits that int() refuses or the database cannot hold are a usage error or no alert, never a crash
    assert await send(app, clock, "#ack ²") == ["Usage: #ack <id>"]
    assert await send(app, clock, "#ack 99999999999999999999999") == ["Usage: #ack <id>"]
    assert await send(app, clock, "#ack 9999999999999999999") == [
        "No open alert #9999999999999999999 (already acknowledged, or no such id)."]
    for minutes in ("0", "43201", "99999999999", "²"):
        assert await send(app, clock, f"#mute alice {minutes}") == ["Usage: #mute <name or id> <minutes, 1 to 43200>"]


async def test_commands_in_a_room_are_answered_privately(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    for _ in range(3):
        await send(app, clock, SAD, who="alice")
    before = len(sender.sent)
    await app.process(make_message("#alerts", sender_id="boss", chat_id="room1@chatroom", is_group=True,
                                   sent_at=clock.now()))
    [answer] = sender.sent[before:]
    assert answer.chat_id == "boss" and answer.mention_ids == () and "Alice" in answer.text


async def test_a_name_that_several_contacts_share_is_not_guessed(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    await app.process(make_message(SAD, sender_id="alice", sender_name="Alice", sent_at=clock.now()))
    await app.process(make_message(SAD, sender_id="wxid_other", sender_name="alice", sent_at=clock.now()))
    [answer] = await send(app, clock, "#mute Alice 30")
    assert answer.startswith("'Alice' could be any of these; give the id:") and "alice" in answer and "wxid_other" in answer
    assert store.state("alice").muted_until is None and store.state("wxid_other").muted_until is None
    assert await send(app, clock, "#mute wxid_other 30") == ["Alerts for alice (wxid_other) muted for 30 min."]
    # a part of a name finds the one contact for reading, but is not enough to change anything
    [mood] = await send(app, clock, "#mood wxid_oth")
    assert mood.startswith("alice (wxid_other):")
    [refused] = await send(app, clock, "#unmute wxid_oth")
    assert refused.startswith("'wxid_oth' could be any of these")


async def test_alerts_list_the_most_urgent_first_and_stay_short(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    for n in range(25):
        for _ in range(3):
            await send(app, clock, SAD, who=f"user{n}")
    await send(app, clock, "tonight I might end it all", who="carol")
    [listing, *more] = await send(app, clock, "#alerts")
    lines = "\n".join([listing, *more]).splitlines()
    assert "[critical]" in lines[0] and "Carol" in lines[0]
    assert len(lines) == 21 and lines[-1] == "... and 6 more (the dashboard lists them all)"


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
