"""The C decode step (bot/model/kernels.c, loaded by bot/model/native.py) against the torch path
of bot/model/fast.py and against transformers, on a tiny random Gemma 3.

Skipped where the kernels cannot be built (no compiler, a CPU without AVX2), unless
MOODBOT_REQUIRE_KERNELS is set (CI sets it): then that is a failure."""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import pytest
import torch
from transformers import Gemma3ForCausalLM

from bot.model import fast, native
from tests.tiny_models import int8_gemma


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    loaded = native.load(tmp_path_factory.mktemp("kernels"))
    if loaded is None:
        if os.environ.get("MOODBOT_REQUIRE_KERNELS"):
            pytest.fail("the decode kernels could not be built (see the log)")
        pytest.skip("the decode kernels cannot be built here")
    return loaded


@pytest.fixture(scope="module")
def model() -> Gemma3ForCausalLM:
    return int8_gemma()  # the model of tests/test_fast.py


def _both(model: Gemma3ForCausalLM, lib: ctypes.CDLL, positions: int) -> list[tuple[str, fast.FastGemma]]:
    """A runner on torch's kernels and one on the C kernels, over the same weights."""
    runners = []
    for name, kernels in (("torch", None), ("c", lib)):
        runner = fast.FastGemma(model, max_positions=positions)
        runner.use_native(kernels)
        runners.append((name, runner))
    return runners


def _tokens(count: int, seed: int) -> list[int]:
    return torch.randint(3, 320, (count,), generator=torch.Generator().manual_seed(seed)).tolist()


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


@pytest.mark.parametrize("rows,cols,threads", [(1027, 72, 2), (64, 640, 1), (4099, 640, 2), (7, 20, 2)])
def test_matvec_rounds_as_torchs_int8_kernel(lib: ctypes.CDLL, rows: int, cols: int, threads: int) -> None:
    torch.manual_seed(rows)
    w = torch.randint(-128, 128, (rows, cols), dtype=torch.int8)
    scales = _bf16(torch.rand(rows) / 50)
    x = torch.randn(cols) * 3
    y, scratch = torch.full((rows,), float("nan")), torch.empty(cols)
    lib.mb_matvec(w.data_ptr(), scales.data_ptr(), x.data_ptr(), scratch.data_ptr(), y.data_ptr(), rows, cols, threads)
    exact = (w.double() @ _bf16(x).double()) * scales.double()
    # only the float32 sum's order and the bfloat16 rounding of the result differ from exact
    assert torch.allclose(y.double(), exact, rtol=2 ** -8, atol=1e-4)
    assert torch.equal(y, _bf16(y))  # every result rounded to bfloat16, as the kernel it replaces returns


@pytest.mark.parametrize("rows,cols,count", [(1027, 72, 5), (66, 640, 9), (3, 20, 2), (130, 24, 1)])
def test_matmat_rounds_as_torchs_int8_kernel_at_any_thread_count(lib: ctypes.CDLL, rows: int, cols: int,
                                                                 count: int) -> None:
    torch.manual_seed(rows + count)
    w = torch.randint(-128, 128, (rows, cols), dtype=torch.int8)
    scales = _bf16(torch.rand(rows) / 50)
    x = torch.randn(count, cols) * 3
    exact = (_bf16(x).double() @ w.double().T) * scales.double()
    for threads in (1, 2, 3):
        y, scratch = torch.full((count, rows), float("nan")), torch.empty(count, cols)
        lib.mb_matmat(w.data_ptr(), scales.data_ptr(), x.data_ptr(), scratch.data_ptr(), y.data_ptr(), count, rows, cols,
                      threads)
        assert torch.allclose(y.double(), exact, rtol=2 ** -8, atol=1e-4), threads
        assert torch.equal(y, _bf16(y))


@pytest.fixture(scope="module")
def wide_model() -> Gemma3ForCausalLM:
    # a hidden size wider than both the MLP and the attention output (the scratch slot for a
    # product's rounded input is then sized by the hidden size); quantize() int8s only layers whose
    # sizes are multiples of 32, so the kernels' tails for other sizes are tested on the products alone
    return int8_gemma(seed=1, hidden_size=96, intermediate_size=64, num_hidden_layers=3, sliding_window=5,
                      max_position_embeddings=512)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_wide_hidden_size_and_any_thread_count_match_the_torch_path(lib: ctypes.CDLL, wide_model: Gemma3ForCausalLM,
                                                            threads: int) -> None:
    # prompts of 5 and 9 tokens (four-row blocks with tails), then single steps
    chunks = [_tokens(n, n) for n in (5, 9, 1, 1, 1)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = {}
        for name, runner in _both(wide_model, lib, 64):
            kv = runner.new_kv(sum(map(len, chunks)))
            with torch.inference_mode():
                got[name] = [runner.forward(chunk, kv, collect=[0, 2])[1] for chunk in chunks]
    finally:
        torch.set_num_threads(before)
    for a_states, b_states in zip(got["torch"], got["c"]):
        for a, b in zip(a_states, b_states):
            assert torch.allclose(a, b, rtol=3e-2, atol=3e-2)


def test_prompts_up_to_128_tokens_run_in_c_and_longer_ones_in_torch(lib: ctypes.CDLL, wide_model: Gemma3ForCausalLM,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    runner = fast.FastGemma(wide_model, max_positions=512)
    runner.use_native(lib)
    original = runner._native_forward
    monkeypatch.setattr(runner, "_native_forward", lambda ids, *rest: calls.append(len(ids)) or original(ids, *rest))
    ids = _tokens(260, 7)
    reference = fast.FastGemma(wide_model, max_positions=512)
    for prompt in (ids[:100], ids[:128], ids[:129]):
        kv, ref_kv = runner.new_kv(len(prompt) + 2), reference.new_kv(len(prompt) + 2)
        with torch.inference_mode():
            states = [runner.forward(prompt, kv)[0], runner.forward(ids[200:201], kv)[0]]
            expected = [reference.forward(prompt, ref_kv)[0], reference.forward(ids[200:201], ref_kv)[0]]
        for a, b in zip(states, expected):  # the step after the prompt reads the prompt's cache either way
            assert torch.allclose(a, b, rtol=3e-2, atol=3e-2), len(prompt)
    assert calls == [100, 1, 128, 1, 1]  # 129 tokens went through torch, the steps after it through C


def test_decode_steps_match_the_torch_path_past_the_sliding_window(lib: ctypes.CDLL, model: Gemma3ForCausalLM) -> None:
    ids = _tokens(12, 1)
    more = _tokens(10, 2)
    states = {}
    for name, runner in _both(model, lib, 256):
        kv = runner.new_kv(len(ids) + len(more))
        with torch.inference_mode():
            runner.forward(ids, kv)
            states[name] = torch.cat([runner.forward([token], kv)[0] for token in more])
        assert kv.used == len(ids) + len(more)
    assert torch.allclose(states["c"], states["torch"], rtol=3e-2, atol=3e-2)


def test_a_prompt_in_c_matches_the_torch_path_with_collected_layers(lib: ctypes.CDLL, model: Gemma3ForCausalLM) -> None:
    # a prompt after a cached prefix, long enough to pass the sliding window of 8; stopped after
    # 5 of the 6 layers, as the mood readout stops after its last layer
    prefix = _tokens(6, 4)
    ids = _tokens(11, 5)
    got = {}
    for name, runner in _both(model, lib, 256):
        kv = runner.new_kv(len(prefix) + len(ids))
        with torch.inference_mode():
            runner.forward(prefix, kv)
            last, states = runner.forward(ids, kv, layers=5, collect=[1, 4])
        got[name] = (last, states, kv.k.clone(), kv.v.clone())
    for a, b in zip(got["torch"][1], got["c"][1]):
        assert a.shape == b.shape == (len(ids), 64)
        assert torch.allclose(a, b, rtol=3e-2, atol=3e-2)
    assert torch.allclose(got["torch"][0], got["c"][0], rtol=3e-2, atol=3e-2)
    # the same keys and values cached for the 5 layers run; none for the sixth
    assert torch.allclose(got["torch"][2][:5], got["c"][2][:5], rtol=3e-2, atol=3e-2)
    assert torch.allclose(got["torch"][3][:5], got["c"][3][:5], rtol=3e-2, atol=3e-2)
    with pytest.raises(KeyError):
        runner.forward(ids[:2], runner.new_kv(2), layers=2, collect=[3])


def test_greedy_decoding_in_c_matches_transformers_generate(lib: ctypes.CDLL, model: Gemma3ForCausalLM) -> None:
    runner = fast.FastGemma(model, max_positions=256)
    runner.use_native(lib)
    head = fast.Shortlist(model.lm_head, None)
    ids = _tokens(10, 3)
    got = fast.decode(runner, head, ids, 12, ends=[], stop=lambda new: False, deadline=None)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=12, min_new_tokens=12, do_sample=False, repetition_penalty=1.1)
    assert got == out[0, len(ids):].tolist()


def test_without_a_compiler_the_torch_kernels_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(native, "_cpu_ok", lambda: None)  # the compiler's absence, whatever this CPU
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, no gcc
    with caplog.at_level(logging.INFO, logger="bot.model.native"):
        assert native.load(tmp_path / "cache") is None
    assert "decode kernels not used" in caplog.text and "compiler" in caplog.text


def test_without_the_kernel_source_the_torch_kernels_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(native, "_cpu_ok", lambda: None)
    monkeypatch.setattr(native, "SOURCE", tmp_path / "kernels.c")  # an installation that left it out
    with caplog.at_level(logging.INFO, logger="bot.model.native"):
        assert native.load(tmp_path / "cache") is None
    assert "no kernel source" in caplog.text


def test_a_damaged_library_is_built_again(lib: ctypes.CDLL, tmp_path: Path) -> None:
    target = native.library_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a shared object")  # e.g. a copy cut short
    assert native.load(tmp_path) is not None
    assert target.read_bytes()[:4] == b"\x7fELF"
