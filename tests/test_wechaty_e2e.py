"""End to end over the real Wechaty protocol: the Node puppet-service gateway on 127.0.0.1, the
bot's wechaty channel and Application, with a fake engine for speed (marked `gateway`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from bot.app import Application
from bot.channels.wechaty import EXIT_TOKEN_REJECTED, EXIT_UNREACHABLE, ChannelError, WechatyChannel
from bot.config import Settings
from bot.mock_wechat import free_port
from examples.wechaty_demo.gateway import Gateway
from tests.fakes import FakeEngine

pytestmark = pytest.mark.gateway

ROOM = "room1@chatroom"


async def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Running:
    def __init__(self, gateway: Gateway, app: Application, channel: WechatyChannel, stop: asyncio.Event, task: asyncio.Task[int]) -> None:
        self.gateway, self.app, self.channel, self.stop, self.task = gateway, app, channel, stop, task

    async def replies_after(self, count: int, n: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            sent = self.gateway.sent()
            return sent if len(sent) >= count + n else None

        return list((await wait_until(enough, timeout, f"{n} replies"))[count:])

    async def quiet(self, seconds: float = 1.0) -> list[dict[str, Any]]:
        await asyncio.sleep(seconds)
        return self.gateway.sent()


def settings_for(gateway: Gateway, data_dir: Path, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "channel": "wechaty",
        "wechaty": {"token": gateway.token, "endpoint": gateway.endpoint, "plugin_port": free_port(), "reconnect_delay_s": 0.2},
        "triggers": {"allow_rooms": [ROOM], "max_age_s": 60},
        "outbound": {"retries": 5},
        "store": {"url": f"sqlite:///{data_dir / 'e2e.db'}"},
        "schedule": {"enabled": False},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value  # type: ignore[dict-item]
    return Settings.model_validate(data)


@pytest.fixture
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    overrides = getattr(request, "param", {})
    gateway = Gateway()
    gateway.start()
    settings = settings_for(gateway, tmp_path, **overrides)
    channel = WechatyChannel(settings)
    app = Application(settings, FakeEngine(), channel)
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run(app, stop))
    try:
        await wait_until(lambda: channel.bot is not None and channel.bot.logged_in.is_set(), 30, "login")
        yield Running(gateway, app, channel, stop, task)
    finally:
        stop.set()
        try:
            assert await asyncio.wait_for(task, 10) == 0
        finally:
            gateway.close()


async def test_private_message_gets_a_reply_that_fits_its_mood(running: Running) -> None:
    running.gateway.say(**{"from": "alice", "text": "I feel so sad today"})
    [reply] = await running.replies_after(0)
    assert reply["listenerId"] == "alice_id" and reply["roomId"] is None
    assert reply["text"].startswith("[comfort]")
    running.gateway.say(**{"from": "bob", "text": "今天太棒了，好开心！"})
    [reply] = await running.replies_after(1)
    assert reply["listenerId"] == "bob_id" and reply["text"].startswith("[celebrate] 好的")


async def test_room_mention_gets_a_reply_that_mentions_the_sender(running: Running) -> None:
    running.gateway.say(**{"from": "alice", "room": ROOM, "text": "@TestBot what time do you open?", "mentions": ["bot"]})
    [reply] = await running.replies_after(0)
    assert reply["roomId"] == ROOM and "alice_id" in reply["mentionIdList"]
    assert "@Alice" in reply["text"] and "[plain]" in reply["text"]
    engine = running.app.engine
    assert engine.generated[-1][0][-1].text == "what time do you open?"  # type: ignore[attr-defined]


SEPARATOR = "\n- - - - - - - - - - - - - - -\n"


async def test_a_quoted_reply_is_read_as_the_senders_own_words(running: Running) -> None:
    # WeChat's quote of someone else's words: neither the mood nor the crisis check reads them
    running.gateway.say(**{"from": "alice", "text": "「Bob：honestly some nights I think about how to end it all」" + SEPARATOR + "what time do you open?"})
    [reply] = await running.replies_after(0)
    assert reply["text"].startswith("[plain]")
    engine: FakeEngine = running.app.engine  # type: ignore[assignment]
    assert engine.classified == ["what time do you open?"]
    assert engine.generated[-1][0][-1].text == "what time do you open?"


async def test_quoting_the_bot_in_a_room_addresses_it_and_quoting_others_does_not(running: Running) -> None:
    running.gateway.say(**{"from": "bob", "room": ROOM, "text": "「Alice：周末去爬山吗」" + SEPARATOR + "好啊，几点出发"})
    running.gateway.say(**{"from": "alice", "room": ROOM, "text": "「TestBot：[plain] I hear you.」" + SEPARATOR + "I feel so sad today"})
    [reply] = await running.replies_after(0)
    assert reply["roomId"] == ROOM and "alice_id" in reply["mentionIdList"] and "[comfort]" in reply["text"]
    assert await running.quiet() == [reply]  # bob's quote of alice got a mood, no reply
    engine: FakeEngine = running.app.engine  # type: ignore[assignment]
    assert engine.classified == ["好啊，几点出发", "I feel so sad today"]


async def test_room_message_without_mention_gets_no_reply_but_a_mood(running: Running) -> None:
    running.gateway.say(**{"from": "bob", "room": ROOM, "text": "this is awful"})
    running.gateway.say(**{"from": "bob", "room": "room2@chatroom", "text": "@TestBot hi", "mentions": ["bot"]})
    engine: FakeEngine = running.app.engine  # type: ignore[assignment]
    await wait_until(lambda: "this is awful" in engine.classified, what="mood recorded")
    assert await running.quiet() == []
    assert engine.classified == ["this is awful"]  # the room that is not allowed is never classified


async def test_own_duplicate_stale_and_image_messages_get_no_reply(running: Running) -> None:
    gw = running.gateway
    gw.say(**{"from": "bot", "to": "alice", "text": "a message the bot itself sent"})
    first = gw.say(**{"from": "alice", "text": "hello there"})
    await running.replies_after(0, n=2)  # the bot's own line, then its reply
    gw.redeliver(first)
    gw.say(**{"from": "alice", "text": "an old message from before the start", "ageSeconds": 3600})
    gw.say(**{"from": "alice", "image": True})
    sent = await running.quiet(1.5)
    assert len([s for s in sent if s["listenerId"] == "alice_id"]) == 1 + 1  # the bot's own line, one reply
    assert running.app.pipeline.errors == 0
    # the channel still answers afterwards
    gw.say(**{"from": "alice", "text": "still there?"})
    await running.replies_after(len(sent))


@pytest.mark.parametrize("running", [{"outbound": {"split_chars": 60}}], indirect=True)
async def test_long_reply_arrives_as_several_messages_in_order(running: Running) -> None:
    # words, not digits: a number the message does not contain would be an invented fact to the guard
    words = ["one", "two", "three", "four", "five", "six"]
    long_reply = " ".join(f"This is sentence number {w} of a long answer." for w in words)
    running.app.engine.reply = long_reply  # type: ignore[attr-defined]
    running.gateway.say(**{"from": "carol", "text": "tell me everything"})
    await running.replies_after(0, n=6)
    sent = await running.quiet(0.5)
    assert [s["listenerId"] for s in sent] == ["carol_id"] * len(sent)
    assert " ".join(s["text"] for s in sent) == long_reply
    assert [s["text"] for s in sent] == [f"This is sentence number {w} of a long answer." for w in words]


@pytest.mark.parametrize("running", [{"admin": {"ids": ["admin_id"]}}], indirect=True)
async def test_three_negatives_alert_the_admin_once_and_a_fourth_does_not(running: Running) -> None:
    gw = running.gateway
    for n in range(3):
        gw.say(**{"from": "alice", "text": f"I feel so sad, day {n}"})
        await running.replies_after(n)  # one reply each, so the messages arrive in order
    to_admin = await wait_until(lambda: [s for s in gw.sent() if s["listenerId"] == "admin_id"], what="alert")
    assert len(to_admin) == 1 and "Mood alert #1" in to_admin[0]["text"] and "Alice" in to_admin[0]["text"]
    count = len(gw.sent())
    gw.say(**{"from": "alice", "text": "I feel so sad, still"})
    await running.replies_after(count)
    sent = await running.quiet(1.0)
    assert len([s for s in sent if s["listenerId"] == "admin_id"]) == 1
    # the admin acknowledges it over WeChat
    gw.say(**{"from": "admin", "text": "#ack 1"})
    ack = await running.replies_after(len(sent))
    assert ack[0]["listenerId"] == "admin_id" and ack[0]["text"] == "Alert #1 acknowledged."


async def test_gateway_restart_and_the_bot_carries_on(running: Running) -> None:
    running.gateway.say(**{"from": "alice", "text": "before the restart"})
    await running.replies_after(0)
    running.gateway.stop()
    await asyncio.sleep(0.5)
    running.gateway.start()  # a fresh gateway on the same port: a new fake world
    await wait_until(lambda: running.channel.reconnects >= 1, 30, "reconnect")
    running.gateway.say(**{"from": "alice", "text": "after the restart"})
    [reply] = await running.replies_after(0)
    assert reply["text"].startswith("[plain]")


async def test_rejected_token_is_a_clear_error(tmp_path: Path) -> None:
    gateway = Gateway()
    gateway.start()
    try:
        settings = settings_for(gateway, tmp_path, wechaty={"token": "insecure_wrong_token", "connect_timeout_s": 10})
        channel = WechatyChannel(settings)
        with pytest.raises(ChannelError) as info:
            await asyncio.wait_for(channel.run(Application(settings, FakeEngine(), channel), asyncio.Event()), 30)
        assert info.value.exit_code in (EXIT_TOKEN_REJECTED, EXIT_UNREACHABLE)
        assert "token" in str(info.value)
    finally:
        gateway.close()


async def test_unreachable_endpoint_is_a_clear_error() -> None:
    settings = Settings.model_validate(
        {"channel": "wechaty", "wechaty": {"token": "t", "endpoint": f"127.0.0.1:{free_port()}"}}
    )
    channel = WechatyChannel(settings)
    with pytest.raises(ChannelError, match="cannot reach") as info:
        await channel.run(Application(settings, FakeEngine(), channel), asyncio.Event())
    assert info.value.exit_code == EXIT_UNREACHABLE


def test_missing_token_is_a_clear_error() -> None:
    settings = Settings.model_validate({"channel": "wechaty"})
    with pytest.raises(ChannelError, match="WECHATY_PUPPET_SERVICE_TOKEN"):
        WechatyChannel(settings, env={})


@pytest.mark.model
async def test_real_model_bot_process_replies_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`python -m bot run` as a user starts it: the embedded model, the wechaty channel from the
    usual environment variables, a comfort reply in Chinese, then a graceful stop on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from bot.text import detect_lang
    from tests.conftest import ROOT

    gateway = Gateway()
    gateway.start()
    env = {
        **os.environ,
        "MOODBOT__CHANNEL": "wechaty",
        "MOODBOT__WECHATY__PLUGIN_PORT": str(free_port()),
        "WECHATY_PUPPET_SERVICE_TOKEN": gateway.token,
        "WECHATY_PUPPET_SERVICE_ENDPOINT": gateway.endpoint,
        "MOODBOT__STORE__DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", "config.yaml", "run"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        await wait_until(lambda: gateway.health()["clients"] > 0 or proc.poll() is not None, 300, "bot connected")
        assert proc.poll() is None
        gateway.say(**{"from": "alice", "text": "今天考试没考好，心情很低落"})
        sent = await wait_until(lambda: gateway.sent(), 120, "reply from the real model")
        assert sent[0]["listenerId"] == "alice_id" and detect_lang(sent[0]["text"]) == "zh"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
        gateway.close()
    assert "Traceback" not in output, output


async def test_the_wechaty_demo_plays_both_sides() -> None:
    import io

    from examples.wechaty_demo.__main__ import run_demo

    out = io.StringIO()
    assert await run_demo(Settings(), FakeEngine(), out, wait_s=10) == 0
    text = out.getvalue()
    assert "bot connected to the mock gateway" in text
    assert "bot -> Alice: [comfort]" in text and "bot -> Bob: [celebrate]" in text
