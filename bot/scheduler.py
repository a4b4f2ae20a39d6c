"""A thin APScheduler wrapper owned by the Application's start and stop."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import jobs
from bot.alerts import Alerter
from bot.config import Settings
from bot.protocols import AsyncStore, Clock

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]


class Scheduler:
    def __init__(self, settings: Settings, store: AsyncStore, clock: Clock, alerter: Alerter) -> None:
        schedule = settings.schedule
        self._scheduler = AsyncIOScheduler(timezone=schedule.tz) if schedule.tz else AsyncIOScheduler()
        digest_h, digest_m = (int(x) for x in schedule.digest_time.split(":"))
        prune_h, prune_m = (int(x) for x in schedule.prune_time.split(":"))
        # each job gets only the services it uses
        self._add("daily_digest", functools.partial(jobs.daily_digest, store, clock, alerter),
                  CronTrigger(hour=digest_h, minute=digest_m))
        self._add("remind_unacknowledged",
                  functools.partial(jobs.remind_unacknowledged, store, clock, alerter, settings.alerts.remind_after_minutes,
                                    settings.alerts.critical_remind_after_minutes),
                  IntervalTrigger(minutes=schedule.reminder_every_minutes))
        self._add("prune_old", functools.partial(jobs.prune_old, store, clock, settings.store.retention_days),
                  CronTrigger(hour=prune_h, minute=prune_m))

    def _add(self, name: str, job: Job, trigger: Any) -> None:
        async def run() -> None:
            try:
                await job()
            except Exception:  # a job's failure is logged like a stage's, and the next run still happens
                log.exception("scheduled job %s failed", name)

        self._scheduler.add_job(run, trigger, id=name, name=name, coalesce=True, max_instances=1)

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
