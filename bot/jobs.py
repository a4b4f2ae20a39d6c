"""Scheduled jobs: plain async functions over the shared services; tests call them directly."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import timedelta

from bot.alerts import Alerter
from bot.domain import LABEL_EMOJI, Label
from bot.services import Services

log = logging.getLogger(__name__)


def _digest_text(services: Services) -> str:
    store, now = services.store, services.clock.now()
    since = now - timedelta(days=1)
    counts = store.mood_counts(since)
    points = store.moods(since=now - timedelta(days=2))
    today: dict[str, list[float]] = defaultdict(list)
    before: dict[str, list[float]] = defaultdict(list)
    names: dict[str, str] = {}
    for p in points:
        (today if p.at >= since else before)[p.contact_id].append(p.score)
        names[p.contact_id] = p.contact_name or p.contact_id
    falling = []
    for contact, scores in today.items():
        mean = sum(scores) / len(scores)
        previous = sum(before[contact]) / len(before[contact]) if before[contact] else 0.0
        if mean < -0.3 or (before[contact] and mean < previous - 0.3):
            falling.append(f"  {names[contact]}: {mean:+.2f} (day before {previous:+.2f})")
    open_alerts = store.open_alerts()
    handoffs = store.alerts_since(since, kind="handoff")
    lines = [
        "📋 Daily mood digest (last 24 h)",
        f"Messages: {sum(counts.values())} · " + " ".join(f"{LABEL_EMOJI[l]} {counts.get(l.value, 0)}" for l in Label),
        "Trending down:" if falling else "Trending down: nobody",
        *falling,
        f"Open alerts: {len(open_alerts)}",
        *[f"  #{a.alert_id} [{a.kind if a.kind != 'mood' else a.severity}] {a.contact_name or a.contact_id}: {a.reason}"
          for a in open_alerts],
        f"Hand-offs (questions the FAQ could not answer): {len(handoffs)}",
        *[f"  #{a.alert_id} {a.contact_name or a.contact_id}: “{a.excerpts[0] if a.excerpts else ''}”" for a in handoffs],
    ]
    return "\n".join(lines)


async def daily_digest(services: Services, alerter: Alerter) -> str:
    text = await asyncio.to_thread(_digest_text, services)
    await alerter.notify_admins(text)
    return text


async def remind_unacknowledged(services: Services, alerter: Alerter) -> int:
    """Remind admins of alerts not acknowledged in time; retry alerts never delivered."""
    await alerter.redeliver_pending()
    now = services.clock.now()
    settings = services.settings.alerts
    due = await asyncio.to_thread(services.store.alerts_to_remind, now - timedelta(minutes=settings.remind_after_minutes))
    # a critical alert (a crisis) is re-sent on its own, shorter interval
    critical = await asyncio.to_thread(
        services.store.alerts_to_remind, now - timedelta(minutes=settings.critical_remind_after_minutes)
    )
    seen = {a.alert_id for a in due}
    due += [a for a in critical if a.severity == "critical" and a.alert_id not in seen]
    for alert in due:
        sent = await alerter.notify_admins(
            f"⏰ Reminder: alert #{alert.alert_id} [{alert.severity}] for {alert.contact_name or alert.contact_id} "
            f"is not acknowledged yet ({alert.reason}). Reply #ack {alert.alert_id}."
        )
        if sent:
            await asyncio.to_thread(services.store.mark_reminded, alert.alert_id, now)
    return len(due)


async def prune_old(services: Services, alerter: Alerter) -> int:
    before = services.clock.now() - timedelta(days=services.settings.store.retention_days)
    removed = await asyncio.to_thread(services.store.prune, before)
    log.info("retention: removed %d rows older than %s", removed, before.isoformat())
    return removed
