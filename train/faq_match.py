"""Fit the FAQ match head: does an FAQ entry's answer tell the customer what they asked?

    .venv/bin/python -m train.faq_match            # the embedded model with its shipped adapter (~5 min)
    .venv/bin/python -m train.faq_match --smoke    # seconds, on a tiny random model (make test)

Data: train/data/faq_match/*.yaml, 24 fictional businesses written for this project (none is a tea
shop, a phone-repair shop or a pet groomer, the FAQs of bench/faq.py), each with 7 topics in Chinese
and English and about 65 customer questions labelled with the topic that answers them, or null.
A business is a validation business when the hash of its name says so (about a quarter): the head
must judge FAQs it has never seen.

Pairs: each question with the best BM25 entries in its language (bot/knowledge.py; the three best,
and the right entry where BM25 missed it), labelled by whether that entry answers it. Features:
the normed states after MATCH_LAYERS of the served weights at the answer position of the match
prompt (bot/prompts.py), then the BM25 score; a logistic regression with L2 decay DECAY.

The threshold, chosen on the validation businesses' top BM25 entries by a rule fixed before they
were read, is the lowest on a 0.05 grid whose precision is at least that of BM25 at
knowledge.answer_threshold (0.2): the same precision as before, more questions answered. From it an
entry's facts go into the reply prompt and its answer may be sent word for word (`threshold` and
`sure` alike). The same rule against BM25 at knowledge.threshold (0.125) gave 0.25 for the prompt,
but on bench/faq.py's validation split the questions between 0.25 and 0.5 had the right entry for 8
of 19, and the model's answers there invented ("Tea tasting classes are offered on weekdays only"):
bench/NOTES.md, "An FAQ match head".
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train/finetune.py: spinning threads stall on 2 cores

import argparse  # noqa: E402
import logging  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import torch  # noqa: E402

from bot.knowledge import Bm25Index, Entry  # noqa: E402
from bot.model.heads import Readout, shipped_path  # noqa: E402
from bot.text import detect_lang  # noqa: E402
from train import data as tdata  # noqa: E402
from train.heads import auc, fit  # noqa: E402

log = logging.getLogger("train.faq_match")
CANDIDATES = 3
# among L8, L10, L12, L10+12 and all three, with decays 0.001 to 1: the best top-entry AUC on the
# validation businesses (bench/NOTES.md, "An FAQ match head")
DECAY = 0.1
GRID = [i / 20 for i in range(1, 20)]
BM25_KNOWLEDGE, BM25_ANSWER = 0.125, 0.2  # the BM25 defaults of knowledge.threshold and answer_threshold


def match_layers(depth: int) -> tuple[int, ...]:
    """Outputs after 10 and 12 of Gemma 3 270M's 18 layers."""
    return tuple(sorted({max(1, depth * 5 // 9), max(1, depth * 2 // 3)}))


@dataclass(frozen=True)
class Pair:
    business: str
    validation: bool
    question: str
    answer: str
    score: float  # the entry's normalised BM25 score for the question
    top: bool  # the best BM25 entry in the question's language
    answers: bool


def load_pairs(businesses: Sequence[dict[str, Any]]) -> list[Pair]:
    held = tdata.faq_banned()
    pairs = []
    for business in businesses:
        rows = business["entries"]
        entries = [Entry(str(e["question"]), str(e["answer"]), tuple(str(k) for k in e.get("keywords") or ())) for e in rows]
        topic = {entry: str(row["topic"]) for entry, row in zip(entries, rows)}
        index = Bm25Index(entries)
        validation = tdata.is_validation_business(str(business["business"]))
        for row in business["questions"]:
            text, wanted = str(row["q"]), None if row["topic"] is None else str(row["topic"])
            if tdata.digest(text) in held:
                continue
            lang = detect_lang(text)
            hits = [h for h in index.search(text, k=len(entries)) if detect_lang(h.entry.question) == lang]
            scores = {h.entry: h.score for h in hits}
            chosen = {h.entry: h.score for h in hits[:CANDIDATES]}
            for entry in entries:  # the right entry too, where BM25 did not rank it high
                if topic[entry] == wanted and detect_lang(entry.question) == lang:
                    chosen.setdefault(entry, scores.get(entry, 0.0))
            for rank, (entry, score) in enumerate(chosen.items()):
                pairs.append(Pair(str(business["business"]), validation, text, entry.answer, score,
                                  rank == 0 and score > 0, topic[entry] == wanted))
    return pairs


def precision(score: torch.Tensor, right: torch.Tensor, bar: float) -> float:
    chosen = score >= bar
    return float(right[chosen].float().mean()) if bool(chosen.any()) else 1.0


def lowest_bar(p: torch.Tensor, bm25: torch.Tensor, right: torch.Tensor, bm25_bar: float) -> float:
    """The lowest probability on GRID whose precision on the top entries matches BM25's at `bm25_bar`."""
    target = precision(bm25, right, bm25_bar)
    return next((bar for bar in GRID if precision(p, right, bar) >= target), GRID[-1])


def fit_head(x: torch.Tensor, pairs: Sequence[Pair], layers: tuple[int, ...], fingerprint: str) -> Readout:
    y = torch.tensor([0 if pair.answers else 1 for pair in pairs])  # label 0 = answers: probs[:, 0]
    train = torch.tensor([not pair.validation for pair in pairs])
    head = Readout(layers, *fit(x[train], y[train], 2, decay=DECAY), ("answers", "other"), fingerprint, extra=("bm25",))
    top = torch.tensor([pair.validation and pair.top for pair in pairs])
    p, bm25, right = head.probs(x[top])[:, 0], x[top, -1], y[top] == 0
    head.threshold = head.sure = lowest_bar(p, bm25, right, BM25_ANSWER)

    def share(score: torch.Tensor, bar: float) -> str:
        chosen = score >= bar
        return f"{int(right[chosen].sum())} right of {int(chosen.sum())}"

    head.note = (
        f"FAQ match head on layers {list(layers)} + BM25: {int(train.sum())} training pairs, L2 decay {DECAY:g}; "
        f"validation businesses' top entries ({int(top.sum())}, {int(right.sum())} answer): AUC {auc(p, right):.3f} "
        f"(BM25 {auc(bm25, right):.3f}); threshold {head.threshold:.2f}: {share(p, head.threshold)} "
        f"(BM25 {BM25_ANSWER}: {share(bm25, BM25_ANSWER)}; BM25 {BM25_KNOWLEDGE}: {share(bm25, BM25_KNOWLEDGE)})"
    )
    log.info(head.note)
    return head


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny random model and one business (make test)")
    parser.add_argument("--model-dir", type=Path, help="a transformers checkpoint (default: the embedded model)")
    parser.add_argument("--adapter", default="auto", help="auto (the shipped one), none, or an adapter folder")
    parser.add_argument("--out", type=Path, help="folder for the head (default: bot/readouts/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from bot.config import ModelSettings, SentimentSettings
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model

    settings = ModelSettings(path=str(args.model_dir) if args.model_dir else None, adapter=args.adapter,
                             reply_head="none", match_head="none")
    loaded = load_model(settings)
    engine = ModelEngine(loaded, settings, SentimentSettings(readout="none", crisis_head="none", handoff_head="none"))
    layers = match_layers(loaded.model.config.num_hidden_layers)
    fingerprint = loaded.fingerprint or loaded.cache_key or "unknown"
    pairs = load_pairs(tdata.faq_businesses())
    if args.smoke:  # two businesses, one of each split, a few questions each
        names = [next(p.business for p in pairs if p.validation == v) for v in (False, True)]
        pairs = [p for p in pairs if p.business in names][:40] + [p for p in pairs if p.business == names[1]][:40]
    log.info("%d pairs (%d answer) from %d businesses; features on layers %s (%s)", len(pairs),
             sum(p.answers for p in pairs), len({p.business for p in pairs}), layers, loaded.name)
    x = features(engine, pairs, layers)
    head = fit_head(x, pairs, layers, fingerprint)
    out = shipped_path(fingerprint, "match")
    out = args.out / out.name if args.out else out
    head.save(out)
    log.info("wrote %s", out)


def features(engine: Any, pairs: Sequence[Pair], layers: tuple[int, ...], batch: int = 32) -> torch.Tensor:
    from tqdm import tqdm

    rows = []
    for start in tqdm(range(0, len(pairs), batch), desc="match features", unit="batch", mininterval=10):
        part = pairs[start : start + batch]
        rows.append(engine.match_features([(p.question, p.answer, p.score) for p in part], layers))
    return torch.cat(rows)


if __name__ == "__main__":
    main()
