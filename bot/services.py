"""The services that stages and jobs share, built once by the Application and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from bot.clock import Clock
from bot.config import Settings
from bot.memory import ConversationMemory
from bot.state import BotState
from bot.store import Store
from handlers.engine_protocol import Engine


@dataclass
class Services:
    settings: Settings
    engine: Engine
    store: Store
    clock: Clock
    state: BotState
    memory: ConversationMemory

    @property
    def tz(self) -> tzinfo | None:
        name = self.settings.schedule.timezone
        return ZoneInfo(name) if name else None

    def start_of_today(self) -> datetime:
        local = self.clock.now().astimezone(self.tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
