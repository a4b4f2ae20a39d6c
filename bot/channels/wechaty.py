"""WeChat through python-wechaty and a Wechaty puppet service: the only module that imports wechaty.

It turns each wechaty message into an InboundMessage, hands it to the Application, and sends
the outbox back. It supervises the connection: a clear error on a rejected token or an
unreachable endpoint at start, reconnection when the gateway drops, a quick graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

from bot.app import Application
from bot.channels.lifecycle import until_signal
from bot.config import Settings
from bot.domain import InboundMessage, OutboundMessage
from bot.errors import MoodbotError
from bot.text import split_quote

# python-wechaty reads these when it is imported or first used
os.environ["WECHATY_PUPPET"] = "wechaty-puppet-service"
os.environ.setdefault("WECHATY_LOG", "warn")
os.environ.setdefault("CACHE_DIR", str(Path("~/.cache/moodbot/wechaty").expanduser()))

# Python 3.11 refuses WechatyOptions' unhashable dataclass default; this must run before `import wechaty`
import wechaty_puppet.schemas.puppet as _puppet_schemas  # noqa: E402

_puppet_schemas.PuppetOptions.__hash__ = object.__hash__

from grpclib.const import Status  # noqa: E402
from grpclib.exceptions import GRPCError  # noqa: E402
from wechaty import Contact, Message, Wechaty, WechatyOptions  # noqa: E402
from wechaty_puppet import MessageType, PuppetOptions  # noqa: E402

log = logging.getLogger(__name__)

KINDS = {
    MessageType.MESSAGE_TYPE_TEXT: "text",
    MessageType.MESSAGE_TYPE_IMAGE: "image",
    MessageType.MESSAGE_TYPE_AUDIO: "voice",
    MessageType.MESSAGE_TYPE_VIDEO: "video",
    MessageType.MESSAGE_TYPE_ATTACHMENT: "file",
    MessageType.MESSAGE_TYPE_EMOTICON: "emoticon",
    MessageType.MESSAGE_TYPE_URL: "link",
    MessageType.MESSAGE_TYPE_MINI_PROGRAM: "link",
    MessageType.MESSAGE_TYPE_RECALLED: "system",
    MessageType.MESSAGE_TYPE_UNSPECIFIED: "system",
}

EXIT_UNREACHABLE = 3
EXIT_TOKEN_REJECTED = 4


class ChannelError(MoodbotError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def sent_at(timestamp: int | float) -> datetime:
    # the protocol sends seconds or milliseconds; Message.age() gets this wrong in 0.10.x
    seconds = timestamp / 1000 if timestamp > 2_145_888_000 else timestamp
    return datetime.fromtimestamp(seconds, timezone.utc)


async def to_inbound(msg: Message, self_id: str, self_name: str) -> InboundMessage:
    await msg.ready()
    talker = msg.talker()
    room = msg.room()
    with contextlib.suppress(Exception):  # a contact whose profile cannot be loaded still has an id
        await talker.ready()
    text = msg.text() or ""
    mentions_me = bool(room) and await msg.mention_self()
    if mentions_me and self_name:
        text = re.sub(rf"@{re.escape(self_name)}[\u2005\u0020]?", "", text).strip()
    # a quoted reply: the mood, the crisis check and the reply are about the sender's own words, not
    # the quoted ones (someone else's, or the bot's own reply); in a room, quoting the bot addresses it
    quoted, _, own = split_quote(text)
    if quoted is not None:
        text = own
        mentions_me = mentions_me or (bool(room) and bool(self_name) and quoted == self_name)
    return InboundMessage(
        message_id=msg.message_id,
        chat_id=room.room_id if room else talker.contact_id,
        sender_id=talker.contact_id,
        sender_name=talker.name or talker.contact_id,
        text=text,
        sent_at=sent_at(msg.payload.timestamp),
        is_group=room is not None,
        mentions_me=mentions_me,
        is_self=talker.contact_id == self_id,
        kind=KINDS.get(msg.type(), "other"),
    )


class _Bot(Wechaty):  # type: ignore[misc]  # wechaty ships no type hints
    """One connection's bot. start() lets network errors through instead of sleeping 60 s."""

    def __init__(self, options: WechatyOptions, handle: Callable[[Message], Awaitable[None]]) -> None:
        super().__init__(options)
        self.handle = handle
        self.logged_in = asyncio.Event()
        self.logged_out = asyncio.Event()
        # wechaty's own message bridge raises when the connection closes under it; without an
        # 'error' listener pyee re-raises that into the event loop
        self.on("error", lambda error: log.debug("wechaty event error: %r", error))

    async def init_puppet(self) -> None:
        await super().init_puppet()
        # Contact and Room keep a class-level cache that every bot's subclasses share; a bot made
        # after a reconnect would get contacts bound to the dead connection. Give each bot its own.
        for cls in (self.Contact, self.ContactSelf, self.Room):
            cls._pool = {}

    async def start(self) -> None:
        await self.init_puppet()
        await self.init_puppet_event_bridge(self.puppet)
        await self.puppet.start()  # returns when the gateway closes the event stream

    async def on_login(self, contact: Contact) -> None:
        log.info("logged in as %s <%s>", contact.name, contact.contact_id)
        self.logged_in.set()

    async def on_logout(self, contact: Contact) -> None:
        log.warning("logged out: %s", contact.contact_id)
        self.logged_out.set()

    async def on_message(self, msg: Message) -> None:
        await self.handle(msg)


class WechatyChannel:
    """The Sender the Application is built with; run(app, stop) connects, then runs the app."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        self.app: Application | None = None
        self.settings = settings.wechaty
        self.token = self.settings.token or env.get("WECHATY_PUPPET_SERVICE_TOKEN")
        self.endpoint = self.settings.endpoint or env.get("WECHATY_PUPPET_SERVICE_ENDPOINT")
        if not self.token or not self.endpoint:
            raise ChannelError(
                "the wechaty channel needs a puppet service: set WECHATY_PUPPET_SERVICE_TOKEN and "
                "WECHATY_PUPPET_SERVICE_ENDPOINT (host:port), or wechaty.token and wechaty.endpoint in config.yaml",
                2,
            )
        self.bot: _Bot | None = None
        self.self_id = ""
        self.self_name = ""
        self.reconnects = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- inbound ---------------------------------------------------------------------

    async def _handle(self, msg: Message) -> None:
        try:
            inbound = await to_inbound(msg, self.self_id, self.self_name)
        except Exception:  # one unreadable message must not stop the stream
            log.exception("could not read message %s", getattr(msg, "message_id", "?"))
            return
        assert self.app is not None  # messages arrive only while run() is serving
        # a task per message: chats proceed concurrently; the app keeps each chat in order
        task = asyncio.create_task(self.app.process(inbound))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- outbound (the Sender protocol) -----------------------------------------------

    async def send(self, message: OutboundMessage) -> None:
        bot = self.bot
        if bot is None or not bot.logged_in.is_set():
            raise ConnectionError("not connected to the puppet service")
        if "@" in message.chat_id:  # WeChat room ids end in @chatroom; contact ids never hold '@'
            room = bot.Room.load(message.chat_id)
            await room.say(message.text, mention_ids=list(message.mention_ids) or None)
        else:
            await bot.Contact.load(message.chat_id).say(message.text)

    # --- lifecycle ----------------------------------------------------------------------

    async def _reachable(self) -> bool:
        host, _, port = (self.endpoint or "").rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), 3)
        except (OSError, ValueError, asyncio.TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _connect(self) -> tuple[_Bot, asyncio.Task[None]]:
        # a fresh PuppetOptions each time: the dataclass default is one shared instance, so a second
        # bot in the same process would otherwise inherit the first one's endpoint
        options = WechatyOptions(
            token=self.token,
            endpoint=self.endpoint,
            puppet_options=PuppetOptions(token=self.token, end_point=self.endpoint),
            host="127.0.0.1",
            port=self.settings.plugin_port,
        )
        bot = _Bot(options, self._handle)
        task = asyncio.create_task(bot.start())
        login = asyncio.create_task(bot.logged_in.wait())
        await asyncio.wait({task, login}, timeout=self.settings.connect_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        login.cancel()
        if bot.logged_in.is_set():
            self.bot = bot
            user = bot.user_self()
            self.self_id, self.self_name = user.contact_id, user.name or ""
            return bot, task
        error = task.exception() if task.done() and not task.cancelled() else None
        await self._close(bot, task)
        if isinstance(error, GRPCError) and error.status in (Status.UNAUTHENTICATED, Status.PERMISSION_DENIED):
            raise ChannelError(f"the puppet service at {self.endpoint} rejected the token", EXIT_TOKEN_REJECTED)
        reason = f" ({error!r})" if error else ""
        raise ChannelError(
            f"no login from the puppet service at {self.endpoint} within "
            f"{self.settings.connect_timeout_s:g} s{reason}; check the token and that the service is logged in",
            EXIT_UNREACHABLE,
        )

    async def _close(self, bot: _Bot, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bot.stop(), 3)
        # grpclib can swallow a single cancel(); cancel until the task is really finished
        for _ in range(10):
            if task.done():
                break
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("connection ended: %r", task.exception())
        if self.bot is bot:
            self.bot = None

    async def run(self, app: Application, stop: asyncio.Event) -> int:
        """Connect, then run `app` (built with this channel as its sender) until `stop` is set;
        reconnect when the gateway drops. Returns an exit code."""
        if not await self._reachable():
            raise ChannelError(f"cannot reach the puppet service at {self.endpoint}", EXIT_UNREACHABLE)
        self.app = app
        bot, task = await self._connect()
        async with app:  # entered once connected: alerts a crash left undelivered can be sent at once
            return await self._serve(bot, task, stop)

    async def _serve(self, bot: _Bot, task: asyncio.Task[None], stop: asyncio.Event) -> int:
        delay = self.settings.reconnect_delay_s
        while True:
            stopping = asyncio.create_task(stop.wait())
            logout = asyncio.create_task(bot.logged_out.wait())
            await asyncio.wait({task, stopping, logout}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            logout.cancel()
            await self._close(bot, task)
            if stop.is_set():
                break
            log.warning("the gateway connection dropped; reconnecting")
            while not stop.is_set():
                await _sleep_or_stop(delay, stop)
                if stop.is_set():
                    break
                try:
                    if not await self._reachable():
                        raise ChannelError("unreachable", EXIT_UNREACHABLE)
                    bot, task = await self._connect()
                    self.reconnects += 1
                    log.info("reconnected (%d so far)", self.reconnects)
                    delay = self.settings.reconnect_delay_s
                    break
                except ChannelError as exc:
                    delay = min(delay * 2 or 1.0, 30.0)
                    log.warning("reconnect failed: %s; next try in %.0f s", exc, delay)
            if stop.is_set():
                break
        if self._tasks:  # let turns in flight finish briefly, then give up on them
            await asyncio.wait(set(self._tasks), timeout=3)
        return 0


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_wechaty(settings: Settings) -> int:
    """`python -m bot run` with `channel: wechaty`: load the model, connect, serve until a signal."""
    from bot.app import build_engine

    channel = WechatyChannel(settings)  # checks the token and endpoint before the model loads
    app = Application(settings, build_engine(settings), channel)
    return await until_signal(lambda stop: channel.run(app, stop))
