"""The dashboard's read queries: one or two indexed SQL statements per page, same code for SQLite and PostgreSQL.

Aggregation happens in SQL (counts per day and mood, per-contact trends), so a page costs the
same with 100,000 mood points as with 100. Day buckets are computed from boundaries in the
configured time zone rather than with a database date function, which differs per dialect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import MetaData, Table, case, func, inspect, literal, select
from sqlalchemy.sql.elements import ColumnElement

from bot.clock import start_of_day
from bot.domain import SEVERITY_ORDER, ContactState, Label, MoodPoint
from bot.store import Store, alerts, audit, contacts, mood_points

# a table with a `kind` column holds events such as hand-offs; the first of these columns that it has
# marks an event as dealt with (an unknown table with none of them counts every row as open)
CLOSED_COLUMNS = ("acked_at", "resolved_at", "closed_at", "handled_at", "done_at")
TREND_DAYS = 7
TREND_RECENT_HOURS = 48
TREND_MIN_DROP = 0.25


@dataclass(frozen=True)
class AlertRow:
    id: int
    contact_id: str
    contact_name: str
    chat_id: str
    severity: str
    reason: str
    excerpts: tuple[str, ...]
    created_at: datetime
    acked_at: datetime | None
    acked_by: str = ""
    kind: str = "mood"

    @property
    def in_room(self) -> bool:
        return self.chat_id != self.contact_id

    @property
    def who(self) -> str:
        return self.contact_name or self.contact_id


@dataclass(frozen=True)
class Trend:
    contact_id: str
    name: str
    recent: float
    before: float
    points: int

    @property
    def drop(self) -> float:
        return self.recent - self.before


@dataclass(frozen=True)
class DayCounts:
    day: datetime  # local midnight
    counts: dict[str, int]


def _score() -> ColumnElement[Any]:
    # the same +1/-1/0 weighting by confidence as MoodPoint.score, in SQL
    return case(
        (mood_points.c.label == Label.POSITIVE.value, mood_points.c.confidence),
        (mood_points.c.label == Label.NEGATIVE.value, -mood_points.c.confidence),
        else_=literal(0.0),
    )


def _alert_row(row: Any, acked_by: dict[int, str]) -> AlertRow:
    return AlertRow(
        id=row.id, contact_id=row.contact_id, contact_name=row.contact_name, chat_id=row.chat_id,
        severity=row.severity, reason=row.reason, excerpts=tuple(json.loads(row.excerpts)),
        created_at=row.created_at, acked_at=row.acked_at, acked_by=acked_by.get(row.id, ""),
        kind=row.kind or "mood",
    )


class Queries:
    def __init__(self, store: Store, tz: tzinfo | None) -> None:
        self.store = store
        self.tz = tz
        self._kind_tables: list[tuple[Table, ColumnElement[Any] | None]] | None = None
        self._closed_days: dict[datetime, dict[str, int]] = {}  # a day that has ended keeps its counts

    def start_of_day(self, now: datetime, days_back: int = 0) -> datetime:
        return start_of_day(now, self.tz, days_back)

    # --- alerts ---------------------------------------------------------------------------------

    def _alerts(self, *where: Any, order: Any = None, limit: int = 100) -> list[AlertRow]:
        ordering = order if isinstance(order, tuple) else (order if order is not None else alerts.c.id.desc(),)
        query = select(alerts).where(*where).order_by(*ordering).limit(limit)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
            acked = [r.id for r in rows if r.acked_at is not None]
            by: dict[int, str] = {}
            if acked:
                found = conn.execute(
                    select(audit.c.target, audit.c.actor).where(audit.c.action == "ack", audit.c.target.in_([str(i) for i in acked]))
                )
                by = {int(target): actor for target, actor in found}
        return [_alert_row(r, by) for r in rows]

    def open_alerts(self, limit: int = 200) -> list[AlertRow]:
        """The most urgent first (a crisis above newer warnings), then the newest."""
        urgency = case(SEVERITY_ORDER, value=alerts.c.severity, else_=len(SEVERITY_ORDER))
        return self._alerts(alerts.c.acked_at.is_(None), order=(urgency, alerts.c.id.desc()), limit=limit)

    def acknowledged_alerts(self, limit: int = 50) -> list[AlertRow]:
        return self._alerts(alerts.c.acked_at.is_not(None), order=alerts.c.acked_at.desc(), limit=limit)

    def contact_alerts(self, contact_id: str, limit: int = 50) -> list[AlertRow]:
        return self._alerts(alerts.c.contact_id == contact_id, limit=limit)

    def alerts_after(self, alert_id: int, limit: int = 50) -> list[AlertRow]:
        """Open alerts newer than `alert_id`, oldest first: what the live stream sends."""
        rows = self._alerts(alerts.c.acked_at.is_(None), alerts.c.id > alert_id, limit=limit)
        return rows[::-1]

    def acked_among(self, ids: list[int]) -> list[int]:
        """Which of these alerts are acknowledged now."""
        query = select(alerts.c.id).where(alerts.c.id.in_(ids), alerts.c.acked_at.is_not(None))
        with self.store.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def live_state(self) -> tuple[int, int]:
        """(open alerts, highest alert id): the live stream's cheap poll."""
        query = select(func.count().filter(alerts.c.acked_at.is_(None)), func.coalesce(func.max(alerts.c.id), 0))
        with self.store.engine.connect() as conn:
            open_count, last_id = conn.execute(query).one()
        return int(open_count or 0), int(last_id or 0)

    # --- open items by kind (hand-offs and whatever kinds come next) ----------------------------

    def _kinds(self) -> list[tuple[Table, ColumnElement[Any] | None]]:
        if self._kind_tables is None:
            # reflected once: the schema changes only by a migration, and that means a restart
            engine = self.store.engine
            inspector = inspect(engine)
            found: list[tuple[Table, ColumnElement[Any] | None]] = []
            for name in inspector.get_table_names():
                columns = {c["name"] for c in inspector.get_columns(name)}
                if "kind" not in columns:
                    continue
                table = Table(name, MetaData(), autoload_with=engine)
                closed = next((table.c[c] for c in CLOSED_COLUMNS if c in columns), None)
                found.append((table, closed))
            self._kind_tables = found
        return self._kind_tables

    def open_by_kind(self) -> dict[str, int]:
        """Open items per `kind` over every table that has a kind column; {} while none has."""
        totals: dict[str, int] = {}
        with self.store.engine.connect() as conn:
            for table, closed in self._kinds():
                query = select(table.c.kind, func.count()).group_by(table.c.kind)
                if closed is not None:
                    query = query.where(closed.is_(None))
                for kind, count in conn.execute(query):
                    totals[str(kind)] = totals.get(str(kind), 0) + int(count)
        return totals

    # --- moods ----------------------------------------------------------------------------------

    def mood_counts(self, since: datetime) -> dict[str, int]:
        return self.store.mood_counts(since)

    def daily_counts(self, now: datetime, days: int = 14) -> list[DayCounts]:
        """Messages per local day and mood for the last `days` days, today included, oldest first.

        Days that have ended are counted once and remembered (mood points are only ever added with
        the current time), so a page view usually counts only today's rows."""
        starts = [self.start_of_day(now, back) for back in range(days - 1, -1, -1)]
        table = [DayCounts(start, {label.value: 0 for label in Label}) for start in starts]
        first = next((i for i, start in enumerate(starts[:-1]) if start not in self._closed_days), days - 1)
        for i in range(first):
            table[i].counts.update(self._closed_days[starts[i]])
        # newest boundary first: CASE takes the first match
        bucket = case(*((mood_points.c.at >= starts[i], i) for i in range(days - 1, first - 1, -1)), else_=-1)
        query = (
            select(bucket.label("bucket"), mood_points.c.label, func.count())
            .where(mood_points.c.at >= starts[first])
            .group_by(bucket, mood_points.c.label)
        )
        with self.store.engine.connect() as conn:
            for index, label, count in conn.execute(query):
                if first <= index < days and label in table[index].counts:
                    table[index].counts[label] += int(count)
        for i in range(first, days - 1):
            self._closed_days[starts[i]] = dict(table[i].counts)
        for stale in [day for day in self._closed_days if day < starts[0]]:
            del self._closed_days[stale]
        return table

    def trending_down(self, now: datetime, limit: int = 10) -> list[Trend]:
        """Contacts whose mean mood of the last 48 h is well under their mean of the days before."""
        cut = now - timedelta(hours=TREND_RECENT_HOURS)
        score = _score()
        # grouping by an expression, not the bare column: otherwise SQLite walks the whole contact_id
        # index to save a sort (10x slower) instead of reading one week of the covering `at` index;
        # the name is looked up afterwards for the few rows shown, so the scan never reads the table
        contact = mood_points.c.contact_id.concat("").label("contact")
        per_contact = (
            select(contact, func.avg(case((mood_points.c.at >= cut, score))).label("recent"),
                   func.avg(case((mood_points.c.at < cut, score))).label("before"), func.count().label("points"))
            .where(mood_points.c.at >= now - timedelta(days=TREND_DAYS), mood_points.c.at <= now)
            .group_by(contact)
            .subquery()
        )
        drop = per_contact.c.recent - per_contact.c.before
        query = (
            select(per_contact, contacts.c.name)
            .join(contacts, contacts.c.contact_id == per_contact.c.contact, isouter=True)
            .where(per_contact.c.recent.is_not(None), per_contact.c.before.is_not(None), drop <= -TREND_MIN_DROP)
            .order_by(drop, per_contact.c.contact)
            .limit(limit)
        )
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Trend(r.contact, r.name or r.contact, float(r.recent), float(r.before), int(r.points)) for r in rows]

    # --- one contact ----------------------------------------------------------------------------

    def contact(self, contact_id: str) -> tuple[str, ContactState] | None:
        """(name, escalation state), or None for an id the store has never seen."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(contacts.c.name).where(contacts.c.contact_id == contact_id)).first()
        if row is None:
            return None
        return row.name or contact_id, self.store.state(contact_id)

    def timeline(self, contact_id: str, limit: int = 200) -> list[MoodPoint]:
        return self.store.moods(contact_id, limit=limit)

    def muted(self, now: datetime, limit: int = 50) -> list[tuple[str, str, datetime]]:
        query = (
            select(contacts.c.contact_id, contacts.c.name, contacts.c.muted_until)
            .where(contacts.c.muted_until > now).order_by(contacts.c.muted_until).limit(limit)
        )
        with self.store.engine.connect() as conn:
            return [(r.contact_id, r.name or r.contact_id, r.muted_until) for r in conn.execute(query)]

    def actions(self, limit: int = 20) -> list[dict[str, Any]]:
        return self.store.actions(limit)
