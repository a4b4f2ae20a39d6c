"""Classify the sender's mood with the model."""

from __future__ import annotations

import logging

from bot.domain import Label, Sentiment, Turn
from bot.errors import EngineError
from bot.protocols import Engine

log = logging.getLogger(__name__)

UNKNOWN = Sentiment(Label.NEUTRAL, 0.0, {"positive": 0.0, "negative": 0.0, "neutral": 0.0})


class SentimentStage:
    name = "sentiment"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, turn: Turn) -> None:
        try:
            turn.sentiment = await self.engine.classify(turn.text)
        except EngineError as exc:  # an unknown mood still gets a plain, safe answer
            log.warning("mood of message %s unknown: %s", turn.message.message_id, exc)
            turn.sentiment = UNKNOWN
