"""Serving the dashboard with uvicorn: inside the running bot, or on its own over the configured store.

The socket is bound before uvicorn starts, so a port in use is a clear error instead of uvicorn's
exit from inside a task. Inside the bot, uvicorn leaves the signals to the bot's own handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import Iterator

import uvicorn

from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.errors import MoodbotError
from bot.net import listen
from bot.state import BotState
from bot.store import Store
from bot.web.app import create_app

log = logging.getLogger(__name__)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that does not take SIGINT/SIGTERM: the bot that hosts it owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    try:
        return listen(host, port)
    except OSError as exc:
        raise MoodbotError(f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class DashboardServer:
    """The dashboard on its own socket; `await start()` returns once it accepts connections."""

    def __init__(self, settings: Settings, store: Store, state: BotState, clock: Clock, embedded: bool = True) -> None:
        config = settings.dashboard
        self.app = create_app(settings, store, state, clock)  # refuses to go on without a password
        self.sock = bind(config.host, config.port)
        host = f"[{config.host}]" if ":" in config.host else config.host
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        if not is_loopback(config.host):
            log.warning("the dashboard listens on %s, not on loopback: without a TLS proxy in front, passwords and "
                        "cookies cross the network in plain text", config.host)
        uv_config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                   timeout_graceful_shutdown=2, proxy_headers=False)
        self.server = _QuietServer(uv_config) if embedded else uvicorn.Server(uv_config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="dashboard")
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise MoodbotError("the dashboard stopped while starting")
            await asyncio.sleep(0.02)
        log.info("supervisor dashboard on %s", self.url)

    async def serve(self) -> None:
        """Standalone: serve until SIGINT or SIGTERM."""
        log.info("supervisor dashboard on %s (Ctrl-C to stop)", self.url)
        await self.server.serve(sockets=[self.sock])

    async def stop(self) -> None:
        self.app.state.dashboard.stopping.set()  # open live streams end, so the graceful shutdown is quick
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=5)
        self.sock.close()


async def serve_standalone(settings: Settings) -> int:
    """`python -m bot dashboard`: the dashboard over the configured store; pause goes through the store."""
    store = Store.from_settings(settings.store)
    clock = SystemClock()
    try:
        state = BotState(started_at=clock.now(), model_name="(dashboard)", flags=store)
        server = DashboardServer(settings, store, state, clock, embedded=False)
        await server.serve()
    finally:
        store.close()
    return 0
