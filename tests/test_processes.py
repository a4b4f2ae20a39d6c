"""Several bot processes on one PostgreSQL: per-contact escalation is atomic and jobs run once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.domain import Alert, ContactState, Label, MoodPoint
from bot.store import Store

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def pg(postgres_url: str) -> Store:
    store = Store(postgres_url)
    with store.engine.begin() as conn:
        conn.execute(text("TRUNCATE mood_points, memory, alerts, contacts, job_runs RESTART IDENTITY"))
    yield store
    store.close()


def point(minutes: float, message_id: str) -> MoodPoint:
    return MoodPoint("carol", "carol", T0 + timedelta(minutes=minutes), Label.NEGATIVE, 0.9, message_id, "sad")


def alert_for(state: ContactState) -> tuple[ContactState, Alert]:
    return ContactState("carol", armed=False, last_alert_at=T0), Alert("carol", "carol", "warning", "x", (), (), T0)


def test_two_processes_raise_one_alert_and_send_one_digest(pg: Store, postgres_url: str) -> None:
    """Two real bot processes, one contact's negatives arriving at both at the same moments."""
    start_at = time.time() + 4.0  # both are ready by then (imports, migrations)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([sys.executable, "-m", "tests.scale_worker", postgres_url, str(start_at), "6", name],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len(pg.moods("carol")) == 12  # every message's mood was recorded
    stored = pg.open_alerts()
    assert len(stored) == 1, stored  # twelve negatives, two processes: one episode, one alert
    assert sorted(a for r in results for a in r["alerts"]) == [stored[0].alert_id]
    assert sorted(r["digest_ran"] for r in results) == [False, True]
    assert sum(r["digests_sent"] for r in results) == 1


def test_the_contact_row_lock_serialises_escalations(pg: Store, postgres_url: str) -> None:
    """A second escalation for the same contact waits until the first commits, and sees its alert."""
    pg.save_state(ContactState("carol"))  # the row exists: FOR UPDATE, not the insert, must make it wait
    other = Store(postgres_url)
    inside = threading.Event()
    order: list[str] = []
    seen: list[ContactState] = []

    def slow(state: ContactState, recent: list[MoodPoint], window: list[MoodPoint]) -> tuple[ContactState, Alert | None]:
        inside.set()
        time.sleep(0.5)
        order.append("first")
        return alert_for(state)

    def second(state: ContactState, recent: list[MoodPoint], window: list[MoodPoint]) -> tuple[ContactState, Alert | None]:
        order.append("second")
        seen.append(state)
        return (state, None) if not state.armed else alert_for(state)

    first = threading.Thread(target=pg.escalate, args=(point(0, "m1"), 8, T0 - timedelta(hours=1), slow))
    first.start()
    assert inside.wait(10)
    other.escalate(point(0.1, "m2"), 8, T0 - timedelta(hours=1), second)
    first.join()
    other.close()
    assert order == ["first", "second"] and not seen[0].armed
    assert len(pg.open_alerts()) == 1


def test_the_episode_key_refuses_a_second_alert_from_the_same_state(any_store: Store) -> None:
    """Belt and braces: were the lock missing, two decisions from one state store one alert."""
    from sqlalchemy import update

    from bot.store import contacts

    first = any_store.escalate(point(0, "m1"), 8, T0 - timedelta(hours=1), lambda s, r, w: alert_for(s))
    assert first is not None and first.alert_id is not None
    with any_store.engine.begin() as conn:  # as if a racing process had read the state before the first alert
        conn.execute(update(contacts).values(alerts_raised=0, armed=True))
    again = any_store.escalate(point(1, "m2"), 8, T0 - timedelta(hours=1), lambda s, r, w: alert_for(s))
    assert again is None and len(any_store.open_alerts()) == 1
    assert len(any_store.moods("carol")) == 2  # the mood point is kept all the same
