"""Pick how to answer: comfort a negative mood, celebrate a positive one, plain otherwise."""

from __future__ import annotations

from bot.domain import Label, Strategy, Turn


class StrategyStage:
    name = "strategy"

    def __init__(self, min_confidence: float) -> None:
        self.min_confidence = min_confidence

    async def __call__(self, turn: Turn) -> None:
        sentiment = turn.sentiment
        if turn.crisis or turn.careful:
            turn.strategy = Strategy.CRISIS
        elif sentiment is None or sentiment.confidence < self.min_confidence:
            turn.strategy = Strategy.PLAIN
        elif sentiment.label is Label.NEGATIVE:
            turn.strategy = Strategy.COMFORT
        elif sentiment.label is Label.POSITIVE:
            turn.strategy = Strategy.CELEBRATE
        else:
            turn.strategy = Strategy.PLAIN
