"""The gathered mixture-of-experts form of real exports, rewritten at import into the stacked form.

Hugging Face's ``batched_mm`` Mixtral MLP, as both PyTorch exporters write it, routes each token
with a ``TopK`` over the router's ``[tokens, E]`` scores, then *gathers* its experts' weights
(``Gather`` in TorchScript, ``GatherND`` in dynamo, of the stacked ``[E, 2F, H]`` gate-up and
``[E, H, F]`` down weights by the routed indices) and multiplies them with batched matmuls: every
token carries copies of its experts' weights, so no split of any dimension is expert parallelism.

This module owns the rewrite of that region, done on the ONNX graph after shape inference (all
sizes bound), into the capacity-limited form the generator writes (``sample_models/build.py``,
``_moe_mlp``) and :mod:`planner.cost.moe` recognises as *stacked*: per sequence, each expert takes
the ``C = ceil(s x k x capacity factor / E)`` tokens that score it highest (``TopK`` along the
sequence) and gathers them into ``[b, E, C, H]``; the experts are ``Einsum``s reading the stacked
weights directly (the expert axis ``e`` is a dimension the searches may split, with the
all-to-all of dispatch and combine priced by the cost model); each token gathers its ``k``
results back, weighted by its top-k gates, and sums them. The same parameters (the weights are
the same initializers) and, at capacity factor 1 with ``E`` dividing ``s x k``, the same expert
FLOPs (``tokens x k`` rows through each projection). The activation is SiLU (Mixtral's).

A layer that does not match the pattern exactly (other weight shapes, no combine back to the
tokens' shape, outputs used outside the region) is left as written, with a note saying why: it
is then planned as exported, without expert parallelism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx
from onnx import helper

from planner.units import format_number

GATHERS = ("Gather", "GatherND")


@dataclass(frozen=True)
class GatheredMoE:
    """One matched layer: the names the rewrite reads and replaces."""

    topk: onnx.NodeProto
    tokens3: str  # the MLP's input [b, s, H]
    probs: str  # the router's scores [T, E] that the TopK reads
    up: str  # stacked gate-up weight [E, 2F, H]
    down: str  # stacked down weight [E, H, F]
    output: str  # the combined output [T, H]
    region: frozenset[int]  # indices of the nodes replaced
    b: int
    s: int
    experts: int
    top_k: int
    hidden: int
    ffn: int


WALK_BUDGET = 2_000_000  # node visits over all routers: a hostile file cannot make the search quadratic


class _TooLarge(Exception):
    """The routers' walks went over :data:`WALK_BUDGET`."""


class _Index:
    def __init__(self, model: onnx.ModelProto):
        self.budget = WALK_BUDGET
        self.nodes = list(model.graph.node)
        self.inits = {i.name: i for i in model.graph.initializer}
        self.producer = {o: i for i, n in enumerate(self.nodes) for o in n.output if o}
        self.consumers: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for name in n.input:
                self.consumers.setdefault(name, []).append(i)
        self.outputs = {o.name for o in model.graph.output}

    def _spend(self) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _TooLarge

    def downstream(self, starts: list[str]) -> set[int]:
        """The nodes after ``starts``, up to and including the next routers (a ``TopK`` is not
        walked through: what follows it is the next layer's)."""
        seen, stack = set(), list(starts)
        while stack:
            for i in self.consumers.get(stack.pop(), []):
                if i not in seen:
                    self._spend()
                    seen.add(i)
                    if self.nodes[i].op_type != "TopK":
                        stack.extend(self.nodes[i].output)
        return seen

    def upstream(self, index: int) -> set[int]:
        seen, stack = {index}, [index]
        while stack:
            for name in self.nodes[stack.pop()].input:
                p = self.producer.get(name)
                if p is not None and p not in seen:
                    self._spend()
                    seen.add(p)
                    stack.append(p)
        return seen


def _tokens3(idx: _Index, shapes: dict, probs: str) -> str | None:
    """The MLP input [b, s, H]: up from the router's linear layer through its Reshapes."""
    name = probs
    for _ in range(4):  # Softmax, Cast: up to the router's MatMul/Gemm
        p = idx.producer.get(name)
        if p is None:
            return None
        node = idx.nodes[p]
        if node.op_type in ("MatMul", "Gemm"):
            name = node.input[0]
            break
        name = node.input[0]
    else:
        return None
    for _ in range(4):
        shape = shapes.get(name)
        if shape is not None and len(shape) == 3:
            return name
        p = idx.producer.get(name)
        if p is None or idx.nodes[p].op_type != "Reshape":
            return None
        name = idx.nodes[p].input[0]
    return None


def _match(idx: _Index, shapes: dict, t: int) -> GatheredMoE | str | None:
    """The gathered layer routed by node ``t``; a reason (str) when it is one but does not fit; None
    when ``t`` is no router of gathered experts."""
    topk = idx.nodes[t]
    probs = topk.input[0]
    pshape, vshape = shapes.get(probs), shapes.get(topk.output[0])
    if pshape is None or vshape is None or len(pshape) != 2 or len(topk.output) < 2:
        return None
    tokens, experts = pshape
    top_k = vshape[-1]
    down = sorted(idx.downstream(list(topk.output)))
    nxt = next((i for i in down if idx.nodes[i].op_type == "TopK"), None)  # the next layer's router
    down = [i for i in down if nxt is None or i < nxt]
    gathers = [i for i in down if idx.nodes[i].op_type in GATHERS and idx.nodes[i].input[0] in idx.inits
               and len(idx.inits[idx.nodes[i].input[0]].dims) == 3]
    if not gathers:
        return None
    where = f"the MoE layer routed by {topk.name or topk.output[0]}"
    if not 1 <= top_k < experts:
        return f"{where}: top-{top_k} of {experts} experts is not a routing (top-k must be below the experts)"
    weights = [list(idx.inits[idx.nodes[i].input[0]].dims) for i in gathers]
    if len(gathers) != 2 or weights[0][0] != experts or weights[1][0] != experts:
        return f"{where}: expected two stacked weights [E={experts}, ...] gathered by the routed indices " \
               f"(gate-up and down), found {len(gathers)} of shapes {weights}"
    (_, two_f, hidden), (_, hidden2, ffn) = weights
    if hidden2 != hidden or two_f != 2 * ffn:
        return f"{where}: weights {weights} are not a fused gate-up [E, 2F, H] and a down [E, H, F] projection"
    tokens3 = _tokens3(idx, shapes, probs)
    if tokens3 is None or shapes[tokens3][2] != hidden or shapes[tokens3][0] * shapes[tokens3][1] != tokens:
        return f"{where}: the tokens [batch, seq, {hidden}] of the MLP's input were not found above the router"
    after = [i for i in down if i > gathers[1]]
    out = next((o for i in after for o in idx.nodes[i].output if shapes.get(o) == (tokens, hidden)), None)
    if out is None:
        return f"{where}: no combine back to the tokens' shape [{tokens}, {hidden}] after the experts"
    region = set(down) & idx.upstream(idx.producer[out])
    leaks = [o for i in region for o in idx.nodes[i].output if o != out and (
        o in idx.outputs or any(c not in region for c in idx.consumers.get(o, [])))]
    if leaks:
        return f"{where}: {leaks[0]} is used outside the experts' region"
    b, s, _ = shapes[tokens3]
    return GatheredMoE(topk, tokens3, probs, idx.nodes[gathers[0]].input[0], idx.nodes[gathers[1]].input[0], out,
                       frozenset(region), b, s, experts, top_k, hidden, ffn)


def _stacked_nodes(m: GatheredMoE, capacity_factor: float, layer: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The generator's capacity-limited stacked form of ``m``, writing ``m.output``; its new names
    carry the ``layer``'s number, so two routers of the same (uploader-chosen) name never collide."""
    e, k, h, f = m.experts, m.top_k, m.hidden, m.ffn
    cap = min(m.s, math.ceil(m.s * k * capacity_factor / e))
    p = f"{m.topk.name or m.output}/moe_rewrite{layer}/"
    consts = {"probs_shape": [m.b, m.s, e], "topk_shape": [m.b, m.s, k], "cap": [cap], "rows": [0, -1, 1],
              "experts_shape": [0, e, -1, h], "flat": [0, -1, h], "slots": [0, -1, k, h], "last": [-1],
              "axis2": [2], "out_shape": [m.b * m.s, h], "zero": [0], "f": [f], "f2": [2 * f]}
    inits = [helper.make_tensor(p + n, onnx.TensorProto.INT64, [len(v)], v) for n, v in consts.items()]
    c = {n: p + n for n in consts}
    topk_values, topk_indices = m.topk.output[0], m.topk.output[1]

    def node(op, ins, name, outs=1, **attrs):
        names = [p + name] if outs == 1 else [f"{p}{name}_{i}" for i in range(outs)]
        nodes.append(helper.make_node(op, ins, names, name=p + name, **attrs))
        return names[0] if outs == 1 else names

    nodes: list[onnx.NodeProto] = []
    scores = node("Transpose", [node("Reshape", [m.probs, c["probs_shape"]], "router.reshape")], "dispatch.transpose",
                  perm=[0, 2, 1])
    _, chosen = node("TopK", [scores, c["cap"]], "dispatch.topk", outs=2, axis=-1, largest=1, sorted=1)
    x = node("GatherND", [m.tokens3, node("Reshape", [chosen, c["rows"]], "dispatch.rows")], "dispatch", batch_dims=1)
    x = node("Reshape", [x, c["experts_shape"]], "dispatch.reshape")
    gu = node("Einsum", [x, m.up], "experts.gate_up", equation="beci,eoi->beco")
    gate = node("Slice", [gu, c["zero"], c["f"], c["last"]], "experts.gate")
    up = node("Slice", [gu, c["f"], c["f2"], c["last"]], "experts.up")
    act = node("Mul", [gate, node("Sigmoid", [gate], "experts.sigmoid")], "experts.silu")
    y = node("Einsum", [node("Mul", [act, up], "experts.gated"), m.down], "experts.down", equation="becf,ehf->bech")
    y = node("Reshape", [y, c["flat"]], "combine.flatten")
    slots = node("Reshape", [node("Reshape", [topk_indices, c["topk_shape"]], "combine.indices"), c["rows"]],
                 "combine.rows")
    y = node("Reshape", [node("GatherND", [y, slots], "combine", batch_dims=1), c["slots"]], "combine.reshape")
    gates = node("Unsqueeze", [node("Reshape", [topk_values, c["topk_shape"]], "combine.gate_values"), c["last"]],
                 "combine.gates")
    y = node("ReduceSum", [node("Mul", [y, gates], "combine.weighted"), c["axis2"]], "combine.sum", keepdims=0)
    nodes.append(helper.make_node("Reshape", [y, c["out_shape"]], [m.output], name=p + "combine.tokens"))
    return nodes, inits


def _dead(nodes: list[onnx.NodeProto], outputs: set[str]) -> set[int]:
    """Indices of nodes whose results reach no graph output."""
    live_names, live = set(outputs), set()
    for i in range(len(nodes) - 1, -1, -1):
        if any(o in live_names for o in nodes[i].output):
            live.add(i)
            live_names.update(nodes[i].input)
    return set(range(len(nodes))) - live


def rewrite_gathered_moe(model: onnx.ModelProto, shapes: dict, capacity_factor: float = 1.0
                         ) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with every gathered MoE layer in the stacked form, and one note per kind of layer
    rewritten (``"MoE: 4 experts, top-2, rewritten from the gathered form (2 layers) ..."``) or
    left as written (the reason). The model is returned unchanged (same object) when nothing
    matched."""
    idx = _Index(model)
    matched, notes = [], []
    try:
        for t, node in enumerate(idx.nodes):
            if node.op_type == "TopK":
                found = _match(idx, shapes, t)
                if isinstance(found, str):
                    notes.append(f"MoE not rewritten: {found}; planned as written, without expert parallelism")
                elif found is not None:
                    matched.append(found)
    except _TooLarge:
        return model, [f"MoE not looked for: the routers' regions span more than {WALK_BUDGET:,} node visits; "
                       "planned as written, without expert parallelism"]
    if not matched:
        return model, notes
    out = onnx.ModelProto()
    out.CopyFrom(model)
    replaced = set().union(*(m.region for m in matched))
    new_nodes, new_inits = [], []
    last = {max(m.region): m for m in matched}
    for i, node in enumerate(idx.nodes):
        if i in last:
            nodes, inits = _stacked_nodes(last[i], capacity_factor, matched.index(last[i]))
            new_nodes.extend(nodes)
            new_inits.extend(inits)
        elif i not in replaced:
            new_nodes.append(node)
    outputs = {o.name for o in model.graph.output}
    dead_before = {id(idx.nodes[i]) for i in _dead(idx.nodes, outputs)}
    dead_now = _dead(new_nodes, outputs)
    kept = [n for i, n in enumerate(new_nodes) if i not in dead_now or id(n) in dead_before]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    out.graph.initializer.extend(new_inits)
    kinds: dict[tuple, int] = {}
    for m in matched:
        kinds[(m.experts, m.top_k)] = kinds.get((m.experts, m.top_k), 0) + 1
    notes[:0] = [f"MoE: {e} experts, top-{k}, rewritten from the gathered form ({n} layer{'s' if n > 1 else ''}; "
                 f"capacity factor {format_number(capacity_factor)}): expert parallelism available" for (e, k), n in kinds.items()]
    return out, notes
