from __future__ import annotations

import logging

import pytest

from bot.config import OutboundSettings
from bot.domain import OutboundMessage
from bot.outbound import Outbound
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
