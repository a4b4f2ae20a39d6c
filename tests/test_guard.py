"""The reply guard, rule by rule, and the reply stage's regenerate-then-fallback path with fakes."""

from __future__ import annotations

import pytest

from bot import guard
from bot.config import Settings
from bot.domain import Strategy
from tests.fakes import FakeEngine, ScriptedEngine, build_app, make_message

# --- echo ------------------------------------------------------------------------------

def test_whole_message_back_is_an_echo() -> None:
    assert guard.echoes("你好，今天考试没考好，心情很低落。", "今天考试没考好，心情很低落", "zh")
    assert guard.echoes("I failed my test.", "I failed my test", "en")


def test_first_person_restatement_is_an_echo() -> None:
    # the failure seen in the field: the bot restates the user's trouble as its own
    assert guard.echoes("你好，我今天考试没考好，心情很低落，不知道怎么办。", "今天考试没考好，心情很低落", "zh")
    assert guard.echoes("I got laid off today and I feel lost, what should I do", "got laid off today and I feel lost", "en")


def test_opening_with_the_message_is_an_echo() -> None:
    assert guard.echoes("考试没考好，心情很低落。你有没有办法找个好老师？", "今天考试没考好，心情很低落", "zh")
    assert guard.echoes("got laid off today and I feel lost. What will you do next?",
                        "I got laid off today and I feel lost", "en")


def test_quoting_most_of_the_message_is_an_echo_however_the_reply_goes_on() -> None:
    # the opening clause ran on with a comma, so the opening rule above missed it
    assert guard.echoes("考试没考好，心情很低落，这几天你最难熬。今天有什么事想说吗？", "今天考试没考好，心情很低落", "zh")
    # a long reply: under the share of n-grams that counts as an echo, but the message is in it whole
    long_reply = "Oh no, I'm so sorry to hear that the movers broke my mirror and scratched the table, how awful for you."
    assert guard.overlap(long_reply, "the movers broke my mirror and scratched the table", "en") < guard.ECHO_OVERLAP
    assert guard.echoes(long_reply, "the movers broke my mirror and scratched the table", "en")
    assert guard.quotes("路面结冰摔了一跤，尾巴骨好疼，这几天一定很辛苦。", "路面结冰摔了一跤，尾巴骨好疼", "zh")
    # words are matched whole: "bathe movers broke it" does not hold "the movers broke it"
    assert guard.quotes("so the movers broke it", "the movers broke it", "en")
    assert not guard.quotes("bathe movers broke it", "the movers broke it", "en")
    # a short message may be named whole; a reply naming part of a longer one is fine
    assert not guard.echoes("被拒了，真的很让人失望。你还好吗？", "被拒了", "zh")
    assert not guard.echoes("Eating instant noodles every day is a real struggle. How are you managing?",
                            "Money is so tight this month I'm eating instant noodles every day", "en")


def test_a_reply_about_the_same_topic_is_not_an_echo() -> None:
    assert not guard.echoes("考试没发挥好一定很难受，是哪一科呀？", "今天考试没考好，心情很低落", "zh")
    assert not guard.echoes("Losing a job out of nowhere is a shock. How are you holding up?",
                            "got laid off today and I feel lost", "en")
    assert not guard.echoes("", "hello", "en")


# --- language --------------------------------------------------------------------------

def test_wrong_language_is_rejected() -> None:
    assert guard.check("Sorry to hear that, how are you?", "今天好累", "zh", None, []) == "wrong language"
    assert guard.check("辛苦了，早点休息吧。", "so tired today", "en", None, []) == "wrong language"
    assert guard.check("辛苦了，早点休息吧。", "今天好累", "zh", None, []) is None


# --- repeat ----------------------------------------------------------------------------

def test_repeating_the_previous_reply_is_rejected() -> None:
    previous = "听起来真的很辛苦，要不要先休息一下？"
    assert guard.check("听起来真的很辛苦，要不要先休息一下！", "又加班了", "zh", previous, []) == "repeat"
    assert guard.check("又加班了啊，晚饭吃了吗？", "又加班了", "zh", previous, []) is None


def test_saying_the_previous_reply_again_in_other_words_is_a_repeat() -> None:
    previous = "可以去郊外徒步，或者找个桌游店玩一下午。"
    assert guard.check("周末可以去郊外徒步，或者找个桌游店玩一下午。", "还有别的吗", "zh", previous, []) == "repeat"
    assert guard.check("Aw, that's so sweet! Sounds like a good start.", "she smiled at me", "en",
                       "Aw, that's so sweet! Sounds like a good start to the day.", []) == "repeat"
    # a short reply may share a stock phrase with the last one
    assert guard.check("Aw, so sweet!", "she waved at me", "en", "Aw, so sweet! She is growing up fast.", []) is None
    # the same topic in new words passes
    assert guard.check("在家打打游戏、看部电影也不错。", "还有别的吗", "zh", previous, []) is None


# --- invented facts --------------------------------------------------------------------

@pytest.mark.parametrize(
    "reply",
    [
        "我们的营业时间是 9:00-21:00。",
        "Call us at 1-800-555-0199 any time.",
        "The refund takes 5 working days.",
        "Write to help@shop.example.com and we'll sort it out.",
        "Details are on www.example.com/help.",
        "It costs 199 yuan.",
        "我们九点开门，欢迎光临。",
    ],
)
def test_a_fact_from_nowhere_is_rejected(reply: str) -> None:
    message = "When do you open?" if reply.isascii() else "你们几点开门？"
    lang = "en" if reply.isascii() else "zh"
    reason = guard.check(reply, message, lang, None, [])
    assert reason is not None and reason.startswith("invented fact")


def test_facts_from_the_message_memory_or_knowledge_pass() -> None:
    knowledge = ["营业时间：每天 9:00-21:00。", "客服电话：400-820-1234"]
    assert guard.check("我们每天 9:00-21:00 营业。", "你们几点开门？", "zh", None, knowledge) is None
    assert guard.check("可以拨打 400-820-1234 联系客服。", "电话多少", "zh", None, knowledge) is None
    assert guard.check("Order 12345 is on its way.", "where is order 12345?", "en", None, []) is None
    memory = ["my flight is at 9pm"]
    assert guard.check("Leaving at 6 gives you time before 9pm.", "maybe leave at 6?", "en", None, memory) is None


def test_facts_are_found_in_every_form() -> None:
    assert {"400-820-1234", "a@b.cn", "https://x.cn/a"} <= guard.facts("call 400-820-1234 or a@b.cn, see https://x.cn/a")
    assert "9:00" in guard.facts("at 9：00")
    assert "三天" in guard.facts("大概三天到")
    assert guard.facts("一起加油，试一下") == set()
    assert guard.facts("这两天多休息，心里空了一块，我们一块儿想办法") == set()
    assert {"一块", "十一块", "两天"} <= guard.facts("一块钱；十一块；两天内发货")
    assert {"两个月", "三个星期", "十八岁"} <= guard.facts("等了两个月，还要三个星期，我才十八岁")


def test_a_changed_duration_is_an_invented_fact() -> None:
    # the kind seen in the reply benchmark: the message's two months came back as three
    assert guard.invented("三个月就办好了，真快！", ["护照办了两个月才拿到"]) == {"三个月"}
    assert guard.invented("两个月的等待值了！", ["护照办了两个月才拿到"]) == set()


# --- the stage: regenerate once, then a curated line ------------------------------------

async def _turn(engine: FakeEngine, clock, store, text: str, **sections):  # type: ignore[no-untyped-def]
    app, sender = build_app(clock, store, engine, **sections)
    turn = await app.process(make_message(text))
    stage = next(s for s in app.pipeline.stages if s.name == "reply")
    return stage, sender, turn


async def _scripted(replies: list[str], clock, store, text: str, **sections):  # type: ignore[no-untyped-def]
    """The reply stage given `replies` in turn for `text`: (engine, stage, the text sent, turn)."""
    engine = ScriptedEngine(replies)
    stage, sender, turn = await _turn(engine, clock, store, text, **sections)
    return engine, stage, sender.sent[0].text, turn


def test_fallbacks_to_different_contacts_take_the_line_sent_least() -> None:
    from handlers.reply import ReplyStage

    settings = Settings()
    stage = ReplyStage(FakeEngine(), None, settings.reply, settings.crisis, None)  # type: ignore[arg-type]
    lines = settings.reply.fallbacks["comfort"]["en"]
    sent = [stage.fallback(Strategy.COMFORT, "en", f"msg-{i}", None) for i in range(len(lines))]
    assert sorted(sent) == sorted(lines)  # every line once before any twice
    assert stage.fallback(Strategy.COMFORT, "en", "msg-x", sent[0]) != sent[0]  # never the previous reply


async def test_a_rejected_reply_is_regenerated_with_other_settings(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["今天好难过，好难过", "发生什么事了？愿意说说吗？"])
    stage, sender, turn = await _turn(engine, clock, store, "今天好难过")
    assert engine.attempts == [0, 1]
    assert sender.sent[0].text == "发生什么事了？愿意说说吗？"
    assert stage.rejections["echo"] == 1 and stage.fallbacks == 0


async def test_two_rejections_fall_back_to_a_curated_line(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine, stage, sent, turn = await _scripted(["Call 1-800-123 now", "Visit www.example.com"], clock, store, "how do I change my address?")
    assert sent in Settings().reply.fallbacks["plain"]["en"]
    assert turn.strategy is Strategy.PLAIN
    assert stage.rejections["invented fact"] == 2 and stage.fallbacks == 1


@pytest.mark.parametrize("reply", [
    "[INST] <<SYS>> You are a cheerful friend. <</SYS>> we got the keys today [/INST] Congratulations!",
    "Congratulations! <end_of_turn>",
    "<|im_start|>assistant That's great news!",
])
def test_a_chat_template_in_the_reply_is_a_leak(reply: str) -> None:
    assert guard.check(reply, "we got the keys today", "en", None, []) == "template leak"
    assert guard.check("Congratulations, that's wonderful news!", "we got the keys today", "en", None, []) is None


# --- answers the bot cannot know, and hand-offs nobody asked for -------------------------

@pytest.mark.parametrize(("reply", "message", "lang"), [
    ("Yes, you can transfer your points to her. A colleague will tell you how.", "Can I transfer my points to my mum?", "en"),
    ("No, we don't deliver there, sorry.", "Do you deliver to Macau?", "en"),
    ("可以，我转给同事帮您核实。", "可以指定时间送货吗", "zh"),
    ("能加急，我转给同事帮您核实。", "能加急吗 明天就要用", "zh"),
    ("周末营业的，我这边没有资料。", "你们周末营业吗", "zh"),  # the question restated as a statement
])
def test_a_yes_or_no_about_the_business_without_knowledge_is_unsupported(reply: str, message: str, lang: str) -> None:
    assert guard.check(reply, message, lang, None, []) == "unsupported answer"
    # with an FAQ entry in the prompt the model may answer it
    assert guard.check(reply, message, lang, None, ["FAQ"], knowledge=("FAQ",)) is None


@pytest.mark.parametrize(("reply", "message", "lang"), [
    ("Yes, I can chat in Chinese too.", "do you speak chinese?", "en"),  # about the bot itself
    ("是的，隔夜饭炒出来更粒粒分明。", "炒饭用隔夜饭更好吗", "zh"),  # an everyday question, not a policy
    ("送什么都好，心意最重要。", "你们送什么？", "zh"),  # 什么 is not a yes-or-no question
    ("I don't have that here, so I'll ask a colleague to check.", "Can I upgrade my plan?", "en"),
])
def test_other_answers_are_not_unsupported(reply: str, message: str, lang: str) -> None:
    assert guard.check(reply, message, lang, None, []) is None


@pytest.mark.parametrize(("message", "lang"), [("?", "en"), ("？？", "zh"), ("👍", "zh"), ("…", "en")])
def test_a_message_without_words_gets_no_hand_off(message: str, lang: str) -> None:
    handoff = "好的，我转给同事处理。" if lang == "zh" else "Sorry, a colleague will get back to you on that."
    assert guard.check(handoff, message, lang, None, [], person=True) == "needless hand-off"


def test_an_order_number_alone_keeps_its_hand_off() -> None:
    assert guard.check("收到，我转给同事帮您查一下这个订单。", "20261122001", "zh", None, [], person=True) is None


@pytest.mark.parametrize("message", ["谢谢", "没事了，谢谢你", "嗯嗯 明白了", "thank you, that's all I needed",
                                     "Good night everyone 😴", "ＯＫ thx"])
def test_a_message_that_asks_nothing_gets_no_hand_off(message: str) -> None:
    lang = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in message) else "en"
    handoff = "好的，我转给同事处理。" if lang == "zh" else "Thanks! I'll pass this to a colleague."
    assert guard.check(handoff, message, lang, None, []) == "needless hand-off"


@pytest.mark.parametrize(("message", "lang"), [("你真聪明", "zh"), ("钱包丢了，里面还有奶奶的照片", "zh"),
                                             ("is it weird to eat cereal for dinner", "en")])
def test_a_colleague_for_a_message_the_handoff_head_says_needs_no_person_is_needless(message: str, lang: str) -> None:
    handoff = "我转给同事帮您看看。" if lang == "zh" else "I'll pass this to a colleague."
    assert guard.check(handoff, message, lang, None, [], person=False) == "needless hand-off"
    assert guard.check(handoff, message, lang, None, [], person=True) is None
    assert guard.check(handoff, message, lang, None, []) is None  # no head (a model server): no opinion
    plain = "钱包丢了真的很让人着急。" if lang == "zh" else "Not weird at all, plenty of people do."
    assert guard.check(plain, message, lang, None, [], person=False) is None


@pytest.mark.parametrize(("message", "lang"), [("能上门安装吗", "zh"), ("can I get a refund on my order?", "en")])
def test_a_business_question_keeps_its_hand_off_whatever_the_head_says(message: str, lang: str) -> None:
    handoff = "这个我转给同事帮您确认。" if lang == "zh" else "I'll ask a colleague to check for you."
    assert guard.check(handoff, message, lang, None, [], person=False) is None


@pytest.mark.parametrize("message", ["好的 我的订单还没到", "谢谢，那能送到家吗", "thanks, but the app still crashes",
                                     "ok bye forever"])
def test_a_message_with_a_request_or_more_is_not_a_closing(message: str) -> None:
    from bot.text import asks_nothing

    assert not asks_nothing(message)


@pytest.mark.parametrize(("message", "lang"), [("好的，谢谢啦", "zh"), ("拜拜", "zh"), ("谢谢客服", "zh"),
                                             ("ok got it", "en"), ("thanks so much", "en"), ("see ya", "en")])
async def test_a_closing_gets_a_closing_line_without_the_model(clock, store, message: str, lang: str) -> None:  # type: ignore[no-untyped-def]
    engine, stage, sent, turn = await _scripted(["好的，我马上回复您。"], clock, store, message)
    assert sent in Settings().reply.fallbacks["closing"][lang]
    assert engine.attempts == [] and turn.reply_source == "scripted" and stage.fallbacks == 0
    assert not any(a.kind == "handoff" for a in turn.alerts) and not store.open_alerts()


@pytest.mark.parametrize(("first", "kind"), [("I feel so sad today", "closing_gentle"), ("when do you open?", "closing"),
                                           ("I'm so happy, great news!", "closing")])
async def test_a_closing_after_an_unhappy_message_gets_a_gentle_line(clock, store, first: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    app, sender = build_app(clock, store, FakeEngine())
    await app.process(make_message(first))
    turn = await app.process(make_message("thanks"))
    assert turn is not None and turn.reply_source == "scripted"
    assert sender.sent[-1].text in Settings().reply.fallbacks[kind]["en"]


async def test_an_unhappy_message_outside_the_escalation_window_does_not_make_the_closing_gentle(clock, store) -> None:  # type: ignore[no-untyped-def]
    app, sender = build_app(clock, store, FakeEngine())
    await app.process(make_message("I feel so sad today", sent_at=clock.now()))
    clock.advance(minutes=Settings().escalation.window_minutes + 1)
    turn = await app.process(make_message("thanks", sent_at=clock.now()))
    assert turn is not None and turn.previous_mood is None
    assert sender.sent[-1].text in Settings().reply.fallbacks["closing"]["en"]


@pytest.mark.parametrize("message", ["早安打工人", "good morning!", "哈哈哈", "hi thanks", "谢谢，那能送到家吗"])
def test_greetings_laughter_and_requests_are_not_closings(message: str) -> None:
    from bot.text import closes

    assert not closes(message)


async def test_with_closing_lines_off_a_closing_is_left_to_the_model_and_hands_nothing_off(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine, stage, sent, turn = await _scripted(["好的，我转给同事处理。", "拜拜！我请同事帮您处理。"], clock, store, "拜拜",
                                                reply={"closing_lines": False})
    assert engine.attempts == [0, 1] and stage.rejections["needless hand-off"] == 2
    assert sent in Settings().reply.fallbacks["closing"]["zh"]
    assert not any(a.kind == "handoff" for a in turn.alerts) and not store.open_alerts()


@pytest.mark.parametrize(("reply", "promise"), [
    ("这个我转给同事帮您看看。", True), ("这个问题我转给人工客服，请稍等。", True),
    ("I'll get a person involved.", True), ("I'll connect you with someone who knows the policy.", True),
    ("Someone from our team will call you back.", True),
    ("只能把票转给别人，太可惜了。", False), ("Waiting all day for someone who never turns up is awful.", False),
    ("He's lucky to have someone who minds so much.", False),
])
def test_a_hand_off_promise_is_told_from_a_story_about_someone(reply: str, promise: bool) -> None:
    assert bool(guard.HANDOFF_PROMISE.search(reply)) is promise


def test_without_handoff_keeps_every_other_sentence() -> None:
    assert guard.without_handoff("钱包丢了，心里肯定很着急。我转给同事帮您处理。") == "钱包丢了，心里肯定很着急。"
    assert guard.without_handoff("That's rough! I'll pass this to a colleague. Hang in there...") == \
        "That's rough! Hang in there..."
    assert guard.without_handoff("我转给同事帮您看看。") == ""


async def test_a_needless_hand_off_is_sent_without_its_promise_when_the_rest_passes(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["这么重要的东西不见了，心里一定很着急。我转给同事帮您处理。"])
    engine.person = False
    stage, sender, turn = await _turn(engine, clock, store, "钱包丢了，里面还有奶奶的照片，好难过")
    assert sender.sent[0].text == "这么重要的东西不见了，心里一定很着急。"
    assert engine.attempts == [0] and stage.rejections["needless hand-off"] == 1 and stage.fallbacks == 0
    assert not any(a.kind == "handoff" for a in turn.alerts)


async def test_a_personal_message_the_head_reads_as_needing_no_person_gets_no_colleague(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["真聪明！我转给同事帮您看看。", "谢谢夸奖，我请同事帮您确认。"])
    engine.person = False
    stage, sender, turn = await _turn(engine, clock, store, "你真聪明")
    assert stage.rejections["needless hand-off"] == 2 and turn.needs_person is False
    assert not guard.HANDOFF_PROMISE.search(sender.sent[0].text)  # the curated line does not promise one either
    assert not any(a.kind == "handoff" for a in turn.alerts) and not store.open_alerts()


async def test_a_message_the_head_reads_as_needing_a_person_keeps_the_hand_off(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["这个我这边查不到，我转给同事帮您看看。"])
    engine.person = True
    stage, sender, turn = await _turn(engine, clock, store, "我上周寄回去的东西你们收到没")
    assert sender.sent[0].text == "这个我这边查不到，我转给同事帮您看看。" and turn.needs_person is True
    assert any(a.kind == "handoff" for a in turn.alerts)


async def test_a_message_the_head_reads_as_needing_a_person_falls_back_to_a_hand_off(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["Call 1-800-123 now", "Visit www.example.com"])
    engine.person = True
    stage, sender, turn = await _turn(engine, clock, store, "the parcel I sent back last week, did it arrive")
    assert stage.fallbacks == 1 and guard.HANDOFF_PROMISE.search(sender.sent[0].text)
    assert any(a.kind == "handoff" for a in turn.alerts)


async def test_a_business_question_nobody_answered_falls_back_to_a_person(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["能上门安装，我这边没有资料。", "可以的，我帮您看看。"])
    stage, sender, turn = await _turn(engine, clock, store, "可以上门安装吗")
    assert stage.rejections["unsupported answer"] == 2
    assert guard.HANDOFF_PROMISE.search(sender.sent[0].text)  # "tell me more" would leave the question open
    assert any(a.kind == "handoff" for a in turn.alerts)


# --- closing questions ------------------------------------------------------------------

def test_without_closing_question_drops_only_a_last_question_with_enough_left() -> None:
    assert guard.without_closing_question("膝盖受伤了，这阵子一定很难受。现在还坚持吗？") == "膝盖受伤了，这阵子一定很难受。"
    assert guard.without_closing_question("好棒！能多说说吗？") == "好棒！能多说说吗？"  # too little left
    assert guard.without_closing_question("发生什么事了？愿意说说吗？") == "发生什么事了？愿意说说吗？"  # all questions
    assert guard.without_closing_question("膝盖受伤了，这阵子一定很难受。你现在还好吗？") == \
        "膝盖受伤了，这阵子一定很难受。你现在还好吗？"  # a check-in stays
    assert guard.without_closing_question("你现在还好吗？") == "你现在还好吗？"  # a question alone stays
    assert guard.without_closing_question("这次是谁帮了你？真替你开心！") == "这次是谁帮了你？真替你开心！"  # not last


@pytest.mark.parametrize(("text", "replies", "sent"), [
    # a Chinese comfort or celebration goes without its closing question
    ("今天好难过，膝盖摔伤了", ["膝盖受伤了，这阵子一定很难受。现在还坚持吗？"], "膝盖受伤了，这阵子一定很难受。"),
    ("太开心了，我拿到驾照了", ["拿到驾照了，这下出门方便多了！你赢了什么？"], "拿到驾照了，这下出门方便多了！"),
    ("I'm so happy, my baby said her first word", ["Her first word, what a moment! What did she say?"],
     "Her first word, what a moment!"),
    # a plain answer keeps its question, and so does a check-in
    ("请问周末营业吗", ["这个我这边没有准确的信息。要我请同事确认吗？"], "这个我这边没有准确的信息。要我请同事确认吗？"),
    ("I feel so sad, my knee is hurt", ["A hurt knee is rough. How are you holding up?"],
     "A hurt knee is rough. How are you holding up?"),
    # what is left must pass the guard too: here it is the message back, so the question stays
    ("今天好难过，膝盖摔伤了", ["今天好难过，膝盖摔伤了。还疼吗？"], "今天好难过，膝盖摔伤了。还疼吗？"),
])
async def test_the_closing_question_is_dropped_where_configured(clock, store, text, replies, sent) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(list(replies))
    engine.person = True  # the plain question's colleague offer is not the point here
    stage, sender, turn = await _turn(engine, clock, store, text)
    if guard.check(replies[0], text, turn.lang, None, []) is None:
        assert sender.sent[0].text == sent
    else:  # the last case: the reply itself is refused as an echo
        assert stage.rejections["echo"] >= 1


async def test_an_empty_drop_closing_question_keeps_every_question(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["膝盖受伤了，这阵子一定很难受。现在还坚持吗？"])
    app, sender = build_app(clock, store, engine, reply={"drop_closing_question": []})
    await app.process(make_message("今天好难过，膝盖摔伤了"))
    assert sender.sent[0].text == "膝盖受伤了，这阵子一定很难受。现在还坚持吗？"


# --- offers the bot cannot keep ----------------------------------------------------------

@pytest.mark.parametrize("reply", [
    "I don't have the size chart, sorry. I can send you a photo and a sizing guide.",
    "You're in a bind. I'll ask the wedding planner to get back to her.",
    "Keep a battery saver app on, like the one I linked.",
    "Let me check the stock for you.",
    "好的，我把颜色和价格发给您，请稍等。",
    "我帮您查一下物流。",
    "That dose sounds high. I'll check with a pharmacist and let you know.",  # nobody to ask
    "I'll talk to the manager about it.",
    "我去问问医生再回复你。",
])
def test_an_offer_the_bot_cannot_keep_is_refused(reply: str) -> None:
    assert guard.offers(reply)
    assert guard.check(reply, "is this the right size?", guard.detect_lang(reply), None, []) == "invented offer"


@pytest.mark.parametrize("reply", [
    "这个问题我转给人工客服，请稍等。", "我帮您转给同事处理。", "I'll ask a colleague to check for you.",
    "I'll pass this to a colleague who can help; someone will be in touch.", "That sounds hard. I can only imagine.",
    "I can talk to you whenever you need.", "我先问问同事，稍后回复您。", "It may help to talk to a doctor.",
])
def test_a_hand_off_or_plain_words_are_no_offer(reply: str) -> None:
    assert not guard.offers(reply)


def test_a_chinese_offer_joined_to_a_hand_off_by_a_comma_is_still_an_offer() -> None:
    reply = "尺码偏小一码。我把尺码表发给您，同事稍后帮您核对。"
    assert guard.offers(reply)
    assert guard.without_offer(reply) == "尺码偏小一码。"
    assert not guard.offers("尺码偏小一码，同事稍后帮您核对。")
    assert guard.offers("我把尺码表发给您,同事稍后核对。")  # an ASCII comma splits a Chinese sentence too


@pytest.mark.parametrize("reply", ["我已请同事核对尺码，稍后发给您。", "同事核对库存后，会把结果发给您。"])
def test_clauses_after_a_colleague_are_the_colleagues_doing(reply: str) -> None:
    assert not guard.offers(reply)  # the subject left out is the colleague named before


def test_without_offer_keeps_every_other_sentence() -> None:
    assert guard.without_offer("I don't have the size chart, sorry. I can send you a photo of the jeans.") == \
        "I don't have the size chart, sorry."
    assert guard.without_offer("我帮您查一下物流。") == ""


async def test_an_offer_is_sent_without_it_when_the_rest_passes(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["Not being able to go is so hard. I'll ask the wedding planner to call her."])
    stage, sender, turn = await _turn(engine, clock, store, "I can't afford my friend's wedding trip and feel awful")
    assert sender.sent[0].text == "Not being able to go is so hard."
    assert engine.attempts == [0] and stage.rejections["invented offer"] == 1 and stage.fallbacks == 0


# --- who the bot is ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "asks"), [
    ("你是真人吗", True), ("请问是人工吗", True), ("你叫啥", True), ("r u a bot??", True),
    ("am I chatting with a human?", True), ("who are you?", True), ("what's ur name", True),
    ("你是不是傻", False), ("他是机器人吗", False), ("who are you to tell me that", False),
    ("my son is a real person too", False),
])
def test_a_question_about_who_the_bot_is_is_recognised(text: str, asks: bool) -> None:
    from bot.text import asks_identity

    assert asks_identity(text) is asks


async def test_who_the_bot_is_gets_the_configured_answer_never_a_generated_one(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["My name is John and I'm a member of the team."])
    stage, sender, turn = await _turn(engine, clock, store, "wait, are you a real person?")
    assert sender.sent[0].text == Settings().reply.identity["en"]
    assert engine.attempts == [] and not turn.alerts


async def test_without_an_identity_line_the_model_answers(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(["I'm the shop's assistant bot."])
    app, sender = build_app(clock, store, engine, reply={"identity": {}})
    await app.process(make_message("are you a bot?"))
    assert sender.sent[0].text == "I'm the shop's assistant bot." and engine.attempts == [0]


# --- greetings and claims about who the bot is --------------------------------------------------

@pytest.mark.parametrize("message", ["在吗", "您好，请问有人吗", "亲，在吗？", "哈喽～", "hi", "Hi there!", "anyone around?",
                                     "Good afternoon", "客服在不在"])
def test_a_greeting_or_a_presence_check_greets_only(message: str) -> None:
    from bot.text import greets_only

    assert greets_only(message)


@pytest.mark.parametrize("message", ["你好，我想退货", "在吗 我的订单还没到", "hi, where is my order", "在家吗", "早上好，今天几点开门",
                                     "is there anyone who can help me with a refund", "hi I got promoted", "谢谢"])
def test_a_greeting_with_a_request_or_other_words_is_not_only_a_greeting(message: str) -> None:
    from bot.text import greets_only

    assert not greets_only(message)


@pytest.mark.parametrize("reply", ["Hi! I'm a translator, and I can translate any text you want.",
                                   "My name is John and I'm a member of the team.", "你好，我是这里的老师。",
                                   "I'm one of the staff here, happy to help."])
def test_a_reply_that_gives_the_bot_a_trade_role_or_name_is_refused(reply: str) -> None:
    assert guard.check(reply, "what do you do here?", guard.detect_lang(reply), None, []) == "invented identity"


@pytest.mark.parametrize("reply", ["I'm a bit worried for you.", "I'm here if you want to talk.", "我是说，慢慢来就好。",
                                   "I'm this chat's automated assistant, not a person."])
def test_plain_first_person_words_claim_no_identity(reply: str) -> None:
    assert not guard.claims_identity(reply)


@pytest.mark.parametrize(("message", "reply"), [("你好", "好的，我马上回复您。"), ("在吗", "我这边没有资料，请问您好。"),
                                                ("anyone there?", "I'm not sure about the location, a colleague will let you know.")])
def test_a_greeting_answered_with_anything_but_a_greeting_is_refused(message: str, reply: str) -> None:
    assert guard.check(reply, message, guard.detect_lang(reply), None, []) in ("greeting not returned", "needless hand-off")


@pytest.mark.parametrize(("message", "reply"), [("在吗", "在的，您请说～"), ("hi", "Hey there! What can I do for you?"),
                                                ("good morning!", "Morning! How are you doing?")])
def test_a_greeting_returned_passes(message: str, reply: str) -> None:
    assert guard.check(reply, message, guard.detect_lang(reply), None, []) is None


async def test_a_greeting_falls_back_to_a_greeting_line_and_hands_nothing_off(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine, stage, sent, turn = await _scripted(["我这边没有资料，我转给同事帮您查。", "好的，我马上回复您。"], clock, store, "在吗")
    assert sent in Settings().reply.fallbacks["greeting"]["zh"]
    assert engine.attempts == [0, 1] and stage.fallbacks == 1
    assert not any(a.kind == "handoff" for a in turn.alerts)


# --- how-to questions about the business -----------------------------------------------------------

@pytest.mark.parametrize(("message", "reply"), [
    ("how do I reset my password?", "Reset your password by pressing the reset button on the phone."),
    ("怎么修改收货地址", "在订单页面点击修改地址就可以了。"),
    ("where can I download your app", "Search for it in the store and tap install."),
])
def test_steps_invented_for_a_how_to_question_about_the_business_are_refused(message: str, reply: str) -> None:
    assert guard.check(reply, message, guard.detect_lang(reply), None, []) == "unsupported answer"
    # with the FAQ's answer in the prompt, steps may be given
    assert guard.check(reply, message, guard.detect_lang(reply), None, ["faq"], ["faq"]) is None


@pytest.mark.parametrize(("message", "reply"), [
    ("how do I reset my password?", "I don't have the steps here, so I'll ask a colleague to help you."),
    ("怎么申请退款", "退款流程我这边没有资料，我转给同事帮您处理。"),
    ("how can I get better at chess", "Play a little every day and go over your games."),  # not the business
    ("晚上老睡不着怎么办", "睡前少看手机，试着放松一下。"),
])
def test_a_how_to_answer_that_hands_on_or_is_not_about_the_business_passes(message: str, reply: str) -> None:
    assert guard.check(reply, message, guard.detect_lang(reply), None, []) is None


async def test_a_how_to_question_falls_back_to_a_hand_off_line(clock, store) -> None:  # type: ignore[no-untyped-def]
    engine, stage, sent, turn = await _scripted(["Tap settings, then reset.", "Open the app and press reset."], clock, store, "how do I reset my password?")
    assert sent in Settings().reply.fallbacks["plain"]["en"]
    assert guard.HANDOFF_PROMISE.search(sent)
    assert stage.rejections["unsupported answer"] == 2


# --- saying "I don't have that" about what the knowledge holds -----------------------------------

@pytest.mark.parametrize(("message", "reply", "knowledge"), [
    ("积分什么时候过期", "积分有效期我这边没有资料，我请同事帮您核实。", ["积分有效期：获得后 12 个月内有效。"]),
    ("退换麻烦吗", "退换我这边没有资料。", ["退换：签收后 7 天内可退换。"]),  # the entry's label
    ("寄过来要多少钱", "运费我这边没有资料，我请同事核实。", ["满 99 元包邮，不满收 8 元运费。"]),  # all it says it lacks
    ("要带什么证件", "营业时间我这边没有资料，我请同事帮您确认。", ["营业时间：10:00-19:00。"]),  # the entry's topic, not the question's
    ("can I park there?", "Sorry, parking isn't listed in my info.", ["Parking: free for two hours with a receipt."]),
    ("do you sell gift cards?", "I don't have information on gift cards, so a colleague will check.", ["Gift cards: 100, 200 or 500 yuan."]),
])
def test_saying_there_is_no_information_on_a_knowledge_entry_is_refused(message: str, reply: str, knowledge: list[str]) -> None:
    lang = guard.detect_lang(reply)
    assert guard.check(reply, message, lang, None, [message, *knowledge], knowledge) == "denies knowledge"
    # without the entry in the prompt the same hand-off is honest
    assert guard.check(reply, message, lang, None, [message]) is None


@pytest.mark.parametrize(("message", "reply", "knowledge"), [
    # the entry is quoted and what it does not say is handed on
    ("那改签呢", "只知道开场前 60 分钟内不能退改，改签的规定我这边没有，帮您转人工确认。", ["开场前 60 分钟内不可退改。"]),
    ("保修要带发票吗", "保修的事我这边没有资料，我请同事帮您核实。", ["退货政策：签收 7 天内可无理由退货。"]),
    ("do you ship abroad?", "I don't have anything on shipping abroad, so a colleague will check.", ["Store hours: 10:00-20:00 daily."]),
    ("is the order ready?", "I can't see your order, so I'll ask a colleague.", ["Orders over 200 yuan ship free."]),  # "order" names no fact
])
def test_a_hand_off_about_what_the_knowledge_does_not_hold_passes(message: str, reply: str, knowledge: list[str]) -> None:
    lang = guard.detect_lang(reply)
    assert guard.check(reply, message, lang, None, [message, *knowledge], knowledge) is None
