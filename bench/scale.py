"""Throughput and reply latency with 1, 4 and 16 concurrent chats: the in-process engine against the
llama.cpp server backend (model.backend: openai) on the same embedded GGUF, on this machine.

    .venv/bin/python -m bench.scale            # full run; writes bench/SCALE.md (run it on an idle machine)
    .venv/bin/python -m bench.scale --smoke    # two messages per level, short replies: checks it runs

Each level runs whole turns through the real Application (filters, mood, crisis check, escalation on
a SQLite store, reply): every chat sends its next message when the previous reply came back. While a
level runs, the CPU time of this process and of the server process is sampled from /proc, so the
limiting resource can be named: the CPU when the cores are busy, else the model's one request slot
(the local engine has one model thread; llama-cpp-python's server answers one request at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "SCALE.md"
MESSAGES = [
    "今天考试没考好，心情很低落", "太好了，我拿到offer了！", "I failed my driving test again.",
    "We won the match today!", "请问明天几点开门？", "What time does the shop open?",
    "最近工作压力好大，晚上睡不着", "Thanks, that really helped me.",
]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Level:
    backend: str
    chats: int
    messages: int
    wall_s: float
    latencies: list[float]
    bot_cpu: float  # cores used by the bot process on average
    server_cpu: float  # cores used by the model server on average (0 for the local engine)
    machine: float  # fraction of all cores busy, whatever ran them

    @property
    def rate(self) -> float:
        return self.messages / self.wall_s

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    def limit(self, single: Level | None) -> str:
        cores = os.cpu_count() or 1
        if self.machine >= 0.85:
            return f"CPU: {self.machine:.0%} of {cores} cores busy"
        if single is not None and self.chats > 1 and self.pct(50) > 0.5 * self.chats * single.pct(50):
            return "the model's one request slot: turns queue for it"
        return "none saturated (latency of one turn)"


async def run_level(engine: Any, backend: str, chats: int, per_chat: int, server_pid: int | None) -> Level:
    from bot.app import Application
    from bot.clock import SystemClock
    from bot.config import Settings
    from bot.store import Store
    from tests.fakes import RecordingSender, make_message

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.model_validate({
            "schedule": {"enabled": False},
            "queue": {"max_inflight": max(8, chats), "size": 10 * chats + 10},
            "outbound": {"per_contact_per_minute": 10_000, "global_per_minute": 100_000},
        })
        app = Application(settings, engine, RecordingSender(), SystemClock(), Store(f"sqlite:///{tmp}/scale.db"))
        latencies: list[float] = []

        async def chat(index: int) -> None:
            for n in range(per_chat):
                text = MESSAGES[(index + n) % len(MESSAGES)]
                message = make_message(text, chat_id=f"chat{index}", sender_id=f"user{index}",
                                       sent_at=datetime.now(timezone.utc), message_id=f"{backend}-{chats}-{index}-{n}")
                start = time.perf_counter()
                await app.process(message)
                latencies.append(time.perf_counter() - start)

        bot_before = cpu_seconds(os.getpid())
        server_before = cpu_seconds(server_pid) if server_pid else 0.0
        busy_before, total_before = machine_busy()
        started = time.perf_counter()
        await asyncio.gather(*(chat(i) for i in range(chats)))
        wall = time.perf_counter() - started
        busy_after, total_after = machine_busy()
        level = Level(
            backend, chats, len(latencies), wall, latencies,
            (cpu_seconds(os.getpid()) - bot_before) / wall,
            ((cpu_seconds(server_pid) - server_before) / wall) if server_pid else 0.0,
            (busy_after - busy_before) / max(total_after - total_before, 1),
        )
        app.store.close()  # the engine is shared by the levels: not app.stop()
        return level


def local_engine(max_new_tokens: int) -> Any:
    from bot.config import ModelSettings, SentimentSettings
    from bot.model.engine import AsyncEngine, ModelEngine
    from bot.model.loader import load_model

    settings = ModelSettings(max_new_tokens=max_new_tokens, threads=2)
    # readout none: the label-token scorer, the path the server backend mirrors
    return AsyncEngine(ModelEngine(load_model(settings), settings, SentimentSettings(readout="none")), 120)


def remote_engine(url: str, max_new_tokens: int) -> Any:
    from bot.config import ModelSettings, SentimentSettings
    from bot.remote import RemoteEngine

    engine = RemoteEngine(ModelSettings(backend="openai", base_url=url, max_new_tokens=max_new_tokens, timeout_s=300,
                                        max_concurrency=16), SentimentSettings(readout="none"))
    engine.check()
    return engine


def table(levels: list[Level]) -> list[str]:
    lines = [
        "| backend | chats | messages | messages/s | reply latency p50 | p95 | bot CPU (cores) | server CPU (cores) | limiting resource |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    singles = {lv.backend: lv for lv in levels if lv.chats == 1}
    for lv in levels:
        lines.append(
            f"| {lv.backend} | {lv.chats} | {lv.messages} | {lv.rate:.2f} | {lv.pct(50):.2f} s | {lv.pct(95):.2f} s "
            f"| {lv.bot_cpu:.2f} | {lv.server_cpu:.2f} | {lv.limit(singles.get(lv.backend))} |"
        )
    return lines


async def measure(args: argparse.Namespace) -> list[Level]:
    from bot.config import ModelSettings
    from bot.model.loader import embedded_gguf
    from tests.llama_server import LlamaServer, available

    levels: list[Level] = []
    chats = [int(c) for c in args.chats.split(",")]
    if "local" in args.backends:
        engine = local_engine(args.max_new_tokens)
        for c in chats:
            levels.append(await run_level(engine, "local (in process)", c, args.per_chat, None))
            print(table(levels)[-1], flush=True)
        engine.close()
    if "server" in args.backends:
        if not available():
            print("llama-cpp-python[server] is not installed (.ci/llama-wheel): server backend skipped", file=sys.stderr)
            return levels
        server = LlamaServer(embedded_gguf(Path(ModelSettings().cache_dir).expanduser()), threads=2)
        server.start()
        try:
            assert server.process is not None
            engine = remote_engine(server.base_url, args.max_new_tokens)
            for c in chats:
                levels.append(await run_level(engine, "llama.cpp server (openai)", c, args.per_chat, server.process.pid))
                print(table(levels)[-1], flush=True)
            engine.close()
        finally:
            server.stop()
    return levels


def write(levels: list[Level], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    lines = [
        "# Several chats at once: the in-process engine and the llama.cpp server backend",
        "",
        f"Written by `python -m bench.scale{' --smoke' if args.smoke else ''}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"1-minute load average {load:.2f} at the end"
        + (" (a smoke run: too few messages for the figures to mean anything)." if args.smoke else "."),
        "",
        f"Both backends run the same embedded GGUF (Gemma 3 270M, Q4_K_M) with 2 threads; each turn is the whole "
        f"pipeline (mood, crisis check, escalation on SQLite, a reply of up to {args.max_new_tokens} "
        f"tokens). Each chat sends {args.per_chat} messages, the next when the reply to the last came back.",
        "",
        *table(levels),
        "",
        "How to read it: messages/s is throughput over all chats; latency is one whole turn as a sender "
        "sees it. On one 2-core machine neither backend can add compute by adding chats: the local engine "
        "has one model thread, and llama-cpp-python's server evaluates one request at a time, so with more "
        "chats the turns queue and latency grows with the number of chats while messages/s stays flat. "
        "The server backend pays off on a separate GPU box (vLLM batches concurrent requests), where the "
        "bot processes only wait on the network.",
        "",
        "A cost particular to llama-cpp-python's server: it returns log-probabilities only when started with "
        "`--logits_all true`, which computes the output layer (262k rows for Gemma) at every prompt token, and "
        "it keeps one prompt's state, so a mood request after a reply or a crisis check evaluates its whole "
        "prefix again (5 to 7 s on this machine while it was busy, against about 1 s when the prefix is kept). "
        "vLLM keeps every prefix in its cache and computes log-probabilities for the answer token only.",
        "",
    ]
    OUT.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {OUT}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--chats", default="1,4,16", help="concurrency levels (default 1,4,16)")
    parser.add_argument("--per-chat", type=int, default=4, help="messages each chat sends (default 4)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--backends", default="local,server")
    parser.add_argument("--smoke", action="store_true", help="1 and 2 chats, 1 message each, 8-token replies")
    args = parser.parse_args(argv)
    if args.smoke:
        args.chats, args.per_chat, args.max_new_tokens = "1,2", 1, 8
    levels = asyncio.run(measure(args))
    write(levels, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
