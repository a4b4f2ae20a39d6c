"""Scheduled jobs: plain async functions over the services they use; tests call them directly."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta, tzinfo
from typing import Protocol, runtime_checkable

from bot.alerts import Alerter, alert_line
from bot.domain import HANDOFF, LABEL_EMOJI, Alert, Label, MoodPoint
from bot.protocols import AsyncStore, Clock

log = logging.getLogger(__name__)

# alerts about the model server (kind "model"): "high" when it goes down, "info" when it is back
MODEL_KIND = "model"
MODEL_BACK = "info"
REFUSING = "model server refuses every request"  # a revoked key, a wrong model name: up, but of no use
MODEL_SERVER_ID = "model-server"


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
        await store.open_alerts(), await store.alerts_since(since, kind=HANDOFF),
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


class ServerBreaker(Protocol):
    """What the watch job reads of a circuit breaker (bot/remote.py Breaker)."""

    down_since: datetime | None  # None: closed
    last_error: str
    failed_at: datetime | None
    answered_at: datetime | None
    refusing_since: datetime | None  # None: not refusing every request
    last_refusal: str
    refused_at: datetime | None
    useful_at: datetime | None


@runtime_checkable
class ServedEngine(Protocol):
    """An engine behind a model server (bot/remote.py RemoteEngine); the embedded engine is none."""

    name: str
    breaker: ServerBreaker

    async def try_server(self) -> None: ...


async def watch_model_server(engine: object, store: AsyncStore, clock: Clock, alerter: Alerter, holder: str,
                             every_s: float, tz: tzinfo | None = None) -> Alert | None:
    """One alert when the model server goes down or refuses every request (a revoked key), one notice
    when it is back; the one sent, or None.

    Runs every `every_s` in every process, each reading its own engine's breaker. The outage's state
    is shared through the store: the newest `model` alert says whether the server is down (so a
    restart or a second process does not alert again, and an admin's #ack does not end the outage).
    A process's breaker counts only when it has news since that alert: a failure after the last
    "back", an answer after the last "down"; one that has not asked the server since says nothing.
    Each change claims this interval's slot, so two processes seeing it at once store it once."""
    if not isinstance(engine, ServedEngine):
        return None  # the embedded model: no server to lose
    breaker = engine.breaker
    last = await store.latest_alert(MODEL_KIND)
    outage = last if last is not None and last.severity != MODEL_BACK else None
    if outage is not None or breaker.down_since is not None:
        await engine.try_server()  # a half-open breaker's trial: "back" is seen without waiting for a message
    now = clock.now()
    # the outage this process sees, if any: its start, when it last heard of it, what and why
    seen: tuple[datetime, datetime | None, str, str] | None = None
    if breaker.down_since is not None:
        seen = (breaker.down_since, breaker.failed_at, "model server down", breaker.last_error)
    elif breaker.refusing_since is not None:
        seen = (breaker.refusing_since, breaker.refused_at, REFUSING, breaker.last_refusal)
    # a refusal outage ends with an answer of use; an answer to a ping, or another refusal, is not one
    ended = breaker.useful_at if outage is not None and outage.reason.startswith(REFUSING) else breaker.answered_at
    if outage is None and seen is not None:
        since, heard, what, why = seen
        if heard is None or (last is not None and heard <= last.created_at):
            return None  # from before the last "back", not asked since: no news
        since = max(since, last.created_at) if last is not None else since
        severity, text = "high", f"{what} since {since.astimezone(tz).strftime('%H:%M')}: {why[:300]}"
    elif outage is not None and seen is None and ended is not None and ended > outage.created_at:
        minutes = max(1, round((now - outage.created_at).total_seconds() / 60))
        severity, text = MODEL_BACK, f"model server back after {minutes} min"
    else:
        return None
    alert = Alert(MODEL_SERVER_ID, MODEL_SERVER_ID, severity, text, (), (), now, engine.name[:256], kind=MODEL_KIND)
    if not await store.claim_job("watch_model_server", f"{int(now.timestamp() // every_s):012d}", holder, now):
        return None  # another process records this change in this interval
    if outage is None:
        return await alerter.dispatch(alert)
    # back: the outage alert needs no more reminders, and the notice is only news (acknowledged once
    # sent, so it is never reminded either)
    assert outage.alert_id is not None
    if await store.ack(outage.alert_id, now):
        await store.record_action(now, "moodbot", "ack", str(outage.alert_id), "the model server is back")
    notice = await alerter.dispatch(alert)
    assert notice.alert_id is not None
    await store.ack(notice.alert_id, now)
    return notice
