"""Sends the outbox: splits long replies, applies rate limits, retries with backoff.

Rate limits use aiolimiter (leaky bucket); retries use tenacity. A message that still fails
after its retries is logged with its text and counted, never dropped silently.

A sender with its own rules (`ChannelRules`: WeChat's official channels) splits messages to its
platform's limit itself and says which messages cost no platform send: a reply that goes back
in the HTTP answer to a waiting callback skips the anti-ban limits, which guard platform sends.
A channel that can only keep a message for later raises `Deferred`: not delivered yet, so an
alert stays pending in the store.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Literal, Protocol, runtime_checkable

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryError, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from bot.config import OutboundSettings
from bot.domain import OutboundMessage
from bot.errors import SendRefused
from bot.protocols import Sender
from bot.text import split_message

log = logging.getLogger(__name__)
Outcome = Literal["sent", "failed", "deferred"]  # the Delivery list a piece goes to


class Deferred(SendRefused):
    """The channel kept the message to deliver later (a subscription account waits for the recipient's
    next message): not delivered yet, and not worth a retry now."""


@runtime_checkable
class ChannelRules(Protocol):
    def pieces(self, message: OutboundMessage) -> list[str]: ...  # split to the platform's own limit

    def costs_a_send(self, message: OutboundMessage) -> bool: ...  # False: no platform send, no rate limit


@dataclass
class Delivery:
    """What one deliver() call sent, what it could not send (after retries) and what the channel
    deferred, piece by piece."""

    sent: list[OutboundMessage] = field(default_factory=list)
    failed: list[OutboundMessage] = field(default_factory=list)
    deferred: list[OutboundMessage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.deferred


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
        rules = self.sender if isinstance(self.sender, ChannelRules) else None
        for message in outbox:
            pieces = rules.pieces(message) if rules else split_message(message.text, self.settings.split_chars)
            for index, piece in enumerate(pieces):
                # only the first piece @mentions the sender; the rest read as a continuation
                part = OutboundMessage(message.chat_id, piece, message.mention_ids if index == 0 else ())
                if rules is not None and not rules.costs_a_send(part):
                    outcome = await self._attempts(part)
                else:
                    outcome = await self._send_one(part)
                getattr(result, outcome).append(part)
        return result

    async def _send_one(self, message: OutboundMessage) -> Outcome:
        if self.settings.human_delay_s:
            await self.sleep(self.settings.human_delay_s * random.uniform(0.5, 1.5))
        async with self._limiter(message.chat_id), self.global_limit:
            return await self._attempts(message)

    async def _attempts(self, message: OutboundMessage) -> Outcome:
        """Send with retries: "sent", "failed" (logged with the text) or "deferred" by the channel."""
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
            return "sent"
        except Deferred as exc:
            log.debug("send to %s deferred: %s", message.chat_id, exc)  # the channel logs what it kept
            return "deferred"
        except SendRefused as exc:
            self.failed += 1
            log.error("send to %s refused: %s; message was: %r", message.chat_id, exc, message.text)
            return "failed"
        except RetryError as exc:
            self.failed += 1
            log.error(
                "could not send to %s after %d attempts (%s); message was: %r",
                message.chat_id,
                self.settings.retries + 1,
                exc.last_attempt.exception(),
                message.text,
            )
            return "failed"
