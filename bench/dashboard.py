"""Dashboard page times: a fresh SQLite store with 100,000 mood points and 1,000 contacts, every page
rendered through the ASGI app (httpx's ASGITransport, no network), p50/p95 per page.

    python -m bench.dashboard [--points 100000] [--contacts 1000] [--requests 60] [--out bench/DASHBOARD.md]

`fill()` is also what the README screenshots are taken over (tests/test_dashboard_browser.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence

import httpx
from sqlalchemy import select

from bot.clock import SystemClock
from bot.config import Settings
from bot.domain import Label
from bot.state import BotState
from bot.store import Store, alerts, audit, contacts, mood_points

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-not-secret"
EXCERPTS = {
    Label.NEGATIVE: ["今天又被老板骂了，好烦", "I feel awful about the exam", "真的撑不下去了，太累", "nobody listens to me",
                     "退款到现在还没到账，很生气"],
    Label.POSITIVE: ["谢谢你们，问题解决了！", "great news, the parcel arrived", "今天心情不错", "thanks, that helped a lot"],
    Label.NEUTRAL: ["请问几点开门？", "what is the tracking number", "好的，我知道了", "ok, see you tomorrow"],
}
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "Alice", "Bob", "Carol", "David", "Emma", "杨磊", "赵敏", "黄丽", "周杰", "Frank"]


def fill(store: Store, contacts_n: int, points_n: int, alerts_n: int, now: datetime, days: int = 30, seed: int = 7) -> list[str]:
    """Bulk-load a realistic history: most contacts steady, a tenth sliding into low moods lately."""
    rng = random.Random(seed)
    ids = [f"wxid_{i:05d}" for i in range(contacts_n)]
    names = {cid: f"{NAMES[i % len(NAMES)]}{'' if i < len(NAMES) else i}" for i, cid in enumerate(ids)}
    sliding = set(rng.sample(ids, max(1, contacts_n // 10)))
    rows = []
    for n in range(points_n):
        cid = ids[rng.randrange(contacts_n)]
        at = now - timedelta(seconds=rng.uniform(0, days * 86400))
        recent = now - at < timedelta(hours=48)
        weights = (0.15, 0.65, 0.2) if cid in sliding and recent else (0.45, 0.15, 0.4)
        label = rng.choices([Label.POSITIVE, Label.NEGATIVE, Label.NEUTRAL], weights)[0]
        rows.append({
            "contact_id": cid, "contact_name": names[cid], "chat_id": cid, "is_group": False, "at": at,
            "label": label.value, "confidence": round(rng.uniform(0.55, 0.99), 2), "message_id": f"b{n}",
            "excerpt": rng.choice(EXCERPTS[label])[: store.excerpt_chars], "text": None,
        })
    alert_rows = []
    for n in range(alerts_n):
        cid = rng.choice(sorted(sliding))
        still_open = n >= alerts_n * 0.75  # a quarter still open, raised in the last hours
        created = now - timedelta(seconds=rng.uniform(0, 6 * 3600 if still_open else days * 86400))
        acked = None if still_open else created + timedelta(minutes=rng.uniform(5, 120))
        alert_rows.append({
            "contact_id": cid, "contact_name": names[cid], "chat_id": cid,
            "severity": rng.choice(["warning", "warning", "high", "critical"]),
            "reason": "3 negative messages in 30 min", "excerpts": json.dumps(rng.sample(EXCERPTS[Label.NEGATIVE], 3), ensure_ascii=False),
            "trend": json.dumps(["negative"] * 3), "created_at": created, "delivered_at": created, "acked_at": acked,
        })
    with store.engine.begin() as conn:
        conn.execute(contacts.insert(), [{"contact_id": cid, "name": names[cid], "armed": True} for cid in ids])
        for start in range(0, len(rows), 10_000):
            conn.execute(mood_points.insert(), rows[start: start + 10_000])
        if alert_rows:
            conn.execute(alerts.insert(), sorted(alert_rows, key=lambda r: r["created_at"]))
            acked = conn.execute(select(alerts.c.id, alerts.c.acked_at).where(alerts.c.acked_at.is_not(None))).all()
            if acked:  # who acknowledged them, as the dashboard records it
                conn.execute(audit.insert(), [{"at": at, "actor": rng.choice(["Sue", "李主管"]), "action": "ack",
                                               "target": str(alert_id), "detail": ""} for alert_id, at in acked])
    return ids


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def measure(store: Store, ids: list[str], requests: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    pages = {"overview `/`": lambda i: "/", "alerts queue `/alerts`": lambda i: "/alerts",
             "contact `/contact/{id}`": lambda i: f"/contact/{ids[(i * 37) % len(ids)]}",
             "summary `/api/summary`": lambda i: "/api/summary"}
    await _measure(store, pages, requests, times)
    return times


async def _measure(store: Store, pages: dict[str, Callable[[int], str]], requests: int, times: dict[str, list[float]]) -> None:
    from bot.web.app import create_app

    settings = Settings.model_validate({"dashboard": {"password": PASSWORD}})
    clock = SystemClock()
    app = create_app(settings, store, BotState(clock.now(), "bench", flags=store), clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        form = (await client.get("/login")).text
        token = re.search(r'name="csrf" value="([^"]+)"', form)
        assert token is not None
        login = await client.post("/login", data={"csrf": token.group(1), "name": "bench", "password": PASSWORD})
        assert login.status_code == 303, login.text
        for page, path in pages.items():
            for i in range(3):  # warm-up: templates compiled, SQLite pages cached
                (await client.get(path(i))).raise_for_status()
            samples = []
            for i in range(requests):
                start = time.perf_counter()
                response = await client.get(path(i))
                samples.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
            times[page] = samples


def table(times: dict[str, list[float]], load_start: str, load_end: str, args: argparse.Namespace) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Dashboard page times",
        "",
        f"Measured by `python -m bench.dashboard` on {now}: a fresh SQLite store with {args.points:,} mood points "
        f"over 30 days, {args.contacts:,} contacts and {args.alerts:,} alerts; each page rendered server-side through "
        f"the ASGI app (httpx ASGITransport, logged in), {args.requests} requests per page after 3 warm-up requests, "
        f"one at a time. {os.cpu_count()} CPU cores. Every request runs its queries; the overview keeps only the "
        f"counts of days that have ended (they cannot change), so its first render also counts 13 closed days.",
        "",
        f"Load average at start: {load_start}; at end: {load_end} (`uptime`; the machine was also training a model).",
        "",
        "| page | requests | p50 ms | p95 ms | max ms | target p95 |",
        "|---|---|---|---|---|---|",
    ]
    for page, samples in times.items():
        p95 = percentile(samples, 95)
        lines.append(f"| {page} | {len(samples)} | {statistics.median(samples):.1f} | {p95:.1f} | {max(samples):.1f} | "
                     f"≤ 200 {'✓' if p95 <= 200 else '✗'} |")
    return "\n".join(lines) + "\n"


def uptime_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=1_000)
    parser.add_argument("--alerts", type=int, default=500)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "DASHBOARD.md")
    args = parser.parse_args(argv)
    load_start = uptime_load()
    with tempfile.TemporaryDirectory(prefix="moodbot-dash-bench-") as folder:
        store = Store(f"sqlite:///{folder}/bench.db")
        started = time.perf_counter()
        ids = fill(store, args.contacts, args.points, args.alerts, datetime.now(timezone.utc))
        print(f"filled the store in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        times = asyncio.run(measure(store, ids, args.requests))
        store.close()
    text = table(times, load_start, uptime_load(), args)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
