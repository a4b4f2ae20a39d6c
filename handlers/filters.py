"""Small predicates over inbound messages that compose with &, | and ~, and the stage that applies them."""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Callable

from bot.config import TriggerSettings
from bot.domain import InboundMessage, Turn
from bot.errors import StopPipeline
from bot.protocols import Clock

log = logging.getLogger(__name__)


class Filter:
    def __init__(self, name: str, check: Callable[[InboundMessage], bool]) -> None:
        self.name = name
        self.check = check

    def __call__(self, message: InboundMessage) -> bool:
        return self.check(message)

    def __and__(self, other: Filter) -> Filter:
        return Filter(f"({self.name} & {other.name})", lambda m: self(m) and other(m))

    def __or__(self, other: Filter) -> Filter:
        return Filter(f"({self.name} | {other.name})", lambda m: self(m) or other(m))

    def __invert__(self) -> Filter:
        return Filter(f"~{self.name}", lambda m: not self(m))

    def __repr__(self) -> str:
        return f"Filter({self.name})"


from_self = Filter("from_self", lambda m: m.is_self)
is_group = Filter("is_group", lambda m: m.is_group)
mentions_me = Filter("mentions_me", lambda m: m.mentions_me)


def starts_with(prefix: str) -> Filter:
    return Filter(f"starts_with({prefix!r})", lambda m: bool(prefix) and m.text.lstrip().startswith(prefix))


def sender_in(ids: list[str]) -> Filter:
    wanted = set(ids)
    return Filter("sender_in", lambda m: m.sender_id in wanted)


def chat_in(ids: list[str]) -> Filter:
    wanted = set(ids)
    return Filter("chat_in", lambda m: m.chat_id in wanted)


class SeenIds:
    """Remembers recent message ids, so a redelivered message is handled once."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, message: InboundMessage) -> bool:
        if message.message_id in self._ids:
            return False
        self._ids[message.message_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


class _AgeWarning:
    """Says so when messages are dropped for age: with a host clock that is off, every message is, and a
    debug line would hide it. At most one warning a minute, counting the drops in between."""

    EVERY = timedelta(minutes=1)

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self.last: datetime | None = None
        self.quiet = 0  # drops since the last warning

    def __call__(self, message: InboundMessage, age: timedelta, now: datetime) -> None:
        if self.last is not None and now - self.last < self.EVERY:
            self.quiet += 1
            return
        log.warning("dropped message %s from %s: sent %.0f s ago, older than triggers.max_age_s (%.0f s)%s. If every "
                    "message is dropped, check this host's clock.", message.message_id, message.sender_id,
                    age.total_seconds(), self.max_age_s, f"; {self.quiet} more dropped since the last warning" if self.quiet else "")
        self.last, self.quiet = now, 0


def fresh(clock: Clock, max_age_s: float) -> Filter:
    # messages replayed on start-up can be hours old; answering them now would confuse people
    limit = timedelta(seconds=max_age_s)
    warn = _AgeWarning(max_age_s)

    def check(message: InboundMessage) -> bool:
        now = clock.now()
        age = now - message.sent_at
        if age <= limit:
            return True
        warn(message, age, now)
        return False

    return Filter("fresh", check)


class FilterStage:
    """Stops the turn unless the message passes `accept`."""

    def __init__(self, name: str, accept: Filter | Callable[[InboundMessage], bool]) -> None:
        self.name = name
        self.accept = accept

    async def __call__(self, turn: Turn) -> None:
        if not self.accept(turn.message):
            raise StopPipeline(f"{self.name}: rejected")


class TriggerStage:
    """Decides whether the bot answers, or only records the mood (group messages not addressed to it)."""

    name = "trigger"

    def __init__(self, settings: TriggerSettings) -> None:
        self.settings = settings
        allowed = ~sender_in(settings.block_contacts)
        if settings.allow_contacts:
            allowed = allowed & sender_in(settings.allow_contacts)
        self.allowed_sender = allowed
        self.room_allowed = Filter("room_allowed", lambda m: settings.all_rooms) | chat_in(settings.allow_rooms)
        self.private_trigger = (
            starts_with(settings.private_prefix) if settings.private_prefix else Filter("always", lambda m: True)
        )
        self.group_trigger = mentions_me | starts_with(settings.group_prefix)

    async def __call__(self, turn: Turn) -> None:
        message = turn.message
        if not self.allowed_sender(message):
            raise StopPipeline("sender not allowed")
        if message.is_group:
            if not self.room_allowed(message):
                raise StopPipeline("room not allowed")
            turn.record_only = not self.group_trigger(message)
            prefix = self.settings.group_prefix
        else:
            if not self.private_trigger(message):
                raise StopPipeline("no private prefix")
            prefix = self.settings.private_prefix
        if prefix and turn.text.startswith(prefix):
            turn.text = turn.text[len(prefix):].strip()
