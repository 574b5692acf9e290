"""Mixture-of-experts layers: found in the operator graph, and their expert axis as expert parallelism.

**Recognised forms.**

* *Stacked experts* (the generator's Mixtral and DeepSeek samples, dropping implementations,
  GShard-style einsums, the one-layer ``moe`` sample): a MatMul or Einsum whose weight has rank 3
  or more and a leading axis that the output keeps (``[E, hidden, ffn]``) is an expert operator;
  that axis is its *expert dimension*, a dimension the searches may split like any other.
* *Gathered experts* (Hugging Face's ``batched_mm`` Mixtral export): the stacked weight is
  gathered per token by the routed indices (a ``Gather`` in the TorchScript export, a ``GatherND``
  in the dynamo one, of a parameter of rank 3 or more) before
  a batched matmul. Each token then carries copies of its experts' weights, which no split turns
  into expert parallelism. Mixtral's (a fused gate-up ``[E, 2F, H]`` and a down ``[E, H, F]``
  weight, both exporters) is rewritten at import into the stacked form
  (:mod:`planner.onnx.moe_rewrite`, noted in :func:`moe_notes`); any other gathered layer is
  recognised and reported, planned as written.
* *Per-expert loops* (exporters that unroll ``for expert in experts``): ``E`` separate linear
  layers selected by the router (``Where``/``ScatterND``); counted and reported, planned as dense
  layers (expert parallelism there would place whole operators, not split a dimension).

Every form has a *router*: a ``TopK`` over a last axis of ``E`` scores, whose output size is the
top-k. The router's own linear layer (``hidden -> E``) is small and kept whole under tensor
parallelism, as Megatron-LM does.

**Expert parallelism.** With the expert dimension split over an expert-parallel group of ``E_p``
devices (inside the data-parallel ranks), each device holds ``E / E_p`` experts and their
optimizer state, and the dispatched tokens ``[batch, E, capacity, hidden]`` go from split on the
batch (as gathered) to split on the experts, then back for the combine: two all-to-alls per MoE
layer per pass, four in training (the gradients travel back), each of ``tokens x top-k x hidden x
bytes x capacity factor`` per device, of which ``(E_p - 1) / E_p`` leaves the device
(:mod:`planner.cost.alltoall`, which the cost model's redistribution rule reproduces for this
change of layout). Shared experts and the router are dense layers, split like the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.model.graph import OpKind, OperatorGraph, TensorRole
from planner.options import ConfigError

STACKED_OPS = ("MatMul", "Einsum")


class ExpertParallelError(ConfigError):
    """An expert-parallel size the model or the configuration cannot take; the message says why."""


@dataclass(frozen=True)
class MoELayer:
    router: str  # the TopK that picks each token's experts
    experts: int
    top_k: int
    form: str  # "stacked", "gathered" or "per-expert"
    expert_ops: tuple[str, ...]  # the operators holding experts (stacked: split on their expert dim)


def _stacked_weight_dim(graph: OperatorGraph, name: str) -> str | None:
    """The leading axis's dimension of a rank-3+ weight of ``name`` that its output keeps."""
    op = graph.operators[name]
    for use in op.inputs:
        if graph.tensors[use.tensor].role is not TensorRole.PARAMETER or len(use.axes) < 3:
            continue
        lead = use.axes[0]
        if len(lead) == 1 and op.dims.get(lead[0], 1) > 1 and any(lead[0] in o.dims() for o in op.outputs):
            return lead[0]
    return None


def expert_dims(graph: OperatorGraph) -> dict[str, str]:
    """Each stacked-expert operator -> its expert dimension."""
    found = {}
    for name in graph.planned_operators():
        op = graph.operators[name]
        if op.kind is OpKind.COMPUTE and op.op_type in STACKED_OPS:
            dim = _stacked_weight_dim(graph, name)
            if dim is not None:
                found[name] = dim
    return found


def _router_linear(graph: OperatorGraph, topk: str) -> str | None:
    """The weighted MatMul/Gemm producing ``topk``'s scores (at most three operators upstream,
    none of them a Transpose), whose output size is the scores' axis; None if there is none."""
    v = graph.operators[topk].dims["v"]
    frontier = [topk]
    for _ in range(3):
        frontier = [p for n in frontier for p in graph.graph.predecessors(n) if graph.operators[p].op_type != "Transpose"]
        for p in frontier:
            op = graph.operators[p]
            if op.op_type in ("MatMul", "Gemm") and op.dims.get("n") == v and any(
                    graph.tensors[u.tensor].role is TensorRole.PARAMETER for u in op.inputs):
                return p
    return None


def _routers(graph: OperatorGraph) -> dict[str, tuple[int, int, str]]:
    """Each router TopK -> (experts, top-k, its linear layer): a TopK keeping fewer than it scores,
    over the output of a linear layer ``hidden -> experts``."""
    found = {}
    for name, op in graph.operators.items():
        if op.op_type == "TopK" and "topk" in op.dims and 1 < op.dims["topk"] < op.dims["v"]:
            linear = _router_linear(graph, name)
            if linear is not None:
                found[name] = (op.dims["v"], op.dims["topk"], linear)
    return found


def _upstream_router(graph: OperatorGraph, name: str, routers: dict, experts: int | None) -> str | None:
    """The nearest router upstream of ``name`` (over at most 40 operators) with ``experts`` scores,
    or a router beside it (fed by the same scores, when the dispatch reads the scores directly);
    failing that the nearest in either direction (a dense formulation: the router only weighs
    the experts' outputs)."""
    return _nearest_router(graph, name, routers, experts, False) or _nearest_router(graph, name, routers, experts, True)


def _nearest_router(graph: OperatorGraph, name: str, routers: dict, experts: int | None, both: bool) -> str | None:
    seen, frontier = {name}, [name]
    for _ in range(40):
        nxt = []
        for n in frontier:
            near = [*graph.graph.predecessors(n), *graph.graph.successors(n)] if both else graph.graph.predecessors(n)
            for p in near:
                for r in (p, *graph.graph.successors(p)):
                    if r in routers and (experts is None or routers[r][0] == experts):
                        return r
                if p not in seen:
                    seen.add(p)
                    nxt.append(p)
        frontier = nxt
    return None


def find_moe_layers(graph: OperatorGraph) -> list[MoELayer]:
    """Every mixture-of-experts layer of the graph, in any of the recognised forms."""
    routers = _routers(graph)
    if not routers:
        return []
    members: dict[tuple[str, str], list[str]] = {}
    for name, dim in expert_dims(graph).items():
        router = _upstream_router(graph, name, routers, graph.operators[name].dims[dim])
        if router is not None:
            members.setdefault((router, "stacked"), []).append(name)
    for name, op in graph.operators.items():
        table = graph.tensors[op.inputs[0].tensor] if op.inputs else None
        if op.op_type in ("Gather", "GatherND") and table is not None and table.role is TensorRole.PARAMETER \
                and len(table.shape) >= 3:
            router = _upstream_router(graph, name, routers, table.shape[0])
            if router is not None:
                members.setdefault((router, "gathered"), []).append(name)
    layers = [MoELayer(r, routers[r][0], routers[r][1], form, tuple(ops)) for (r, form), ops in members.items()]
    claimed = {r for r, _ in members}
    for router, (e, k, _) in routers.items():
        if router not in claimed:
            loop = _per_expert_layers(graph, router, e)
            if loop:
                layers.append(MoELayer(router, e, k, "per-expert", loop))
    return layers


def _per_expert_layers(graph: OperatorGraph, router: str, experts: int) -> tuple[str, ...]:
    """Linear layers near ``router`` (within 8 operators either way: they read the router's input
    and their outputs meet its gates) whose weight shape repeats ``experts`` times or more: the
    unrolled experts."""
    by_shape: dict[tuple, list[str]] = {}
    seen, frontier = {router}, [router]
    for _ in range(8):
        frontier = [s for n in frontier for s in (*graph.graph.successors(n), *graph.graph.predecessors(n))
                    if s not in seen]
        seen.update(frontier)
    for name in seen:
        op = graph.operators[name]
        weights = [u for u in op.inputs if graph.tensors[u.tensor].role is TensorRole.PARAMETER]
        if op.op_type in ("MatMul", "Gemm") and weights:
            by_shape.setdefault(tuple(graph.tensors[weights[0].tensor].shape), []).append(name)
    loop = [n for ops in by_shape.values() if len(ops) >= experts for n in ops]
    return tuple(sorted(loop))


def router_layers(graph: OperatorGraph) -> frozenset[str]:
    """The routers' linear layers (hidden -> experts scores)."""
    return frozenset(linear for _, _, linear in _routers(graph).values())


def check_expert_parallel(layers: list[MoELayer], expert: int, data: int) -> None:
    """Megatron-LM's rules: the expert-parallel size divides every layer's experts and the
    data-parallel size (the expert-parallel groups are inside the data-parallel ranks)."""
    if expert == 1:
        return
    stacked = [layer for layer in layers if layer.form == "stacked"]
    if not stacked:
        forms = sorted({layer.form for layer in layers})
        raise ExpertParallelError(f"--ep {expert}: the model has no experts stacked on a leading axis "
                                  + (f"(its MoE layers are {', '.join(forms)}, planned as written)" if forms
                                     else "(no mixture-of-experts layer found)") + "; use --ep 1")
    counts = sorted({layer.experts for layer in stacked})
    bad = [e for e in counts if e % expert]
    if bad:
        raise ExpertParallelError(f"--ep {expert} does not divide the {bad[0]} experts of a MoE layer: choose a "
                                  f"divisor of {bad[0]}")
    if data % expert:
        raise ExpertParallelError(f"--ep {expert} does not divide the data-parallel size {data}: the expert-parallel "
                                  "groups are inside the data-parallel ranks (as in Megatron-LM); choose a divisor of it")


def expert_cuts(cuts, tensor_levels: frozenset[int], expert: int) -> frozenset[int]:
    """The data-parallel cuts (innermost first) whose prime factors make up ``expert``."""
    chosen, left = set(), expert
    for t in range(len(cuts) - 1, -1, -1):
        cut = cuts[t]
        if cut.level not in tensor_levels and left % cut.factor == 0 and left > 1:
            chosen.add(t)
            left //= cut.factor
    if left != 1:
        raise ExpertParallelError(f"--ep {expert} is not a product of the data-parallel levels' factors: choose a "
                                  "divisor of the data-parallel size")
    return frozenset(chosen)


def dispatch_bytes(tokens: float, top_k: int, hidden: int, itemsize: int, capacity_factor: float = 1.0) -> float:
    """The bytes a device sends in one all-to-all before the fraction that stays: its tokens x
    top-k x hidden x bytes, times the capacity factor (padded slots travel too)."""
    return tokens * top_k * hidden * itemsize * capacity_factor


def describe_layers(layers: list[MoELayer]) -> str:
    """One line: how many MoE layers of which form, with their experts and top-k."""
    if not layers:
        return "no mixture-of-experts layers"
    parts = {}
    for layer in layers:
        key = (layer.form, layer.experts, layer.top_k)
        parts[key] = parts.get(key, 0) + 1
    return "; ".join(f"{n} MoE layer(s), {form}: {e} experts, top-{k}" for (form, e, k), n in parts.items())


def moe_notes(graph: OperatorGraph) -> list[str]:
    """What the import did with the gathered MoE layers of a real export
    (:mod:`planner.onnx.moe_rewrite`): rewritten into the stacked form, or left as written and why."""
    return [w for w in graph.warnings if w.startswith(("MoE:", "MoE not rewritten", "MoE not looked for"))]
