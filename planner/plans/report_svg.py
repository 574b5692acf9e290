"""The report's charts as static SVG, drawn by hand (no plotly, no JavaScript): horizontal stacked
bars with a legend above, an axis ticked in the unit, labels abbreviated with the full name in
each bar's tooltip (``<title>``), and the memory chart scaled to the plan with the device's
capacity a dashed line only when the plan comes near it (else named under the axis).

The width of a text is estimated (0.6 em per character): labels are cut to what the label column
holds, and the SVG scales to its box (``viewBox``), so nothing is clipped.
"""

from __future__ import annotations

import math
from html import escape

from planner.plans.report_doc import COLORS, Chart
from planner.units import format_bytes, format_number, format_seconds

WIDTH = 760
FONT = 12
BAR, GAP = 18, 6
LABEL_CHARS = 36
#: The capacity is drawn on the axis when the peak needs at least this share of it.
CAPACITY_ON_AXIS = 0.6


def text_width(text: str, size: int = FONT) -> float:
    return 0.6 * size * len(text)


def abbreviate(name: str, width: int = LABEL_CHARS) -> str:
    """``name`` cut in the middle to ``width`` characters (its start and its end kept)."""
    if len(name) <= width:
        return name
    tail = (2 * (width - 1)) // 3
    return name[:width - 1 - tail] + "…" + name[len(name) - tail:]


def nice_ticks(top: float) -> list[float]:
    """0 and multiples of 1, 2 or 5 x 10^k up to ``top`` or just past it (at most 6 intervals)."""
    if top <= 0:
        return [0.0]
    k = math.floor(math.log10(top / 6))
    for m in (1, 2, 5, 10):
        step = m * 10.0 ** k
        if top / step <= 6:
            return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]
    return [0.0, top]


#: Byte axes are ticked in one binary unit, chosen by the axis' top.
BYTE_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1))


def axis_ticks(top: float, unit: str) -> tuple[list[float], list[str]]:
    """Tick values (in the chart's unit: seconds or bytes) and their labels: seconds through
    ``format_seconds``; bytes as 1-2-5 steps of one binary unit (``0.5 GiB``, ``1 GiB``)."""
    if unit == "s":
        ticks = nice_ticks(top)
        return ticks, ["0" if t == 0 else format_seconds(t) for t in ticks]
    name, scale = next(((n, s) for n, s in BYTE_UNITS if top >= s), BYTE_UNITS[-1])
    ticks = nice_ticks(top / scale)
    return [t * scale for t in ticks], ["0" if t == 0 else f"{format_number(t)} {name}" for t in ticks]


def _label(value: float, unit: str) -> str:
    return format_seconds(value) if unit == "s" else format_bytes(value)


def _legend(parts: list[str], left: float) -> tuple[list[str], float]:
    """Swatches and names in rows above the plot; returns the elements and the height used."""
    out, x, y = [], left, 14.0
    for part in parts:
        w = 16 + text_width(part) + 18
        if x + w > WIDTH and x > left:
            x, y = left, y + 18
        out.append(f'<rect x="{x:.0f}" y="{y - 10:.0f}" width="11" height="11" fill="{COLORS.get(part, "#888")}"/>'
                   f'<text x="{x + 15:.0f}" y="{y:.0f}">{escape(part)}</text>')
        x += w
    return out, y + 12


def chart_svg(chart: Chart) -> str:
    """One chart as an ``<svg>`` element (inline in HTML; standalone with its namespace)."""
    labels = [abbreviate(b.label) for b in chart.bars]
    left = min(max((text_width(t) for t in labels), default=0) + 10, WIDTH * 0.45)
    parts = list(dict.fromkeys(p for b in chart.bars for p, _ in b.parts))
    elements, top = _legend(parts, 4)
    totals = [sum(v for _, v in b.parts) for b in chart.bars]
    peak = max(totals, default=0.0)
    capacity_on_axis = bool(chart.capacity) and peak >= CAPACITY_ON_AXIS * chart.capacity
    axis_top = max(peak, chart.capacity if capacity_on_axis else 0.0) * 1.08 or 1.0
    ticks, tick_labels = axis_ticks(axis_top, chart.unit)
    axis_top = ticks[-1] or 1.0
    right = WIDTH - 12 - text_width(tick_labels[-1]) / 2
    scale = (right - left) / axis_top
    grid_at = len(elements)  # the grid goes under the bars
    y = top + 6
    for bar, label, total in zip(chart.bars, labels, totals):
        tip = "; ".join(f"{p} {_label(v, chart.unit)}" for p, v in bar.parts)
        x = left
        rects = []
        for part, value in bar.parts:
            w = max(value * scale, 0.0)
            rects.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR}" fill="{COLORS.get(part, "#888")}"/>')
            x += w
        elements.append(f'<g><title>{escape(bar.label)}: {escape(tip)} (total {escape(_label(total, chart.unit))})</title>'
                        f'<text x="{left - 6:.0f}" y="{y + BAR - 5}" text-anchor="end">{escape(label)}</text>'
                        + "".join(rects) + "</g>")
        y += BAR + GAP
    bottom = y
    elements[grid_at:grid_at] = [
        f'<line x1="{left + t * scale:.1f}" y1="{top}" x2="{left + t * scale:.1f}" y2="{bottom}" stroke="#ddd"/>'
        f'<text x="{left + t * scale:.1f}" y="{bottom + 15}" text-anchor="middle">{escape(text)}</text>'
        for t, text in zip(ticks, tick_labels)]
    height = bottom + 22
    if chart.capacity:
        used = f"{peak / chart.capacity:.1%} used"
        if capacity_on_axis:
            x = left + chart.capacity * scale
            elements.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#E45756" '
                            f'stroke-dasharray="5,3" stroke-width="1.5"/>')
        elements.append(f'<text x="{left:.0f}" y="{height + 14}">capacity {escape(format_bytes(chart.capacity))} per '
                        f'device ({used}){"" if capacity_on_axis else ", off this scale"}</text>')
        height += 22
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" width="100%" '
            f'font-family="system-ui, sans-serif" font-size="{FONT}" role="img" aria-label="{escape(chart.title)}">'
            + "".join(elements) + "</svg>")
