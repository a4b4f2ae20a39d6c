"""A thin APScheduler wrapper owned by the Application's start and stop.

Several bot processes may share one database, each with its own scheduler: every firing first claims
its slot (the day of a daily job, the interval's number of an interval job) in the store's job_runs
table, and only the process whose claim succeeds runs the job. So the digest goes out once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import jobs
from bot.alerts import Alerter
from bot.process import process_name
from bot.services import Services

log = logging.getLogger(__name__)

Job = Callable[[Services, Alerter], Awaitable[Any]]
Slot = Callable[[datetime], str]


class Scheduler:
    def __init__(self, services: Services, alerter: Alerter) -> None:
        self.services = services
        self.alerter = alerter
        settings = services.settings.schedule
        self._scheduler = AsyncIOScheduler(timezone=services.tz) if services.tz else AsyncIOScheduler()
        digest_h, digest_m = (int(x) for x in settings.digest_time.split(":"))
        prune_h, prune_m = (int(x) for x in settings.prune_time.split(":"))
        self.holder = process_name()
        self._runs: dict[str, Callable[[], Awaitable[bool]]] = {}
        every_s = settings.reminder_every_minutes * 60
        self._add("daily_digest", jobs.daily_digest, CronTrigger(hour=digest_h, minute=digest_m), self._day)
        self._add("remind_unacknowledged", jobs.remind_unacknowledged,
                  IntervalTrigger(minutes=settings.reminder_every_minutes),
                  lambda now: f"{int(now.timestamp() // every_s):012d}")
        self._add("prune_old", jobs.prune_old, CronTrigger(hour=prune_h, minute=prune_m), self._day)

    def _day(self, now: datetime) -> str:
        return now.astimezone(self.services.tz).strftime("%Y-%m-%d")

    def _add(self, name: str, job: Job, trigger: Any, slot: Slot) -> None:
        async def run() -> bool:
            """Run the job if this process wins its slot; True when it ran."""
            try:
                now = self.services.clock.now()
                mine = await asyncio.to_thread(self.services.store.claim_job, name, slot(now), self.holder, now)
                if not mine:
                    log.debug("scheduled job %s: slot %s already taken by another process", name, slot(now))
                    return False
                await job(self.services, self.alerter)
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
