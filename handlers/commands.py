"""Admin commands (#help, #status, #mood, #alerts, #ack, #mute, #pause, #resume).

Only configured admin ids are answered; from anyone else a #-message is an ordinary message,
so a stranger learns nothing about the commands. A command typed in a room is answered in the
admin's private chat: alerts and moods are not for the room's other members. What a command
changes (#ack, #mute, #unmute, #pause, #resume) is written to the audit table, as the dashboard's
actions are.
"""

from __future__ import annotations

from datetime import timedelta, tzinfo
from typing import Awaitable, Callable

from bot.alerts import alert_line
from bot.clock import start_of_day
from bot.domain import (
    LABEL_EMOJI,
    MAX_MUTE_MINUTES,
    SEVERITY_ORDER,
    Label,
    OutboundMessage,
    Turn,
    mute_detail,
    reply_to,
    rolling_score,
)
from bot.errors import StopPipeline
from bot.process import process_name
from bot.protocols import AsyncStore, Clock
from bot.state import BotState
from bot.text import whole_number

HELP = (
    "Commands (<who>: a name or an id):\n"
    "#status: process, model, uptime, moods, alerts\n"
    "#mood <who>: recent mood trend\n"
    "#alerts: open alerts\n"
    "#ack <id>: acknowledge an alert\n"
    "#mute <who> <minutes> / #unmute <who>: mood alerts off / on\n"
    "#pause / #resume: auto-replies off / on (moods and alerts go on)"
)


ALERTS_LISTED = 20  # #alerts lists the most urgent; the dashboard has them all


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 1440}d {minutes // 60 % 24}h {minutes % 60}m" if minutes >= 1440 else f"{minutes // 60}h {minutes % 60}m"


class CommandStage:
    name = "commands"

    def __init__(self, admin_ids: list[str], store: AsyncStore, clock: Clock, state: BotState, tz: tzinfo | None,
                 backend: Callable[[], str] = lambda: "local model in this process", score_points: int = 8) -> None:
        self.admins = set(admin_ids)
        self.score_points = score_points  # the escalation's rolling score, so #mood and the dashboard agree
        self.backend = backend  # one line on where the model runs and whether it answers (#status)
        self.store = store
        self.clock = clock
        self.state = state
        self.tz = tz
        self.commands: dict[str, Callable[[Turn, list[str]], Awaitable[str]]] = {
            "help": self.help, "status": self.status, "mood": self.mood, "alerts": self.alerts,
            "ack": self.ack, "mute": self.mute, "unmute": self.unmute, "pause": self.pause, "resume": self.resume,
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
        # in a room, the answer goes to the admin alone
        turn.outbox.append(OutboundMessage(message.sender_id, answer) if message.is_group else reply_to(message, answer))
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

    async def _contact(self, who: str, exact: bool) -> tuple[tuple[str, str] | None, str]:
        """The one contact `who` names, or None and the answer that says why (none, or which ones)."""
        found = await self.store.find_contacts(who)
        if not found:
            return None, f"No contact called {who!r} has written yet."
        wanted = who.strip().lstrip("@").lower()
        if len(found) == 1 and (not exact or wanted in (found[0][0].lower(), found[0][1].lower())):
            return found[0], ""
        listed = "\n".join(f"{name or cid} · {cid}" for cid, name in found)
        return None, f"{who!r} could be any of these; give the id:\n{listed}"

    async def _record(self, turn: Turn, action: str, target: str = "", detail: str = "") -> None:
        actor = f"chat:{turn.message.sender_name or turn.message.sender_id}"
        await self.store.record_action(self.clock.now(), actor, action, target, detail)

    async def mood(self, turn: Turn, args: list[str]) -> str:
        if not args:
            return "Usage: #mood <name or id>"
        found, why = await self._contact(" ".join(args), exact=False)
        if found is None:
            return why
        contact_id, name = found
        points = await self.store.moods(contact_id, None, self.score_points)
        if not points:
            return f"No moods recorded for {name or contact_id}."
        score = rolling_score(points)
        trend = " ".join(LABEL_EMOJI[p.label] for p in points)
        last = points[-1].at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")
        return f"{name or contact_id} ({contact_id}): {trend}\nscore {score:+.2f} over {len(points)} messages, last at {last}"

    async def alerts(self, turn: Turn, args: list[str]) -> str:
        open_alerts = sorted(await self.store.open_alerts(), key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), a.created_at))
        if not open_alerts:
            return "No open alerts."
        lines = [alert_line(a, self.tz, when=True) for a in open_alerts[:ALERTS_LISTED]]
        if len(open_alerts) > ALERTS_LISTED:
            lines.append(f"... and {len(open_alerts) - ALERTS_LISTED} more (the dashboard lists them all)")
        return "\n".join(lines)

    async def ack(self, turn: Turn, args: list[str]) -> str:
        alert_id = whole_number(args[0].lstrip("#")) if len(args) == 1 else None
        if alert_id is None:
            return "Usage: #ack <id>"
        if not await self.store.ack(alert_id, self.clock.now()):
            return f"No open alert #{alert_id} (already acknowledged, or no such id)."
        await self._record(turn, "ack", str(alert_id))
        return f"Alert #{alert_id} acknowledged."

    async def mute(self, turn: Turn, args: list[str]) -> str:
        minutes = whole_number(args[-1]) if len(args) >= 2 else None
        if minutes is None or not 1 <= minutes <= MAX_MUTE_MINUTES:
            return f"Usage: #mute <name or id> <minutes, 1 to {MAX_MUTE_MINUTES}>"
        found, why = await self._contact(" ".join(args[:-1]), exact=True)
        if found is None:
            return why
        contact_id, name = found
        await self.store.mute(contact_id, self.clock.now() + timedelta(minutes=minutes))
        await self._record(turn, "mute", contact_id, mute_detail(minutes))
        return f"Mood alerts for {name or contact_id} ({contact_id}) muted for {minutes} min. Crisis alerts still come."

    async def unmute(self, turn: Turn, args: list[str]) -> str:
        if not args:
            return "Usage: #unmute <name or id>"
        found, why = await self._contact(" ".join(args), exact=True)
        if found is None:
            return why
        contact_id, name = found
        await self.store.mute(contact_id, self.clock.now())
        await self._record(turn, "unmute", contact_id)
        return f"Mood alerts for {name or contact_id} ({contact_id}) are on again."

    async def pause(self, turn: Turn, args: list[str]) -> str:
        await self.state.set_paused(True)
        await self._record(turn, "pause")
        return "Auto-replies paused. Moods and alerts go on. #resume to restart."

    async def resume(self, turn: Turn, args: list[str]) -> str:
        await self.state.set_paused(False)
        await self._record(turn, "resume")
        return "Auto-replies resumed."
