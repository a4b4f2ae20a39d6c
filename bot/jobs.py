"""Scheduled jobs: plain async functions over the services they use; tests call them directly."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from bot.alerts import Alerter, alert_line
from bot.domain import LABEL_EMOJI, Alert, Label, MoodPoint
from bot.protocols import AsyncStore, Clock

log = logging.getLogger(__name__)


def _digest_text(now: datetime, counts: dict[str, int], points: list[MoodPoint], open_alerts: list[Alert],
                 handoffs: list[Alert]) -> str:
    since = now - timedelta(days=1)
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
    lines = [
        "📋 Daily mood digest (last 24 h)",
        f"Messages: {sum(counts.values())} · " + " ".join(f"{LABEL_EMOJI[lb]} {counts.get(lb.value, 0)}" for lb in Label),
        "Trending down:" if falling else "Trending down: nobody",
        *falling,
        f"Open alerts: {len(open_alerts)}",
        *[f"  {alert_line(a)}" for a in open_alerts],
        f"Hand-offs (questions the FAQ could not answer): {len(handoffs)}",
        *[f"  #{a.alert_id} {a.contact_name or a.contact_id}: “{a.excerpts[0] if a.excerpts else ''}”" for a in handoffs],
    ]
    return "\n".join(lines)


async def digest_text(store: AsyncStore, clock: Clock) -> str:
    now = clock.now()
    since = now - timedelta(days=1)
    return _digest_text(
        now, await store.mood_counts(since), await store.moods(since=now - timedelta(days=2)),
        await store.open_alerts(), await store.alerts_since(since, kind="handoff"),
    )


async def daily_digest(store: AsyncStore, clock: Clock, alerter: Alerter) -> str:
    text = await digest_text(store, clock)
    await alerter.notify_admins(text)
    return text


async def remind_unacknowledged(store: AsyncStore, clock: Clock, alerter: Alerter, remind_after_minutes: float,
                                critical_after_minutes: float | None = None) -> int:
    """Remind admins of alerts not acknowledged in time; retry alerts never delivered."""
    await alerter.redeliver_pending()
    now = clock.now()
    due = await store.alerts_to_remind(now - timedelta(minutes=remind_after_minutes))
    if critical_after_minutes is not None:  # a critical alert (a crisis) is re-sent on its own, shorter interval
        seen = {a.alert_id for a in due}
        critical = await store.alerts_to_remind(now - timedelta(minutes=critical_after_minutes))
        due += [a for a in critical if a.severity == "critical" and a.alert_id not in seen]
    for alert in due:
        assert alert.alert_id is not None  # read back from the store
        sent = await alerter.notify_admins(
            f"⏰ Reminder, not acknowledged yet: {alert_line(alert)}. Reply #ack {alert.alert_id}."
        )
        if sent:
            await store.mark_reminded(alert.alert_id, now)
    return len(due)


async def prune_old(store: AsyncStore, clock: Clock, retention_days: float) -> int:
    before = clock.now() - timedelta(days=retention_days)
    removed = await store.prune(before)
    log.info("retention: removed %d rows older than %s", removed, before.isoformat())
    return removed
