"""Pipelined plans: the configuration in words, the stages (which layers, time, memory), the
iteration as one bar and the configurations the search tried."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go

from explorer.figures import abbreviate, fit
from explorer.views.layers import layers_of
from planner.api import PlanResult
from planner.plans.report_doc import configuration_text
from planner.units import format_flop_count, format_seconds, gib, microseconds


def configuration_label(result: PlanResult) -> str:
    """``4 pipeline stages x 32 micro-batches of 48 · recomputation selective · ZeRO 1``: the
    report's wording (:func:`planner.plans.report_doc.configuration_text`)."""
    return configuration_text(result)


def fullest_stage(result: PlanResult) -> int:
    """The stage whose devices need the most memory (the one ``result.memory`` reports)."""
    peaks = [m.peak for m in result.schedule.memory]
    return peaks.index(max(peaks))


def slowest_stage(result: PlanResult) -> int:
    """The stage whose per-micro-batch time sets the pace of the pipeline."""
    times = result.schedule.stage_seconds
    return times.index(max(times))


def stage_work_seconds(result: PlanResult) -> list[float]:
    """Each stage's time per micro-batch without its sends: its operators' compute, collectives
    and redistribution (the schedule's stage time is this plus the sends)."""
    sched = result.schedule
    return [t - s for t, s in zip(sched.stage_seconds, sched.send_seconds)]


def _ranges(indices: Iterable[int]) -> str:
    """``0–3, 8, 10–11``."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def stage_blocks(result: PlanResult) -> pd.DataFrame:
    """The stage of each layer: one row per (block, stage it has operators on), blocks in
    topological order. A block is a repeated layer (:func:`layers_of`) or a run of the operators
    between layers; a model without repeated layers has one block per operator. A stage
    boundary inside a layer shows as the layer on two stages."""
    graph = result.graph
    layers = layers_of(graph)
    by_layer = layers.count >= 2
    stage_of_op = result.schedule.stage_of_op
    blocks: dict[tuple, dict[int, list[str]]] = {}  # ("layer", index) or ("run", n) -> {stage: operators}
    runs, in_run = 0, False
    for name in result.cost_model.planned:  # topological order
        layer = layers.index.get(name) if by_layer else None
        if layer is None and not (by_layer and in_run):
            runs += 1  # a new run: after a layer, or every operator when there are no layers
        in_run = layer is None
        key = ("layer", layer) if layer is not None else ("run", runs)
        blocks.setdefault(key, {}).setdefault(stage_of_op[name], []).append(name)
    rows = []
    for order, ((kind, index), stages) in enumerate(blocks.items()):
        members = [n for names in stages.values() for n in names]
        label = f"{layers.family}{index}" if kind == "layer" else \
            members[0] + (f" (+{len(members) - 1} ops)" if len(members) > 1 else "")
        for stage, names in sorted(stages.items()):
            rows.append({"order": order, "block": label, "stage": stage, "operators": len(names),
                         "GFLOP": sum(graph.operators[n].flops for n in names) / 1e9})
    return pd.DataFrame(rows, columns=["order", "block", "stage", "operators", "GFLOP"])


def stage_layer_figure(result: PlanResult, max_ticks: int = 24) -> go.Figure:
    """Blocks (layers) in order on x, their pipeline stage on y: a staircase, one step per stage
    (with interleaving, the device stages repeat)."""
    frame = stage_blocks(result)
    stages = result.schedule.stages
    fig = go.Figure(go.Scatter(
        x=frame["order"], y=frame["stage"], mode="lines+markers", line=dict(color="#BBBBBB", width=1),
        marker=dict(color=frame["stage"], colorscale="Viridis", cmin=0, cmax=max(stages - 1, 1), size=9,
                    symbol="square", line=dict(width=0.5, color="#333")),
        customdata=[[block, f"{ops:,}", format_flop_count(gflop * 1e9)]  # preformatted: planner.units
                    for block, ops, gflop in zip(frame["block"], frame["operators"], frame["GFLOP"])],
        hovertemplate="%{customdata[0]}: stage %{y}<br>%{customdata[1]} operators, %{customdata[2]} "
                      "forward<extra></extra>",
    ))
    firsts = frame.drop_duplicates("order")
    step = max(1, math.ceil(len(firsts) / max_ticks))
    ticks = firsts.iloc[::step]
    fig.update_layout(height=max(240, min(700, 14 * stages + 200)),
                      xaxis=dict(title="layer (blocks in topological order)", tickvals=list(ticks["order"]),
                                 ticktext=[abbreviate(b, 20) for b in ticks["block"]], tickangle=-45, tickfont=dict(size=9)),
                      yaxis=dict(title="pipeline stage", range=[stages - 0.5, -0.5], dtick=1 if stages <= 16 else None,
                                 zeroline=False))
    return fit(fig, legend=False, top=10)


def stage_table(result: PlanResult) -> pd.DataFrame:
    """Per pipeline stage: what it holds, its time per micro-batch (operators and sends), its
    exposed gradient sync per iteration (training only) and its memory per device."""
    sched = result.schedule
    layers = layers_of(result.graph)
    on_stage: dict[int, list[str]] = {s: [] for s in range(sched.stages)}
    for name, stage in sched.stage_of_op.items():
        on_stage[stage].append(name)
    slowest = slowest_stage(result)
    work = stage_work_seconds(result)
    rows = []
    for s in range(sched.stages):
        held = [layers.index[n] for n in on_stage[s] if n in layers.index]
        rows.append({
            "stage": s, "operators": len(on_stage[s]),
            "layers": f"{layers.family}{_ranges(held)}" if held and layers.count >= 2 else "",
            "operators (µs)": microseconds(work[s]), "sends (µs)": microseconds(sched.send_seconds[s]),
            "per micro-batch (µs)": microseconds(sched.stage_seconds[s]),
            "gradient sync (µs)": microseconds(sched.gradient_sync_seconds[s]),
            "memory per device (GiB)": gib(sched.memory[s].peak), "fits": sched.memory[s].fits,
            "slowest": s == slowest,
        })
    frame = pd.DataFrame(rows)
    return frame if result.options.mode == "train" else frame.drop(columns="gradient sync (µs)")


_SCHEDULE_COLORS = {"operators": "#4C78A8", "sends": "#72B7B2", "bubble": "#BAB0AC", "gradient sync": "#F58518"}


def stage_time_figure(result: PlanResult) -> go.Figure:
    """Each stage's time per micro-batch, operators and sends stacked; the slowest is marked
    (every slot of the pipeline takes its time)."""
    sched = result.schedule
    slowest = slowest_stage(result)
    # the slowest is named in its tick label: an arrow above the bar would reach into the legend
    names = [f"stage {s}" + (" (slowest)" if s == slowest else "") for s in range(sched.stages)]
    fig = go.Figure()
    for label, values in (("operators", stage_work_seconds(result)), ("sends", sched.send_seconds)):
        fig.add_trace(go.Bar(x=names, y=[microseconds(v) for v in values], name=label,
                             marker_color=_SCHEDULE_COLORS[label]))
    fig.update_layout(barmode="stack", height=320, yaxis_title="µs per micro-batch")
    return fit(fig)


def iteration_figure(result: PlanResult) -> go.Figure:
    """One iteration as one bar: micro-batches x the slowest stage (its operators and its sends),
    the fill-and-drain bubble and the gradient sync left exposed; the parts add up to the
    predicted iteration."""
    sched = result.schedule
    s = slowest_stage(result)
    m = sched.micro_batches
    parts = [(f"{m} x slowest stage: operators", m * stage_work_seconds(result)[s], _SCHEDULE_COLORS["operators"]),
             (f"{m} x slowest stage: sends", m * sched.send_seconds[s], _SCHEDULE_COLORS["sends"]),
             ("bubble", sched.bubble_seconds, _SCHEDULE_COLORS["bubble"])]
    if result.options.mode == "train":
        parts.append(("gradient sync", max(sched.gradient_sync_seconds), _SCHEDULE_COLORS["gradient sync"]))
    fig = go.Figure()
    for label, seconds, color in parts:
        fig.add_trace(go.Bar(y=["iteration"], x=[seconds * 1e3], name=label, orientation="h", marker_color=color,
                             customdata=[format_seconds(seconds)], hovertemplate=f"{label}: %{{customdata}}<extra></extra>"))
    fig.update_layout(barmode="stack", height=220, xaxis_title="ms per iteration")
    return fit(fig)


def tried_table(result: PlanResult) -> pd.DataFrame:
    """The configurations the search priced, the one in use marked."""
    s = result.schedule
    rows, marked = [], False
    for row in result.tried:
        chosen = (not marked and (row["stages"], row["micro_batches"], row["recompute"], row["zero"], row["algorithm"])
                  == (s.stages, s.micro_batches, s.recompute, s.zero, result.plan.algorithm)
                  and math.isclose(row["iteration_seconds"], result.total_seconds, rel_tol=1e-9))
        marked = marked or chosen
        rows.append({"stages": row["stages"], "micro-batches": row["micro_batches"],
                     "recomputation": row["recompute"], "ZeRO": row["zero"], "algorithm": row["algorithm"],
                     "iteration (ms)": row["iteration_seconds"] * 1e3,
                     "memory per device (GiB)": gib(row["memory_bytes"]), "fits": row["fits"], "in use": chosen})
    return pd.DataFrame(rows, columns=["stages", "micro-batches", "recomputation", "ZeRO", "algorithm",
                                       "iteration (ms)", "memory per device (GiB)", "fits", "in use"])
