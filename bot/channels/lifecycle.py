"""Serving until SIGINT or SIGTERM: the one stop path every long-running channel shares."""

from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable


async def until_signal(run: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Call `run(stop)`; the first SIGINT or SIGTERM sets `stop`, and the handlers are removed after."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
