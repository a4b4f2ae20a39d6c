"""One fresh process: time to ready and peak resident memory while serving (used by bench/speed.py).

    python -m bench.probe ours|llama
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM, so the peak below covers serving only
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


MESSAGES = ["今天考试没考好，心情很低落", "I got promoted today!", "请问你们几点开门？", "worst service ever"] * 5


def main() -> None:
    kind = sys.argv[1]
    if kind == "ours":
        from pathlib import Path

        from bot import prompts
        from bot.config import load_settings
        from bot.domain import ChatTurn, Strategy
        from bot.model.engine import ModelEngine
        from bot.model.loader import load_model

        settings = load_settings(Path(__file__).resolve().parent.parent / "config.yaml")
        engine = ModelEngine(load_model(settings.model), settings.model, settings.sentiment)
        ready = time.perf_counter() - STARTED
        startup_peak = _peak_mib()
        _reset_peak()
        engine.classify_batch(MESSAGES)
        for text in MESSAGES[:4]:
            engine.classify(text)
        engine.generate([ChatTurn("user", MESSAGES[0])], Strategy.COMFORT, "zh",
                        prompts.system_prompt(Strategy.COMFORT, "zh", {}))
    else:
        from pathlib import Path

        from bench.speed import LlamaCpp
        from bot.config import ModelSettings
        from bot.model.loader import embedded_gguf

        llama = LlamaCpp(embedded_gguf(Path(ModelSettings().cache_dir).expanduser()))
        ready = time.perf_counter() - STARTED
        startup_peak = _peak_mib()
        _reset_peak()
        for text in MESSAGES:
            llama.classify_prefix(text)
        llama.generate("User: 今天考试没考好，心情很低落\nAssistant:", 32)
    # VmHWM, not ru_maxrss: on Linux ru_maxrss carries the parent's peak across fork and exec
    serving_peak = _peak_mib()
    print(json.dumps({"ready_s": round(ready, 3), "serving_peak_mib": round(serving_peak, 1),
                      "peak_rss_mib": round(max(startup_peak, serving_peak), 1)}))


if __name__ == "__main__":
    main()
