"""Generate the reply with the same model, in the sender's language, guard it, and put it in the outbox.

A crisis is never answered by the model: the vetted `crisis.reply` goes out, and `crisis.follow_up`
while the contact stays in careful mode; crisis words said of another person ("我朋友总说不想活了")
get `crisis.someone_else`, how to help them. Every generated reply passes the guard (bot/guard.py); a
rejected one is generated once more with other settings, then replaced by a curated line. When the
model does not answer at all, `reply.unavailable` goes out instead. A question about who the bot is
(a person? its name?) gets `reply.identity`, never a generated claim to be someone.

A question that the FAQ answers surely (`turn.faq_answer`, handlers/knowledge.py) gets the entry's
answer, word for word, and nothing is generated (`knowledge.answer_first`): with the facts in its
prompt the model still said "yes" where they meant "no". With `answer_first: false` the answer replaces
only a generated hand-off, a denial, a curated line or the unavailable line: the model often says it
has no information with the fact in its prompt, and a supervisor would be paged for a question the
FAQ answers.

A reply that tells the sender a colleague will follow up (the model's hand-off, a curated line, the
unavailable line) records a `handoff` alert, so that the promise reaches a person.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from typing import Callable, Sequence

from bot import guard, prompts
from bot.config import CrisisSettings, ReplySettings
from bot.domain import ChatTurn, Label, ReplySource, Strategy, Turn, handoff_alert, reply_to
from bot.errors import EngineError
from bot.memory import ConversationMemory
from bot.protocols import Clock, Engine
from bot.text import asks_identity, asks_nothing, closes, greets_only, in_lang

log = logging.getLogger(__name__)

ATTEMPTS = 2  # the first reply, then one more with other settings
# rejections where the reply less the sentences at fault may still be sent
SALVAGE: dict[str, Callable[[str], str]] = {"needless hand-off": guard.without_handoff,
                                            "invented offer": guard.without_offer}


def last_reply(history: list[ChatTurn]) -> str | None:
    """The bot's last reply before the message being answered (the last turn of `history`)."""
    return next((t.text for t in reversed(history[:-1]) if t.role == "assistant"), None)


class ReplyStage:
    name = "reply"

    def __init__(self, engine: Engine, memory: ConversationMemory, settings: ReplySettings,
                 crisis: CrisisSettings, clock: Clock, answer_first: bool = True) -> None:
        self.engine = engine
        self.answer_first = answer_first  # knowledge.answer_first
        self.clock = clock
        self.memory = memory
        self.settings = settings
        self.crisis = crisis
        self.rejections: Counter[str] = Counter()  # reason -> count, for the benchmark and #status
        self.fallbacks = 0
        self.lines_used: Counter[str] = Counter()  # curated line -> times sent by this process

    def fallback(self, strategy: Strategy, lang: str, key: str, previous: str | None, message: str = "",
                 knowledge: Sequence[str] = (), person: bool | None = None, after_unhappy: bool = False) -> str:
        """A curated line for this strategy and language, the one sent least, never the previous reply;
        a greeting ("在吗", "hi") gets a greeting line and a message that asks for nothing (thanks,
        goodbye) a closing line, a gentle one `after_unhappy`, never a hand-off; a question only a person
        can answer (guard.business_question, guard.how_to_question) or one that the hand-off head says
        needs a person (`person` True) a line that hands it to one, and one that the head says needs no
        person (`person` False) a line that does not."""
        fallbacks = self.settings.fallbacks
        closing = (after_unhappy and fallbacks.get("closing_gentle")) or fallbacks.get("closing")
        special = ((greets_only(message) and fallbacks.get("greeting"))
                   or (asks_nothing(message) and closing))
        table = special or fallbacks.get(strategy.value) or fallbacks.get("plain") or {}
        lines = table.get(lang) or table.get("en") or ["…"]
        if person or (not knowledge and (guard.business_question(message, lang) or guard.how_to_question(message))):
            lines = [line for line in lines if guard.HANDOFF_PROMISE.search(line)] or lines
        elif guard.needless_handoff(message, lang, person):
            lines = [line for line in lines if not guard.HANDOFF_PROMISE.search(line)] or lines
        # the line this process has sent least, from a place picked by the message: the same canned
        # line to many contacts reads as a machine
        start = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        order = [str(lines[(start + i) % len(lines)]) for i in range(len(lines))]
        line = min((line for line in order if line != previous), key=lambda line: self.lines_used[line], default=order[0])
        self.lines_used[line] += 1
        return line

    async def _generate(self, turn: Turn, history: list[ChatTurn], strategy: Strategy, system: str,
                        attempt: int) -> str:
        try:
            return await self.engine.generate(history, strategy, turn.lang, system, turn.knowledge, attempt=attempt)
        except EngineError as exc:
            log.warning("reply to message %s failed: %s", turn.message.message_id, exc)
            turn.model_failed = True  # no second attempt: it would wait for the same failure
            return ""

    def scripted(self, turn: Turn) -> str | None:
        """The configured answer to a question about who the bot is, or None: never generated."""
        identity = in_lang(self.settings.identity, turn.lang)
        return identity if identity and asks_identity(turn.text) else None

    def closing(self, turn: Turn, history: list[ChatTurn]) -> str | None:
        """A curated closing line (`reply.fallbacks.closing`) for a message that only thanks,
        acknowledges or says goodbye, or None: the model, with nothing to answer, wrote "感谢您的关注，
        我马上回复您。" to "好的，谢谢啦" and "Sorry for the confusion." to "ok, bye" (bench/NOTES.md,
        "Closing lines for closings")."""
        if not (self.settings.closing_lines and closes(turn.text) and self.settings.fallbacks.get("closing")):
            return None
        return self.fallback(Strategy.PLAIN, turn.lang, turn.message.message_id + turn.text, last_reply(history),
                             turn.text, after_unhappy=turn.previous_mood is Label.NEGATIVE)

    async def guarded_reply(self, turn: Turn, history: list[ChatTurn], strategy: Strategy) -> str | None:
        """The first generated reply that passes the guard, shaped (`_shaped`), or None."""
        try:  # the message's features are cached from classify(): the head costs no forward pass
            turn.needs_person = await self.engine.needs_person(turn.text)
        except EngineError as exc:
            log.warning("hand-off head on message %s failed: %s", turn.message.message_id, exc)
        system = prompts.system_prompt(strategy, turn.lang, dict(self.settings.prompts))
        previous = last_reply(history)
        sources = [t.text for t in history[:-1]] + list(turn.knowledge)

        def why_not(text: str) -> str | None:
            return guard.check(text, turn.text, turn.lang, previous, sources, turn.knowledge, turn.needs_person)

        def passes(text: str) -> bool:
            return why_not(text) is None

        for attempt in range(ATTEMPTS):
            reply = await self._generate(turn, history, strategy, system, attempt)
            if turn.model_failed:
                return None
            reason = why_not(reply)
            if reason is None:
                return self._shaped(reply, turn, strategy, passes)
            self.rejections[reason.split(":")[0]] += 1
            log.debug("reply to message %s rejected (%s): %r", turn.message.message_id, reason, reply)
            trim = SALVAGE.get(reason)
            if reason == "needless hand-off" and turn.faq_answer:
                trim = None  # the FAQ's answer says more than what is left ("Thanks for asking!")
            if trim is not None:  # the rest of the reply may still be worth sending
                rest = trim(reply)
                if rest and passes(rest):
                    log.debug("reply to message %s sent without its %s: %r", turn.message.message_id, reason, rest)
                    return self._shaped(rest, turn, strategy, passes)
        return None

    def _shaped(self, reply: str, turn: Turn, strategy: Strategy, passes: Callable[[str], bool]) -> str:
        """A comfort or celebration reply without its closing question, in the languages of
        `reply.drop_closing_question`, where what is left still passes the guard."""
        if turn.lang not in self.settings.drop_closing_question or strategy not in (Strategy.COMFORT, Strategy.CELEBRATE):
            return reply
        shorter = guard.without_closing_question(reply)
        return shorter if shorter != reply and passes(shorter) else reply

    async def compose(self, turn: Turn, history: list[ChatTurn], strategy: Strategy) -> tuple[str, ReplySource]:
        """The reply to a message that is no crisis, and where it came from: "scripted" (`reply.identity`, or
        a closing line for a message that only thanks or says goodbye),
        "generated" (passed the guard), "faq" (the answer of an FAQ entry matched surely: in place of
        generating, or with `answer_first` off where the model's reply would hand the question off or
        there is none), "unavailable" (the model did not
        answer) or "fallback" (a curated line). The benchmark calls this too, so that it measures the
        path that is served."""
        if (scripted := self.scripted(turn)) is not None:
            return scripted, "scripted"
        if (closing := self.closing(turn, history)) is not None:
            return closing, "scripted"
        # not the same answer twice in a row: asked again, it did not help, and a person should look (the
        # hand-off head cannot veto it: it says a person is needed for most questions about the business,
        # 67 of the 114 validation questions of bench/FAQ_validation.md, as it never sees the FAQ)
        faq = turn.faq_answer if turn.faq_answer != last_reply(history) else None
        if faq and self.answer_first:
            return faq, "faq"
        generated = None if turn.model_failed else await self.guarded_reply(turn, history, strategy)
        if generated is not None and not (faq and guard.hands_off(generated)):
            return generated, "generated"
        if faq:
            log.debug("message %s answered from the FAQ (the model's reply: %r)", turn.message.message_id, generated)
            return faq, "faq"
        if turn.model_failed:
            return in_lang(self.settings.unavailable, turn.lang), "unavailable"
        self.fallbacks += 1
        line = self.fallback(strategy, turn.lang, turn.message.message_id + turn.text, last_reply(history), turn.text,
                             turn.knowledge, turn.needs_person)
        return line, "fallback"

    async def __call__(self, turn: Turn) -> None:
        if turn.record_only or (turn.paused and not turn.crisis_words):
            return  # vetted crisis words are always answered, even while auto-replies are paused
        strategy = turn.strategy or Strategy.PLAIN
        message = turn.message
        user_turn = ChatTurn("user", turn.text)
        history = await asyncio.to_thread(self.memory.history, message.chat_id) + [user_turn]
        if strategy is Strategy.CRISIS:
            reply = self.crisis.text("reply" if turn.crisis else "follow_up", turn.lang)
            turn.reply_source = "vetted"
        else:
            # crisis words about someone else, or a negative message that may signal a crisis: vetted
            # words, and the escalation stage has alerted a person already (no hand-off alert on top)
            checking_in = turn.concern and strategy is Strategy.COMFORT
            vetted = checking_in or turn.someone_else
            if turn.someone_else:
                reply, turn.reply_source = self.crisis.text("someone_else", turn.lang), "vetted"
            elif checking_in:
                reply, turn.reply_source = self.crisis.text("check_in", turn.lang), "vetted"
            else:
                reply, turn.reply_source = await self.compose(turn, history, strategy)
            # memory keeps what was said, curated lines included, so the next reply can differ from it
            await asyncio.to_thread(self.memory.add, message.chat_id, user_turn, ChatTurn("assistant", reply))
            # the FAQ's own words may name "our team" or "人工客服" without promising anything
            if not vetted and turn.reply_source != "faq" and guard.HANDOFF_PROMISE.search(reply):
                self._hand_off(turn, "the model did not answer" if turn.model_failed else "the bot said a colleague would follow up")
        turn.reply = reply
        turn.outbox.append(reply_to(message, reply))

    def _hand_off(self, turn: Turn, reason: str) -> None:
        message = turn.message
        log.info("hand-off: message %s from %s (%s)", message.message_id, message.sender_id, reason)
        turn.alerts.append(handoff_alert(turn, reason, self.clock.now()))
