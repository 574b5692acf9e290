"""Memory per device (of the fullest stage) against the device's capacity: a bar scaled to the
plan, the sentence naming the capacity that the pages print under it, and a table."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from explorer.figures import fit
from explorer.views.pipeline import fullest_stage
from planner.api import PlanResult
from planner.plans.report_doc import memory_parts
from planner.units import byte_unit, clean_float, format_bytes, format_percent

#: The colour of each part (the report's palette).
COLORS = {"parameters": "#4C78A8", "gradients": "#72B7B2", "optimizer state": "#EECA3B", "activations": "#F58518"}


#: The capacity is drawn on the axis when the peak needs at least this share of it; below, the
#: axis is scaled to the plan and the capacity is only named (a 0.46 GiB plan on an 80 GiB axis
#: would be an invisible sliver).
CAPACITY_ON_AXIS = 0.6


def memory_figure(result: PlanResult) -> go.Figure:
    """Memory per device (of the fullest stage), stacked, scaled to the plan; the capacity is a
    dashed line when it is near (or below) the peak, else named in each bar's hover (and in
    :func:`capacity_text`, which the pages print under the chart: an axis title holding it would
    not fit a 1024 px window's half-width column)."""
    mem = result.memory
    parts = [(label, value, COLORS[label]) for label, value in memory_parts(result)]  # no gradients in inference
    row = f"stage {fullest_stage(result)}" if result.schedule.stages > 1 else "per device"
    of = f" of the {format_bytes(mem.capacity)} capacity" if mem.capacity else ""
    unit, scale = byte_unit(mem.peak)  # MiB for a plan below 1 GiB: "0.005 0.01 GiB" ticks read as nothing
    fig = go.Figure()
    for label, value, color in parts:
        fig.add_trace(go.Bar(y=[row], x=[value / scale], name=label, orientation="h", marker_color=color,
                             hovertemplate=f"{label}: {format_bytes(value)}{of}<extra></extra>"))
    peak, capacity = mem.peak / scale, mem.capacity / scale
    if capacity and peak >= CAPACITY_ON_AXIS * capacity:
        top = max(peak, capacity) * 1.08
        color = "#333" if mem.fits else "#E45756"
        fig.add_vline(x=capacity, line=dict(color=color, dash="dash"))
        fig.add_annotation(x=capacity, y=1, yref="paper", yanchor="top", xanchor="right", showarrow=False,
                           text=f"capacity {format_bytes(mem.capacity)}", font=dict(color=color, size=11))
    else:
        top = (peak or 1.0) * 1.15
    fig.update_layout(barmode="stack", height=240, xaxis=dict(title=f"{unit} per device", range=[0, top]))
    return fit(fig)


def capacity_text(result: PlanResult) -> str:
    """``Capacity 74.5 GiB per device; the peak uses 2.2% of it.``: the sentence under the chart."""
    mem = result.memory
    if not mem.capacity:
        return "No device capacity given."
    share = format_percent(mem.peak / mem.capacity)  # a tiny plan's share reads 0.045%, not 0.0%
    return f"Capacity {format_bytes(mem.capacity)} per device; the peak uses {share} of it."


def memory_table(result: PlanResult) -> pd.DataFrame:
    """The parts of the memory per device (inference: parameters and activations only, no
    gradients or optimizer state), the peak and the capacity, in the peak's unit (MiB below
    1 GiB: the report's and the command line's unit for the same peak)."""
    mem = result.memory
    unit, scale = byte_unit(mem.peak)
    rows = [{"part": label, unit: clean_float(value / scale)} for label, value in memory_parts(result)]
    return pd.DataFrame(rows + [{"part": "total (peak)", unit: clean_float(mem.peak / scale)},
                                {"part": "capacity", unit: clean_float(mem.capacity / scale)}])
