"""Megatron-style tensor parallelism as a baseline: column- then row-parallel linear layers
inside the innermost machine level, data parallelism across the outer levels.

A linear layer (a MatMul or Gemm with a weight) is row-parallel (split its contracted ``k``)
when its input comes from a column-parallel one through weight-free operators (attention, an
activation), and column-parallel (split its output ``n``) otherwise: that pairs QKV with the
attention output projection and the MLP's first layer with its second, whatever the export's
layout. Embedding tables are split on the vocabulary. Weight-free MatMuls (attention scores)
and the folded operators then follow their neighbours, as in D-Rec.

With sequence parallelism (``cm.sequence_parallel``) the operators Megatron computes replicated
on the tensor-parallel ranks (bias, dropout, residual, LayerNorm after a row-parallel layer or a
vocabulary-parallel embedding) are split on their sequence dimension over the tensor-parallel
cuts instead; :mod:`planner.cost.sequence_parallel` prices the collectives around them.

With expert parallelism (``expert`` > 1) the stacked-expert operators of mixture-of-experts layers
are split on their expert dimension over the innermost data-parallel cuts that make up
``expert`` (:mod:`planner.cost.moe`); the routers' linear layers stay whole on the tensor ranks.
"""

from __future__ import annotations

import copy
import time

from planner.cost import moe
from planner.cost.model import CostModel, Plan, Strategy
from planner.cost.sequence_parallel import sequence_dim
from planner.model.graph import OpKind, TensorRole
from planner.search.drec import DRecSearch
from planner.errors import PlannerError
from planner.options import OptionsError
from planner.units import format_seconds


class NotATransformerError(PlannerError, ValueError):
    """The graph does not look like a transformer; the message says what is missing."""


class HeadSplitError(OptionsError):
    """The tensor-parallel size does not divide the attention head count (Megatron refuses)."""


def attention_heads(cm: CostModel) -> int | None:
    """The head count: the batched dimensions (other than the batch) of a weight-free MatMul whose
    output reaches a Softmax (the attention scores); None if there is none."""
    g = cm.graph
    batch = g.batch_dims()
    for name in cm.planned:
        op = g.operators[name]
        if op.op_type != "MatMul" or any(g.tensors[u.tensor].role is TensorRole.PARAMETER for u in op.inputs):
            continue
        nxt = [s for s in g.graph.successors(name)]
        for _ in range(4):  # scale, mask, ... then the Softmax
            if any(g.operators[s].op_type == "Softmax" for s in nxt):
                heads = 1
                for d, size in op.dims.items():
                    if d not in ("m", "n", "k") and d != batch.get(name):
                        heads *= size
                return heads
            nxt = [s for n in nxt for s in g.graph.successors(n)]
    return None


def _after_row_parallel(cm: CostModel, roles: dict[str, str], embeddings: bool = False) -> set[str]:
    """Operators fed by a row-parallel layer (and, with ``embeddings``, by a vocabulary-parallel
    embedding) before the next linear layer: its bias Add, the residual Add, the LayerNorm.
    Megatron (without sequence parallelism) all-reduces the row-parallel output and computes these
    replicated on every tensor-parallel rank."""
    g = cm.graph
    found: set[str] = set()
    frontier = [n for n, role in roles.items() if role == "k"]
    if embeddings:
        frontier += [n for n in cm.planned if g.operators[n].op_type == "Gather" and "v" in g.operators[n].dims]
    while frontier:
        name = frontier.pop()
        for s in g.graph.successors(name):
            if s in roles or s in found or g.operators[s].kind is not OpKind.FOLLOW:
                continue
            found.add(s)
            frontier.append(s)
    return found


def _linear_layers(cm: CostModel) -> dict[str, str]:
    """Each weighted MatMul/Gemm -> 'n' (column-parallel) or 'k' (row-parallel)."""
    g = cm.graph
    from_column: set[str] = set()  # tensors downstream of a column-parallel layer
    roles: dict[str, str] = {}
    routers = moe.router_layers(g)  # a MoE router (hidden -> experts) is kept whole, as Megatron-LM does
    for name in cm.planned:
        op = g.operators[name]
        if name in routers:
            continue
        has_weight = any(g.tensors[u.tensor].role is TensorRole.PARAMETER for u in op.inputs)
        if op.op_type in ("MatMul", "Gemm") and has_weight and "n" in op.dims and "k" in op.dims:
            acts = [u.tensor for u in op.inputs if g.tensors[u.tensor].role is TensorRole.ACTIVATION]
            roles[name] = "k" if any(t in from_column for t in acts) else "n"
            if roles[name] == "n":
                from_column.update(u.tensor for u in op.outputs)
            continue
        if any(u.tensor in from_column for u in op.inputs):
            from_column.update(u.tensor for u in op.outputs)
    return roles


def _inside_a_head(cm: CostModel, name: str, role: str, prefix: Strategy) -> bool:
    """Grouped-query attention with fewer K/V heads than tensor-parallel ranks: a column split
    of the K or V projection (output ``n`` = KV heads x head dim) that would fall on the head
    dimension, once the heads are all split. Megatron-LM replicates the projection on those ranks
    instead (each rank computes its KV head whole; the gradients of the copies are summed where
    the heads are repeated), and so does this layout: the projection is not split at that cut."""
    if role != "n":
        return False
    factors = cm.graph.operators[name].factors_of("n")
    assign = cm.assignment(name, prefix + ("n",))
    return assign is not None and len(factors) > 1 and assign[-1] == ("n", len(factors) - 1)


def plan_megatron(cm: CostModel, tensor_levels: frozenset[int] | None = None, expert: int = 1) -> Plan:
    """``tensor_levels``: the machine levels used for tensor parallelism (default: the innermost
    level with more than one device); the other levels split the batch, and ``expert`` of their
    devices split the experts (expert parallelism)."""
    start = time.perf_counter()
    g = cm.graph
    if not any(g.operators[n].op_type == "Softmax" for n in cm.planned):
        raise NotATransformerError("the graph does not look like a transformer: it has no attention Softmax, and "
                                   "Megatron-style tensor parallelism (--algorithm megatron, evaluate --tp) needs one; "
                                   "plan the model with --algorithm drec+ or data_parallel instead")
    roles = _linear_layers(cm)
    if len(roles) < 2:
        raise NotATransformerError("the graph does not look like a transformer: fewer than two linear layers with weights")
    split_levels = [i for i, lv in enumerate(cm.machine.levels) if lv.arity > 1]
    if not split_levels:
        return Plan({n: cm.replicated() for n in cm.planned}, "megatron", time.perf_counter() - start,
                    ["the machine has a single device: nothing to split"])
    inner = split_levels[-1]  # the innermost level that has more than one device
    tensor = frozenset([inner]) if tensor_levels is None else tensor_levels
    size = 1
    for i in tensor:
        size *= cm.machine.levels[i].arity
    _check_heads(cm, size)
    experts, ep_cuts, routers = _expert_split(cm, tensor, size, expert)
    batch = g.batch_dims()
    sequence_parallel = cm.sequence_parallel and size > 1
    replicated = _after_row_parallel(cm, roles, embeddings=sequence_parallel)
    search = DRecSearch(cm)
    strategies: dict[str, Strategy] = {n: () for n in cm.planned}
    for t, cut in enumerate(cm.cuts):
        decided = set()
        for n in cm.planned:
            op = g.operators[n]
            if op.kind is OpKind.FOLLOW:
                continue
            if op.kind is OpKind.OPAQUE or (n in routers and cut.level in tensor):
                choice = None  # a MoE router is whole on the tensor-parallel ranks
            elif cut.level not in tensor:
                choice = experts[n] if t in ep_cuts and n in experts else batch.get(n)
            elif n in roles:
                choice = None if _inside_a_head(cm, n, roles[n], strategies[n]) else roles[n]
            elif op.op_type == "Gather" and "v" in op.dims and n not in roles:
                choice = "v"
            else:
                continue  # weight-free compute: follows its neighbours below
            if choice is not None and cm.assignment(n, strategies[n] + (choice,)) is None:
                choice = None
            strategies[n] = strategies[n] + (choice,)
            decided.add(n)
        for n in search.critical:
            if n not in decided:
                strategies[n] = strategies[n][:t] + (search.choose(n, strategies, decided, t, True),)
                decided.add(n)
        search.propagate(strategies, t, decided)
    split_sequence = _between_linear_layers(cm, strategies, replicated, tensor, batch, sequence_parallel)
    notes = _notes(cm, tensor, sequence_parallel, split_sequence, len(replicated))
    return Plan(strategies, "megatron", time.perf_counter() - start, notes + _expert_notes(expert, experts, ep_cuts))


def _check_heads(cm: CostModel, size: int) -> None:
    heads = attention_heads(cm)
    if heads is not None and heads % size:
        raise HeadSplitError(f"tensor parallelism of {size} does not divide the {heads} attention heads: Megatron "
                             f"splits whole heads, so choose a tensor-parallel size that divides {heads} "
                             f"(--tp, or a machine whose innermost level has such an arity)")


def _expert_split(cm: CostModel, tensor: frozenset[int], tensor_size: int,
                  expert: int) -> tuple[dict, frozenset, frozenset]:
    """The stacked-expert operators with their expert dimension, the cuts that split them, and
    the MoE routers' linear layers (kept whole on the tensor-parallel ranks, as Megatron-LM does)."""
    routers = moe.router_layers(cm.graph)
    if expert == 1:
        return {}, frozenset(), routers
    data = cm.machine.num_devices // tensor_size
    moe.check_expert_parallel(moe.find_moe_layers(cm.graph), expert, data)
    return moe.expert_dims(cm.graph), moe.expert_cuts(cm.cuts, tensor, expert), routers


def _expert_notes(expert: int, experts: dict, ep_cuts: frozenset) -> list[str]:
    if not experts:
        return []
    return [f"expert parallel {expert}: {len(experts)} expert operators split on their experts over "
            f"{len(ep_cuts)} data-parallel cut(s); tokens dispatched and combined by all-to-alls"]


def _between_linear_layers(cm: CostModel, strategies: dict[str, Strategy], replicated: set[str],
                           tensor: frozenset[int], batch: dict, sequence_parallel: bool) -> int:
    """Bias, residual, LayerNorm after the row-parallel all-reduce: whole on every tensor-parallel
    rank (split on the sequence there with sequence parallelism), and split on the batch across
    the data-parallel levels like the rest. Returns how many were split on the sequence."""
    split_sequence = 0
    for n in replicated:
        seq = sequence_dim(cm.graph.operators[n], batch.get(n)) if sequence_parallel else None
        wanted = tuple(seq if cut.level in tensor else batch.get(n) for cut in cm.cuts)
        if seq is not None and cm.assignment(n, wanted) is not None:
            split_sequence += 1
        else:
            wanted = tuple(None if cut.level in tensor else batch.get(n) for cut in cm.cuts)
        if cm.assignment(n, wanted) is None:
            wanted = tuple(None if cut.level in tensor else dim for cut, dim in zip(cm.cuts, strategies[n]))
        strategies[n] = wanted
    return split_sequence


def _notes(cm: CostModel, tensor: frozenset[int], sequence_parallel: bool, split_sequence: int,
           between: int) -> list[str]:
    names = [f"{cm.machine.levels[i].name} ({cm.machine.levels[i].arity}-way)" for i in sorted(tensor)]
    notes = [f"tensor parallel over the {', '.join(names)} level(s), data parallel across the others" if names
             else "no tensor parallelism: data parallel on every level"]
    if sequence_parallel:
        notes.append(f"sequence parallel: {split_sequence} of the {between} operators between the linear "
                     "layers (bias, dropout, residual, LayerNorm) split on the sequence over the tensor-parallel "
                     "ranks; their all-reduces priced as reduce-scatter + all-gather")
    elif cm.sequence_parallel:
        notes.append("sequence parallelism needs tensor parallelism (a tensor-parallel size above 1): not applied")
    return notes


def sequence_parallel_candidate(cm: CostModel, plan: Plan, layout=None,
                                searched_seconds: float | None = None) -> tuple[Plan, CostModel]:
    """The Megatron layout with sequence parallelism as a candidate beside a ``plan`` drec+ found
    on the same stage machine (the configuration search's hook): priced as such (a cost model with
    ``sequence_parallel`` set, :mod:`planner.cost.sequence_parallel`), it replaces the plan when
    its time per micro-batch is lower. Returns the plan to keep and the cost model that prices it.
    A graph that is not a transformer, or whose heads the innermost level does not divide, or a
    machine without a level to split, keeps the searched plan. ``layout`` (default
    :func:`plan_megatron`) makes the candidate's plan from the sequence-parallel cost model (the
    folded search makes it on the folded graph and unfolds it)."""
    sp = copy.copy(cm)
    sp.sequence_parallel = True
    try:
        candidate = (layout or plan_megatron)(sp)
    except PlannerError:
        return plan, cm
    if not any(n.startswith("sequence parallel:") for n in candidate.notes):
        return plan, cm
    searched = cm.total_seconds(plan.strategies) if searched_seconds is None else searched_seconds
    megatron_sp = sp.total_seconds(candidate.strategies)
    if megatron_sp >= searched:
        return plan, cm
    kept = Plan(candidate.strategies, plan.algorithm, plan.search_seconds + candidate.search_seconds,
                [f"the Megatron layout with sequence parallelism ({format_seconds(megatron_sp)} per micro-batch) "
                 f"beats the searched plan ({format_seconds(searched)}): kept", *candidate.notes])
    return kept, sp
