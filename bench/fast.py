"""Speed against llama.cpp on its own GGUF, in one run: decode, a 64-token reply, classification,
warm start and memory, with the bandwidth limit beside each decode figure.

    python -m bench.fast            # writes bench/SPEED.md (needs llama-cpp-python: `make bench` builds it)
    python -m bench.fast --smoke    # a few tokens, no llama.cpp, nothing written

Also measured here, because the speed-ups must not change what the bot says or how it labels:
- reply agreement: greedy replies over the output shortlist vs the full vocabulary, on every 5th
  prompt of the reply evaluation set (train/data/replies_eval.jsonl, written for this project);
- mood agreement: labels and crisis scores of the fast path vs transformers' forward pass, on
  validation texts carved from the training data (train/data.py), never on a scored set.

The load average is recorded at the start and the end; a run whose load was above 0.5 says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from bench import speed
from bot.config import load_settings
from bot.domain import ChatTurn, Strategy
from bot.model import fast
from bot.model.engine import ModelEngine
from bot.model.generate import copyable, end_tokens
from bot.model.loader import embedded_gguf, load_model

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "SPEED.md"
N = speed.REPLY_TOKENS
# short chat messages for the classification timings, written for this benchmark
MESSAGES = [
    "今天考试没考好，心情很低落", "I got promoted today!", "请问你们几点开门？", "worst service ever",
    "快递三天了还没到", "thanks, that really helped", "周末去爬山吗", "my flight got cancelled again",
    "这家店的蛋糕太好吃了", "can I change my delivery address?", "又被老板骂了", "we won the match!!",
]


def bandwidth_gbs(mib: int = 512, repeats: int = 5) -> float:
    """Read bandwidth of this machine with torch's threads: the median of summing a large array."""
    data = torch.ones(mib * 1024 * 1024 // 4)
    data.sum()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        data.sum()
        times.append(time.perf_counter() - started)
    return data.numel() * 4 / statistics.median(times) / 1e9


def step_bytes(engine: ModelEngine, head_rows: int) -> int:
    """Weight bytes one decode step reads: every int8 layer of the body plus the output rows used."""
    assert engine.fast is not None
    body = sum(t.q.numel() + t.scales.numel() * 4 for layer in engine.fast.layers
               for t in (layer.qkv, layer.o, layer.gate_up, layer.down))
    return body + head_rows * (engine.model.config.hidden_size + 4)


def fast_generate(engine: ModelEngine, ids: list[int], head: fast.Shortlist, n: int = N) -> tuple[float, float]:
    """(seconds to the complete n-token reply, decode tokens/s), EOS ignored as llama.cpp's run does."""
    assert engine.fast is not None
    started = time.perf_counter()
    fast.decode(engine.fast, head, ids, 1, [], lambda new: False, None)
    first = time.perf_counter() - started
    started = time.perf_counter()
    fast.decode(engine.fast, head, ids, n, [], lambda new: False, None)
    total = time.perf_counter() - started
    return total, (n - 1) / max(total - first, 1e-9)


def reply_agreement(engine: ModelEngine, limit: int | None) -> dict[str, Any]:
    assert engine.fast is not None and engine.head is not None
    rows = [json.loads(line) for line in (ROOT / "train/data/replies_eval.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = rows[::5][:limit]
    full = fast.Shortlist(engine.model.get_output_embeddings(), None)
    ends = end_tokens(engine.tokenizer)
    same, examples = 0, []
    for row in rows:
        history = [ChatTurn(role, text) for role, text in row["history"]] + [ChatTurn("user", row["message"])]
        ids, _ = engine.reply_ids(history, Strategy(row["strategy"]), row["lang"], "", row["knowledge"])
        # the shortlist as the bot decodes a first reply with it: the prompt's own tokens may be
        # copied, and only the reply's own are penalised
        got = [fast.decode(engine.fast, head, ids, N, ends, lambda new: False, None,
                           copyable=copyable(engine.tokenizer, ids), penalize_prompt=False)
               for head in (engine.head, full)]
        if got[0] == got[1]:
            same += 1
        else:
            examples.append((row["message"], *(engine.tokenizer.decode(g, skip_special_tokens=True) for g in got)))
    return {"prompts": len(rows), "identical": same, "differing": examples}


def mood_agreement(engine: ModelEngine, hf_engine: ModelEngine, limit: int) -> dict[str, Any]:
    """The fast path's labels and crisis flags against transformers' forward pass on the same weights."""
    from train.data import crisis_rows, mood_training_mix

    texts = [row.text for row in mood_training_mix(250)[1]][:limit] + [row.text for row in crisis_rows("validation")]
    got = [[(e.classify(t).label.value, e.crisis_score(t) >= 0.5) for t in texts] for e in (engine, hf_engine)]
    labels = sum(a[0] == b[0] for a, b in zip(*got))
    crisis = sum(a[1] == b[1] for a, b in zip(*got))
    return {"texts": len(texts), "same_label": labels, "same_crisis_flag": crisis}


def percentile_ms(values: Sequence[float], q: float) -> float:
    return speed.percentile(values, q) * 1000


def run(smoke: bool, runs: int) -> dict[str, Any]:
    settings = load_settings(ROOT / "config.yaml")
    engine = ModelEngine(load_model(settings.model), settings.model, settings.sentiment)
    if engine.fast is None or engine.head is None:
        raise SystemExit("the fast path is not in use for this model (model.decoder or an unsupported model)")
    from bench.run import machine

    here = machine()
    out: dict[str, Any] = {"load_avg_start": speed.load_average(), "threads": torch.get_num_threads(),
                           "date": here["date"], "cpu": here["cpu"]}
    out["bandwidth_gbs"] = bandwidth_gbs(64 if smoke else 512)
    n = 8 if smoke else N
    prompt = speed.reply_prompt(engine)
    ids = engine.encode(prompt, special=True)
    full = fast.Shortlist(engine.model.get_output_embeddings(), None)
    rows = {"shortlist": len(engine.head.ids), "full": full.vocab}
    for name, head in (("fast+shortlist", engine.head), ("fast, full vocabulary", full)):
        timings = [fast_generate(engine, ids, head, n) for _ in range(runs)]
        out[name] = {"reply_s": statistics.median(t[0] for t in timings), "tok_s": statistics.median(t[1] for t in timings),
                     "bytes": step_bytes(engine, rows["shortlist" if head is engine.head else "full"])}
    lib = engine.fast.native
    if lib is not None:  # the same loop on torch's kernels (model.decoder: torch), for comparison
        engine.fast.use_native(None)
        timings = [fast_generate(engine, ids, engine.head, n) for _ in range(runs)]
        out["fast+shortlist, torch kernels"] = {"reply_s": statistics.median(t[0] for t in timings),
                                                "tok_s": statistics.median(t[1] for t in timings),
                                                "bytes": out["fast+shortlist"]["bytes"]}
        texts = MESSAGES[:4] if smoke else MESSAGES
        out["classify_torch_p50_ms"] = statistics.median(
            percentile_ms(speed.ours_classify_times(engine, texts), 50) for _ in range(runs))
        engine.fast.use_native(lib)
    # transformers' generate() needs transformers' model, which the fast path's warm start skips
    hf_settings = settings.model.model_copy(update={"decoder": "transformers"})
    hf_engine = ModelEngine(load_model(hf_settings), hf_settings, settings.sentiment)
    timings = [speed.ours_generate(hf_engine, prompt, n) for _ in range(max(1, runs // 2))]
    out["transformers generate()"] = {"reply_s": statistics.median(t[0] for t in timings),
                                      "tok_s": statistics.median(t[1] for t in timings)}
    texts = MESSAGES[:4] if smoke else MESSAGES
    classify = [speed.ours_classify_times(engine, texts) for _ in range(runs)]
    out["classify_p50_ms"] = statistics.median(percentile_ms(c, 50) for c in classify)
    if not smoke:
        from bench.run import ensure_llama_cpp

        ensure_llama_cpp()
        llama = speed.LlamaCpp(embedded_gguf(Path(settings.model.cache_dir).expanduser()))
        timings = [llama.generate(prompt, n) for _ in range(runs)]
        out["llama.cpp"] = {"reply_s": statistics.median(t[0] for t in timings),
                            "tok_s": statistics.median(t[1] for t in timings),
                            "bytes": os.path.getsize(embedded_gguf(Path(settings.model.cache_dir).expanduser()))}
        lc = [speed.llama_classify_times(llama, texts, prefix=True) for _ in range(runs)]
        out["llama_classify_p50_ms"] = statistics.median(percentile_ms(c, 50) for c in lc)
        del llama
        out["load_avg_speed_end"] = speed.load_average()
        warm = [speed.probe("ours") for _ in range(runs)]
        lw = [speed.probe("llama") for _ in range(runs)]
        out["ours_ready_s"] = speed.median_of(warm, "ready_s")
        out["ours_serving_mib"] = speed.median_of(warm, "serving_peak_mib")
        out["llama_ready_s"] = speed.median_of(lw, "ready_s")
        out["llama_serving_mib"] = speed.median_of(lw, "serving_peak_mib")
        out["replies"] = reply_agreement(engine, None)
        out["mood"] = mood_agreement(engine, hf_engine, 300)
    out["load_avg_end"] = speed.load_average()
    return out


def write(data: dict[str, Any], path: Path) -> None:
    bw = data["bandwidth_gbs"]
    llama = data["llama.cpp"]

    def limit(row: dict[str, Any]) -> str:
        return f"{bw * 1e9 / row['bytes']:.0f} tok/s ({row['bytes'] / 1e6:.0f} MB a token)"

    lines = [
        "# Speed: this engine against llama.cpp on the same GGUF",
        "",
        f"`python -m bench.fast`, {data['threads']} threads. Load average {data['load_avg_start']:.2f} at the start"
        + (" (**above 0.5: other work was running; treat the times as noisy**)" if data['load_avg_start'] > 0.5 else
           " (a quiet machine)")
        + f", {data['load_avg_speed_end']:.2f} after the speed runs and {data['load_avg_end']:.2f} at the end: those two "
        "count the benchmark's own two busy threads. "
        f"Read bandwidth measured in the same run: {bw:.1f} GB/s. Medians of each run's figure.",
        "",
        "| figure | moodbot | llama.cpp | ratio (llama.cpp ÷ moodbot for times) |",
        "|---|---|---|---|",
        f"| decode, tok/s | {data['fast+shortlist']['tok_s']:.1f} | {llama['tok_s']:.1f} | "
        f"{data['fast+shortlist']['tok_s'] / llama['tok_s']:.2f}× |",
        f"| 64-token reply, s | {data['fast+shortlist']['reply_s']:.2f} | {llama['reply_s']:.2f} | "
        f"{llama['reply_s'] / data['fast+shortlist']['reply_s']:.2f}× |",
        f"| classification p50, ms (llama.cpp: cached prefix, all layers) | {data['classify_p50_ms']:.1f} | "
        f"{data['llama_classify_p50_ms']:.1f} | {data['llama_classify_p50_ms'] / data['classify_p50_ms']:.2f}× |",
        f"| warm start to ready, s | {data['ours_ready_s']:.2f} | {data['llama_ready_s']:.2f} | "
        f"{data['llama_ready_s'] / data['ours_ready_s']:.2f}× |",
        f"| serving peak RSS, MiB | {data['ours_serving_mib']:.0f} | {data['llama_serving_mib']:.0f} | "
        f"{data['llama_serving_mib'] / data['ours_serving_mib']:.2f}× |",
        "",
        "Decode variants (64 greedy tokens of the exam reply prompt, EOS ignored) and their bandwidth limit, "
        "bytes read per token ÷ the measured bandwidth:",
        "",
        "| variant | decode tok/s | 64-token reply s | limit |",
        "|---|---|---|---|",
    ]
    for name in ("fast+shortlist", "fast+shortlist, torch kernels", "fast, full vocabulary", "transformers generate()",
                 "llama.cpp"):
        if name not in data:
            continue
        row = data[name]
        lines.append(f"| {name} | {row['tok_s']:.1f} | {row['reply_s']:.2f} | {limit(row) if 'bytes' in row else ''} |")
    replies, mood = data["replies"], data["mood"]
    lines += [
        "",
        "llama.cpp's limit counts the whole GGUF file as read per token (an upper bound on its bytes). "
        "`fast+shortlist` is the path the bot serves: every layer of a step in C (bot/model/kernels.c); "
        "`torch kernels` is the same loop on torch's int8 kernel and ops (`model.decoder: torch`)"
        + (f", whose classification p50 was {data['classify_torch_p50_ms']:.1f} ms." if "classify_torch_p50_ms" in data
           else "."),
        "",
        f"**Reply agreement** (shortlist vs full vocabulary, greedy, every 5th replies_eval prompt; the "
        f"shortlist as the bot decodes with it, the prompt's own tokens copyable): {replies['identical']} of "
        f"{replies['prompts']} replies identical." + (" The others, shortlist first:" if replies["differing"] else ""),
        "",
    ]
    for message, short, full in replies["differing"]:
        lines += [f"- {message}", f"  - shortlist: {short}", f"  - full: {full}"]
    lines += [
        "",
        f"**Mood agreement** (fast path vs transformers' forward pass, {mood['texts']} validation texts from the "
        f"training data): same label for {mood['same_label']}, same crisis flag for {mood['same_crisis_flag']}.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


README_START, README_END = "<!-- speed:start -->", "<!-- speed:end -->"


def readme_table(data: dict[str, Any]) -> list[str]:
    """The README's headline speed table, from one run of this benchmark."""
    ours, llama, bw = data["fast+shortlist"], data["llama.cpp"], data["bandwidth_gbs"]
    quiet = "a quiet machine" if data["load_avg_start"] <= 0.5 else "**not a quiet machine**"
    return [
        f"Measured by `python -m bench.fast` on {data['date']} ({data['cpu']}, {data['threads']} threads; load average "
        f"{data['load_avg_start']:.2f} at the start, {quiet}; read bandwidth {bw:.1f} GB/s). "
        "Full tables: [bench/SPEED.md](bench/SPEED.md).",
        "",
        "| speed and memory | moodbot | llama.cpp, same GGUF | limit (bytes a token ÷ bandwidth) |",
        "|---|---|---|---|",
        f"| decode, greedy | {ours['tok_s']:.1f} tok/s | {llama['tok_s']:.1f} tok/s | "
        f"{bw * 1e9 / ours['bytes']:.0f} / {bw * 1e9 / llama['bytes']:.0f} tok/s |",
        f"| 64-token reply | {ours['reply_s']:.2f} s | {llama['reply_s']:.2f} s | |",
        f"| classify a short message, p50 | {data['classify_p50_ms']:.1f} ms | {data['llama_classify_p50_ms']:.1f} ms "
        "(prefix cached) | |",
        f"| warm start to ready | {data['ours_ready_s']:.2f} s | {data['llama_ready_s']:.2f} s | |",
        f"| peak memory while serving | {data['ours_serving_mib']:.0f} MiB | {data['llama_serving_mib']:.0f} MiB | |",
    ]


def update_readme(data: dict[str, Any], readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(head + README_START + "\n" + "\n".join(readme_table(data)) + "\n" + README_END + tail,
                      encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fast", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    data = run(args.smoke, 1 if args.smoke else args.runs)
    print(json.dumps({k: v for k, v in data.items() if k not in ("replies",)}, indent=1, default=str))
    if not args.smoke:
        write(data, OUT)
        update_readme(data, ROOT / "README.md")
        from bench.report import update_sections

        update_sections(ROOT / "bench" / "REPORT.md")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
