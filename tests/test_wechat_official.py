"""End to end over real HTTP on 127.0.0.1: the bot's callback server (uvicorn), the test playing
WeChat (signing and encrypting as WeChat does), and a fake of WeChat's API server recording sends.
The fake engine stands in for the model (scripted moods, controllable delay)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from bot.app import Application
from bot.channels.callback import CallbackChannel, build_channel
from bot.config import Settings
from bot.mock_wechat import DEMO_AES_KEY, DEMO_APPID, DEMO_CORP_ID, DEMO_SECRET, DEMO_TOKEN, FakeWeChatAPI, WeChatPlayer
from tests.fakes import FakeEngine

ROOT = Path(__file__).resolve().parent.parent
FAQ = ROOT / "examples" / "faq.yaml"
ADMIN = "o_admin_openid"
USER = "o_user_openid"


async def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def official_settings(dialect: str, api: FakeWeChatAPI, tmp: Path, **section: Any) -> Settings:
    common = {"host": "127.0.0.1", "port": 0, "api_base": api.base_url, "rate_limit_wait_s": 0.01}
    if dialect == "wechat_mp":
        channel = {"token": DEMO_TOKEN, "appid": DEMO_APPID, "secret": DEMO_SECRET, "encoding_aes_key": DEMO_AES_KEY,
                   "reply_timeout_s": 1.0, "retry_hold_s": 0.05, **common, **section}
    else:
        channel = {"token": DEMO_TOKEN, "corp_id": DEMO_CORP_ID, "agent_id": 1000002, "secret": DEMO_SECRET,
                   "encoding_aes_key": DEMO_AES_KEY, **common, **section}
    return Settings.model_validate({
        "channel": dialect, dialect: channel,
        "admin": {"ids": [ADMIN]},
        "knowledge": {"path": str(FAQ)},
        "store": {"url": f"sqlite:///{tmp / 'official.db'}"},
        "schedule": {"enabled": False},
        "triggers": {"non_text_reply": "I can only read text for now."},
        "outbound": {"split_chars": 2000, "retries": 3},
    })


class Bot:
    def __init__(self, app: Application, channel: CallbackChannel, api: FakeWeChatAPI, player: WeChatPlayer,
                 engine: FakeEngine) -> None:
        self.app, self.channel, self.api, self.wechat, self.engine = app, channel, api, player, engine

    def moods(self) -> int:
        return len(self.app.store.moods())


@pytest.fixture
async def bot(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bot]:
    dialect, section = getattr(request, "param", ("wechat_mp", {}))
    api = FakeWeChatAPI()
    settings = official_settings(dialect, api, tmp_path, **section)
    engine = FakeEngine()
    channel = build_channel(settings)
    app = Application(settings, engine, channel)
    app.outbound.retry_wait_s = 0.01  # the 5xx retries, quickly
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run(app, stop))
    player = None
    try:
        await wait_until(channel.ready.is_set, what="server start")
        url = f"http://127.0.0.1:{channel.port}{getattr(settings, dialect).path}"
        appid = DEMO_APPID if dialect == "wechat_mp" else DEMO_CORP_ID
        player = WeChatPlayer(url, dialect, appid=appid)
        yield Bot(app, channel, api, player, engine)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
        if player is not None:
            await player.close()
        api.close()


WECOM = pytest.mark.parametrize("bot", [("wecom", {})], indirect=True)
SUBSCRIPTION = pytest.mark.parametrize("bot", [("wechat_mp", {"account_type": "subscription"})], indirect=True)


# --- the Official Account ------------------------------------------------------------------------

async def test_handshake_answers_echostr_and_refuses_a_bad_signature(bot: Bot) -> None:
    ok = await bot.wechat.handshake()
    assert ok.status_code == 200 and ok.text.startswith("echo-")
    bad = await bot.wechat.handshake(bad_signature=True)
    assert bad.status_code == 403


@pytest.mark.parametrize("tamper", ["bad_signature", "bad_ciphertext"])
async def test_a_forged_or_broken_message_gets_403_and_is_not_processed(bot: Bot, tamper: str) -> None:
    xml = bot.wechat.message_xml(USER, "text", bot.wechat.next_id(), Content="so sad today")
    answer = await bot.wechat.post(xml, encrypted=True, **{tamper: True})
    assert answer.status == 403
    plain = await bot.wechat.post(xml, encrypted=False, bad_signature=True)
    assert plain.status == 403
    await asyncio.sleep(0.2)
    assert bot.moods() == 0 and bot.engine.classified == [] and bot.api.sends == []


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "aes"])
async def test_a_quick_reply_comes_back_passively(bot: Bot, encrypted: bool) -> None:
    answer = await bot.wechat.text(USER, "I am so happy today!", encrypted=encrypted)
    assert answer.status == 200 and answer.text == "[celebrate] I hear you."
    assert ("<Encrypt>" in answer.body) is encrypted
    assert bot.moods() == 1 and bot.api.sends == []


async def test_a_slow_reply_goes_through_the_customer_service_api(bot: Bot) -> None:
    bot.engine.delay = 2.0  # longer than reply_timeout_s (1.0)
    started = time.monotonic()
    answer = await bot.wechat.text(USER, "tell me something")
    assert answer.body == "success" and answer.text is None
    assert time.monotonic() - started < 1.8  # answered in time, not after the model
    sent = await wait_until(lambda: bot.api.sent_to(USER), what="the custom/send")
    assert sent == ["[plain] I hear you."] and bot.api.sends[0]["path"] == "/cgi-bin/message/custom/send"


@SUBSCRIPTION
async def test_a_subscription_account_returns_a_slow_reply_on_wechats_retry(bot: Bot) -> None:
    bot.engine.delay = 1.5  # ready after the first try (1.0 s + 0.05 s hold), within the retry
    msg_id = bot.wechat.next_id()
    first = await bot.wechat.text(USER, "tell me something", msg_id=msg_id)
    assert first.text is None  # not ready: WeChat gives up on this try and retries
    retry = await bot.wechat.text(USER, "tell me something", msg_id=msg_id)
    assert retry.text == "[plain] I hear you."
    assert bot.api.sends == [] and bot.api.token_requests == 0  # subscription accounts have no send API
    assert len(bot.engine.generated) == 1 and bot.moods() == 1


@SUBSCRIPTION
async def test_a_reply_too_slow_for_every_retry_comes_with_the_next_message(bot: Bot) -> None:
    bot.engine.delay = 4.0  # longer than three tries of reply_timeout_s (1.0) + retry_hold_s (0.05)
    msg_id = bot.wechat.next_id()
    answers = [await bot.wechat.text(USER, "tell me something", msg_id=msg_id) for _ in range(3)]
    assert [a.text for a in answers[:2]] == [None, None]
    assert answers[2].text == bot.app.settings.wechat_mp.slow_reply
    await wait_until(lambda: bot.channel.processed == 1, what="the slow turn")
    bot.engine.delay = 0
    later = await bot.wechat.text(USER, "hello again")
    assert later.text == "[plain] I hear you.\n[plain] Tell me more."  # the kept reply, then the new one
    assert len(bot.engine.generated) == 2 and bot.api.sends == []


async def test_a_duplicate_msgid_is_processed_once(bot: Bot) -> None:
    msg_id = bot.wechat.next_id()
    answers = await asyncio.gather(*[bot.wechat.text(USER, "so sad", msg_id=msg_id) for _ in range(3)])
    assert {a.text for a in answers} == {"[comfort] I hear you."}
    assert bot.moods() == 1 and len(bot.engine.classified) == 1 and bot.channel.processed == 1


async def test_a_long_reply_is_split_to_wechats_limit(bot: Bot) -> None:
    bot.engine.reply = "This is a long sentence about tea and shops. " * 80  # about 3.6 kB
    answer = await bot.wechat.text(USER, "tell me everything")
    assert answer.text is not None and len(answer.text.encode()) <= 2048
    rest = await wait_until(lambda: bot.api.sent_to(USER), what="the rest of the reply")
    assert all(len(piece.encode()) <= 2048 for piece in rest)
    assert (answer.text + " " + " ".join(rest)).split() == bot.engine.reply.split()


async def test_subscribe_gets_the_greeting_and_an_image_the_non_text_reply(bot: Bot) -> None:
    greeting = await bot.wechat.event(USER, "subscribe")
    assert greeting.text == bot.app.settings.wechat_mp.greeting
    image = await bot.wechat.image(USER)
    assert image.text == "I can only read text for now."
    assert bot.moods() == 0


async def test_an_admin_command_from_the_admin_openid(bot: Bot) -> None:
    answer = await bot.wechat.text(ADMIN, "#status")
    assert answer.text is not None and answer.text.startswith("Up ")
    stranger = await bot.wechat.text(USER, "#status")
    assert stranger.text is not None and not stranger.text.startswith("Up ")


async def test_three_negatives_raise_one_alert_through_the_api_despite_a_rate_limit_and_a_5xx(bot: Bot) -> None:
    for text in ("so sad today", "awful day", "still sad"):
        answer = await bot.wechat.text(USER, text)
        # answered each time, not with the same words twice in a row (the reply guard)
        assert answer.text in ("[comfort] I hear you.", "[comfort] Tell me more.")
        if text == "so sad today":
            bot.api.fail_next(45047, 502)  # the alert's send meets a rate limit, then a server error
    alerts = await wait_until(lambda: bot.api.sent_to(ADMIN), what="the alert")
    await asyncio.sleep(0.3)
    assert len(bot.api.sent_to(ADMIN)) == 1 and "Mood alert #1" in alerts[0]
    assert [e.get("errcode") or e.get("status") for e in bot.api.errors] == [45047, 502]
    assert bot.api.token_requests == 1  # fetched once, then cached
    assert bot.app.store.undelivered_alerts() == []


async def test_the_digest_goes_to_the_admin_through_the_api(bot: Bot) -> None:
    from bot.jobs import daily_digest

    await bot.wechat.text(USER, "Do you sell bicycles?")  # a hand-off, counted in the digest
    await daily_digest(bot.app.async_store, bot.app.clock, bot.app.alerter)
    digest = [text for text in bot.api.sent_to(ADMIN) if text.startswith("📋 Daily mood digest")]
    assert len(digest) == 1 and "Hand-offs (questions the FAQ could not answer): 1" in digest[0]


async def test_an_expired_token_is_fetched_again(bot: Bot) -> None:
    bot.engine.delay = 1.5  # past reply_timeout_s: the replies go through the API
    await bot.wechat.text(USER, "first question please")
    await wait_until(lambda: bot.api.sent_to(USER), what="first send")
    bot.api.expire_tokens()
    await bot.wechat.text(USER, "second one please")
    await wait_until(lambda: len(bot.api.sent_to(USER)) == 2, what="second send")
    assert bot.api.token_requests == 2 and [e["errcode"] for e in bot.api.errors] == [40001]


async def test_a_closed_48h_window_keeps_the_alert_pending(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    bot.api.close_window(ADMIN)
    for text in ("so sad today", "awful day", "still sad"):
        await bot.wechat.text(USER, text)
    await wait_until(lambda: any(e.get("errcode") == 45015 for e in bot.api.errors), what="45015")
    await asyncio.sleep(0.2)
    assert [a.alert_id for a in bot.app.store.undelivered_alerts()] == [1]
    assert "48-hour customer-service window is closed" in caplog.text
    assert len([e for e in bot.api.errors if e.get("errcode") == 45015]) == 1  # not retried in vain
    bot.api.open_window(ADMIN)  # the admin wrote to the account: the reminder job re-sends it
    assert await bot.app.alerter.redeliver_pending() == 1
    assert "Mood alert #1" in bot.api.sent_to(ADMIN)[0]


async def test_a_faq_question_is_answered_with_the_faqs_fact(bot: Bot) -> None:
    answer = await bot.wechat.text(USER, "What time do you open?")
    assert answer.text is not None and "10 am to 9 pm" in answer.text
    assert any("10 am to 9 pm" in line for line in bot.engine.knowledge[-1])
    zh = await bot.wechat.text(USER, "客服电话多少？")
    assert zh.text is not None and "400-820-1234" in zh.text


async def test_an_unknown_question_is_handed_off(bot: Bot) -> None:
    answer = await bot.wechat.text(USER, "Do you sell bicycles?")
    assert answer.text == bot.app.settings.knowledge.handoff_reply["en"]
    sent = await wait_until(lambda: bot.api.sent_to(ADMIN), what="the hand-off to the admin")
    assert "Hand-off #1" in sent[0] and "Do you sell bicycles?" in sent[0]
    [handoff] = bot.app.store.open_alerts()
    assert handoff.kind == "handoff" and bot.engine.generated == []
    listing = await bot.wechat.text(ADMIN, "#alerts")
    assert listing.text is not None and "[handoff]" in listing.text


# --- WeCom -------------------------------------------------------------------------------------------

@WECOM
async def test_wecom_handshake_decrypts_the_echo_string(bot: Bot) -> None:
    ok = await bot.wechat.handshake()
    assert ok.status_code == 200 and ok.text.startswith("echo-")
    assert (await bot.wechat.handshake(bad_signature=True)).status_code == 403


@WECOM
async def test_wecom_answers_at_once_and_replies_through_message_send(bot: Bot) -> None:
    bot.engine.delay = 0.3
    answer = await bot.wechat.text("zhangsan", "I am so happy today!")
    assert answer.status == 200 and answer.body == "success"
    await wait_until(lambda: bot.api.sent_to("zhangsan"), what="message/send")
    [send] = bot.api.sends
    assert send == {"path": "/cgi-bin/message/send", "touser": "zhangsan", "content": "[celebrate] I hear you.",
                    "agentid": 1000002}


@WECOM
async def test_wecom_refuses_a_broken_ciphertext(bot: Bot) -> None:
    xml = bot.wechat.message_xml("zhangsan", "text", bot.wechat.next_id(), Content="so sad")
    assert (await bot.wechat.post(xml, bad_ciphertext=True)).status == 403
    assert (await bot.wechat.post(xml, bad_signature=True)).status == 403
    await asyncio.sleep(0.2)
    assert bot.moods() == 0 and bot.api.sends == []


@WECOM
async def test_wecom_alerts_and_duplicates(bot: Bot) -> None:
    msg_id = bot.wechat.next_id()
    await asyncio.gather(*[bot.wechat.text("zhangsan", "so sad", msg_id=msg_id) for _ in range(2)])
    for text in ("awful day", "still sad"):
        await bot.wechat.text("zhangsan", text)
    await wait_until(lambda: bot.api.sent_to(ADMIN), what="the alert")
    assert bot.moods() == 3 and len(bot.api.sent_to("zhangsan")) == 3


# --- the demo ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", ["wechat_mp", "wecom"])
async def test_the_demo_plays_both_sides(channel: str) -> None:
    import io

    from bot.demo_official import run_official_demo

    out = io.StringIO()
    assert await run_official_demo(Settings(), channel, FakeEngine(), out, wait_s=5) == 0
    text = out.getvalue()
    print(text)
    assert "URL verification (GET, signed) -> HTTP 200" in text
    assert "10am" in text.replace(" ", "") or "10点" in text  # the FAQ's opening hours
    assert "Hand-off #" in text and "Bob: I just got promoted" in text
    if channel == "wechat_mp":
        assert "passive reply: [comfort]" in text
    else:
        assert "(message/send, agentid 1000002): [comfort]" in text
