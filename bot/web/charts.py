"""Server-side SVG charts: no JavaScript and no chart library, readable at a glance.

Colours come from classes in static/dashboard.css (mood-positive, mood-negative, ...), because the
content security policy allows no inline style. Every text that reaches the SVG is escaped.
"""

from __future__ import annotations

from datetime import tzinfo

from markupsafe import Markup, escape

from bot.domain import Label, MoodPoint
from bot.web.queries import DayCounts

ORDER = (Label.NEGATIVE, Label.NEUTRAL, Label.POSITIVE)  # stacked bottom-up: the worrying part sits on the axis


def _nice_max(value: int) -> int:
    """The smallest round number at or above `value` whose quarters are whole: the gridlines' top."""
    scale = 1
    while True:
        for base in (4, 8, 12, 16, 20, 24, 32, 40, 60, 80):
            if value <= base * scale:
                return base * scale
        scale *= 10


def daily_chart(days: list[DayCounts], names: dict[str, str], title: str, tz: tzinfo | None) -> Markup:
    """Stacked bars: messages per day and mood."""
    width, height, left, bottom, top = 760, 240, 48, 28, 12
    plot_h = height - bottom - top
    peak = _nice_max(max((sum(d.counts.values()) for d in days), default=0) or 1)
    slot = (width - left - 8) / max(len(days), 1)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for tick in range(5):  # gridlines at 0, 1/4 ... of the rounded peak
        value = peak * tick // 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    for index, day in enumerate(days):
        x = left + index * slot + slot * 0.15
        y = top + plot_h
        label = day.day.astimezone(tz).strftime("%m-%d")
        tooltip = ", ".join(f"{names[m.value]} {day.counts.get(m.value, 0)}" for m in ORDER)
        parts.append(f"<g><title>{escape(label)}: {escape(tooltip)}</title>")
        for mood in ORDER:
            count = day.counts.get(mood.value, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(f'<rect class="mood-{mood.value}" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}"/>')
        parts.append("</g>")
        parts.append(f'<text class="axis" x="{x + slot * 0.35:.1f}" y="{height - 8}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def timeline_chart(points: list[MoodPoint], names: dict[str, str], title: str, tz: tzinfo | None, window: int = 5) -> Markup:
    """One dot per message at its mood score (-1..+1), with the rolling mean as a line."""
    width, height, left, bottom, top = 760, 220, 40, 28, 12
    plot_w, plot_h = width - left - 12, height - bottom - top
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for value in (1, 0, -1):
        y = top + plot_h * (1 - value) / 2
        parts.append(f'<line class="grid{" zero" if value == 0 else ""}" x1="{left}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{f"{value:+d}" if value else "0"}</text>')
    if points:
        first, last = points[0].at, points[-1].at
        span = max((last - first).total_seconds(), 1.0)

        def xy(i: int, score: float) -> tuple[float, float]:
            # by time, so gaps show; a single point sits in the middle
            at = points[i].at
            x = left + plot_w * ((at - first).total_seconds() / span if len(points) > 1 else 0.5)
            return x, top + plot_h * (1 - score) / 2

        line = []
        for i in range(len(points)):
            recent = points[max(0, i - window + 1): i + 1]
            x, y = xy(i, sum(p.score for p in recent) / len(recent))
            line.append(f"{x:.1f},{y:.1f}")
        parts.append(f'<polyline class="trend" points="{" ".join(line)}"/>')
        for i, point in enumerate(points):
            x, y = xy(i, point.score)
            when = point.at.astimezone(tz).strftime("%m-%d %H:%M")
            parts.append(
                f'<circle class="mood-{point.label.value}" cx="{x:.1f}" cy="{y:.1f}" r="4">'
                f"<title>{escape(when)} {escape(names[point.label.value])} {point.confidence:.2f}</title></circle>"
            )
        for at, anchor, x in ((first, "start", left), (last, "end", width - 4)):
            parts.append(f'<text class="axis" x="{x}" y="{height - 8}" text-anchor="{anchor}">'
                         f'{escape(at.astimezone(tz).strftime("%Y-%m-%d %H:%M"))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
