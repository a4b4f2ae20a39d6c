"""The store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.domain import Alert, ChatTurn, ContactState, Label, MoodPoint
from bot.store import MIGRATIONS, Store

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def point(contact: str = "alice", label: Label = Label.NEGATIVE, minutes: float = 0, **kw: object) -> MoodPoint:
    fields: dict[str, object] = dict(
        contact_id=contact, chat_id=contact, at=T0 + timedelta(minutes=minutes), label=label, confidence=0.8,
        message_id=f"m{minutes}", excerpt="a long message that goes on and on and on and on and on", contact_name="Alice",
        text="a long message that goes on and on and on and on and on",
    )
    fields.update(kw)
    return MoodPoint(**fields)  # type: ignore[arg-type]


def alert(contact: str = "alice", minutes: float = 0) -> Alert:
    return Alert(contact, contact, "high", "3 negative", ("sad", "very sad"), ("negative",) * 3,
                 T0 + timedelta(minutes=minutes), "Alice")


def test_mood_points_round_trip_with_excerpt_only_by_default(any_store: Store) -> None:
    any_store.add_mood(point(minutes=0))
    any_store.add_mood(point(label=Label.POSITIVE, minutes=1))
    any_store.add_mood(point(contact="bob", minutes=2, contact_name="Bob"))
    moods = any_store.moods("alice")
    assert [m.label for m in moods] == [Label.NEGATIVE, Label.POSITIVE]
    assert moods[0].at == T0 and moods[0].at.tzinfo is not None
    assert len(moods[0].excerpt) == 40 and moods[0].text is None  # privacy: no full text unless asked
    assert [m.label for m in any_store.moods("alice", limit=1)] == [Label.POSITIVE]
    assert len(any_store.moods(since=T0 + timedelta(minutes=1))) == 2
    assert any_store.mood_counts(T0) == {"negative": 2, "positive": 1}
    # a bound in another zone is the same instant: SQLite compares wall times as text, so it is bound as UTC
    shanghai = timezone(timedelta(hours=8))
    assert any_store.mood_counts((T0 + timedelta(minutes=1)).astimezone(shanghai)) == {"positive": 1, "negative": 1}
    assert any_store.find_contacts("bob") == [("bob", "Bob")] and any_store.find_contacts("ALICE") == [("alice", "Alice")]
    assert any_store.find_contacts("nobody") == [] and any_store.find_contacts(" ") == []
    # an exact name before a part of one; a part of a name or an id, with LIKE's wildcards taken literally
    assert any_store.find_contacts("lic") == [("alice", "Alice")] and any_store.find_contacts("%") == []
    any_store.add_mood(point(contact="wxid_2", minutes=3, contact_name="alice"))
    assert any_store.find_contacts("Alice") == [("alice", "Alice"), ("wxid_2", "alice")]


def test_full_text_is_kept_only_when_configured(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'k.db'}", keep_text=True)
    store.add_mood(point())
    assert store.moods("alice")[0].text is not None


def test_contact_state_round_trip(any_store: Store) -> None:
    assert any_store.state("alice") == ContactState("alice")
    state = ContactState("alice", armed=False, last_alert_at=T0, muted_until=T0 + timedelta(hours=1), last_severity="high")
    any_store.save_state(state)
    assert any_store.state("alice") == state


def test_memory_survives_a_restart_and_expires(any_store: Store) -> None:
    any_store.add_memory("alice", T0, [ChatTurn("user", "hi"), ChatTurn("assistant", "hello")], keep=3)
    any_store.add_memory("alice", T0, [ChatTurn("user", "again"), ChatTurn("assistant", "yes")], keep=3)
    reopened = Store(any_store.url)
    assert [t.text for t in reopened.memory("alice", since=T0 - timedelta(minutes=1))] == ["hello", "again", "yes"]
    assert reopened.memory("alice", since=T0 + timedelta(minutes=1)) == []
    reopened.close()


def test_alert_lifecycle(any_store: Store) -> None:
    first = any_store.create_alert(alert())
    second = any_store.create_alert(alert(contact="bob", minutes=5))
    assert [a.alert_id for a in any_store.undelivered_alerts()] == [first, second]
    any_store.mark_delivered(first, T0)
    assert [a.alert_id for a in any_store.undelivered_alerts()] == [second]
    assert any_store.open_alerts()[0].excerpts == ("sad", "very sad")
    assert any_store.ack(first, T0) and not any_store.ack(first, T0) and not any_store.ack(999, T0)
    assert [a.alert_id for a in any_store.open_alerts()] == [second]
    # one acknowledged (on the dashboard) before chat could deliver it is not sent late
    third = any_store.create_alert(alert(contact="carol", minutes=6))
    assert any_store.ack(third, T0) and [a.alert_id for a in any_store.undelivered_alerts()] == [second]
    assert [a.alert_id for a in any_store.alerts_to_remind(T0 + timedelta(minutes=60))] == [second]
    any_store.mark_reminded(second, T0 + timedelta(minutes=60))
    assert any_store.alerts_to_remind(T0 + timedelta(minutes=60)) == []


def test_prune_removes_old_rows_but_keeps_open_alerts(any_store: Store) -> None:
    any_store.add_mood(point(minutes=0))
    any_store.add_mood(point(minutes=60 * 24 * 10))
    any_store.add_memory("alice", T0, [ChatTurn("user", "old")], keep=10)
    acked = any_store.create_alert(alert())
    any_store.ack(acked, T0)
    open_id = any_store.create_alert(alert())
    removed = any_store.prune(T0 + timedelta(days=1))
    assert removed == 3
    assert len(any_store.moods("alice")) == 1
    assert [a.alert_id for a in any_store.open_alerts()] == [open_id]


def test_schema_is_versioned_and_migrations_run_once(any_store: Store) -> None:
    assert any_store.migrate() == len(MIGRATIONS)
    from sqlalchemy import text

    with any_store.engine.connect() as conn:
        versions = conn.execute(text("SELECT version FROM schema_version")).scalars().all()
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_ended_dashboard_sessions_are_kept_until_they_expire(any_store: Store) -> None:
    any_store.end_session("a" * 64, T0 + timedelta(hours=8))
    any_store.end_session("a" * 64, T0 + timedelta(hours=8))  # a second logout of the same session
    any_store.end_session("b" * 64, T0 + timedelta(hours=1))
    assert any_store.ended_sessions(T0) == {"a" * 64: T0 + timedelta(hours=8), "b" * 64: T0 + timedelta(hours=1)}
    assert any_store.ended_sessions(T0 + timedelta(hours=2)) == {"a" * 64: T0 + timedelta(hours=8)}
    assert any_store.ended_sessions(T0 + timedelta(hours=9)) == {}


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    from sqlalchemy import text

    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
