"""Admin commands from an admin and from a stranger; scheduled jobs called directly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot import jobs
from bot.alerts import Alerter
from bot.app import Application
from bot.clock import ManualClock
from bot.config import Settings
from bot.protocols import AsyncStore
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
    assert await send(app, clock, "#mute Alice 30") == ["Mood alerts for Alice (alice) muted for 30 min. Crisis alerts still come."]
    assert store.state("alice").muted_until == clock.now() + timedelta(minutes=30)
    assert await send(app, clock, "#unmute alice") == ["Mood alerts for Alice (alice) are on again."]
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
    assert await send(app, clock, "#mute wxid_other 30") == ["Mood alerts for alice (wxid_other) muted for 30 min. Crisis alerts still come."]
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
    assert await send(app, clock, "the parcel came today", who="alice") == []
    assert len(store.moods("alice")) == 1  # the mood is still recorded
    await send(app, clock, "#resume")
    assert await send(app, clock, "the parcel came today", who="alice") == ["[plain] I hear you."]


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


# --- the model server watch (backend openai) --------------------------------------------------------


@dataclass
class FakeBreaker:
    down_since: datetime | None = None
    last_error: str = ""
    failed_at: datetime | None = None
    answered_at: datetime | None = None
    refusing_since: datetime | None = None
    last_refusal: str = ""
    refused_at: datetime | None = None
    useful_at: datetime | None = None


class ServedEngine(FakeEngine):
    """A FakeEngine with a model server's breaker (bot/remote.py RemoteEngine's face for the watch job)."""

    name = "qwen via http://gpu-box:8000/v1"

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock
        self.breaker = FakeBreaker()
        self.tries = 0

    def fails(self, error: str = "ConnectError: connection refused") -> None:
        now = self.clock.now()
        self.breaker.down_since = self.breaker.down_since or now
        self.breaker.failed_at, self.breaker.last_error = now, error

    def answers(self) -> None:
        self.breaker.down_since, self.breaker.answered_at = None, self.clock.now()
        self.breaker.refusing_since, self.breaker.useful_at = None, self.clock.now()

    def refuses(self, reason: str = "HTTP 401 Incorrect API key provided") -> None:
        """Up, but every request refused: the server answers (answered_at), and nothing is of use."""
        now = self.clock.now()
        self.breaker.refusing_since = self.breaker.refusing_since or now
        self.breaker.refused_at, self.breaker.last_refusal, self.breaker.answered_at = now, reason, now

    async def try_server(self) -> None:
        self.tries += 1


class Process:
    """One bot process over the shared store: its own engine, its own name for the job claims."""

    def __init__(self, name: str, app: Application, clock: ManualClock) -> None:
        self.name = name
        self.engine = ServedEngine(clock)
        self.app = app
        self.clock = clock

    async def watch(self) -> str | None:
        alert = await jobs.watch_model_server(self.engine, self.app.async_store, self.clock, self.app.alerter,
                                              self.name, 30)
        return alert.reason if alert else None


def model_alerts(store: Store) -> list[str]:
    return [a.reason for a in store.alerts_since(datetime(2000, 1, 1).astimezone(), kind="model")]


async def test_the_local_engine_has_no_server_to_watch(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)  # FakeEngine: no breaker, like the embedded model
    assert await jobs.watch_model_server(app.engine, app.async_store, clock, app.alerter, "p1", 30) is None
    assert sender.sent == [] and model_alerts(store) == []
    assert "watch_model_server" not in app.scheduler.job_names()
    served, _ = build(clock, store, ServedEngine(clock))
    assert "watch_model_server" in served.scheduler.job_names()


async def test_one_down_alert_and_one_back_notice_across_checks_and_processes(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    a, b = Process("box-1:11", app, clock), Process("box-2:22", app, clock)
    assert await a.watch() is None and a.engine.tries == 0  # up: the server is not asked anything extra
    a.engine.fails()
    b.engine.fails()  # both processes see it, in the same check interval: one alert
    assert (await a.watch() or "").startswith("model server down since 12:00: ConnectError")
    assert await b.watch() is None
    [alert] = [m.text for m in sender.sent]
    assert alert.startswith("🔌 Alert #1: model server down since 12:00") and "qwen via http://gpu-box:8000/v1" in alert
    for _ in range(5):  # still down: nothing more, whichever process checks, after a restart too
        clock.advance(seconds=30)
        a.engine.fails()
        assert await a.watch() is None and await b.watch() is None
    restarted = Process("box-1:33", app, clock)
    restarted.engine.fails()
    assert await restarted.watch() is None
    assert a.engine.tries == 6 and b.engine.tries == 6  # while it is down, each check asks the server (the trial)
    # a process that has not asked the server since it went down has no news: its closed breaker is no "back"
    quiet = Process("box-3:44", app, clock)
    quiet.engine.breaker.answered_at = clock.now() - timedelta(minutes=10)
    assert await quiet.watch() is None
    clock.advance(minutes=7)
    b.engine.answers()
    assert await b.watch() == "model server back after 10 min"
    assert sender.sent[-1].text == "✅ model server back after 10 min (qwen via http://gpu-box:8000/v1)."
    assert len(sender.sent) == 2
    # a's breaker is still open from before (its trial has not come yet): old news, no second alert
    clock.advance(seconds=30)
    assert await a.watch() is None
    # a new failure after "back" is a new outage
    a.engine.fails()
    a.engine.breaker.down_since = clock.now() - timedelta(minutes=20)  # open all along: shown from "back" on
    assert await a.watch() == "model server down since 12:09: ConnectError: connection refused"
    assert model_alerts(store) == ["model server down since 12:00: ConnectError: connection refused",
                                   "model server back after 10 min",
                                   "model server down since 12:09: ConnectError: connection refused"]


async def test_a_server_that_refuses_every_request_is_an_outage_until_an_answer_is_of_use(clock: ManualClock,
                                                                                          store: Store) -> None:
    app, sender = build(clock, store)
    a, b = Process("box-1:11", app, clock), Process("box-2:22", app, clock)
    a.engine.refuses()
    assert await a.watch() == "model server refuses every request since 12:00: HTTP 401 Incorrect API key provided"
    clock.advance(seconds=30)
    a.engine.refuses()
    b.engine.breaker.answered_at = clock.now()  # b had an answer since, a refusal below the count: no "back"
    assert await a.watch() is None and await b.watch() is None
    clock.advance(minutes=5)
    b.engine.answers()
    assert await b.watch() == "model server back after 6 min"
    assert [m.text for m in sender.sent][0].startswith("🔌 Alert #1: model server refuses every request since 12:00")


async def test_an_admin_ack_does_not_end_the_outage_and_the_reminder_follows_its_rules(clock: ManualClock,
                                                                                        store: Store) -> None:
    app, sender = build(clock, store, alerts={"remind_after_minutes": 30})
    p = Process("box-1:11", app, clock)
    p.engine.fails("HTTP 502 bad gateway")
    assert await p.watch() is not None
    clock.advance(minutes=31)
    assert await jobs.remind_unacknowledged(app.async_store, clock, app.alerter, 30) == 1  # not acknowledged
    assert sender.sent[-1].text.startswith("⏰ Reminder, not acknowledged yet: #1 [model] qwen via http://gpu-box")
    assert store.ack(1, clock.now())  # "#ack 1": seen, someone is on it
    clock.advance(seconds=30)
    p.engine.fails("HTTP 502 bad gateway")
    assert await p.watch() is None  # still the same outage: no second alert
    clock.advance(minutes=20)
    p.engine.answers()
    assert await p.watch() == "model server back after 52 min"  # told even though acknowledged
    clock.advance(minutes=60)
    assert await jobs.remind_unacknowledged(app.async_store, clock, app.alerter, 30) == 0  # nothing left to remind
    assert [a.alert_id for a in store.open_alerts()] == []


async def test_a_change_that_could_not_be_stored_is_tried_again_at_the_next_check(clock: ManualClock,
                                                                                    store: Store) -> None:
    app, sender = build(clock, store)
    p = Process("box-1:11", app, clock)
    p.engine.fails()

    class Broken(AsyncStore):
        async def create_alert(self, alert: Any) -> int:
            raise RuntimeError("database hiccup")

    alerter = Alerter(app.outbound, Broken(store), app.settings.alerts, ["boss"], clock)
    try:
        await jobs.watch_model_server(p.engine, Broken(store), clock, alerter, p.name, 30)
    except RuntimeError:
        pass  # the scheduler logs it
    clock.advance(seconds=30)
    assert await p.watch() is not None and len(sender.sent) == 1
