"""A hand-made configuration with context parallelism (``evaluate --tp T --pp P --dp D --cp C``):
Megatron-LM's order, tensor-parallel ranks innermost, then the ``C`` context-parallel ranks, then
data, pipeline stages outermost.

Owns the configuration's checks (``C`` divides the sequence, ``2C`` too for the zig-zag chunks),
where the ring runs (the machine level the context-parallel group spans) and the attention
layers the ring prices. A context-parallel rank holds ``s / C`` of every token, so the plan is
the Megatron configuration ``T x P x (D C)`` of the model bound to sequence ``s / C`` (the weight
gradients all-reduced over the data- and context-parallel ranks together, as Megatron-LM does);
:func:`planner.cost.context_parallel.apply_ring` then adds the ring of each attention layer.
"""

from __future__ import annotations

from dataclasses import replace

from planner.cost.activations import attention_core, saved_tensors
from planner.cost.baseline import data_parallel_baseline
from planner.cost.context_parallel import RingLayer, apply_ring
from planner.cost.result import PlanResult, cost_model_for, result_for
from planner.cost.schedule import stage_memory
from planner.machine.split import stage_counts
from planner.machine.tree import Machine
from planner.model.graph import OpKind, OperatorGraph
from planner.model.rebind import Rebinder, require_rebinder, with_batch
from planner.options import ConfigError, PlanOptions
from planner.search.configurations import _compute_floor, evaluate_configuration, memory_ladder
from planner.search.hand_made import check_layout
from planner.search.megatron import attention_heads
from planner.units import format_bytes, format_seconds


def sequence_symbol(graph: OperatorGraph) -> tuple[str, int]:
    """The bound symbol that is the sequence: the one whose value is the attention scores' query
    length; the message says how to bind it when there is none or more than one."""
    lengths = {op.dims.get("m") for op in graph.operators.values()
               if op.op_type == "MatMul" and op.kind is OpKind.COMPUTE and len(op.dims) > 4}
    names = [k for k, v in graph.bindings.items() if k != graph.batch_symbol and v in lengths]
    if len(names) != 1:
        raise ConfigError("context parallelism splits the sequence, and the model's sequence dimension is not a "
                          "single bound symbol: bind it with --bind seq=S (the symbol `inspect` lists)")
    return names[0], graph.bindings[names[0]]


def check_context(graph: OperatorGraph, context: int) -> tuple[str, int]:
    symbol, seq = sequence_symbol(graph)
    if seq % (2 * context):
        raise ConfigError(f"--cp {context} needs the sequence ({symbol}={seq}) to be a multiple of 2 x {context} = "
                          f"{2 * context}: each rank holds two of 2 x {context} equal chunks (the zig-zag assignment "
                          "that balances a causal mask); choose a --cp whose double divides it")
    if not any(op.op_type == "Softmax" for op in graph.operators.values()):
        raise ConfigError("--cp splits attention along the sequence, and the model has no attention: drop --cp")
    return symbol, seq


def evaluate_context_configuration(graph: OperatorGraph, machine: Machine, tensor: int, pipeline: int, data: int,
                                   context: int, micro_batch_size: int, global_batch_size: int,
                                   options: PlanOptions, rebinder: Rebinder | None = None,
                                   expert: int = 1) -> PlanResult:
    """Price ``tensor x pipeline x data x context`` (module docstring); ``graph`` is the model at its
    full sequence, ``rebinder`` re-imports it at ``s / C``. ``expert`` > 1 splits the experts of a
    mixture-of-experts model over expert-parallel groups drawn from the data- and context-parallel
    ranks together, as Megatron-LM does (``D x C`` must be a multiple of ``expert``)."""
    symbol, seq = check_context(graph, context)
    check_layout(tensor, pipeline, data, machine.num_devices, context, expert)
    rebinder = require_rebinder(rebinder)
    if global_batch_size % (micro_batch_size * data):
        raise ConfigError(f"--global-batch {global_batch_size} is not a multiple of --micro-batch-size x --dp = "
                          f"{micro_batch_size} x {data}: the micro-batches must add up to the batch")
    full = with_batch(graph, global_batch_size, rebinder)
    baseline = data_parallel_baseline(cost_model_for(full, machine, options, "none", 0), options.optimizer)
    short = rebinder.import_fn(rebinder.model, {**graph.bindings, symbol: seq // context}, rebinder.name)
    result = evaluate_configuration(short, machine, tensor, pipeline, data * context, micro_batch_size,
                                    global_batch_size * context, options, data_parallel=baseline, rebinder=rebinder,
                                    expert=expert)
    return with_ring(result, tensor, context, seq, expert)


def ring_level(stage_machine: Machine, tensor_levels: frozenset[int], context: int):
    """The level the context-parallel group spans: data levels taken innermost first (inside the
    tensor-parallel ranks' levels) until ``context`` ranks are covered."""
    left = context
    for i in reversed(range(len(stage_machine.levels))):
        level = stage_machine.levels[i]
        if i in tensor_levels or level.arity == 1:
            continue
        if left <= level.arity and level.arity % left == 0 or left % level.arity == 0:
            left = max(1, left // level.arity)
            if left == 1:
                return level
        else:
            break
    raise ConfigError(f"context parallelism of {context} does not fit inside the data-parallel levels of "
                      f"{stage_machine.summary()}: choose a --cp built from whole levels or a divisor of one")


def ring_layers(result: PlanResult) -> list[RingLayer]:
    """Each attention layer's core (a connected group of :func:`attention_core`), its stage, its
    priced compute, its K/V block and the saved tensors that grow with the keys."""
    cm, cost = result.cost_model, result.cost
    core = attention_core(cm)
    parent = {n: n for n in core}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for e in cm.edges:
        if e.producer in core and e.consumer in core:
            parent[find(e.producer)] = find(e.consumer)
    groups: dict[str, list[str]] = {}
    for n in sorted(core, key=cm.planned.index):
        groups.setdefault(find(n), []).append(n)
    full = cm.complete(result.plan.strategies)
    layers = []
    for ops in groups.values():
        recomputed = cm.recomputed(ops[0])
        kept = 0.0 if cm.recompute != "none" else sum(
            size for t, size in saved_tensors(cm, full, ops).items() if cm.graph.tensors.get(t) is not None
            and cm.graph.tensors[t].producer in ops)
        layers.append(RingLayer(result.schedule.stage_of_op[ops[0]],
                                sum(cm.basis.time(cost.compute[n]) for n in ops),
                                1.0 if cm.mode != "train" else (0.25 if recomputed else 1 / 3),
                                _block_bytes(cm, full, ops), kept))
    return layers


def _block_bytes(cm, full, ops: list[str]) -> float:
    """One rank's K and V: the second input of each weight-free product of the core, at its
    smallest on the way back from its projection (before the K/V heads are repeated for GQA)."""
    g = cm.graph
    producer = {e.tensor: (e.producer, e.out_index) for e in cm.edges}
    total = 0.0
    for name in ops:
        if g.operators[name].op_type not in ("MatMul", "Einsum"):
            continue
        size = cm.local_bytes(name, 1, full[name])
        tensor = g.operators[name].inputs[1].tensor
        for _ in range(12):
            if tensor not in producer:
                break
            p, index = producer[tensor]
            size = min(size, cm.local_bytes(p, index, full[p]))
            if g.operators[p].kind is not OpKind.FOLLOW:
                break
            data = [u for u in g.operators[p].inputs if u.tensor in producer]
            if not data:
                break
            tensor = data[0].tensor
        total += size
    return total


def with_ring(result: PlanResult, tensor: int, context: int, seq: int, expert: int = 1) -> PlanResult:
    """``result`` (the ``s / C`` plan) with the ring added and named as a context-parallel plan."""
    split = result.split
    level = ring_level(split.stage_machine, split.tensor_levels, context)
    layers = ring_layers(result)
    train = result.cost_model.mode == "train"
    schedule, rings = apply_ring(result.schedule, layers, context, level.bandwidth_Bps, level.latency_s, train)
    cm = result.cost_model
    core_flops = sum(cm.graph.operators[n].flops for n in attention_core(cm))
    passes = 3 if train else 1
    more = (context - 1) * core_flops * schedule.micro_batches
    schedule = replace(schedule, model_flops=schedule.model_flops + passes * more,
                       hardware_flops=schedule.hardware_flops + (passes + (cm.recompute != "none")) * more)
    plan = result.plan
    data = split.machine.num_devices // (tensor * split.stages * context)
    plan.algorithm = (f"hand-made: tensor {tensor} x pipeline {split.stages} x data {data} x context {context}"
                      + (f" (expert {expert})" if expert > 1 else ""))
    plan.context_parallel = context  # read by planner.plans.parallelism to name the plan
    ring = next((r for stage in rings for r in stage), None)
    notes = [n for n in result.notes if "; iteration " not in n]  # the s / C plan's iteration, before the ring
    notes.append(f"{schedule.micro_batches} micro-batch(es) per data-parallel rank, each of {seq // context:,} of the "
                 f"{seq:,} tokens of its samples per context-parallel rank; iteration "
                 f"{format_seconds(schedule.iteration_seconds)}")
    if ring is not None:
        notes.append(f"context parallel {context} over {level.name} (ring, zig-zag chunks of {seq // (2 * context):,} "
                     f"tokens): per layer and micro-batch, {context - 1} K/V transfers of "
                     f"{format_seconds(ring.transfer)} against blocks of {format_seconds(ring.forward_block)} forward "
                     f"and {format_seconds(ring.backward_block)} backward; exposed "
                     f"{format_seconds(ring.exposed)} ({format_bytes(layers[0].block_bytes)} of K/V per block)")
    return replace(result, schedule=schedule, plan=plan, notes=notes)


# ---- context parallelism as a candidate of the configuration search -----------------------------

LONG_SEQUENCE = 8192  # from this sequence length on, the search also tries context parallelism


def preferred(a: PlanResult, b: PlanResult) -> bool:
    """Whether ``a`` beats ``b`` by the search's rule: fits beats does-not-fit; then faster; among the
    unfitting, less memory."""
    if a.memory.fits != b.memory.fits:
        return a.memory.fits
    return a.total_seconds < b.total_seconds if a.memory.fits else a.memory.peak < b.memory.peak


def context_layouts(machine: Machine, seq: int, heads: int | None, batch: int,
                    stages: int | None = None) -> list[tuple[int, int, int, int]]:
    """(tensor, pipeline, data, context) to try: tensor parallelism over the innermost level (as
    Megatron-LM), context parallelism of every power of two from 2 whose double divides the sequence
    on the devices outside it, stages outermost (powers of two the machine allows, or the one
    fixed), data parallelism the rest, one sample per data-parallel rank at least."""
    tensor = machine.levels[-1].arity
    if heads is not None and heads % tensor:
        return []
    outer = machine.num_devices // tensor
    pipelines = [stages] if stages else [p for p in stage_counts(machine) if p & (p - 1) == 0 and p <= outer]
    layouts = []
    for pipeline in pipelines:
        context = 2
        while pipeline * context <= outer and seq % (2 * context) == 0:
            data = outer // (pipeline * context)
            if outer % (pipeline * context) == 0 and batch % data == 0:
                layouts.append((tensor, pipeline, data, context))
            context *= 2
    return layouts


def search_context(best: PlanResult, graph: OperatorGraph, machine: Machine, options: PlanOptions,
                   rebinder: Rebinder | None, progress=None) -> PlanResult:
    """``best`` (the configuration search's plan), or a context-parallel configuration that beats
    it, when the sequence is long (at least :data:`LONG_SEQUENCE`), or one that fits when ``best``
    does not; each layout climbs the memory ladder (recomputation, ZeRO) to its first rung that fits."""
    if (options.mode != "train" or rebinder is None or graph.batch_size is None or options.interleave > 1
            or options.micro_batches is not None or not any(op.op_type == "Softmax" for op in graph.operators.values())):
        return best
    try:
        symbol, seq = sequence_symbol(graph)
    except ConfigError:
        return best
    if seq < LONG_SEQUENCE and best.memory.fits:
        return best
    heads = attention_heads(cost_model_for(graph, machine, options))
    layouts = context_layouts(machine, seq, heads, graph.batch_size, options.pipeline_stages)
    chosen, priced, floor = best, 0, _compute_floor(graph, machine, options.precision)
    for i, (tensor, pipeline, data, context) in enumerate(layouts):
        if chosen.memory.fits and floor * (1 + (pipeline - 1) * data / graph.batch_size) >= chosen.total_seconds:
            continue  # its compute alone (every device at full rate) and its bubble are slower than the leader
        if progress:
            progress(i / max(1, len(layouts)), f"context parallel {context} x tensor {tensor} x pipeline {pipeline}")
        try:
            result = climb_context(graph, machine, options, rebinder, (tensor, pipeline, data, context), symbol,
                                   seq, (best.data_parallel_seconds, best.data_parallel_memory))
        except ConfigError:
            continue
        priced += 1
        if (seq >= LONG_SEQUENCE or result.memory.fits) and preferred(result, chosen):  # short: only to fit
            chosen = result
    note = (f"context parallelism tried (sequence {seq:,}): {priced} configuration(s) TP x PP x DP x CP with the ring; "
            + ("kept " + describe_algorithm(chosen) if chosen is not best else "none beats the plan found"))
    return replace(chosen, notes=list(chosen.notes) + [note], tried=list(best.tried))


def describe_algorithm(result: PlanResult) -> str:
    return result.plan.algorithm.replace("hand-made: ", "")


def climb_context(graph, machine, options, rebinder, layout, symbol, seq, baseline) -> PlanResult:
    """One layout on the memory ladder: the ``s / C`` plan priced once per rung, the ring added. The
    model is imported once, at ``s / C`` and one sample per data-parallel rank (the micro-batch of a
    stage); a rung whose ``s / C`` plan alone does not fit is not priced (the ring only adds memory),
    unless it is the last."""
    tensor, pipeline, data, context = layout
    ladder = memory_ladder(options.recompute, options.zero, pipeline == 1)
    per_step = data * context
    short = rebinder.import_fn(rebinder.model, {**graph.bindings, symbol: seq // context, graph.batch_symbol: per_step},
                               rebinder.name)
    first = evaluate_configuration(short, machine, tensor, pipeline, per_step, 1, graph.batch_size * context,
                                   replace(options, algorithm="megatron", recompute=ladder[0][0], zero=ladder[0][1]),
                                   graphs={per_step: short}, data_parallel=baseline, rebinder=rebinder)
    result = with_ring(first, tensor, context, seq)
    m = first.schedule.micro_batches
    for recompute, zero in ladder[1:]:
        if result.memory.fits:
            break
        cm = first.cost_model.variant(recompute, zero, m)
        if (recompute, zero) != ladder[-1] and not all(
                r.fits for r in stage_memory(cm, first.plan.strategies, first.schedule.assignment, m,
                                             options.optimizer)):
            continue
        variant = result_for(cm, first.plan, replace(first.options, recompute=recompute, zero=zero), split=first.split,
                             data_parallel_seconds=first.data_parallel_seconds,
                             data_parallel_memory=first.data_parallel_memory)
        result = with_ring(replace(variant, notes=list(first.notes)), tensor, context, seq)
    return result
