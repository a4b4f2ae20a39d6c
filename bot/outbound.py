"""Sends the outbox: splits long replies, applies rate limits, retries with backoff.

Rate limits use aiolimiter (leaky bucket); retries use tenacity. A message that still fails
after its retries is logged with its text and counted, never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryError, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from bot.config import OutboundSettings
from bot.domain import OutboundMessage
from bot.errors import SendRefused
from bot.protocols import Sender
from bot.text import split_message

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    """What one deliver() call sent and what it could not send (after retries), piece by piece."""

    sent: list[OutboundMessage] = field(default_factory=list)
    failed: list[OutboundMessage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class Outbound:
    def __init__(
        self,
        sender: Sender,
        settings: OutboundSettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_wait_s: float = 0.5,
    ) -> None:
        self.sender = sender
        self.settings = settings
        self.sleep = sleep
        self.retry_wait_s = retry_wait_s
        self.global_limit = AsyncLimiter(settings.global_per_minute, 60)
        self._per_chat: OrderedDict[str, AsyncLimiter] = OrderedDict()
        self.sent = 0
        self.failed = 0

    def _limiter(self, chat_id: str) -> AsyncLimiter:
        limiter = self._per_chat.get(chat_id)
        if limiter is None:
            limiter = self._per_chat[chat_id] = AsyncLimiter(self.settings.per_contact_per_minute, 60)
            if len(self._per_chat) > 10_000:
                self._per_chat.popitem(last=False)
        self._per_chat.move_to_end(chat_id)
        return limiter

    async def deliver(self, outbox: list[OutboundMessage]) -> Delivery:
        """Send each message (split into pieces); the result is this call's own, whatever runs beside it."""
        result = Delivery()
        for message in outbox:
            pieces = split_message(message.text, self.settings.split_chars)
            for index, piece in enumerate(pieces):
                # only the first piece @mentions the sender; the rest read as a continuation
                part = OutboundMessage(message.chat_id, piece, message.mention_ids if index == 0 else ())
                (result.sent if await self._send_one(part) else result.failed).append(part)
        return result

    async def _send_one(self, message: OutboundMessage) -> bool:
        if self.settings.human_delay_s:
            await self.sleep(self.settings.human_delay_s * random.uniform(0.5, 1.5))
        async with self._limiter(message.chat_id), self.global_limit:
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.settings.retries + 1),
                    wait=wait_exponential(multiplier=self.retry_wait_s, max=30),
                    sleep=self.sleep,
                    retry=retry_if_not_exception_type(SendRefused),  # a refusal is final; retrying wastes time
                    reraise=False,
                ):
                    with attempt:
                        await self.sender.send(message)
                self.sent += 1
                return True
            except SendRefused as exc:
                self.failed += 1
                log.error("send to %s refused: %s; message was: %r", message.chat_id, exc, message.text)
                return False
            except RetryError as exc:
                self.failed += 1
                log.error(
                    "could not send to %s after %d attempts (%s); message was: %r",
                    message.chat_id,
                    self.settings.retries + 1,
                    exc.last_attempt.exception(),
                    message.text,
                )
                return False
