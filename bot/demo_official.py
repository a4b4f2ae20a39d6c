"""`python -m bot demo --channel wechat_mp|wecom`: WeChat's official channels without an account.

Starts a fake of WeChat's API server and the bot's real callback server on 127.0.0.1, then plays
WeChat's side of a scripted conversation: signed, encrypted callbacks exactly as WeChat sends
them. Prints both sides: what each person sent, the mood the bot saw, the passive replies WeChat
got back and what the bot sent through the API (slow replies, alerts, hand-offs).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from bot.app import Application, build_engine
from bot.channels.callback import CallbackChannel, build_channel
from bot.channels.console import describe
from bot.config import Settings
from bot.domain import Turn
from bot.mock_wechat import (
    DEMO_AES_KEY,
    DEMO_AGENT_ID,
    DEMO_APPID,
    DEMO_CORP_ID,
    DEMO_SECRET,
    DEMO_TOKEN,
    Answer,
    FakeWeChatAPI,
    WeChatPlayer,
    free_port,
)
from bot.protocols import Engine

FAQ = Path(__file__).resolve().parent.parent / "examples" / "faq.yaml"
ADMIN = "o_supervisor"
NAMES = {"o_alice": "Alice", "o_bob": "Bob", "o_carol": "Carol", ADMIN: "Supervisor"}
SCRIPT: list[dict[str, Any]] = [
    {"from": "o_alice", "event": "subscribe"},
    {"from": "o_alice", "text": "今天考试没考好，心情很低落"},
    {"from": "o_bob", "text": "I just got promoted, I'm so happy!"},
    {"from": "o_carol", "text": "你们几点开门？"},
    {"from": "o_carol", "text": "How do I get a refund?"},
    {"from": "o_carol", "text": "Do you sell bicycles?"},
    {"from": "o_alice", "image": True},
    {"from": ADMIN, "text": "#alerts"},
]


def demo_settings(base: Settings, channel: str, api: FakeWeChatAPI) -> Settings:
    data = base.model_dump()
    common = {"host": "127.0.0.1", "port": free_port(), "api_base": api.base_url, "token": DEMO_TOKEN,
              "secret": DEMO_SECRET, "encoding_aes_key": DEMO_AES_KEY}
    data["channel"] = channel
    if channel == "wechat_mp":
        data["wechat_mp"].update(common, appid=DEMO_APPID, account_type="service")
    else:
        data["wecom"].update(common, corp_id=DEMO_CORP_ID, agent_id=DEMO_AGENT_ID,
                             greeting="欢迎使用！/ Welcome! Ask me anything about the shop.")
    data["admin"].update(ids=[ADMIN])
    # the sample FAQ is in a source checkout (examples/); an installed package demos without it
    data["knowledge"].update(path=data["knowledge"]["path"] or (str(FAQ) if FAQ.exists() else None))
    data["triggers"].update(non_text_reply="(I can only read text messages for now.)")
    # the demo's fake people must not end up in the real mood history
    data["store"].update(url=f"sqlite:///{Path(tempfile.mkdtemp(prefix='moodbot-demo-')) / 'demo.db'}")
    data["schedule"].update(enabled=False)
    return Settings.model_validate(data)


async def run_official_demo(base: Settings, channel: str, engine: Engine | None = None, out: TextIO = sys.stdout,
                            wait_s: float = 90.0) -> int:
    api = FakeWeChatAPI()
    try:
        settings = demo_settings(base, channel, api)
        callback = build_channel(settings)
        app = Application(settings, engine or build_engine(settings), callback)
        return await _play(app, callback, settings, api, out, wait_s)
    finally:
        api.close()


def indent(text: str) -> str:
    return text.replace("\n", "\n      ")


def _show(answer: Answer) -> str:
    if answer.status != 200:
        return f"HTTP {answer.status}"
    return f"passive reply: {indent(answer.text)}" if answer.text is not None else f"answered {answer.body!r} at once"


async def _play(app: Application, channel: CallbackChannel, settings: Settings, api: FakeWeChatAPI, out: TextIO,
                wait_s: float) -> int:
    turns: list[Turn] = []
    app.observers.append(turns.append)
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run(app, stop))
    ready = asyncio.create_task(channel.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not channel.ready.is_set():
        ready.cancel()
        return await task
    section = getattr(settings, settings.channel)
    url = f"http://127.0.0.1:{channel.port}{section.path}"
    player = WeChatPlayer(url, settings.channel, appid=DEMO_APPID if settings.channel == "wechat_mp" else DEMO_CORP_ID)
    try:
        handshake = await player.handshake()
        print(f"{settings.channel} callback server at {url} (real uvicorn); WeChat's API faked at {api.base_url}", file=out)
        print(f"WeChat -> bot: URL verification (GET, signed) -> HTTP {handshake.status_code} {handshake.text!r}\n", file=out)
        for step in SCRIPT:
            who = NAMES[step["from"]]
            what = f"[{step['event']} event]" if "event" in step else "[an image]" if step.get("image") else step["text"]
            print(f"{who}: {what}", file=out, flush=True)
            sent_before, seen = len(api.sends), len(turns)
            if "event" in step:
                answer = await player.event(step["from"], step["event"])
            elif step.get("image"):
                answer = await player.image(step["from"])
            else:
                answer = await player.text(step["from"], step["text"])
            if "event" not in step:  # a slow reply is still being written after the HTTP answer
                until = time.monotonic() + wait_s
                while len(turns) == seen and time.monotonic() < until:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # API sends (alerts, the rest of a split reply) go out just after
            if len(turns) > seen:
                print(f"    {describe(turns[seen])}", file=out)
            print(f"  WeChat <- bot: {_show(answer)}", file=out)
            for sent in api.sends[sent_before:]:
                api_name = "customer-service API" if sent["path"].endswith("custom/send") else f"message/send, agentid {sent['agentid']}"
                print(f"  bot -> {NAMES.get(sent['touser'], sent['touser'])} ({api_name}): {indent(sent['content'])}", file=out)
            print(file=out, flush=True)
    finally:
        await player.close()
        stop.set()
    return await task
