"""The dashboard's page queries on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from sqlalchemy import text

from bot.domain import Alert, Label, MoodPoint
from bot.store import MIGRATIONS, Store
from bot.web.queries import Queries

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def db(any_store: Store) -> Iterator[Store]:
    if any_store.engine.dialect.name == "postgresql":
        with any_store.engine.begin() as conn:  # the shared fixture empties only the first version's tables
            conn.execute(text("TRUNCATE audit, flags RESTART IDENTITY"))
            conn.execute(text("DROP TABLE IF EXISTS events"))
    yield any_store
    if any_store.engine.dialect.name == "postgresql":
        with any_store.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS events"))


def add(store: Store, contact: str, label: Label, at: datetime, n: int = 1) -> None:
    for i in range(n):
        store.add_mood(MoodPoint(contact, contact, at + timedelta(seconds=i), label, 1.0, f"{contact}{at}{i}", "x", contact.title()))


def test_counts_per_day_trends_and_alerts(db: Store) -> None:
    q = Queries(db, timezone.utc)
    add(db, "alice", Label.POSITIVE, NOW - timedelta(days=4), 4)
    add(db, "alice", Label.NEGATIVE, NOW - timedelta(hours=2), 3)
    add(db, "bob", Label.POSITIVE, NOW - timedelta(days=3), 2)
    add(db, "bob", Label.POSITIVE, NOW - timedelta(hours=1), 2)
    add(db, "old", Label.NEGATIVE, NOW - timedelta(days=20), 5)  # outside both windows
    days = q.daily_counts(NOW, 14)
    assert len(days) == 14 and days[-1].day == datetime(2026, 3, 10, tzinfo=timezone.utc)
    assert days[-1].counts == {"positive": 2, "negative": 3, "neutral": 0}
    assert days[-5].counts["positive"] == 4 and days[-4].counts["positive"] == 2
    assert sum(sum(d.counts.values()) for d in days) == 11
    # a second call reads the closed days from memory and still counts today's new rows
    add(db, "carl", Label.NEUTRAL, NOW, 1)
    assert q.daily_counts(NOW, 14)[-1].counts["neutral"] == 1
    assert q.mood_counts(q.start_of_day(NOW)) == {"positive": 2, "negative": 3, "neutral": 1}
    trends = q.trending_down(NOW)
    assert [t.contact_id for t in trends] == ["alice"] and trends[0].drop == pytest.approx(-2.0)

    first = db.create_alert(Alert("alice", "alice", "high", "r", ("a", "b"), ("negative",), NOW - timedelta(hours=1), "Alice"))
    second = db.create_alert(Alert("bob", "bob", "warning", "r", (), (), NOW, "Bob"))
    assert q.live_state() == (2, second)
    assert db.ack(first, NOW)
    db.record_action(NOW, "sue", "ack", str(first))
    assert [a.id for a in q.open_alerts()] == [second]
    assert [(a.id, a.acked_by, a.excerpts) for a in q.acknowledged_alerts()] == [(first, "sue", ("a", "b"))]
    assert [a.id for a in q.alerts_after(0)] == [second] and q.alerts_after(second) == []
    assert [a.id for a in q.contact_alerts("alice")] == [first]
    name, state = q.contact("alice") or ("", None)
    assert name == "Alice" and state is not None and state.armed
    assert q.contact("nobody") is None
    assert len(q.timeline("alice")) == 7
    db.mute("bob", NOW + timedelta(minutes=30))
    assert q.muted(NOW) == [("bob", "Bob", NOW + timedelta(minutes=30))]


def test_open_items_by_kind_pick_up_a_new_table_without_code(db: Store) -> None:
    assert Queries(db, None).open_by_kind() == {}
    with db.engine.begin() as conn:  # what a later migration might add: events with a kind
        conn.execute(text("CREATE TABLE events (id INTEGER PRIMARY KEY, kind VARCHAR(32), acked_at TIMESTAMP NULL)"))
        conn.execute(text("INSERT INTO events (id, kind, acked_at) VALUES (1, 'handoff', NULL), (2, 'handoff', NULL), "
                          "(3, 'handoff', CURRENT_TIMESTAMP), (4, 'callback', NULL)"))
    assert Queries(db, None).open_by_kind() == {"handoff": 2, "callback": 1}


def test_pause_flag_and_audit_round_trip(db: Store) -> None:
    assert db.flag("paused") is None
    db.set_flag("paused", "1", NOW)
    db.set_flag("paused", "0", NOW)
    assert db.flag("paused") == "0"
    db.record_action(NOW, "sue", "pause")
    assert db.actions()[0]["actor"] == "sue" and db.actions()[0]["at"] == NOW


def test_an_existing_first_version_database_gains_the_dashboard_tables(tmp_path) -> None:
    from sqlalchemy import inspect

    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    with store.engine.begin() as conn:  # back to what the first version left behind
        conn.execute(text("DROP TABLE audit"))
        conn.execute(text("DROP TABLE flags"))
        conn.execute(text("DROP INDEX ix_mood_points_at_cover"))
        conn.execute(text("DELETE FROM schema_version WHERE version >= 2"))
    assert store.migrate() == len(MIGRATIONS)
    inspector = inspect(store.engine)
    assert {"audit", "flags"} <= set(inspector.get_table_names())
    assert "ix_mood_points_at_cover" in {i["name"] for i in inspector.get_indexes("mood_points")}
    store.close()
