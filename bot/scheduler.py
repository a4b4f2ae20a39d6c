"""A thin APScheduler wrapper owned by the Application's start and stop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import jobs
from bot.alerts import Alerter
from bot.services import Services

log = logging.getLogger(__name__)

Job = Callable[[Services, Alerter], Awaitable[Any]]


class Scheduler:
    def __init__(self, services: Services, alerter: Alerter) -> None:
        self.services = services
        self.alerter = alerter
        settings = services.settings.schedule
        self._scheduler = AsyncIOScheduler(timezone=services.tz) if services.tz else AsyncIOScheduler()
        digest_h, digest_m = (int(x) for x in settings.digest_time.split(":"))
        prune_h, prune_m = (int(x) for x in settings.prune_time.split(":"))
        self._add("daily_digest", jobs.daily_digest, CronTrigger(hour=digest_h, minute=digest_m))
        self._add("remind_unacknowledged", jobs.remind_unacknowledged,
                  IntervalTrigger(minutes=settings.reminder_every_minutes))
        self._add("prune_old", jobs.prune_old, CronTrigger(hour=prune_h, minute=prune_m))

    def _add(self, name: str, job: Job, trigger: Any) -> None:
        async def run() -> None:
            try:
                await job(self.services, self.alerter)
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
