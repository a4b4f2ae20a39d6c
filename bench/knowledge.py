"""`python -m bench.knowledge`: how well the FAQ retrieval finds answers and when it hands off.

Runs paraphrased questions (bench/data/knowledge_questions.yaml, zh and en) against the sample FAQ
(examples/faq.yaml) and writes bench/KNOWLEDGE.md: top-1 accuracy on answerable questions, and for
a sweep of thresholds what happens to every question (answered right, answered wrong, handed off)
with the hand-off precision (hand-offs that were right to hand off) and recall.

Retrievers plug in through RETRIEVERS: a name and a factory from FAQ entries to anything with
`search(query, k) -> list[Hit]` (bot.knowledge.Retriever). Compared here: bm25s + jieba, and the
served model's own hidden states as embeddings (cosine of mean-pooled states after layer 8).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from bot.config import KnowledgeSettings
from bot.knowledge import Bm25Index, Entry, Hit, Retriever, is_question, load_entries

ROOT = Path(__file__).resolve().parent.parent
FAQ = ROOT / "examples" / "faq.yaml"
QUESTIONS = ROOT / "bench" / "data" / "knowledge_questions.yaml"
REPORT = ROOT / "bench" / "KNOWLEDGE.md"
THRESHOLDS = [0.0, 0.05, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5]

# the FAQ's entries by topic, in file order: two entries (zh, en) a topic
TOPICS = ["hours", "phone", "returns", "shipping", "address", "invoice", "payment"]

class ModelEmbedding:
    """The served model's hidden states after layer 8, mean-pooled over the text's own tokens; cosine."""

    LAYER = 8

    def __init__(self, entries: list[Entry]) -> None:
        from bot.config import ModelSettings, SentimentSettings
        from bot.model.engine import ModelEngine
        from bot.model.loader import load_model

        settings = ModelSettings(decoder="transformers")  # reads hidden states through transformers' model
        self.engine = ModelEngine(load_model(settings), settings, SentimentSettings(readout="none", crisis_head="none"))
        self.entries = entries
        self.matrix = self.embed([f"{e.question} {e.answer}" for e in entries])

    def embed(self, texts: list[str]) -> Any:
        import torch

        rows = []
        body = self.engine.model.get_decoder()
        for text in texts:
            ids = torch.tensor([self.engine.encode(text, special=True)])
            with torch.inference_mode():
                states = body(input_ids=ids, output_hidden_states=True).hidden_states[self.LAYER]
            vector = states[0, 1:].float().mean(0)
            rows.append(vector / vector.norm())
        return torch.stack(rows)

    def search(self, query: str, k: int = 3) -> list[Hit]:
        scores = self.matrix @ self.embed([query])[0]
        best = scores.argsort(descending=True)[:k]
        return [Hit(self.entries[int(i)], float(scores[i])) for i in best]


RETRIEVERS: dict[str, Callable[[list[Entry]], Retriever]] = {
    "bm25s + jieba": Bm25Index,
    "model hidden states (layer 8, cosine)": ModelEmbedding,
}


@dataclass
class Row:
    question: str
    topic: str | None
    found: str | None  # the best hit's topic
    score: float


def topic_of(entries: list[Entry], entry: Entry) -> str:
    return TOPICS[entries.index(entry) // 2]


def run(retriever: Retriever, entries: list[Entry], questions: list[dict[str, str | None]]) -> tuple[list[Row], float]:
    rows = []
    started = time.perf_counter()
    for item in questions:
        hits = retriever.search(str(item["q"]), 1)
        best = hits[0] if hits else None
        rows.append(Row(str(item["q"]), item["topic"], topic_of(entries, best.entry) if best else None,
                        best.score if best else 0.0))
    return rows, (time.perf_counter() - started) / max(1, len(questions)) * 1000


def outcome(rows: list[Row], threshold: float) -> dict[str, float]:
    right = wrong = missed = handoff_ok = small_talk = 0
    for row in rows:
        answered = row.found is not None and row.score >= threshold
        if row.topic is not None:
            if answered and row.found == row.topic:
                right += 1
            elif answered:
                wrong += 1
            else:
                missed += 1
        elif answered:
            wrong += 1
        elif is_question(row.question):
            handoff_ok += 1
        else:
            small_talk += 1  # not a question: no hand-off, the model answers without facts
    handoffs = handoff_ok + missed
    unanswerable = sum(r.topic is None for r in rows)
    return {
        "right": right, "wrong": wrong, "missed": missed, "handoff_ok": handoff_ok,
        "precision": handoff_ok / handoffs if handoffs else 1.0,
        "recall": handoff_ok / unanswerable if unanswerable else 1.0,
    }


def report(results: dict[str, tuple[list[Row], float]], default: float) -> str:
    answerable = sum(r.topic is not None for r in next(iter(results.values()))[0])
    unanswerable = sum(r.topic is None for r in next(iter(results.values()))[0])
    lines = [
        "# Knowledge base retrieval",
        "",
        f"Measured by `python -m bench.knowledge` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{answerable} paraphrased questions the sample FAQ answers and {unanswerable} it does not "
        f"(zh and en, `bench/data/knowledge_questions.yaml`), against `examples/faq.yaml` "
        f"({len(TOPICS)} topics, each in zh and en). A question counts as answered right when the best "
        "entry is about its topic, in either language.",
        "",
        "| retriever | top-1 accuracy (answerable) | ms / query |",
        "|---|---|---|",
    ]
    for name, (rows, ms) in results.items():
        top1 = sum(r.found == r.topic for r in rows if r.topic is not None) / answerable
        lines.append(f"| {name} | {top1:.3f} ({round(top1 * answerable)}/{answerable}) | {ms:.2f} |")
    for name, (rows, _) in results.items():
        lines += [
            "",
            f"## {name}: the threshold (`knowledge.threshold`, default {default})",
            "",
            "Answered: the best entry's normalised score reaches the threshold. A hand-off is right when the "
            "FAQ cannot answer the question; precision = right hand-offs / all hand-offs, recall = right "
            "hand-offs / unanswerable questions.",
            "",
            "| threshold | answered right | answered wrong | answerable but handed off | hand-off precision | hand-off recall |",
            "|---|---|---|---|---|---|",
        ]
        for t in sorted(set(THRESHOLDS + [default])):
            o = outcome(rows, t)
            mark = " **(default)**" if t == default else ""
            lines.append(f"| {t:.3f}{mark} | {o['right']} | {o['wrong']} | {o['missed']} | {o['precision']:.2f} | {o['recall']:.2f} |")
        misses = [r for r in rows if (r.topic is not None and (r.found != r.topic or r.score < default))
                  or (r.topic is None and r.score >= default)]
        if misses:
            lines += ["", f"Mistakes at the default threshold ({len(misses)}):", ""]
            lines += [f"- {r.question!r}: wanted {r.topic or 'hand-off'}, best {r.found or '-'} ({r.score:.2f})" for r in misses]
    lines += [
        "",
        "Caveat: the default threshold was chosen on these same questions (a wrong answer costs more than a "
        "needless hand-off, so the default takes the first threshold with at most one wrong answer); with "
        "your own FAQ, write a few paraphrases of your own and re-run with `--faq` and `--questions`.",
        "",
        "The hidden-state retriever's scores are cosines, not bm25's normalised coverage, so its threshold "
        "table is for reading its top-1 accuracy beside bm25's; the bot uses bm25s + jieba.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.knowledge", description=__doc__.splitlines()[0])
    parser.add_argument("--faq", type=Path, default=FAQ)
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--only", choices=list(RETRIEVERS), help="one retriever (the hidden-state one loads the model)")
    args = parser.parse_args(argv)
    entries = load_entries(args.faq)
    questions = yaml.safe_load(args.questions.read_text(encoding="utf-8"))
    chosen = {args.only: RETRIEVERS[args.only]} if args.only else RETRIEVERS
    results = {name: run(factory(entries), entries, questions) for name, factory in chosen.items()}
    text = report(results, KnowledgeSettings().threshold)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
