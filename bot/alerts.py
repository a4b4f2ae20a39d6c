"""Alert delivery: admin contacts and rooms through the chat channel, a signed webhook, the log.

An alert is written to the store before anything is sent and marked delivered afterwards, so an
alert interrupted by a crash is sent again after the restart instead of being lost. Webhook
requests use httpx, with tenacity retrying failures with exponential backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from dataclasses import replace
from datetime import tzinfo
from typing import Awaitable, Callable

import httpx
from tenacity import AsyncRetrying, RetryError, stop_after_attempt, wait_exponential

from bot.config import AlertSettings
from bot.domain import HANDOFF, Alert, OutboundMessage, trend_line
from bot.outbound import Outbound
from bot.protocols import AsyncStore, Clock

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Moodbot-Signature"
SEVERITY_MARK = {"warning": "⚠️", "high": "🚨", "critical": "🆘"}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alert_text(alert: Alert) -> str:
    # official accounts know only the openid: no "id (id)"
    who = alert.contact_id if alert.contact_name in ("", alert.contact_id) else f"{alert.contact_name} ({alert.contact_id})"
    where = f" in {alert.chat_id}" if alert.chat_id != alert.contact_id else ""
    if alert.kind == "model":  # the model server down ("high") or back ("info"): bot/jobs.py watch_model_server
        if alert.severity == "info":
            return f"✅ {alert.reason} ({alert.contact_name})."
        return "\n".join([
            f"🔌 Alert #{alert.alert_id}: {alert.reason}",
            f"Server: {alert.contact_name}",
            "Until it answers, messages get reply.unavailable and a hand-off; you will be told when it is back.",
            f"Reply #ack {alert.alert_id} to acknowledge.",
        ])
    if alert.kind == HANDOFF:
        return "\n".join([
            f"🙋 Hand-off #{alert.alert_id}: {alert.reason}",
            f"Who: {who}{where}",
            *[f"  “{excerpt}”" for excerpt in alert.excerpts],
            f"Answer them, then reply #ack {alert.alert_id}.",
        ])
    lines = [
        f"{SEVERITY_MARK.get(alert.severity, '⚠️')} Mood alert #{alert.alert_id} [{alert.severity}]",
        f"Who: {who}{where}",
        f"Why: {alert.reason}",
        f"Trend: {trend_line(alert.trend)}",
    ]
    lines += [f"  “{excerpt}”" for excerpt in alert.excerpts]
    lines.append(f"Reply #ack {alert.alert_id} to acknowledge.")
    return "\n".join(lines)


def alert_line(alert: Alert, tz: tzinfo | None = None, when: bool = False) -> str:
    """One alert on one line (#alerts, the digest, the reminder): the one place for that format."""
    tag = alert.severity if alert.kind == "mood" else alert.kind
    line = f"#{alert.alert_id} [{tag}] {alert.contact_name or alert.contact_id}: {alert.reason}"
    return f"{line} ({alert.created_at.astimezone(tz).strftime('%m-%d %H:%M')})" if when else line


def alert_json(alert: Alert) -> dict[str, object]:
    return {
        "id": alert.alert_id, "kind": alert.kind, "severity": alert.severity, "reason": alert.reason,
        "contact_id": alert.contact_id, "contact_name": alert.contact_name, "chat_id": alert.chat_id,
        "excerpts": list(alert.excerpts), "trend": list(alert.trend), "created_at": alert.created_at.isoformat(),
    }


class Alerter:
    def __init__(
        self,
        outbound: Outbound | None,
        store: AsyncStore,
        settings: AlertSettings,
        admin_ids: list[str],
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_wait_s: float = 1.0,
    ) -> None:
        self.outbound = outbound  # None: webhook and log only (a process without a chat channel)
        self.store = store
        self.settings = settings
        self.admin_ids = admin_ids
        self.clock = clock
        self.sleep = sleep
        self.retry_wait_s = retry_wait_s

    def recipients(self) -> list[str]:
        return (list(self.admin_ids) if self.settings.to_admins else []) + list(self.settings.rooms)

    async def notify_admins(self, text: str) -> bool:
        """Send a text to every admin contact and alert room; False if any send failed."""
        if self.outbound is None:
            log.warning("no chat channel; not sent to admins: %s", text)
            return False
        # judged by this send's own result: a failure in another turn running beside it is not ours
        result = await self.outbound.deliver([OutboundMessage(chat_id, text) for chat_id in self.recipients()])
        return result.ok

    async def dispatch(self, alert: Alert) -> Alert:
        """Store the alert first (unless the escalation already stored it), then deliver it."""
        alert_id = alert.alert_id if alert.alert_id is not None else await self.store.create_alert(alert)
        stored = replace(alert, alert_id=alert_id)
        await self.deliver(stored)
        return stored

    async def deliver(self, alert: Alert) -> bool:
        log.warning("%s #%s [%s] %s (%s): %s", "HAND-OFF" if alert.kind == HANDOFF else "ALERT", alert.alert_id, alert.severity, alert.contact_name,
                    alert.contact_id, alert.reason)
        delivered = True
        if self.recipients():
            delivered = await self.notify_admins(alert_text(alert))
        if self.settings.webhook_url:
            delivered = await self._webhook(alert) and delivered
        if delivered and alert.alert_id is not None:
            await self.store.mark_delivered(alert.alert_id, self.clock.now())
        return delivered

    async def redeliver_pending(self) -> int:
        """Deliver alerts stored but never marked delivered (a crash or an outage came between)."""
        pending = await self.store.undelivered_alerts()
        delivered = 0
        for alert in pending:
            log.info("re-sending alert #%s, stored but not delivered", alert.alert_id)
            delivered += await self.deliver(alert)
        return delivered

    async def _webhook(self, alert: Alert) -> bool:
        assert self.settings.webhook_url and self.settings.webhook_secret
        body = json.dumps(alert_json(alert), ensure_ascii=False).encode()
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self.settings.webhook_secret, body)}
        try:
            async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_s) as client:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.settings.webhook_retries + 1),
                    wait=wait_exponential(multiplier=self.retry_wait_s, max=60),
                    sleep=self.sleep,
                ):
                    with attempt:
                        response = await client.post(self.settings.webhook_url, content=body, headers=headers)
                        response.raise_for_status()
            return True
        except RetryError as exc:
            log.error("webhook for alert #%s failed after %d attempts: %s", alert.alert_id,
                      self.settings.webhook_retries + 1, exc.last_attempt.exception())
            return False
