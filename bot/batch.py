"""Batch mood classification of a .txt, .jsonl or .csv file (the comment-monitoring use case)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

from tqdm import tqdm

from bot.domain import Sentiment
from bot.errors import InputError
from bot.text import sanitize

LABEL_NAMES = ("positive", "negative", "neutral")


@dataclass
class Row:
    line: int
    text: str
    expected: str | None = None
    problem: str | None = None  # why the row was not classified


@dataclass
class Summary:
    total: int = 0
    classified: int = 0
    skipped: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    labelled: int = 0
    correct: int = 0
    binary_labelled: int = 0
    binary_correct: int = 0

    def report(self) -> str:
        rate = self.classified / self.seconds if self.seconds else 0.0
        lines = [
            f"classified {self.classified} of {self.total} messages ({self.skipped} skipped) "
            f"in {self.seconds:.1f} s, {rate:.1f} messages/s",
            "by mood: " + ", ".join(f"{name} {self.counts.get(name, 0)}" for name in LABEL_NAMES),
        ]
        if self.labelled:
            lines.append(f"accuracy (three labels): {self.correct / self.labelled:.3f} on {self.labelled} labelled rows")
        if self.binary_labelled:
            lines.append(
                f"accuracy (positive vs negative, from the scores): "
                f"{self.binary_correct / self.binary_labelled:.3f} on {self.binary_labelled} rows"
            )
        return "\n".join(lines)


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    # binary garbage becomes U+FFFD and is cleaned away, so one bad line never stops the batch
    return raw.decode("utf-8-sig", errors="replace")


def _label(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    aliases = {"pos": "positive", "neg": "negative", "neu": "neutral", "1": "positive", "0": "negative"}
    text = aliases.get(text, text)
    return text if text in LABEL_NAMES else None


def read_rows(path: Path) -> Iterator[Row]:
    text = _decode(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                yield Row(number, "", problem="not valid JSON")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                yield Row(number, "", problem='no "text" string')
                continue
            yield Row(number, record["text"], _label(record.get("label")))
    elif suffix == ".csv":
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return
        names = [h.strip().lower() for h in header]
        has_header = "text" in names
        text_col = names.index("text") if has_header else 0
        label_col = names.index("label") if "label" in names else None
        rows = reader if has_header else [header, *reader]
        for number, record in enumerate(rows, 2 if has_header else 1):
            if len(record) <= text_col:
                yield Row(number, "", problem="no text column")
                continue
            expected = _label(record[label_col]) if label_col is not None and len(record) > label_col else None
            yield Row(number, record[text_col], expected)
    elif suffix in (".txt", ""):
        for number, line in enumerate(text.splitlines(), 1):
            yield Row(number, line)
    else:
        raise InputError(f"{path}: unsupported file type {suffix!r}; use .txt (one message a line), .jsonl or .csv")


class Classifier(Protocol):
    def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]: ...


def classify_file(
    classifier: Classifier, source: Path, target: Path, max_chars: int, batch_size: int = 16, progress: bool = True
) -> Summary:
    rows = list(read_rows(source))
    summary = Summary(total=len(rows))
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out, tqdm(
        total=len(rows), unit="msg", disable=not progress, desc="classifying"
    ) as bar:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            for row in chunk:
                row.text = sanitize(row.text, max_chars)
                if not row.text and row.problem is None:
                    row.problem = "empty after clean-up"
            todo = [row for row in chunk if row.problem is None]
            results = dict(zip((id(r) for r in todo), classifier.classify_batch([r.text for r in todo])))
            for row in chunk:
                record: dict[str, object] = {"line": row.line, "text": row.text}
                sentiment = results.get(id(row))
                if sentiment is None:
                    summary.skipped += 1
                    record.update(label=None, error=row.problem)
                else:
                    summary.classified += 1
                    summary.counts[sentiment.label.value] += 1
                    record.update(label=sentiment.label.value, confidence=sentiment.confidence, scores=sentiment.scores)
                if row.expected:
                    record["expected"] = row.expected
                    summary.labelled += 1
                    summary.correct += int(sentiment is not None and sentiment.label.value == row.expected)
                    if row.expected != "neutral":
                        summary.binary_labelled += 1
                        if sentiment is not None:
                            guess = "positive" if sentiment.scores["positive"] >= sentiment.scores["negative"] else "negative"
                            summary.binary_correct += int(guess == row.expected)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(len(chunk))
    summary.seconds = time.perf_counter() - started
    return summary
