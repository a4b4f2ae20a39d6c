"""Test doubles: message factory, a scripted fake engine and a recording sender."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timezone
from typing import Any, Sequence

from bot.domain import ChatTurn, FaqMatch, InboundMessage, Label, OutboundMessage, Sentiment, Strategy
from bot.errors import EngineError, EngineTimeout

_ids = itertools.count(1)


def make_message(text: str = "hello", **fields: object) -> InboundMessage:
    defaults: dict[str, object] = {
        "message_id": f"m{next(_ids)}",
        "chat_id": "alice",
        "sender_id": "alice",
        "sender_name": "Alice",
        "text": text,
        "sent_at": datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc),
    }
    defaults.update(fields)
    return InboundMessage(**defaults)  # type: ignore[arg-type]


class FakeEngine:
    """Labels by keyword; replies name the strategy so tests can check which one was used."""

    name = "fake"

    def __init__(self, fail: Exception | None = None, reply: str | None = None, delay: float = 0.0,
                 person: bool | None = None, matches: dict[str, float] | None = None) -> None:
        self.fail = fail
        self.person = person  # what needs_person() says of every message (None: no hand-off head)
        # the match head's probability by FAQ answer (answers it from 0.25, surely from 0.5; the shipped head
        # has both at 0.5);
        # None: no match head
        self.matches = matches
        self.matched: list[tuple[str, str]] = []
        self.reply = reply
        self.delay = delay
        self.generated: list[tuple[list[ChatTurn], Strategy, str]] = []
        self.classified: list[str] = []
        self.knowledge: list[tuple[str, ...]] = []  # what each generate() call was given

    def _label(self, text: str) -> Sentiment:
        lowered = text.lower()
        if any(w in lowered for w in ("sad", "awful", "难过", "低落", "糟糕")):
            return Sentiment(Label.NEGATIVE, 0.9, {"positive": 0.05, "negative": 0.9, "neutral": 0.05})
        if any(w in lowered for w in ("great", "happy", "开心", "太棒")):
            return Sentiment(Label.POSITIVE, 0.9, {"positive": 0.9, "negative": 0.05, "neutral": 0.05})
        if "unsure" in lowered:  # a weak mood: the engine (not the strategy) makes it neutral
            return Sentiment(Label.NEUTRAL, 0.4, {"positive": 0.3, "negative": 0.3, "neutral": 0.4})
        return Sentiment(Label.NEUTRAL, 0.8, {"positive": 0.1, "negative": 0.1, "neutral": 0.8})

    async def classify(self, text: str) -> Sentiment:
        if isinstance(self.fail, EngineError):
            raise self.fail
        self.classified.append(text)
        return self._label(text)

    async def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        return [await self.classify(t) for t in texts]

    async def crisis_score(self, text: str) -> float:
        if isinstance(self.fail, EngineError):
            raise self.fail
        lowered = text.lower()
        if "end it all" in lowered:
            return 0.95
        return 0.6 if "nobody would notice" in lowered else 0.05  # a possible crisis (between the thresholds)

    async def needs_person(self, text: str) -> bool | None:
        return self.person

    async def faq_match(self, question: str, answer: str, score: float) -> FaqMatch | None:
        if self.matches is None:
            return None
        self.matched.append((question, answer))
        p = self.matches.get(answer, 0.0)
        return FaqMatch(p, p >= 0.25, p >= 0.5)

    def close(self) -> None:
        self.closed = True

    async def generate(
        self,
        history: list[ChatTurn],
        strategy: Strategy,
        lang: str,
        system: str,
        knowledge: Sequence[str] = (),
        attempt: int = 0,
    ) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        if attempt == 0:  # `generated` lists the replies asked for, not the guard's second tries
            self.generated.append((history, strategy, lang))
            self.knowledge.append(tuple(knowledge))
        if self.reply is not None:
            return self.reply
        if knowledge:  # answer from the first FAQ entry, as a model told to use it would
            return f"[{strategy.value}] " + knowledge[0].split("A: ", 1)[-1]
        if attempt:  # asked again (the guard refused the first, e.g. as a repeat): say something else
            return f"[{strategy.value}] 再多说一点吧。" if lang == "zh" else f"[{strategy.value}] Tell me more."
        return f"[{strategy.value}] 好的，我明白。" if lang == "zh" else f"[{strategy.value}] I hear you."


class TimeoutEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__(fail=EngineTimeout("too slow"))


class RecordingSender:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[OutboundMessage] = []
        self.failures = failures
        self.attempts = 0

    async def send(self, message: OutboundMessage) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("gateway hiccup")
        self.sent.append(message)


class ScriptedEngine(FakeEngine):
    """Generates the given replies in turn, recording each attempt's number."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__()
        self.replies = replies
        self.attempts: list[int] = []

    async def generate(self, history, strategy, lang, system, knowledge=(), attempt=0):  # type: ignore[no-untyped-def]
        self.attempts.append(attempt)
        return self.replies.pop(0)


def build_app(clock: Any, db: Any, engine: Any = None, **sections: Any) -> tuple[Any, RecordingSender]:
    """An Application on a fake engine with admin 'boss', no scheduler, and a recording sender."""
    from bot.app import Application
    from bot.config import Settings

    data = {"admin": {"ids": ["boss"]}, "schedule": {"enabled": False}, **sections}
    sender = RecordingSender()
    app = Application(Settings.model_validate(data), engine or FakeEngine(), sender, clock, db)
    return app, sender


def speaker(app: Any, sender: RecordingSender, clock: Any) -> Any:
    """`await say(text, who)`: one message through the app 30 s after the last; returns what went out."""

    async def say(text: str, who: str = "alice") -> list[str]:
        clock.advance(seconds=30)
        before = len(sender.sent)
        await app.process(make_message(text, sender_id=who, chat_id=who, sent_at=clock.now()))
        return [m.text for m in sender.sent[before:]]

    return say
