"""Preference tuning of the reply adapter: its written reply preferred to its own greedy one (DPO).

    .venv/bin/python -m train.prefer --out train/out/prefer    # ~35 min on 2 cores (greedy replies included)
    .venv/bin/python -m train.prefer --smoke --model-dir DIR --adapter DIR  # seconds, on a tiny model (make test)

Tried on 2026-11-25 and NOT shipped: blind graders gave the tuned adapter's greedy replies to 120
reply-validation prompts a lower mean than the shipped adapter's (0.41 against 0.88 with --lr 1e-4
--sft 0.2 at step 100; 0.54 against 0.83 with the defaults, stopped by hand after the step-50 checkpoint). The preference margin grew
while the written replies' own loss rose: the model learned to avoid its usual replies, not to
write the written ones (bench/NOTES.md, "Preferring the written reply").

The supervised fine-tune (train.finetune) teaches the written replies token by token, yet its
greedy replies still restate the message or drift off it. Here the served model first answers
every training prompt greedily, with the bot's own decode loop; each written reply then becomes the
*chosen* side of a pair and that greedy reply the *rejected* side, and the same adapter is trained on
with direct preference optimisation (Rafailov et al. 2023), the preference loss plus the written
reply's token loss (which keeps it fluent). This is one round of self-play fine-tuning (Chen et al.
2024): no grades are needed, only the written data. The reference model is the starting adapter; its
log-probabilities are computed once. Every option is chosen on the validation prompts carved from
the training data (train/data.py), never on a scored set; the adapter kept is the checkpoint with
the lowest validation preference loss. The result is an adapter in peft's format, merged at start-up
like the one it started from; `python -m train.heads` then refits the heads on the new weights.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train/finetune.py

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bot.domain import Strategy  # noqa: E402
from bot.model import adapters  # noqa: E402
from train import data as tdata  # noqa: E402
from train.finetune import (  # noqa: E402
    Encoded,
    OutputRows,
    add_run_options,
    embedded_checkpoint,
    encode_reply,
    evaluating,
    load_base,
    lr_at,
    optimizer_step,
    reply_logits,
)

log = logging.getLogger("train")


def greedy_samples(examples: list[tdata.ReplyExample], adapter: Path, model_dir: Path | None,
                   path: Path) -> dict[str, str]:
    """The served model's greedy reply to each example, by id; cached in `path` (a run resumes)."""
    from bot.config import ModelSettings, SentimentSettings
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model

    done: dict[str, str] = {}
    if path.exists():
        for row in tdata.load_jsonl(path):
            done[row["id"]] = row["greedy"]
    todo = [ex for ex in examples if ex.id not in done]
    if not todo:
        return done
    settings = ModelSettings(path=str(model_dir) if model_dir else None, adapter=str(adapter), reply_branches=1)
    engine = ModelEngine(load_model(settings), settings,
                         SentimentSettings(readout="none", crisis_head="none", handoff_head="none"))
    started = time.perf_counter()
    with path.open("a", encoding="utf-8") as out:
        for n, ex in enumerate(todo, 1):
            done[ex.id] = engine.generate(ex.turns(), Strategy(ex.strategy), ex.lang, "", list(ex.knowledge))
            out.write(json.dumps({"id": ex.id, "greedy": done[ex.id]}, ensure_ascii=False) + "\n")
            out.flush()
            if n % 200 == 0:
                log.info("greedy replies: %d of %d (%.2f s each)", n, len(todo), (time.perf_counter() - started) / n)
    return done


def pairs_of(tokenizer: Any, examples: list[tdata.ReplyExample], greedy: dict[str, str]) -> list[tuple[Encoded, Encoded]]:
    """(written, greedy) encoded pairs; an example whose greedy reply is its written one teaches nothing."""
    pairs = []
    for ex in examples:
        rejected = greedy.get(ex.id, "").strip()
        if rejected and rejected != ex.reply:
            pairs.append((encode_reply(tokenizer, ex), encode_reply(tokenizer, replace(ex, reply=rejected))))
    return pairs


def reply_logprobs(model: Any, batch: list[Encoded], pad_id: int, rows: OutputRows) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sequence's summed log-probability of its reply tokens over the shortlist, and their count."""
    logits, target, owner = reply_logits(model, batch, pad_id, rows)
    picked = torch.log_softmax(logits.float(), -1).gather(1, target[:, None])[:, 0]
    sums = torch.zeros(len(batch)).index_add(0, owner, picked)
    counts = torch.zeros(len(batch)).index_add(0, owner, torch.ones_like(picked))
    return sums, counts


def pair_loss(model: Any, pairs: list[tuple[Encoded, Encoded]], reference: torch.Tensor, pad_id: int,
              rows: OutputRows, beta: float, sft: float) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO's loss on the pairs plus `sft` times the written replies' mean token loss; `reference`
    holds the starting model's (chosen, rejected) log-probabilities, (pairs, 2)."""
    logp, counts = reply_logprobs(model, [c for c, _ in pairs] + [r for _, r in pairs], pad_id, rows)
    chosen, rejected = logp[: len(pairs)], logp[len(pairs):]
    margin = beta * ((chosen - reference[:, 0]) - (rejected - reference[:, 1]))
    preference = -F.logsigmoid(margin).mean()
    written = -(chosen / counts[: len(pairs)]).mean()
    stats = {"preference": preference.item(), "written": written.item(),
             "accuracy": (margin > 0).float().mean().item(), "margin": (margin / beta).mean().item()}
    return preference + sft * written, stats


@torch.no_grad()
def reference_logprobs(model: Any, pairs: list[tuple[Encoded, Encoded]], pad_id: int, rows: OutputRows,
                       autocast: bool) -> torch.Tensor:
    out = []
    with evaluating(model):
        for i in range(0, len(pairs), 8):
            chunk = pairs[i:i + 8]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logp, _ = reply_logprobs(model, [c for c, _ in chunk] + [r for _, r in chunk], pad_id, rows)
            out.append(torch.stack([logp[: len(chunk)], logp[len(chunk):]], 1))
    return torch.cat(out)


@torch.no_grad()
def validate(model: Any, pairs: list[tuple[Encoded, Encoded]], reference: torch.Tensor, pad_id: int,
             rows: OutputRows, beta: float, autocast: bool) -> dict[str, float]:
    totals: dict[str, float] = {}
    with evaluating(model):
        for i in range(0, len(pairs), 8):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                _, stats = pair_loss(model, pairs[i:i + 8], reference[i:i + 8], pad_id, rows, beta, 0.0)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value * len(pairs[i:i + 8])
    return {key: round(value / max(1, len(pairs)), 4) for key, value in totals.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps on a tiny model and tiny data")
    parser.add_argument("--model-dir", type=Path, help="a transformers checkpoint (default: the embedded model)")
    parser.add_argument("--adapter", type=Path, default=adapters.EMBEDDED_ADAPTER,
                        help="the adapter to start from (and the reference model)")
    parser.add_argument("--out", type=Path, default=Path("train/out/prefer"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8, help="pairs a step")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--sft", type=float, default=1.0, help="weight of the written replies' token loss")
    parser.add_argument("--save-every", type=int, default=50)
    add_run_options(parser, dtype="bfloat16")  # AMX: 4.5 s a step against 5.3 in float32 (finetune --measure)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    from peft import PeftModel, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict

    examples = tdata.shipped_replies()
    if args.smoke:
        examples = examples[::max(1, len(examples) // 12)][:12]
        args.steps, args.save_every, args.batch = 2, 1, 2
    args.out.mkdir(parents=True, exist_ok=True)
    greedy = greedy_samples(examples, args.adapter, args.model_dir, args.out / "greedy.jsonl")
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    model, tokenizer = load_base(args.model_dir or embedded_checkpoint(), dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id
    train_pairs = pairs_of(tokenizer, [ex for ex in examples if not tdata.is_validation(ex.message)], greedy)
    val_pairs = pairs_of(tokenizer, [ex for ex in examples if tdata.is_validation(ex.message)], greedy)
    if args.smoke:
        val_pairs = val_pairs or train_pairs[:2]
    log.info("pairs: %d training, %d validation", len(train_pairs), len(val_pairs))
    rows = OutputRows.of(model, tokenizer)
    peft_model = PeftModel.from_pretrained(model, str(args.adapter), is_trainable=True)
    autocast = dtype == torch.bfloat16
    ref_path = args.out / "reference.pt"
    if ref_path.exists():
        ref_train, ref_val = torch.load(ref_path)
    else:
        ref_train = reference_logprobs(model, train_pairs, pad_id, rows, autocast)
        ref_val = reference_logprobs(model, val_pairs, pad_id, rows, autocast)
        torch.save((ref_train, ref_val), ref_path)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    state_path, step = args.out / "state.pt", 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        set_peft_model_state_dict(peft_model, state["adapter"])
        opt.load_state_dict(state["opt"])
        step, rng = state["step"], state["rng"]
        log.info("resumed at step %d", step)
    best_path = args.out / "best" / "scores.json"
    best = json.loads(best_path.read_text()) if best_path.exists() else None
    if best is None:
        best = {"step": 0, **validate(model, val_pairs, ref_val, pad_id, rows, args.beta, autocast)}
        log.info("validation at the start: %s", json.dumps(best))
    peft_model.train()
    order: list[int] = []
    started, first = time.perf_counter(), step
    while step < args.steps:
        t0 = time.perf_counter()
        if len(order) < args.batch:
            order = list(range(len(train_pairs)))
            rng.shuffle(order)
        chosen, order = order[: args.batch], order[args.batch:]
        opt.param_groups[0]["lr"] = lr_at(step, args.steps, args.lr, 20)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, stats = pair_loss(model, [train_pairs[i] for i in chosen], ref_train[chosen], pad_id, rows,
                                    args.beta, args.sft)
        optimizer_step(opt, loss, params)
        step += 1
        if args.measure:
            log.info("step %d: %.2f s %s", step, time.perf_counter() - t0, json.dumps(stats))
            if step >= args.measure:
                return
        elif step % 10 == 0:
            rate = (time.perf_counter() - started) / max(1, step - first)
            log.info("step %d/%d %s (%.1f s/step, %.0f min left)", step, args.steps,
                     json.dumps({k: round(v, 3) for k, v in stats.items()}), rate, rate * (args.steps - step) / 60)
        if step % args.save_every == 0 or step == args.steps:
            torch.save({"adapter": get_peft_model_state_dict(peft_model), "opt": opt.state_dict(), "step": step,
                        "rng": rng}, state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
            scores = validate(model, val_pairs, ref_val, pad_id, rows, args.beta, autocast)
            log.info("checkpoint at step %d; validation: %s", step, json.dumps(scores))
            if scores["preference"] < best["preference"]:
                tmp = args.out / "best.tmp"
                peft_model.save_pretrained(str(tmp / "adapter"))
                best = {"step": step, **scores}
                (tmp / "scores.json").write_text(json.dumps(best))
                shutil.rmtree(args.out / "best", ignore_errors=True)
                tmp.replace(args.out / "best")
    log.info("best: %s", json.dumps(best))
    if not (args.out / "best" / "adapter").exists():
        log.info("no step bettered the starting adapter on validation; nothing saved")
        return
    shutil.rmtree(args.out / "adapter", ignore_errors=True)
    shutil.copytree(args.out / "best" / "adapter", args.out / "adapter")
    (args.out / "train_meta.json").write_text(json.dumps({
        "started_from": str(args.adapter), "steps": args.steps, "best": best, "batch": args.batch, "lr": args.lr,
        "beta": args.beta, "sft": args.sft, "pairs": len(train_pairs), "validation_pairs": len(val_pairs),
        "minutes": round((time.perf_counter() - started) / 60, 1), "seed": args.seed,
    }, indent=2))
    log.info("saved %s", args.out / "adapter")


if __name__ == "__main__":
    main()
