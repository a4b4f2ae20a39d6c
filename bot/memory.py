"""Per-conversation memory of the last N turns, kept in the store so that it survives a restart,
and forgotten after a period of silence."""

from __future__ import annotations

from datetime import timedelta

from bot.clock import Clock
from bot.domain import ChatTurn
from bot.store import Store


class ConversationMemory:
    def __init__(self, store: Store, clock: Clock, max_turns: int, ttl_minutes: float) -> None:
        self.store = store
        self.clock = clock
        self.max_turns = max_turns
        self.ttl = timedelta(minutes=ttl_minutes)

    def history(self, chat_id: str) -> list[ChatTurn]:
        if not self.max_turns:
            return []
        return self.store.memory(chat_id, since=self.clock.now() - self.ttl)[-self.max_turns * 2 :]

    def add(self, chat_id: str, *turns: ChatTurn) -> None:
        if self.max_turns:
            self.store.add_memory(chat_id, self.clock.now(), list(turns), keep=self.max_turns * 2)
