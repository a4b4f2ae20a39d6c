"""The decode loop and forward pass of bot/model/fast.py against transformers, on a tiny random Gemma 3."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
import torch
from transformers import Gemma3ForCausalLM, RepetitionPenaltyLogitsProcessor

from bot.model import fast
from tests.tiny_models import int8_gemma


@pytest.fixture(scope="module")
def model() -> Gemma3ForCausalLM:
    return int8_gemma()


class WordTokenizer:
    """Token t decodes to "wt"; 1 and 2 end a reply, 0-2 are special."""

    eos_token_id, unk_token_id, pad_token_id, all_special_ids = 1, 3, 0, [0, 1, 2]

    def convert_tokens_to_ids(self, token: str) -> int:
        return 2

    def decode(self, tokens: list[int], skip_special_tokens: bool = False) -> str:
        return " ".join(f"w{t}" for t in tokens if not skip_special_tokens or t > 2)


def test_only_known_int8_gemma_models_take_the_fast_path(model: Gemma3ForCausalLM) -> None:
    assert fast.supported(model)
    dense = Gemma3ForCausalLM(model.config)
    assert not fast.supported(dense)


def test_forward_matches_transformers_past_the_sliding_window(model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=256)
    ids = torch.randint(3, 320, (20,)).tolist()
    kv = runner.new_kv(30)
    with torch.inference_mode():
        expected = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        last, states = runner.forward(ids, kv, collect=[1, 4])
    assert torch.allclose(last[0], expected[-1][0, -1], rtol=2e-2, atol=2e-2)
    for layer, state in zip([1, 4], states):
        assert torch.allclose(state, expected[layer + 1][0], rtol=2e-2, atol=2e-2)
    # one token at a time after the prompt: the cached keys and values must give the same states
    more = torch.randint(3, 320, (6,)).tolist()
    with torch.inference_mode():
        expected = model(torch.tensor([ids + more]), output_hidden_states=True).hidden_states[-1][0]
        for offset, token in enumerate(more):
            last, _ = runner.forward([token], kv)
            assert torch.allclose(last[0], expected[len(ids) + offset], rtol=2e-2, atol=2e-2), offset


def test_stopping_after_a_layer_gives_that_layers_state(model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=256)
    ids = torch.randint(3, 320, (12,)).tolist()
    with torch.inference_mode():
        _, full = runner.forward(ids, runner.new_kv(12), collect=[2])
        _, early = runner.forward(ids, runner.new_kv(12), layers=3, collect=[2])
    assert torch.equal(full[0], early[0])


def test_greedy_decoding_matches_transformers_generate(model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=256)
    head = fast.Shortlist(model.lm_head, None)
    ids = torch.randint(3, 320, (10,)).tolist()
    got = fast.decode(runner, head, ids, 12, ends=[], stop=lambda new: False, deadline=None)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=12, min_new_tokens=12, do_sample=False, repetition_penalty=1.1)
    assert got == out[0, len(ids):].tolist()


def test_greedy_decoding_can_leave_the_prompts_tokens_unpenalised_as_transformers_does(
        model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=256)
    head = fast.Shortlist(model.lm_head, None)
    changed = 0
    for seed in range(8):
        ids = torch.randint(3, 320, (10,), generator=torch.Generator().manual_seed(seed)).tolist()
        got = fast.decode(runner, head, ids, 12, [], lambda new: False, None, repetition_penalty=3.0,
                          penalize_prompt=False)
        penalty = RepetitionPenaltyLogitsProcessor(3.0, prompt_ignore_length=len(ids))
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=12, do_sample=False, logits_processor=[penalty],
                                 eos_token_id=model.config.vocab_size - 1)  # no end token: all 12 compared
        assert got == out[0, len(ids):].tolist(), seed
        changed += got != fast.decode(runner, head, ids, 12, [], lambda new: False, None, repetition_penalty=3.0)
    assert changed  # the prompt's tokens, penalised, would have changed some of these replies


def test_a_shortlist_only_ever_emits_its_tokens_and_stops_at_an_end_token(model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=256)
    allowed = torch.arange(3, 320, 3)
    head = fast.Shortlist(model.lm_head, allowed)
    ids = torch.randint(3, 320, (10,)).tolist()
    got = fast.decode(runner, head, ids, 16, ends=[], stop=lambda new: False, deadline=None)
    assert len(got) == 16 and set(got) <= set(allowed.tolist())
    end = got[3]
    stopped = fast.decode(runner, head, ids, 16, ends=[end], stop=lambda new: False, deadline=None)
    assert stopped == got[: got.index(end) + 1]


def test_the_deadline_stops_decoding(model: Gemma3ForCausalLM) -> None:
    from bot.errors import EngineTimeout

    runner = fast.FastGemma(model, max_positions=256)
    with pytest.raises(EngineTimeout):
        fast.decode(runner, fast.Shortlist(model.lm_head, None), [5, 6, 7], 8, ends=[], stop=lambda new: False,
                    deadline=0.0)


def test_a_text_longer_than_the_tables_grows_them(model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=16)
    ids = torch.randint(3, 320, (40,)).tolist()
    with torch.inference_mode():
        expected = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
        last, _ = runner.forward(ids, runner.new_kv(40))
    assert runner.max_positions >= 40
    assert torch.allclose(last[0], expected, rtol=2e-2, atol=2e-2)


def test_each_attempt_decodes_with_its_own_penalty_on_both_paths(model: Gemma3ForCausalLM,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Attempt 0 penalises the reply's tokens only, the guard's retry the prompt's too, on the fast
    path and on transformers' generate() alike."""
    from bot.model import generate

    tokenizer = WordTokenizer()
    runner = fast.FastGemma(model, max_positions=256)
    head = fast.Shortlist(model.lm_head, None)

    def both(ids: list[int]) -> list[list[int]]:  # attempt 0's tokens, attempt 1's
        return [fast.decode(runner, head, ids, 12, [1, 2], lambda new: False, None, repetition_penalty=1.1,
                            copyable=ids, penalize_prompt=attempt > 0) for attempt in (0, 1)]

    # a prompt whose two settings give different replies, so that swapped wiring would show
    prompts = (torch.randint(3, 320, (10,), generator=torch.Generator().manual_seed(s)).tolist() for s in range(200))
    ids, expected = next((ids, pair) for ids in prompts if (pair := both(ids))[0] != pair[1])
    for attempt in (0, 1):
        got = generate.complete_fast(runner, head, tokenizer, ids, [], None, attempt, 12, 1000)
        assert got == generate._finish(tokenizer, expected[attempt], [1, 2], 12, 1000), attempt
    seen: list[dict] = []

    def generate_spy(**kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs)
        return torch.tensor([kwargs["input_ids"][0].tolist() + [5]])

    monkeypatch.setattr(model, "generate", generate_spy)
    for attempt in (0, 1):
        generate.complete(model, tokenizer, ids, [], None, attempt, 12, 1000)
    first, retry = seen
    (penalty,) = first["logits_processor"]
    assert isinstance(penalty, RepetitionPenaltyLogitsProcessor) and penalty.prompt_ignore_length == len(ids)
    assert "repetition_penalty" not in first and retry["repetition_penalty"] == generate.PENALTY
    assert not first["do_sample"] and not retry["do_sample"]


def test_a_prompt_token_outside_the_shortlist_can_be_copied_into_the_reply(model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=256)
    every = fast.Shortlist(model.lm_head, torch.arange(3, 320))
    ids = torch.randint(3, 320, (10,)).tolist()
    first = fast.decode(runner, every, ids, 1, ends=[], stop=lambda new: False, deadline=None)[0]
    # a shortlist without the token the others pick first: it is emitted only when copyable
    head = fast.Shortlist(model.lm_head, torch.tensor([t for t in range(3, 320) if t != first]))
    assert fast.decode(runner, head, ids, 1, ends=[], stop=lambda new: False, deadline=None)[0] != first
    prompt = ids + [first]
    copied = fast.decode(runner, head, prompt, 4, ends=[], stop=lambda new: False, deadline=None, copyable=prompt)
    assert copied == fast.decode(runner, every, prompt, 4, ends=[], stop=lambda new: False, deadline=None)
    assert head.with_tokens([]) is head and len(head.with_tokens([first, first]).ids) == len(head.ids) + 1


def test_the_shortlist_rows_are_cached_on_disk_and_refused_for_other_weights(
    model: Gemma3ForCausalLM, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    allowed = torch.arange(3, 320, 2)
    source = tmp_path / "v320-test.json.gz"
    with gzip.open(source, "wt", encoding="utf-8") as out:  # the shipped format: runs of consecutive ids
        json.dump({"runs": [[int(t), 1] for t in allowed]}, out)
    built = fast.Shortlist.cached(model.lm_head, source, tmp_path, "snap")
    assert torch.equal(built.ids, allowed)
    files = list(tmp_path.glob("snap.shortlist-*.pt"))
    assert len(files) == 1
    mapped = fast.Shortlist.cached(model.lm_head, source, tmp_path, "snap")
    assert mapped.rows.q.data_ptr() != built.rows.q.data_ptr()  # read back from the file, not rebuilt
    h = torch.randn(1, 64)
    assert torch.equal(mapped.ids, allowed) and torch.equal(mapped.row_of, built.row_of)
    assert torch.equal(mapped.logits(h), built.logits(h))
    assert torch.equal(mapped.logits(h), fast.Shortlist(model.lm_head, allowed).logits(h))
    # the same key over other weights (a rebuilt snapshot) must not serve stale rows
    other = copy.deepcopy(model.lm_head)
    other.weight_q = other.weight_q.flip(0).contiguous()
    other.scales = other.scales.flip(0).contiguous()
    rebuilt = fast.Shortlist.cached(other, source, tmp_path, "snap")
    assert "for other weights" in caplog.text
    assert torch.equal(rebuilt.logits(h), fast.Shortlist(other, allowed).logits(h))
    files[0].write_bytes(b"not a tensor file")
    assert torch.equal(fast.Shortlist.cached(model.lm_head, source, tmp_path, "snap").logits(h), built.logits(h))
    assert "unusable" in caplog.text
    # another shortlist file is another cache, and replaces this snapshot's old one (60 MB each for
    # the real model); another snapshot's caches stay
    (tmp_path / "other.shortlist-0123456789ab.pt").write_bytes(b"another snapshot's")
    with gzip.open(source, "wt", encoding="utf-8") as out:
        json.dump({"runs": [[3, 100]]}, out)
    assert torch.equal(fast.Shortlist.cached(model.lm_head, source, tmp_path, "snap").ids, torch.arange(3, 103))
    remaining = list(tmp_path.glob("snap.shortlist-*.pt"))
    assert len(remaining) == 1 and remaining[0] != files[0]
    assert (tmp_path / "other.shortlist-0123456789ab.pt").exists()


def test_a_branch_starts_with_the_next_best_first_token_and_shares_the_prompts_cache(
        model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=256)
    head = fast.Shortlist(model.lm_head, None)
    ids = torch.randint(3, 320, (10,), generator=torch.Generator().manual_seed(3)).tolist()
    options = dict(ends=[], stop=lambda new: False, deadline=None, penalize_prompt=False)
    greedy = fast.decode(runner, head, ids, 8, **options)
    prompt = fast.prefill(runner, ids)
    used = prompt[0].used
    assert fast.decode(runner, head, ids, 8, prompt=prompt, **options) == greedy
    with torch.inference_mode():
        ranked = torch.topk(head.logits(prompt[1]), 3).indices.tolist()
    branches = [fast.decode(runner, head, ids, 8, first_rank=rank, prompt=prompt, **options) for rank in (1, 2)]
    assert [b[0] for b in branches] == [int(head.ids[r]) for r in ranked[1:]]
    assert prompt[0].used == used  # the shared cache is copied, never written


def test_the_best_rated_branch_is_sent_and_a_tie_keeps_the_greedy_reply(model: Gemma3ForCausalLM) -> None:
    from bot.errors import EngineTimeout
    from bot.model import generate

    runner = fast.FastGemma(model, max_positions=256)
    head = fast.Shortlist(model.lm_head, None)
    ids = torch.randint(3, 320, (10,), generator=torch.Generator().manual_seed(4)).tolist()
    seen: list[str] = []

    def rate(prompt: tuple[fast.KV, torch.Tensor], reply: str) -> float:
        seen.append(reply)
        return {1: 0.5, 3: 2.0}.get(len(seen), 0.0)  # the third branch rated best

    best = generate.best_of_fast(runner, head, WordTokenizer(), ids, [], None, 6, 1000, 4, rate)
    assert len(seen) == 4 and len(set(seen)) == 4 and best == seen[2]
    greedy = generate.complete_fast(runner, head, WordTokenizer(), ids, [], None, 0, 6, 1000)
    assert seen[0] == greedy
    seen.clear()
    assert generate.best_of_fast(runner, head, WordTokenizer(), ids, [], None, 6, 1000, 4, lambda p, r: 1.0) == greedy
    with pytest.raises(EngineTimeout):  # not even the greedy reply in time: the caller's timeout path
        generate.best_of_fast(runner, head, WordTokenizer(), ids, [], 0.0, 6, 1000, 4, rate)
