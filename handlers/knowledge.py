"""Plain questions get FAQ facts for the reply prompt; a question the FAQ cannot answer is handed off.

Runs after the strategy: comfort, celebration and crisis replies are about the person, not facts,
so only the plain strategy looks anything up. When nothing matches above the threshold and the
message asks for something, the bot says a colleague will answer, records a `handoff` alert for the
admins (chat, digest, webhook) and ends the turn, rather than letting the model invent a fact.

A match at `knowledge.answer_threshold` or above, in the sender's language, also keeps that entry's
answer on the turn: the reply stage sends it, word for word, where the model would hand the question
to a colleague or say it does not know (the model often does, with the fact in its prompt).

Where the engine has a match head (the local model, `model.match_head`), the model judges instead:
the best BM25 entries in the sender's language are each read with the question, and the head's two
thresholds say which entries answer it and which answer may be sent word for word. BM25 alone missed
colloquial wording ("r u open before 9am?" shares one word with the hours entry); bench/NOTES.md,
"An FAQ match head", measures both.
"""

from __future__ import annotations

import asyncio
import logging

from bot.config import KnowledgeSettings
from bot.domain import Strategy, Turn, handoff_alert, reply_to
from bot.errors import EngineError, StopPipeline
from bot.knowledge import Hit, KnowledgeBase, asks, best_in, is_question
from bot.protocols import Clock, Engine
from bot.text import asks_identity, asks_nothing, detect_lang, greets_only, in_lang

log = logging.getLogger(__name__)

# the match head reads this many of the best BM25 entries in the sender's language, one forward pass
# each (about 70 ms here): the right entry was second by BM25 for "what's the street address of the tea house"
MATCH_CANDIDATES = 2
# hits searched for them: the FAQ holds each topic in both languages, so the best few hits may all be
# in the other one
SEARCH_DEPTH = 6


class KnowledgeStage:
    name = "knowledge"

    def __init__(self, base: KnowledgeBase | None, settings: KnowledgeSettings, clock: Clock,
                 engine: Engine | None = None) -> None:
        self.base = base
        self.settings = settings
        self.clock = clock
        self.engine = engine

    def handoff_reply(self, lang: str) -> str:
        return in_lang(self.settings.handoff_reply, lang) or "A colleague will answer you soon."

    def sure_answer(self, hits: list[Hit], lang: str) -> str | None:
        """The answer of the best entry in `lang` whose score reaches `answer_threshold`, or None."""
        bar = self.settings.answer_threshold
        sure = None if bar is None else best_in(hits, lang, bar)
        return sure.entry.answer if sure else None

    async def judged(self, turn: Turn, hits: list[Hit]) -> tuple[list[Hit], str | None] | None:
        """The entries the match head finds answer the message, best first, and the answer it is sure
        of; None where the engine has no match head (or it failed): BM25's thresholds decide."""
        candidates = [hit for hit in hits if detect_lang(hit.entry.question) == turn.lang][:MATCH_CANDIDATES]
        if self.engine is None or not candidates:
            return None
        try:
            verdicts = [await self.engine.faq_match(turn.text, hit.entry.answer, hit.score) for hit in candidates]
        except (EngineError, TimeoutError) as exc:
            log.warning("FAQ match for message %s failed (%s); BM25 scores decide", turn.message.message_id, exc)
            return None
        judged = [(hit, verdict) for hit, verdict in zip(candidates, verdicts) if verdict is not None]
        if len(judged) < len(candidates):
            return None
        judged.sort(key=lambda pair: -pair[1].p)
        log.debug("message %s: FAQ match %s", turn.message.message_id,
                  ", ".join(f"{hit.entry.question!r} {verdict.p:.2f} (BM25 {hit.score:.2f})" for hit, verdict in judged))
        matched = [hit for hit, verdict in judged if verdict.answers][: self.settings.top_k]
        best, verdict = judged[0]
        sure = best.entry.answer if verdict.surely and self.settings.answer_threshold is not None else None
        return matched, sure

    @staticmethod
    def never_handed_off(text: str) -> bool:
        """A greeting ("在吗"), a closing or a question about who the bot is: the reply stage has a line
        for each (greetings, closings, `reply.identity`), and each was handed off with an alert when
        the FAQ matched nothing."""
        return greets_only(text) or asks_nothing(text) or asks_identity(text)

    async def __call__(self, turn: Turn) -> None:
        if self.base is None or turn.strategy is not Strategy.PLAIN or turn.record_only or turn.paused:
            return
        hits = await asyncio.to_thread(self.base.search, turn.text, max(self.settings.top_k, SEARCH_DEPTH))
        judged = await self.judged(turn, hits)
        if judged is not None:
            matched, sure = judged
        else:
            matched = [hit for hit in hits[: self.settings.top_k] if hit.score >= self.settings.threshold]
            # entries in the sender's language first: the reply is in that language (sort is stable)
            matched.sort(key=lambda hit: detect_lang(hit.entry.question) != turn.lang)
            sure = self.sure_answer(matched, turn.lang)
        if matched:
            turn.knowledge = tuple(hit.entry.line() for hit in matched)
            # a request ("订单123坏了，帮我处理一下") needs a person to act even where the policy matches
            turn.faq_answer = sure if asks(turn.text) else None
            log.debug("message %s matched %d FAQ entries (best BM25 %.2f)", turn.message.message_id, len(matched), matched[0].score)
            return
        if not is_question(turn.text) or self.never_handed_off(turn.text):
            return  # small talk: the model answers it without facts
        message = turn.message
        best = f" (best score {hits[0].score:.2f})" if hits else ""
        log.info("hand-off: message %s from %s has no FAQ answer%s", message.message_id, message.sender_id, best)
        turn.reply, turn.reply_source = self.handoff_reply(turn.lang), "handoff"
        turn.outbox.append(reply_to(message, turn.reply))
        turn.alerts.append(handoff_alert(turn, "a question the FAQ does not answer", self.clock.now()))
        raise StopPipeline("hand-off: no FAQ answer")
