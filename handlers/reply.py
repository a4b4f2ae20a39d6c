"""Generate the reply with the same model, in the sender's language, and put it in the outbox."""

from __future__ import annotations

import asyncio
import logging

from bot import prompts
from bot.config import ReplySettings
from bot.domain import ChatTurn, Strategy, Turn, reply_to
from bot.errors import EngineError
from bot.memory import ConversationMemory
from bot.protocols import Engine
from bot.text import detect_lang

log = logging.getLogger(__name__)


class ReplyStage:
    name = "reply"

    def __init__(self, engine: Engine, memory: ConversationMemory, settings: ReplySettings) -> None:
        self.engine = engine
        self.memory = memory
        self.settings = settings

    def fallback(self, lang: str) -> str:
        return self.settings.fallback.get(lang) or self.settings.fallback.get("en") or "Sorry, please say that again."

    async def _generate(self, history: list[ChatTurn], strategy: Strategy, lang: str, system: str, mid: str, knowledge: tuple[str, ...] = ()) -> str:
        try:
            # knowledge only when there is some: engines without the keyword keep working meanwhile
            return await self.engine.generate(history, strategy, lang, system, **({"knowledge": knowledge} if knowledge else {}))
        except EngineError as exc:
            log.warning("reply to message %s fell back: %s", mid, exc)
            return ""

    async def __call__(self, turn: Turn) -> None:
        if turn.record_only or (turn.paused and not turn.crisis):
            return  # a crisis is always answered, even while auto-replies are paused
        strategy = turn.strategy or Strategy.PLAIN
        message = turn.message
        user_turn = ChatTurn("user", turn.text)
        history = await asyncio.to_thread(self.memory.history, message.chat_id) + [user_turn]
        system = prompts.system_prompt(strategy, turn.lang, dict(self.settings.prompts))
        reply = await self._generate(history, strategy, turn.lang, system, message.message_id, turn.knowledge)
        if reply and detect_lang(reply) != turn.lang and len(history) > 1:
            # a small model follows an earlier turn's language; answer this message on its own
            reply = await self._generate([user_turn], strategy, turn.lang, system, message.message_id, turn.knowledge)
        if detect_lang(reply) != turn.lang:
            reply = ""
        if not reply.strip():
            reply = self.fallback(turn.lang)
        else:
            await asyncio.to_thread(self.memory.add, message.chat_id, user_turn, ChatTurn("assistant", reply))
        turn.reply = reply
        turn.outbox.append(reply_to(message, reply))
