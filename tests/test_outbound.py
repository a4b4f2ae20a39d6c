from __future__ import annotations

import logging

import pytest

from bot.config import OutboundSettings
from bot.domain import OutboundMessage
from bot.outbound import Deferred, Outbound
from tests.fakes import RecordingSender


async def _no_sleep(seconds: float) -> None:
    return None


async def test_long_reply_is_split_in_order_and_mentions_once() -> None:
    sender = RecordingSender()
    outbound = Outbound(sender, OutboundSettings(split_chars=20), sleep=_no_sleep)
    text = "这是第一句话。这是第二句话。这是第三句话。这是第四句话。"
    await outbound.deliver([OutboundMessage("room@chatroom", text, ("alice",))])
    assert "".join(m.text for m in sender.sent) == text
    assert len(sender.sent) == 2
    assert sender.sent[0].mention_ids == ("alice",) and sender.sent[1].mention_ids == ()


async def test_send_failure_is_retried_with_backoff() -> None:
    sender = RecordingSender(failures=2)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    outbound = Outbound(sender, OutboundSettings(retries=3), sleep=record, retry_wait_s=0.5)
    await outbound.deliver([OutboundMessage("alice", "hello")])
    assert [m.text for m in sender.sent] == ["hello"] and sender.attempts == 3
    assert len(waits) == 2 and waits[1] > waits[0]  # exponential backoff
    assert outbound.sent == 1 and outbound.failed == 0


async def test_permanent_failure_is_logged_not_dropped_silently(caplog: pytest.LogCaptureFixture) -> None:
    sender = RecordingSender(failures=100)
    outbound = Outbound(sender, OutboundSettings(retries=2), sleep=_no_sleep)
    with caplog.at_level(logging.ERROR):
        await outbound.deliver([OutboundMessage("alice", "important words")])
    assert outbound.failed == 1 and sender.attempts == 3
    assert "important words" in caplog.text and "after 3 attempts" in caplog.text


async def test_human_delay_waits_before_sending() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    outbound = Outbound(RecordingSender(), OutboundSettings(human_delay_s=2.0), sleep=record)
    await outbound.deliver([OutboundMessage("alice", "hi")])
    assert len(waits) == 1 and 1.0 <= waits[0] <= 3.0


class PassiveChannel(RecordingSender):
    """Splits by its own limit and answers every message in an HTTP reply (no platform send)."""

    def pieces(self, message: OutboundMessage) -> list[str]:
        return [message.text]

    def costs_a_send(self, message: OutboundMessage) -> bool:
        return False


async def test_a_reply_that_costs_no_platform_send_skips_the_rate_limits_and_the_delay() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    sender = PassiveChannel()
    outbound = Outbound(sender, OutboundSettings(global_per_minute=2, per_contact_per_minute=1, human_delay_s=2.0,
                                                 split_chars=20), sleep=record)
    long = "这是第一句话。这是第二句话。这是第三句话。这是第四句话。"  # over split_chars: the channel splits, not outbound
    await outbound.deliver([OutboundMessage("alice", long), OutboundMessage("bob", "hi")])
    assert [m.text for m in sender.sent] == [long, "hi"] and waits == []
    assert outbound.global_limit.has_capacity(2)  # nothing taken from the bucket


async def test_a_message_the_channel_defers_is_not_delivered_and_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    class Keeping(RecordingSender):
        async def send(self, message: OutboundMessage) -> None:
            self.attempts += 1
            raise Deferred("kept for their next message")

    sender = Keeping()
    outbound = Outbound(sender, OutboundSettings(retries=3), sleep=_no_sleep)
    result = await outbound.deliver([OutboundMessage("boss", "alert")])
    assert not result.ok and [m.text for m in result.deferred] == ["alert"] and result.failed == []
    assert sender.attempts == 1 and outbound.failed == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # kept, not failed
