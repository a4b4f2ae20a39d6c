"""The reply benchmark: today's base prompt and the fine-tuned model side by side, on replies_eval.

    .venv/bin/python -m bench.replies                  # both variants, every eval example
    .venv/bin/python -m bench.replies --smoke          # a few examples on a tiny model (make test)
    .venv/bin/python -m bench.replies --examples validation --adapter train/out/run/adapter \
        --variants tuned --out /tmp/val                # a candidate adapter on the reply-validation rows

The validation rows are carved from the training data by hash (train/data.py) and never trained
on; candidate adapters are compared on them, so that replies_eval stays unread until the end.

Each example goes through the reply stage's own generate-guard-fallback path (handlers/reply.py)
with the example's strategy, history and knowledge. Counted per variant, strategy and language:
- on the first generated reply (before the guard): echo, invented-fact and wrong-language rates;
- on the reply that would be sent: the same three, the guard's fallback rate, the repeated-reply
  rate (the same reply to different messages), distinct-2, median length, latency p50/p95.
Every reply is written to bench/replies_<variant>.jsonl so that a reader can check the grades.
The examples in train/data/replies_eval.jsonl are never trained on (train/data.py bans them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.report import update_sections
from bot import guard
from bot.clock import SystemClock
from bot.config import CrisisSettings, ModelSettings, ReplySettings, SentimentSettings
from bot.domain import ChatTurn, InboundMessage, Strategy, Turn
from train import data as tdata

BENCH = Path(__file__).resolve().parent


class _NoMemory:
    """The example's own history stands in for the conversation memory."""

    def history(self, chat_id: str) -> list[ChatTurn]:
        return []

    def add(self, chat_id: str, *turns: ChatTurn) -> None:
        pass


class _Recording:
    """The engine, with every generated reply (the guard's second tries too) kept for the report."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.name
        self.replies: list[str] = []

    async def classify(self, text: str) -> Any:
        return await self.engine.classify(text)

    async def crisis_score(self, text: str) -> float:
        return float(await self.engine.crisis_score(text))

    async def needs_person(self, text: str) -> bool | None:
        result: bool | None = await self.engine.needs_person(text)
        return result

    async def faq_match(self, question: str, answer: str, score: float) -> Any:
        return await self.engine.faq_match(question, answer, score)

    async def generate(self, *args: Any, **kwargs: Any) -> str:
        reply: str = await self.engine.generate(*args, **kwargs)
        self.replies.append(reply)
        return reply

    def close(self) -> None:
        self.engine.close()


def distinct2(replies: list[str], lang: str) -> float:
    grams: list[str] = []
    for reply in replies:
        units = guard.units(reply, lang)
        grams += [" ".join(units[i : i + 2]) for i in range(len(units) - 1)]
    return len(set(grams)) / max(1, len(grams))


async def run_variant(engine: Any, examples: list[tdata.ReplyExample], name: str) -> list[dict[str, Any]]:
    from handlers.reply import ReplyStage

    recording = _Recording(engine)
    stage = ReplyStage(recording, _NoMemory(), ReplySettings(), CrisisSettings(), SystemClock())  # type: ignore[arg-type]
    rows = []
    for n, ex in enumerate(examples, 1):
        history = ex.turns()
        message = InboundMessage(message_id=ex.id, chat_id=ex.id, sender_id=ex.id, text=ex.message,
                                 sent_at=datetime.now(timezone.utc))
        turn = Turn(message=message, text=ex.message, lang=ex.lang, strategy=Strategy(ex.strategy),
                    knowledge=tuple(ex.knowledge))
        before = Counter(stage.rejections)
        recording.replies = []
        started = time.perf_counter()
        sent, source = await stage.compose(turn, history, Strategy(ex.strategy))
        seconds = time.perf_counter() - started
        if source == "unavailable":  # a failure is not a reply: counting it as one would flatter nothing
            raise RuntimeError(f"{name}: the model did not answer example {ex.id}")
        fell_back = source == "fallback"
        sources = [t.text for t in history[:-1]] + list(ex.knowledge)
        raw = recording.replies[0] if recording.replies else ""
        rows.append({
            "id": ex.id, "lang": ex.lang, "strategy": ex.strategy, "history": [list(h) for h in ex.history],
            "knowledge": list(ex.knowledge), "message": ex.message, "first_reply": raw, "reply": sent,
            "fallback": fell_back, "rejections": sorted((Counter(stage.rejections) - before).elements()),
            "seconds": round(seconds, 3), "needs_person": turn.needs_person,
            "first_echo": guard.echoes(raw, ex.message, ex.lang),
            "first_invented": sorted(guard.invented(raw, [ex.message, *sources])),
            "first_wrong_language": bool(raw.strip()) and guard.detect_lang(raw) != ex.lang,
            "echo": guard.echoes(sent, ex.message, ex.lang),
            "invented": sorted(guard.invented(sent, [ex.message, *sources])),
            "wrong_language": guard.detect_lang(sent) != ex.lang,
        })
        if n % 20 == 0:
            print(f"{name}: {n}/{len(examples)}", flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(key: str) -> float:
        return sum(bool(r[key]) for r in rows) / max(1, len(rows))

    replies = [r["reply"] for r in rows]
    counts = Counter(replies)
    seconds = sorted(r["seconds"] for r in rows)
    lang = rows[0]["lang"] if rows and len({r["lang"] for r in rows}) == 1 else "en"
    return {
        "n": len(rows),
        "first_echo": rate("first_echo"), "first_invented": rate("first_invented"),
        "first_wrong_language": rate("first_wrong_language"),
        "echo": rate("echo"), "invented": rate("invented"), "wrong_language": rate("wrong_language"),
        "fallback": rate("fallback"),
        "repeated": sum(1 for r in replies if counts[r] > 1) / max(1, len(replies)),
        "distinct2": distinct2(replies, lang),
        "median_chars": statistics.median(len(r) for r in replies) if replies else 0,
        "p50_s": seconds[len(seconds) // 2] if seconds else 0.0,
        "p95_s": seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))] if seconds else 0.0,
    }


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    head = ("| variant | strategy | lang | n | echo (first) | invented (first) | wrong lang (first) | echo | invented "
            "| wrong lang | fallback | repeated | distinct-2 | median chars | p50 s | p95 s |")
    lines = [head, "|" + "---|" * 16]
    for variant, rows in results.items():
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            groups[(r["strategy"], r["lang"])].append(r)
        for key in sorted(groups) + [("all", "all")]:
            part = rows if key == ("all", "all") else groups[key]
            s = summarise(part)
            pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
            lines.append(
                f"| {variant} | {key[0]} | {key[1]} | {s['n']} | {pct(s['first_echo'])} | {pct(s['first_invented'])} "
                f"| {pct(s['first_wrong_language'])} | {pct(s['echo'])} | {pct(s['invented'])} "
                f"| {pct(s['wrong_language'])} | {pct(s['fallback'])} | {pct(s['repeated'])} | {s['distinct2']:.2f} "
                f"| {s['median_chars']:.0f} | {s['p50_s']:.2f} | {s['p95_s']:.2f} |"
            )
    return "\n".join(lines)


SOURCES = {"eval": "train/data/replies_eval.jsonl", "validation": "the validation rows of train/data/replies.jsonl"}


def examples_for(which: str) -> list[tdata.ReplyExample]:
    if which == "validation":
        return [r for r in tdata.reply_examples() if tdata.is_validation(r.message)]
    return tdata.reply_eval()


def build_engine(adapter: str, model_dir: str | None, timeout: float, handoff_head: str = "auto") -> Any:
    from bot.model.engine import AsyncEngine, ModelEngine
    from bot.model.loader import load_model

    settings = ModelSettings(path=model_dir, adapter=adapter)
    loaded = load_model(settings)
    return AsyncEngine(ModelEngine(loaded, settings, SentimentSettings(readout="none", crisis_head="none",
                                                                               handoff_head=handoff_head)), timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few examples on a tiny model")
    parser.add_argument("--model-dir", help="a transformers checkpoint (default: the embedded model)")
    parser.add_argument("--variants", default="base,tuned", help="base (adapter none), tuned (the shipped adapter)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N examples (0: all)")
    parser.add_argument("--examples", choices=["eval", "validation"], default="eval",
                        help="replies_eval (the report) or the validation rows of the training data")
    parser.add_argument("--adapter", default="auto", help="the tuned variant's adapter: auto (shipped) or a folder")
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--handoff-head", default="auto",
                        help="auto (the one shipped for the served weights), none, or a head file")
    args = parser.parse_args(argv)
    into_report = args.out.resolve() == BENCH
    # the report's files hold the shipped adapter's replies to replies_eval, on the embedded model
    other_run = {"--examples validation": args.examples != "eval", "--adapter": args.adapter != "auto",
                 "--model-dir": bool(args.model_dir), "--smoke": args.smoke, "--limit": bool(args.limit),
                 "--handoff-head": args.handoff_head != "auto"}
    if into_report and any(other_run.values()):
        named = ", ".join(k for k, v in other_run.items() if v)
        parser.error(f"{named}: not the report's replies; give --out another folder")
    args.out.mkdir(parents=True, exist_ok=True)
    examples = examples_for(args.examples)
    if args.smoke:
        examples = examples[:: max(1, len(examples) // 4)][:4]
    elif args.limit:  # a spread over every strategy and language, not the first block
        examples = examples[:: max(1, len(examples) // args.limit)][: args.limit]
    results: dict[str, list[dict[str, Any]]] = {}
    for other in ("base", "tuned"):  # a variant run earlier on the same examples still shows in the table
        path = args.out / f"replies_{other}.jsonl"
        if other not in args.variants.split(",") and path.exists() and not args.smoke:
            earlier = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            if [r["id"] for r in earlier] == [ex.id for ex in examples]:
                results[other] = earlier
    load = os.getloadavg()[0]
    for variant in args.variants.split(","):
        engine = build_engine("none" if variant == "base" else args.adapter, args.model_dir, timeout=120,
                              handoff_head=args.handoff_head)
        try:
            results[variant] = asyncio.run(run_variant(engine, examples, variant))
        finally:
            engine.close()
        path = args.out / f"replies_{variant}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results[variant]), encoding="utf-8")
        print(f"wrote {path}")
    sizes = ", ".join(f"{name}: {len(rows)} examples" for name, rows in results.items())
    adapter_name = "the shipped adapter" if args.adapter == "auto" else f"adapter {args.adapter}"
    text = (f"Load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f} (the last variant's run); "
            f"{SOURCES[args.examples]} ({sizes}); tuned: {adapter_name}.\n\n" + table(results) + "\n")
    (args.out / "REPLIES.md").write_text(text, encoding="utf-8")
    if into_report:
        update_sections(args.out / "REPORT.md")
    print(text)


if __name__ == "__main__":
    main()
