"""The Cost page: D-Rec's decisions for one operator, the costliest operators, the cost per
machine level, what an operator's cost covers, and each matrix product's compute efficiency."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from explorer.figures import fit, name_axis
from planner.cost.formula_text import costliest, operator_parts
from explorer.safe_markdown import md_text
from explorer.views.layers import dims_text
from explorer.views.splits import strategy_label
from planner.api import PlanResult
from planner.cost.efficiency import describe
from planner.plans.report import op_splits
from planner.units import SECOND_UNITS, clean_float, common_scale, format_flop_count, format_number, format_percent, microseconds


def heaviest_operator(result: PlanResult) -> str:
    return costliest(result)[0]


def trace_table(result: PlanResult, name: str) -> pd.DataFrame | None:
    """D-Rec's decisions for one operator: at each recorded step the candidates and the winner,
    the three time columns in one unit, that of the largest figure (ms, not 10,593,372 µs)."""
    trace = getattr(result.plan, "trace", None) or []
    entries = [e for e in trace if e.get("operator") == name]
    keys = ("op_seconds", "redistribution_seconds", "total_seconds")
    unit, scale = common_scale([c.get(k, float("nan")) for e in entries for c in e.get("candidates", []) for k in keys],
                               SECOND_UNITS)
    heads = [f"operator ({unit})", f"redistribution ({unit})", f"total ({unit})"]
    rows = []
    for step, entry in enumerate(entries, start=1):
        for cand in entry.get("candidates", []):
            rows.append({
                "step": step, "cut": entry.get("cut"), "level": entry.get("level"), "factor": entry.get("factor"),
                "candidate": cand.get("dim") or "not split",
                **{h: clean_float(cand.get(k, float("nan")) / scale) for h, k in zip(heads, keys)},
                "chosen": (cand.get("dim") == entry.get("chosen")),
            })
    if not trace:
        return None
    return pd.DataFrame(rows, columns=["step", "cut", "level", "factor", "candidate", *heads, "chosen"])


#: Under D-Rec's decisions: what a cut is (the table's "cut 0…5, node factor 2" rows).
TRACE_CAPTION = ("A cut is one split of a machine level into a factor (a level of 64 nodes is six cuts of factor 2); "
                 "D-Rec decides one cut at a time, outermost first, choosing which dimension (if any) to split by "
                 "that factor. At each step: the candidates, their own cost, the redistribution with neighbours "
                 "already decided, and the winner (✓).")


def traced_operators(result: PlanResult) -> list[str]:
    seen = []
    for entry in getattr(result.plan, "trace", None) or []:
        if entry.get("operator") not in seen:
            seen.append(entry.get("operator"))
    return seen


_TERM_COLORS = {"compute": "#4C78A8", "communication": "#F58518", "redistribution": "#E45756", "hidden": "#9D9D9D"}


def op_cost_figure(result: PlanResult, top: int = 30) -> go.Figure:
    """Stacked bars of compute, exposed communication and redistribution for the costliest
    operators: compute plus communication is the total of the operator's card on the Cost page
    (:func:`planner.cost.formula_text.operator_parts`: what the overlaps hide is not drawn)."""
    names = costliest_operators(result)[:top]
    parts = {n: operator_parts(result, n) for n in names}
    fig = go.Figure()
    for term in ("compute", "communication", "redistribution"):
        fig.add_trace(go.Bar(y=names, x=[microseconds(parts[n][term]) for n in names],
                             name="communication (exposed)" if term == "communication" else term,
                             orientation="h", marker_color=_TERM_COLORS[term]))
    fig.update_layout(barmode="stack", height=max(320, 18 * len(names) + 100), xaxis_title=f"µs {cost_unit(result)}",
                      yaxis=dict(name_axis(names), autorange="reversed", tickfont=dict(size=10)))
    return fit(fig)


def cost_unit(result: PlanResult) -> str:
    """What an operator's cost covers: the iteration, or one micro-batch on the operator's stage
    (the operator costs of a plan with stages or micro-batches; the schedule adds the rest)."""
    return "per micro-batch" if result.pipelined else "per iteration"


def _with_hidden_bar(figure):
    """Adds to a figure of the plan's time per level the communication the overlaps hide behind
    compute, drawn below zero, so that the bars add up to the iteration (as the report's cost
    table and the command line's ``iteration`` line do); the axis's unit is read from its title
    (``µs per iteration``)."""
    from functools import wraps

    from planner.units import SECOND_UNITS, US

    @wraps(figure)
    def drawn(result: PlanResult) -> go.Figure:
        fig = figure(result)
        s = result.cost.seconds()
        hidden = s["total"] - result.total_seconds
        if result.pipelined or hidden <= 1e-9 * s["total"]:
            return fig
        scale = dict(SECOND_UNITS).get((fig.layout.yaxis.title.text or "µs").split(" ", 1)[0], US)
        fig.add_trace(go.Bar(x=["hidden behind compute"], y=[-hidden / scale], name="hidden behind compute",
                             marker_color=_TERM_COLORS["hidden"]))
        fig.update_layout(barmode="relative")
        return fig

    return drawn


@_with_hidden_bar
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
    """The planned operators, costliest first by what their card and bar show (the operator's
    own time, overlaps taken off, with its redistribution)."""
    return costliest(result)


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


def _efficiency(result: PlanResult, name: str) -> dict | None:
    cm = result.cost_model
    if name not in result.plan.strategies:
        return None
    return describe(cm.machine.device, result.graph.operators[name], op_splits(result, name))


def _achieved(result: PlanResult, name: str) -> float | None:
    """FLOPs run over compute seconds, as a fraction of the datasheet peak (the roofline included)."""
    cm = result.cost_model
    seconds = result.cost.op_seconds(name)["compute"]
    passes = 1 if cm.mode != "train" else (4 if cm.recomputed(name) else 3)
    local = result.graph.operators[name].flops * passes / max(1, math.prod(op_splits(result, name).values()))
    return local / (seconds * cm.machine.device.peak_flops) if seconds > 0 else None


def efficiency_text(result: PlanResult, name: str) -> str:
    """The operator's compute efficiency with its formula, in Markdown (planner.cost.efficiency)."""
    device = result.cost_model.machine.device
    e = _efficiency(result, name)
    achieved = _achieved(result, name)
    reach = f" It runs at {format_percent(achieved)} of peak here." if achieved is not None else ""
    if e is None:
        why = ("the device has no tile_rows, tile_cols and multiprocessors" if device.multiprocessors is None
               else "not a matrix product")
        return (f"Compute efficiency: the ceiling {format_percent(device.compute_efficiency)} ({why}), "
                f"or the memory roofline when its bytes take longer.{reach}")
    tr, tc = e["tile"]
    return (f"Compute efficiency = ceiling × tile × wave = {format_percent(device.compute_efficiency)} × "
            f"{format_number(e['tile_quantisation'], 3)} × {format_number(e['wave_quantisation'], 3)} = "
            f"**{format_percent(e['efficiency'])}**: {e['batch']} × {e['m']} × {e['n']} output in "
            f"{tr} × {tc} tiles (tile = useful / padded), {e['tiles']} tiles in {e['waves']} waves of "
            f"{e['multiprocessors']} multiprocessors (wave = tiles / (waves × multiprocessors)); the memory "
            f"roofline applies after it.{reach}")


def efficiency_table(result: PlanResult, top: int = 30) -> pd.DataFrame:
    """The costliest matrix products' efficiency: shape, tiles, waves, the two factors, the
    efficiency and the share of peak they run at (memory-bound ones lower)."""
    rows = []
    for name in costliest_operators(result):
        e = _efficiency(result, name)
        if e is None:
            continue
        achieved = _achieved(result, name)
        rows.append({"operator": name, "output (batch × m × n)": f"{e['batch']} × {e['m']} × {e['n']}",
                     "tiles": e["tiles"], "waves": e["waves"], "tile": round(e["tile_quantisation"], 3),
                     "wave": round(e["wave_quantisation"], 3), "efficiency (%)": round(100 * e["efficiency"], 1),
                     "of peak (%)": round(100 * achieved, 1) if achieved is not None else None})
        if len(rows) == top:
            break
    return pd.DataFrame(rows, columns=["operator", "output (batch × m × n)", "tiles", "waves", "tile", "wave",
                                       "efficiency (%)", "of peak (%)"])
