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
variable: a send to the chat whose request is still open joins the passive reply (no platform
send, so the outbound rate limits do not apply); any other send (an alert to an admin, a reply
after the deadline) goes through the API, or on a subscription account is kept and reported as
deferred, so an alert stays pending until it has really gone out. Before a POST is parsed it
passes intake.py: signature first, then WeChat's time window, the size limit and the replay memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.app import Application
from bot.channels.held import HeldTexts, excerpt
from bot.channels.intake import MAX_BODY, Forbidden, ReplayGuard, TooLarge, read_limited
from bot.channels.lifecycle import until_signal
from bot.channels.wechat_api import WindowClosed
from bot.config import CallbackSettings, Settings
from bot.domain import InboundMessage, OutboundMessage
from bot.net import listen
from bot.outbound import Deferred
from bot.text import split_message

log = logging.getLogger(__name__)

SUCCESS = "success"  # WeChat's "received, no passive reply"
ATTEMPTS = 3  # WeChat sends a message at most three times (the first try and two retries)
GREETED = frozenset({"subscribe", "subscribe_scan", "subscribe_scan_product"})  # a follow, also through a QR code
PassiveMode = Literal["none", "service", "subscription"]
__all__ = ["Forbidden", "CallbackChannel", "Parsed", "build_channel", "serve"]


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

    def precheck(self, query: Mapping[str, str]) -> None: ...  # what the query alone proves, before the body is read

    def parse(self, query: Mapping[str, str], body: bytes) -> Parsed: ...  # after precheck; raises Forbidden

    def render(self, parsed: Parsed, text: str) -> str: ...  # a passive text reply

    async def send_text(self, to: str, text: str) -> None: ...  # the platform's send API

    async def close(self) -> None: ...


@dataclass
class _Slot:
    """One inbound message's turn, shared by WeChat's retries of it."""

    chat_id: str
    collecting: bool  # sends to chat_id join the passive reply
    label: str = ""  # which message, from whom, of what kind: for the log line that says how the reply went
    api_sends: int = 0  # sends to chat_id that went through the platform's API
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
        reply_timeout_s: float = 4.5, retry_hold_s: float = 1.0, slow_reply: str = "", drain_s: float = 8.0,
    ) -> None:
        self.app: Application | None = None  # set by run()
        self.settings = settings
        self.dialect = dialect
        self.passive = passive
        self.reply_timeout_s = reply_timeout_s
        self.retry_hold_s = retry_hold_s
        self.slow_reply = slow_reply
        # at shutdown, how long turns in flight may finish: under the 10 s a container stop allows
        self.drain_s = drain_s
        self.port = settings.port
        self.server: _Server | None = None
        self.ready = asyncio.Event()  # set once the server listens on self.port and the app has started
        self.replay = ReplayGuard()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self.held = HeldTexts()  # subscription accounts: texts for a user's next message
        self._tasks: dict[asyncio.Task[Any], str] = {}  # what each background task is, for the shutdown log
        self._wound_down = False
        self._socket: socket.socket | None = None
        self.processed = 0
        self.asgi = Starlette(routes=[Route(settings.path, self._endpoint, methods=["GET", "POST"])])

    @property
    def in_flight(self) -> int:
        """Turns and sends still running in the background."""
        return len(self._tasks)

    # --- HTTP -------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        query = dict(request.query_params)
        try:
            if request.method == "GET":
                return PlainTextResponse(self.dialect.verify(query))
            self.dialect.precheck(query)  # an unsigned request is refused before its body is read
            self.replay.check_time(query)
            body = await read_limited(request.headers.get("content-length"), request.stream(), MAX_BODY)
            parsed = self.dialect.parse(query, body)
            self.replay.remember(query, body)
        except TooLarge as exc:
            log.warning("%s callback refused (413): %s", self.dialect.name, exc)
            return PlainTextResponse("too large", status_code=413)
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
            inbound = parsed.inbound
            slot.label = f"{self.dialect.name} message {parsed.key} from {inbound.sender_id} ({inbound.kind})"
            self._spawn(self._process(inbound, slot), f"the turn for {inbound.chat_id} ({excerpt(inbound.text)!r})")
        else:
            slot.done.set()  # nothing we handle: answered with success
        return slot

    def _event(self, parsed: Parsed, slot: _Slot) -> None:
        """Events never reach the pipeline; a follow gets the greeting, any other event (known or not) nothing."""
        greet = parsed.event in GREETED and bool(self.settings.greeting)
        log.info("%s event %s from %s%s", self.dialect.name, parsed.event, parsed.sender_id, ": greeting" if greet else "")
        if greet:
            if slot.collecting:
                slot.texts.append(self.settings.greeting)
            else:
                self._spawn(self._send_later(parsed.sender_id, self.settings.greeting),
                            f"the greeting to {parsed.sender_id}")
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
                self.held.keep(slot.chat_id, slot.texts)
                slot.texts = []
            if self.passive == "none":
                log.info("%s: %s", slot.label, f"{slot.api_sends} send(s) through the API" if slot.api_sends else "no reply")

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
        log.info("%s: not ready on WeChat's last retry; the reply goes with the user's next message", slot.label)
        slot.answer = self.slow_reply
        return self.dialect.render(parsed, self.slow_reply) if self.slow_reply else SUCCESS

    def _answer(self, parsed: Parsed, slot: _Slot) -> str:
        """The passive reply: what the turn sent to this chat, split to WeChat's limit."""
        held = self.held.take(slot.chat_id)
        texts = held + slot.texts
        slot.texts, slot.collecting = [], False
        pieces = split_bytes("\n".join(texts), self.settings.max_reply_bytes)
        slot.answer = pieces[0] if pieces else ""
        self.held.handed_over(slot.chat_id, held, slot.answer)
        if len(pieces) > 1:  # only one message fits in the HTTP answer
            if self.passive == "service":
                self._spawn(self._send_pieces(slot.chat_id, pieces[1:]), f"the rest of the reply to {slot.chat_id}")
            else:
                self.held.keep(slot.chat_id, pieces[1:])
        if slot.label:
            rest = f" (+{len(pieces) - 1} piece(s) " + ("through the API)" if self.passive == "service" else "held)")
            log.info("%s: %s%s", slot.label, "passive reply" if slot.answer else "no reply", rest if len(pieces) > 1 else "")
        return self.dialect.render(parsed, slot.answer) if slot.answer else SUCCESS

    def _go_async(self, slot: _Slot) -> None:
        """A service account's slow turn: what it sent so far, and all it sends later, goes through the API."""
        slot.collecting = False
        texts, slot.texts = slot.texts, []
        slot.answer = ""
        log.info("%s: not ready within %.1f s, the reply goes through the customer-service API",
                 slot.label, self.reply_timeout_s)
        if texts:
            self._spawn(self._send_later(slot.chat_id, "\n".join(texts)), f"the slow reply to {slot.chat_id}")

    def _spawn(self, coroutine: Any, what: str) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks[task] = what
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        what = self._tasks.pop(task, "a background task")
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", what, exc_info=task.exception())

    async def _send_pieces(self, chat_id: str, pieces: list[str]) -> None:
        # the outbound component's retries, rate limits and failure log apply to these pieces too
        if self.app is not None:
            await self.app.outbound.deliver([OutboundMessage(chat_id, piece) for piece in pieces])

    async def _send_later(self, chat_id: str, text: str) -> None:
        await self._send_pieces(chat_id, [text])

    # --- the Sender protocol, with the outbound component's ChannelRules ---------------------

    def _joins_passive(self, message: OutboundMessage) -> bool:
        slot = _current_slot.get()
        return slot is not None and slot.collecting and message.chat_id == slot.chat_id

    def costs_a_send(self, message: OutboundMessage) -> bool:
        # a passive answer and a text kept for the next message are no platform send: no rate limit
        return not self._joins_passive(message) and self.passive != "subscription"

    def pieces(self, message: OutboundMessage) -> list[str]:
        if self._joins_passive(message):
            return [message.text]  # the passive answer splits all the turn said, at WeChat's byte limit
        return split_bytes(message.text, self.settings.max_reply_bytes)

    async def send(self, message: OutboundMessage) -> None:
        slot = _current_slot.get()
        if self._joins_passive(message):
            assert slot is not None
            slot.texts.append(message.text)
            return
        if self.passive == "subscription":
            if self.held.went_out(message.chat_id, message.text):
                return  # it went out with their last message: delivered
            self.held.keep(message.chat_id, [message.text])
            raise Deferred(f"kept for {message.chat_id}'s next message (a subscription account cannot send)")
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
            if slot is not None and message.chat_id == slot.chat_id:
                slot.api_sends += 1

    # --- lifecycle -------------------------------------------------------------------------

    def bind(self) -> socket.socket | None:
        """Take the port (serve() does it before the model loads); None, after one error line, if it is taken."""
        if self._socket is None:
            try:
                self._socket = listen(self.settings.host, self.settings.port)
            except OSError as exc:
                log.error("the %s callback server cannot listen on %s:%d: %s", self.dialect.name, self.settings.host,
                          self.settings.port, exc.strerror or exc)
        return self._socket

    async def run(self, app: Application, stop: asyncio.Event) -> int:
        """Serve `app` (built with this channel as its sender) until `stop` is set; returns an exit code."""
        self.app = app
        sock = self.bind()
        if sock is None:
            await self.dialect.close()
            return 3
        config = uvicorn.Config(self.asgi, log_level="warning", access_log=False, lifespan="off")
        self.server = _Server(config)
        serving = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if serving.done():  # it could not serve on the socket it was given
                sock.close()
                await self.dialect.close()
                log.error("the %s callback server could not start: %s", self.dialect.name, serving.exception())
                return 3
            await asyncio.sleep(0.02)
        self.port = sock.getsockname()[1]
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
        """Stop taking callbacks, let the turns in flight finish (up to drain_s), then say what is lost."""
        if self._wound_down:
            return
        self._wound_down = True
        assert self.server is not None
        self.server.should_exit = True
        await serving
        if self._tasks:
            log.info("stopping: waiting up to %.0f s for %d turn(s) and send(s) in flight", self.drain_s, len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.drain_s)
            for task in pending:
                log.error("stopping: abandoned %s", self._tasks.get(task, "a background task"))
                task.cancel()
            if pending:  # let them unwind before the application closes the store under them
                await asyncio.wait(pending, timeout=2)
        self.held.lose_all()


def build_channel(settings: Settings) -> CallbackChannel:
    """The callback channel named by settings.channel (wechat_mp or wecom)."""
    import importlib

    channel: CallbackChannel = importlib.import_module(f"bot.channels.{settings.channel}").build_channel(settings)
    return channel


async def serve(settings: Settings) -> int:
    """`python -m bot run` with `channel: wechat_mp` or `wecom`: load the model, serve until a signal."""

    from bot.app import build_engine

    channel = build_channel(settings)  # checks the channel's settings before the model loads
    if channel.bind() is None:  # so does a port that is taken
        await channel.dialect.close()
        return 3
    app = Application(settings, build_engine(settings), channel)
    return await until_signal(lambda stop: channel.run(app, stop))
