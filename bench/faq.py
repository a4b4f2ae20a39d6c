"""FAQ replies end to end: customer questions through the whole pipeline, against an FAQ file.

    .venv/bin/python -m bench.faq --split validation     # choose knowledge.answer_threshold here
    .venv/bin/python -m bench.faq --split test           # scored once, at the configured threshold

Each question comes from its own contact, through the shipped config with `knowledge.path` set to
its set's FAQ (bench/data/faq_questions_<split>.yaml names the FAQ files and each question's topic,
or null where the FAQ cannot answer it). The pipeline runs once with `knowledge.answer_threshold`
off; for each threshold the FAQ answer is then put where the reply stage would put it
(handlers/reply.py: a hand-off, a denial, a curated line or no model answer, the best entry in the
sender's language scoring that much), so every threshold is read off the same replies.

Counted per threshold: answerable questions handed off (a needless hand-off pages a supervisor),
answers sent from the right entry, from a wrong entry or to a question the FAQ cannot answer, and
model answers (to be read). Every reply is written to bench/faq_<split>.jsonl and listed in
bench/FAQ_<split>.md, so that a reader can check each one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from bot import guard
from bot.config import Settings, load_settings
from bot.domain import InboundMessage, OutboundMessage
from bot.knowledge import Entry, KnowledgeBase
from bot.text import detect_lang

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
THRESHOLDS = [0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5]


class _Sink:
    async def send(self, message: OutboundMessage) -> None:
        pass


@dataclass(frozen=True)
class Question:
    faq: str
    topics: tuple[str, ...]
    text: str
    topic: str | None


def load_questions(path: Path) -> list[Question]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Question(s["faq"], tuple(s["topics"]), str(q["q"]), q["topic"]) for s in data["sets"] for q in s["questions"]]


def topic_of(entries: list[Entry], topics: tuple[str, ...], answer: str) -> str:
    """FAQ files here hold one Chinese and one English entry per topic, in the topics' order."""
    index = next(i for i, e in enumerate(entries) if e.answer == answer)
    return topics[index // 2]


def faq_answer(row: dict[str, Any], threshold: float | None) -> str | None:
    """What handlers/reply.py sends from the FAQ at `threshold` in place of the recorded reply, or None."""
    if threshold is None or row["best_score"] is None or row["best_score"] < threshold or not row["matched"]:
        return None
    if row["source"] == "generated" and not guard.hands_off(row["reply"]):
        return None
    return row["best_answer"] if row["source"] in ("generated", "fallback", "unavailable") else None


def outcome(row: dict[str, Any], threshold: float | None) -> tuple[str, str]:
    """(kind, reply sent) at `threshold`: faq-right, faq-wrong, handed off, answered, or other."""
    answer = faq_answer(row, threshold)
    if answer is not None:
        return ("faq-right" if row["topic"] is not None and row["best_topic"] == row["topic"] else "faq-wrong"), answer
    reply = row["reply"] or ""
    if row["handoff_alert"] or guard.hands_off(reply):
        return "handed off", reply
    return ("answered" if row["source"] == "generated" else str(row["source"])), reply


async def run_set(settings: Settings, engine: Any, questions: list[Question], data_dir: str,
                  threshold: float | None = None) -> list[dict[str, Any]]:
    """Every question of one FAQ through a fresh Application, `knowledge.answer_threshold` at `threshold`."""
    from bot.app import Application

    faq = questions[0].faq
    knowledge = settings.knowledge.model_copy(update={"path": str(ROOT / faq), "answer_threshold": threshold})
    store = settings.store.model_copy(update={"data_dir": data_dir, "url": None})
    app = Application(settings.model_copy(update={"knowledge": knowledge, "store": store}), engine, _Sink())
    base = KnowledgeBase(ROOT / faq)
    entries = base.entries
    rows = []
    for number, q in enumerate(questions):
        contact = f"faq-{Path(faq).stem}-{number}"
        message = InboundMessage(f"{contact}-m", contact, contact, q.text, datetime.now(timezone.utc), sender_name=contact)
        started = time.perf_counter()
        turn = await app.process(message)
        seconds = time.perf_counter() - started
        hits = [h for h in base.search(q.text, settings.knowledge.top_k) if detect_lang(h.entry.answer) == turn.lang]
        best = max(hits, key=lambda h: h.score) if hits else None
        rows.append({
            "faq": faq, "question": q.text, "topic": q.topic, "lang": turn.lang,
            "mood": turn.sentiment.label.value if turn.sentiment else None,
            "strategy": turn.strategy.value if turn.strategy else None,
            "matched": bool(turn.knowledge), "knowledge": list(turn.knowledge),
            "reply": turn.reply, "source": turn.reply_source, "stopped": turn.stopped,
            "handoff_alert": any(a.kind == "handoff" for a in turn.alerts),
            "best_score": round(best.score, 4) if best else None,
            "best_topic": topic_of(entries, q.topics, best.entry.answer) if best else None,
            "best_answer": best.entry.answer if best else None,
            "seconds": round(seconds, 3),
        })
    app.store.close()
    return rows


def summary(rows: list[dict[str, Any]], threshold: float | None) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for row in rows:
        kind, _ = outcome(row, threshold)
        group = "answerable" if row["topic"] is not None else "unanswerable"
        counts[f"{group} {kind}"] += 1
        if faq_answer(row, threshold) is not None:
            counts["changed"] += 1
    return dict(counts)


def table(rows: list[dict[str, Any]], configured: float | None) -> list[str]:
    answerable = sum(r["topic"] is not None for r in rows)
    lines = [f"{answerable} answerable questions, {len(rows) - answerable} the FAQ cannot answer "
             "(a hand-off is right for those).", "",
             "| answer_threshold | FAQ answers sent | right entry | wrong entry (answerable) | to unanswerable "
             "| answerable handed off | answerable, model answer (read) | unanswerable handed off |",
             "|---|---|---|---|---|---|---|---|"]
    for t in [None, *THRESHOLDS]:
        c = summary(rows, t)
        name = "off" if t is None else f"{t:.3f}"
        if t == configured:
            name = f"**{name} (configured)**"
        lines.append(f"| {name} | {c.get('changed', 0)} | {c.get('answerable faq-right', 0)} | "
                     f"{c.get('answerable faq-wrong', 0)} | {c.get('unanswerable faq-wrong', 0)} | "
                     f"{c.get('answerable handed off', 0)} | {c.get('answerable answered', 0)} | "
                     f"{c.get('unanswerable handed off', 0)} |")
    return lines


def listing(rows: list[dict[str, Any]], threshold: float | None) -> list[str]:
    lines = []
    for faq in dict.fromkeys(r["faq"] for r in rows):
        lines += ["", f"### {faq}", "", "| # | question (topic) | mood · strategy | best entry (score) | reply off | "
                  f"reply at {threshold} | outcome |", "|---|---|---|---|---|---|---|"]
        for number, row in enumerate(r for r in rows if r["faq"] == faq):
            kind, sent = outcome(row, threshold)
            before = (row["reply"] or "").replace("|", "/")
            after = sent.replace("|", "/") if sent != row["reply"] else "(same)"
            best = f"{row['best_topic']} ({row['best_score']:.2f})" if row["best_topic"] else "none"
            lines.append(f"| {number} | {row['question'].replace('|', '/')} ({row['topic'] or 'none'}) | "
                         f"{row['mood']} · {row['strategy']} | {best} | {before} | {after} | {kind} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faq", description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--questions", type=Path, help="default: bench/data/faq_questions_<split>.yaml")
    parser.add_argument("--rows", type=Path, help="re-read the replies of an earlier run instead of running the model")
    parser.add_argument("--out", type=Path, default=BENCH)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    configured = settings.knowledge.answer_threshold
    jsonl = args.out / f"faq_{args.split}.jsonl"
    if args.rows:
        rows = [json.loads(line) for line in args.rows.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        from bot.app import build_engine

        questions = load_questions(args.questions or BENCH / "data" / f"faq_questions_{args.split}.yaml")
        engine = build_engine(settings)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for faq in dict.fromkeys(q.faq for q in questions):
                rows += asyncio.run(run_set(settings, engine, [q for q in questions if q.faq == faq], tmp + "/" + Path(faq).stem))
        engine.close()
        jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    shown = configured if configured is not None else 0.3
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    how = f"re-read from `{args.rows}`" if args.rows else "through the whole pipeline (shipped config, each from its own contact)"
    crises = sum(r["strategy"] == "crisis" for r in rows)
    text = "\n".join([
        f"# FAQ replies end to end ({args.split} split)", "",
        f"`python -m bench.faq --split {args.split}` on {when}: {len(rows)} questions {how}, replies in "
        f"`{jsonl.relative_to(ROOT) if jsonl.is_relative_to(ROOT) else jsonl}`.",
        "", *table(rows, configured), "",
        f"The crisis reply and a critical alert went to {crises} of these {len(rows)} ordinary customer questions "
        "(the crisis head's sure tier; the FAQ threshold does not touch them).", "",
        f"Every reply, with the FAQ off and at threshold {shown}:", *listing(rows, shown), "",
    ])
    page = args.out / f"FAQ_{args.split}.md"
    page.write_text(text, encoding="utf-8")
    print("\n".join(table(rows, configured)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
