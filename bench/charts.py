"""Benchmark charts (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_chart(results: list[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    sets = list(dict.fromkeys(r["set"] for r in results))
    methods = list(dict.fromkeys(r["method"] for r in results))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=100)
    for i, method in enumerate(methods):
        xs, ys = [], []
        for j, name in enumerate(sets):
            row = next((r for r in results if r["set"] == name and r["method"] == method), None)
            if row:
                xs.append(j + i * width - 0.4 + width / 2)
                ys.append(row["macro_f1"] if name.startswith("chat") else row["accuracy"])
        ax.bar(xs, ys, width, label=method)
    ax.set_xticks(range(len(sets)), [s + ("\n(macro-F1, 3 classes)" if s.startswith("chat") else "\n(accuracy)") for s in sets])
    ax.set_ylim(0, 1)
    ax.axhline(0.85, color="grey", linestyle=":", linewidth=1)
    ax.set_title("Mood accuracy by data set and method")
    ax.legend(fontsize="small", ncol=3, loc="lower center", bbox_to_anchor=(0.5, -0.42))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def latency_chart(speed: dict[str, Any], path: Path) -> None:
    plt = _plt()
    c = speed["classify"]
    series = [("moodbot", c["samples_ms"])]
    if "llama_full_samples_ms" in c:
        series += [("llama.cpp, whole prompt", c["llama_full_samples_ms"]),
                   ("llama.cpp, cached prefix", c["llama_prefix_samples_ms"])]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    ax.boxplot([s for _, s in series], showfliers=True)
    ax.set_xticks(range(1, len(series) + 1), [name for name, _ in series])
    ax.set_ylabel("ms per message")
    ax.set_title("Classification latency, messages of 30 characters or fewer (2 threads)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
