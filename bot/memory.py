"""Per-conversation memory of the last N turns, forgotten after a period of silence."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

from bot.clock import Clock
from bot.domain import ChatTurn


class ConversationMemory:
    def __init__(self, clock: Clock, max_turns: int, ttl_minutes: float, max_chats: int = 10_000) -> None:
        self.clock = clock
        self.max_turns = max_turns
        self.ttl = timedelta(minutes=ttl_minutes)
        self.max_chats = max_chats
        self._chats: OrderedDict[str, tuple[datetime, list[ChatTurn]]] = OrderedDict()

    def history(self, chat_id: str) -> list[ChatTurn]:
        entry = self._chats.get(chat_id)
        if entry is None:
            return []
        updated, turns = entry
        if self.clock.now() - updated > self.ttl:
            del self._chats[chat_id]
            return []
        return list(turns)

    def add(self, chat_id: str, *turns: ChatTurn) -> None:
        kept = (self.history(chat_id) + list(turns))[-self.max_turns * 2 :] if self.max_turns else []
        self._chats[chat_id] = (self.clock.now(), kept)
        self._chats.move_to_end(chat_id)
        while len(self._chats) > self.max_chats:  # bound memory: forget the least recently active chat
            self._chats.popitem(last=False)
