"""The Application: built with its sender, owns start and stop (`async with`), processes each message.

    async with Application(settings, engine, sender) as app:
        turn = await app.process(message)

Entering starts what runs beside the turns (re-sending alerts a crash left undelivered, the
scheduled jobs, the dashboard); leaving stops them and closes the engine and the store. A channel
enters once it is connected, so that the first re-sends can reach the platform.

Inbound turns are bounded (config `queue`): each chat's messages run in arrival order, at most
`max_inflight` turns run at once, and past `size` waiting turns a message is *overloaded*: it is
still classified and its mood recorded, in its chat's order, but it gets the short busy reply (or
none) instead of a generated one. Nothing is refused, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, AsyncIterator, Callable

from bot.alerts import Alerter
from bot.clock import SystemClock
from bot.config import Settings
from bot.domain import InboundMessage, Turn, reply_to
from bot.memory import ConversationMemory
from bot.outbound import Outbound
from bot.protocols import AsyncStore, Clock, Engine, Sender
from bot.scheduler import Scheduler
from bot.state import BotState
from bot.store import Store
from bot.text import in_lang
from handlers import ANSWER_STAGES, build_pipeline  # the one place bot/ touches handlers/

log = logging.getLogger(__name__)


def build_engine(settings: Settings) -> Engine:
    """Load the one model and wrap it for async use (imports torch, so it is done only when needed),
    or, with model.backend openai, reach the served model (checked and calibrated at start)."""
    if settings.model.backend == "openai":
        from bot.remote import RemoteEngine

        remote = RemoteEngine(settings.model, settings.sentiment)
        remote.check()
        return remote
    from bot.model.engine import AsyncEngine, ModelEngine
    from bot.model.loader import load_model

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
    def __init__(
        self, settings: Settings, engine: Engine, sender: Sender, clock: Clock | None = None, store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock or SystemClock()
        self.store = store or Store.from_settings(settings.store)
        self.async_store = AsyncStore(self.store)
        self.state = BotState(started_at=self.clock.now(), model_name=engine.name, flags=self.store)
        memory = ConversationMemory(self.store, self.clock, settings.reply.memory_turns, settings.reply.memory_ttl_minutes)
        self.pipeline = build_pipeline(settings, engine, self.async_store, self.clock, self.state, memory)
        self._not_answering = frozenset(stage.name for stage in self.pipeline.stages) - ANSWER_STAGES
        self.outbound = Outbound(sender, settings.outbound)
        self.alerter = Alerter(self.outbound, self.async_store, settings.alerts, settings.admin.ids, self.clock)
        self.scheduler = Scheduler(settings, self.async_store, self.clock, self.alerter, engine)
        self._chat_locks = _ChatLocks()
        self._inflight = asyncio.Semaphore(settings.queue.max_inflight)
        self._pending = 0
        self.overloaded = 0  # messages that got the busy reply (or none) instead of a generated one
        self.observers: list[Callable[[Turn], None]] = []  # told about every finished turn (demo, stats)
        self.dashboard: Any = None  # bot.web.server.DashboardServer while dashboard.enabled
        self._entered = False

    async def __aenter__(self) -> Application:
        if self._entered:
            raise RuntimeError("the Application is already running")
        self._entered = True
        await self.alerter.redeliver_pending()
        if self.settings.schedule.enabled:
            self.scheduler.start()
        if self.settings.dashboard.enabled:
            from bot.web.server import DashboardServer  # the web stack is loaded only when it is used

            self.dashboard = DashboardServer(self.settings, self.store, self.state, self.clock)
            await self.dashboard.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        try:
            if self.dashboard is not None:
                await self.dashboard.stop()
                self.dashboard = None
            await self.scheduler.shutdown()
        finally:
            self.engine.close()
            self.store.close()
            self._entered = False

    async def process(self, message: InboundMessage) -> Turn:
        """Run the pipeline for one message. Past the queue's bound the turn records the mood only."""
        busy = self._pending >= self.settings.queue.size
        if busy:
            self.overloaded += 1
            log.warning("queue full (%d waiting): message %s from %s gets its mood recorded, not a generated reply",
                        self._pending, message.message_id, message.sender_id)
        self._pending += 1
        try:
            # chat lock first: turns of one chat run in order; the semaphore bounds turns in flight
            async with self._chat_locks.hold(message.chat_id), self._inflight:
                turn = Turn(message=message, text=message.text, paused=await self.state.is_paused(), busy=busy)
                await self.pipeline.run(turn, skip=ANSWER_STAGES if busy else ())
                if busy:
                    await self._answer_overloaded(turn)
                for observer in self.observers:
                    observer(turn)
                if turn.outbox:
                    await self.outbound.deliver(turn.outbox)
                for alert in turn.alerts:
                    await self.alerter.dispatch(alert)
                return turn
        finally:
            self._pending -= 1

    async def _answer_overloaded(self, turn: Turn) -> None:
        if turn.stopped is not None or turn.record_only:
            return  # stopped by a filter or a command, or not addressed to the bot: nothing to answer
        # a crisis, or crisis words about someone else, is answered in full however busy the bot is: its
        # vetted reply points to help now and promises a colleague, whom the alert reaches
        if turn.crisis_words:
            await self.pipeline.run(turn, skip=self._not_answering)
            return
        if not turn.paused and self.settings.queue.overload == "busy_reply":
            turn.outbox.append(reply_to(turn.message, in_lang(self.settings.queue.busy_reply, turn.lang)))
