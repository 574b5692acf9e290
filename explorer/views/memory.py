"""Memory per device (of the fullest stage) against the device's capacity: a bar and a table."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from explorer.views.pipeline import fullest_stage
from planner.api import PlanResult
from planner.units import gib


def memory_figure(result: PlanResult) -> go.Figure:
    """Memory per device (of the fullest stage), stacked, against the device's capacity."""
    mem = result.memory
    parts = [("parameters", mem.parameters, "#4C78A8"), ("gradients", mem.gradients, "#72B7B2"),
             ("optimizer state", mem.optimizer_state, "#EECA3B"), ("activations", mem.activations, "#F58518")]
    row = f"stage {fullest_stage(result)}" if result.schedule.stages > 1 else "per device"
    fig = go.Figure()
    for label, value, color in parts:
        fig.add_trace(go.Bar(y=[row], x=[gib(value)], name=label, orientation="h", marker_color=color,
                             hovertemplate=f"{label}: %{{x:.3g}} GiB<extra></extra>"))
    fig.add_vline(x=gib(mem.capacity), line=dict(color="#E45756" if not mem.fits else "#333", dash="dash"),
                  annotation_text=f"capacity {gib(mem.capacity):.3g} GiB", annotation_position="top")
    fig.update_layout(barmode="stack", height=220, xaxis_title="GiB", margin=dict(t=40, l=10, r=10, b=10),
                      xaxis=dict(range=[0, max(gib(mem.peak), gib(mem.capacity)) * 1.1]),
                      legend=dict(orientation="h", y=-0.5))
    return fig


def memory_table(result: PlanResult) -> pd.DataFrame:
    mem = result.memory
    return pd.DataFrame([
        {"part": "parameters", "GiB": gib(mem.parameters)},
        {"part": "gradients", "GiB": gib(mem.gradients)},
        {"part": "optimizer state", "GiB": gib(mem.optimizer_state)},
        {"part": "activations", "GiB": gib(mem.activations)},
        {"part": "total (peak)", "GiB": gib(mem.peak)},
        {"part": "capacity", "GiB": gib(mem.capacity)},
    ])
