"""Admin commands (#help, #status, #mood, #alerts, #ack, #mute, #pause, #resume).

Only configured admin ids are answered; from anyone else a #-message is an ordinary message,
so a stranger learns nothing about the commands.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Awaitable, Callable

from bot.domain import LABEL_EMOJI, Label, OutboundMessage, Turn
from bot.errors import StopPipeline
from bot.process import process_name
from bot.services import Services

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

    def __init__(self, services: Services) -> None:
        self.services = services
        self.admins = set(services.settings.admin.ids)
        self.commands: dict[str, Callable[[list[str]], Awaitable[str]]] = {
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
        answer = await command(args)
        turn.outbox.append(OutboundMessage(message.chat_id, answer, (message.sender_id,) if message.is_group else ()))
        raise StopPipeline(f"admin command #{name}")

    async def help(self, args: list[str]) -> str:
        return HELP

    async def status(self, args: list[str]) -> str:
        s = self.services
        counts = await asyncio.to_thread(s.store.mood_counts, s.start_of_today())
        open_alerts = await asyncio.to_thread(s.store.open_alerts)
        moods = " ".join(f"{LABEL_EMOJI[label]} {counts.get(label.value, 0)}" for label in Label)
        # with several bot processes on one database, the answer comes from the one that got the message
        backend = getattr(s.engine, "status", None)
        return (
            f"Up {_duration(s.clock.now() - s.state.started_at)} · model: {s.state.model_name}\n"
            f"Today: {sum(counts.values())} messages, {moods}\n"
            f"Open alerts: {len(open_alerts)} · auto-replies: {'paused' if s.state.paused else 'on'}\n"
            f"Process {process_name()} · {backend() if backend else 'local model in this process'}"
        )

    async def mood(self, args: list[str]) -> str:
        if not args:
            return "Usage: #mood <name>"
        store = self.services.store
        found = await asyncio.to_thread(store.find_contact, " ".join(args))
        if found is None:
            return f"No contact called {' '.join(args)!r} has written yet."
        contact_id, name = found
        points = await asyncio.to_thread(store.moods, contact_id, None, 10)
        if not points:
            return f"No moods recorded for {name or contact_id}."
        score = sum(p.score for p in points) / len(points)
        trend = " ".join(LABEL_EMOJI[p.label] for p in points)
        last = points[-1].at.astimezone(self.services.tz).strftime("%Y-%m-%d %H:%M")
        return f"{name or contact_id}: {trend}\nscore {score:+.2f} over {len(points)} messages, last at {last}"

    async def alerts(self, args: list[str]) -> str:
        open_alerts = await asyncio.to_thread(self.services.store.open_alerts)
        if not open_alerts:
            return "No open alerts."
        tz = self.services.tz
        return "\n".join(
            f"#{a.alert_id} [{'handoff' if a.kind == 'handoff' else a.severity}] {a.contact_name or a.contact_id}: {a.reason} "
            f"({a.created_at.astimezone(tz).strftime('%m-%d %H:%M')})"
            for a in open_alerts
        )

    async def ack(self, args: list[str]) -> str:
        if len(args) != 1 or not args[0].lstrip("#").isdigit():
            return "Usage: #ack <id>"
        alert_id = int(args[0].lstrip("#"))
        s = self.services
        done = await asyncio.to_thread(s.store.ack, alert_id, s.clock.now())
        return f"Alert #{alert_id} acknowledged." if done else f"No open alert #{alert_id}."

    async def mute(self, args: list[str]) -> str:
        if len(args) < 2 or not args[-1].isdigit():
            return "Usage: #mute <name> <minutes>"
        minutes, who = int(args[-1]), " ".join(args[:-1])
        s = self.services
        found = await asyncio.to_thread(s.store.find_contact, who)
        if found is None:
            return f"No contact called {who!r} has written yet."
        contact_id, name = found
        await asyncio.to_thread(s.store.mute, contact_id, s.clock.now() + timedelta(minutes=minutes))
        return f"Alerts for {name or contact_id} muted for {minutes} min."

    async def pause(self, args: list[str]) -> str:
        self.services.state.paused = True
        return "Auto-replies paused. Moods and alerts go on. #resume to restart."

    async def resume(self, args: list[str]) -> str:
        self.services.state.paused = False
        return "Auto-replies resumed."
