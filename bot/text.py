"""Plain text helpers: input hygiene, language guess, reply clean-up and splitting."""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_SPACES = re.compile(r"[ \t]+")
_ROLE_PREFIX = re.compile(
    r"^\s*(assistant|bot|moodbot|user|customer|friend|me|system|助手|客服|用户|朋友|我)\s*[:：]\s*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])|(?<=[.](?=\s))")


def sanitize(text: str, max_chars: int) -> str:
    """Drop control and format characters (keeping newlines as spaces) and cut to max_chars."""
    kept = []
    for ch in text:
        if ch in "\n\r\t":
            kept.append(" ")
            continue
        category = unicodedata.category(ch)
        # Cc: control, Cs: lone surrogates, Co/Cn: private use and unassigned; zero-width joiner (Cf) stays for emoji
        if category in ("Cc", "Cs", "Co", "Cn") or (category == "Cf" and ch != "\u200d"):
            continue
        kept.append(ch)
    cleaned = _SPACES.sub(" ", "".join(kept)).strip()
    return cleaned[:max_chars].rstrip()


def detect_lang(text: str) -> str:
    """'zh' when Chinese characters dominate the letters, else 'en'."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return "zh" if cjk and cjk * 3 >= latin else "en"


def _cut_repetition(text: str) -> str:
    # a base model loops; keep the first occurrence of any repeated sentence
    parts = [p for p in _SENTENCE_END.split(text) if p]
    seen: set[str] = set()
    kept: list[str] = []
    for part in parts:
        key = part.strip().lower()
        if key and key in seen:
            break
        seen.add(key)
        kept.append(part)
    text = "".join(kept)
    # a phrase of 2+ chars repeated 3+ times in a row collapses to one occurrence
    return re.sub(r"(.{2,30}?)\1{2,}", r"\1", text)


def clean_reply(raw: str, prompt_tail: str = "", max_chars: int = 400) -> str:
    """Turn raw model output into one clean reply: no role labels, no echo, no loops, bounded."""
    text = raw.replace("\r", "")
    if prompt_tail and text.startswith(prompt_tail):
        text = text[len(prompt_tail):]
    lines: list[str] = []
    for line in text.split("\n"):
        if lines and _ROLE_PREFIX.match(line):
            break  # the model started writing the next speaker's turn
        line = _ROLE_PREFIX.sub("", line).strip()
        if line:
            lines.append(line)
        elif lines:
            break  # a blank line ends the reply
    text = _cut_repetition(" ".join(lines))
    text = sanitize(text, max_chars * 4)
    if len(text) > max_chars:
        cut = text[:max_chars]
        ends = [m.end() for m in _SENTENCE_END.finditer(cut) if m.end() > max_chars // 3]
        text = cut[: ends[-1]] if ends else cut.rstrip() + "…"
    return text.strip()


def trim_to_sentence(text: str) -> str:
    """Drop a trailing unfinished sentence (generation ran out of tokens mid-sentence)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.end() > len(text) // 3]
    return text[: ends[-1]].strip() if ends else text


def split_message(text: str, limit: int) -> list[str]:
    """Split a long text into pieces of at most `limit` characters: at line ends where it has lines
    (a list such as #alerts keeps each line whole), else at sentence boundaries."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    if "\n" in text:
        pieces: list[str] = []
        current = ""
        for line in text.split("\n"):
            for part in split_message(line, limit) or [""]:
                if current and len(current) + 1 + len(part) > limit:
                    pieces.append(current)
                    current = part
                else:
                    current = f"{current}\n{part}" if current else part
        return [p.strip() for p in [*pieces, current] if p.strip()]
    pieces = []
    current = ""
    for sentence in (s for s in _SENTENCE_END.split(text) if s):
        while len(sentence) > limit:  # one sentence longer than the limit: cut at a space if there is one
            if current:
                pieces.append(current.strip())
                current = ""
            cut = sentence.rfind(" ", 0, limit + 1)
            cut = cut if cut > limit // 2 else limit
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:]
        if len(current) + len(sentence) > limit:
            pieces.append(current.strip())
            current = ""
        current += sentence
    if current.strip():
        pieces.append(current.strip())
    return [p for p in pieces if p]


def in_lang(texts: Mapping[str, str], lang: str) -> str:
    """The configured text for a language, else the English one, else empty."""
    return texts.get(lang) or texts.get("en") or ""
