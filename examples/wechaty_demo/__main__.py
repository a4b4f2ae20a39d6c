"""`python -m examples.wechaty_demo` (`make demo`): the real Wechaty path without a WeChat account.

Starts the mock puppet-service gateway, connects the bot to it over the Wechaty protocol,
plays a scripted conversation and prints both sides with the mood the bot saw. It runs from a
source checkout: the gateway is Node code (tests/gateway) that a pip install cannot bring.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from bot.app import Application, build_engine
from bot.channels.console import describe
from bot.channels.wechaty import WechatyChannel
from bot.config import Settings, load_settings
from bot.domain import Turn
from bot.errors import MoodbotError
from bot.mock_wechat import free_port
from bot.protocols import Engine
from examples.wechaty_demo.gateway import Gateway

ROOM = "room1@chatroom"
NAMES = {"alice_id": "Alice", "bob_id": "Bob", "carol_id": "Carol", "admin_id": "Supervisor", ROOM: "Support Room"}
SCRIPT: list[dict[str, Any]] = [
    {"from": "alice", "text": "今天考试没考好，心情很低落"},
    {"from": "bob", "text": "I just got promoted, I'm so happy!"},
    {"from": "carol", "room": ROOM, "text": "@TestBot what time does support open tomorrow?", "mentions": ["bot"]},
    {"from": "bob", "room": ROOM, "text": "lunch anyone? (no mention: the bot only records the mood)"},
    {"from": "alice", "image": True},
]


def demo_settings(base: Settings, gateway: Gateway) -> Settings:
    data = base.model_dump()
    data["channel"] = "wechaty"
    data["wechaty"].update(token=gateway.token, endpoint=gateway.endpoint, plugin_port=free_port())
    data["triggers"].update(allow_rooms=[ROOM], non_text_reply="(I can only read text messages for now.)")
    # the demo's fake people must not end up in the real mood history
    data["store"].update(url=f"sqlite:///{Path(tempfile.mkdtemp(prefix='moodbot-demo-')) / 'demo.db'}")
    data["schedule"].update(enabled=False)
    return Settings.model_validate(data)


async def run_demo(base: Settings, engine: Engine | None = None, out: TextIO = sys.stdout, wait_s: float = 90.0) -> int:
    gateway = Gateway()
    gateway.start()
    try:
        settings = demo_settings(base, gateway)
        channel = WechatyChannel(settings)
        app = Application(settings, engine or build_engine(settings), channel)
        return await _play(app, channel, gateway, out, wait_s)
    finally:
        gateway.close()


async def _play(app: Application, channel: WechatyChannel, gateway: Gateway, out: TextIO, wait_s: float) -> int:
    turns: list[Turn] = []
    app.observers.append(turns.append)
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run(app, stop))
    deadline = time.monotonic() + 30
    while channel.bot is None or not channel.bot.logged_in.is_set():
        if task.done() or time.monotonic() > deadline:
            await task  # raises the channel's own error
            return 1
        await asyncio.sleep(0.05)
    print(f"bot connected to the mock gateway at {gateway.endpoint} over the Wechaty protocol\n", file=out)
    for step in SCRIPT:
        where = f" in {NAMES[ROOM]}" if "room" in step else ""
        what = "[an image]" if step.get("image") else step["text"]
        print(f"{step['from'].capitalize()}{where}: {what}", file=out, flush=True)
        before, seen = len(gateway.sent()), len(turns)
        gateway.say(**step)
        until = time.monotonic() + wait_s
        while len(turns) == seen and time.monotonic() < until:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a split reply arrives as several messages
        if len(turns) > seen:
            print(f"    {describe(turns[seen])}", file=out)
        for sent in gateway.sent()[before:]:
            target = NAMES.get(sent["roomId"] or sent["listenerId"], "?")
            print(f"  bot -> {target}: {sent['text']}", file=out, flush=True)
        print(file=out)
    stop.set()
    return await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.wechaty_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    from bot.__main__ import configure_logging

    configure_logging(args.verbose)
    try:
        config = Path(args.config)
        settings = load_settings(config if config.exists() else None)
        return asyncio.run(run_demo(settings))
    except MoodbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
