"""Choosing a 3-D configuration (stages, micro-batches, recomputation, ZeRO) and evaluating a
hand-made one (tensor x pipeline x data, as Megatron-LM is configured).

Why a separate search level above D-Rec: the stage count and the micro-batch size change the
machine D-Rec plans on (one stage) and the graph it plans (one micro-batch), so each is a D-Rec
run; recomputation and ZeRO only change how the same plan is priced and how much memory it
needs, so they are re-evaluations. Memory is what makes a configuration admissible: the search
keeps the fastest one that fits, or, when nothing fits, the one that comes closest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

from .api import PlanOptions, PlanResult, cost_model_for, result_for, search
from .ir import OperatorGraph
from .machine import Machine
from .onnx_import import require_bound
from .search.data_parallel import data_parallel_strategies
from .search.megatron import plan_megatron
from .search.pipeline import ConfigError, assign_stages, cut_points, split_machine, stage_counts, stage_memory
from .units import format_bytes, format_seconds

Progress = Callable[[float, str], None] | None

#: Recomputation and ZeRO choices in order of increasing time (and decreasing memory); the search
#: takes the first that fits. ZeRO-1 costs no time here (its reduce-scatter + all-gather is the
#: all-reduce's traffic), so it comes before any recomputation.
MEMORY_LADDER = (("none", 0), ("none", 1), ("selective", 1), ("full", 1), ("full", 3))
MIN_MICRO_BATCHES_PER_STAGE = 4  # keeps the 1F1B bubble (P-1)/m under a quarter of an iteration
SEARCHED_ALGORITHMS = ("drec", "drec+")
SKIP_MARGIN = 1.25  # a stage count is skipped when memory scaled from fewer stages exceeds capacity by this


def global_batch(graph: OperatorGraph) -> int | None:
    return graph.bindings.get(graph.batch_symbol) if graph.batch_symbol else None


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def default_micro_batches(stage_machine: Machine, stages: int, batch: int) -> int:
    """Micro-batches per iteration: a micro-batch just large enough to spread over the stage's
    outer levels (the innermost level is left to operator parallelism; all of the stage's devices
    when it has a single level), and at least ``MIN_MICRO_BATCHES_PER_STAGE`` per stage."""
    if stages == 1:
        return 1
    cap = max(1, batch // (MIN_MICRO_BATCHES_PER_STAGE * stages))
    split_levels = [lv for lv in stage_machine.levels if lv.arity > 1]
    width = stage_machine.num_devices // (split_levels[-1].arity if len(split_levels) > 1 else 1)
    return batch // _largest_divisor_at_most(batch, min(width, cap))


def _ladder(options: PlanOptions, stages: int) -> list[tuple[str, int]]:
    """The memory ladder the options leave open. ZeRO-3 is tried without pipeline stages only:
    with stages it would gather every parameter again for each of the many micro-batches."""
    return [(r, z) for r, z in MEMORY_LADDER
            if (options.recompute is None or r == options.recompute)
            and (z == options.zero if options.zero is not None else z != 3 or stages == 1)] \
        or [(options.recompute or "none", options.zero or 0)]


def _stage_candidates(machine: Machine, options: PlanOptions, batch: int | None) -> list[int]:
    if options.pipeline_stages is not None:
        return [options.pipeline_stages]
    if options.algorithm not in SEARCHED_ALGORITHMS or options.mode != "train" or batch is None:
        return [1]
    outer_devices = machine.num_devices // machine.levels[-1].arity
    return [p for p in stage_counts(machine) if p <= max(1, outer_devices)]


class _Search:
    """One configuration search: graphs per micro-batch size and every configuration priced."""

    def __init__(self, graph: OperatorGraph, machine: Machine, options: PlanOptions, progress: Progress):
        self.graph, self.machine, self.options, self.progress = graph, machine, options, progress
        self.batch = global_batch(graph)
        self.graphs = {self.batch: graph} if self.batch else {}
        base = cost_model_for(graph, machine, options)
        self.dp_seconds = base.total_seconds(data_parallel_strategies(base))
        self.tried: list[PlanResult] = []

    def micro_batches(self, split) -> int:
        if self.options.micro_batches is not None:
            m = self.options.micro_batches
            if m > 1 and (self.batch is None or self.batch % m):
                raise ConfigError(f"{m} micro-batches do not divide the batch ({self.graph.batch_symbol}="
                                  f"{self.batch}); choose a divisor of it")
            return m
        return default_micro_batches(split.stage_machine, split.stages, self.batch) if self.batch else 1

    def run(self, stages: int, algorithm: str, fraction: float = 0.0) -> tuple[PlanResult, float] | None:
        """Plan ``stages`` stages; returns the cheapest rung of the memory ladder that fits (or the
        last rung) and the time of the first rung (the configuration unconstrained by memory).
        None if the model cannot be cut into that many stages."""
        split = split_machine(self.machine, stages)
        m = self.micro_batches(split)
        g = self.graphs.get(self.batch // m) if self.batch else self.graph
        if g is None:
            g = self.graphs[self.batch // m] = self.graph.with_batch(self.batch // m)

        def report(f, message):
            if self.progress:
                self.progress(fraction, f"{stages} stage(s), {m} micro-batch(es): {message}")

        ladder = _ladder(self.options, stages)
        cm = cost_model_for(g, split.stage_machine, self.options, *ladder[0], micro_batches=m)
        plan = search(cm, algorithm, report)
        points = cut_points(cm)
        if stages > len(points.segments()):
            if self.options.pipeline_stages is not None:
                raise ConfigError(f"the model can be cut into at most {len(points.segments())} stages, not {stages}")
            return None
        # memory decides the rung (on the first rung's stages); only the chosen rung is priced
        unconstrained = result_for(cm, plan, replace(self.options, pipeline_stages=stages, micro_batches=m,
                                                     recompute=ladder[0][0], zero=ladder[0][1]),
                                   split=split, data_parallel_seconds=self.dp_seconds, points=points)
        self.tried.append(unconstrained)
        result = unconstrained
        assignment = assign_stages(cm, plan.strategies, split, self.options.interleave, points)
        for recompute, zero in ladder[1:]:
            if result.memory.fits:
                break
            variant = cm.variant(recompute, zero, m)
            if not all(r.fits for r in stage_memory(variant, plan.strategies, assignment, m, self.options.optimizer)) \
                    and (recompute, zero) != ladder[-1]:
                continue
            chosen = replace(self.options, pipeline_stages=stages, micro_batches=m, recompute=recompute, zero=zero)
            result = result_for(variant, plan, chosen, split=split, data_parallel_seconds=self.dp_seconds,
                                points=points)
            self.tried.append(result)
        first = unconstrained.total_seconds
        return result, first


def plan_configurations(graph: OperatorGraph, machine: Machine, options: PlanOptions,
                        progress: Progress = None) -> PlanResult:
    """The fastest configuration that fits (see the module docstring); its notes list what was
    tried.

    Stage counts are screened with the thesis's D-Rec, in increasing order, until a configuration
    fits and a larger count is slower than a smaller one, both without memory limits (so both
    before recomputation and ZeRO: the bubble and the sends only grow from there).
    The winner is then planned again with the requested algorithm.
    """
    require_bound(graph)
    start = time.perf_counter()
    state = _Search(graph, machine, options, progress)
    candidates = _stage_candidates(machine, options, state.batch)
    screen = "drec" if len(candidates) > 1 and options.algorithm == "drec+" else options.algorithm
    best: PlanResult | None = None
    best_unconstrained = math.inf
    lightest = None  # (stages, least memory per device seen with them), ZeRO-3 aside
    for i, stages in enumerate(candidates):
        if lightest and stages > 1 and lightest[1] * lightest[0] / stages > SKIP_MARGIN * machine.device.memory_bytes:
            continue  # memory per device falls about as 1/stages: this count cannot fit either
        outcome = state.run(stages, screen, i / len(candidates))
        if outcome is None:
            break
        result, unconstrained = outcome
        improved = best is None or _better(result, best)
        if improved:
            best = result
        elif best.memory.fits and unconstrained >= best_unconstrained:
            break  # more stages only add bubble and sends from here
        best_unconstrained = min(best_unconstrained, unconstrained)
        peaks = [r.memory.peak for r in state.tried if r.schedule.stages == stages and r.schedule.zero != 3]
        if peaks and not result.memory.fits:
            lightest = (stages, min(peaks))
    assert best is not None
    if screen != options.algorithm:  # plan the winner again with the full algorithm
        final = state.run(best.schedule.stages, options.algorithm, 1.0)
        if final is not None and (_better(final[0], best) or final[0].memory.fits == best.memory.fits):
            best = final[0] if _better(final[0], best) else best
    best.plan.search_seconds = time.perf_counter() - start
    best.notes.extend(_notes(best, state.tried))
    best.tried = [_row(r) for r in state.tried]
    return best


def _better(a: PlanResult, b: PlanResult) -> bool:
    """Fits beats does-not-fit; then faster; among the unfitting, less memory."""
    if a.memory.fits != b.memory.fits:
        return a.memory.fits
    if a.memory.fits:
        return a.total_seconds < b.total_seconds
    return a.memory.peak < b.memory.peak


def _row(r: PlanResult) -> dict:
    s = r.schedule
    return {"stages": s.stages, "micro_batches": s.micro_batches, "recompute": s.recompute, "zero": s.zero,
            "algorithm": r.plan.algorithm, "iteration_seconds": r.total_seconds, "memory_bytes": r.memory.peak,
            "fits": r.memory.fits}


def _notes(best: PlanResult, tried: list[PlanResult]) -> list[str]:
    notes = []
    if len(tried) > 1:
        fitting = sum(r.memory.fits for r in tried)
        notes.append(f"tried {len(tried)} configurations (stages x micro-batches x recomputation x ZeRO), "
                     f"{fitting} fit in memory; kept the fastest that fits")
    if not best.memory.fits:
        notes.append(f"no configuration tried fits in memory; this one comes closest "
                     f"({format_bytes(best.memory.peak)} per device of {format_bytes(best.memory.capacity)})")
    return notes


# ---- hand-made configurations -------------------------------------------------------------------

def evaluate_configuration(graph: OperatorGraph, machine: Machine, tensor: int, pipeline: int, data: int,
                           micro_batch_size: int, global_batch_size: int, options: PlanOptions | None = None,
                           graphs: dict[int, OperatorGraph] | None = None,
                           data_parallel_seconds: float | None = None) -> PlanResult:
    """Price a Megatron-style configuration: tensor parallelism (column- then row-parallel linear
    layers) over the innermost ``tensor`` devices, ``data`` replicas, ``pipeline`` stages outermost.

    Each data-parallel replica processes ``micro_batch_size`` samples per micro-batch, so the
    graph is bound to ``micro_batch_size * data`` (one micro-batch of a whole stage), and there
    are ``global_batch_size / (micro_batch_size * data)`` micro-batches per iteration (gradient
    accumulation when ``pipeline`` is 1). ``graphs`` caches the model per batch binding across
    calls; ``data_parallel_seconds`` is the baseline if already known.
    """
    options = options or PlanOptions(algorithm="megatron")
    graphs = {} if graphs is None else graphs

    def bound(batch: int) -> OperatorGraph:
        if batch not in graphs:
            graphs[batch] = graph.with_batch(batch)
        return graphs[batch]

    require_bound(graph)
    for label, value in (("--tp", tensor), ("--pp", pipeline), ("--dp", data), ("--micro-batch-size", micro_batch_size),
                         ("--global-batch", global_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be a whole number >= 1, not {value!r}")
    if tensor * pipeline * data != machine.num_devices:
        raise ConfigError(f"--tp x --pp x --dp = {tensor} x {pipeline} x {data} = {tensor * pipeline * data}, but the "
                          f"machine has {machine.num_devices} devices: the product must equal the device count")
    per_step = micro_batch_size * data
    if global_batch_size % per_step:
        raise ConfigError(f"--global-batch {global_batch_size} is not a multiple of --micro-batch-size x --dp = "
                          f"{micro_batch_size} x {data} = {per_step}: the micro-batches must add up to the batch")
    if graph.batch_symbol is None:
        raise ConfigError("the model has no symbolic batch dimension (axis 0 of its first input) to bind to the "
                          "micro-batch size; export it with a dynamic batch axis")
    micro_batches = global_batch_size // per_step
    split = split_machine(machine, pipeline, tensor=tensor, data=data)
    if data_parallel_seconds is None:
        whole = cost_model_for(bound(global_batch_size), machine, options)
        data_parallel_seconds = whole.total_seconds(data_parallel_strategies(whole))
    stage_graph = bound(per_step)
    start = time.perf_counter()
    cm = cost_model_for(stage_graph, split.stage_machine, options, micro_batches=micro_batches)
    plan = plan_megatron(cm, tensor_levels=split.tensor_levels)
    plan.algorithm = f"hand-made: tensor {tensor} x pipeline {pipeline} x data {data}"
    plan.search_seconds = time.perf_counter() - start
    result = result_for(cm, plan, replace(options, pipeline_stages=pipeline, micro_batches=micro_batches,
                                          recompute=cm.recompute, zero=cm.zero),
                        split=split, data_parallel_seconds=data_parallel_seconds)
    result.notes.append(f"{micro_batches} micro-batch(es) of {micro_batch_size} sample(s) per data-parallel rank; "
                        f"iteration {format_seconds(result.total_seconds)}")
    return result



def enumerate_configurations(graph: OperatorGraph, machine: Machine, global_batch_size: int,
                             options: PlanOptions | None = None, tensor_sizes=(1, 2, 4, 8),
                             micro_batch_sizes=(1, 2, 4), progress: Progress = None) -> list[PlanResult]:
    """Every hand-made (tensor, pipeline, data, micro-batch size) configuration the machine and
    the batch allow, each with the least recomputation and ZeRO stage that fit (the memory
    ladder; ZeRO-3 without stages only), fastest first (those that fit before the others)."""
    options = options or PlanOptions(algorithm="megatron", recompute="none", zero=0)
    graphs: dict[int, OperatorGraph] = {}
    whole = cost_model_for(graph.with_batch(global_batch_size), machine, options)
    dp_seconds = whole.total_seconds(data_parallel_strategies(whole))
    layouts = []
    for tensor in tensor_sizes:
        for pipeline in stage_counts(machine):
            if machine.num_devices % (tensor * pipeline):
                continue
            data = machine.num_devices // (tensor * pipeline)
            for b in micro_batch_sizes:
                if global_batch_size % (b * data) == 0:
                    layouts.append((tensor, pipeline, data, b))
    results = []
    for i, (tensor, pipeline, data, b) in enumerate(layouts):
        if progress:
            progress(i / len(layouts), f"tensor {tensor} x pipeline {pipeline} x data {data}, micro-batch {b}")
        try:
            first = evaluate_configuration(graph, machine, tensor, pipeline, data, b, global_batch_size,
                                           replace(options, recompute="none", zero=0), graphs, dp_seconds)
        except ConfigError:
            continue  # e.g. tensor ranks that straddle a level, or more stages than layers
        result = first
        for recompute, zero in _ladder(replace(options, recompute=None, zero=None), pipeline)[1:]:
            if result.memory.fits:
                break
            chosen = replace(first.options, recompute=recompute, zero=zero)
            result = result_for(first.cost_model.variant(recompute, zero, first.schedule.micro_batches), first.plan,
                                chosen, split=first.split, data_parallel_seconds=dp_seconds)
        results.append(result)
    return sorted(results, key=lambda r: (not r.memory.fits, r.total_seconds))
