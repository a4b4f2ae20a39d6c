"""build_pipeline(): the only place where stage order is declared."""

from __future__ import annotations

from bot.config import Settings
from bot.knowledge import KnowledgeBase
from bot.memory import ConversationMemory
from bot.protocols import AsyncStore, Clock, Engine
from bot.state import BotState
from handlers.base import Pipeline
from handlers.commands import CommandStage
from handlers.escalation import CrisisFloorStage, CrisisStage, EscalationStage
from handlers.filters import FilterStage, SeenIds, TriggerStage, fresh, from_self
from handlers.hygiene import CleanTextStage, NonTextStage
from handlers.knowledge import KnowledgeStage
from handlers.reply import ReplyStage
from handlers.sentiment import SentimentStage
from handlers.strategy import StrategyStage

# the stages that answer; a turn past the queue's bound skips them (its mood is still recorded)
ANSWER_STAGES = frozenset({"knowledge", "reply"})


def build_pipeline(
    settings: Settings, engine: Engine, store: AsyncStore, clock: Clock, state: BotState, memory: ConversationMemory,
) -> Pipeline:
    seen = SeenIds()
    knowledge = KnowledgeBase(settings.knowledge.path) if settings.knowledge.path else None
    return Pipeline(
        [
            # cheap rejections first, so the model only sees messages that may matter
            FilterStage("not_self", ~from_self),  # the bot receives its own replies
            FilterStage("not_duplicate", seen.first_time),
            FilterStage("fresh", fresh(clock, settings.triggers.max_age_s)),
            # non-text before the trigger: an image in a room is never classified
            NonTextStage(settings.triggers),
            CleanTextStage(settings.reply, memory),
            # admin commands before the trigger: they work without the prefix and are never classified
            CommandStage(settings.admin.ids, store, clock, state, settings.schedule.tz,
                         getattr(engine, "status", lambda: "local model in this process"),
                         settings.escalation.score_points),
            TriggerStage(settings.triggers),  # after clean-up: prefixes are matched on clean text
            # the phrase list before any model call: a crisis it names never waits for a slow model
            CrisisFloorStage(settings.escalation),
            SentimentStage(engine),  # every allowed message, replied to or not, gets a mood
            # every message, after the mood pass whose features the crisis head reads
            CrisisStage(engine, store, clock, settings.escalation, settings.crisis.careful_minutes),
            EscalationStage(store.sync, clock, settings.escalation, settings.alerts),
            StrategyStage(),  # after crisis: a crisis overrides the mood
            # FAQ facts for plain answers, or a hand-off instead of a reply the model would have to invent
            KnowledgeStage(knowledge, settings.knowledge, clock, engine),
            ReplyStage(engine, memory, settings.reply, settings.crisis, clock, settings.knowledge.answer_first),
        ]
    )
