"""build_pipeline(): the only place where stage order is declared."""

from __future__ import annotations

from bot.knowledge import KnowledgeBase
from bot.services import Services
from handlers.base import Pipeline
from handlers.commands import CommandStage
from handlers.escalation import CrisisStage, EscalationStage
from handlers.filters import FilterStage, SeenIds, TriggerStage, fresh, from_self
from handlers.hygiene import CleanTextStage, NonTextStage
from handlers.knowledge import KnowledgeStage
from handlers.reply import ReplyStage
from handlers.sentiment import SentimentStage
from handlers.strategy import StrategyStage


def build_pipeline(services: Services) -> Pipeline:
    settings = services.settings
    seen = SeenIds()
    knowledge = KnowledgeBase(settings.knowledge.path) if settings.knowledge.path else None
    return Pipeline(
        [
            # cheap rejections first, so the model only sees messages that may matter
            FilterStage("not_self", ~from_self),  # the bot receives its own replies
            FilterStage("not_duplicate", seen.first_time),
            FilterStage("fresh", fresh(services.clock, settings.triggers.max_age_s)),
            # non-text before the trigger: an image in a room is never classified
            NonTextStage(settings.triggers),
            CleanTextStage(settings.reply),
            # admin commands before the trigger: they work without the prefix and are never classified
            CommandStage(services),
            TriggerStage(settings.triggers),  # after clean-up: prefixes are matched on clean text
            SentimentStage(services.engine),  # every allowed message, replied to or not, gets a mood
            # every message, after the mood pass whose features the crisis head reads
            CrisisStage(services.engine, services.store, services.clock, settings.escalation, settings.crisis.careful_minutes),
            EscalationStage(services.store, services.clock, settings.escalation, settings.alerts),
            StrategyStage(settings.sentiment.min_confidence),  # after crisis: a crisis overrides the mood
            # FAQ facts for plain answers, or a hand-off instead of a reply the model would have to invent
            KnowledgeStage(knowledge, settings.knowledge, services.clock, services.state),
            ReplyStage(services.engine, services.memory, settings.reply, settings.crisis, services.state),
        ]
    )
