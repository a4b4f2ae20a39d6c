"""What stages, jobs and channels may use: the engine, the sender, the clock, and the store's async face.

handlers/ depends on these names only; the concrete services (bot/model/engine.py, a channel, Store)
are built by the Application and passed in. `AsyncStore` is the one place that moves blocking
database calls off the event loop, so no stage or job calls asyncio.to_thread on the store itself.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, Sequence

from bot.domain import Alert, ChatTurn, ContactState, FaqMatch, MoodPoint, OutboundMessage, Sentiment, Strategy

if TYPE_CHECKING:
    from bot.store import Store


class Engine(Protocol):
    """The one model: classifies moods, judges crisis language, writes replies."""

    name: str

    async def classify(self, text: str) -> Sentiment: ...

    async def crisis_score(self, text: str) -> float: ...

    # whether a colleague should answer this message; None when the engine cannot tell (no hand-off head)
    async def needs_person(self, text: str) -> bool | None: ...

    # whether an FAQ entry's answer (BM25 `score`) answers the question; None without a match head
    async def faq_match(self, question: str, answer: str, score: float) -> FaqMatch | None: ...

    async def generate(
        self,
        history: list[ChatTurn],
        strategy: Strategy,
        lang: str,
        system: str,
        knowledge: Sequence[str] = (),
        attempt: int = 0,  # > 0: asked again with other settings, the guard refused the last reply
    ) -> str: ...

    def close(self) -> None: ...


class Sender(Protocol):
    """A channel's send: one message to one chat; raises when the platform did not take it."""

    async def send(self, message: OutboundMessage) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class AsyncStore:
    """The store's async face: each call runs the blocking Store method on a worker thread."""

    def __init__(self, store: Store) -> None:
        self.sync = store  # for code that must run several calls in one thread (escalation's read-modify-write)

    async def moods(self, contact_id: str | None = None, since: datetime | None = None,
                    limit: int | None = None) -> list[MoodPoint]:
        return await asyncio.to_thread(self.sync.moods, contact_id, since, limit)

    async def mood_counts(self, since: datetime) -> dict[str, int]:
        return await asyncio.to_thread(self.sync.mood_counts, since)

    async def find_contacts(self, name_or_id: str) -> list[tuple[str, str]]:
        return await asyncio.to_thread(self.sync.find_contacts, name_or_id)

    async def record_action(self, at: datetime, actor: str, action: str, target: str = "", detail: str = "") -> None:
        await asyncio.to_thread(self.sync.record_action, at, actor, action, target, detail)

    async def claim_job(self, name: str, slot: str, holder: str, at: datetime) -> bool:
        return await asyncio.to_thread(self.sync.claim_job, name, slot, holder, at)

    async def state(self, contact_id: str) -> ContactState:
        return await asyncio.to_thread(self.sync.state, contact_id)

    async def mute(self, contact_id: str, until: datetime) -> None:
        await asyncio.to_thread(self.sync.mute, contact_id, until)

    async def create_alert(self, alert: Alert) -> int:
        return await asyncio.to_thread(self.sync.create_alert, alert)

    async def mark_delivered(self, alert_id: int, at: datetime) -> None:
        await asyncio.to_thread(self.sync.mark_delivered, alert_id, at)

    async def mark_reminded(self, alert_id: int, at: datetime) -> None:
        await asyncio.to_thread(self.sync.mark_reminded, alert_id, at)

    async def ack(self, alert_id: int, at: datetime) -> bool:
        return await asyncio.to_thread(self.sync.ack, alert_id, at)

    async def open_alerts(self) -> list[Alert]:
        return await asyncio.to_thread(self.sync.open_alerts)

    async def undelivered_alerts(self) -> list[Alert]:
        return await asyncio.to_thread(self.sync.undelivered_alerts)

    async def alerts_to_remind(self, older_than: datetime) -> list[Alert]:
        return await asyncio.to_thread(self.sync.alerts_to_remind, older_than)

    async def alerts_since(self, since: datetime, kind: str | None = None) -> list[Alert]:
        return await asyncio.to_thread(self.sync.alerts_since, since, kind)

    async def latest_alert(self, kind: str) -> Alert | None:
        return await asyncio.to_thread(self.sync.latest_alert, kind)

    async def prune(self, before: datetime) -> int:
        return await asyncio.to_thread(self.sync.prune, before)
