"""A thin APScheduler wrapper owned by the Application's start and stop.

Several bot processes may share one database: each firing first claims its slot (the day, or the
reminder interval's number) in the store, and only the process that wins it runs the job, so the
digest, the reminder and the prune run once across the processes. The model server watch (backend
openai only) runs in every process, since each reads its own breaker; it claims a slot only to
record a change (jobs.watch_model_server).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime
from typing import Any, Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import jobs
from bot.alerts import Alerter
from bot.config import Settings
from bot.process import process_name
from bot.protocols import AsyncStore, Clock

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]
Slot = Callable[[datetime], str]


class Scheduler:
    def __init__(self, settings: Settings, store: AsyncStore, clock: Clock, alerter: Alerter,
                 engine: object = None) -> None:
        schedule = settings.schedule
        self.store = store
        self.clock = clock
        self.tz = schedule.tz
        self.holder = process_name()
        self._runs: dict[str, Callable[[], Awaitable[bool]]] = {}
        self._scheduler = AsyncIOScheduler(timezone=schedule.tz) if schedule.tz else AsyncIOScheduler()
        digest_h, digest_m = (int(x) for x in schedule.digest_time.split(":"))
        prune_h, prune_m = (int(x) for x in schedule.prune_time.split(":"))
        every_s = schedule.reminder_every_minutes * 60
        # each job gets only the services it uses
        self._add("daily_digest", functools.partial(jobs.daily_digest, store, clock, alerter),
                  CronTrigger(hour=digest_h, minute=digest_m), self._day)
        self._add("remind_unacknowledged",
                  functools.partial(jobs.remind_unacknowledged, store, clock, alerter, settings.alerts.remind_after_minutes,
                                    settings.alerts.critical_remind_after_minutes),
                  IntervalTrigger(minutes=schedule.reminder_every_minutes),
                  lambda now: f"{int(now.timestamp() // every_s):012d}")
        self._add("prune_old", functools.partial(jobs.prune_old, store, clock, settings.store.retention_days),
                  CronTrigger(hour=prune_h, minute=prune_m), self._day)
        if isinstance(engine, jobs.ServedEngine):  # the embedded model has no server to watch
            check_s = schedule.model_check_every_s
            self._add("watch_model_server",
                      functools.partial(jobs.watch_model_server, engine, store, clock, alerter, self.holder, check_s, self.tz),
                      IntervalTrigger(seconds=check_s), None)

    def _day(self, now: datetime) -> str:
        return now.astimezone(self.tz).strftime("%Y-%m-%d")

    def _add(self, name: str, job: Job, trigger: Any, slot: Slot | None) -> None:
        async def run() -> bool:
            """Run the job if this process wins its slot (None: every process runs it); True when it ran."""
            try:
                now = self.clock.now()
                if slot is not None and not await self.store.claim_job(name, slot(now), self.holder, now):
                    log.debug("scheduled job %s: slot %s already taken by another process", name, slot(now))
                    return False
                await job()
                return True
            except Exception:  # a job's failure is logged like a stage's, and the next run still happens
                log.exception("scheduled job %s failed", name)
                return False

        self._runs[name] = run
        self._scheduler.add_job(run, trigger, id=name, name=name, coalesce=True, max_instances=1)

    async def run(self, name: str) -> bool:
        """Fire one job now, as its trigger would (tests; the claim applies)."""
        return await self._runs[name]()

    def job_names(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]

    def start(self) -> None:
        self._scheduler.start()

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    async def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler stops on the event loop's next turn
