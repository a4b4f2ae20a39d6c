"""Pick how to answer: comfort a negative mood, celebrate a positive one, plain otherwise.

A low-confidence mood is already neutral: the engine applies sentiment.min_confidence, once.
"""

from __future__ import annotations

from bot.domain import Label, Strategy, Turn


class StrategyStage:
    name = "strategy"

    async def __call__(self, turn: Turn) -> None:
        sentiment = turn.sentiment
        if turn.crisis or turn.careful:
            turn.strategy = Strategy.CRISIS
        elif sentiment is None:
            turn.strategy = Strategy.PLAIN
        elif sentiment.label is Label.NEGATIVE:
            turn.strategy = Strategy.COMFORT
        elif sentiment.label is Label.POSITIVE:
            turn.strategy = Strategy.CELEBRATE
        else:
            turn.strategy = Strategy.PLAIN
