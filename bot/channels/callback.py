"""The callback core shared by WeChat's official channels: an HTTP server WeChat calls, and the sender.

WeChat (the Official Account or WeCom) POSTs each message to our URL and waits about 5 s for
the answer. A *dialect* (wechat_mp.py, wecom.py) knows the platform: signatures, decryption,
parsing, rendering a passive reply, the send API. This module knows the timing:

- `passive="none"` (WeCom): answer `success` at once; replies go through the send API.
- `passive="service"` (service accounts): wait up to `reply_timeout_s` for the turn; a reply that
  is ready goes back in the HTTP answer, a slow one goes through the customer-service API.
- `passive="subscription"` (no send API): a slow reply is kept; the request is held past WeChat's
  5 s so that WeChat retries the same MsgId, and a retry returns the reply once it is ready. On
  the last retry the account says it is still thinking and the reply comes with the user's next
  message. Whatever else these accounts would send (alerts) also waits for the recipient's next
  message.

Every MsgId is processed once, whatever the retries. The turn's sends are routed by a context
variable: a send to the chat whose request is still open joins the passive reply; any other send
(an alert to an admin, a reply after the deadline) goes through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.app import Application
from bot.channels.lifecycle import until_signal
from bot.channels.wechat_api import WindowClosed
from bot.config import CallbackSettings, Settings
from bot.domain import InboundMessage, OutboundMessage
from bot.text import split_message

log = logging.getLogger(__name__)

SUCCESS = "success"  # WeChat's "received, no passive reply"
MAX_BODY = 256 * 1024
ATTEMPTS = 3  # WeChat sends a message at most three times (the first try and two retries)
PassiveMode = Literal["none", "service", "subscription"]


class Forbidden(Exception):
    """A callback whose signature or ciphertext does not check out: answered 403, never processed."""


@dataclass
class Parsed:
    """One verified callback as a dialect reads it."""

    key: str  # MsgId, or sender + CreateTime for events (WeChat's own de-duplication rule)
    sender_id: str
    inbound: InboundMessage | None = None  # a message for the pipeline
    event: str | None = None  # subscribe, unsubscribe, ... for events
    context: Any = None  # what the dialect needs to render a passive reply


class Dialect(Protocol):
    name: str

    def verify(self, query: Mapping[str, str]) -> str: ...  # the GET handshake's answer

    def parse(self, query: Mapping[str, str], body: bytes) -> Parsed: ...

    def render(self, parsed: Parsed, text: str) -> str: ...  # a passive text reply

    async def send_text(self, to: str, text: str) -> None: ...  # the platform's send API

    async def close(self) -> None: ...


@dataclass
class _Slot:
    """One inbound message's turn, shared by WeChat's retries of it."""

    chat_id: str
    collecting: bool  # sends to chat_id join the passive reply
    texts: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: int = 1
    answer: str | None = None  # the passive answer given, repeated to a late retry
    orphaned: bool = False  # the last retry went unanswered: the reply waits for the user's next message


_current_slot: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("callback_slot", default=None)


def split_bytes(text: str, max_bytes: int) -> list[str]:
    """Split at sentence ends so that each piece fits WeChat's byte limit for one text message."""
    if not text.strip():
        return []
    widest = max(len(ch.encode()) for ch in text)
    return split_message(text, max(1, max_bytes // widest))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # the channel's caller owns SIGINT/SIGTERM (it sets the stop event); uvicorn must not re-raise them
        yield


class CallbackChannel:
    """The ASGI callback server plus the Sender the Application is built with; run(app, stop) serves."""

    def __init__(
        self, settings: CallbackSettings, dialect: Dialect, passive: PassiveMode,
        reply_timeout_s: float = 4.5, retry_hold_s: float = 1.0, slow_reply: str = "",
    ) -> None:
        self.app: Application | None = None  # set by run()
        self.settings = settings
        self.dialect = dialect
        self.passive = passive
        self.reply_timeout_s = reply_timeout_s
        self.retry_hold_s = retry_hold_s
        self.slow_reply = slow_reply
        self.port = settings.port
        self.server: _Server | None = None
        self.ready = asyncio.Event()  # set once the server listens on self.port and the app has started
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._held: dict[str, list[str]] = {}  # subscription accounts: texts for a user's next message
        self._tasks: set[asyncio.Task[Any]] = set()
        self.processed = 0
        self.asgi = Starlette(routes=[Route(settings.path, self._endpoint, methods=["GET", "POST"])])

    # --- HTTP -------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        query = dict(request.query_params)
        try:
            if request.method == "GET":
                return PlainTextResponse(self.dialect.verify(query))
            body = await request.body()
            if len(body) > MAX_BODY:  # WeChat's messages are a few kB; anything this big is not from WeChat
                return PlainTextResponse("too large", status_code=413)
            parsed = self.dialect.parse(query, body)
        except Forbidden as exc:
            log.warning("%s callback refused (403): %s", self.dialect.name, exc)
            return PlainTextResponse("forbidden", status_code=403)
        answer = await self._handle(parsed)
        return Response(answer, media_type="application/xml" if answer.startswith("<") else "text/plain")

    async def _handle(self, parsed: Parsed) -> str:
        slot = self._slots.get(parsed.key)
        if slot is not None:
            slot.attempts += 1
            log.info("WeChat retried %s (attempt %d): not processed again", parsed.key, slot.attempts)
        else:
            slot = self._start(parsed)
        if self.passive == "none":
            return SUCCESS
        return await self._passive_answer(parsed, slot)

    def _start(self, parsed: Parsed) -> _Slot:
        slot = _Slot(parsed.sender_id, collecting=self.passive != "none")
        self._slots[parsed.key] = slot
        while len(self._slots) > 4096:
            self._slots.popitem(last=False)
        if parsed.event is not None:
            self._event(parsed, slot)
        elif parsed.inbound is not None:
            self._spawn(self._process(parsed.inbound, slot))
        else:
            slot.done.set()  # nothing we handle (an unknown message type): answered with success
        return slot

    def _event(self, parsed: Parsed, slot: _Slot) -> None:
        if parsed.event == "subscribe" and self.settings.greeting:
            log.info("%s followed the account: greeting", parsed.sender_id)
            if slot.collecting:
                slot.texts.append(self.settings.greeting)
            else:
                self._spawn(self._send_later(parsed.sender_id, self.settings.greeting))
        slot.done.set()

    async def _process(self, inbound: InboundMessage, slot: _Slot) -> None:
        _current_slot.set(slot)  # the turn's sends see which request is waiting for them
        assert self.app is not None  # callbacks are served only while run() runs
        try:
            await self.app.process(inbound)
            self.processed += 1
        finally:
            slot.done.set()
            if slot.orphaned and slot.texts:
                self._hold(slot.chat_id, slot.texts)
                slot.texts = []

    def _repeat(self, parsed: Parsed, slot: _Slot) -> str:
        assert slot.answer is not None
        return self.dialect.render(parsed, slot.answer) if slot.answer else SUCCESS

    async def _passive_answer(self, parsed: Parsed, slot: _Slot) -> str:
        if slot.answer is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(slot.done.wait(), self.reply_timeout_s)
        if slot.answer is not None:  # WeChat retried an answered message: the same answer again
            return self._repeat(parsed, slot)
        if slot.done.is_set():
            return self._answer(parsed, slot)
        if self.passive == "service":
            self._go_async(slot)
            return SUCCESS
        if slot.attempts < ATTEMPTS:
            # hold the request past WeChat's 5 s: it gives up on this try and sends the MsgId again
            await asyncio.sleep(self.retry_hold_s)
            return SUCCESS
        slot.orphaned = True
        log.info("reply to %s not ready on WeChat's last retry; it goes with the user's next message", parsed.key)
        slot.answer = self.slow_reply
        return self.dialect.render(parsed, self.slow_reply) if self.slow_reply else SUCCESS

    def _answer(self, parsed: Parsed, slot: _Slot) -> str:
        """The passive reply: what the turn sent to this chat, split to WeChat's limit."""
        texts = self._held.pop(slot.chat_id, []) + slot.texts
        slot.texts, slot.collecting = [], False
        pieces = split_bytes("\n".join(texts), self.settings.max_reply_bytes)
        slot.answer = pieces[0] if pieces else ""
        if len(pieces) > 1:  # only one message fits in the HTTP answer
            if self.passive == "service":
                self._spawn(self._send_pieces(slot.chat_id, pieces[1:]))
            else:
                self._hold(slot.chat_id, pieces[1:])
        return self.dialect.render(parsed, slot.answer) if slot.answer else SUCCESS

    def _go_async(self, slot: _Slot) -> None:
        """A service account's slow turn: what it sent so far, and all it sends later, goes through the API."""
        slot.collecting = False
        texts, slot.texts = slot.texts, []
        slot.answer = ""
        log.info("reply to %s not ready within %.1f s: it goes through the customer-service API",
                 slot.chat_id, self.reply_timeout_s)
        if texts:
            self._spawn(self._send_later(slot.chat_id, "\n".join(texts)))

    def _hold(self, chat_id: str, texts: list[str]) -> None:
        self._held.setdefault(chat_id, []).extend(texts)
        log.info("kept %d message(s) for %s until they next write (subscription accounts cannot send)", len(texts), chat_id)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_pieces(self, chat_id: str, pieces: list[str]) -> None:
        # the outbound component's retries, rate limits and failure log apply to these pieces too
        if self.app is not None:
            await self.app.outbound.deliver([OutboundMessage(chat_id, piece) for piece in pieces])

    async def _send_later(self, chat_id: str, text: str) -> None:
        await self._send_pieces(chat_id, [text])

    # --- the Sender protocol -------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> None:
        slot = _current_slot.get()
        if slot is not None and slot.collecting and message.chat_id == slot.chat_id:
            slot.texts.append(message.text)
            return
        if self.passive == "subscription":
            self._hold(message.chat_id, [message.text])
            return
        for piece in split_bytes(message.text, self.settings.max_reply_bytes):
            try:
                await self.dialect.send_text(message.chat_id, piece)
            except WindowClosed:
                log.warning(
                    "cannot write to %s: the 48-hour customer-service window is closed (errcode 45015). They must "
                    "write to the account first; an alert for them stays pending and is re-sent by the reminder job.",
                    message.chat_id,
                )
                raise

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, app: Application, stop: asyncio.Event) -> int:
        """Serve `app` (built with this channel as its sender) until `stop` is set; returns an exit code."""
        self.app = app
        config = uvicorn.Config(self.asgi, host=self.settings.host, port=self.settings.port, log_level="warning",
                                access_log=False, lifespan="off")
        self.server = _Server(config)
        serving = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if serving.done():
                await serving
                log.error("the %s callback server could not start on %s:%d", self.dialect.name,
                          self.settings.host, self.settings.port)
                return 3
            await asyncio.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        log.info("%s callback listening on http://%s:%d%s", self.dialect.name, self.settings.host, self.port,
                 self.settings.path)
        try:
            async with app:  # entered once the server listens
                self.ready.set()
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                await self._wind_down(serving)  # before the app closes the store under the turns
        finally:
            await self._wind_down(serving)  # a no-op when it ran above
            await self.dialect.close()
        return 0

    async def _wind_down(self, serving: asyncio.Task[None]) -> None:
        """Stop taking callbacks, then let the turns in flight finish briefly."""
        assert self.server is not None
        self.server.should_exit = True
        await serving
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=3)


def build_channel(settings: Settings) -> CallbackChannel:
    """The callback channel named by settings.channel (wechat_mp or wecom)."""
    import importlib

    channel: CallbackChannel = importlib.import_module(f"bot.channels.{settings.channel}").build_channel(settings)
    return channel


async def serve(settings: Settings) -> int:
    """`python -m bot run` with `channel: wechat_mp` or `wecom`: load the model, serve until a signal."""

    from bot.app import build_engine

    channel = build_channel(settings)  # checks the channel's settings before the model loads
    app = Application(settings, build_engine(settings), channel)
    return await until_signal(lambda stop: channel.run(app, stop))
