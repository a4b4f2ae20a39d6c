"""Input hygiene: non-text messages, control characters, over-long input, the sender's language."""

from __future__ import annotations

from bot.config import ReplySettings, TriggerSettings
from bot.domain import Turn, reply_to
from bot.errors import StopPipeline
from bot.text import detect_lang, sanitize


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

    def __init__(self, settings: ReplySettings) -> None:
        self.max_chars = settings.max_input_chars

    async def __call__(self, turn: Turn) -> None:
        turn.text = sanitize(turn.message.text, self.max_chars)
        if not turn.text:
            raise StopPipeline("empty after clean-up")
        turn.lang = detect_lang(turn.text)
