"""Alert delivery: signed webhook with retries, and a crash between storing and sending."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from bot.alerts import Alerter, alert_text, sign
from bot.clock import ManualClock
from bot.config import AlertSettings, OutboundSettings
from bot.domain import Alert, OutboundMessage
from bot.errors import SendRefused
from bot.outbound import Outbound
from bot.protocols import AsyncStore
from bot.store import Store
from tests.conftest import ROOT
from tests.fakes import RecordingSender
from tests.webhook import Receiver

ALERT = Alert("alice", "alice", "high", "3 negative messages in 30 min", ("so sad",), ("negative",) * 3,
              datetime(2026, 1, 1, tzinfo=timezone.utc), "Alice")


async def _no_sleep(seconds: float) -> None:
    return None


def alerter(store: Store, clock: ManualClock, outbound: Outbound | None = None, **settings: object) -> Alerter:
    return Alerter(outbound, AsyncStore(store), AlertSettings(**settings), ["boss"], clock,  # type: ignore[arg-type]
                   sleep=_no_sleep)


async def test_webhook_retries_a_failing_receiver_then_succeeds(store: Store, clock: ManualClock) -> None:
    receiver = Receiver("k3y", fail_first=2)
    try:
        a = alerter(store, clock, webhook_url=receiver.url, webhook_secret="k3y", webhook_retries=3, to_admins=False)
        stored = await a.dispatch(ALERT)
        assert receiver.attempts == 3 and receiver.bad_signatures == 0
        assert receiver.received == [{
            "id": stored.alert_id, "kind": "mood", "severity": "high", "reason": ALERT.reason, "contact_id": "alice",
            "contact_name": "Alice", "chat_id": "alice", "excerpts": ["so sad"], "trend": ["negative"] * 3,
            "created_at": "2026-01-01T00:00:00+00:00",
        }]
        assert store.undelivered_alerts() == []
    finally:
        receiver.close()


async def test_webhook_that_keeps_failing_leaves_the_alert_undelivered(store: Store, clock: ManualClock) -> None:
    receiver = Receiver("k3y", fail_first=100)
    try:
        a = alerter(store, clock, webhook_url=receiver.url, webhook_secret="k3y", webhook_retries=1, to_admins=False)
        await a.dispatch(ALERT)
        assert receiver.attempts == 2
        assert len(store.undelivered_alerts()) == 1  # the reminder job will try again
    finally:
        receiver.close()


def test_signature_is_hmac_sha256_of_the_body() -> None:
    import hashlib
    import hmac

    assert sign("k", b"{}") == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()


async def test_alert_goes_to_admins_and_rooms(store: Store, clock: ManualClock) -> None:
    sender = RecordingSender()
    a = alerter(store, clock, Outbound(sender, OutboundSettings(split_chars=2000), sleep=_no_sleep), rooms=["ops@chatroom"])
    stored = await a.dispatch(ALERT)
    assert [m.chat_id for m in sender.sent] == ["boss", "ops@chatroom"]
    assert sender.sent[0].text == alert_text(stored)
    assert "#ack 1" in sender.sent[0].text and "so sad" in sender.sent[0].text


CRASH = """
import os, sys
from datetime import datetime, timezone
from bot.alerts import Alerter
from bot.store import Store
from bot.domain import Alert
from bot.protocols import AsyncStore

class Crash(Alerter):
    async def deliver(self, alert):  # the process dies after storing, before sending
        os.kill(os.getpid(), 9)

import asyncio
from bot.clock import SystemClock
from bot.config import AlertSettings
store = Store(sys.argv[1])
alert = Alert("alice", "alice", "critical", "crisis language", ("help",), ("negative",),
              datetime.now(timezone.utc), "Alice")
settings = AlertSettings(webhook_url=sys.argv[2], webhook_secret="k3y", to_admins=False)
asyncio.run(Crash(None, AsyncStore(store), settings, [], SystemClock()).dispatch(alert))
"""


async def test_killed_between_storing_and_delivering_delivers_once_after_restart(tmp_path: Path, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    receiver = Receiver("k3y")
    try:
        result = subprocess.run([sys.executable, "-c", CRASH, url, receiver.url], cwd=ROOT, capture_output=True, timeout=60)
        assert result.returncode == -signal.SIGKILL
        assert receiver.received == []
        store = Store(url)  # the restart
        a = alerter(store, clock, webhook_url=receiver.url, webhook_secret="k3y", to_admins=False)
        assert await a.redeliver_pending() == 1
        assert await a.redeliver_pending() == 0
        assert [body["reason"] for body in receiver.received] == ["crisis language"]
        store.close()
    finally:
        receiver.close()


class _FailsFor:
    """Fails every send to one chat, and only while the alert's own send is under way."""

    def __init__(self, broken_chat: str) -> None:
        self.broken_chat = broken_chat
        self.sent: list[OutboundMessage] = []
        self.alert_sending = asyncio.Event()
        self.failed_elsewhere = asyncio.Event()

    async def send(self, message: OutboundMessage) -> None:
        if message.chat_id == self.broken_chat:
            await self.alert_sending.wait()
            self.failed_elsewhere.set()
            raise SendRefused("this chat cannot be written to")
        self.alert_sending.set()
        await self.failed_elsewhere.wait()
        await asyncio.sleep(0.01)  # the other turn counts its failure meanwhile
        self.sent.append(message)


async def test_a_failure_elsewhere_does_not_make_a_delivered_alert_look_undelivered(
    store: Store, clock: ManualClock
) -> None:
    sender = _FailsFor("stranger")
    outbound = Outbound(sender, OutboundSettings(split_chars=2000), sleep=_no_sleep, retry_wait_s=0)
    a = alerter(store, clock, outbound)
    # an alert to the admin and, at the same time, a reply in another turn that fails
    stored, result = await asyncio.gather(a.dispatch(ALERT), outbound.deliver([OutboundMessage("stranger", "hi")]))
    assert not result.ok and outbound.failed == 1
    assert [m.chat_id for m in sender.sent] == ["boss"]
    assert store.undelivered_alerts() == []  # delivered: the other turn's failure is not this alert's
    # so the reminder job does not send it again
    assert await a.redeliver_pending() == 0
    assert [m.chat_id for m in sender.sent] == ["boss"]
