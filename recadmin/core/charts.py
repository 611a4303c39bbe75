"""Server-side SVG charts: a line chart over time (several series) and a bar chart, with axes,
labels and a legend. No JavaScript and no CDN: the admin works offline and the markup is cached
like any HTML. Every text is escaped; the result is a SafeString to drop into a template.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe (Okabe-Ito), in the order series get them.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 5 x 10^n steps)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks: list[float] = []
    value = start
    while value <= high + step * 0.5 and len(ticks) < 20:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def format_number(value: float) -> str:
    """Short axis labels: 1.2k, 3.4M, 0.05, 12 %... (percentages are formatted by the caller)."""
    magnitude = abs(value)
    if magnitude >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if magnitude >= 10_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    if magnitude == 0 or magnitude >= 10:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _percent(value: float) -> str:
    return f"{value * 100:.3g} %"


def _text(x: float, y: float, text: str, *, anchor: str = "middle", extra: str = "", size: int = 11) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-family="system-ui, sans-serif" '
        f'font-size="{size}" {extra}>{escape(text)}</text>'
    )


def _frame(width: int, height: int, title: str) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" class="recadmin-chart" style="max-width:{width}px">',
        f"<title>{escape(title)}</title>",
    ]
    if title:
        parts.append(_text(8, 14, title, anchor="start", extra='font-weight="bold"', size=12))
    return parts


def _legend(names: Sequence[str], x: float, y: float, width: float) -> list[str]:
    parts = []
    cursor_x, cursor_y = x, y
    for index, name in enumerate(names):
        label_width = 18 + 6.5 * len(name)
        if cursor_x + label_width > x + width and cursor_x > x:
            cursor_x, cursor_y = x, cursor_y + 14
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{cursor_x:.1f}" y="{cursor_y - 8:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(cursor_x + 14, cursor_y + 1, name, anchor="start"))
        cursor_x += label_width
    return parts


def _time_label(moment: Any, span: float) -> str:
    if isinstance(moment, dt.datetime):
        return moment.strftime("%H:%M" if span <= 2 * 86400 else "%m-%d")
    if isinstance(moment, dt.date):
        return moment.strftime("%m-%d")
    return str(moment)


def _as_seconds(moment: Any) -> float:
    if isinstance(moment, dt.datetime):
        return moment.timestamp()
    if isinstance(moment, dt.date):
        return dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC).timestamp()
    return float(moment)


def line_chart(
    series: Mapping[str, Sequence[tuple[Any, float | None]]],
    *,
    title: str = "",
    y_label: str = "",
    percent: bool = False,
    width: int = 640,
    height: int = 260,
) -> SafeString:
    """Lines over time: {series name: [(datetime | date | number, value or None for a gap)]}."""
    names = list(series)
    points = [(x, y) for values in series.values() for x, y in values if y is not None and math.isfinite(y)]
    legend_rows = 1 + int(sum(18 + 6.5 * len(n) for n in names) // max(width - 80, 1))
    left, right, top, bottom = 56, 12, 24, 34 + 14 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _frame(width, height, title)
    if not points:
        parts.append(_text(width / 2, height / 2, "No data yet"))
        parts.append("</svg>")
        return mark_safe("".join(parts))
    xs = [_as_seconds(x) for x, _ in points]
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    ys = [y for _, y in points]
    ticks = _nice_ticks(min(0.0, min(ys)), max(ys))
    y_low, y_high = ticks[0], ticks[-1]

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y_low) / ((y_high - y_low) or 1) * plot_h

    for tick in ticks:
        y = py(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(_text(left - 4, y + 4, _percent(tick) if percent else format_number(tick), anchor="end"))
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#666"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#666"/>')
    all_x = sorted({x for x, _ in points}, key=_as_seconds)
    step = max(1, math.ceil(len(all_x) / 6))
    for moment in all_x[::step]:
        x = px(_as_seconds(moment))
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#666"/>')
        parts.append(_text(x, top + plot_h + 16, _time_label(moment, x_high - x_low)))
    if y_label:
        parts.append(_text(12, top + plot_h / 2, y_label, extra=f'transform="rotate(-90 12 {top + plot_h / 2:.1f})"'))
    for index, name in enumerate(names):
        colour = PALETTE[index % len(PALETTE)]
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        for x, maybe_y in sorted(series[name], key=lambda p: _as_seconds(p[0])):
            if maybe_y is None or not math.isfinite(maybe_y):
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{px(_as_seconds(x)):.1f},{py(maybe_y):.1f}")
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            elif seg:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(seg)}">'
                    f"<title>{escape(name)}</title></polyline>"
                )
    parts.extend(_legend(names, left, height - 10 - 14 * (legend_rows - 1), plot_w))
    parts.append("</svg>")
    return mark_safe("".join(parts))


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str = "",
    y_label: str = "",
    percent: bool = False,
    errors: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
    width: int = 640,
    height: int = 260,
) -> SafeString:
    """Grouped bars: one group per label, one bar per series ({name: value per label}); `errors`
    draws an interval (low, high) on a bar (a confidence interval)."""
    names = list(series)
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    if errors:
        values += [b for es in errors.values() for e in es if e is not None for b in e if math.isfinite(b)]
    left, right, top, bottom = 56, 12, 24, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _frame(width, height, title)
    if not values or not labels:
        parts.append(_text(width / 2, height / 2, "No data yet"))
        parts.append("</svg>")
        return mark_safe("".join(parts))
    ticks = _nice_ticks(min(0.0, min(values)), max(values))
    y_low, y_high = ticks[0], ticks[-1]

    def py(y: float) -> float:
        return top + plot_h - (y - y_low) / ((y_high - y_low) or 1) * plot_h

    for tick in ticks:
        y = py(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(_text(left - 4, y + 4, _percent(tick) if percent else format_number(tick), anchor="end"))
    zero = py(max(y_low, 0.0))
    parts.append(f'<line x1="{left}" y1="{zero:.1f}" x2="{left + plot_w}" y2="{zero:.1f}" stroke="#666"/>')
    group_w = plot_w / len(labels)
    bar_w = max(2.0, group_w * 0.8 / max(len(names), 1))
    label_step = max(1, math.ceil(len(labels) / max(plot_w // 40, 1)))
    for g, label in enumerate(labels):
        x0 = left + g * group_w + group_w * 0.1
        for s, name in enumerate(names):
            value = series[name][g] if g < len(series[name]) else None
            if value is None or not math.isfinite(value):
                continue
            y = py(value)
            colour = PALETTE[s % len(PALETTE)]
            shown = _percent(value) if percent else format_number(value)
            parts.append(
                f'<rect x="{x0 + s * bar_w:.1f}" y="{min(y, zero):.1f}" width="{bar_w - 1:.1f}" '
                f'height="{abs(zero - y):.1f}" fill="{colour}"><title>{escape(f"{label} · {name}: {shown}")}'
                "</title></rect>"
            )
            interval = (errors or {}).get(name, [None] * len(labels))
            if g < len(interval) and interval[g] is not None:
                low, high = interval[g]  # type: ignore[misc]
                cx = x0 + s * bar_w + (bar_w - 1) / 2
                parts.append(
                    f'<line x1="{cx:.1f}" y1="{py(low):.1f}" x2="{cx:.1f}" y2="{py(high):.1f}" stroke="#333"/>'
                    f'<line x1="{cx - 3:.1f}" y1="{py(low):.1f}" x2="{cx + 3:.1f}" y2="{py(low):.1f}" stroke="#333"/>'
                    f'<line x1="{cx - 3:.1f}" y1="{py(high):.1f}" x2="{cx + 3:.1f}" y2="{py(high):.1f}" stroke="#333"/>'
                )
        if g % label_step == 0:
            parts.append(_text(left + g * group_w + group_w / 2, top + plot_h + 14, label))
    if y_label:
        parts.append(_text(12, top + plot_h / 2, y_label, extra=f'transform="rotate(-90 12 {top + plot_h / 2:.1f})"'))
    if len(names) > 1 or names[0]:
        parts.extend(_legend(names, left, height - 8, plot_w))
    parts.append("</svg>")
    return mark_safe("".join(parts))
