"""A small linear readout over the model's own hidden state at the mood-prompt answer position.

It replaces the three label-token rows with a trained 3-way classifier: still one model and one
forward pass. Trained by bench/train_readout.py on data that no benchmark score comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bot.domain import Label

SHIPPED_DIR = Path(__file__).resolve().parent / "readouts"


@dataclass
class Readout:
    layers: tuple[int, ...]  # features: the final norm after each of these many layers, concatenated
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (labels, hidden)
    bias: torch.Tensor
    labels: tuple[Label, ...]
    fingerprint: str
    note: str = ""

    def probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(n, features) -> (n, labels) probabilities in the order of `labels`."""
        return torch.softmax(((hidden - self.mean) / self.std) @ self.weight.T + self.bias, dim=-1)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "layers": list(self.layers), "mean": self.mean, "std": self.std, "weight": self.weight, "bias": self.bias,
                "labels": [label.value for label in self.labels], "fingerprint": self.fingerprint, "note": self.note,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> Readout:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(
            layers=tuple(int(x) for x in data["layers"]), mean=data["mean"].float(), std=data["std"].float(),
            weight=data["weight"].float(), bias=data["bias"].float(),
            labels=tuple(Label(v) for v in data["labels"]), fingerprint=str(data["fingerprint"]),
            note=str(data.get("note", "")),
        )


def shipped_path(fingerprint: str) -> Path:
    return SHIPPED_DIR / f"{fingerprint}.pt"
