"""Small talk to a customer-service bot: how much of it is handed to a colleague.

    .venv/bin/python -m bench.smalltalk      # writes bench/SMALLTALK.md and bench/smalltalk.jsonl

Each message of bench/data/smalltalk_probe.yaml (questions no FAQ answers and no colleague needs:
"在不在", "你会不会累", "can u tell me a joke", written blind by a helper, never trained on) comes from
its own contact through the shipped config with the sample FAQ (examples/faq.yaml), as bench/faq.py
runs customer questions. A hand-off here sends a supervisor an alert with nothing to do. Every reply
is listed, so that a reader can check each one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from bench.faq import BENCH, ROOT, Question, load_questions, outcome, run_set
from bot.config import load_settings

PROBE = BENCH / "data" / "smalltalk_probe.yaml"
FAQ = "examples/faq.yaml"


def questions(path: Path = PROBE) -> list[Question]:
    """The probe's messages as questions to the sample FAQ (its topics from bench's validation split)."""
    topics = next(q.topics for q in load_questions(BENCH / "data" / "faq_questions_validation.yaml") if q.faq == FAQ)
    return [Question(FAQ, topics, str(m["text"]), None) for m in yaml.safe_load(path.read_text(encoding="utf-8"))["messages"]]


def kinds(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{row['lang']} {outcome(row)[0]}" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.smalltalk", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--out", type=Path, default=BENCH)
    args = parser.parse_args(argv)
    from bot.app import build_engine

    settings = load_settings(args.config)
    engine = build_engine(settings)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(run_set(settings, engine, questions(), tmp, settings.knowledge.answer_threshold))
    engine.close()
    (args.out / "smalltalk.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts = kinds(rows)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = ["| lang | messages | handed off | FAQ answer | crisis reply | model or curated reply |", "|---|---|---|---|---|---|"]
    for lang in ("zh", "en"):
        n = sum(row["lang"] == lang for row in rows)
        faq = counts[f"{lang} faq-wrong"] + counts[f"{lang} faq-right"]
        handed, crisis = counts[f"{lang} handed off"], counts[f"{lang} crisis"]
        table.append(f"| {lang} | {n} | {handed} | {faq} | {crisis} | {n - handed - faq - crisis} |")
    listing = ["| # | message | mood · strategy | reply | source | outcome |", "|---|---|---|---|---|---|"]
    for number, row in enumerate(rows):
        kind, sent = outcome(row)
        listing.append(f"| {number} | {row['question'].replace('|', '/')} | {row['mood']} · {row['strategy']} | "
                       f"{sent.replace('|', '/')} | {row['source']} | {kind} |")
    text = "\n".join([
        "# Small talk with an FAQ configured", "",
        f"`python -m bench.smalltalk` on {when} (load average {load:.2f} at start): {len(rows)} messages from "
        f"bench/data/smalltalk_probe.yaml, each from its own contact, through the shipped config with "
        f"`knowledge.path: {FAQ}`; replies in `bench/smalltalk.jsonl`. A hand-off is a reply that promises a "
        "colleague or a hand-off alert.", "", *table, "", "Every reply:", "", *listing, ""])
    (args.out / "SMALLTALK.md").write_text(text, encoding="utf-8")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
