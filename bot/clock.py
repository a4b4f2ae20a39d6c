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


def start_of_day(now: datetime, tz: tzinfo | None) -> datetime:
    """Midnight of `now`'s day in `tz` (None: the machine's local time zone)."""
    return now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
