from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest

from bot.batch import classify_file, read_rows
from bot.domain import Label, Sentiment
from bot.errors import InputError


class KeywordClassifier:
    def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        out = []
        for text in texts:
            if "bad" in text or "差" in text:
                out.append(Sentiment(Label.NEGATIVE, 0.9, {"positive": 0.05, "negative": 0.9, "neutral": 0.05}))
            else:
                out.append(Sentiment(Label.POSITIVE, 0.7, {"positive": 0.7, "negative": 0.1, "neutral": 0.2}))
        return out


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_txt_with_bad_inputs_gives_a_result_for_every_line(tmp_path: Path) -> None:
    source = tmp_path / "msgs.txt"
    lines = [b"good day", b"", b"x" * 100_000, b"\x01\x02bad\x03", "😂😂😂".encode(), b"\xff\xfe\x00\x80garbage"]
    source.write_bytes(b"\n".join(lines))
    target = tmp_path / "out.jsonl"
    summary = classify_file(KeywordClassifier(), source, target, max_chars=1000, progress=False)
    records = _records(target)
    assert len(records) == len(lines) == summary.total
    assert records[1]["label"] is None and records[1]["error"] == "empty after clean-up"
    assert len(str(records[2]["text"])) == 1000
    assert records[3]["label"] == "negative" and records[3]["text"] == "bad"
    assert records[4]["label"] == "positive"
    assert records[5]["label"] is not None
    assert summary.skipped == 1 and summary.classified == 5


def test_jsonl_with_labels_reports_accuracy(tmp_path: Path) -> None:
    source = tmp_path / "msgs.jsonl"
    rows = [
        {"text": "good", "label": "positive"},
        {"text": "bad", "label": "negative"},
        {"text": "fine", "label": "negative"},
    ]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n{\"no\": 1}\n")
    summary = classify_file(KeywordClassifier(), source, tmp_path / "o.jsonl", max_chars=100, progress=False)
    assert summary.labelled == 3 and summary.correct == 2
    assert "accuracy (three labels): 0.667" in summary.report()
    records = _records(tmp_path / "o.jsonl")
    assert [r.get("error") for r in records[3:]] == ["not valid JSON", 'no "text" string']


def test_csv_with_and_without_header(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text("id,text,label\n1,服务差,negative\n2,\"nice, really\",positive\n3\n")
    summary = classify_file(KeywordClassifier(), source, tmp_path / "o.jsonl", max_chars=100, progress=False)
    assert summary.correct == 2 and summary.skipped == 1
    plain = tmp_path / "p.csv"
    plain.write_text("good one\nbad one\n")
    assert [r.text for r in read_rows(plain)] == ["good one", "bad one"]


def test_unsupported_file_type_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "x.pdf"
    source.write_bytes(b"%PDF")
    with pytest.raises(InputError, match="unsupported file type"):
        list(read_rows(source))
