"""Input hygiene: non-text messages, control characters, over-long input, the sender's language."""

from __future__ import annotations

import asyncio

from bot.config import ReplySettings, TriggerSettings
from bot.domain import Turn, reply_to
from bot.errors import StopPipeline
from bot.memory import ConversationMemory
from bot.text import detect_lang, has_letters, sanitize


class NonTextStage:
    """Images, voice, files and system notices are ignored or answered with a configured short text."""

    name = "non_text"

    def __init__(self, settings: TriggerSettings) -> None:
        self.reply = settings.non_text_reply

    async def __call__(self, turn: Turn) -> None:
        message = turn.message
        if message.kind == "text":
            return
        if self.reply and message.kind != "system" and (not message.is_group or message.mentions_me):
            turn.outbox.append(reply_to(message, self.reply))
        raise StopPipeline(f"non-text message ({message.kind})")


class CleanTextStage:
    name = "clean_text"

    def __init__(self, settings: ReplySettings, memory: ConversationMemory | None = None) -> None:
        self.max_chars = settings.max_input_chars
        self.default_language = settings.default_language
        self.memory = memory

    async def __call__(self, turn: Turn) -> None:
        turn.text = sanitize(turn.message.text, self.max_chars)
        if not turn.text:
            raise StopPipeline("empty after clean-up")
        turn.lang = detect_lang(turn.text) if has_letters(turn.text) else await self._chat_language(turn.message.chat_id)

    async def _chat_language(self, chat_id: str) -> str:
        # "👍" or "?" has no language of its own: answer in the one the chat was last written in
        # (detect_lang would call it English, and a Chinese user got "Thank you!")
        history = await asyncio.to_thread(self.memory.history, chat_id) if self.memory else []
        said = [t.text for t in history if t.role == "user" and has_letters(t.text)]
        return detect_lang(said[-1]) if said else self.default_language
