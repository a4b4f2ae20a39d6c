"""The stage protocol and the pipeline runner, which owns the only broad error boundary."""

from __future__ import annotations

import logging
from typing import Container, Protocol, Sequence

from bot.domain import Turn
from bot.errors import StopPipeline

log = logging.getLogger(__name__)


class Stage(Protocol):
    name: str

    async def __call__(self, turn: Turn) -> None: ...


class Pipeline:
    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)
        self.errors = 0

    async def run(self, turn: Turn, skip: Container[str] = ()) -> Turn:
        """Run the stages in order, leaving out those named in `skip` (an overloaded turn skips the reply)."""
        for stage in self.stages:
            if stage.name in skip:
                continue
            try:
                await stage(turn)
            except StopPipeline as stop:
                log.debug("message %s stopped at %s: %s", turn.message.message_id, stage.name, stop.reason)
                turn.stopped = stop.reason
                break
            except Exception:  # the one error boundary: log with traceback, keep serving other messages
                self.errors += 1
                log.exception("stage %s failed on message %s", stage.name, turn.message.message_id)
                turn.stopped = f"error in {stage.name}"
                break
        return turn
