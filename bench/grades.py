"""Reply grades by reading: the summary page and the full listing, built from the grade files.

    .venv/bin/python -m bench.grades          # writes bench/GRADES.md and bench/GRADED_REPLIES.md

A reader grades every reply of a `python -m bench.replies` run (bench/replies_<variant>.jsonl)
with the rubric below and writes one line per reply to bench/grades_<variant>.jsonl:
{"id": ..., "grade": 0|1|2, "why": "one line"}. This script only counts and lists; the grades
come from reading. GRADED_REPLIES.md lists every reply with its grade and reason, so that anyone
can check a grade against the text it was given for.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.report import update_sections

BENCH = Path(__file__).resolve().parent
# (file suffix, what it is); a variant whose files are missing is left out
VARIANTS = [
    ("base", "base model, few-shot prompt"),
    ("tuned100", "fine-tuned, first adapter (100 steps, previous session)"),
    ("tuned2", "fine-tuned, second adapter (1,136 examples, step 280), shipped until 2026-11-23"),
    ("tuned3", "fine-tuned, third adapter (2,835 examples, step 360), on torch's kernels"),
    ("tuned3_c", "the third adapter decoded in C (bot/model/kernels.c), as the bot served it until the sixth shipped"),
    ("tuned6_pp", "the sixth adapter decoded in C with the repetition penalty on the message's tokens too, "
                  "as served until the penalty change"),
    ("tuned_greedy", "the shipped adapter with every guard rule below, the greedy reply only, as served until the reply "
                     "head (2026-11-24)"),
    ("tuned4", "the shipped adapter with every guard rule below and the first reply chosen by the reply head among "
               "four first-token branches, as served until six (2026-11-24)"),
    ("tuned", "fine-tuned, shipped adapter: the sixth (the third's data with the comfort replies rewritten, seed 1), "
              "decoded in C, the first reply's repetition penalty on its own tokens only, the guard's quote rule and its "
              "unsupported-answer, needless-hand-off and invented-offer rules, the needless-hand-off rule with the hand-off "
              "head, comfort and celebrations without their closing question, reply.identity for questions about the bot, offers judged clause by clause in Chinese, "
              "the curated line sent least as the fallback, the first reply chosen by the reply head among six "
              "first-token branches, and the guard's denies-knowledge rule"),
]
RUBRIC = """\
- **2** = fits and is specific: speaks to this message's concrete situation in the right spirit for the strategy (comfort a negative mood, congratulate good news, answer a plain question), natural, no invented facts; a question the bot cannot know gets an honest hand-off; with knowledge given, uses its facts correctly.
- **1** = acceptable but generic: harmless and on-strategy but could answer many messages (e.g. a curated fallback line), or slightly awkward wording, or only partly addresses the message.
- **0** = wrong, echo, invented or harmful: off-topic, restates the user's message as its own, wrong language, contradicts or invents facts (numbers, times, prices, policies, app steps not in message/history/knowledge), wrong strategy, incoherent, or unsafe.

Borderline cases: a curated fallback line is graded 1 even where a hand-off was the right move, because it is generic. A needless hand-off, where the knowledge held the answer, is graded 1. A reply whose main content is nonsense, an invented promise ("I'll find a repairman") or a customer-service template applied to a personal message is graded 0. A reply with one sound sentence and one odd one is graded 1."""


def load(variant: str, bench: Path) -> list[dict[str, Any]] | None:
    replies_path, grades_path = bench / f"replies_{variant}.jsonl", bench / f"grades_{variant}.jsonl"
    if not replies_path.exists() or not grades_path.exists():
        return None
    grades = {g["id"]: g for g in map(json.loads, grades_path.read_text(encoding="utf-8").splitlines())}
    rows = [json.loads(line) for line in replies_path.read_text(encoding="utf-8").splitlines()]
    missing = [r["id"] for r in rows if r["id"] not in grades]
    if missing:
        raise SystemExit(f"{grades_path.name}: no grade for {len(missing)} replies, e.g. {missing[:3]}")
    for r in rows:
        grade = grades[r["id"]]
        if grade["grade"] not in (0, 1, 2):
            raise SystemExit(f"{grades_path.name}: grade {grade['grade']!r} for {r['id']} is not 0, 1 or 2")
        r["grade"], r["why"] = grade["grade"], grade.get("why", "")
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| strategy | language | n | mean | 0 | 1 | 2 |", "|---|---|---|---|---|---|---|"]
    for strategy in ("comfort", "celebrate", "plain", "all"):
        for lang in ("zh", "en", "both"):
            part = [r for r in rows if strategy in ("all", r["strategy"]) and lang in ("both", r["lang"])]
            if not part:
                continue
            counts = [sum(r["grade"] == g for r in part) for g in (0, 1, 2)]
            mean = sum(r["grade"] for r in part) / len(part)
            bold = "**" if strategy == "all" and lang == "both" else ""
            lines.append(f"| {bold}{strategy}{bold} | {bold}{lang}{bold} | {len(part)} | {bold}{mean:.2f}{bold} | "
                         + " | ".join(map(str, counts)) + " |")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def listing(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| id | message (history) | knowledge | reply | grade | why |", "|---|---|---|---|---|---|"]
    for r in rows:
        history = " / ".join(f"{role}: {text}" for role, text in r.get("history") or [])
        message = r["message"] + (f" ({history})" if history else "")
        knowledge = " / ".join(r.get("knowledge") or []) or "—"
        reply = r["reply"] + (" *(fallback)*" if r.get("fallback") else "")
        lines.append(f"| {r['id']} | {_cell(message)} | {_cell(knowledge)} | {_cell(reply)} | {r['grade']} | "
                     f"{_cell(r['why'])} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, default=BENCH)
    parser.add_argument("--grader", default="an AI reviewer reading each reply (not the people who wrote the data)")
    args = parser.parse_args(argv)
    found = [(name, what, rows) for name, what in VARIANTS if (rows := load(name, args.bench)) is not None]
    page = ["# Reply grades by reading", "",
            f"Every reply that `python -m bench.replies` recorded was read and graded 0, 1 or 2 by {args.grader}. "
            "Every reply, with its grade and a one-line reason, is in `bench/GRADED_REPLIES.md`; the grades alone "
            "are in `bench/grades_<variant>.jsonl` and the replies in `bench/replies_<variant>.jsonl`.", "",
            "## Rubric", "", RUBRIC, ""]
    full = ["# Every graded reply", "", "Built by `python -m bench.grades` from bench/replies_<variant>.jsonl and "
            "bench/grades_<variant>.jsonl. The rubric is in bench/GRADES.md.", ""]
    for name, what, rows in found:
        mean = sum(r["grade"] for r in rows) / len(rows)
        page += [f"## {what} (`{name}`): {len(rows)} replies, mean {mean:.2f}", "", *summary(rows), ""]
        full += [f"## {what} (`{name}`)", "", *listing(rows), ""]
    common = set.intersection(*({r["id"] for r in rows} for _, _, rows in found)) if len(found) > 1 else set()
    if common:
        page += [f"On the {len(common)} examples that every variant above answered:", ""]
        for _name, what, rows in found:
            part = [r["grade"] for r in rows if r["id"] in common]
            page.append(f"- {what}: mean {sum(part) / len(part):.2f}")
        page.append("")
    (args.bench / "GRADES.md").write_text("\n".join(page), encoding="utf-8")
    (args.bench / "GRADED_REPLIES.md").write_text("\n".join(full), encoding="utf-8")
    update_sections(args.bench / "REPORT.md")
    print("\n".join(page))


if __name__ == "__main__":
    main()
