"""Mood history, conversation memory and alerts behind one store (SQLite by default, or PostgreSQL).

SQLAlchemy Core gives one code path for both databases. The schema is versioned: each entry of
MIGRATIONS moves it one version up, inside a transaction. Calls are synchronous; async callers
run them off the event loop with asyncio.to_thread.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.config import StoreSettings
from bot.domain import MAX_ALERT_ID, Alert, ChatTurn, ContactState, Label, MoodPoint
from bot.errors import StoreError

log = logging.getLogger(__name__)



class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp bound as UTC: SQLite compares stored wall times as text, so a bound in another
    zone (a local midnight) would be read as UTC wall time."""

    impl = DateTime(timezone=True)
    cache_ok = True  # and read back UTC-aware: SQLite returns naive wall times

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return _utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return _utc(value)


metadata = MetaData()
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
mood_points = Table(
    "mood_points", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", String(128), nullable=False, index=True),
    Column("contact_name", String(256), nullable=False, default=""),
    Column("chat_id", String(128), nullable=False),
    Column("is_group", Boolean, nullable=False, default=False),
    Column("at", UtcDateTime(), nullable=False, index=True),
    Column("label", String(16), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("message_id", String(128), nullable=False),
    Column("excerpt", Text, nullable=False, default=""),
    Column("text", Text, nullable=True),
)
memory = Table(
    "memory", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chat_id", String(128), nullable=False, index=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("role", String(16), nullable=False),
    Column("text", Text, nullable=False),
)
alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", String(128), nullable=False, index=True),
    Column("contact_name", String(256), nullable=False, default=""),
    Column("chat_id", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("excerpts", Text, nullable=False),  # JSON list
    Column("trend", Text, nullable=False),  # JSON list
    Column("created_at", UtcDateTime(), nullable=False),
    Column("delivered_at", UtcDateTime(), nullable=True),
    Column("acked_at", UtcDateTime(), nullable=True),
    Column("reminded_at", UtcDateTime(), nullable=True),
    Column("kind", String(16), nullable=False, default="mood"),  # mood | handoff (schema v2) | model
    # schema v4: "<contact>#<n>" for the contact's n-th escalation alert (NULL for hand-offs); unique, so
    # two processes deciding from the same contact state cannot both store an alert
    Column("episode", String(200), nullable=True),
)
contacts = Table(
    "contacts", metadata,
    Column("contact_id", String(128), primary_key=True),
    Column("name", String(256), nullable=False, default=""),
    Column("armed", Boolean, nullable=False, default=True),
    Column("last_alert_at", UtcDateTime(), nullable=True),
    Column("muted_until", UtcDateTime(), nullable=True),
    Column("last_severity", String(16), nullable=True),
    Column("alerts_raised", Integer, nullable=False, default=0, server_default="0"),  # schema v4: the episode counter
)


# who did what from the dashboard (or a command): acknowledgements, mutes, pause and resume
audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(256), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
)
# small shared switches that another process must see, e.g. `paused` set by a standalone dashboard
flags = Table(
    "flags", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
# schema v4: a scheduled job's last run, claimed by one process with a compare-and-set on `slot`
job_runs = Table(
    "job_runs", metadata,
    Column("name", String(64), primary_key=True),
    Column("slot", String(64), nullable=False),  # sortable: the day for daily jobs, the interval number else
    Column("holder", String(200), nullable=False),
    Column("claimed_at", UtcDateTime(), nullable=False),
)
# schema v5: dashboard sessions ended by a logout, until their cookies would have expired anyway, so that
# a copied cookie stays refused after a restart (a digest of the session's token, never the token)
ended_sessions = Table(
    "ended_sessions", metadata,
    Column("token_digest", String(64), primary_key=True),
    Column("until", UtcDateTime(), nullable=False),
)
alert_episode = Index("ux_alerts_episode", alerts.c.episode, unique=True)
# covers the dashboard's per-day and per-contact trend aggregates, so they never read the table itself
mood_at_cover = Index("ix_mood_points_at_cover", mood_points.c.at, mood_points.c.label, mood_points.c.contact_id,
                      mood_points.c.confidence)


def _v1(conn: Connection) -> None:
    for table in (mood_points, memory, alerts, contacts):
        table.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    for table in (audit, flags):
        table.create(conn, checkfirst=True)
    mood_at_cover.create(conn, checkfirst=True)  # v1's create() already made it on a fresh database


def _v3(conn: Connection) -> None:
    # hand-offs are alerts of their own kind; an older database gains the column, a new one has it from _v1
    if "kind" not in {column["name"] for column in inspect(conn).get_columns("alerts")}:
        conn.execute(text("ALTER TABLE alerts ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'mood'"))


def _v4(conn: Connection) -> None:
    # several bot processes on one database: one alert per contact episode, scheduled jobs run once
    if "episode" not in {column["name"] for column in inspect(conn).get_columns("alerts")}:
        conn.execute(text("ALTER TABLE alerts ADD COLUMN episode VARCHAR(200)"))
    if "alerts_raised" not in {column["name"] for column in inspect(conn).get_columns("contacts")}:
        conn.execute(text("ALTER TABLE contacts ADD COLUMN alerts_raised INTEGER NOT NULL DEFAULT 0"))
    alert_episode.create(conn, checkfirst=True)
    job_runs.create(conn, checkfirst=True)


def _v5(conn: Connection) -> None:
    ended_sessions.create(conn, checkfirst=True)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4, _v5]


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything the store returns is UTC-aware
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def database_url(settings: StoreSettings) -> str:
    if settings.url:
        return settings.url
    directory = Path(settings.data_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'moodbot.db'}"


class Store:
    def __init__(self, url: str, keep_text: bool = False, excerpt_chars: int = 40) -> None:
        self.url = url
        self.keep_text = keep_text
        self.excerpt_chars = excerpt_chars
        try:
            self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open the database {url!r}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.migrate()

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Store:
        return cls(database_url(settings), settings.keep_text, settings.excerpt_chars)

    def migrate(self) -> int:
        try:
            with self.engine.begin() as conn:
                schema_version.create(conn, checkfirst=True)
                current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
                for version in range(current + 1, len(MIGRATIONS) + 1):
                    MIGRATIONS[version - 1](conn)
                    conn.execute(schema_version.insert().values(version=version))
                    log.info("database schema migrated to version %d", version)
            return len(MIGRATIONS)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prepare the database {self.engine.url!r}: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    # --- mood points ---------------------------------------------------------------------

    def add_mood(self, point: MoodPoint) -> None:
        excerpt = point.excerpt[: self.excerpt_chars]
        with self.engine.begin() as conn:
            conn.execute(mood_points.insert().values(
                contact_id=point.contact_id, contact_name=point.contact_name, chat_id=point.chat_id,
                is_group=point.is_group, at=point.at, label=point.label.value, confidence=point.confidence,
                message_id=point.message_id, excerpt=excerpt, text=point.text if self.keep_text else None,
            ))
            self._upsert_name(conn, point.contact_id, point.contact_name)

    def _upsert_name(self, conn: Connection, contact_id: str, name: str) -> None:
        row = conn.execute(select(contacts.c.name).where(contacts.c.contact_id == contact_id)).first()
        if row is None:
            conn.execute(contacts.insert().values(contact_id=contact_id, name=name, armed=True))
        elif name and row.name != name:
            conn.execute(contacts.update().where(contacts.c.contact_id == contact_id).values(name=name))

    def moods(self, contact_id: str | None = None, since: datetime | None = None, limit: int | None = None) -> list[MoodPoint]:
        """Mood points, newest last."""
        with self.engine.connect() as conn:
            return _moods(conn, contact_id, since, limit)

    def mood_counts(self, since: datetime) -> dict[str, int]:
        query = select(mood_points.c.label, func.count()).where(mood_points.c.at >= since).group_by(mood_points.c.label)
        with self.engine.connect() as conn:
            return {label: int(count) for label, count in conn.execute(query).all()}

    # --- contacts ----------------------------------------------------------------------------

    def find_contacts(self, name_or_id: str, limit: int = 20) -> list[tuple[str, str]]:
        """(contact_id, name) pairs for an id, else for a (case-insensitive) name, else for names and
        ids containing the text. WeChat names are not unique, so a name can give several contacts."""
        wanted = name_or_id.strip().lstrip("@")
        if not wanted:
            return []
        columns = select(contacts.c.contact_id, contacts.c.name).order_by(contacts.c.contact_id).limit(limit)
        pattern = "%" + wanted.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.engine.connect() as conn:
            for where in (
                contacts.c.contact_id == wanted,
                func.lower(contacts.c.name) == wanted.lower(),
                func.lower(contacts.c.name).like(pattern, escape="\\") | func.lower(contacts.c.contact_id).like(pattern, escape="\\"),
            ):
                rows = conn.execute(columns.where(where)).all()
                if rows:
                    return [(row.contact_id, row.name) for row in rows]
        return []

    def state(self, contact_id: str) -> ContactState:
        with self.engine.connect() as conn:
            row = conn.execute(select(contacts).where(contacts.c.contact_id == contact_id)).first()
        if row is None:
            return ContactState(contact_id)
        return _state(row)

    # --- escalation: one transaction per message, the contact's row locked ------------------------

    def _insert_ignore(self, table: Table, **values: Any) -> Any:
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        return insert(table).values(**values).on_conflict_do_nothing()

    def _lock_contact(self, conn: Connection, contact_id: str, name: str) -> Any:
        """The contact's row, created if missing and locked until the transaction ends.

        PostgreSQL: SELECT ... FOR UPDATE, so another process's escalation for this contact waits.
        SQLite: the insert makes this a write transaction, which holds the database's one write lock."""
        conn.execute(self._insert_ignore(contacts, contact_id=contact_id, name=name, armed=True, alerts_raised=0))
        query = select(contacts).where(contacts.c.contact_id == contact_id)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).one()
        if name and row.name != name:
            conn.execute(contacts.update().where(contacts.c.contact_id == contact_id).values(name=name))
        return row

    def escalate(
        self,
        point: MoodPoint,
        score_points: int,
        window_start: datetime,
        rule: Callable[[ContactState, list[MoodPoint], list[MoodPoint]], tuple[ContactState, Alert | None]],
    ) -> Alert | None:
        """Record a mood point and apply `rule` to the contact's state in one transaction.

        `rule(state, recent, in_window)` returns the new state and the alert to raise, if any. The alert
        is stored here, under the unique episode key `<contact>#<n>` where n counts the contact's alerts:
        with the row lock two processes never decide from the same state, and without it (a bug, or a
        database that ignores FOR UPDATE) the key still lets only one of them store its alert. Returns
        the stored alert (with its id), or None."""
        with self.engine.begin() as conn:
            row = self._lock_contact(conn, point.contact_id, point.contact_name)
            conn.execute(mood_points.insert().values(
                contact_id=point.contact_id, contact_name=point.contact_name, chat_id=point.chat_id,
                is_group=point.is_group, at=point.at, label=point.label.value, confidence=point.confidence,
                message_id=point.message_id, excerpt=point.excerpt[: self.excerpt_chars],
                text=point.text if self.keep_text else None,
            ))
            recent = _moods(conn, point.contact_id, None, score_points)
            in_window = _moods(conn, point.contact_id, window_start, None)
            state = _state(row)
            new_state, alert = rule(state, recent, in_window)
            raised = int(row.alerts_raised or 0)
            if alert is not None:
                episode = f"{point.contact_id}#{raised + 1}"
                try:
                    with conn.begin_nested():
                        alert_id = self._insert_alert(conn, alert, episode)
                except IntegrityError:
                    log.warning("alert %s for %s was already raised by another process", episode, point.contact_id)
                    return None
                alert = replace(alert, alert_id=alert_id)
                raised += 1
            if new_state != state or alert is not None:
                conn.execute(contacts.update().where(contacts.c.contact_id == point.contact_id).values(
                    armed=new_state.armed, last_alert_at=new_state.last_alert_at, muted_until=new_state.muted_until,
                    last_severity=new_state.last_severity, alerts_raised=raised,
                ))
            return alert

    # --- scheduled jobs across processes ------------------------------------------------------------

    def claim_job(self, name: str, slot: str, holder: str, at: datetime) -> bool:
        """True for exactly one caller per (job, slot): a compare-and-set on the job's row, so a job
        scheduled in several processes runs once. Slots must sort in time order (same format per job)."""
        with self.engine.begin() as conn:
            conn.execute(self._insert_ignore(job_runs, name=name, slot="", holder="", claimed_at=at))
            done = conn.execute(
                job_runs.update().where(job_runs.c.name == name, job_runs.c.slot < slot)
                .values(slot=slot, holder=holder[:200], claimed_at=at)
            ).rowcount
        return bool(done)

    def job_holder(self, name: str) -> tuple[str, str] | None:
        """(slot, holder) of a job's last claimed run."""
        with self.engine.connect() as conn:
            row = conn.execute(select(job_runs.c.slot, job_runs.c.holder).where(job_runs.c.name == name)).first()
        return (row.slot, row.holder) if row else None

    def save_state(self, state: ContactState) -> None:
        with self.engine.begin() as conn:
            self._upsert_name(conn, state.contact_id, "")
            conn.execute(contacts.update().where(contacts.c.contact_id == state.contact_id).values(
                armed=state.armed, last_alert_at=state.last_alert_at, muted_until=state.muted_until,
                last_severity=state.last_severity,
            ))

    # --- conversation memory ------------------------------------------------------------------

    def add_memory(self, chat_id: str, at: datetime, turns: list[ChatTurn], keep: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(memory.insert(), [{"chat_id": chat_id, "at": at, "role": t.role, "text": t.text} for t in turns])
            ids = conn.execute(
                select(memory.c.id).where(memory.c.chat_id == chat_id).order_by(memory.c.id.desc()).offset(keep)
            ).scalars().all()
            if ids:
                conn.execute(memory.delete().where(memory.c.id.in_(ids)))

    def memory(self, chat_id: str, since: datetime) -> list[ChatTurn]:
        query = select(memory.c.role, memory.c.text, memory.c.at).where(memory.c.chat_id == chat_id).order_by(memory.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        # a conversation silent for longer than the expiry starts afresh
        if not rows or rows[-1].at < since:
            return []
        return [ChatTurn(r.role, r.text) for r in rows]

    # --- alerts ------------------------------------------------------------------------------

    def create_alert(self, alert: Alert) -> int:
        with self.engine.begin() as conn:
            return self._insert_alert(conn, alert, None)

    def _insert_alert(self, conn: Connection, alert: Alert, episode: str | None) -> int:
        result = conn.execute(alerts.insert().values(
            contact_id=alert.contact_id, contact_name=alert.contact_name, chat_id=alert.chat_id,
            severity=alert.severity, reason=alert.reason, excerpts=json.dumps(list(alert.excerpts), ensure_ascii=False),
            trend=json.dumps(list(alert.trend)), created_at=alert.created_at, kind=alert.kind, episode=episode,
        ))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def mark_delivered(self, alert_id: int, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(alerts.update().where(alerts.c.id == alert_id).values(delivered_at=at))

    def mark_reminded(self, alert_id: int, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(alerts.update().where(alerts.c.id == alert_id).values(reminded_at=at))

    def ack(self, alert_id: int, at: datetime) -> bool:
        if not 0 < alert_id <= MAX_ALERT_ID:
            return False  # no such alert, and past the database's integers a bind error
        with self.engine.begin() as conn:
            result = conn.execute(
                alerts.update().where(alerts.c.id == alert_id, alerts.c.acked_at.is_(None)).values(acked_at=at)
            )
            return bool(result.rowcount)

    def mute(self, contact_id: str, until: datetime) -> None:
        """No mood alerts for this contact until `until` (the escalation rules read muted_until; a crisis still alerts)."""
        with self.engine.begin() as conn:
            self._upsert_name(conn, contact_id, "")
            conn.execute(contacts.update().where(contacts.c.contact_id == contact_id).values(muted_until=until))

    def _alerts(self, *where: Any, newest: int | None = None) -> list[Alert]:
        """Matching alerts, oldest first; `newest`: only that many of the most recent."""
        query = select(alerts).where(*where)
        query = query.order_by(alerts.c.id) if newest is None else query.order_by(alerts.c.id.desc()).limit(newest)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if newest is not None:
            rows = rows[::-1]
        return [
            Alert(
                contact_id=r.contact_id, chat_id=r.chat_id, severity=r.severity, reason=r.reason,
                excerpts=tuple(json.loads(r.excerpts)), trend=tuple(json.loads(r.trend)),
                created_at=r.created_at, contact_name=r.contact_name, alert_id=r.id,
                kind=r.kind,
            )
            for r in rows
        ]

    def alerts_since(self, since: datetime, kind: str | None = None) -> list[Alert]:
        """Alerts (of one kind, or all) created at or after `since`."""
        where = [alerts.c.created_at >= since] + ([alerts.c.kind == kind] if kind else [])
        return self._alerts(*where)

    def latest_alert(self, kind: str) -> Alert | None:
        """The newest alert of one kind (the model server watch keeps its state in them)."""
        found = self._alerts(alerts.c.kind == kind, newest=1)
        return found[0] if found else None

    def undelivered_alerts(self) -> list[Alert]:
        # one acknowledged on the dashboard while chat was down is not sent late with "#ack N"
        return self._alerts(alerts.c.delivered_at.is_(None), alerts.c.acked_at.is_(None))

    def open_alerts(self) -> list[Alert]:
        return self._alerts(alerts.c.acked_at.is_(None))

    def alerts_to_remind(self, older_than: datetime) -> list[Alert]:
        """Unacknowledged alerts created before `older_than` and not reminded since then."""
        return self._alerts(
            alerts.c.acked_at.is_(None),
            alerts.c.created_at < older_than,
            (alerts.c.reminded_at.is_(None)) | (alerts.c.reminded_at < older_than),
        )

    # --- audit and shared flags ---------------------------------------------------------------

    def record_action(self, at: datetime, actor: str, action: str, target: str = "", detail: str = "") -> None:
        with self.engine.begin() as conn:
            conn.execute(audit.insert().values(at=at, actor=actor[:128], action=action, target=target[:256], detail=detail))

    def actions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest audit entries, newest first."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [row._asdict() for row in conn.execute(query)]

    def flag(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(flags.c.value).where(flags.c.name == name)).scalar()

    def set_flag(self, name: str, value: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(flags.update().where(flags.c.name == name).values(value=value, updated_at=at)).rowcount
            if not done:
                conn.execute(flags.insert().values(name=name, value=value, updated_at=at))

    def end_session(self, token_digest: str, until: datetime) -> None:
        """Record a dashboard logout; ended_sessions() returns it until `until`."""
        with self.engine.begin() as conn:
            conn.execute(self._insert_ignore(ended_sessions, token_digest=token_digest, until=until))

    def ended_sessions(self, now: datetime) -> dict[str, datetime]:
        """Sessions ended by a logout whose cookies have not expired yet; the expired are deleted."""
        with self.engine.begin() as conn:
            conn.execute(ended_sessions.delete().where(ended_sessions.c.until <= now))
            rows = conn.execute(select(ended_sessions.c.token_digest, ended_sessions.c.until))
            return {str(row.token_digest): _utc(row.until) or now for row in rows}

    # --- retention ----------------------------------------------------------------------------

    def prune(self, before: datetime) -> int:
        """Delete mood points, memory and acknowledged alerts older than `before`."""
        with self.engine.begin() as conn:
            removed = conn.execute(mood_points.delete().where(mood_points.c.at < before)).rowcount
            removed += conn.execute(memory.delete().where(memory.c.at < before)).rowcount
            removed += conn.execute(
                alerts.delete().where(alerts.c.created_at < before, alerts.c.acked_at.is_not(None))
            ).rowcount
        return int(removed)


def _state(row: Any) -> ContactState:
    return ContactState(row.contact_id, bool(row.armed), row.last_alert_at, row.muted_until, row.last_severity)


def _moods(conn: Connection, contact_id: str | None, since: datetime | None, limit: int | None) -> list[MoodPoint]:
    query = select(mood_points)
    if contact_id is not None:
        query = query.where(mood_points.c.contact_id == contact_id)
    if since is not None:
        query = query.where(mood_points.c.at >= since)
    query = query.order_by(mood_points.c.at.desc(), mood_points.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).all()
    return [
        MoodPoint(
            contact_id=r.contact_id, chat_id=r.chat_id, at=r.at, label=Label(r.label),
            confidence=r.confidence, message_id=r.message_id, excerpt=r.excerpt,
            contact_name=r.contact_name, is_group=r.is_group, text=r.text,
        )
        for r in reversed(rows)
    ]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the report command read while the bot writes; a busy timeout rides out short locks
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
