"""Run-time state that admin commands and the dashboard change and stages read.

`paused` lives in the store's flags table when there is a store, so that a dashboard running as a
separate process (`python -m bot dashboard`) pauses the running bot too. Reads are cached for a
few seconds: the Application reads it at the start of every turn (into `Turn.paused`, which the
stages read) and that must not cost a query each time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Callable, Protocol

log = logging.getLogger(__name__)

PAUSED_FLAG = "paused"


class FlagStore(Protocol):
    def flag(self, name: str) -> str | None: ...

    def set_flag(self, name: str, value: str, at: datetime) -> None: ...


class BotState:
    def __init__(
        self,
        started_at: datetime,
        model_name: str,
        flags: FlagStore | None = None,
        cache_s: float = 3.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.started_at = started_at
        self.model_name = model_name
        self._flags = flags
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._paused = False
        self._read_at: float | None = None

    @property
    def paused(self) -> bool:
        """#pause: moods and alerts go on, auto-replies stop."""
        if self._flags is None:
            return self._paused
        now = self._monotonic()
        if self._read_at is None or now - self._read_at >= self._cache_s:
            try:
                self._paused = self._flags.flag(PAUSED_FLAG) == "1"
            except Exception as exc:  # a database hiccup keeps the last known state rather than failing a turn
                log.warning("cannot read the pause flag, keeping %s: %s", self._paused, exc)
            self._read_at = now
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        if self._flags is not None:
            self._flags.set_flag(PAUSED_FLAG, "1" if value else "0", datetime.now(timezone.utc))
            self._read_at = self._monotonic()

    async def is_paused(self) -> bool:
        """`paused` off the event loop (a cache miss reads the store)."""
        return await asyncio.to_thread(lambda: self.paused)

    async def set_paused(self, value: bool) -> None:
        await asyncio.to_thread(setattr, self, "paused", value)
