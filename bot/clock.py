"""Time as a service, so that tests can move it instead of sleeping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

from bot.protocols import Clock

__all__ = ["Clock", "ManualClock", "SystemClock", "start_of_day"]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)


def start_of_day(now: datetime, tz: tzinfo | None, days_back: int = 0) -> datetime:
    """Midnight in `tz` (None: the machine's local time zone) `days_back` days before `now`'s day, as UTC."""
    local = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    # step in local days, then localize again: a day across a DST change is not 24 h
    day = (local - timedelta(days=days_back)).replace(tzinfo=None)
    aware = day.replace(tzinfo=tz) if tz else day.astimezone()
    return aware.astimezone(timezone.utc)
