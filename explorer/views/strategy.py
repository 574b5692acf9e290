"""The Strategy page: every planned operator's splits per machine level, the heatmap by machine
cut, overriding one operator, and comparing with an uploaded plan file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pandas as pd
import plotly.graph_objects as go

from explorer.figures import fit, name_axis
from explorer.options import error_text
from explorer.safe_markdown import md_text
from explorer.views.overview import split_by_level
from explorer.views.layers import dims_text, layers_of
from explorer.views.splits import PALETTE, cut_labels, level_splits, role_label, strategy_label
from planner.api import PlanOptions, PlanResult
from planner.cost.result import result_for
from planner.cost.model import Plan, PlanError
from planner.plans.override import price_override
from planner.plans.plan_json import check_plan_bounds, check_plan_fields, merge_recorded_options
from planner.units import format_bytes, format_delta_seconds, format_seconds, format_speedup, microseconds


def strategy_table(result: PlanResult) -> pd.DataFrame:
    """Every planned operator: its pipeline stage (when there are several), its splits, its cuts
    per machine level and its cost (µs, :func:`cost_unit`)."""
    graph = result.graph
    layers = layers_of(graph)
    cost = result.cost
    stage_of_op = result.schedule.stage_of_op if result.schedule.stages > 1 else None
    pos = {n: i for i, n in enumerate(graph.topological_order())}
    rows = []
    for name in result.cost_model.planned:
        op = graph.operators[name]
        secs = cost.op_seconds(name)
        row = {
            "position": pos[name], "operator": name, "type": op.op_type, "kind": op.kind.value,
            "layer": layers.index.get(name),
            **({"stage": stage_of_op[name]} if stage_of_op else {}),
            "dimensions": dims_text(op.dims), "split": strategy_label(result, name),
            "what is split": role_label(result, name),
        }
        for lv, text in level_splits(result, name).items():
            row[f"{lv} level"] = text
        row.update({"compute (µs)": microseconds(secs["compute"]), "communication (µs)": microseconds(secs["communication"]),
                    "redistribution (µs)": microseconds(secs["redistribution"]),
                    "total (µs)": microseconds(sum(secs.values()))})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "layer" in frame:
        frame["layer"] = frame["layer"].astype("Int64")
    return frame


def strategy_heatmap(result: PlanResult, names: list[str], max_rows: int = 400) -> go.Figure:
    """Operators (rows) by machine cut (columns), coloured by the dimension split at that cut."""
    cm = result.cost_model
    names = names[:max_rows]
    labels = cut_labels(cm)
    dims = sorted({d for n in names for d in result.plan.strategies[n] if d is not None})
    categories = ["none"] + dims
    code = {c: i for i, c in enumerate(categories)}
    z, text = [], []
    for n in names:
        s = result.plan.strategies[n]
        z.append([code[d if d is not None else "none"] for d in s])
        text.append([f"{n}<br>{lab}: {d or 'not split'}" for lab, d in zip(labels, s)])
    k = len(categories)
    colors = ["#EEEEEE"] + [PALETTE[i % len(PALETTE)] for i in range(k - 1)]
    scale = []
    for i, c in enumerate(colors):
        scale += [[i / k, c], [(i + 1) / k, c]]
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=names, text=text, hovertemplate="%{text}<extra></extra>", colorscale=scale,
        zmin=-0.5, zmax=k - 0.5, xgap=1, ygap=0.5,
        colorbar=dict(title="dimension", tickvals=list(range(k)), ticktext=categories),
    ))
    fig.update_layout(height=max(300, min(1200, 14 * len(names) + 120)),
                      yaxis=dict(name_axis(names), autorange="reversed", tickfont=dict(size=9)), xaxis=dict(side="top"))
    return fit(fig, legend=False, top=10)


def with_override(result: PlanResult, name: str, strategy: tuple) -> PlanResult:
    """The same plan with one operator's strategy replaced, scored by the shared evaluator in the
    same configuration (the stages are balanced again for the changed plan)."""
    cm = result.cost_model
    if cm.assignment(name, tuple(strategy)) is None:
        raise PlanError(f"{name}: the split {list(strategy)} does not divide the operator's dimensions; "
                        "choose a dimension the cut's factor divides")
    strategies = dict(result.plan.strategies)
    strategies[name] = tuple(strategy)
    plan = Plan(strategies, f"{result.plan.algorithm} with {name} overridden", 0.0)
    return result_for(cm, plan, result.options, split=result.split, data_parallel_seconds=result.data_parallel_seconds)


def plan_diff(a: PlanResult, b: PlanResult, label_a: str = "current", label_b: str = "other") -> pd.DataFrame:
    """Operators whose strategies differ between two plans of the same model and machine."""
    rows = []
    for name in a.cost_model.planned:
        sa, sb = a.plan.strategies.get(name), b.plan.strategies.get(name)
        if sa == sb:
            continue
        ta, tb = sum(a.cost.op_seconds(name).values()), sum(b.cost.op_seconds(name).values())
        rows.append({"operator": name, "type": a.graph.operators[name].op_type,
                     f"{label_a} split": strategy_label(a, name), f"{label_b} split": strategy_label(b, name),
                     f"{label_a} (µs)": microseconds(ta), f"{label_b} (µs)": microseconds(tb),
                     "difference (µs)": microseconds(tb - ta)})
    frame = pd.DataFrame(rows, columns=["operator", "type", f"{label_a} split", f"{label_b} split", f"{label_a} (µs)",
                                        f"{label_b} (µs)", "difference (µs)"])
    return frame.sort_values("difference (µs)", key=lambda s: -s.abs()) if len(frame) else frame


def read_plan_json(data: bytes) -> dict:
    """Parse an uploaded plan file; ValueError with a fix-it message."""
    check_plan_bounds(data, "the plan file")
    try:
        plan = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("the plan file is not UTF-8 text: upload the .json written by `python -m planner plan --json`") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the plan file is not valid JSON ({exc.msg} at line {exc.lineno}): upload the .json written "
                         "by `python -m planner plan --json` or the Report page") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("ops"), list):
        raise ValueError('the plan file must be a JSON object with a list "ops" (the schema of '
                         "`python -m planner plan --json`)")
    return check_plan_fields(plan, "the plan file")


def plan_file_options(current: PlanOptions, data: dict) -> PlanOptions:
    """The options to score an uploaded plan with: the current ones, then the plan file's recorded
    options (:func:`planner.plans.plan_json.merge_recorded_options`, the CLI's merge too)."""
    try:
        return merge_recorded_options(data, current)[0]
    except ValueError as exc:
        raise ValueError(f"the plan file's options are not valid: {exc}") from None


def header_caption(result: PlanResult, h: dict) -> str:
    """The page's first line: the plan's time, speed-up, kind of parallelism and configuration."""
    return (f"{result.plan.algorithm} on {h['devices']:,} devices: {h['iteration']} per iteration, "
            f"{h['speedup']} over pure data parallel · split by level: {md_text(split_by_level(result))} · "
            f"{h['configuration']}")


def override_outcome(result: PlanResult, name: str, strategy: tuple) -> tuple[list[dict], str, str | None]:
    """One operator's split overridden (:func:`planner.plans.override.price_override`): per pricing
    (stages fixed, and re-balanced when pipelined) the iteration, its change, the speed-up and the
    memory as text; the explanation; or the reason the split is not valid."""
    try:
        priced = price_override(result, name, strategy)
    except PlanError as exc:
        return [], "", str(exc)
    shown = [("stages fixed", priced.fixed), ("re-balanced", priced.rebalanced)] if priced.pipelined \
        else [("", priced.fixed)]
    rows = [{"label": f"Iteration with the override{f' ({label})' if label else ''}",
             "iteration": format_seconds(alt.total_seconds),
             "delta": format_delta_seconds(alt.total_seconds - result.total_seconds),
             "speedup": format_speedup(alt.speedup_over_data_parallel),
             "memory": format_bytes(alt.memory.peak), "fits": alt.memory.fits} for label, alt in shown]
    return rows, " ".join(priced.lines()), None


def score_plan_file(ctx, name: str, raw: bytes) -> tuple[dict | None, str | None]:
    """An uploaded plan file scored on the context's model and machine with its own configuration
    (:func:`plan_file_options`) against the plan in use, or the message to show instead."""
    current = ctx.result
    try:
        data = read_plan_json(raw)
        request = ctx.request(options=plan_file_options(current.options, data))
        other = ctx.cache.evaluate(request, ctx.graph, data, hashlib.sha256(raw).hexdigest())
    except Exception as exc:  # noqa: BLE001 - ValueError (the file's fault) or a planner bug
        return None, f"{name}: {exc}" if isinstance(exc, ValueError) else f"{name}: {error_text('evaluate', exc)}"
    diff = plan_diff(current, other, "current", "file")
    return {"current": format_seconds(current.total_seconds), "other": format_seconds(other.total_seconds),
            "delta": format_delta_seconds(other.total_seconds - current.total_seconds),
            "differ": f"{len(diff):,} of {len(current.cost_model.planned):,}", "notes": list(other.notes),
            "other_model": bool(data.get("model_sha256") and data["model_sha256"] != ctx.source.sha256),
            "diff": diff}, None
