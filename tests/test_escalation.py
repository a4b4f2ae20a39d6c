"""Escalation scenarios through the whole pipeline, with a clock the tests move (no sleeping)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Application
from bot.clock import ManualClock
from bot.config import CrisisSettings, EscalationSettings
from bot.domain import ContactState, Label, MoodPoint, Strategy
from bot.store import Store
from handlers.escalation import decide
from tests.fakes import RecordingSender, build_app, make_message

SAD = "I feel so sad"
FINE = "I'm happy, great day"


build = build_app


async def say(app: Application, clock: ManualClock, text: str, who: str = "alice", minutes: float = 1, **kw: Any) -> Any:
    clock.advance(minutes=minutes)
    return await app.process(make_message(text, sender_id=who, chat_id=kw.pop("chat_id", who), sent_at=clock.now(), **kw))


def alerts_sent(sender: RecordingSender) -> list[str]:
    return [m.text for m in sender.sent if m.chat_id == "boss"]


async def test_three_negatives_raise_exactly_one_alert_and_the_fourth_none(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    for _ in range(2):
        await say(app, clock, SAD)
    assert alerts_sent(sender) == []
    await say(app, clock, SAD)
    [text] = alerts_sent(sender)
    assert "Mood alert #1" in text and "alice" in text and "3 negative messages in 30 min" in text
    await say(app, clock, SAD)  # within the cooldown and the same episode
    assert len(alerts_sent(sender)) == 1
    assert len(store.open_alerts()) == 1 and store.undelivered_alerts() == []


async def test_negatives_spread_beyond_the_window_do_not_alert(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, escalation={"score_threshold": -1.0})
    for _ in range(3):
        await say(app, clock, SAD, minutes=20)
    assert alerts_sent(sender) == []


async def test_rearmed_after_recovery_and_cooldown(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, escalation={"cooldown_minutes": 60, "score_points": 4})
    for _ in range(3):
        await say(app, clock, SAD)
    assert len(alerts_sent(sender)) == 1
    for _ in range(4):
        await say(app, clock, FINE, minutes=5)  # the mood recovers: re-armed
    assert store.state("alice").armed
    for _ in range(3):
        await say(app, clock, SAD)  # a new episode, but still inside the cooldown
    assert len(alerts_sent(sender)) == 1
    clock.advance(minutes=60)
    for _ in range(3):
        await say(app, clock, SAD)
    assert len(alerts_sent(sender)) == 2


async def test_no_rearm_without_recovery(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, escalation={"cooldown_minutes": 10})
    for _ in range(3):
        await say(app, clock, SAD)
    clock.advance(minutes=120)
    for _ in range(3):
        await say(app, clock, SAD)  # the same long episode: no storm
    assert len(alerts_sent(sender)) == 1


async def test_crisis_phrase_alerts_at_once_with_the_configured_safe_reply(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, crisis={"hotline": {"zh": "400-000-0000 (test line)"}})
    turn = await say(app, clock, "我觉得自己真的不想活了")
    assert turn.crisis and turn.strategy is Strategy.CRISIS
    [text] = alerts_sent(sender)
    assert "[critical]" in text
    replies = [m.text for m in sender.sent if m.chat_id == "alice"]
    expected = CrisisSettings(hotline={"zh": "400-000-0000 (test line)"}).text("reply", "zh")
    assert replies == [expected] and "400-000-0000 (test line)" in expected  # exactly as configured
    assert app.engine.generated == []  # never generated
    await say(app, clock, "I want to kill myself")
    assert len(alerts_sent(sender)) == 1  # one crisis alert per episode


async def test_a_crisis_labelled_neutral_still_triggers(clock: ManualClock, store: Store) -> None:
    # the fake engine labels this neutral; the crisis head is asked about every message all the same
    app, sender = build(clock, store)
    turn = await say(app, clock, "thinking I should just end it all tonight")
    assert turn.sentiment.label is Label.NEUTRAL
    assert turn.crisis and "[critical]" in alerts_sent(sender)[0]


async def test_careful_mode_persists_then_ends(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, crisis={"careful_minutes": 60})
    await say(app, clock, "I want to kill myself")
    later = await say(app, clock, "what time is it", minutes=10)
    assert not later.crisis and later.careful and later.strategy is Strategy.CRISIS
    assert [m.text for m in sender.sent if m.chat_id == "alice"][-1] == CrisisSettings().text("follow_up", "en")
    assert app.engine.generated == []
    after = await say(app, clock, "what time is it", minutes=60)
    assert not after.careful and after.strategy is Strategy.PLAIN


async def test_a_crisis_is_answered_even_while_paused(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    app.state.paused = True
    await say(app, clock, "I want to kill myself")
    assert [m.text for m in sender.sent if m.chat_id == "alice"] == [CrisisSettings().text("reply", "en")]


async def test_model_judgement_flags_crisis_without_a_listed_phrase(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    turn = await say(app, clock, "so sad, maybe I should end it all")
    assert turn.crisis and "[critical]" in alerts_sent(sender)[0]
    app2, sender2 = build(clock, store, escalation={"model_crisis_check": False})
    turn = await say(app2, clock, "so sad, maybe I should end it all", who="bob")
    assert not turn.crisis


async def test_a_possible_crisis_alerts_a_person_and_checks_in_with_vetted_text(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    turn = await say(app, clock, "so sad, I wonder if nobody would notice if I was gone")
    assert turn.concern and not turn.crisis and turn.strategy is Strategy.COMFORT
    assert "[high]" in alerts_sent(sender)[0] and "possible crisis" in alerts_sent(sender)[0]
    assert [m.text for m in sender.sent if m.chat_id == "alice"] == [CrisisSettings().text("check_in", "en")]
    assert app.engine.generated == []  # never generated
    again = await say(app, clock, "sad again, nobody would notice", minutes=5)
    assert again.concern and len(alerts_sent(sender)) == 1  # once per episode


async def test_a_possible_crisis_in_a_neutral_message_alerts_but_answers_normally(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    turn = await say(app, clock, "would anyone even care, nobody would notice")
    assert turn.concern and turn.strategy is Strategy.PLAIN
    assert "[high]" in alerts_sent(sender)[0]
    assert len(app.engine.generated) == 1


async def test_crisis_words_about_someone_else_get_help_for_them_and_a_person_alerted(clock: ManualClock,
                                                                                     store: Store) -> None:
    app, sender = build(clock, store, crisis={"hotline": {"zh": "400-000-0000 (test line)"}})
    turn = await say(app, clock, "我表姐这阵子老说活着没意思，我能做点什么")
    assert turn.someone_else and not turn.crisis and turn.strategy is not Strategy.CRISIS
    [text] = alerts_sent(sender)
    assert "[high]" in text and "someone else" in text
    expected = CrisisSettings(hotline={"zh": "400-000-0000 (test line)"}).text("someone_else", "zh")
    assert [m.text for m in sender.sent if m.chat_id == "alice"] == [expected] and "400-000-0000" in expected
    assert app.engine.generated == []  # never generated
    later = await say(app, clock, "谢谢，我今晚去陪她", minutes=5)
    assert not later.careful  # no careful mode: the sender is not the one at risk


async def test_the_senders_own_crisis_stays_a_crisis_when_others_are_named(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    turn = await say(app, clock, "我妈让我别多想，可我就是活不下去了")
    assert turn.crisis and not turn.someone_else and "[critical]" in alerts_sent(sender)[0]
    # the head reading a crisis wins over the floor's "someone else"
    turn = await say(app, clock, "my roommate is suicidal and I want to end it all too", who="bob")
    assert turn.crisis and not turn.someone_else


async def test_crisis_words_about_someone_else_are_answered_while_paused(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    app.state.paused = True
    await say(app, clock, "my cousin keeps saying he has no reason to live, what do I do")
    assert [m.text for m in sender.sent if m.chat_id == "alice"] == [CrisisSettings().text("someone_else", "en")]


@pytest.mark.parametrize(("text", "reading"), [
    ("我表姐这阵子老说活着没意思，我能做点什么", "someone else"),
    ("要是学生跟你说他想自杀，老师该怎么接话", "someone else"),
    ("how can I tell if my uncle is suicidal", "someone else"),
    ("my cousin keeps saying he has no reason to live", "someone else"),
    ("我妈让我别多想，可我就是活不下去了", "self"),  # the nearest person is the sender
    ("爷爷走了以后活着没意思", "self"),  # the subject left out: the sender's own
    ("she left me and now I don't want to live", "self"),
    ("since my brother died no reason to live", "self"),  # no verb of saying between them
    ("my sister says I should not kill myself", "self"),  # "myself": the sender's own words
    ("邻居家孩子昨天割腕了，我好担心他", "someone else"),  # an owned person, a day, no 说
    ("我弟前几天说想自杀", "someone else"),
    ("我朋友昨晚发朋友圈说不想活了，我要不要去找她", "someone else"),  # where it was said
    ("她给我发消息说想自杀", "someone else"),
    ("我在朋友圈说不想活了", "self"),
    ("天气不错", None),
    # the sender's own crisis, whoever else is named: never read as someone else's
    ("我跟表姐说不想活了", "self"),  # the person after 跟 is the one spoken to
    ("我告诉她我活不下去了", "self"),
    ("舅舅去世后总觉得活着没意思", "self"),  # a verb other than 说: the subject left out is the sender
    ("她说不想活了，其实我也是", "self"),  # the sender joins in
    ("女儿对不起 妈妈不想活了", "self"),  # a person naming herself, no 说
    ("姐姐今天真的不想活了", "self"),  # chat slang: a bare 姐姐 may be the sender
    ("听同学说 想自杀", "self"),  # a space splits the clause
    ("i told my cousin about being suicidal", "self"),
    ("my cousin is suicidal and so am i", "self"),
    ("someone really suicidal here", "self"),
])
def test_the_floor_reads_whom_a_crisis_phrase_is_about(text: str, reading: str | None) -> None:
    from handlers.escalation import PhraseFloor

    assert PhraseFloor(EscalationSettings()).read(text) == reading


def test_crisis_scale_maps_both_thresholds() -> None:
    from bot.domain import CRISIS_SURE, crisis_scale

    assert crisis_scale(0.1, 0.1, 0.9) == pytest.approx(0.5)
    assert crisis_scale(0.9, 0.1, 0.9) == pytest.approx(CRISIS_SURE)
    assert crisis_scale(0.5, 0.1, 0.9) == pytest.approx(0.5 + (CRISIS_SURE - 0.5) / 2)
    scores = [crisis_scale(p / 100, 0.1, 0.9) for p in range(101)]
    assert scores == sorted(scores) and scores[0] == 0 and scores[-1] == pytest.approx(1)
    # one threshold (the label-token question, a remote model): it is the crisis threshold itself
    assert crisis_scale(0.9, 0.9) == pytest.approx(CRISIS_SURE) and crisis_scale(0.89, 0.9) < 0.5


def test_the_concern_threshold_cannot_exceed_the_crisis_threshold() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="concern_threshold"):
        EscalationSettings(concern_threshold=0.9, crisis_threshold=0.8)


def test_the_phrase_floor_cannot_be_switched_off_by_configuring_phrases() -> None:
    from handlers.escalation import CrisisFloorStage

    floor = CrisisFloorStage(EscalationSettings(crisis_phrases=["my own phrase"])).floor
    assert floor.matches("I could kill myself tonight") and floor.matches("that was MY OWN PHRASE!")
    assert not floor.matches("想死你了")  # "I miss you so much": 想死 is left to the model


@pytest.mark.parametrize("text", [
    "不 想 活 了",  # spaced out
    "真的不想再活了",  # an adverb inside the phrase
    "考砸了，没脸活下去",
    "I DON’T want to live anymore",  # a curly apostrophe, capitals
    "ｋｉｌｌ　ｍｙｓｅｌｆ",  # full-width letters and space
    "gonna killmyself",
])
def test_the_floor_sees_through_spacing_case_and_width(text: str) -> None:
    from handlers.escalation import PhraseFloor

    assert PhraseFloor(EscalationSettings()).matches(text)


@pytest.mark.parametrize("text", ["this weekend my life is all errands", "skill myself up on python this year"])
def test_the_floors_english_phrases_match_whole_words(text: str) -> None:
    from handlers.escalation import PhraseFloor

    assert not PhraseFloor(EscalationSettings()).matches(text)


async def test_the_floor_reads_pinyin_initials_in_either_case_without_the_model(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, escalation={"model_crisis_check": False})
    turn = await say(app, clock, "又想ZS了，压不住")
    assert turn.crisis and "[critical]" in alerts_sent(sender)[0]
    assert not (await say(app, clock, "今天zs老师表扬我了", who="bob")).crisis  # initials alone are not enough


async def test_group_moods_are_per_speaker(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store, triggers={"all_rooms": True})
    room = {"chat_id": "r@chatroom", "is_group": True}
    await say(app, clock, SAD, who="alice", **room)
    await say(app, clock, SAD, who="bob", **room)
    await say(app, clock, SAD, who="carol", **room)
    assert alerts_sent(sender) == []  # three sad people, not one sad room
    await say(app, clock, SAD, who="alice", **room)
    await say(app, clock, SAD, who="alice", **room)
    [text] = alerts_sent(sender)
    assert "alice" in text and "r@chatroom" in text
    assert {p.contact_id for p in store.moods()} == {"alice", "bob", "carol"}


async def test_muted_contact_raises_no_mood_alert_but_a_crisis_still_alerts(clock: ManualClock, store: Store) -> None:
    app, sender = build(clock, store)
    store.save_state(ContactState("alice", muted_until=clock.now() + timedelta(hours=1)))
    for _ in range(3):
        await say(app, clock, SAD)
    assert alerts_sent(sender) == []
    await say(app, clock, "I want to kill myself")  # its reply says a colleague will reach out
    [text] = alerts_sent(sender)
    assert "[critical]" in text


def test_rolling_score_rule() -> None:
    settings = EscalationSettings(negative_count=3, score_threshold=-0.5)
    now = ManualClock().now()
    points = [
        MoodPoint("a", "a", now, Label.NEGATIVE, 0.9, str(i), "x") for i in range(4)
    ] + [MoodPoint("a", "a", now, Label.NEUTRAL, 0.9, "n", "x")]
    state, severity, reason = decide(ContactState("a"), points, [], False, now, settings)
    assert severity == "warning" and "mood score" in reason and not state.armed


async def test_webhook_and_log_get_the_alert(clock: ManualClock, store: Store, webhook: Any, caplog: pytest.LogCaptureFixture) -> None:
    app, sender = build(clock, store, alerts={"webhook_url": webhook.url, "webhook_secret": "s3cret"})
    for _ in range(3):
        await say(app, clock, SAD)
    assert [body["contact_id"] for body in webhook.received] == ["alice"]
    assert "ALERT #1 [high]" in caplog.text and webhook.bad_signatures == 0


@pytest.fixture
def webhook(tmp_path: Path) -> Any:
    from tests.webhook import Receiver

    receiver = Receiver(secret="s3cret")
    yield receiver
    receiver.close()


class ClosingReadAsFarewell:
    """The crisis head's known fault: a bare closing scored as a farewell."""

    async def crisis_score(self, text: str) -> float:
        return 0.99


async def test_a_closing_is_not_read_by_the_crisis_head_but_a_farewell_is(clock: ManualClock, store: Store) -> None:
    from tests.fakes import FakeEngine

    class Engine(ClosingReadAsFarewell, FakeEngine):
        pass

    app, sender = build(clock, store, Engine())
    assert not (await say(app, clock, "没事了，谢谢你")).crisis
    assert not (await say(app, clock, "thank you, that's all I needed", who="bob")).crisis
    assert alerts_sent(sender) == []
    assert (await say(app, clock, "goodbye everyone, thank you for everything", who="carol")).crisis
