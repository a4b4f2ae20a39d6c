"""FAQ replies end to end: customer questions through the whole pipeline, against an FAQ file.

    .venv/bin/python -m bench.faq --split validation     # choose knowledge.answer_threshold here
    .venv/bin/python -m bench.faq --split test           # scored once, at the configured threshold

Three runs: the FAQ answers off and BM25 alone deciding the knowledge (the simulations below read
it), the configured answer threshold with BM25 alone (measured), and as served: the model's FAQ
match head judging the best entries (handlers/knowledge.py; measured).

Each question comes from its own contact, through the shipped config with `knowledge.path` set to
its set's FAQ (bench/data/faq_questions_<split>.yaml names the FAQ files and each question's topic,
or null where the FAQ cannot answer it). The pipeline runs twice: with `knowledge.answer_threshold`
off, and as configured (served). Other thresholds are read off the first run by putting the FAQ
answer where the reply stage would (handlers/reply.py: in place of any reply with
`knowledge.answer_first`, the best entry in the sender's language scoring that much, the message a
question);
that simulation leaves out one detail of the served path (a hand-off that
the guard finds needless is not trimmed when an FAQ answer waits), so those rows are marked
simulated and the configured row is measured.

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
from bot.domain import InboundMessage
from bot.knowledge import Entry, KnowledgeBase, asks, best_in
from tests.fakes import RecordingSender

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
THRESHOLDS = [0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5]


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
    """What handlers/reply.py would send from the FAQ at `threshold`, with `knowledge.answer_first`
    (the default), in place of a reply recorded with the answers off, or None (each question comes
    from a new contact: there is no previous reply)."""
    if threshold is None or row["best_score"] is None or row["best_score"] < threshold or not row["matched"]:
        return None
    if not asks(row["question"]):
        return None
    return row["best_answer"] if row["source"] in ("generated", "fallback", "unavailable") else None


def outcome(row: dict[str, Any], threshold: float | None = None) -> tuple[str, str]:
    """(kind, reply sent), simulated at `threshold` or as recorded: faq-right, faq-wrong, crisis,
    handed off, answered, or where else the reply came from."""
    simulated = faq_answer(row, threshold)
    answer = simulated or (row["reply"] if row["source"] == "faq" else None)
    if answer is not None:
        # the match head may send another entry than BM25's best
        sent = row["best_topic"] if simulated else row.get("sent_topic", row["best_topic"])
        return ("faq-right" if row["topic"] is not None and sent == row["topic"] else "faq-wrong"), answer
    reply = row["reply"] or ""
    if row["source"] == "vetted":
        return "crisis", reply
    if row["handoff_alert"] or guard.hands_off(reply):
        return "handed off", reply
    return ("answered" if row["source"] == "generated" else str(row["source"])), reply


class Bm25Only:
    """The engine without its FAQ match head: BM25's thresholds decide, as before the head."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    async def faq_match(self, question: str, answer: str, score: float) -> None:
        return None


async def run_set(settings: Settings, engine: Any, questions: list[Question], data_dir: str,
                  threshold: float | None = None, judge: bool = True) -> list[dict[str, Any]]:
    """Every question of one FAQ through a fresh Application, `knowledge.answer_threshold` at `threshold`,
    with the engine's FAQ match head where `judge`."""
    from bot.app import Application

    engine = engine if judge else Bm25Only(engine)
    faq = questions[0].faq
    knowledge = settings.knowledge.model_copy(update={"path": str(ROOT / faq), "answer_threshold": threshold})
    store = settings.store.model_copy(update={"data_dir": data_dir, "url": None})
    app = Application(settings.model_copy(update={"knowledge": knowledge, "store": store}), engine, RecordingSender())
    base = KnowledgeBase(ROOT / faq)
    entries = base.entries
    if len(entries) != 2 * len(questions[0].topics):
        raise SystemExit(f"{faq}: {len(entries)} entries for {len(questions[0].topics)} topics (one zh and one en each)")
    rows = []
    for number, q in enumerate(questions):
        contact = f"faq-{Path(faq).stem}-{number}"
        message = InboundMessage(f"{contact}-m", contact, contact, q.text, datetime.now(timezone.utc), sender_name=contact)
        started = time.perf_counter()
        turn = await app.process(message)
        seconds = time.perf_counter() - started
        best = best_in(base.search(q.text, settings.knowledge.top_k), turn.lang, 0.0)
        rows.append({
            "faq": faq, "question": q.text, "topic": q.topic, "lang": turn.lang,
            "mood": turn.sentiment.label.value if turn.sentiment else None,
            "strategy": turn.strategy.value if turn.strategy else None,
            "matched": bool(turn.knowledge), "knowledge": list(turn.knowledge),
            "reply": turn.reply, "source": turn.reply_source, "stopped": turn.stopped,
            "handoff_alert": any(a.kind == "handoff" for a in turn.alerts), "needs_person": turn.needs_person,
            "best_score": round(best.score, 4) if best else None,
            "best_topic": topic_of(entries, q.topics, best.entry.answer) if best else None,
            "best_answer": best.entry.answer if best else None,
            "sent_topic": topic_of(entries, q.topics, turn.reply) if turn.reply_source == "faq" else None,
            # the answer the knowledge stage was sure of, whether or not the reply stage sent it
            "sure_topic": topic_of(entries, q.topics, turn.faq_answer) if turn.faq_answer else None,
            "knowledge_topics": [topic_of(entries, q.topics, line) for line in turn.knowledge],
            "seconds": round(seconds, 3),
        })
    app.store.close()
    return rows


def summary(rows: list[dict[str, Any]], threshold: float | None = None) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for row in rows:
        kind, _ = outcome(row, threshold)
        group = "answerable" if row["topic"] is not None else "unanswerable"
        counts[f"{group} {kind}"] += 1
        counts["FAQ answers"] += kind.startswith("faq")
    return dict(counts)


def _cells(name: str, c: dict[str, int]) -> str:
    return (f"| {name} | {c.get('FAQ answers', 0)} | {c.get('answerable faq-right', 0)} | {c.get('answerable faq-wrong', 0)} | "
            f"{c.get('unanswerable faq-wrong', 0)} | {c.get('answerable handed off', 0)} | {c.get('answerable answered', 0)} | "
            f"{c.get('answerable crisis', 0) + c.get('unanswerable crisis', 0)} | {c.get('unanswerable handed off', 0)} |")


def table(off: list[dict[str, Any]], served: list[dict[str, Any]], configured: float | None, floor: float,
          bm25: list[dict[str, Any]] | None = None) -> list[str]:
    answerable = sum(r["topic"] is not None for r in off)
    lines = [f"{answerable} answerable questions, {len(off) - answerable} the FAQ cannot answer "
             "(a hand-off is right for those).", "",
             "| answer_threshold | FAQ answers sent | right entry | wrong entry (answerable) | to unanswerable "
             "| answerable handed off | answerable, model answer (read) | crisis reply | unanswerable handed off |",
             "|---|---|---|---|---|---|---|---|---|",
             _cells("off, BM25 only (measured)", summary(off))]
    if bm25:
        lines.append(_cells(f"{configured}, BM25 only (measured)", summary(bm25)))
    if served:
        lines.append(_cells(f"**{configured}, match head (served, measured)**", summary(served)))
    lines += [_cells(f"{t:.3f}, BM25 only (simulated)", summary(off, t)) for t in THRESHOLDS if t >= floor]
    return lines


def listing(off: list[dict[str, Any]], served: list[dict[str, Any]], configured: float | None) -> list[str]:
    lines = []
    for faq in dict.fromkeys(r["faq"] for r in off):
        lines += ["", f"### {faq}", "", "| # | question (topic) | mood · strategy | best BM25 entry (score) | reply, answers off | "
                  f"reply at {configured}, match head (served) | entries in the prompt | outcome |", "|---|---|---|---|---|---|---|---|"]
        pairs = [(a, b) for a, b in zip(off, served or off) if a["faq"] == faq]
        for number, (before, after) in enumerate(pairs):
            kind, sent = outcome(after) if served else ("", "")
            old = (before["reply"] or "").replace("|", "/")
            new = "(same)" if sent == before["reply"] else sent.replace("|", "/")
            best = f"{before['best_topic']} ({before['best_score']:.2f})" if before["best_topic"] else "none"
            lines.append(f"| {number} | {before['question'].replace('|', '/')} ({before['topic'] or 'none'}) | "
                         f"{after['mood']} · {after['strategy']} | {best} | {old} | {new} | "
                         f"{', '.join(after.get('knowledge_topics') or []) or '-'} | {kind} |")
    return lines


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.exists() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faq", description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--questions", type=Path, help="default: bench/data/faq_questions_<split>.yaml")
    parser.add_argument("--reread", action="store_true", help="re-read the replies of the last run instead of running the model")
    parser.add_argument("--out", type=Path, default=BENCH)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    configured = settings.knowledge.answer_threshold
    files = {"off": args.out / f"faq_{args.split}.jsonl", "bm25": args.out / f"faq_{args.split}_bm25.jsonl",
             "served": args.out / f"faq_{args.split}_served.jsonl"}
    runs: dict[str, list[dict[str, Any]]] = {}
    if args.reread:
        runs = {name: _read(path) for name, path in files.items()}
    else:
        from bot.app import build_engine

        questions = load_questions(args.questions or BENCH / "data" / f"faq_questions_{args.split}.yaml")
        engine = build_engine(settings)
        with tempfile.TemporaryDirectory() as tmp:
            for name, threshold, judge in (("off", None, False), ("bm25", configured, False), ("served", configured, True)):
                if name != "off" and configured is None:
                    continue
                runs[name] = []
                for faq in dict.fromkeys(q.faq for q in questions):
                    mine = [q for q in questions if q.faq == faq]
                    runs[name] += asyncio.run(run_set(settings, engine, mine, f"{tmp}/{name}-{Path(faq).stem}", threshold, judge))
                files[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in runs[name]), encoding="utf-8")
        engine.close()
    off, served = runs.get("off", []), runs.get("served", [])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    how = "re-read from the last run" if args.reread else "through the whole pipeline (shipped config, each from its own contact)"
    shown = [str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in files.values()]
    rows = table(off, served, configured, settings.knowledge.threshold, runs.get("bm25"))
    text = "\n".join([
        f"# FAQ replies end to end ({args.split} split)", "",
        f"`python -m bench.faq --split {args.split}` on {when}: {len(off)} questions {how}, with the FAQ answers off, "
        f"at the configured `knowledge.answer_threshold` with BM25 alone, and as served (the FAQ match head); replies in "
        f"`{shown[0]}`, `{shown[1]}` and `{shown[2]}`.",
        "", *rows, "",
        "The crisis reply goes with a critical alert; the FAQ threshold does not touch it. "
        "A simulated row puts the FAQ answer into the run with answers off (see bench/faq.py).", "",
        "Every reply:", *listing(off, served, configured), "",
    ])
    (args.out / f"FAQ_{args.split}.md").write_text(text, encoding="utf-8")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
