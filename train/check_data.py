"""Check a reply or crisis data file before it is trained on: schema, duplicates, held-out texts.

    python3 -m train.check_data replies train/data/replies.jsonl [more files...]
    python3 -m train.check_data crisis train/data/crisis.jsonl

Stdlib only, so it runs before the virtual environment exists. Exit 1 with one line per problem.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOLDOUT = ROOT.parent / "shared" / "eval" / "holdout.sha256"
STRATEGIES = {"comfort", "celebrate", "plain"}
CRISIS_KINDS = {"direct", "indirect", "hyperbole", "sad", "others", "news", "everyday", "medical", "smalltalk"}
HAN = re.compile(r"[\u4e00-\u9fff]")


def digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


def lang_of(text: str) -> str:
    han = len(HAN.findall(text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "zh" if han and han * 2 >= latin else "en"


def grams(text: str) -> set[str]:
    """Character 3-grams of the text without case, spaces or punctuation: for near-duplicate checks."""
    bare = "".join(ch for ch in text.lower() if ch.isalnum())
    return {bare[i : i + 3] for i in range(max(1, len(bare) - 2))}


def similarity(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two `grams` sets; the data checks call 0.5 and above a near duplicate."""
    return len(a & b) / max(1, len(a | b))


def rows_of(path: Path) -> list[tuple[int, dict]]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            out.append((number, json.loads(line)))
    return out


def check_reply(where: str, row: dict) -> list[str]:
    problems = []
    for key in ("id", "lang", "strategy", "message", "reply"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            problems.append(f"{where}: missing or empty '{key}'")
    if problems:
        return problems
    if row["lang"] not in ("zh", "en"):
        problems.append(f"{where}: lang must be zh or en")
    if row["strategy"] not in STRATEGIES:
        problems.append(f"{where}: strategy must be one of {sorted(STRATEGIES)}")
    for key in ("message", "reply"):
        if lang_of(row[key]) != row["lang"]:
            problems.append(f"{where}: {key} is not in {row['lang']}")
    history = row.get("history", [])
    if not isinstance(history, list) or len(history) > 4:
        problems.append(f"{where}: history must be a list of at most 4 [role, text] pairs")
    else:
        for item in history:
            if not (isinstance(item, list) and len(item) == 2 and item[0] in ("user", "bot") and item[1].strip()):
                problems.append(f"{where}: history items are [\"user\"|\"bot\", text]")
                break
    knowledge = row.get("knowledge", [])
    if not isinstance(knowledge, list) or not all(isinstance(k, str) and k.strip() for k in knowledge):
        problems.append(f"{where}: knowledge must be a list of strings")
    limit = 90 if row["lang"] == "zh" else 320
    if len(row["reply"]) > limit:
        problems.append(f"{where}: reply longer than {limit} characters")
    return problems


def check_crisis(where: str, row: dict) -> list[str]:
    problems = []
    for key in ("id", "lang", "text", "label", "kind", "split"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            problems.append(f"{where}: missing or empty '{key}'")
    if problems:
        return problems
    if row["label"] not in ("crisis", "not_crisis"):
        problems.append(f"{where}: label must be crisis or not_crisis")
    if row["kind"] not in CRISIS_KINDS:
        problems.append(f"{where}: kind must be one of {sorted(CRISIS_KINDS)}")
    if row["split"] not in ("train", "validation", "test"):
        problems.append(f"{where}: split must be train, validation or test")
    if lang_of(row["text"]) != row["lang"]:
        problems.append(f"{where}: text is not in {row['lang']}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("replies", "crisis"):
        print(__doc__)
        return 2
    kind, paths = argv[0], [Path(p) for p in argv[1:]]
    banned = set(HOLDOUT.read_text().split()) if HOLDOUT.exists() else set()
    problems: list[str] = []
    texts: Counter[str] = Counter()
    replies: Counter[str] = Counter()
    ids: Counter[str] = Counter()
    total = 0
    for path in paths:
        try:
            rows = rows_of(path)
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        for number, row in rows:
            total += 1
            where = f"{path}:{number}"
            problems += check_reply(where, row) if kind == "replies" else check_crisis(where, row)
            text = row.get("message" if kind == "replies" else "text", "")
            if isinstance(text, str):
                texts[text.strip()] += 1
                if digest(text) in banned:
                    problems.append(f"{where}: text is in the held-out list; drop it")
            if kind == "replies" and isinstance(row.get("reply"), str):
                replies[row["reply"].strip()] += 1
            ids[str(row.get("id"))] += 1
    problems += [f"duplicate text: {t!r}" for t, n in texts.items() if n > 1]
    problems += [f"duplicate reply: {t!r}" for t, n in replies.items() if n > 1]
    problems += [f"duplicate id: {t!r}" for t, n in ids.items() if n > 1]
    for line in problems[:200]:
        print(line)
    print(f"{total} rows, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
