"""The Cost page: D-Rec's decisions for one operator, the costliest operators, the cost per
machine level, and what an operator's cost covers."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from explorer.figures import fit, name_axis
from explorer.safe_markdown import md_text
from explorer.views.layers import dims_text
from explorer.views.splits import strategy_label
from planner.api import PlanResult
from planner.units import SECOND_UNITS, common_scale, format_flop_count, microseconds


def heaviest_operator(result: PlanResult) -> str:
    cost = result.cost
    return max(result.cost_model.planned, key=lambda n: sum(cost.op_seconds(n).values()))


def trace_table(result: PlanResult, name: str) -> pd.DataFrame | None:
    """D-Rec's decisions for one operator: at each recorded step the candidates and the winner."""
    trace = getattr(result.plan, "trace", None) or []
    rows = []
    step = 0
    for entry in trace:
        if entry.get("operator") != name:
            continue
        step += 1
        for cand in entry.get("candidates", []):
            rows.append({
                "step": step, "cut": entry.get("cut"), "level": entry.get("level"), "factor": entry.get("factor"),
                "candidate": cand.get("dim") or "not split",
                "operator (µs)": microseconds(cand.get("op_seconds", float("nan"))),
                "redistribution (µs)": microseconds(cand.get("redistribution_seconds", float("nan"))),
                "total (µs)": microseconds(cand.get("total_seconds", float("nan"))),
                "chosen": (cand.get("dim") == entry.get("chosen")),
            })
    if not trace:
        return None
    return pd.DataFrame(rows, columns=["step", "cut", "level", "factor", "candidate", "operator (µs)",
                                       "redistribution (µs)", "total (µs)", "chosen"])


def traced_operators(result: PlanResult) -> list[str]:
    seen = []
    for entry in getattr(result.plan, "trace", None) or []:
        if entry.get("operator") not in seen:
            seen.append(entry.get("operator"))
    return seen


_TERM_COLORS = {"compute": "#4C78A8", "communication": "#F58518", "redistribution": "#E45756"}


def op_cost_figure(result: PlanResult, top: int = 30) -> go.Figure:
    """Stacked bars of compute, communication and redistribution for the costliest operators."""
    cost = result.cost
    names = sorted(result.cost_model.planned, key=lambda n: -sum(cost.op_seconds(n).values()))[:top]
    fig = go.Figure()
    for term in ("compute", "communication", "redistribution"):
        fig.add_trace(go.Bar(y=names, x=[microseconds(cost.op_seconds(n)[term]) for n in names], name=term,
                             orientation="h", marker_color=_TERM_COLORS[term]))
    fig.update_layout(barmode="stack", height=max(320, 18 * len(names) + 100), xaxis_title=f"µs {cost_unit(result)}",
                      yaxis=dict(name_axis(names), autorange="reversed", tickfont=dict(size=10)))
    return fit(fig)


def cost_unit(result: PlanResult) -> str:
    """What an operator's cost covers: the iteration, or one micro-batch on the operator's stage
    (the operator costs of a plan with stages or micro-batches; the schedule adds the rest)."""
    return "per micro-batch" if result.pipelined else "per iteration"


def level_cost_figure(result: PlanResult) -> go.Figure:
    """Communication and redistribution per machine level (of a stage), with compute on the devices."""
    s = result.cost.seconds()
    by_level = result.cost.by_level()
    cats = ["devices (compute)"] + [f"{lv} level" for lv in by_level]
    # one unit for the axis, the largest bar's (ms for a 0.6 s iteration, not "500k µs")
    unit, scale = common_scale([s["compute"], *(v["communication"] + v["redistribution"] for v in by_level.values())],
                               SECOND_UNITS)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=cats, y=[s["compute"] / scale] + [0.0] * len(by_level), name="compute",
                         marker_color=_TERM_COLORS["compute"]))
    for term in ("communication", "redistribution"):
        fig.add_trace(go.Bar(x=cats, y=[0.0] + [v[term] / scale for v in by_level.values()], name=term,
                             marker_color=_TERM_COLORS[term]))
    fig.update_layout(barmode="stack", height=320, yaxis_title=f"{unit} {cost_unit(result)}")
    return fit(fig)


def costliest_operators(result: PlanResult) -> list[str]:
    """The planned operators, costliest first."""
    cost = result.cost
    return sorted(result.cost_model.planned, key=lambda n: -sum(cost.op_seconds(n).values()))


def operator_caption(result: PlanResult, name: str) -> str:
    """One operator as planned (bound to one micro-batch when there are several), in Markdown."""
    op = result.graph.operators[name]
    per = " per micro-batch" if result.schedule.micro_batches > 1 else ""
    return (f"{md_text(op.op_type)} ({op.kind.value}) · dimensions {md_text(dims_text(op.dims))} · "
            f"{format_flop_count(op.flops)} forward{per} · plan: {md_text(strategy_label(result, name))}")


def overlap_table(result: PlanResult) -> pd.DataFrame:
    """Per iteration, each kind of communication hidden behind compute and exposed
    (planner.cost.overlap; the overlap options are in the sidebar)."""
    rows = result.schedule.overlap_breakdown()
    return pd.DataFrame([{"communication": r["communication"], "hidden (µs)": microseconds(r["hidden_seconds"]),
                          "exposed (µs)": microseconds(r["exposed_seconds"])} for r in rows])
