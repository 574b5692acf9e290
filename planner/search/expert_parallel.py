"""Megatron-style expert-parallel layouts as candidates of the configuration search.

Owns which ``TP x PP x DP (EP)`` layouts the search prices beside its own plan on a
mixture-of-experts model, and the choice between them. Why: D-Rec plans one stage and one
micro-batch at a time, and the stage and micro-batch counts it is given (one micro-batch without
stages) leave out the layout Megatron-LM trains MoE models with: one stage, data parallelism over
every device with gradient accumulation (a micro-batch of one sample per data-parallel rank) and
the experts split over the innermost data-parallel ranks. On the full-size Mixtral sample on 128
GPUs that layout took 6.74 s where the search's best (16 stages) took 7.45 s. Each layout here is
priced exactly as ``evaluate --tp --pp --dp --ep`` prices it
(:func:`planner.search.configurations.evaluate_configuration`), on the memory ladder
(recomputation, ZeRO) to its first rung that fits, and replaces the plan found when it is
preferred (fits first, then faster), as the Megatron-SP layout is a candidate of drec+.
"""

from __future__ import annotations

from dataclasses import replace

from planner.cost import moe
from planner.cost.result import PlanResult, cost_model_for
from planner.machine.split import stage_counts
from planner.machine.tree import Machine
from planner.model.graph import OperatorGraph
from planner.model.rebind import Rebinder
from planner.errors import PlannerError
from planner.options import PlanOptions
from planner.search.configurations import (SEARCHED_ALGORITHMS, _compute_floor, climb_memory_ladder,
                                           evaluate_configuration, memory_ladder)
from planner.search.context_parallel import describe_algorithm, preferred
from planner.search.megatron import attention_heads

Layout = tuple[int, int, int, int]  # tensor, pipeline, data, expert


def _powers_of_two_dividing(n: int, limit: int) -> list[int]:
    out, p = [], 1
    while p <= limit:
        if n % p == 0:
            out.append(p)
        p *= 2
    return out


def expert_layouts(machine: Machine, heads: int | None, experts: list[int], batch: int,
                   stages: int | None = None) -> list[Layout]:
    """(tensor, pipeline, data, expert) to try, one sample per data-parallel rank and micro-batch:
    tensor parallelism of every power of two up to the innermost level's devices (dividing the
    heads), stages of every power of two over the outer devices (or the count fixed), data
    parallelism the rest (dividing the batch), and expert parallelism 1, the innermost level's
    devices, or every expert (dividing each MoE layer's experts and the data-parallel size).
    Fewest stages first (the likeliest winners: they prune the others by time)."""
    inner = machine.levels[-1].arity
    outer = machine.num_devices // inner
    pipelines = [stages] if stages else [p for p in stage_counts(machine) if p & (p - 1) == 0 and p <= outer]
    layouts = []
    for pipeline in pipelines:
        for tensor in _powers_of_two_dividing(heads or inner, inner):
            if machine.num_devices % (tensor * pipeline):
                continue
            data = machine.num_devices // (tensor * pipeline)
            if batch % data:
                continue
            for expert in sorted({1, inner, *experts}):
                if data % expert == 0 and all(e % expert == 0 for e in experts):
                    layouts.append((tensor, pipeline, data, expert))
    return layouts


def _applies(graph: OperatorGraph, options: PlanOptions, rebinder: Rebinder | None) -> list[int]:
    """The experts of each stacked MoE layer when the search should try expert-parallel layouts:
    training, a searching algorithm, the micro-batches and interleaving left to it, a batch to
    re-bind; [] otherwise."""
    if (options.mode != "train" or options.algorithm not in SEARCHED_ALGORITHMS or rebinder is None
            or graph.batch_size is None or options.interleave > 1 or options.micro_batches is not None):
        return []
    return sorted({layer.experts for layer in moe.find_moe_layers(graph) if layer.form == "stacked"})


def search_experts(best: PlanResult, graph: OperatorGraph, machine: Machine, options: PlanOptions,
                   rebinder: Rebinder | None, progress=None) -> PlanResult:
    """``best`` (the configuration search's plan), or a Megatron-style expert-parallel layout that
    is preferred to it (module docstring); a note says how many were priced and what was kept. A
    layout whose compute alone (spread evenly over every device at full rate) plus its pipeline
    bubble already takes longer than the leader that fits is not priced."""
    experts = _applies(graph, options, rebinder)
    if not experts:
        return best
    heads = attention_heads(cost_model_for(graph, machine, options))
    if heads is None:  # no attention: not a transformer Megatron lays out (e.g. a lone MoE layer)
        return best
    layouts = expert_layouts(machine, heads, experts, graph.batch_size, options.pipeline_stages)
    floor = _compute_floor(graph, machine, options.precision)
    graphs: dict[int, OperatorGraph] = {}
    baseline = (best.data_parallel_seconds, best.data_parallel_memory)
    chosen, priced, skipped = best, 0, 0
    for i, (tensor, pipeline, data, expert) in enumerate(layouts):
        micro_batches = graph.batch_size // data
        if chosen.memory.fits and floor * (1 + (pipeline - 1) / micro_batches) >= chosen.total_seconds:
            skipped += 1
            continue
        if progress:
            progress(i / max(1, len(layouts)), f"expert parallel {expert} x tensor {tensor} x pipeline {pipeline}")
        try:
            result = _climb(graph, machine, options, rebinder, (tensor, pipeline, data, expert), graphs, baseline)
        except PlannerError:
            continue  # e.g. more stages than layers, not a transformer Megatron can lay out
        priced += 1
        if preferred(result, chosen):
            chosen = result
    note = (f"expert-parallel layouts tried (Megatron-style, one sample per micro-batch): {priced} TP x PP x DP (EP) "
            f"priced, {skipped} not priced (their compute and bubble alone are slower than the plan kept); "
            + ("kept " + describe_algorithm(chosen) if chosen is not best else "none beats the plan found"))
    return replace(chosen, notes=list(chosen.notes) + [note], tried=list(best.tried))


def _climb(graph, machine, options, rebinder, layout: Layout, graphs, baseline) -> PlanResult:
    tensor, pipeline, data, expert = layout
    ladder = memory_ladder(options.recompute, options.zero, pipeline == 1)
    first = evaluate_configuration(graph, machine, tensor, pipeline, data, 1, graph.batch_size,
                                   replace(options, algorithm="megatron", recompute=ladder[0][0], zero=ladder[0][1],
                                           pipeline_stages=None),
                                   graphs, baseline, rebinder, expert=expert)
    return climb_memory_ladder(first, ladder)
