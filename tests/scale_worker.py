"""One bot process for the multi-process tests: `python -m tests.scale_worker URL START_AT COUNT`.

It builds a real Application on the shared PostgreSQL store (with the scripted fake engine), waits
until the wall clock reaches START_AT, sends COUNT negative messages from one contact, one every
50 ms, then fires the daily digest job, and prints one JSON line: what it alerted and whether its
digest ran."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timezone

from bot.app import Application
from bot.clock import SystemClock
from bot.config import Settings
from bot.store import Store
from tests.fakes import FakeEngine, RecordingSender, make_message


async def main(url: str, start_at: float, count: int) -> None:
    settings = Settings.model_validate({"admin": {"ids": ["boss"]}, "schedule": {"enabled": False}})
    sender = RecordingSender()
    async with Application(settings, FakeEngine(), sender, SystemClock(), Store(url)) as app:
        result = await work(app, sender, start_at, count)
    print(json.dumps(result))


async def work(app: Application, sender: RecordingSender, start_at: float, count: int) -> dict[str, object]:
    await asyncio.sleep(max(0.0, start_at - time.time()))
    alerts = []
    for i in range(count):
        turn = await app.process(make_message(f"I feel so sad ({i})", chat_id="carol", sender_id="carol",
                                              sender_name="Carol", sent_at=datetime.now(timezone.utc),
                                              message_id=f"{sys.argv[4] if len(sys.argv) > 4 else 'w'}-{i}"))
        assert turn is not None
        alerts += [a.alert_id for a in turn.alerts]
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, start_at + count * 0.05 + 1.0 - time.time()))  # both fire the digest together
    digest = await app.scheduler.run("daily_digest")
    digests = sum("Daily mood digest" in m.text for m in sender.sent)
    return {"alerts": alerts, "digest_ran": digest, "digests_sent": digests}


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
