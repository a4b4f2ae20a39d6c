"""No text of the held-out evaluation set appears in prompts, tests or the benchmark's own data."""

from __future__ import annotations

import ast
import json

import pytest
import yaml

from tests.conftest import EVAL_DIR, ROOT
from train.check_data import digest, grams, similarity


def _holdout() -> set[str]:
    """The held-out texts' hashes; the test is skipped where ../shared/eval is not beside the checkout."""
    listing = EVAL_DIR / "holdout.sha256"
    if not listing.exists():
        pytest.skip("../shared/eval is not beside this checkout")
    return set(listing.read_text().split())


def _pieces(value: str) -> set[str]:
    lines = value.split("\n")
    return {value, *lines, *(line.split(": ", 1)[-1] for line in lines)}


def test_no_holdout_text_is_used() -> None:
    holdout = _holdout()
    found = []
    sources = [*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [(path.name, p) for p in _pieces(node.value) if p.strip() and digest(p) in holdout]
    for path in ROOT.glob("bench/data/*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = json.loads(line)["text"]
            if digest(text) in holdout:
                found.append((path.name, text))
    for path in [*ROOT.glob("bench/data/*.yaml"), *ROOT.glob("examples/*.yaml")]:  # FAQs and their questions
        found += [(path.name, text) for text in _strings(yaml.safe_load(path.read_text(encoding="utf-8")))
                  if digest(text) in holdout]
    assert found == []


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [text for item in value for text in _strings(item)] if isinstance(value, list) else []


def _texts(row: dict) -> list[str]:
    """Every text a training row carries: message, reply, text, knowledge and history turns."""
    out = [row.get(key) for key in ("text", "message", "reply")]
    out += list(row.get("knowledge") or [])
    out += [turn[-1] if isinstance(turn, list) else turn for turn in row.get("history") or []]
    return [t for t in out if isinstance(t, str)]


def test_no_holdout_text_is_in_our_training_or_validation_data() -> None:
    holdout = _holdout()
    files = sorted(ROOT.glob("train/data/*.jsonl"))
    assert {"replies.jsonl", "replies_eval.jsonl", "crisis.jsonl"} <= {f.name for f in files}
    found = [(path.name, text) for path in files for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() for text in _texts(json.loads(line)) if digest(text) in holdout]
    assert found == []


def test_the_packaged_mood_mix_leaves_out_every_holdout_text() -> None:
    from train import data as tdata

    holdout = _holdout()
    train, validation = tdata.mood_training_mix(600, own_copies=1)
    assert train and validation
    assert [r.text for r in train + validation if digest(r.text) in holdout] == []


def test_the_final_crisis_test_set_has_no_near_duplicate_of_a_training_row() -> None:
    """crisis_final_*.jsonl is the crisis benchmark's honest figure: none of its rows may be a
    training row with other punctuation or a word changed."""
    rows = [json.loads(line) for path in sorted(ROOT.glob("train/data/crisis*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    final = [r for r in rows if r["id"].startswith("crt-")]
    train = [grams(r["text"]) for r in rows if r["split"] == "train"]
    assert len(final) >= 200
    close = [r["id"] for r in final if any(similarity(grams(r["text"]), t) >= 0.5 for t in train)]
    assert close == []
