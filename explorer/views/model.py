"""The Model page's tables: every operator with its type, kind, layer, dimensions, FLOPs and
parameters, the filters over them, and the model's headline figures."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from explorer.views.layers import dims_text, layers_of, op_parameters
from planner.model.graph import OperatorGraph, OpKind
from planner.model.layers import weight_only
from planner.units import format_count, format_flop_count


def operator_table(graph: OperatorGraph, include_static: bool = False) -> pd.DataFrame:
    """One row per operator in topological order: type, kind, layer, dims, FLOPs, parameters.
    Static operators and weight-only ones (:func:`planner.model.layers.weight_only`: an old
    exporter's ``Identity`` of a weight, no work) are shown only with ``include_static``."""
    layers = layers_of(graph)
    rows = []
    for pos, name in enumerate(graph.topological_order()):
        op = graph.operators[name]
        if (op.kind is OpKind.STATIC or weight_only(graph, name)) and not include_static:
            continue
        rows.append({
            "position": pos,
            "operator": name,
            "type": op.op_type,
            "kind": op.kind.value,
            "layer": layers.index.get(name),
            "dimensions": dims_text(op.dims),
            "GFLOP": op.flops / 1e9,
            "parameters": op_parameters(graph, name),
        })
    frame = pd.DataFrame(rows, columns=["position", "operator", "type", "kind", "layer", "dimensions", "GFLOP", "parameters"])
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def filter_table(frame: pd.DataFrame, types: Iterable[str] = (), kinds: Iterable[str] = (), text: str = "",
                 layer_range: tuple[int, int] | None = None, outside_layers: bool = True) -> pd.DataFrame:
    out = frame
    types, kinds = list(types), list(kinds)
    if types:
        out = out[out["type"].isin(types)]
    if kinds and "kind" in out:
        out = out[out["kind"].isin(kinds)]
    if text:
        out = out[out["operator"].str.contains(text, case=False, regex=False)]
    if layer_range is not None and "layer" in out:
        lo, hi = layer_range
        in_range = out["layer"].between(lo, hi).fillna(False).astype(bool)
        outside = out["layer"].isna() if outside_layers else pd.Series(False, index=out.index)
        out = out[in_range | outside]
    return out


def model_metrics(graph: OperatorGraph) -> list[tuple[str, str]]:
    """The Model page's headline: operators, planned operators, parameters, forward FLOPs and
    repeated layers, as (label, value)."""
    s = graph.summary()
    layers = layers_of(graph)
    return [("Operators", f"{s['operators']:,}"), ("Planned operators", f"{len(graph.planned_operators()):,}"),
            ("Parameters", format_count(s["parameters"])), ("Forward FLOPs", format_flop_count(s["flops_forward"])),
            ("Repeated layers", f"{layers.count}" if layers.count >= 2 else "none found")]
