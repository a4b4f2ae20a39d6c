"""The FAQ knowledge base, the knowledge stage (facts for plain replies, hand-offs) and its settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.config import KnowledgeSettings, Settings, load_settings
from bot.domain import Label, Sentiment, Strategy, Turn
from bot.errors import ConfigError, EngineError, StopPipeline
from bot.knowledge import KnowledgeBase, is_question, load_entries, tokenize
from bot.protocols import AsyncStore
from handlers.knowledge import KnowledgeStage
from tests.fakes import FakeEngine, build_app, make_message

FAQ = Path(__file__).resolve().parent.parent / "examples" / "faq.yaml"


def test_the_sample_faq_loads_with_zh_and_en_entries() -> None:
    entries = load_entries(FAQ)
    assert len(entries) >= 10
    text = " ".join(e.question + e.answer for e in entries)
    for fact in ("10 am to 9 pm", "400-820-1234", "7 days", "退货", "包邮", "营业"):
        assert fact in text


def test_tokenize_cuts_chinese_and_drops_stopwords() -> None:
    assert tokenize("你们的营业时间是什么？") == ["营业时间", "营", "业", "时", "间"]
    assert tokenize("What are your opening hours?") == ["opening", "hours"]


def test_search_finds_paraphrases_in_both_languages() -> None:
    kb = KnowledgeBase(FAQ)
    assert "400-820-1234" in kb.search("客服号码给我一下", 1)[0].entry.answer
    assert "refund" in kb.search("How do I get a refund?", 1)[0].entry.answer
    assert kb.search("Do you sell bicycles?", 1) == []


def test_wechat_emoji_codes_and_a_lone_character_do_not_match() -> None:
    kb = KnowledgeBase(FAQ)
    assert tokenize("[微笑][捂脸][Facepalm]") == []
    for small_talk in ("[微笑]", "[微笑] 好的", "微", "有会员卡吗？"):  # 微 of 微信支付, 卡 of 刷卡
        assert kb.search(small_talk, 1) == [], small_talk
    assert "10点" in kb.search("[微笑]你们几点开门", 1)[0].entry.answer
    assert "微信支付" in kb.search("能用微信支付吗", 1)[0].entry.answer
    assert "龙井路" in kb.search("实体店怎么去？", 1)[0].entry.answer  # two characters in common (店, 去)


def test_bm25s_keeps_the_log_level_it_was_given(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import sys

    caplog.set_level(logging.DEBUG)
    monkeypatch.delitem(sys.modules, "bm25s")  # imported afresh, as in a new process
    logger = logging.getLogger("bm25s")
    before = logger.level
    logger.setLevel(logging.WARNING)  # what configure_logging sets without -v
    try:
        KnowledgeBase(FAQ)
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(before)
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]


def test_csv_faq_and_reload_on_change(tmp_path: Path) -> None:
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer,keywords\nWhen do you open?,We open at 8 am.,hours; open\n", encoding="utf-8")
    kb = KnowledgeBase(faq)
    assert kb.search("opening hours?", 1)[0].entry.answer == "We open at 8 am."
    faq.write_text("question,answer,keywords\nWhen do you open?,We open at 7 am now.,hours; open\n", encoding="utf-8")
    os.utime(faq, (faq.stat().st_atime, faq.stat().st_mtime + 5))
    assert kb.search("opening hours?", 1)[0].entry.answer == "We open at 7 am now."
    faq.write_text("question,answer\n,no question here\n", encoding="utf-8")  # a broken edit
    os.utime(faq, (faq.stat().st_atime, faq.stat().st_mtime + 10))
    assert kb.search("opening hours?", 1)[0].entry.answer == "We open at 7 am now."  # the last good FAQ stays


def test_a_missing_or_broken_faq_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        KnowledgeBase(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- question: hi\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="needs a question and an answer"):
        KnowledgeBase(bad)


def test_is_question() -> None:
    assert is_question("你们几点开门") and is_question("Do you sell bikes") and is_question("phone?")
    assert not is_question("thanks, have a nice day") and not is_question("今天天气不错")


def _turn(text: str, strategy: Strategy = Strategy.PLAIN) -> Turn:
    turn = Turn(message=make_message(text), text=text, lang="en")
    turn.sentiment = Sentiment(Label.NEUTRAL, 0.8, {})
    turn.strategy = strategy
    return turn


def _stage(threshold: float = 0.125) -> KnowledgeStage:

    return KnowledgeStage(KnowledgeBase(FAQ), KnowledgeSettings(threshold=threshold), ManualClock())


async def test_stage_puts_matching_entries_into_the_turn() -> None:
    turn = _turn("Can I pay with Alipay?")
    await _stage()(turn)
    assert turn.knowledge and "Alipay" in turn.knowledge[0] and turn.knowledge[0].startswith("We accept")
    assert turn.outbox == [] and turn.alerts == []


async def test_stage_puts_entries_in_the_senders_language_first() -> None:
    turn = _turn("Alipay 付款")  # the zh entry scores higher, but the sender writes English here
    turn.lang = "en"
    await _stage()(turn)
    assert len(turn.knowledge) == 2 and turn.knowledge[0].startswith("We accept WeChat Pay")


async def test_stage_hands_off_an_unanswerable_question_but_not_small_talk() -> None:
    turn = _turn("Do you sell bicycles?")
    with pytest.raises(StopPipeline):
        await _stage()(turn)
    assert turn.outbox[0].text == KnowledgeSettings().handoff_reply["en"]
    assert [a.kind for a in turn.alerts] == ["handoff"]
    chat = _turn("ok, see you later")
    await _stage()(chat)
    assert chat.knowledge == () and chat.outbox == []


@pytest.mark.parametrize("text", ["在吗？", "hi, anyone there?", "are you a real person?", "嗯嗯好的呢"])
async def test_greetings_closings_and_who_are_you_questions_are_never_handed_off(text: str) -> None:
    turn = _turn(text)
    await _stage()(turn)  # no engine at all: these need no hand-off head
    assert turn.outbox == [] and turn.alerts == []


PAY_EN = "We accept WeChat Pay, Alipay and UnionPay cards; the shop also takes cash."


def _judging(matches: dict[str, float], **settings: object) -> tuple[KnowledgeStage, FakeEngine]:
    engine = FakeEngine(matches=matches)
    return KnowledgeStage(KnowledgeBase(FAQ), KnowledgeSettings(**settings), ManualClock(), engine), engine  # type: ignore[arg-type]


async def test_the_match_head_answers_what_bm25_scores_too_low() -> None:
    # "r u open before 9am?" shares one word with the hours entry: BM25 alone hands it off
    with pytest.raises(StopPipeline):
        await _stage()(_turn("r u open before 9am? want to stop by on my way to work"))
    stage, engine = _judging({HOURS_EN: 0.93})
    turn = _turn("r u open before 9am? want to stop by on my way to work")
    await stage(turn)
    assert turn.knowledge == (HOURS_EN,) and turn.faq_answer == HOURS_EN and turn.outbox == []
    # only entries in the sender's language are judged, at most two of them
    assert 1 <= len(engine.matched) <= 2 and all(a.isascii() for _, a in engine.matched)


async def test_the_match_head_can_refuse_what_bm25_would_match() -> None:
    stage, _ = _judging({PAY_EN: 0.1})  # BM25 scores the payment entry well above knowledge.threshold
    turn = _turn("Can I pay with Alipay?")
    with pytest.raises(StopPipeline):
        await stage(turn)
    assert turn.reply_source == "handoff" and [a.kind for a in turn.alerts] == ["handoff"]


async def test_an_entry_the_head_doubts_informs_the_reply_but_is_not_sent_word_for_word() -> None:
    stage, _ = _judging({PAY_EN: 0.3})  # from 0.25 it answers, from 0.5 surely (tests/fakes.py)
    turn = _turn("Can I pay with Alipay?")
    await stage(turn)
    assert turn.knowledge == (PAY_EN,) and turn.faq_answer is None
    off, _ = _judging({PAY_EN: 0.9}, answer_threshold=None)  # null turns word-for-word answers off
    turn = _turn("Can I pay with Alipay?")
    await off(turn)
    assert turn.knowledge == (PAY_EN,) and turn.faq_answer is None


@pytest.mark.parametrize("text, sent", [("能用支付宝付钱不", True), ("付款方式有啥", True), ("支付宝付款能付不[流泪]", True),
                                        ("支付宝付款啥都不行", False)])
async def test_a_colloquial_chinese_question_gets_the_sure_answer(text: str, sent: bool) -> None:
    # "兔子可以带去洗澡不" was answered by the model ("可以…") where the FAQ says no: it did not read as a question
    pay_zh = "支持微信支付、支付宝和银联卡，门店也收现金。"
    stage, _ = _judging({pay_zh: 0.9})
    turn = _turn(text)
    turn.lang = "zh"
    await stage(turn)
    assert (turn.faq_answer == pay_zh) is sent
    assert not is_question("能用支付宝付钱不")  # unmatched, such a message is not handed to a colleague


async def test_the_entry_the_head_rates_best_comes_first() -> None:
    address = "Our shop is at 18 Longjing Road, Xihu District, Hangzhou, a 5-minute walk from exit B of Longjing station (Line 2)."
    stage, engine = _judging({HOURS_EN: 0.6, address: 0.95})
    turn = _turn("what's the street address of the tea house, and when are you open")
    await stage(turn)
    assert len(engine.matched) == 2 and turn.knowledge[0] == address and turn.faq_answer == address


async def test_a_failing_match_head_leaves_bm25_to_decide(caplog: pytest.LogCaptureFixture) -> None:
    stage, engine = _judging({})

    async def broken(question: str, answer: str, score: float) -> None:
        raise EngineError("model gone")

    engine.faq_match = broken  # type: ignore[method-assign,assignment]
    turn = _turn("Can I pay with Alipay?")
    await stage(turn)
    assert turn.knowledge and turn.knowledge[0] == PAY_EN and "BM25 scores decide" in caplog.text


async def test_stage_only_looks_up_plain_questions() -> None:
    turn = _turn("Do you sell bicycles?", Strategy.COMFORT)
    await _stage()(turn)
    assert turn.outbox == [] and turn.knowledge == ()


async def test_pipeline_hand_off_reaches_alerts_digest_and_reply(tmp_path: Path, store, clock) -> None:  # type: ignore[no-untyped-def]
    from bot.jobs import digest_text

    app, sender = build_app(clock, store, knowledge={"path": str(FAQ)})
    clock_now = clock.now()
    turn = await app.process(make_message("Do you rent bicycles?", sent_at=clock_now))
    assert turn is not None and turn.stopped == "hand-off: no FAQ answer"
    texts = [m.text for m in sender.sent]
    assert texts[0] == KnowledgeSettings().handoff_reply["en"] and "Hand-off #1" in texts[1]
    assert sender.sent[1].chat_id == "boss"
    assert "Hand-offs (questions the FAQ could not answer): 1" in await digest_text(app.async_store, clock)
    answered = await app.process(make_message("what are your opening hours?", sent_at=clock_now))
    assert answered is not None and "10 am to 9 pm" in (answered.reply or "")


def test_official_settings_keep_secrets_out_of_reprs_and_read_numeric_tokens() -> None:
    settings = load_settings(None, env={"MOODBOT__CHANNEL": "wechat_mp", "MOODBOT__WECHAT_MP__SECRET": "s3cr3t",
                                        "MOODBOT__WECHAT_MP__TOKEN": "123456"})
    assert settings.channel == "wechat_mp"
    assert settings.wechat_mp.secret is not None and settings.wechat_mp.secret.get_secret_value() == "s3cr3t"
    assert settings.wechat_mp.token is not None and settings.wechat_mp.token.get_secret_value() == "123456"
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.model_dump())


def test_the_channels_say_what_is_missing() -> None:
    from bot.channels.wechat_mp import MpDialect
    from bot.channels.wecom import WecomDialect

    with pytest.raises(ConfigError, match="wechat_mp.token"):
        MpDialect(Settings().wechat_mp)
    with pytest.raises(ConfigError, match="wecom.corp_id"):
        WecomDialect(Settings().wecom)


def test_an_older_database_gains_the_alert_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import create_engine, text

    from bot import store as store_module
    from bot.store import Store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    # a database as schema version 1 left it: the first migration only, and no alerts.kind column
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
    Store(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE alerts DROP COLUMN kind"))
        conn.execute(text("INSERT INTO alerts (contact_id, contact_name, chat_id, severity, reason, excerpts, trend, "
                          "created_at) VALUES ('a', 'A', 'a', 'high', 'old', '[]', '[]', '2026-01-01 00:00:00')"))
    engine.dispose()
    monkeypatch.undo()
    store = Store(url)
    try:
        assert [a.kind for a in store.open_alerts()] == ["mood"]
    finally:
        store.close()


def test_a_wrong_length_aes_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="encoding_aes_key"):
        load_settings(None, env={"MOODBOT__WECOM__ENCODING_AES_KEY": "short"})


async def test_a_hand_off_reaches_the_webhook_as_its_own_kind(store, clock) -> None:  # type: ignore[no-untyped-def]
    from bot.alerts import Alerter
    from bot.config import AlertSettings
    from bot.domain import Alert
    from tests.webhook import Receiver

    receiver = Receiver("k3y")
    try:
        alerter = Alerter(None, AsyncStore(store), AlertSettings(webhook_url=receiver.url, webhook_secret="k3y", to_admins=False),
                          [], clock)
        handoff = Alert(contact_id="o_carol", chat_id="o_carol", severity="info", reason="question not answered by the FAQ",
                        excerpts=("Do you sell bicycles?",), trend=(), created_at=clock.now(), kind="handoff")
        await alerter.dispatch(handoff)
        [body] = receiver.received
        assert body["kind"] == "handoff" and body["excerpts"] == ["Do you sell bicycles?"]
    finally:
        receiver.close()


def test_the_knowledge_bench_writes_its_report(tmp_path: Path) -> None:
    from bench.knowledge import main

    out = tmp_path / "KNOWLEDGE.md"
    assert main(["--out", str(out), "--only", "bm25s + jieba"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| bm25s + jieba | 1.000 (40/40)" in text and "**(default)**" in text


def test_a_sure_answer_needs_the_threshold_and_the_senders_language() -> None:
    stage = _stage()
    hits = KnowledgeBase(FAQ).search("What are your opening hours?", 2)
    assert hits and hits[0].score > 0.5
    stage.settings = KnowledgeSettings(answer_threshold=None)
    assert stage.sure_answer(hits, "en") is None  # null: never
    stage.settings = KnowledgeSettings(answer_threshold=0.5)
    assert stage.sure_answer(hits, "en") == hits[0].entry.answer
    assert stage.sure_answer(hits, "zh") is None  # the only sure entry is English
    stage.settings = KnowledgeSettings(answer_threshold=0.99)
    assert stage.sure_answer(hits, "en") is None


async def _faq_turn(clock, store, replies: list[str], text: str, bar: float | None = 0.3,  # type: ignore[no-untyped-def]
                    person: bool | None = None, faq: Path = FAQ, first: bool = False):
    """One message through an app on `faq` whose model generates `replies` in turn and whose hand-off
    head says `person`, with `knowledge.answer_first` at `first`: (turn, the texts sent, engine)."""
    from tests.fakes import ScriptedEngine

    engine = ScriptedEngine(replies)
    engine.person = person
    app, sender = build_app(clock, store, engine,
                            knowledge={"path": str(faq), "answer_threshold": bar, "answer_first": first})
    turn = await app.process(make_message(text, sent_at=clock.now()))
    return turn, [m.text for m in sender.sent], engine


HOURS_EN = "Lantern Tea House is open every day from 10 am to 9 pm, holidays included."


async def test_a_question_the_faq_answers_surely_gets_the_answer_and_nothing_is_generated(clock, store) -> None:  # type: ignore[no-untyped-def]
    # the model misreads facts it is given ("Yes, we accept Apple Pay"): the FAQ's own words go out
    turn, sent, engine = await _faq_turn(clock, store, ["Yes, we are open 24 hours."], "what are your opening hours?",
                                         first=True)
    assert sent == [HOURS_EN] and turn.reply_source == "faq" and engine.attempts == [] and turn.alerts == []
    # without a sure match the model answers, with the matched facts in its prompt
    turn, sent, engine = await _faq_turn(clock, store, ["We're open 10 am to 9 pm every day."],
                                         "what are your opening hours?", bar=None, first=True)
    assert sent == ["We're open 10 am to 9 pm every day."] and turn.reply_source == "generated" and turn.knowledge
    assert KnowledgeSettings().answer_first  # the shipped default



async def test_a_hand_off_to_a_question_the_faq_answers_surely_becomes_the_answer(clock, store) -> None:  # type: ignore[no-untyped-def]
    turn, sent, _ = await _faq_turn(clock, store, ["I don't have the details, a colleague will get back to you."],
                                    "what are your opening hours?")
    assert turn.faq_answer == HOURS_EN and turn.reply == HOURS_EN and turn.reply_source == "faq"
    assert sent == [HOURS_EN] and turn.alerts == []  # no supervisor paged for a question the FAQ answers


async def test_a_generated_answer_is_kept_and_a_refused_one_gives_way_to_the_faq(clock, store) -> None:  # type: ignore[no-untyped-def]
    turn, sent, _ = await _faq_turn(clock, store, ["We're open 10 am to 9 pm every day."], "what are your opening hours?")
    assert sent == ["We're open 10 am to 9 pm every day."] and turn.reply_source == "generated"
    # both attempts invent a time: the FAQ's answer, not a curated line
    turn, sent, engine = await _faq_turn(clock, store, ["We open at 7 am.", "We close at 11 pm."], "what are your opening hours?")
    assert engine.attempts == [0, 1] and sent == [HOURS_EN] and turn.reply_source == "faq"


async def test_without_a_sure_match_a_hand_off_stays_a_hand_off(clock, store) -> None:  # type: ignore[no-untyped-def]
    hand_off = "I don't have the details, a colleague will get back to you."
    turn, sent, _ = await _faq_turn(clock, store, [hand_off], "what are your opening hours?", bar=None)
    assert turn.faq_answer is None and sent[0] == hand_off and [a.kind for a in turn.alerts] == ["handoff"]


async def test_the_faq_answers_when_the_model_does_not(clock, store) -> None:  # type: ignore[no-untyped-def]
    from bot.errors import EngineError
    from tests.fakes import FakeEngine

    app, sender = build_app(clock, store, FakeEngine(fail=EngineError("model server down")),
                            knowledge={"path": str(FAQ), "answer_threshold": 0.3})
    turn = await app.process(make_message("what are your opening hours?", sent_at=clock.now()))
    assert turn.reply == HOURS_EN and turn.reply_source == "faq"
    assert [m.text for m in sender.sent] == [HOURS_EN] and turn.alerts == []


async def test_a_chinese_question_gets_the_chinese_entry(clock, store) -> None:  # type: ignore[no-untyped-def]
    turn, sent, _ = await _faq_turn(clock, store, ["开门时间我这边没有资料，我请同事帮您核实。"], "你们几点开门")
    assert sent == ["灯笼茶铺每天上午10点到晚上9点营业，节假日照常营业。"] and turn.alerts == []


async def test_a_request_keeps_its_hand_off(clock, store) -> None:  # type: ignore[no-untyped-def]
    # "order 123 arrived broken, please refund it" matches the return policy, which does not refund it
    turn, sent, _ = await _faq_turn(clock, store, ["I'll pass this to a colleague who can look into it."],
                                    "order 123 arrived broken, please return it and refund my money", bar=0.125)
    assert turn.knowledge and turn.faq_answer is None and turn.reply_source == "generated"
    assert sent[0].startswith("I'll pass this") and [a.kind for a in turn.alerts] == ["handoff"]


async def test_a_needless_hand_off_is_not_trimmed_when_the_faq_answers(clock, store) -> None:  # type: ignore[no-untyped-def]
    # the head says no person is needed, so the guard refuses the promise; the rest would be "Thanks for asking!"
    turn, sent, _ = await _faq_turn(clock, store, ["Thanks for asking! A colleague will get back to you.",
                                                   "I'll ask a colleague for you."], "what are your opening hours?", person=False)
    assert sent == [HOURS_EN] and turn.reply_source == "faq"


async def test_the_same_faq_answer_is_not_sent_twice_in_a_row(clock, store) -> None:  # type: ignore[no-untyped-def]
    from tests.fakes import ScriptedEngine

    hand_off = "I don't have the details, a colleague will get back to you."
    engine = ScriptedEngine([hand_off, hand_off + " Sorry!", hand_off + " Really."])
    app, sender = build_app(clock, store, engine, knowledge={"path": str(FAQ), "answer_threshold": 0.3})
    first = await app.process(make_message("what are your opening hours?", sent_at=clock.now()))
    clock.advance(seconds=30)
    again = await app.process(make_message("what are your opening hours???", sent_at=clock.now()))
    assert first.reply == HOURS_EN and again.reply != HOURS_EN and again.reply_source == "generated"
    assert [a.kind for a in again.alerts] == ["handoff"]  # asked again: the answer did not help, a person looks


async def test_an_faq_answer_naming_the_team_pages_nobody(clock, store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    faq = tmp_path / "faq.yaml"
    faq.write_text("- question: How do refunds work?\n  answer: Our team refunds you within 3 days of receiving the item.\n",
                   encoding="utf-8")
    turn, _, _ = await _faq_turn(clock, store, ["I don't have the details, a colleague will get back to you."],
                                 "how do refunds work?", bar=0.2, faq=faq)
    assert turn.reply_source == "faq" and turn.reply.startswith("Our team refunds") and turn.alerts == []


def test_the_best_sure_entry_wins_and_the_answer_bar_sits_above_the_match_bar() -> None:
    from bot.knowledge import Entry, Hit, best_in

    low, high = Hit(Entry("When do you open?", "10 to 9"), 0.3), Hit(Entry("When do you close?", "at 9"), 0.6)
    assert best_in([low, high], "en", 0.2) is high and best_in([low, high], "zh", 0.2) is None
    assert best_in([low, high], "en", 0.7) is None
    with pytest.raises(ValueError, match="answer_threshold"):
        KnowledgeSettings(threshold=0.3, answer_threshold=0.2)
class _HandingOff(FakeEngine):
    async def generate(self, history, strategy, lang, system, knowledge=(), attempt=0):  # type: ignore[no-untyped-def]
        return "我这边没有资料，我请同事帮您核实。" if lang == "zh" else "I don't have the details; a colleague will reply."


class _Inventing(FakeEngine):
    async def generate(self, history, strategy, lang, system, knowledge=(), attempt=0):  # type: ignore[no-untyped-def]
        return "我们 7 点开门。" if lang == "zh" else "We open at 7 am."  # refused: a curated line goes out


@pytest.mark.parametrize("engine", [_HandingOff(), _Inventing(), FakeEngine(fail=EngineError("model server down"))],
                         ids=["hand-off", "fallback", "unavailable"])
async def test_the_faq_bench_reads_each_threshold_as_the_reply_stage_serves_it(tmp_path: Path, engine: FakeEngine) -> None:
    from bench import faq as bench_faq

    questions = bench_faq.load_questions(bench_faq.BENCH / "data" / "faq_questions_validation.yaml")
    sample = [q for q in questions if q.faq == "examples/faq.yaml"][:16]
    settings = Settings.model_validate({"schedule": {"enabled": False}})
    off = await bench_faq.run_set(settings, engine, sample, str(tmp_path / "off"), threshold=None)
    served = await bench_faq.run_set(settings, engine, sample, str(tmp_path / "on"), threshold=0.3)
    assert [bench_faq.outcome(row, 0.3) for row in off] == [bench_faq.outcome(row) for row in served]
    kinds = [bench_faq.outcome(row, 0.3)[0] for row in off]
    assert "faq-right" in kinds and len(set(kinds)) > 1  # the answer replaced some replies, not all
    assert not any(bench_faq.outcome(row)[0].startswith("faq") for row in off)
