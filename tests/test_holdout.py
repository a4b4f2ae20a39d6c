"""No text of the held-out evaluation set appears in prompts, tests or the benchmark's own data."""

from __future__ import annotations

import ast
import hashlib
import json

import pytest

from tests.conftest import EVAL_DIR, ROOT


def _pieces(value: str) -> set[str]:
    lines = value.split("\n")
    return {value, *lines, *(line.split(": ", 1)[-1] for line in lines)}


def test_no_holdout_text_is_used() -> None:
    listing = EVAL_DIR / "holdout.sha256"
    if not listing.exists():
        pytest.skip("../shared/eval is not beside this checkout")
    holdout = set(listing.read_text().split())
    digest = lambda text: hashlib.sha256(text.strip().encode()).hexdigest()  # noqa: E731
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
    assert found == []
