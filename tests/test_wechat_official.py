"""End to end over real HTTP on 127.0.0.1: the bot's callback server (uvicorn), the test playing
WeChat (signing and encrypting as WeChat does), and a fake of WeChat's API server recording sends.
The fake engine stands in for the model (scripted moods, controllable delay)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
from aiolimiter import AsyncLimiter

from bot.app import Application
from bot.channels.callback import CallbackChannel, build_channel
from bot.channels.intake import MAX_BODY, TooLarge, read_limited
from bot.channels.wechat_api import WeChatAPI
from bot.config import Settings
from bot.domain import OutboundMessage, Turn
from bot.errors import ConfigError
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
        "outbound": {"retries": 3},  # split_chars stays 300: the official channels split by WeChat's byte limit
    })


class Bot:
    def __init__(self, app: Application, channel: CallbackChannel, api: FakeWeChatAPI, player: WeChatPlayer,
                 engine: FakeEngine, stop: asyncio.Event, task: asyncio.Task[int]) -> None:
        self.app, self.channel, self.api, self.wechat, self.engine = app, channel, api, player, engine
        self._stop, self.task = stop, task

    def moods(self) -> int:
        return len(self.app.store.moods())

    async def stop(self) -> int:
        self._stop.set()
        return await asyncio.wait_for(self.task, 30)


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
        yield Bot(app, channel, api, player, engine, stop, task)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
        if player is not None:
            await player.close()
        api.close()


WECOM = pytest.mark.parametrize("bot", [("wecom", {})], indirect=True)
SUBSCRIPTION = pytest.mark.parametrize("bot", [("wechat_mp", {"account_type": "subscription"})], indirect=True)
# an EncodingAESKey refuses plaintext POSTs unless require_encryption is off (the console in plaintext mode)
PLAINTEXT_TOO = pytest.mark.parametrize("bot", [("wechat_mp", {"require_encryption": False})], indirect=True)


def info_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.channels.callback" and r.levelno == logging.INFO]


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


@PLAINTEXT_TOO
@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "aes"])
async def test_a_quick_reply_comes_back_passively(bot: Bot, encrypted: bool) -> None:
    answer = await bot.wechat.text(USER, "I am so happy today!", encrypted=encrypted)
    assert answer.status == 200 and answer.text == "[celebrate] I hear you."
    assert ("<Encrypt>" in answer.body) is encrypted
    assert bot.moods() == 1 and bot.api.sends == []


async def test_a_slow_reply_goes_through_the_customer_service_api(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.channels.callback")
    bot.engine.delay = 2.0  # longer than reply_timeout_s (1.0)
    started = time.monotonic()
    msg_id = bot.wechat.next_id()
    answer = await bot.wechat.text(USER, "tell me something", msg_id=msg_id)
    assert answer.body == "success" and answer.text is None
    assert time.monotonic() - started < 1.8  # answered in time, not after the model
    sent = await wait_until(lambda: bot.api.sent_to(USER), what="the custom/send")
    assert sent == ["[plain] I hear you."] and bot.api.sends[0]["path"] == "/cgi-bin/message/custom/send"
    assert any(line.startswith(f"wechat_mp message {msg_id} from {USER} (text): not ready within 1.0 s, the reply "
                               "goes through the customer-service API") for line in info_lines(caplog))


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
    # split once, by WeChat's byte limit, not first at outbound.split_chars (300) and joined with newlines
    assert "\n" not in answer.text and len(rest) == 1


async def test_subscribe_gets_the_greeting_and_an_image_the_non_text_reply(bot: Bot) -> None:
    greeting = await bot.wechat.event(USER, "subscribe")
    assert greeting.text == bot.app.settings.wechat_mp.greeting
    # a follow through a parametric QR code or a product scan: wechatpy names them subscribe_scan(_product)
    for key in ("qrscene_123", "scanbarcode|EAN13|6901234567892"):
        through_code = await bot.wechat.event(USER, "subscribe", EventKey=key)
        assert through_code.text == bot.app.settings.wechat_mp.greeting
    image = await bot.wechat.image(USER)
    assert image.text == "I can only read text for now."
    assert bot.moods() == 0


async def test_an_admin_command_from_the_admin_openid(bot: Bot) -> None:
    answer = await bot.wechat.text(ADMIN, "#status")
    assert answer.text is not None and answer.text.startswith("Up ")
    stranger = await bot.wechat.text(USER, "#status")
    assert stranger.text is not None and not stranger.text.startswith("Up ")


async def test_three_negatives_raise_one_alert_through_the_api_despite_a_rate_limit_and_a_5xx(
        bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    for text in ("so sad today", "awful day", "still sad"):
        answer = await bot.wechat.text(USER, text)
        # answered each time, not with the same words twice in a row (the reply guard)
        assert answer.text in ("[comfort] I hear you.", "[comfort] Tell me more.")
        if text == "so sad today":
            bot.api.fail_next(45047, 502)  # the alert's send meets a rate limit, then a server error
    alerts = await wait_until(lambda: bot.api.sent_to(ADMIN), what="the alert")
    await asyncio.sleep(0.3)
    assert len(bot.api.sent_to(ADMIN)) == 1 and "Mood alert #1" in alerts[0]
    # the rate limit as an errcode (retried with backoff inside the API client), then an HTTP 502 (the outbound retries)
    assert [(e.get("errcode"), e.get("status")) for e in bot.api.errors] == [(45047, None), (None, 502)]
    assert "WeChat rate limit on /cgi-bin/message/custom/send (errcode 45047); retry 1" in caplog.text
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
    assert bot.engine.generated == []  # a sure FAQ match: the FAQ's own words, nothing generated
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


# --- what the review found -------------------------------------------------------------------------

async def test_secrets_and_tokens_stay_out_of_the_log_when_wechat_answers_5xx(
        bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bot.api.fail_token_next(502, 502, 502, 502)  # the token request fails on every outbound attempt
    first = await bot.app.outbound.deliver([OutboundMessage(ADMIN, "hello admin")])
    assert not first.ok and "WeChat API /cgi-bin/token failed: HTTP 502" in caplog.text
    bot.api.fail_next(502, 502, 502, 502)  # now a token is issued, and every send with it fails
    second = await bot.app.outbound.deliver([OutboundMessage(ADMIN, "hello again")])
    assert not second.ok and "WeChat API /cgi-bin/message/custom/send failed: HTTP 502" in caplog.text
    assert bot.api.valid_tokens and bot.api.sends == []
    for secret in (DEMO_SECRET, *bot.api.valid_tokens):
        assert secret not in caplog.text


async def test_concurrent_sends_refetch_a_rejected_token_once() -> None:
    api = FakeWeChatAPI()
    client = WeChatAPI(api.base_url, "/cgi-bin/token",
                       {"grant_type": "client_credential", "appid": DEMO_APPID, "secret": DEMO_SECRET})
    try:
        await client.token()
        api.expire_tokens()
        payloads = [{"touser": f"o_{n}", "msgtype": "text", "text": {"content": "hi"}} for n in range(10)]
        await asyncio.gather(*[client.post("/cgi-bin/message/custom/send", p) for p in payloads])
        assert len(api.sends) == 10 and len([e for e in api.errors if e.get("errcode") == 40001]) == 10
        assert api.token_requests == 2  # the first fetch and one refetch, not one a rejected send
    finally:
        await client.close()
        api.close()


@pytest.mark.parametrize("skew", [-301, 301], ids=["old", "future"])
async def test_a_request_outside_wechats_time_window_is_refused(bot: Bot, skew: int) -> None:
    xml = bot.wechat.message_xml(USER, "text", bot.wechat.next_id(), Content="so sad today")
    assert (await bot.wechat.post(xml, timestamp=int(time.time()) + skew)).status == 403
    assert (await bot.wechat.text(USER, "I am so happy today!")).status == 200
    assert bot.engine.classified == ["I am so happy today!"]


@PLAINTEXT_TOO
async def test_a_seen_signature_cannot_carry_another_body(bot: Bot) -> None:
    query, body = bot.wechat.sign(bot.wechat.message_xml(USER, "text", bot.wechat.next_id(), Content="hello"),
                                  encrypted=False)
    first = await bot.wechat.send(query, body)
    again = await bot.wechat.send(query, body)  # the same request again: answered as WeChat's retry
    assert first.status == again.status == 200 and first.text == again.text is not None
    forged = bot.wechat.message_xml(ADMIN, "text", bot.wechat.next_id(), Content="#pause")
    assert (await bot.wechat.send(query, forged)).status == 403
    assert bot.engine.classified == ["hello"] and not await bot.app.state.is_paused()


async def test_with_an_aes_key_plaintext_posts_are_refused(bot: Bot) -> None:
    assert (await bot.wechat.text(ADMIN, "#pause", encrypted=False)).status == 403
    assert not await bot.app.state.is_paused()
    assert (await bot.wechat.handshake()).status_code == 200  # the console's URL check still works
    assert (await bot.wechat.text(USER, "hello", encrypted=True)).text is not None


def test_require_encryption_needs_a_key(tmp_path: Path) -> None:
    api = FakeWeChatAPI()
    try:
        settings = official_settings("wechat_mp", api, tmp_path, encoding_aes_key=None, require_encryption=True)
        with pytest.raises(ConfigError, match="require_encryption needs wechat_mp.encoding_aes_key"):
            build_channel(settings)
    finally:
        api.close()


async def test_passive_replies_skip_the_send_rate_limits(bot: Bot) -> None:
    bot.app.outbound.global_limit = AsyncLimiter(3, 60)  # three sends a minute, one per contact
    bot.app.outbound.settings = bot.app.outbound.settings.model_copy(update={"per_contact_per_minute": 1.0})
    answers = [await bot.wechat.text(f"o_user_{n}", "I am so happy today!") for n in range(5)]
    answers += [await bot.wechat.text(USER, text) for text in ("hello there", "hello again", "one more")]
    assert all(answer.text is not None for answer in answers) and bot.api.sends == []


async def test_stopping_logs_each_abandoned_turn(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    bot.channel.drain_s = 0.1
    bot.engine.delay = 60.0
    await bot.wechat.text(USER, "tell me about your teas")  # answered "success"; the turn runs on
    assert bot.channel.in_flight == 1
    assert await bot.stop() == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"stopping: abandoned the turn for {USER} ('tell me about your teas')"]


@SUBSCRIPTION
async def test_an_alert_kept_for_a_subscription_admin_stays_pending_until_it_goes_out(
        bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    for text in ("so sad today", "awful day", "still sad"):
        await bot.wechat.text(USER, text)
    await wait_until(bot.app.store.open_alerts, what="the alert")
    assert [a.alert_id for a in bot.app.store.undelivered_alerts()] == [1]  # only kept in memory: not delivered
    assert await bot.app.alerter.redeliver_pending() == 0  # the reminder job: kept again, once
    answer = await bot.wechat.text(ADMIN, "hello")
    assert answer.text is not None and answer.text.count("Mood alert #1") == 1
    assert await bot.app.alerter.redeliver_pending() == 1  # it went out with the admin's message
    assert bot.app.store.undelivered_alerts() == []
    later = await bot.wechat.text(ADMIN, "hello again")
    assert later.text is not None and "Mood alert" not in later.text
    assert bot.api.sends == []


@SUBSCRIPTION
async def test_stopping_logs_each_text_kept_for_a_next_message(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    result = await bot.app.outbound.deliver([OutboundMessage(ADMIN, "Mood alert #9 for you")])
    assert result.deferred and not result.ok
    assert await bot.stop() == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"stopping: a text kept for {ADMIN}'s next message is lost: 'Mood alert #9 for you'"]


@PLAINTEXT_TOO
@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "aes"])
async def test_a_reply_with_a_cdata_end_comes_back_as_text(bot: Bot, encrypted: bool) -> None:
    turns: list[Turn] = []
    bot.app.observers.append(turns.append)
    bot.engine.reply = "Tea ]]></Content><MsgType><![CDATA[news]]></MsgType><Content><![CDATA[forged"
    answer = await bot.wechat.text(USER, "tell me something", encrypted=encrypted)
    [reply] = turns[0].outbox
    assert "]]>" in reply.text and answer.text == reply.text


@pytest.mark.parametrize("event", ["PUBLISHJOBFINISH", "subscribe_msg_popup_event", "MASSSENDJOBFINISH",
                                   "a_future_event"])
async def test_an_event_is_never_taken_for_a_message(bot: Bot, event: str) -> None:
    answer = await bot.wechat.event(USER, event)
    assert answer.status == 200 and answer.body == "success"
    assert bot.engine.classified == [] and bot.moods() == 0 and bot.channel.in_flight == 0


async def test_each_message_and_event_gets_an_info_line(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.channels.callback")
    msg_id = bot.wechat.next_id()
    await bot.wechat.text(USER, "I am so happy today!", msg_id=msg_id)
    await bot.wechat.image(USER)
    await bot.wechat.event(USER, "unsubscribe")
    lines = info_lines(caplog)
    assert f"wechat_mp message {msg_id} from {USER} (text): passive reply" in lines
    assert any(line.endswith(f"from {USER} (image): passive reply") for line in lines)
    assert f"wechat_mp event unsubscribe from {USER}" in lines


async def test_an_unsigned_body_is_refused_before_it_is_read_and_a_big_one_by_its_size(bot: Bot) -> None:
    big = b"<xml>" + b"x" * (MAX_BODY * 4)
    unsigned = {"timestamp": str(int(time.time())), "nonce": "n1", "signature": "0" * 40}
    assert (await bot.wechat.send(unsigned, big)).status == 403  # not 413: the body was never read
    query, _ = bot.wechat.sign(bot.wechat.message_xml(USER, "text", bot.wechat.next_id(), Content="hi"))
    assert (await bot.wechat.send(query, big)).status == 413  # by its Content-Length

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused by the running count
        for _ in range(8):
            yield b"x" * (MAX_BODY // 2)

    query, _ = bot.wechat.sign(bot.wechat.message_xml(USER, "text", bot.wechat.next_id(), Content="hi"))
    response = await bot.wechat.client.post(bot.wechat.url, params=query, content=chunks())
    assert response.status_code == 413 and bot.engine.classified == []


async def test_the_body_is_read_with_a_running_count() -> None:
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        while True:
            read += 1
            yield b"x" * 1024

    with pytest.raises(TooLarge):
        await read_limited(None, endless(), 10 * 1024)
    assert read == 11  # stopped at the first chunk past the limit
    with pytest.raises(TooLarge):
        await read_limited(str(10**9), endless(), 1024)
    assert read == 11  # refused by the Content-Length, nothing read


async def test_a_taken_port_is_one_error_line_and_exit_code_3(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    api = FakeWeChatAPI()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = official_settings("wechat_mp", api, tmp_path, port=taken.getsockname()[1])
        channel = build_channel(settings)
        app = Application(settings, FakeEngine(), channel)
        try:
            assert await channel.run(app, asyncio.Event()) == 3
        finally:
            app.store.close()
            api.close()
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "callback server cannot listen on 127.0.0.1:" in error.getMessage() and error.exc_info is None


def test_run_with_a_taken_port_exits_3_before_the_model_loads(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(f"channel: wechat_mp\nwechat_mp: {{token: t0ken, appid: {DEMO_APPID}, secret: s3cret, "
                          f"host: 127.0.0.1, port: {port}}}\nstore: {{url: 'sqlite:///{tmp_path / 'b.db'}'}}\n")
        result = subprocess.run([sys.executable, "-m", "bot", "--config", str(config), "run"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"ERROR bot.channels.callback: the wechat_mp callback server cannot listen on 127.0.0.1:{port}" in line


@pytest.mark.parametrize("fields", [
    "<FromUserName><![CDATA[o_x]]></FromUserName><CreateTime>99999999999999999999</CreateTime>",
    "<CreateTime>1700000000</CreateTime>",
    "<FromUserName><a>1</a></FromUserName><CreateTime>1700000000</CreateTime>",
    "<FromUserName><![CDATA[o_x]]></FromUserName><CreateTime><a>1</a></CreateTime>",
    "<FromUserName><![CDATA[o_x]]></FromUserName><CreateTime>1700000000</CreateTime><MsgId>12a</MsgId>",
], ids=["huge CreateTime", "no FromUserName", "nested FromUserName", "nested CreateTime", "MsgId not a number"])
async def test_signed_but_malformed_fields_get_403(bot: Bot, fields: str) -> None:
    xml = (f"<xml><ToUserName><![CDATA[gh_moodbot_demo]]></ToUserName>{fields}"
           "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[so sad]]></Content></xml>")
    assert (await bot.wechat.post(xml)).status == 403
    assert bot.engine.classified == [] and bot.channel.in_flight == 0


async def test_a_turn_that_raises_is_logged_with_its_traceback(
        bot: Bot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(message: Any) -> None:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(bot.app, "process", broken)
    assert (await bot.wechat.text(USER, "hello")).status == 200
    record = await wait_until(lambda: next((r for r in caplog.records if r.exc_info), None), what="the error")
    assert record.getMessage() == f"the turn for {USER} ('hello') failed"
    assert "the store went away" in caplog.text


async def test_a_message_too_old_is_dropped_with_a_warning(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    old = int(time.time()) - 400  # triggers.max_age_s is 300: a host clock that is off drops every message
    first = await bot.wechat.text(USER, "hello from the past", created=old)
    second = await bot.wechat.text(USER, "and again", created=old)
    assert first.text is None and second.text is None and bot.moods() == 0
    warnings = [r.getMessage() for r in caplog.records if "max_age_s" in r.getMessage()]
    assert len(warnings) == 1 and USER in warnings[0] and "check this host's clock" in warnings[0]  # one a minute


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


@WECOM
async def test_wecom_events_are_never_answered(bot: Bot) -> None:
    sys_event = bot.wechat.message_xml("sys", "event", None, Event="change_contact", ChangeType="update_user",
                                       UserID="zhangsan")
    for answer in [await bot.wechat.post(sys_event), await bot.wechat.event("zhangsan", "taskcard_click")]:
        assert answer.status == 200 and answer.body == "success"
    assert bot.channel.in_flight == 0 and bot.engine.classified == []
    await bot.wechat.text("zhangsan", "I am so happy today!")
    await wait_until(lambda: bot.api.sent_to("zhangsan"), what="message/send")
    assert bot.api.sent_to("sys") == [] and len(bot.api.sends) == 1


@WECOM
async def test_wecom_refuses_a_stale_request_and_logs_how_a_reply_went(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.channels.callback")
    xml = bot.wechat.message_xml("zhangsan", "text", bot.wechat.next_id(), Content="so sad")
    assert (await bot.wechat.post(xml, timestamp=int(time.time()) - 301)).status == 403
    msg_id = bot.wechat.next_id()
    assert (await bot.wechat.text("zhangsan", "I am so happy today!", msg_id=msg_id)).body == "success"
    line = f"wecom message {msg_id} from zhangsan (text): 1 send(s) through the API"
    await wait_until(lambda: line in info_lines(caplog), what="the log line")
    assert bot.engine.classified == ["I am so happy today!"]


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


@pytest.mark.parametrize("stamp", ["²", "１７００００００００", "", "12345678901234"])
def test_a_timestamp_that_is_not_plain_digits_is_forbidden_not_an_error(stamp: str) -> None:
    from bot.channels.intake import Forbidden, ReplayGuard

    with pytest.raises(Forbidden, match="no usable timestamp"):
        ReplayGuard(clock=lambda: 1_700_000_000).check_time({"timestamp": stamp})
