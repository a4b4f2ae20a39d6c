"""Run-time state that admin commands change and stages read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class BotState:
    started_at: datetime
    model_name: str
    paused: bool = False  # #pause: moods and alerts go on, auto-replies stop
