"""The model graph as a picture: which operators a view shows (every one, repeated layers
collapsed into blocks, a range of layers or positions, or the heaviest), their layered layout
(longest path), and the plotly figure coloured by kind, type or the plan's split."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import networkx as nx
import plotly.graph_objects as go

from explorer.figures import fit
from explorer.views.layers import Layers, dims_text, layers_of
from explorer.views.splits import PALETTE, role_label, strategy_label
from planner.api import PlanResult
from planner.model.graph import OperatorGraph, OpKind
from planner.model.layers import weight_only
from planner.units import format_flop_count, format_seconds


VIEW_MODES = {
    "blocks": "one node per repeated layer",
    "layers": "only a range of layers",
    "heaviest": "the N heaviest operators and their neighbours",
    "range": "a range of topological positions",
    "all": "every operator",
}


#: The model graph view draws at most this many nodes; bigger selections are cut.
MAX_GRAPH_NODES = 600


@dataclass
class GraphView:
    mode: str = "blocks"
    layer_range: tuple[int, int] = (0, 0)  # expanded layers (blocks, with expand) or shown layers (layers)
    expand: bool = False  # blocks: draw the layers of layer_range operator by operator
    top_n: int = 30
    position_range: tuple[int, int] = (0, 200)
    include_static: bool = False


def default_view(graph: OperatorGraph) -> GraphView:
    """Every layer collapsed to one node when the model has repeated layers; else every operator
    of a small graph, or the heaviest of a big one."""
    layers = layers_of(graph)
    n = sum(1 for op in graph.operators.values() if op.kind is not OpKind.STATIC)
    if layers.count >= 2:
        first = layers.indices[0]
        return GraphView("blocks", (first, first))
    if n <= 150:
        return GraphView("all")
    return GraphView("heaviest", top_n=40)


@dataclass
class ViewGraph:
    """What the figure draws: nodes (one operator, or a collapsed block) and edges between them."""

    nodes: dict[str, dict]  # id -> {label, members, kind, type}
    edges: set[tuple[str, str]]
    note: str = ""


def _node_of_blocks(shown: list[str], layers: Layers, layer_range: tuple[int, int] | None) -> dict[str, str]:
    """One node per layer (``[layer3]``), except the layers of ``layer_range``, drawn operator by
    operator; operators in no layer are drawn as themselves."""
    lo, hi = layer_range if layer_range is not None else (1, 0)
    node_of = {}
    for n in shown:
        i = layers.index.get(n)
        node_of[n] = n if i is None or lo <= i <= hi else f"[{layers.family}{i}]"
    return node_of


def _node_of(graph: OperatorGraph, view: GraphView, shown: list[str], layers: Layers,
             pos: dict[str, int]) -> tuple[dict[str, str], str]:
    """Which drawn node each shown operator belongs to (itself or a collapsed block), and a note
    when the view asked for could not be drawn."""
    ops = graph.operators
    mode, note = view.mode, ""
    if mode in ("blocks", "layers") and layers.count < 2:
        mode, note = "heaviest", "no repeated layers found (by name or by structure): showing the heaviest operators"
    if mode == "all":
        return {n: n for n in shown}, note
    if mode == "blocks":
        return _node_of_blocks(shown, layers, view.layer_range if view.expand else None), note
    if mode == "layers":
        lo, hi = view.layer_range
        return {n: n for n in shown if layers.index.get(n) is not None and lo <= layers.index[n] <= hi}, note
    if mode == "heaviest":
        heavy = sorted(shown, key=lambda n: -ops[n].flops)[:max(1, view.top_n)]
        keep, allowed = set(heavy), set(shown)
        for n in heavy:
            keep.update(m for m in graph.graph.predecessors(n) if m in allowed)
            keep.update(m for m in graph.graph.successors(n) if m in allowed)
        return {n: n for n in shown if n in keep}, note
    if mode == "range":
        a, b = view.position_range
        return {n: n for n in shown if a <= pos[n] <= b}, note
    raise ValueError(f"unknown graph view {view.mode!r}; choose one of {', '.join(VIEW_MODES)}")


def _describe(graph: OperatorGraph, layers: Layers, nid: str, entry: dict) -> None:
    """Fill a drawn node's label, type, kind, FLOPs and heaviest member."""
    ops = graph.operators
    members = entry["members"]
    entry["heaviest"] = max(members, key=lambda m: ops[m].flops)
    entry["flops"] = entry["size_flops"] = float(sum(ops[m].flops for m in members))
    if entry["block"]:
        entry["label"] = f"{nid[1:-1]} ({len(members)} ops)"
        entry["type"] = "layer"
        entry["kind"] = "collapsed layer"
    else:
        entry["label"] = nid
        entry["type"] = ops[nid].op_type
        entry["kind"] = ops[nid].kind.value


def build_view(graph: OperatorGraph, view: GraphView) -> ViewGraph:
    """The nodes and edges a view draws (at most :data:`MAX_GRAPH_NODES`, the first in
    topological order, with a note saying so)."""
    layers = layers_of(graph)
    order = graph.topological_order()
    pos = {n: i for i, n in enumerate(order)}
    # static and weight-only operators (an old exporter's Identity of a weight) are inputs, not work
    shown = [n for n in order if view.include_static
             or (graph.operators[n].kind is not OpKind.STATIC and not weight_only(graph, n))]
    node_of, note = _node_of(graph, view, shown, layers, pos)
    nodes: dict[str, dict] = {}
    for n, nid in node_of.items():
        nodes.setdefault(nid, {"members": [], "block": nid != n})["members"].append(n)
    if len(nodes) > MAX_GRAPH_NODES:
        keep_ids = sorted(nodes, key=lambda k: min(pos[m] for m in nodes[k]["members"]))[:MAX_GRAPH_NODES]
        nodes = {k: nodes[k] for k in keep_ids}
        node_of = {n: k for n, k in node_of.items() if k in nodes}
        note = (f"the selection has more than {MAX_GRAPH_NODES} nodes: showing the first {MAX_GRAPH_NODES} "
                "in topological order; narrow the range to see the rest")
    for nid, entry in nodes.items():
        _describe(graph, layers, nid, entry)
    edges = set()
    for u, v in graph.graph.edges:
        a, b = node_of.get(u), node_of.get(v)
        if a is not None and b is not None and a != b:
            edges.add((a, b))
    return ViewGraph(nodes, edges, note)


def layered_positions(view: ViewGraph) -> dict[str, tuple[float, float]]:
    """Longest-path layers (x) and an order within each layer (y), cycles condensed first."""
    g = nx.DiGraph()
    g.add_nodes_from(view.nodes)
    g.add_edges_from(view.edges)
    if not nx.is_directed_acyclic_graph(g):
        cond = nx.condensation(g)
        mapping = cond.graph["mapping"]
        depth_c = _depths(cond)
        depth = {n: depth_c[mapping[n]] for n in g}
    else:
        depth = _depths(g)
    by_layer: dict[int, list[str]] = {}
    for n in g.nodes:  # insertion order follows topological order of the source graph
        by_layer.setdefault(depth[n], []).append(n)
    pos = {}
    for x, members in by_layer.items():
        k = len(members)
        for i, n in enumerate(members):
            pos[n] = (float(x), (k - 1) / 2.0 - i)
    return pos


def _depths(g: nx.DiGraph) -> dict:
    depth = {}
    for n in nx.topological_sort(g):
        depth[n] = max((depth[p] + 1 for p in g.predecessors(n)), default=0)
    return depth


def _colour_groups(view: ViewGraph, color_by: str, result: PlanResult | None) -> tuple[dict[str, list[str]], list[str]]:
    """Nodes grouped by the colour key, largest group first; beyond 11 groups the rest is 'other'."""
    groups: dict[str, list[str]] = {}
    for nid, entry in view.nodes.items():
        if color_by == "strategy" and result is not None:
            key = role_label(result, entry["heaviest"])
        elif color_by == "type":
            key = entry["type"]
        else:
            key = entry["kind"]
        groups.setdefault(key, []).append(nid)
    ranked = sorted(groups, key=lambda k: -len(groups[k]))
    if len(ranked) > 12:
        other = [n for k in ranked[11:] for n in groups[k]]
        groups = {k: groups[k] for k in ranked[:11]}
        groups["other"] = other
        ranked = ranked[:11] + ["other"]
    return groups, ranked


def _hover(graph: OperatorGraph, entry: dict, result: PlanResult | None) -> str:
    head = graph.operators[entry["heaviest"]]
    lines = [f"<b>{html.escape(entry['label'])}</b>", f"{entry['type']} ({entry['kind']})",
             f"FLOPs {format_flop_count(entry['flops'])}"]
    if not entry["block"]:
        lines.append("dims " + html.escape(dims_text(head.dims)))
    else:
        lines.append(f"heaviest: {html.escape(entry['heaviest'])}")
    if result is not None:
        planned = [m for m in entry["members"] if m in result.plan.strategies]
        if planned:
            lines.append("time per micro-batch " if result.schedule.micro_batches > 1 else "time ")
            lines[-1] += format_seconds(sum(sum(result.cost.op_seconds(m).values()) for m in planned))
        lines.append("split " + html.escape(role_label(result, entry["heaviest"]))
                     + f" ({html.escape(strategy_label(result, entry['heaviest']))})")
    return "<br>".join(lines)


def _short_label(entry: dict) -> str:
    """A collapsed layer's name under its node (``layer3``); nothing under single operators."""
    return entry["label"].split(" (")[0] if entry["block"] else ""


def graph_figure(graph: OperatorGraph, view: ViewGraph, color_by: str = "kind", result: PlanResult | None = None,
                 orientation: str = "left-right", height: int = 560) -> go.Figure:
    """The layered model graph; ``color_by`` is 'kind', 'type' or 'strategy' (needs ``result``)."""
    pos = layered_positions(view)
    flip = orientation == "top-down"

    def xy(n):
        x, y = pos[n]
        return (y, -x) if flip else (x, y)

    ex, ey = [], []
    for a, b in view.edges:
        (x0, y0), (x1, y1) = xy(a), xy(b)
        ex += [x0, x1, None]
        ey += [y0, y1, None]
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=ex, y=ey, mode="lines", line=dict(color="#B0B0B0", width=1), hoverinfo="skip",
                               showlegend=False))
    groups, ranked = _colour_groups(view, color_by, result)
    maxf = max((e["size_flops"] for e in view.nodes.values()), default=1.0) or 1.0
    columns = len({pos[n][0] for n in view.nodes}) or 1
    biggest = max(8.0, min(26.0, 1400.0 / columns))
    for i, key in enumerate(ranked):
        members = groups[key]
        points = [xy(nid) for nid in members]
        labelled = any(view.nodes[nid]["block"] for nid in members)
        fig.add_trace(go.Scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="markers+text" if labelled else "markers",
            name=str(key), text=[_short_label(view.nodes[nid]) for nid in members], textposition="bottom center",
            textfont=dict(size=10), hovertext=[_hover(graph, view.nodes[nid], result) for nid in members],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(size=[5 + (biggest - 5) * math.sqrt(view.nodes[nid]["size_flops"] / maxf) for nid in members],
                        color=PALETTE[i % len(PALETTE)], line=dict(width=0.5, color="#333")),
        ))
    fig.update_layout(height=height, hovermode="closest",
                      xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white")
    return fit(fig)
