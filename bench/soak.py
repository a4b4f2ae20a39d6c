"""Soak test: the bot process over the real Wechaty protocol while its world breaks twice.

    python -m bench.soak                   # the real model (slow on a CPU: minutes), writes bench/SOAK.md
    python -m bench.soak --engine fake     # the same control flow in seconds (a smoke test)

200 messages from 20 contacts (u1 .. u20 in the mock gateway), in three phases: after the first
the gateway is restarted (the bot must reconnect), after the second the bot process is SIGKILLed
and started again on the same database (alerts stored before the kill must not be sent twice).
Three contacts write sad messages, so the escalation rules raise alerts to the admin.

Reported: messages in, replies out, mood points stored, alerts raised and how often each was sent
to the admin (exactly once is right), and lost = messages without a stored mood point plus
messages without an answer. The bot is killed at a quiet moment (all answered so far): a turn
in flight at a SIGKILL is lost with the process, as the inbound side keeps no journal; the
report says so rather than hiding it.

Needs a source checkout with the Node gateway installed (`make gateway`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.mock_wechat import free_port
from examples.wechaty_demo.gateway import Gateway

ROOT = Path(__file__).resolve().parent.parent
CONTACTS = 20
ADMIN = "admin_id"
SAD = ["I feel so sad today", "this is awful, nothing works", "今天心情很低落，什么都做不好"]
OTHER = ["what time do you open tomorrow?", "great news, I'm so happy!", "明天几点开门？", "thanks, that helps",
         "今天太棒了，好开心！"]
ALERT_RE = re.compile(r"Mood alert #(\d+)")


@dataclass
class Soak:
    engine: str
    messages: int
    gateway: Gateway
    data_dir: Path
    plugin_port: int = field(default_factory=free_port)
    sent_before_restarts: list[dict[str, Any]] = field(default_factory=list)
    said: list[tuple[str, str]] = field(default_factory=list)  # (contact, text) in the order sent
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    # --- the bot process -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MOODBOT__CHANNEL": "wechaty",
            "MOODBOT__WECHATY__TOKEN": self.gateway.token,
            "MOODBOT__WECHATY__ENDPOINT": self.gateway.endpoint,
            "MOODBOT__WECHATY__PLUGIN_PORT": str(self.plugin_port),
            "MOODBOT__WECHATY__RECONNECT_DELAY_S": "0.5",
            "MOODBOT__STORE__URL": f"sqlite:///{self.data_dir / 'soak.db'}",
            "MOODBOT__SCHEDULE__ENABLED": "false",
            "MOODBOT__ADMIN__IDS": f"[{ADMIN}]",
            "MOODBOT__TRIGGERS__MAX_AGE_S": "3600",
            "MOODBOT__OUTBOUND__GLOBAL_PER_MINUTE": "1000",
            "MOODBOT__OUTBOUND__PER_CONTACT_PER_MINUTE": "100",
            "MOODBOT__OUTBOUND__RETRIES": "6",
            "MOODBOT__QUEUE__SIZE": "1000",  # the soak measures survival, not the busy reply
        }

    def start_bot(self) -> None:
        command = [sys.executable, "-m", "bench.soak", "--serve-fake"] if self.engine == "fake" else \
            [sys.executable, "-m", "bot", "--config", "config.yaml", "run"]
        self.log_path = self.data_dir / "bot.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=self.env(), stdout=log, stderr=log)
        self.wait(lambda: self.gateway.health().get("clients", 0) > 0, 600, "the bot to connect")

    def kill_bot(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.proc = None
        self.wait(lambda: self.gateway.health().get("clients", 0) == 0, 30, "the gateway to see the bot gone")

    def stop_bot(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9

    # --- the world -------------------------------------------------------------------------

    def wait(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the bot exited ({self.proc.returncode}) while waiting for {what}; see {self.log_path}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}")

    def all_sent(self) -> list[dict[str, Any]]:
        return self.sent_before_restarts + self.gateway.sent()

    def replies(self) -> list[dict[str, Any]]:
        return [s for s in self.all_sent() if s["listenerId"] != ADMIN]

    def restart_gateway(self) -> None:
        self.sent_before_restarts += self.gateway.sent()
        self.gateway.stop()
        time.sleep(1.0)
        self.gateway.start()  # the same port, a fresh fake world
        self.wait(lambda: self.gateway.health().get("clients", 0) > 0, 120, "the bot to reconnect")

    def send(self, count: int, interval: float, per_reply_s: float) -> None:
        for _ in range(count):
            index = len(self.said)
            contact = f"u{index % CONTACTS + 1}"
            sad = index % CONTACTS < 3  # u1, u2, u3 are having a bad day
            text = SAD[index // CONTACTS % len(SAD)] if sad else OTHER[index % len(OTHER)]
            self.gateway.say(**{"from": contact, "text": text})
            self.said.append((contact, text))
            time.sleep(interval)
        expected = len(self.said)
        self.wait(lambda: len(self.replies()) >= expected, 60 + per_reply_s * count, f"{expected} replies")


def count_store(data_dir: Path) -> tuple[int, list[int]]:
    from bot.store import Store

    store = Store(f"sqlite:///{data_dir / 'soak.db'}")
    try:
        moods = len(store.moods())
        alerts = [a.alert_id for a in store.alerts_since(time_zero(), kind="mood")]
    finally:
        store.close()
    return moods, [a for a in alerts if a is not None]


def time_zero() -> Any:
    from datetime import datetime, timezone

    return datetime(1970, 1, 1, tzinfo=timezone.utc)


def run(engine: str, messages: int, out: Path | None) -> int:
    interval, per_reply_s = (0.02, 0.5) if engine == "fake" else (0.5, 30.0)
    gateway = Gateway(extra_contacts=CONTACTS)
    gateway.start()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="moodbot-soak-") as tmp:
        soak = Soak(engine, messages, gateway, Path(tmp))
        try:
            soak.start_bot()
            first, second = messages * 2 // 5, messages * 3 // 10
            soak.send(first, interval, per_reply_s)
            soak.restart_gateway()
            soak.send(second, interval, per_reply_s)
            soak.kill_bot()
            soak.start_bot()
            soak.send(messages - first - second, interval, per_reply_s)
            time.sleep(2.0)  # alerts go out after the reply
            exit_code = soak.stop_bot()
        except (RuntimeError, TimeoutError) as exc:
            print(f"soak failed: {exc}", file=sys.stderr)
            if soak.log_path is not None and soak.log_path.exists():
                print(soak.log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            if soak.proc is not None and soak.proc.poll() is None:
                soak.proc.kill()
            gateway.close()
            return 1
        sent = soak.all_sent()
        moods, alert_ids = count_store(Path(tmp))
    gateway.close()
    replies = [s for s in sent if s["listenerId"] != ADMIN]
    sent_alerts = Counter(int(m.group(1)) for s in sent if s["listenerId"] == ADMIN for m in [ALERT_RE.search(s["text"])] if m)
    wanted = Counter(contact for contact, _ in soak.said)
    answered = Counter(s["listenerId"].removesuffix("_id") for s in replies)
    unanswered = sum(max(0, n - answered[c]) for c, n in wanted.items())
    lost = max(0, len(soak.said) - moods) + unanswered
    once = all(sent_alerts[a] == 1 for a in alert_ids) and set(sent_alerts) == set(alert_ids)
    rows = [
        ("engine", engine),
        ("messages in", str(len(soak.said))),
        ("replies out", str(len(replies))),
        ("mood points stored", str(moods)),
        ("alerts raised", str(len(alert_ids))),
        ("alerts sent exactly once", "yes" if once else f"no: {dict(sent_alerts)} for {alert_ids}"),
        ("lost", str(lost)),
        ("gateway restarts / bot SIGKILLs", "1 / 1"),
        ("bot exit code on SIGTERM", str(exit_code)),
        ("wall time", f"{time.monotonic() - started:.0f} s"),
    ]
    table = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(table)
    if out is not None:
        out.write_text(
            "# Soak test\n\n`python -m bench.soak" + (" --engine fake" if engine == "fake" else "") + "`: "
            f"{len(soak.said)} messages from {CONTACTS} contacts through the wechaty channel; the gateway is "
            "restarted once and the bot process SIGKILLed and restarted once (at a quiet moment). "
            "See the module docstring for what each row means.\n\n" + table + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0 if lost == 0 and once and exit_code == 0 else 1


async def serve_fake() -> int:
    """The bot process with the fake engine (`--engine fake`): the wechaty channel and Application as in `run`."""
    from bot.__main__ import configure_logging
    from bot.app import Application
    from bot.channels.wechaty import WechatyChannel
    from bot.config import load_settings
    from tests.fakes import FakeEngine

    configure_logging(False)
    settings = load_settings(None)
    channel = WechatyChannel(settings)
    app = Application(settings, FakeEngine(), channel)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await channel.run(app, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["real", "fake"], default="real")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--out", type=Path, help="markdown report (default: bench/SOAK.md for the real engine)")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fake:
        return asyncio.run(serve_fake())
    out = args.out or (ROOT / "bench" / "SOAK.md" if args.engine == "real" else None)
    return run(args.engine, args.messages, out)


if __name__ == "__main__":
    sys.exit(main())
