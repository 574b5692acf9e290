"""The explorer's figure style: every plotly chart of the app goes through :func:`fit` before it is
drawn, so that it fits its box.

- :func:`fit`: automargins on every axis (tick labels and axis titles push the plot area in
  rather than being clipped at the figure's edge), a horizontal legend above the plot, a top
  margin that leaves the legend and the annotations room.
- :func:`name_axis`: categories (operator names) keep their full name as the value, so a hover
  shows it whole, and are shown abbreviated in the middle (:func:`abbreviate`).
- :func:`time_log_axis`: a log axis of seconds with ticks at decades (1-2-5 or every digit when
  the data span less) labelled in the unit: ``1 ms``, ``10 ms``, ``100 ms``; ``20 ms``, ``30 ms``.
- :func:`devices_axis`: a log-2 axis of device counts with ticks at the powers of two.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

import plotly.graph_objects as go

from planner.units import format_seconds

#: The legend: one row above the plot, left-aligned (a legend below collides with the axis title).
LEGEND = dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom", traceorder="normal")
#: Room for the legend (one row) and annotations above the plot; the rest is automargin's.
MARGIN = dict(t=50, l=10, r=10, b=10)
#: Operator names longer than this are abbreviated on axes (the hover shows them whole).
NAME_WIDTH = 32


def fit(fig: go.Figure, legend: bool = True, top: int | None = None) -> go.Figure:
    """``fig`` restyled to fit its box (in place; returned for chaining)."""
    fig.update_xaxes(automargin=True, title_standoff=8)
    fig.update_yaxes(automargin=True, title_standoff=8)
    margin = dict(MARGIN)
    if top is not None:
        margin["t"] = top
    fig.update_layout(margin=margin, font=dict(size=12), hoverlabel=dict(namelength=-1))
    if legend:
        fig.update_layout(legend=LEGEND)
    return fig


def abbreviate(name: str, width: int = NAME_WIDTH) -> str:
    """``name`` shortened to at most ``width`` characters, "…" where parts were left out. A path
    (``/bert/encoder/layer.11/attention/self/query/MatMul``) keeps its last part, its last part
    with a number (the layer) and as many parts before the last as fit:
    ``…/layer.11/…/self/query/MatMul``; other names keep their start and their end."""
    name = str(name)
    if len(name) <= width:
        return name
    parts = name.split("/")
    last = len(parts) - 1
    if last < 1 or len(parts[last]) + 2 > width:
        tail = (2 * (width - 1)) // 3
        return name[:width - 1 - tail] + "…" + name[len(name) - tail:]
    numbered = [i for i in range(last) if any(ch.isdigit() for ch in parts[i])]
    keep = {last}
    for i in numbered[-1:] + list(range(last - 1, -1, -1)):
        if i not in keep and parts[i] and len(_joined(parts, keep | {i})) <= width:
            keep.add(i)
    return _joined(parts, keep)


def _joined(parts: list[str], keep: set[int]) -> str:
    out: list[str] = []
    for i, part in enumerate(parts):
        if i in keep:
            out.append(part)
        elif not out or out[-1] != "…":
            out.append("…")
    return "/".join(out)


def name_axis(names: Sequence[str], width: int = NAME_WIDTH) -> dict:
    """Axis settings for categories named by ``names``: the values stay the full names (the hover
    shows them), the tick texts are abbreviated."""
    names = [str(n) for n in names]  # plotly reads tick texts as HTML: names from a model are escaped
    return dict(tickmode="array", tickvals=names, ticktext=[html.escape(abbreviate(n, width)) for n in names],
                automargin=True)


def nice_log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis that holds ``[lo, hi]`` (both > 0), from the tick at or below
    ``lo`` to the tick at or above ``hi``: decades when the data span two or more; 1, 2 and 5 per
    decade over 0.6 to two; every digit over less."""
    if not (lo > 0 and hi > 0):
        raise ValueError(f"a log axis needs positive bounds, not {lo} and {hi}")
    lo, hi = min(lo, hi), max(lo, hi)
    span = math.log10(hi / lo)
    mantissas = (1,) if span >= 2 else (1, 2, 5) if span >= 0.6 else tuple(range(1, 10))
    every = [float(f"{m}e{k}") for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)
             for m in mantissas]
    first = max(v for v in every if v <= lo * (1 + 1e-9))
    last = min(v for v in every if v >= hi * (1 - 1e-9))
    ticks = [v for v in every if first <= v <= last]
    return ticks if len(ticks) >= 2 else [first, next(v for v in every if v > first)]


def time_log_axis(seconds: Iterable[float]) -> dict:
    """Axis settings for a log axis of times in seconds: ticks from :func:`nice_log_ticks` around
    the data, labelled in the unit by ``format_seconds`` (``1 ms``, ``10 ms``, ``100 ms``)."""
    values = [float(v) for v in seconds if v is not None and math.isfinite(v) and v > 0]
    if not values:
        return dict(type="log", automargin=True)
    ticks = nice_log_ticks(min(values), max(values))
    pad = 0.03 * math.log10(ticks[-1] / ticks[0])
    return dict(type="log", tickmode="array", tickvals=ticks, ticktext=[format_seconds(t) for t in ticks],
                range=[math.log10(ticks[0]) - pad, math.log10(ticks[-1]) + pad], automargin=True)


def devices_axis(counts: Iterable[int]) -> dict:
    """Axis settings for device counts on a log scale: one tick per power of two in the range."""
    counts = [int(c) for c in counts if c and c > 0]
    if not counts:
        return dict(type="log", automargin=True)
    lo, hi = math.floor(math.log2(min(counts))), math.ceil(math.log2(max(counts)))
    ticks = [2 ** k for k in range(lo, hi + 1)]
    return dict(type="log", tickmode="array", tickvals=ticks, ticktext=[f"{t:,}" for t in ticks],
                range=[math.log10(ticks[0]) - 0.05, math.log10(ticks[-1]) + 0.05], automargin=True)
