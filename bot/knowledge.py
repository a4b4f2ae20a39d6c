"""The FAQ knowledge base: load a YAML or CSV file, reload it when it changes, retrieve with BM25.

Retrieval is bm25s over word tokens: jieba cuts Chinese, English is lower-cased words. Each entry
is indexed by its question, its keywords and its answer. A hit's score is normalised to 0..1 by
what the query scores against an average-length entry holding each query token once (tokens no
entry has count too), so it reads as the share of the question's weight the entry covers and one
threshold works for FAQs of any size; bench/KNOWLEDGE.md measures it.

WeChat's emoji codes ("[微笑]", "[Facepalm]") are dropped before matching, and an entry is a hit
only when the question shares a word with it, or at least two Chinese characters: one character in
common is not enough (the 微 of 微笑 is not about 微信支付).

`Retriever` is the seam for other scorers (the lead's model-hidden-state embeddings): anything
with `search(query, k) -> list[Hit]` can be benchmarked by `python -m bench.knowledge`.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import yaml

from bot.errors import ConfigError
from bot.text import detect_lang

log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[\u3400-\u9fff]+")
_CJK = re.compile(r"[\u3400-\u9fff]")
# WeChat's emoji as text: [微笑], [捂脸] in Chinese clients, [Smile], [Facepalm] in English ones
_EMOJI_CODE = re.compile(r"\[(?:[\u3400-\u9fff]{1,4}|[A-Za-z]{2,12})\]")
# words that carry no fact: a question made only of these must not match an entry
STOPWORDS = frozenset(
    "a an the is are am was were be been do does did i you we they he she it my your our me us to of in on at "
    "for with and or but can could would should will what when where how which who why there this that these "
    "those have has had any some please hi hello thanks thank about if so not no yes just get".split()
    + list("的了吗呢吧啊呀么是我你您他她它们在有和就都也还要会能可以这那个一些请问下么嘛哦")
    + ["什么", "怎么", "怎么样", "可以", "请问", "一下", "你们", "我们", "是不是", "有没有", "能不能", "多少"]
)


def is_word(token: str) -> bool:
    """A word, not one Chinese character (tokenize adds the characters of Chinese words for recall)."""
    return len(token) > 1 or not _CJK.match(token)


def tokenize(text: str) -> list[str]:
    """Word tokens for BM25: jieba for Chinese runs, lower-cased words for the rest, stopwords dropped."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter would go to stderr on every start

    tokens: list[str] = []
    for run in _WORD.findall(_EMOJI_CODE.sub(" ", text).lower()):
        if not _CJK.match(run):
            tokens.append(run)
            continue
        for word in jieba.lcut(run):
            if word.strip() and word not in STOPWORDS:
                # the characters as well: paraphrases often share characters but not jieba's words
                tokens += [word] + ([ch for ch in word if ch not in STOPWORDS] if len(word) > 1 else [])
    return [t for t in tokens if t not in STOPWORDS]


@dataclass(frozen=True)
class Entry:
    question: str
    answer: str
    keywords: tuple[str, ...] = ()

    def line(self) -> str:
        """How the entry is handed to the reply prompt: the answer, a self-contained fact line, which
        is the form the fine-tuned model learned its facts in (train/data/replies.jsonl)."""
        return self.answer


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float  # 0..1


def best_in(hits: Sequence[Hit], lang: str, bar: float) -> Hit | None:
    """The best hit scoring `bar` or more whose entry's question is in `lang` (an answer may be mostly a
    URL or a product name, so the question tells the entry's language)."""
    sure = [hit for hit in hits if hit.score >= bar and detect_lang(hit.entry.question) == lang]
    return max(sure, key=lambda hit: hit.score) if sure else None


class Retriever(Protocol):
    def search(self, query: str, k: int = 3) -> list[Hit]: ...


def load_entries(path: Path) -> list[Entry]:
    """Read a FAQ file: YAML (a list of mappings, or {entries: [...]}) or CSV with a header row."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"knowledge.path: cannot read {path}: {exc.strerror}") from exc
    rows: list[dict[str, Any]]
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(raw.splitlines()))
    else:
        try:
            data = yaml.safe_load(raw) or []
        except yaml.YAMLError as exc:
            raise ConfigError(f"knowledge.path: {path} is not valid YAML: {exc}") from exc
        rows = data.get("entries", []) if isinstance(data, dict) else data
    entries = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not str(row.get("question") or "").strip() or not str(row.get("answer") or "").strip():
            raise ConfigError(f"knowledge.path: entry {number} of {path} needs a question and an answer")
        keywords = row.get("keywords") or ()
        if isinstance(keywords, str):  # CSV: "a; b; c"
            keywords = [k for k in re.split(r"[;,，；|]", keywords) if k.strip()]
        entries.append(Entry(str(row["question"]).strip(), str(row["answer"]).strip(), tuple(str(k).strip() for k in keywords)))
    return entries


def _import_bm25s() -> Any:
    logger = logging.getLogger("bm25s")
    level = logger.level  # what configure_logging chose: WARNING, DEBUG with -v
    import bm25s

    logger.setLevel(level)  # bm25s sets its logger to DEBUG when first imported, which would undo that
    return bm25s


class Bm25Index:
    """BM25 (bm25s) over a fixed list of entries."""

    def __init__(self, entries: Sequence[Entry], k1: float = 1.5) -> None:
        bm25s = _import_bm25s()
        self.entries = list(entries)
        self.k1 = k1
        docs = [tokenize(" ".join([e.question, *e.keywords, e.answer])) for e in self.entries]
        self.terms = [set(doc) for doc in docs]
        self.bm25 = bm25s.BM25(k1=k1)
        if self.entries:
            self.bm25.index(docs, show_progress=False)
        self.vocab: dict[str, int] = dict(self.bm25.vocab_dict) if self.entries else {}
        n = len(docs)
        frequency: dict[str, int] = {}
        for doc in docs:
            for token in set(doc):
                frequency[token] = frequency.get(token, 0) + 1
        # lucene idf, as bm25s scores; a token no entry has weighs as much as the rarest possible one
        self.idf = {t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t, df in frequency.items()}
        self.unknown_idf = math.log(1 + (n + 0.5) / 0.5) if n else 1.0

    def search(self, query: str, k: int = 3) -> list[Hit]:
        tokens = tokenize(query)
        if not tokens or not self.entries:
            return []
        known = [t for t in tokens if t in self.vocab]
        # what the query would score against an entry of average length holding each of its tokens once:
        # the share of the question's weight the entry covers (capped at 1)
        ceiling = sum(self.idf.get(t, self.unknown_idf) for t in tokens)
        if not known or ceiling <= 0:
            return []
        scores = self.bm25.get_scores(known)
        order = sorted((i for i in range(len(self.entries)) if scores[i] > 0 and self._shares_a_word(known, i)),
                       key=lambda i: -float(scores[i]))[:k]
        return [Hit(self.entries[i], min(1.0, float(scores[i]) / ceiling)) for i in order]

    def _shares_a_word(self, tokens: list[str], index: int) -> bool:
        # characters add to the score, but one character in common is too little to be about the entry
        shared = self.terms[index].intersection(tokens)
        return len(shared) >= 2 or any(is_word(t) for t in shared)


class KnowledgeBase:
    """The FAQ file behind an index, re-read when its modification time changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._index = Bm25Index([])
        self._reload()  # a broken file at start stops the bot with a clear message

    def _reload(self) -> None:
        mtime = self.path.stat().st_mtime if self.path.exists() else None
        if mtime is None:
            raise ConfigError(f"knowledge.path: {self.path} does not exist")
        self._index = Bm25Index(load_entries(self.path))
        self._mtime = mtime
        log.info("knowledge base: %d entries from %s", len(self._index.entries), self.path)

    def _fresh(self) -> Bm25Index:
        with self._lock:
            try:
                if self.path.stat().st_mtime != self._mtime:
                    self._reload()
            except (OSError, ConfigError) as exc:
                # an edit in progress or a typo must not take the FAQ away: keep serving the last good one
                log.warning("knowledge base not reloaded, keeping the previous one: %s", exc)
        return self._index

    @property
    def entries(self) -> list[Entry]:
        return self._fresh().entries

    def search(self, query: str, k: int = 3) -> list[Hit]:
        return self._fresh().search(query, k)


_QUESTION = re.compile(
    r"[?？]|吗|呢|么|几点|多少|多久|哪|怎么|怎样|如何|什么|能否|能不能|可不可以|是否|有没有|请问|"
    r"^(what|when|where|which|who|why|how|can|could|do|does|did|is|are|will|would|should|may)\b",
    re.IGNORECASE,
)


def is_question(text: str) -> bool:
    """A message that asks for something (a fact the FAQ may hold), not small talk."""
    return bool(_QUESTION.search(text.strip()))


# colloquial Chinese questions that _QUESTION leaves out: "兔子可以带去洗澡不", "啥时候打烊", "要等几天",
# "能不能", "接不接"; not "啥都不会", "连句谢谢都没", "好几天" or "一动不动"
_COLLOQUIAL = re.compile(
    r"啥(?![都也])|(?<![好这那十])几(?:号|楼|层|天|岁|个人|次|张|节|家|寸|块|个小时)|(?<!一)(.)不\1(?![房家])"
    r"|(?<![都也])[不没]\s*(?:[\[［][^\]］]*[\]］]|[^\w\s])*\s*$"
)


def asks(text: str) -> bool:
    """is_question, or a colloquial Chinese question form: enough to send an FAQ answer the match
    is sure of, though not to hand an unmatched message to a colleague (small talk such as "你累不累
    啊" takes these forms too)."""
    return is_question(text) or bool(_COLLOQUIAL.search(text.strip()))
