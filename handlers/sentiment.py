"""Classify the sender's mood with the model."""

from __future__ import annotations

import asyncio
import logging

from bot.domain import Label, Sentiment, Turn
from bot.errors import EngineError
from bot.protocols import Engine

log = logging.getLogger(__name__)

UNKNOWN = Sentiment(Label.NEUTRAL, 0.0, {"positive": 0.0, "negative": 0.0, "neutral": 0.0})
# a crisis phrase matched: the mood is still read, but the vetted reply and the alert do not wait
# long for a slow model server; unread, the mood of such a message is recorded as negative
FLOOR_MOOD_WAIT_S = 5.0
UNREAD_CRISIS = Sentiment(Label.NEGATIVE, 0.0, {"positive": 0.0, "negative": 0.0, "neutral": 0.0})


class SentimentStage:
    name = "sentiment"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, turn: Turn) -> None:
        try:
            if turn.crisis_words:  # the phrase floor matched (CrisisFloorStage): vetted words wait
                turn.sentiment = await asyncio.wait_for(self.engine.classify(turn.text), FLOOR_MOOD_WAIT_S)
            else:
                turn.sentiment = await self.engine.classify(turn.text)
        except (EngineError, TimeoutError) as exc:  # an unknown mood still gets a safe answer
            log.warning("mood of message %s unknown: %s", turn.message.message_id, exc or "no answer in time")
            turn.sentiment = UNREAD_CRISIS if turn.crisis_words else UNKNOWN
            turn.model_failed = True
