from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.domain import Label, MoodPoint
from bot.report import report
from bot.store import Store
from tests.conftest import ROOT


def fill(store: Store, clock: ManualClock) -> None:
    for day in range(5):
        at = clock.now() - timedelta(days=4 - day)
        store.add_mood(MoodPoint("alice", "alice", at, Label.POSITIVE if day < 2 else Label.NEGATIVE, 0.9, f"a{day}", "x", "Alice"))
        store.add_mood(MoodPoint("bob", "room@chatroom", at, Label.POSITIVE, 0.8, f"b{day}", "y", "Bob", True))


def test_report_table_and_chart(store: Store, clock: ManualClock, tmp_path: Path) -> None:
    fill(store, clock)
    text, png = report(store, clock, 7, None, tmp_path / "all.png")
    lines = text.splitlines()
    assert lines[3].startswith("Alice (alice)") and "↓" in lines[3]  # trending down, listed first
    assert lines[4].startswith("Bob (bob)") and "+0.80" in lines[4]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text, png = report(store, clock, 7, "Bob", tmp_path / "bob.png")
    assert "Alice" not in text and png.exists()
    text, _ = report(store, clock, 1, None, tmp_path / "one.png")
    assert "Bob" in text and "Bob (bob)                    2 " in text  # the boundary day counts


def test_report_command(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'moodbot.db'}")
    clock = ManualClock(start=__import__("datetime").datetime.now(__import__("datetime").timezone.utc))
    fill(store, clock)
    store.close()
    env = {"MOODBOT__STORE__DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "bot", "report", "--chart", str(tmp_path / "c.png")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Alice (alice)" in result.stdout and (tmp_path / "c.png").exists()
    result = subprocess.run([sys.executable, "-m", "bot", "report", "--contact", "zed"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no contact called 'zed'" in result.stderr


def test_the_grade_pages_count_and_list_every_reply(tmp_path: Path) -> None:
    from bench import grades

    replies = [
        {"id": "a", "lang": "zh", "strategy": "comfort", "history": [["user", "早"]], "knowledge": [],
         "message": "考试没考好", "reply": "没考好真的很难受。", "fallback": False},
        {"id": "b", "lang": "en", "strategy": "plain", "history": [], "knowledge": ["Open 9-5."],
         "message": "when do you open?", "reply": "We open at 9 | daily.", "fallback": True},
    ]
    (tmp_path / "replies_tuned.jsonl").write_text("".join(json.dumps(r) + "\n" for r in replies))
    (tmp_path / "grades_tuned.jsonl").write_text(
        json.dumps({"id": "a", "grade": 2, "why": "specific"}) + "\n" + json.dumps({"id": "b", "grade": 1, "why": "ok"}) + "\n")
    grades.main(["--bench", str(tmp_path)])
    page = (tmp_path / "GRADES.md").read_text()
    assert "2 replies, mean 1.50" in page and "| **all** | **both** | 2 | **1.50** | 0 | 1 | 1 |" in page
    full = (tmp_path / "GRADED_REPLIES.md").read_text()
    assert "| a | 考试没考好 (user: 早) | — | 没考好真的很难受。 | 2 | specific |" in full
    assert "We open at 9 \\| daily. *(fallback)*" in full  # a pipe in a reply cannot break the table
    assert "Reply grades by reading" in (tmp_path / "REPORT.md").read_text()

    (tmp_path / "grades_tuned.jsonl").write_text(json.dumps({"id": "a", "grade": 2, "why": "x"}) + "\n")
    with pytest.raises(SystemExit, match="no grade for 1 replies"):
        grades.main(["--bench", str(tmp_path)])
