"""The Application: builds the services, owns start and stop, and processes each message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator, Callable

from bot.alerts import Alerter
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.domain import InboundMessage, Turn
from bot.memory import ConversationMemory
from bot.outbound import Outbound, Sender
from bot.scheduler import Scheduler
from bot.services import Services
from bot.state import BotState
from bot.store import Store
from handlers import build_pipeline
from handlers.engine_protocol import Engine

log = logging.getLogger(__name__)


def build_engine(settings: Settings) -> Any:
    """Load the one model and wrap it for async use (imports torch, so it is done only when needed),
    or, with model.backend openai, reach the served model (checked and calibrated at start)."""
    if settings.model.backend == "openai":
        from bot.remote import RemoteEngine

        remote = RemoteEngine(settings.model, settings.sentiment)
        remote.check()
        return remote
    from bot.engine import AsyncEngine, ModelEngine
    from bot.model_loader import load_model

    loaded = load_model(settings.model)
    return AsyncEngine(ModelEngine(loaded, settings.model, settings.sentiment), settings.model.timeout_s)


class _ChatLocks:
    """One lock per chat, so a chat's messages are handled in order; idle locks are dropped."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, chat_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(chat_id, (asyncio.Lock(), 0))
        self._locks[chat_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[chat_id]
            if users <= 1:
                del self._locks[chat_id]
            else:
                self._locks[chat_id] = (lock, users - 1)


class Application:
    def __init__(self, settings: Settings, engine: Engine, clock: Clock | None = None, store: Store | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock or SystemClock()
        self.store = store or Store.from_settings(settings.store)
        memory = ConversationMemory(self.store, self.clock, settings.reply.memory_turns, settings.reply.memory_ttl_minutes)
        self.state = BotState(started_at=self.clock.now(), model_name=engine.name, flags=self.store)
        self.services = Services(settings, engine, self.store, self.clock, self.state, memory)
        self.pipeline = build_pipeline(self.services)
        self.alerter = Alerter(self.store, settings.alerts, settings.admin.ids, self.clock)
        self.scheduler = Scheduler(self.services, self.alerter)
        self.outbound: Outbound | None = None
        self._chat_locks = _ChatLocks()
        self._inflight = asyncio.Semaphore(settings.outbound.max_inflight)
        self._pending = 0
        self.refused = 0
        self.observers: list[Callable[[Turn], None]] = []  # told about every finished turn (demo, stats)
        self.dashboard: Any = None  # bot.web.server.DashboardServer while dashboard.enabled

    def attach(self, sender: Sender) -> None:
        self.outbound = Outbound(sender, self.settings.outbound)
        self.alerter.outbound = self.outbound

    async def start(self) -> None:
        """Once a channel is attached and connected: re-send alerts a crash left undelivered, start jobs."""
        await self.alerter.redeliver_pending()
        if self.settings.schedule.enabled:
            self.scheduler.start()
        if self.settings.dashboard.enabled and self.dashboard is None:
            from bot.web.server import DashboardServer  # the web stack is loaded only when it is used

            self.dashboard = DashboardServer(self.settings, self.store, self.state, self.clock)
            await self.dashboard.start()

    async def stop(self) -> None:
        if self.dashboard is not None:
            await self.dashboard.stop()
            self.dashboard = None
        await self.scheduler.shutdown()
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()
        self.store.close()

    async def process(self, message: InboundMessage) -> Turn | None:
        """Run the pipeline for one message; None when the queue is full and the message is refused."""
        if self._pending >= self.settings.outbound.queue_size:
            self.refused += 1
            log.warning("queue full (%d pending): refused message %s from %s (refused so far: %d)",
                        self._pending, message.message_id, message.sender_id, self.refused)
            return None
        self._pending += 1
        try:
            # chat lock first: turns of one chat run in order; the semaphore bounds chats in flight
            async with self._chat_locks.hold(message.chat_id), self._inflight:
                turn = await self.pipeline.run(Turn(message=message, text=message.text))
                for observer in self.observers:
                    observer(turn)
                if self.outbound is not None and turn.outbox:
                    await self.outbound.deliver(turn.outbox)
                for alert in turn.alerts:
                    await self.alerter.dispatch(alert)
                return turn
        finally:
            self._pending -= 1
