"""The decode call (on bot/model/fast.py where the model allows, else transformers' generate()),
stopped by a stop string or a deadline.

Attempt 0 is greedy with the repetition penalty on the reply's own tokens only: penalising the
prompt's tokens too (transformers' default) pushed the tuned model off the words of the message,
into paraphrases that misread it ("my grandma was taken to hospital" answered as a death, "six
weeks" as "six months"); measured on the reply-validation rows, bench/NOTES.md. Attempt 1, when
the guard refused the first reply (an echo, most often), penalises the prompt's tokens too, which
steers away from the message's words. Sampled retries were dropped: on those rows a sampled reply
graded far below the greedy one, and below a curated fallback line.

With a reply head (bot/model/engine.py), attempt 0 decodes a few branches instead of one: the
greedy reply and the replies that start with the next-best first tokens, each greedy after that;
the head scores each finished reply and the best is sent (bench/NOTES.md, "Choosing among first-token
branches")."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from bot import prompts
from bot.errors import EngineTimeout
from bot.model.fast import KV, PENALTY, FastGemma, Shortlist, decode, prefill
from bot.text import clean_reply, trim_to_sentence

TAIL = 8  # tokens decoded to look for a stop string


def at_stop(tokenizer: Any, new: list[int], stops: list[str]) -> bool:
    """A stop string in the last few reply tokens (the whole vocabulary is never preprocessed)."""
    return bool(stops) and any(stop in tokenizer.decode(new[-TAIL:]) for stop in stops)


class _Stop:
    """Stops generation at a stop string or when the wall clock passes the deadline.

    transformers' own stop_strings criterion preprocesses the whole vocabulary (262k entries for
    Gemma): seconds and hundreds of MB on a CPU. Decoding the last few tokens is enough here."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: list[str], deadline: float | None) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = stops
        self.deadline = deadline
        self.hit = False  # the deadline, not a stop string, ended it

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.hit = self.deadline is not None and time.monotonic() > self.deadline
        tail = input_ids[0, max(self.prompt_len, input_ids.shape[1] - TAIL) :].tolist()
        done = self.hit or at_stop(self.tokenizer, tail, self.stops)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def end_tokens(tokenizer: Any) -> list[int]:
    """The token ids that end a reply: EOS, and <end_of_turn> where the tokenizer has it."""
    ends = [tokenizer.eos_token_id]
    end_turn = tokenizer.convert_tokens_to_ids(prompts.END_TURN)
    if isinstance(end_turn, int) and end_turn != tokenizer.unk_token_id:
        ends.append(end_turn)  # the fine-tuned format ends a reply with <end_of_turn>
    return ends


def _finish(tokenizer: Any, new: list[int], ends: list[int], max_new_tokens: int, max_chars: int) -> str:
    reply = clean_reply(tokenizer.decode(new, skip_special_tokens=True), max_chars=max_chars)
    if len(new) >= max_new_tokens and new[-1] not in ends:
        reply = trim_to_sentence(reply)  # cut off by the token limit: keep the finished sentences
    return reply


def copyable(tokenizer: Any, ids: list[int]) -> list[int]:
    """The prompt's tokens that a reply may copy although the output shortlist lacks them (not the
    special tokens: a reply must not emit <bos> or a turn marker from the prompt)."""
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    return [t for t in ids if t not in special]


def complete_fast(fast: FastGemma, head: Shortlist, tokenizer: Any, ids: list[int], stops: list[str],
                  deadline: float | None, attempt: int, max_new_tokens: int, max_chars: int) -> str:
    """A reply on this project's decode loop (bot/model/fast.py), with the attempt's settings."""
    return _reply_fast(fast, head.with_tokens(copyable(tokenizer, ids)), tokenizer, ids, stops, deadline,
                       max_new_tokens, max_chars, penalize_prompt=attempt > 0)


def _reply_fast(fast: FastGemma, head: Shortlist, tokenizer: Any, ids: list[int], stops: list[str],
                deadline: float | None, max_new_tokens: int, max_chars: int, penalize_prompt: bool,
                first_rank: int = 0, prompt: tuple[KV, torch.Tensor] | None = None) -> str:
    """One decoded and finished reply; `head` already holds the prompt's copyable tokens."""
    ends = end_tokens(tokenizer)
    new = decode(fast, head, ids, max_new_tokens, ends, lambda tokens: at_stop(tokenizer, tokens, stops), deadline,
                 repetition_penalty=PENALTY, penalize_prompt=penalize_prompt, first_rank=first_rank, prompt=prompt)
    return _finish(tokenizer, new, ends, max_new_tokens, max_chars)


def best_of_fast(fast: FastGemma, head: Shortlist, tokenizer: Any, ids: list[int], stops: list[str],
                 deadline: float | None, max_new_tokens: int, max_chars: int, branches: int,
                 score: Callable[[tuple[KV, torch.Tensor], str], float]) -> str:
    """Attempt 0 as `branches` first-token branches; the reply that `score` rates highest (the greedy
    one on a tie). A branch past the deadline ends the search with the replies already made."""
    head = head.with_tokens(copyable(tokenizer, ids))  # once for every branch
    prompt = prefill(fast, ids)
    best, best_score = "", float("-inf")
    for rank in range(branches):
        try:
            reply = _reply_fast(fast, head, tokenizer, ids, stops, deadline, max_new_tokens, max_chars,
                                penalize_prompt=False, first_rank=rank, prompt=prompt)
        except EngineTimeout:
            if rank == 0:
                raise
            break
        if not reply.strip():
            continue
        rated = score(prompt, reply)
        if rated > best_score:
            best, best_score = reply, rated
    return best


def complete(model: Any, tokenizer: Any, ids: list[int], stops: list[str], deadline: float | None, attempt: int,
             max_new_tokens: int, max_chars: int) -> str:
    """Continue `ids` with transformers' generate(), with the attempt's settings."""
    stopper = _Stop(tokenizer, len(ids), stops, deadline)
    input_ids = torch.tensor([ids])
    ends = end_tokens(tokenizer)
    options: dict[str, Any]
    if attempt:
        options = dict(do_sample=False, repetition_penalty=PENALTY)
    else:  # the penalty skips the prompt's tokens
        # imported here: a warm start on the fast path never imports transformers (bot/model/light.py)
        from transformers import RepetitionPenaltyLogitsProcessor

        options = dict(do_sample=False, logits_processor=[RepetitionPenaltyLogitsProcessor(PENALTY, len(ids))])
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            stopping_criteria=[stopper],
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=ends,
            **options,
        )
    if stopper.hit:
        raise EngineTimeout("generation ran past its deadline")
    return _finish(tokenizer, [int(t) for t in out[0][len(ids):]], ends, max_new_tokens, max_chars)
