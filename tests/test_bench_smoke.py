"""A small run of the benchmark (a few messages per set, no llama.cpp), so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EVAL_DIR, ROOT

pytestmark = pytest.mark.model


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    if not EVAL_DIR.exists():
        pytest.skip("../shared/eval is not beside this checkout")
    result = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    sets = {r["set"] for r in data["accuracy"]}
    assert {"zh_short", "en_tweets_cf", "chat (ours)"} <= sets
    methods = {r["method"] for r in data["accuracy"]}
    assert {"seed prompt (generate + search)", "SnowNLP (retrained)", "VADER"} <= methods
    assert data["speed"]["classify"]["ours_p50_ms"] > 0 and data["startup"]["ours_warm_ready_s"] > 0
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Targets" in report and "## Mood accuracy" in report
    for chart in ("accuracy.png", "latency.png"):
        assert (tmp_path / chart).read_bytes()[:4] == b"\x89PNG"


def test_speed_benchmark_smoke_run() -> None:
    # bench/fast.py in seconds: the fast path with and without the shortlist, transformers, classification
    result = subprocess.run([sys.executable, "-m", "bench.fast", "--smoke"], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["fast+shortlist"]["tok_s"] > 0 and data["fast, full vocabulary"]["tok_s"] > 0
    assert data["fast+shortlist"]["bytes"] < data["fast, full vocabulary"]["bytes"]
    assert data["classify_p50_ms"] > 0 and data["bandwidth_gbs"] > 0


def test_reply_benchmark_on_validation_rows_writes_beside_not_into_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench import replies
    from train import data as tdata

    rows = replies.examples_for("validation")
    eval_messages = {r.message for r in tdata.reply_eval()}
    assert rows and all(tdata.is_validation(r.message) and r.message not in eval_messages for r in rows)
    for other in (["--examples", "validation"], ["--adapter", "train/out/run/adapter"], ["--smoke"]):
        with pytest.raises(SystemExit):  # the report's folder keeps the shipped adapter's replies to replies_eval only
            replies.main(other)
        assert other[0] in capsys.readouterr().err
    out = tmp_path / "new"  # created by the run
    result = subprocess.run([sys.executable, "-m", "bench.replies", "--smoke", "--examples", "validation",
                             "--variants", "tuned", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    written = [json.loads(line) for line in (out / "replies_tuned.jsonl").read_text().splitlines()]
    ids = {r.id for r in rows}
    assert len(written) == 4 and all(w["id"] in ids and w["reply"].strip() for w in written)
    assert "validation rows" in (out / "REPLIES.md").read_text()
    assert not (out / "REPORT.md").exists()
