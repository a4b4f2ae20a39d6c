"""Fine-tune the one model for replies, mood and crisis: one LoRA adapter, three losses.

    .venv/bin/python -m train.finetune --steps 360 --validate-from 200   # the shipped adapter (~55 min)
    .venv/bin/python -m train.finetune --smoke         # seconds, on a tiny random model (make test)

- Replies: the loss covers only the reply tokens (and the <end_of_turn> that ends them); the
  prompt is `bot.prompts.tuned_reply_prompt`, the very function the bot uses at run time, memory
  and knowledge included. The output layer is multiplied only at reply positions and only over the
  served zh + en shortlist (bot/model/vocab.py): the softmax is taken over the tokens the bot can
  emit, and the 262k-row product would otherwise cost about as much as the whole body.
- Mood and crisis: two small heads on the normed hidden states after two middle layers, at the
  answer position of the mood prompt (the same forward pass serves both at run time). Training
  them jointly moves the body's features towards mood and crisis; after the adapter is merged,
  `python -m train.heads` refits both heads on the served weights.

Checkpoints go to --out every --save-every steps; a run resumes from the last one. The adapter
kept is the checkpoint with the lowest validation reply loss, and the run stops once --patience
checkpoints in a row have not bettered it (the shipped run, `make train`: 360 steps, validated from
step 200, still improving at 360; the second adapter's: best at 280, stopped at 360). Knobs are
chosen on validation rows carved from the training data (train/data.py), never on a scored set.
"""

from __future__ import annotations

import os

# OpenMP's spinning wait made a step 4x slower whenever anything else ran on the 2 cores; set
# before torch starts its thread pool
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterator, Sequence  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bot import prompts  # noqa: E402
from bot.domain import Strategy  # noqa: E402
from train import data as tdata  # noqa: E402

log = logging.getLogger("train")
MOODS = ("positive", "negative", "neutral")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_PROMPT = 224
MAX_REPLY = 96
MAX_ITEM = 64


def head_layers(num_layers: int) -> tuple[int, ...]:
    """The layers whose outputs the mood and crisis heads read: 8 and 12 of Gemma 3 270M's 18."""
    return tuple(sorted({max(1, num_layers * 4 // 9), max(1, num_layers * 2 // 3)}))


class Heads(torch.nn.Module):
    """Mood (3 classes) and crisis (1 logit) over the concatenated normed states of `layers`."""

    def __init__(self, hidden: int, layers: Sequence[int]) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.mood = torch.nn.Linear(hidden * len(self.layers), len(MOODS))
        self.crisis = torch.nn.Linear(hidden * len(self.layers), 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Gemma's normed states are large (hundreds); a parameter-free norm keeps the heads' logits sane
        features = F.layer_norm(features, features.shape[-1:])
        return self.mood(features), self.crisis(features)[:, 0]


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]  # -100 where no loss is taken


def encode_reply(tokenizer: Any, ex: tdata.ReplyExample) -> Encoded:
    text = prompts.tuned_reply_prompt(Strategy(ex.strategy), ex.lang, ex.turns(), ex.knowledge)
    prompt = tokenizer(text, add_special_tokens=True)["input_ids"]
    end = end_of_reply(tokenizer)
    reply = tokenizer(ex.reply, add_special_tokens=False)["input_ids"][:MAX_REPLY] + [end]
    if len(prompt) > MAX_PROMPT:  # keep the beginning-of-text token and the newest turns
        prompt = prompt[:1] + prompt[-(MAX_PROMPT - 1):]
    return Encoded(prompt + reply, [-100] * len(prompt) + reply)


def end_of_reply(tokenizer: Any) -> int:
    """Gemma's <end_of_turn>; a tokenizer without it (the tests' tiny one) ends replies with its eos."""
    end = tokenizer.convert_tokens_to_ids(prompts.END_TURN)
    if not isinstance(end, int) or end == tokenizer.unk_token_id:
        return int(tokenizer.eos_token_id)
    return end


def mood_ids(tokenizer: Any, prefix_ids: list[int], text: str) -> list[int]:
    """Prefix and item tokenized apart, exactly as the engine does with its cached prefix."""
    item = tokenizer(prompts.TUNED_MOOD_ITEM.format(text=" ".join(text.split())[:300]), add_special_tokens=False)["input_ids"]
    return prefix_ids + item[-MAX_ITEM:]


def pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [value] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


@dataclass
class OutputRows:
    """The output rows the loss is taken over: the served shortlist, so training normalises over
    the very tokens the bot can emit (and the 262k-row product, half a step's time, shrinks to 93k)."""

    weight: torch.Tensor  # (rows, hidden), frozen
    position: torch.Tensor  # vocabulary id -> row, -1 outside

    @classmethod
    def of(cls, model: Any, tokenizer: Any) -> "OutputRows":
        from bot.model import vocab

        full = model.get_output_embeddings().weight.detach()
        ids = vocab.shortlist(tokenizer)
        if ids is None:  # a tokenizer without a shipped shortlist (the tests' tiny one) keeps every row
            ids = torch.arange(full.shape[0])
        position = torch.full((full.shape[0],), -1, dtype=torch.long)
        position[ids] = torch.arange(len(ids))
        return cls(full[ids].contiguous(), position)


def reply_loss(model: Any, batch: list[Encoded], pad_id: int, rows: OutputRows) -> torch.Tensor:
    logits, target, _ = reply_logits(model, batch, pad_id, rows)
    return F.cross_entropy(logits.float(), target)


def reply_logits(model: Any, batch: list[Encoded], pad_id: int,
                 rows: OutputRows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """At every position that predicts a reply token: the logits over the shortlist, the token's
    shortlist row, and the index of the sequence it belongs to."""
    ids, mask = pad([b.ids for b in batch], pad_id)
    labels, _ = pad([b.labels for b in batch], -100)
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    # position t predicts token t + 1: keep only positions whose next token is a reply token
    # the bot can emit (every reply token of our data lies in the shortlist)
    target = labels[:, 1:].clone()
    reply = target != -100
    target[reply] = rows.position[target[reply]]
    keep = target >= 0
    chosen = hidden[:, :-1][keep]
    logits = chosen @ rows.weight.to(chosen.dtype).T
    softcap = getattr(model.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits, target[keep], keep.nonzero()[:, 0]


def features(model: Any, rows: list[list[int]], layers: Sequence[int], pad_id: int) -> torch.Tensor:
    """Normed hidden states after each of `layers` at each row's last token: (rows, len(layers) * hidden)."""
    ids, mask = pad(rows, pad_id)
    body = model.model
    full = body.config.num_hidden_layers
    body.config.num_hidden_layers = max(layers)  # stop after the deepest layer the heads read
    try:
        out = body(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    finally:
        body.config.num_hidden_layers = full
    last = mask.sum(1) - 1
    index = torch.arange(len(rows))
    states = [body.norm(out.hidden_states[layer][index, last]) for layer in layers]
    return torch.cat(states, dim=-1).float()


def head_loss(heads: Heads, feats: torch.Tensor, moods: list[str | None], crisis: list[int | None],
              crisis_weight: float) -> torch.Tensor:
    mood_logits, crisis_logits = heads(feats)
    loss = torch.zeros(())
    known = [i for i, m in enumerate(moods) if m is not None]
    if known:
        y = torch.tensor([MOODS.index(moods[i]) for i in known])  # type: ignore[arg-type]
        loss = loss + F.cross_entropy(mood_logits[known], y)
    flagged = [i for i, c in enumerate(crisis) if c is not None]
    if flagged:
        y = torch.tensor([float(crisis[i]) for i in flagged])  # type: ignore[misc]
        # crisis rows are rare; weigh them up so recall is learned, not traded away
        loss = loss + F.binary_cross_entropy_with_logits(
            crisis_logits[flagged], y, pos_weight=torch.tensor(crisis_weight))
    return loss


def grouped_batches(items: list[Encoded], size: int, rng: random.Random) -> Iterator[list[Encoded]]:
    """Endless batches of similar lengths, every item once per epoch: padding to the longest of a
    random batch wasted about half of each step's tokens."""
    while True:
        order = sorted(range(len(items)), key=lambda i: len(items[i].ids) + rng.random() * 8)
        chunks = [order[i:i + size] for i in range(0, len(order) - size + 1, size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            yield [items[i] for i in chunk]


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """The model in eval mode (no dropout) for a validation or reference pass, back in training mode after."""
    model.eval()
    try:
        yield
    finally:
        model.train()


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
    """One update from `loss`, gradients clipped to norm 1 (both training commands)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def load_base(model_dir: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, local_files_only=True)
    return model, tokenizer


def embedded_checkpoint() -> Path:
    """The dense checkpoint converted from the embedded GGUF (converted once, as the bot does)."""
    from bot.config import ModelSettings
    from bot.model import loader as ml

    settings = ModelSettings()
    cache_dir = Path(settings.cache_dir).expanduser()
    gguf = ml.embedded_gguf(cache_dir)
    dtype = ml.pick_dtype(settings.dtype)
    target = cache_dir / "converted" / ml._cache_key(gguf, dtype)
    if not ml._is_complete(target):
        ml._convert_gguf(gguf, target, dtype)
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps on a tiny model and tiny data")
    parser.add_argument("--model-dir", type=Path, help="a transformers checkpoint (default: the embedded model)")
    parser.add_argument("--out", type=Path, default=Path("train/out/run"))
    parser.add_argument("--steps", type=int, default=520)
    parser.add_argument("--reply-batch", type=int, default=8)
    parser.add_argument("--mood-batch", type=int, default=8)
    parser.add_argument("--crisis-batch", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--head-lr", type=float, default=2e-3)
    parser.add_argument("--mood-weight", type=float, default=0.5)
    parser.add_argument("--per-group", type=int, default=2500, help="rows per (source, label) of packaged corpora")
    parser.add_argument("--save-every", type=int, default=40)
    parser.add_argument("--validate-from", type=int, default=0,
                        help="skip validation at checkpoints before this step (early ones are never the best)")
    parser.add_argument("--patience", type=int, default=2,
                        help="stop after this many checkpoints without a better validation reply loss (0: never)")
    parser.add_argument("--crisis-files", default="",
                        help="comma-separated crisis file names to train on (default: every training file); "
                             "the shipped adapter saw crisis.jsonl,crisis_more_en.jsonl,crisis_more_zh.jsonl")
    parser.add_argument("--replace-replies", type=Path,
                        help="a reply file whose rows replace the rows of train/data/replies.jsonl with the same id "
                             "(e.g. train/data/replies_comfort_v2.jsonl, the fifth adapter's comfort replies)")
    parser.add_argument("--add-replies", type=Path,
                        help="a reply file whose rows (new ids) are trained on beside train/data/replies.jsonl's; "
                             "one row in ten, by hash, is validation as there")
    # float32: on the 2-core AMD EPYC of 2026-11-23 (torch 2.13) bf16 matmuls in the backward pass
    # ran ~50x slower than float32; on the Intel Xeon with AMX of 2026-11-25 bf16 steps took 3.5-4.8 s
    # against float32's 4.3 (make train's recipe, --measure 5), too little to change the recipe
    add_run_options(parser, dtype="float32")
    return parser


def add_run_options(parser: argparse.ArgumentParser, dtype: str) -> None:
    """--threads, --seed, --dtype and --measure, as every training command takes them."""
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default=dtype)
    parser.add_argument("--measure", type=int, default=0, help="run this many steps, print the time of each, stop")


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict

    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    # the data first: a bad file name or row fails before the model is converted or loaded
    replies, replaced, crisis_train = training_replies_and_crisis(parser, args)
    recipe = run_recipe(args, replies, crisis_train)
    check_resume(parser, args.out, recipe)
    mood_train, mood_val = tdata.mood_training_mix(args.per_group, args.seed) if not args.smoke else smoke_mood()
    if args.smoke:
        replies, crisis_train = replies[:16], crisis_train[:8]
        args.steps, args.save_every = min(args.steps, 3), 2
        args.reply_batch, args.mood_batch, args.crisis_batch = 2, 4, 2
    model_dir = args.model_dir or embedded_checkpoint()
    model, tokenizer = load_base(model_dir, dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id
    layers = head_layers(model.config.num_hidden_layers)
    reply_train = [r for r in replies if not tdata.is_validation(r.message)]
    reply_val = [r for r in replies if tdata.is_validation(r.message)]
    log.info("data: %d reply (%d validation), %d mood (%d validation), %d crisis; head layers %s",
             len(reply_train), len(reply_val), len(mood_train), len(mood_val), len(crisis_train), layers)
    enc_train = [encode_reply(tokenizer, r) for r in reply_train]
    enc_val = [encode_reply(tokenizer, r) for r in reply_val]
    prefix_ids = tokenizer(prompts.TUNED_MOOD_PREFIX, add_special_tokens=True)["input_ids"]
    rows = OutputRows.of(model, tokenizer)

    lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05, target_modules=TARGETS,
                      bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    heads = Heads(model.config.hidden_size, layers)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": params, "lr": args.lr, "weight_decay": 0.0},
                             {"params": heads.parameters(), "lr": args.head_lr, "weight_decay": 1e-4}])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recipe.json").write_text(json.dumps(recipe, indent=1))
    state_path = args.out / "state.pt"
    step = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        set_peft_model_state_dict(peft_model, state["adapter"])
        heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["opt"])
        step, rng = state["step"], state["rng"]
        log.info("resumed at step %d", step)
    crisis_weight = max(1.0, sum(1 - r.crisis for r in crisis_train) / max(1, sum(r.crisis for r in crisis_train)))  # type: ignore[operator]
    peft_model.train()
    reply_batches = grouped_batches(enc_train, args.reply_batch, rng)
    best = read_best(args.out)
    started, first = time.perf_counter(), step
    while step < args.steps:
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr if group is opt.param_groups[0] else args.head_lr, 30)
        batch = next(reply_batches)
        mood_batch = rng.sample(mood_train, args.mood_batch) + rng.sample(crisis_train, args.crisis_batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss_reply = reply_loss(model, batch, pad_id, rows)
            feats = features(model, [mood_ids(tokenizer, prefix_ids, r.text) for r in mood_batch], layers, pad_id)
        loss_heads = head_loss(heads, feats, [r.mood for r in mood_batch], [r.crisis for r in mood_batch], crisis_weight)
        optimizer_step(opt, loss_reply + args.mood_weight * loss_heads, params)
        step += 1
        if args.measure:
            log.info("step %d: %.2f s (reply %.3f, heads %.3f)", step, time.perf_counter() - t0,
                     loss_reply.item(), loss_heads.item())
            if step >= args.measure:
                return
        elif step % 10 == 0 or step == args.steps:
            rate = (time.perf_counter() - started) / max(1, step - first)
            log.info("step %d/%d reply %.3f heads %.3f (%.1f s/step, %.0f min left)", step, args.steps,
                     loss_reply.item(), loss_heads.item(), rate, rate * (args.steps - step) / 60)
        if step % args.save_every == 0 or step == args.steps:
            torch.save({"adapter": get_peft_model_state_dict(peft_model), "heads": heads.state_dict(),
                        "opt": opt.state_dict(), "step": step, "rng": rng}, state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
            if step < args.validate_from and step != args.steps:
                continue
            scores = validate(model, heads, tokenizer, enc_val, mood_val, prefix_ids, layers, pad_id, rows)
            log.info("checkpoint at step %d; validation: %s", step, json.dumps(scores))
            # the adapter that ships is the one with the lowest validation reply loss, not the last
            if best is None or scores["reply_loss"] < best["reply_loss"]:
                best = save_best(peft_model, heads, layers, args.out, step, scores)
            if args.patience and step - best["step"] >= args.patience * args.save_every:
                log.info("stopping at step %d: no better validation reply loss since step %d", step, best["step"])
                break
    assert best is not None, "the last step always writes a checkpoint"
    log.info("best adapter: %s", json.dumps(best))
    shutil.rmtree(args.out / "adapter", ignore_errors=True)
    shutil.copytree(args.out / "best" / "adapter", args.out / "adapter")
    shutil.copy(args.out / "best" / "joint_heads.pt", args.out / "joint_heads.pt")
    (args.out / "train_meta.json").write_text(json.dumps({
        "steps": args.steps, "stopped_at": step, "best": best,
        "reply_batch": args.reply_batch, "rank": args.rank, "lr": args.lr, "reply_examples": len(reply_train),
        "replaced_replies": f"{replaced} from {args.replace_replies}" if replaced else None,
        "added_replies": str(args.add_replies) if args.add_replies else None,
        "mood_rows": len(mood_train), "crisis_rows": len(crisis_train),
        "crisis_files": sorted({r.extra["file"] for r in crisis_train}), "head_layers": list(layers),
        "minutes": round((time.perf_counter() - started) / 60, 1), "base": str(model_dir),
        "recipe": recipe,  # every option (seed, mood weight...) and a digest of the data
    }, indent=2))
    log.info("saved %s", args.out / "adapter")


def training_replies_and_crisis(parser: argparse.ArgumentParser,
                                args: argparse.Namespace) -> tuple[list[tdata.ReplyExample], int, list[tdata.MoodRow]]:
    """The reply examples (with --replace-replies' rows swapped in by id and --add-replies' rows
    appended), how many were swapped, and the crisis training rows (of --crisis-files only, where given)."""
    replies = tdata.reply_examples()
    replaced = 0
    if args.replace_replies:
        rows = reply_file(parser, "--replace-replies", args.replace_replies)
        known = {r.id: r for r in replies}
        wrong = sorted(r.id for r in rows if r.id not in known or _prompt_of(known[r.id]) != _prompt_of(r))
        if wrong:
            parser.error(f"--replace-replies: {len(wrong)} rows match no row of the same id, message, strategy, "
                         f"language, history and knowledge, e.g. {', '.join(wrong[:3])}")
        swap = {r.id: r for r in rows}
        replies, replaced = [swap.get(r.id, r) for r in replies], len(swap)
    if args.add_replies:
        rows = reply_file(parser, "--add-replies", args.add_replies)
        clash = sorted({r.id for r in rows} & {r.id for r in replies})
        if clash:
            parser.error(f"--add-replies: ids already in the reply data: {', '.join(clash[:3])}")
        replies = replies + rows
    crisis_train = tdata.crisis_rows("train")
    if args.crisis_files:
        wanted = {name.strip() for name in args.crisis_files.split(",") if name.strip()}
        if not wanted:
            parser.error("--crisis-files: no file named")
        unknown = wanted - {r.extra["file"] for r in crisis_train}
        if unknown:
            parser.error(f"--crisis-files: no training rows in {', '.join(sorted(unknown))}")
        crisis_train = [r for r in crisis_train if r.extra["file"] in wanted]
    return replies, replaced, crisis_train


# options that may change when a run resumes: how long it runs and how it reports
RESUMABLE = {"out", "steps", "save_every", "validate_from", "patience", "threads", "measure"}


def run_recipe(args: argparse.Namespace, replies: list[tdata.ReplyExample],
               crisis_train: list[tdata.MoodRow]) -> dict[str, Any]:
    """What a run's checkpoints depend on: its options and a digest of the data they select."""
    recipe = {k: str(v) for k, v in sorted(vars(args).items()) if k not in RESUMABLE}
    recipe["reply_data"] = tdata.digest(json.dumps([[r.id, r.message, r.reply] for r in replies], ensure_ascii=False))
    recipe["crisis_data"] = tdata.digest(json.dumps([r.text for r in crisis_train], ensure_ascii=False))
    return recipe


def check_resume(parser: argparse.ArgumentParser, out: Path, recipe: dict[str, Any]) -> None:
    """A folder with checkpoints resumes only the run that made them: its adapter would otherwise be
    recorded under options and data it never saw."""
    if not (out / "state.pt").exists():
        return
    path = out / "recipe.json"
    saved = json.loads(path.read_text()) if path.exists() else None
    if saved != recipe:
        changed = sorted(k for k in set(recipe) | set(saved or {}) if (saved or {}).get(k) != recipe.get(k))
        why = "no recipe.json" if saved is None else "changed: " + ", ".join(changed)
        parser.error(f"{out} holds checkpoints of another run ({why}); give a new --out or delete that folder")


def reply_file(parser: argparse.ArgumentParser, option: str, path: Path) -> list[tdata.ReplyExample]:
    """The rows of a reply file given to `option`: readable, not empty, each id once, and none of
    them held out (the checks replies.jsonl gets from train/check_data.py and tdata.reply_examples)."""
    try:
        rows = [tdata.ReplyExample.from_row(r) for r in tdata.load_jsonl(path)]
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"{option}: {exc}")
    if not rows:
        parser.error(f"{option}: {path} holds no rows")
    twice = sorted(i for i, n in Counter(r.id for r in rows).items() if n > 1)
    if twice:
        parser.error(f"{option}: ids used twice: {', '.join(twice[:3])}")
    drop = tdata.banned()
    held = sorted(r.id for r in rows if tdata.digest(r.message) in drop or tdata.digest(r.reply) in drop)
    if held:
        parser.error(f"{option}: {len(held)} rows are held-out or scored texts, e.g. {', '.join(held[:3])}")
    return rows


def _prompt_of(example: tdata.ReplyExample) -> tuple[Any, ...]:
    """Everything of an example but its reply: a replacement must keep all of it."""
    return example.message, example.strategy, example.lang, example.history, example.knowledge


def read_best(out: Path) -> dict[str, Any] | None:
    """The best checkpoint's step and validation scores, when an earlier run of this folder saved one."""
    path = out / "best" / "scores.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_best(peft_model: Any, heads: Heads, layers: Sequence[int], out: Path, step: int,
              scores: dict[str, float]) -> dict[str, Any]:
    tmp = out / "best.tmp"
    peft_model.save_pretrained(str(tmp / "adapter"))
    torch.save({"layers": list(layers), "state": heads.state_dict()}, tmp / "joint_heads.pt")
    best = {"step": step, **scores}
    (tmp / "scores.json").write_text(json.dumps(best))
    shutil.rmtree(out / "best", ignore_errors=True)
    tmp.replace(out / "best")
    return best


@torch.no_grad()
def validate(model: Any, heads: Heads, tokenizer: Any, enc_val: list[Encoded], mood_val: list[tdata.MoodRow],
             prefix_ids: list[int], layers: Sequence[int], pad_id: int, rows: OutputRows,
             limit: int = 200) -> dict[str, float]:
    with evaluating(model):
        losses = [reply_loss(model, enc_val[i:i + 8], pad_id, rows).item() for i in range(0, len(enc_val), 8)]
        rows = [r for r in mood_val if r.mood is not None]
        rows = rows[:: max(1, len(rows) // limit)][:limit]  # spread over every source, not the first group
        correct = 0
        for i in range(0, len(rows), 32):
            chunk = rows[i:i + 32]
            logits, _ = heads(features(model, [mood_ids(tokenizer, prefix_ids, r.text) for r in chunk], layers, pad_id))
            correct += sum(int(MOODS[int(k)] == r.mood) for k, r in zip(logits.argmax(1), chunk))
    return {"reply_loss": round(sum(losses) / max(1, len(losses)), 4), "mood_acc": round(correct / max(1, len(rows)), 4)}


def smoke_mood() -> tuple[list[tdata.MoodRow], list[tdata.MoodRow]]:
    rows = [tdata.MoodRow(t, "en", m) for t, m in
            [("great day", "positive"), ("awful news", "negative"), ("the shop opens at nine", "neutral")] * 4]
    return rows, rows[:3]


if __name__ == "__main__":
    main()
