"""Mood accuracy of the fine-tuned model beside the frozen readout on the base weights.

    .venv/bin/python -m bench.mood            # writes bench/MOOD.md and bench/mood_results.json

The dev sets in ../shared/eval are scored here once, after every knob was chosen on validation
rows carved from the training data (train/data.py, train/heads.py). Per set:
- positive-vs-negative accuracy (the two polar scores only, as the older report scored them);
- the printed label's accuracy (neutral counts as wrong on these two-class sets) and the share of
  neutral labels;
- on our 3-class chat set, macro-F1; expected calibration error of the printed confidence.
Variants: the base weights with the frozen readout that shipped before, the fine-tuned model at
int8 (what serves), and the fine-tuned model with dense bf16 weights (the int8 check).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from bench import methods, sources
from bench.report import update_sections
from bot.config import ModelSettings, SentimentSettings

BENCH = Path(__file__).resolve().parent
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "before": ("frozen readout, base weights (before)", {"adapter": "none"}),
    "int8": ("fine-tuned + heads, int8 (serving)", {}),
    "dense": ("fine-tuned + heads, dense weights", {"quantize": "none"}),
}


def ece(confidence: list[float], correct: list[bool], bins: int = 10) -> float:
    total = 0.0
    for i in range(bins):
        inside = [k for k, c in enumerate(confidence) if i / bins < c <= (i + 1) / bins]
        if inside:
            acc = sum(correct[k] for k in inside) / len(inside)
            conf = sum(confidence[k] for k in inside) / len(inside)
            total += len(inside) / len(confidence) * abs(acc - conf)
    return total


def score_set(engine: Any, rows: list[dict[str, str]], three: bool) -> dict[str, Any]:
    texts = [r["text"] for r in rows]
    gold = [r["label"] for r in rows]
    probs = torch.cat([engine.mood_probs(texts[i : i + 32]) for i in range(0, len(texts), 32)])
    printed = [engine.sentiment_of(row) for row in probs]  # what classify() prints, from the same pass
    labels = [s.label.value for s in printed]
    out: dict[str, Any] = {"n": len(rows)}
    out["printed_accuracy"] = sum(a == b for a, b in zip(labels, gold)) / len(rows)
    out["neutral_share"] = labels.count("neutral") / len(rows)
    out["ece"] = ece([s.confidence for s in printed], [a == b for a, b in zip(labels, gold)])
    if three:
        out["macro_f1"] = methods.score(gold, labels, ["positive", "negative", "neutral"])["macro_f1"]
    else:
        binary = ["positive" if p[0] >= p[1] else "negative" for p in probs]
        out["binary_accuracy"] = sum(a == b for a, b in zip(binary, gold)) / len(rows)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names from VARIANTS")
    parser.add_argument("--previous", help="keep the variants of the last run, those re-run now renamed '<name> [PREVIOUS]'")
    args = parser.parse_args(argv)
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model

    sets = sources.scored_sets()
    results: dict[str, Any] = {"load_start": os.getloadavg()[0], "variants": {}}
    for key in args.variants.split(","):
        name, overrides = VARIANTS[key]
        settings = ModelSettings(**overrides)
        engine = ModelEngine(load_model(settings), settings, SentimentSettings())
        started = time.perf_counter()
        results["variants"][name] = {
            "head": engine.readout.note if engine.readout else "label tokens",
            "sets": {s: score_set(engine, rows, s.startswith("chat")) for s, rows in sets.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(name, json.dumps(results["variants"][name]["sets"], indent=None), flush=True)
    results["load_end"] = os.getloadavg()[0]
    old_path = args.out / "mood_results.json"
    if args.previous and old_path.exists():  # the earlier figures stay beside the new ones
        for name, data in json.loads(old_path.read_text(encoding="utf-8"))["variants"].items():
            if name in results["variants"]:
                results["variants"][f"{name} [{args.previous}]"] = data
            elif not name.endswith("]"):
                results["variants"][name] = data
    (args.out / "mood_results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    lines = [f"Load average {results['load_start']:.2f} at start, {results['load_end']:.2f} at end. "
             "Dev sets scored at the end of a session, after every knob was chosen on training-data validation splits (bench/SELECTION.md). They have been scored seven times (2026-11-22; on 2026-11-23 after the mood mix was chosen, after the second adapter, after the third adapter shipped, after the mood mix grew from 600 to 3000 rows a packaged source and label, and after the sixth adapter shipped; on 2026-11-24 after the mood head became five small networks); no knob was chosen on them, but seven looks make them less clean than a first scoring."
             + (f" Rows marked [{args.previous}] are the previous run's figures, kept by --previous." if args.previous else ""), "",
             "| set | variant | pos-vs-neg accuracy | printed-label accuracy | neutral share | chat macro-F1 | ECE |",
             "|---|---|---|---|---|---|---|"]
    for s in sets:
        for name, data in results["variants"].items():
            r = data["sets"][s]
            binary = f"{r['binary_accuracy']:.3f}" if "binary_accuracy" in r else "–"
            f1 = f"{r['macro_f1']:.3f}" if "macro_f1" in r else "–"
            lines.append(f"| {s} | {name} | {binary} | {r['printed_accuracy']:.3f} | {r['neutral_share']:.3f} | {f1} "
                         f"| {r['ece']:.3f} |")
    (args.out / "MOOD.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    update_sections(args.out / "REPORT.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
