"""Speed and memory of the embedded model: this project's engine against llama.cpp on the same GGUF."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from bot import prompts
from bot.domain import ChatTurn, Strategy
from bot.model.engine import ModelEngine

ROOT = Path(__file__).resolve().parent.parent
REPLY_TOKENS = 64


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def load_average() -> float:
    return os.getloadavg()[0]


# --- classification latency --------------------------------------------------------------------

def ours_classify_times(engine: ModelEngine, texts: Sequence[str]) -> list[float]:
    engine.classify(texts[0])  # warm-up
    times = []
    for text in texts:
        engine.forget_features()  # time each message's own forward pass, not the feature cache
        start = time.perf_counter()
        engine.classify(text)
        times.append(time.perf_counter() - start)
    return times


class LlamaCpp:
    """llama-cpp-python on the very same GGUF file, 2 threads."""

    def __init__(self, gguf: Path, threads: int = 2) -> None:
        from llama_cpp import Llama

        started = time.perf_counter()
        self.llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                         n_batch=512, verbose=False)
        self.load_s = time.perf_counter() - started
        self.label_ids = [self.llm.tokenize(w.encode(), add_bos=False, special=False)[0]
                          for w in prompts.LABEL_WORDS.values()]
        self.prefix = self.llm.tokenize(prompts.CLASSIFY_PREFIX.encode(), add_bos=True, special=True)
        self.llm.reset()
        self.llm.eval(self.prefix)

    def tokens(self, text: str) -> list[int]:
        return self.prefix + self.llm.tokenize(prompts.CLASSIFY_ITEM.format(text=text).encode(), add_bos=False, special=False)

    def classify_full(self, text: str) -> int:
        """The whole prompt evaluated from scratch: the reference the targets name."""
        tokens = self.tokens(text)
        self.llm.reset()
        self.llm.eval(tokens)
        logits = self.llm.scores[self.llm.n_tokens - 1]
        return int(max(range(3), key=lambda i: logits[self.label_ids[i]]))

    def classify_prefix(self, text: str) -> int:
        """Fairer to llama.cpp: keep the evaluated prefix in its KV cache, evaluate only the message.

        Llama.eval() drops the cache past n_tokens first, so rewinding n_tokens reuses the prefix."""
        if self.llm.n_tokens < len(self.prefix) or self.llm.input_ids[: len(self.prefix)].tolist() != self.prefix:
            self.llm.reset()
            self.llm.eval(self.prefix)
        self.llm.n_tokens = len(self.prefix)
        self.llm.eval(self.tokens(text)[len(self.prefix):])
        logits = self.llm.scores[self.llm.n_tokens - 1]
        return int(max(range(3), key=lambda i: logits[self.label_ids[i]]))

    def generate(self, prompt: str, n: int = REPLY_TOKENS) -> tuple[float, float]:
        """(seconds to the complete reply, decode tokens/s) for n greedy tokens, EOS ignored."""
        tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=True)
        started = time.perf_counter()
        first = None
        count = 0
        # llama.cpp's own greedy sampler; EOS is not checked, so exactly n tokens come out
        for _ in self.llm.generate(tokens, temp=0.0, top_k=1, reset=True):
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count == n:
                break
        total = time.perf_counter() - started
        assert first is not None
        return total, (n - 1) / (total - (first - started))


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def llama_classify_times(llama: LlamaCpp, texts: Sequence[str], prefix: bool) -> list[float]:
    fn = llama.classify_prefix if prefix else llama.classify_full
    fn(texts[0])
    return [timed(fn, t)[0] for t in texts]


# --- reply generation ----------------------------------------------------------------------------

def reply_prompt(engine: ModelEngine) -> str:
    """The served reply prompt for the exam message, as text (llama.cpp gets the same text)."""
    strategy = Strategy.COMFORT
    system = prompts.system_prompt(strategy, "zh", {})
    ids, _ = engine.reply_ids([ChatTurn("user", "今天考试没考好，心情很低落")], strategy, "zh", system)
    text = str(engine.tokenizer.decode(ids, skip_special_tokens=False))
    return text.removeprefix(engine.tokenizer.bos_token or "")  # encoding adds it back


def ours_generate(engine: ModelEngine, prompt: str, n: int = REPLY_TOKENS) -> tuple[float, float]:
    ids = torch.tensor([engine.encode(prompt, special=True)])
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=engine.tokenizer.pad_token_id)
    with torch.inference_mode():
        start = time.perf_counter()
        engine.model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
        first = time.perf_counter() - start
        start = time.perf_counter()
        out = engine.model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kwargs)
        total = time.perf_counter() - start
    assert out.shape[1] - ids.shape[1] == n
    return total, (n - 1) / max(total - first, 1e-9)


# --- start-up and memory, each in a fresh process -------------------------------------------------

def probe(kind: str, cache_dir: str | None = None, timeout: int = 900) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cache_dir:
        env["MOODBOT__MODEL__CACHE_DIR"] = cache_dir
    result = subprocess.run([sys.executable, "-m", "bench.probe", kind], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"probe {kind} failed: {result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)
