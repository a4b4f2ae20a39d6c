"""Admin commands (#help, #status, #mood, #alerts, #ack, #mute, #pause, #resume).

Only configured admin ids are answered; from anyone else a #-message is an ordinary message,
so a stranger learns nothing about the commands.
"""

from __future__ import annotations

from datetime import timedelta, tzinfo
from typing import Awaitable, Callable

from bot.alerts import alert_line
from bot.clock import start_of_day
from bot.domain import LABEL_EMOJI, Label, Turn, reply_to
from bot.errors import StopPipeline
from bot.process import process_name
from bot.protocols import AsyncStore, Clock
from bot.state import BotState

HELP = (
    "Commands:\n"
    "#status: process, model, uptime, moods, alerts\n"
    "#mood <name>: a contact's recent mood trend\n"
    "#alerts: open alerts\n"
    "#ack <id>: acknowledge an alert\n"
    "#mute <name> <minutes>: no alerts for a contact for a while\n"
    "#pause / #resume: stop or restart auto-replies (moods and alerts go on)"
)


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 1440}d {minutes // 60 % 24}h {minutes % 60}m" if minutes >= 1440 else f"{minutes // 60}h {minutes % 60}m"


class CommandStage:
    name = "commands"

    def __init__(self, admin_ids: list[str], store: AsyncStore, clock: Clock, state: BotState, tz: tzinfo | None,
                 backend: Callable[[], str] = lambda: "local model in this process") -> None:
        self.admins = set(admin_ids)
        self.backend = backend  # one line on where the model runs and whether it answers (#status)
        self.store = store
        self.clock = clock
        self.state = state
        self.tz = tz
        self.commands: dict[str, Callable[[Turn, list[str]], Awaitable[str]]] = {
            "help": self.help, "status": self.status, "mood": self.mood, "alerts": self.alerts,
            "ack": self.ack, "mute": self.mute, "pause": self.pause, "resume": self.resume,
        }

    async def __call__(self, turn: Turn) -> None:
        message = turn.message
        if message.sender_id not in self.admins or not turn.text.startswith("#"):
            return
        name, *args = turn.text[1:].split() or [""]
        command = self.commands.get(name.lower())
        if command is None:
            return  # '#bot hello' and other #-text from an admin is an ordinary message
        answer = await command(turn, args)
        turn.outbox.append(reply_to(message, answer))
        raise StopPipeline(f"admin command #{name}")

    async def help(self, turn: Turn, args: list[str]) -> str:
        return HELP

    async def status(self, turn: Turn, args: list[str]) -> str:
        counts = await self.store.mood_counts(start_of_day(self.clock.now(), self.tz))
        open_alerts = await self.store.open_alerts()
        moods = " ".join(f"{LABEL_EMOJI[label]} {counts.get(label.value, 0)}" for label in Label)
        # with several bot processes on one database, the answer comes from the one that got the message
        return (
            f"Up {_duration(self.clock.now() - self.state.started_at)} · model: {self.state.model_name}\n"
            f"Today: {sum(counts.values())} messages, {moods}\n"
            f"Open alerts: {len(open_alerts)} · auto-replies: {'paused' if turn.paused else 'on'}\n"
            f"Process {process_name()} · {self.backend()}"
        )

    async def mood(self, turn: Turn, args: list[str]) -> str:
        if not args:
            return "Usage: #mood <name>"
        found = await self.store.find_contact(" ".join(args))
        if found is None:
            return f"No contact called {' '.join(args)!r} has written yet."
        contact_id, name = found
        points = await self.store.moods(contact_id, None, 10)
        if not points:
            return f"No moods recorded for {name or contact_id}."
        score = sum(p.score for p in points) / len(points)
        trend = " ".join(LABEL_EMOJI[p.label] for p in points)
        last = points[-1].at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")
        return f"{name or contact_id}: {trend}\nscore {score:+.2f} over {len(points)} messages, last at {last}"

    async def alerts(self, turn: Turn, args: list[str]) -> str:
        open_alerts = await self.store.open_alerts()
        if not open_alerts:
            return "No open alerts."
        return "\n".join(alert_line(a, self.tz, when=True) for a in open_alerts)

    async def ack(self, turn: Turn, args: list[str]) -> str:
        if len(args) != 1 or not args[0].lstrip("#").isdigit():
            return "Usage: #ack <id>"
        alert_id = int(args[0].lstrip("#"))
        done = await self.store.ack(alert_id, self.clock.now())
        return f"Alert #{alert_id} acknowledged." if done else f"No open alert #{alert_id}."

    async def mute(self, turn: Turn, args: list[str]) -> str:
        if len(args) < 2 or not args[-1].isdigit():
            return "Usage: #mute <name> <minutes>"
        minutes, who = int(args[-1]), " ".join(args[:-1])
        found = await self.store.find_contact(who)
        if found is None:
            return f"No contact called {who!r} has written yet."
        contact_id, name = found
        await self.store.mute(contact_id, self.clock.now() + timedelta(minutes=minutes))
        return f"Alerts for {name or contact_id} muted for {minutes} min."

    async def pause(self, turn: Turn, args: list[str]) -> str:
        await self.state.set_paused(True)
        return "Auto-replies paused. Moods and alerts go on. #resume to restart."

    async def resume(self, turn: Turn, args: list[str]) -> str:
        await self.state.set_paused(False)
        return "Auto-replies resumed."
