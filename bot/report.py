"""`python -m bot report`: a per-contact mood table for the last N days and a PNG trend chart."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bot.clock import Clock
from bot.domain import Label, MoodPoint
from bot.store import Store


@dataclass
class ContactRow:
    contact_id: str
    name: str
    counts: dict[Label, int]
    score: float
    change: float  # second half of the period minus the first

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def contact_rows(points: list[MoodPoint]) -> list[ContactRow]:
    by_contact: dict[str, list[MoodPoint]] = defaultdict(list)
    for p in points:
        by_contact[p.contact_id].append(p)
    rows = []
    for contact, mine in by_contact.items():
        counts = {label: sum(p.label is label for p in mine) for label in Label}
        half = len(mine) // 2
        change = _mean([p.score for p in mine[half:]]) - _mean([p.score for p in mine[:half]]) if half else 0.0
        name = next((p.contact_name for p in reversed(mine) if p.contact_name), contact)
        rows.append(ContactRow(contact, name, counts, _mean([p.score for p in mine]), change))
    return sorted(rows, key=lambda r: r.score)


def table(rows: list[ContactRow], days: int) -> str:
    if not rows:
        return f"No moods recorded in the last {days} days."
    header = f"{'contact':<24} {'msgs':>5} {'pos':>5} {'neu':>5} {'neg':>5} {'score':>6} {'trend':>6}"
    lines = [f"Moods over the last {days} days (score: -1 all negative .. +1 all positive)", header, "-" * len(header)]
    for r in rows:
        arrow = "↑" if r.change > 0.2 else "↓" if r.change < -0.2 else "→"
        label = f"{r.name} ({r.contact_id})" if r.name != r.contact_id else r.contact_id
        lines.append(
            f"{label[:24]:<24} {r.total:>5} {r.counts[Label.POSITIVE]:>5} {r.counts[Label.NEUTRAL]:>5} "
            f"{r.counts[Label.NEGATIVE]:>5} {r.score:>+6.2f} {arrow:>6}"
        )
    return "\n".join(lines)


def chart(points: list[MoodPoint], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    daily: dict[str, dict[date, list[float]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}
    for p in points:
        daily[p.contact_id][p.at.date()].append(p.score)
        names[p.contact_id] = p.contact_name or p.contact_id
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    for contact, days in sorted(daily.items()):
        xs = sorted(days)
        ax.plot(xs, [_mean(days[d]) for d in xs], marker="o", label=names[contact])  # type: ignore[arg-type]
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("daily mood score")
    ax.set_title(title)
    if daily:
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no moods recorded", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def report(store: Store, clock: Clock, days: int, contact: str | None, png: Path) -> tuple[str, Path]:
    since = clock.now() - timedelta(days=days)
    contact_id = None
    if contact:
        found = store.find_contacts(contact)
        if not found:
            raise LookupError(f"no contact called {contact!r} in the mood history")
        if len(found) > 1:
            listed = ", ".join(f"{name or cid} ({cid})" for cid, name in found)
            raise LookupError(f"{contact!r} matches several contacts, give the id: {listed}")
        contact_id = found[0][0]
    points = store.moods(contact_id, since=since)
    title = f"Mood trend, last {days} days" + (f": {contact}" if contact else "")
    return table(contact_rows(points), days), chart(points, png, title)
