"""The console channel: talk to the bot in a terminal, interactively or with piped input."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import TextIO

from bot.app import Application
from bot.domain import InboundMessage, OutboundMessage, Turn

CHAT_ID = "console"
USER_ID = "console-user"


class ConsoleSender:
    """Collects what the bot sends, so that each turn prints its mood line before the reply."""

    def __init__(self) -> None:
        self.pending: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> None:
        self.pending.append(message)

    def drain(self) -> list[OutboundMessage]:
        sent, self.pending = self.pending, []
        return sent


def describe(turn: Turn) -> str:
    if turn.sentiment is None:
        return f"({turn.stopped or 'no answer'})"
    s = turn.sentiment
    strategy = turn.strategy.value if turn.strategy else "-"
    if s.confidence == 0.0:  # the model did not answer: not a neutral reading
        return f"❔ mood unknown (the model did not answer) · strategy: {strategy}"
    return f"{s.emoji} {s.label.value} ({s.confidence:.2f}) · strategy: {strategy}"


async def run_console(app: Application, sender: ConsoleSender, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """Read one message a line until end of input; print mood, strategy and reply for each.

    `app` is built with `sender`; this runs it (`async with`) until the input ends."""
    async with app:
        return await _converse(app, sender, stdin, out)


async def _converse(app: Application, sender: ConsoleSender, stdin: TextIO, out: TextIO) -> int:
    interactive = stdin.isatty()
    loop = asyncio.get_running_loop()
    if interactive:
        print(f"Talking to {app.settings.bot_name} ({app.engine.name}). Ctrl-D to quit.", file=out, flush=True)
    while True:
        if interactive:
            print("you> ", end="", file=out, flush=True)
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        message = InboundMessage(
            message_id=uuid.uuid4().hex,
            chat_id=CHAT_ID,
            sender_id=USER_ID,
            sender_name="you",
            text=text,
            sent_at=app.clock.now(),
        )
        if not interactive:
            print(f"you> {text}", file=out, flush=True)
        turn = await app.process(message)
        print(f"     {describe(turn)}", file=out, flush=True)
        for reply in sender.drain():
            print(f"bot> {reply.text}", file=out, flush=True)
