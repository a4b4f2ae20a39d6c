"""What the stages need from the model: the real AsyncEngine or a test fake."""

from __future__ import annotations

from typing import Protocol, Sequence

from bot.domain import ChatTurn, Sentiment, Strategy


class Engine(Protocol):
    name: str

    async def classify(self, text: str) -> Sentiment: ...

    async def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]: ...

    async def crisis_score(self, text: str) -> float: ...

    async def generate(
        self,
        history: list[ChatTurn],
        strategy: Strategy,
        lang: str,
        system: str,
        knowledge: Sequence[str] = (),
        attempt: int = 0,
    ) -> str: ...
