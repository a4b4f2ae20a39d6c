"""The mood classifiers compared by the benchmark, each mapping texts to labels (None = no label)."""

from __future__ import annotations

import re
from typing import Protocol, Sequence

import torch

from bot.model.engine import ModelEngine

Labels = list["str | None"]


class Method(Protocol):
    name: str

    def __call__(self, texts: Sequence[str], binary: bool = False) -> Labels: ...


class Moodbot:
    """This project's classifier; `binary` decides positive vs negative from the scores alone."""

    def __init__(self, engine: ModelEngine, name: str) -> None:
        self.engine = engine
        self.name = name

    def __call__(self, texts: Sequence[str], binary: bool = False) -> Labels:
        out: Labels = []
        for start in range(0, len(texts), 32):
            probs = self.engine.mood_probs(list(texts[start : start + 32]))
            if binary:
                out += ["positive" if p[0] >= p[1] else "negative" for p in probs]
            else:
                out += [s.label.value for s in map(self.engine.sentiment_of, probs)]
        return out


SEED_PROMPT = "判断下面这句话的情感，只回复“正面”或“负面”。\n句子：{text}\n情感："


class SeedPrompt:
    """The approach the project replaces: generate up to 5 tokens, then search the text for a label."""

    name = "seed prompt (generate + search)"

    def __init__(self, engine: ModelEngine) -> None:
        self.engine = engine

    def __call__(self, texts: Sequence[str], binary: bool = False) -> Labels:
        tok, model = self.engine.tokenizer, self.engine.model
        out: Labels = []
        for start in range(0, len(texts), 16):
            prompts = [SEED_PROMPT.format(text=t) for t in texts[start : start + 16]]
            tok.padding_side = "left"
            batch = tok(prompts, return_tensors="pt", padding=True)
            tok.padding_side = "right"
            with torch.inference_mode():
                gen = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
            for row in gen[:, batch["input_ids"].shape[1] :]:
                text = tok.decode(row, skip_special_tokens=True)
                pos = re.search(r"正面|positive|积极", text, re.I)
                neg = re.search(r"负面|negative|消极", text, re.I)
                out.append("positive" if pos and (not neg or pos.start() < neg.start()) else "negative" if neg else None)
        return out


class SnowNLPRetrained:
    """SnowNLP retrained on its own corpus minus every evaluation row (the fair zh baseline)."""

    name = "SnowNLP (retrained)"

    def __init__(self, neg: list[str], pos: list[str]) -> None:
        from snownlp import sentiment

        self.model = sentiment.Sentiment()
        self.model.train(neg, pos)

    def __call__(self, texts: Sequence[str], binary: bool = False) -> Labels:
        out: Labels = []
        for text in texts:
            p = self.model.classify(text)
            if binary:
                out.append("positive" if p >= 0.5 else "negative")
            else:
                out.append("positive" if p >= 0.65 else "negative" if p <= 0.35 else "neutral")
        return out


class Vader:
    name = "VADER"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, texts: Sequence[str], binary: bool = False) -> Labels:
        out: Labels = []
        for text in texts:
            c = self.analyzer.polarity_scores(text)["compound"]
            label = "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
            out.append(None if binary and label == "neutral" else label)  # a tie is no answer on a binary set
        return out


def score(expected: Sequence[str], got: Labels, labels: Sequence[str]) -> dict[str, float]:
    n = len(expected)
    acc = sum(e == g for e, g in zip(expected, got)) / n
    f1s = []
    for c in labels:
        tp = sum(e == c and g == c for e, g in zip(expected, got))
        fp = sum(e != c and g == c for e, g in zip(expected, got))
        fn = sum(e == c and g != c for e, g in zip(expected, got))
        f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
    return {"accuracy": acc, "macro_f1": sum(f1s) / len(f1s), "no_label": sum(g is None for g in got) / n}

