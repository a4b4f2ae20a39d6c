"""Small heads over the model's own hidden states at the mood-prompt answer position (and, for the
crisis head, their mean over the message).

Mood (positive / negative / neutral) and crisis (crisis / not) read the same features, so one
forward pass serves both: still one model. Trained by `python -m train.heads` for the exact
weights being served; a head trained for other weights is refused at load, by fingerprint.

A head is linear, or the mean of the logits of a few one-hidden-layer networks (the mood head:
bench/NOTES.md, "A small neural mood head"); either costs well under a millisecond a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "readouts"  # package data: bot/readouts/


@dataclass
class Readout:
    layers: tuple[int, ...]  # features: the final norm after each of these many layers, concatenated
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (labels, features)
    bias: torch.Tensor
    labels: tuple[str, ...]
    fingerprint: str
    note: str = ""
    # calibration chosen on validation rows: logits / temperature + offset
    temperature: float = 1.0
    offset: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    threshold: float = 0.5  # for a two-label head: labels[0] when its probability reaches this
    sure: float | None = None  # the crisis head's threshold for few false alarms (bot/domain.py crisis_scale)
    # networks whose logits are averaged, each (w1, b1, w2, b2) with w1 (width, features), w2 (labels, width);
    # when there are any, `weight` and `bias` are unused
    members: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    # the features go on with the same layers' states averaged over the message's positions (the
    # crisis head: "cut my finger" and "cut myself" differ in more than the answer position shows)
    pooled: bool = False
    # scalar features appended after the states, by name (the FAQ match head reads the entry's BM25 score)
    extra: tuple[str, ...] = ()

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(n, features) -> (n, labels) logits before calibration."""
        z = (hidden - self.mean) / self.std
        if not self.members:
            out: torch.Tensor = z @ self.weight.T + self.bias
            return out
        return torch.stack([F.gelu(z @ w1.T + b1) @ w2.T + b2 for w1, b1, w2, b2 in self.members]).mean(0)

    def probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(n, features) -> (n, labels) calibrated probabilities in the order of `labels`."""
        logits = self.logits(hidden) / self.temperature
        if self.offset.numel():
            logits = logits + self.offset
        return torch.softmax(logits, dim=-1)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "layers": list(self.layers), "mean": self.mean, "std": self.std, "weight": self.weight, "bias": self.bias,
                "labels": list(self.labels), "fingerprint": self.fingerprint, "note": self.note,
                "temperature": self.temperature, "offset": self.offset, "threshold": self.threshold, "sure": self.sure,
                "members": [list(m) for m in self.members], "pooled": self.pooled,
                "extra": list(self.extra),
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> Readout:
        """Read a head file; ValueError names what does not fit, so a damaged file fails at start-up."""
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a head file (it holds a {type(data).__name__})")
        missing = [k for k in ("layers", "mean", "std", "weight", "bias", "labels", "fingerprint") if k not in data]
        if missing:
            raise ValueError(f"{path}: not a head file (missing {', '.join(missing)})")
        head = cls(
            layers=tuple(int(x) for x in data["layers"]), mean=data["mean"].float(), std=data["std"].float(),
            weight=data["weight"].float(), bias=data["bias"].float(),
            labels=tuple(str(v) for v in data["labels"]), fingerprint=str(data["fingerprint"]),
            note=str(data.get("note", "")), temperature=float(data.get("temperature", 1.0)),
            offset=data.get("offset", torch.zeros(0)).float(), threshold=float(data.get("threshold", 0.5)),
            sure=None if data.get("sure") is None else float(data["sure"]),
            members=[tuple(t.float() for t in m) for m in data.get("members") or []],
            pooled=bool(data.get("pooled", False)), extra=tuple(str(v) for v in data.get("extra") or ()),
        )
        problem = head._misfit()
        if problem:
            raise ValueError(f"{path}: {problem}")
        return head

    def _misfit(self) -> str | None:
        """What in the head's shapes does not fit together, or None."""
        features, labels = self.mean.shape[-1], len(self.labels)
        if self.mean.shape != (features,) or self.std.shape != (features,):
            return f"its mean and std do not both have {features} features"
        if self.offset.numel() not in (0, labels):
            return f"its offset does not have {labels} labels"
        if not self.members and (self.weight.shape != (labels, features) or self.bias.shape != (labels,)):
            return f"its linear weights do not fit its {features} features and {labels} labels"
        for member in self.members:
            if len(member) != 4:
                return "a network of the head does not have four tensors"
            w1, b1, w2, b2 = member
            if w1.dim() != 2 or w1.shape[1] != features or b1.shape != (w1.shape[0],) \
                    or w2.shape != (labels, w1.shape[0]) or b2.shape != (labels,):
                return f"a network of the head does not fit its {features} features and {labels} labels"
        return None

    def state_features(self, hidden_size: int) -> int:
        """How many features the head reads from the model's states (its extra scalars left out)."""
        return hidden_size * len(self.layers) * (1 + self.pooled)


def shipped_path(fingerprint: str, head: str = "mood") -> Path:
    suffix = "" if head == "mood" else f".{head}"
    return SHIPPED_DIR / f"{fingerprint}{suffix}.pt"


def reply_layers(depth: int) -> tuple[int, ...]:
    """The reply head's layers (outputs after this many), every sixth of the depth from a third of it:
    6, 9, 12, 15 and 18 of Gemma 3 270M's 18, chosen by cross-validation on graded replies
    (bench/NOTES.md, "Choosing among first-token branches")."""
    return tuple(range(max(1, depth // 3), depth + 1, max(1, depth // 6)))
