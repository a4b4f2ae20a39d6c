"""build_pipeline(): the only place where stage order is declared."""

from __future__ import annotations

from bot.clock import Clock
from bot.config import Settings
from bot.memory import ConversationMemory
from handlers.base import Pipeline
from handlers.engine_protocol import Engine
from handlers.filters import FilterStage, SeenIds, TriggerStage, fresh, from_self
from handlers.hygiene import CleanTextStage, NonTextStage
from handlers.reply import ReplyStage
from handlers.sentiment import SentimentStage
from handlers.strategy import StrategyStage


def build_pipeline(settings: Settings, engine: Engine, memory: ConversationMemory, clock: Clock) -> Pipeline:
    seen = SeenIds()
    return Pipeline(
        [
            # cheap rejections first, so the model only sees messages that may matter
            FilterStage("not_self", ~from_self),  # the bot receives its own replies
            FilterStage("not_duplicate", seen.first_time),
            FilterStage("fresh", fresh(clock, settings.triggers.max_age_s)),
            # non-text before the trigger: an image in a room is never classified
            NonTextStage(settings.triggers),
            CleanTextStage(settings.reply),
            TriggerStage(settings.triggers),  # after clean-up: prefixes are matched on clean text
            SentimentStage(engine),  # every allowed message, replied to or not, gets a mood
            StrategyStage(settings.sentiment.min_confidence),
            ReplyStage(engine, memory, settings.reply),
        ]
    )
