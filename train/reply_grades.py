"""Build train/data/reply_grades.jsonl: every reply to a reply-validation prompt that blind reviewers
graded (bench/ab_*_validation.jsonl, bench/validation_read.jsonl), one row per (prompt, reply) with
the mean of its grades. The reply head (`python -m train.heads --heads reply`) learns from it.

Only validation prompts were ever graded this way: replies_eval's grades are the report's and never
train anything. The files are named, not globbed, so that a later A/B does not change the head
silently: `python -m train.reply_grades` rebuilds the same file from the same grades."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from train import data as tdata

BENCH = tdata.ROOT / "bench"
OUT = tdata.DATA_DIR / "reply_grades.jsonl"
SOURCES = (
    "ab_adapter5_validation.jsonl", "ab_adapter6_validation.jsonl", "ab_adapter7_validation.jsonl",
    "ab_c_validation.jsonl", "ab_closing_question_en_validation.jsonl", "ab_closing_question_validation.jsonl",
    "ab_contrast_validation.jsonl", "ab_contrast_validation2.jsonl", "ab_guard_validation.jsonl",
    "ab_handoff_validation.jsonl", "ab_offer_identity_validation.jsonl", "ab_penalty10_validation.jsonl",
    "ab_penalty13_validation.jsonl", "ab_penalty_validation.jsonl", "ab_quote_validation.jsonl",
    "validation_read.jsonl",
)
PROMPT_KEYS = ("id", "lang", "strategy", "history", "knowledge", "message")


def graded_replies(row: dict[str, Any]) -> list[tuple[str, list[float]]]:
    """(reply, grades) pairs of one A/B row (`<name>` and `<name>_grades`) or of one read reply."""
    if "grade" in row:
        return [(row["reply"], [row["grade"]])]
    pairs = []
    for key, grades in row.items():
        if key.endswith("_grades"):
            name = key[: -len("_grades")]
            reply = row[name] if name in row else row[f"{name}_path"]  # ab_c names its replies torch_path, c_path
            pairs.append((reply, list(grades)))
    return pairs


def build(sources: tuple[str, ...] = SOURCES) -> list[dict[str, Any]]:
    grades: dict[tuple[str, str], list[float]] = defaultdict(list)
    prompts: dict[str, dict[str, Any]] = {}
    for name in sources:
        for row in tdata.load_jsonl(BENCH / name):
            if not tdata.is_validation(row["message"]):
                raise ValueError(f"{name}: {row['id']} is not a reply-validation prompt")
            prompts[row["id"]] = {k: row[k] for k in PROMPT_KEYS}
            for reply, given in graded_replies(row):
                grades[(row["id"], reply)].extend(given)
    drop = tdata.banned()
    out = []
    for (prompt_id, reply), given in grades.items():
        row = {**prompts[prompt_id], "reply": reply, "grade": round(sum(given) / len(given), 4), "grades": len(given)}
        texts = [row["message"], reply, *(text for _, text in row["history"])]
        if not any(tdata.digest(t) in drop for t in texts):
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = build()
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {args.out}: {len(rows)} graded replies to {len({r['id'] for r in rows})} prompts")


if __name__ == "__main__":
    main()
