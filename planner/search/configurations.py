"""Choosing a 3-D configuration (stages, micro-batches, recomputation, ZeRO) and evaluating a
hand-made one (tensor x pipeline x data, as Megatron-LM is configured).

Why a separate search level above D-Rec: the stage count and the micro-batch size change the
machine D-Rec plans on (one stage) and the graph it plans (one micro-batch), so each is a D-Rec
run; recomputation and ZeRO only change how the same plan is priced and how much memory it
needs, so they are re-evaluations. Memory is what makes a configuration admissible: the search
keeps the fastest one that fits, or, when nothing fits, the one that comes closest.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace

from planner.cost.baseline import data_parallel_baseline
from planner.cost.memory import MemoryReport
from planner.cost.result import PlanResult, cost_model_for, result_for
from planner.cost.schedule import cut_points, stage_memory
from planner.machine.split import split_machine, stage_counts
from planner.machine.tree import Machine
from planner.model.graph import OperatorGraph
from planner.model.rebind import Rebinder, micro_batch_graph, with_batch
from planner.onnx.importer import require_bound
from planner.options import RECOMPUTE, ConfigError, PlanOptions, check_counts
from planner.search.drec import SMALL_GRAPH_OPS
from planner.search.folded import plan_stage
from planner.search.hand_made import check_layout
from planner.search.megatron import plan_megatron
from planner.search.vocab import MAKE_VOCAB_SIZE_DIVISIBLE_BY, pad_vocabulary
from planner.units import format_bytes, format_seconds

Progress = Callable[[float, str], None] | None

#: Recomputation and ZeRO choices in order of increasing time (and decreasing memory); the search
#: takes the first that fits. ZeRO-1 costs no time here (its reduce-scatter + all-gather is the
#: all-reduce's traffic), so it comes before any recomputation.
MEMORY_LADDER = (("none", 0), ("none", 1), ("selective", 1), ("full", 1), ("full", 3))
MIN_MICRO_BATCHES_PER_STAGE = 4  # keeps the 1F1B bubble (P-1)/m under a quarter of an iteration
SEARCHED_ALGORITHMS = ("drec", "drec+")
SKIP_MARGIN = 1.25  # a stage count is skipped when memory scaled from fewer stages exceeds capacity by this


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


def memory_ladder(recompute: str | None, zero: int | None, zero3: bool = True) -> list[tuple[str, int]]:
    """The (recomputation, ZeRO) rungs to climb until a plan fits, in order of increasing time;
    a fixed value (not None) keeps its place, so fixing one of the two climbs the other alone.
    ``zero3`` False leaves ZeRO-3 out unless fixed: with pipeline stages it gathers every
    parameter again for each of the many micro-batches, so the search tries it only without
    stages or when the user fixed the stage count."""
    if recompute is None and zero is None:
        return [(r, z) for r, z in MEMORY_LADDER if z != 3 or zero3]
    zeros = [zero] if zero is not None else [z for z in (0, 1, 3) if z != 3 or zero3]
    recomputes = [recompute] if recompute is not None else list(RECOMPUTE)
    return [(r, z) for r in recomputes for z in zeros]  # one of the two lists has a single entry


def _ladder(options: PlanOptions, stages: int) -> list[tuple[str, int]]:
    """Only the searching algorithms climb; the others keep no recomputation and ZeRO 0 unless told."""
    if options.mode != "train" or options.algorithm not in SEARCHED_ALGORITHMS:
        return [(options.recompute or "none", options.zero or 0)]
    # ZeRO-3 with stages gathers every parameter again for each micro-batch: the last rung, climbed
    # only when nothing else fits, as when the stage count is fixed (so that the search never
    # returns a plan that does not fit where fixing the stage count would give one that does)
    return memory_ladder(options.recompute, options.zero)


def climb_memory_ladder(first: PlanResult, ladder: list[tuple[str, int]],
                        tried: list[PlanResult] | None = None) -> PlanResult:
    """From a configuration priced on the ladder's first rung, the first rung whose memory fits
    (or the last): the same plan and stages, re-priced. Memory is checked on the first rung's
    stage assignment, and only the rung chosen is priced in full."""
    result = first
    cm, plan, m = first.cost_model, first.plan, first.schedule.micro_batches
    for recompute, zero in ladder[1:]:
        if result.memory.fits:
            break
        variant = cm.variant(recompute, zero, m)
        if (recompute, zero) != ladder[-1] and not all(
                r.fits for r in stage_memory(variant, plan.strategies, first.schedule.assignment, m,
                                             first.options.optimizer)):
            continue
        result = result_for(variant, plan, replace(first.options, recompute=recompute, zero=zero), split=first.split,
                            data_parallel_seconds=first.data_parallel_seconds,
                            data_parallel_memory=first.data_parallel_memory)
        if tried is not None:
            tried.append(result)
    return result


def _stage_candidates(machine: Machine, options: PlanOptions, batch: int | None) -> list[int]:
    """Stage counts to try: up to the number of devices outside the innermost level (stages over
    the outer levels), at least 2 when interleaving is asked for."""
    if options.pipeline_stages is not None:
        return [options.pipeline_stages]
    if options.algorithm not in SEARCHED_ALGORITHMS or options.mode != "train" or batch is None:
        return [1]
    outer_devices = machine.num_devices // machine.levels[-1].arity
    lowest = 2 if options.interleave > 1 else 1
    return [p for p in stage_counts(machine) if lowest <= p <= max(1, outer_devices)]


def _coarse(counts: list[int]) -> list[int]:
    """Every count at least twice the previous one kept (1, 2, 4, 8, ... of 1, 2, 3, 4, 6, 8, ...),
    the largest always: the scan's first pass; the neighbours of the best are tried after."""
    kept = []
    for p in counts:
        if not kept or p >= 2 * kept[-1] or p == counts[-1]:
            kept.append(p)
    return kept


class _Search:
    """One configuration search: graphs per micro-batch size and every configuration priced."""

    def __init__(self, graph: OperatorGraph, machine: Machine, options: PlanOptions, progress: Progress,
                 hints: list[dict] | None = None, rebinder: Rebinder | None = None, fold_layers: bool = False):
        self.graph, self.machine, self.options, self.progress = graph, machine, options, progress
        self.fold_layers = fold_layers  # False: the full search (planner.search.folded), the tests' reference
        self.rebinder = rebinder  # re-binds the model to one micro-batch
        self.hints = list(hints or [])
        self.batch = graph.batch_size
        self.graphs = {1: graph}  # micro-batch count -> graph bound to one micro-batch
        self.dp_seconds, self.dp_memory = data_parallel_baseline(cost_model_for(graph, machine, options, "none", 0),
                                                                 options.optimizer)
        self.tried: list[PlanResult] = []
        self.skipped: list[int] = []  # stage counts not priced because they cannot win

    def least_seconds(self, stages: int, floor: float) -> float:
        """A lower bound on the iteration time of any plan with ``stages`` stages: the 1F1B
        schedule takes ``m + (P-1)/v`` slots of the slowest stage, which is at least the average
        stage, whose compute alone is at least ``floor / m`` (see :func:`_compute_floor`)."""
        split = split_machine(self.machine, stages)
        counts = self.micro_batch_counts(split)
        if not counts:
            return 0.0
        return min(1 + (stages - 1) / (self.options.interleave * m) for m in counts) * floor

    def micro_batch_counts(self, split) -> list[int]:
        """The default count; on small graphs (cheap to plan) also one micro-batch per iteration,
        which, with stages, is layer-wise model parallelism: no bubble to fill, but no per
        micro-batch overheads either, and a stage's gradient all-reduce spans fewer devices."""
        if self.options.micro_batches is not None:
            return [self.options.micro_batches]
        if not self.batch:
            return [1]
        default = default_micro_batches(split.stage_machine, split.stages, self.batch)
        small = len(self.graph.planned_operators()) <= 2 * SMALL_GRAPH_OPS
        counts = sorted({default, 1}) if small and split.stages > 1 else [default]
        if self.options.interleave > 1:  # the interleaved schedule runs whole rounds of P micro-batches
            counts = [m for m in counts if m % split.stages == 0]
            if not counts and self.options.pipeline_stages is not None:
                raise ConfigError(f"the interleaved schedule needs micro-batches in multiples of the {split.stages} "
                                  "stages: give the number of micro-batches")
        return counts

    def run(self, stages: int, algorithm: str, fraction: float = 0.0) -> tuple[PlanResult, float, float] | None:
        """Plan ``stages`` stages with each micro-batch count worth trying; returns the best result
        (on each, the cheapest rung of the memory ladder that fits, or the last), the least time of
        the first rungs (unconstrained by memory) and the least memory a rung without ZeRO-3 needs.
        None if the model has fewer layers than stages."""
        split = split_machine(self.machine, stages)
        outcomes = [self._run(split, m, algorithm, fraction) for m in self.micro_batch_counts(split)]
        if algorithm == "drec+":  # the thesis's plan as a candidate, judged by the schedule's price
            outcomes = [self._with_thesis_plan(split, m, o, fraction)
                        for m, o in zip(self.micro_batch_counts(split), outcomes)]
        outcomes = [o for o in outcomes if o is not None]
        if not outcomes:
            return None
        best = outcomes[0][0]
        for result, _, _ in outcomes[1:]:
            if _better(result, best):
                best = result
        return best, min(o[1] for o in outcomes), min(o[2] for o in outcomes)

    def _with_thesis_plan(self, split, m: int, own, fraction: float):
        """drec+'s outcome for ``m`` micro-batches, or the thesis's D-Rec plan of the same
        configuration when the schedule prices it better (:func:`_as_drec_plus`); the thesis's
        configurations are listed among those tried only when kept."""
        if own is None:
            return None
        before = len(self.tried)
        other = self._run(split, m, "drec", fraction)
        del self.tried[before:]
        if other is None or not _better(other[0], own[0]):
            return own
        kept = _as_drec_plus(other)
        self.tried.append(kept[0])
        return kept[0], min(own[1], other[1]), min(own[2], other[2])

    def _run(self, split, m: int, algorithm: str, fraction: float) -> tuple[PlanResult, float, float] | None:
        stages = split.stages
        if m not in self.graphs:
            self.graphs[m] = micro_batch_graph(self.graph, m, self.rebinder)
        g = self.graphs[m]

        def report(f, message):
            if self.progress:
                self.progress(fraction, f"{stages} stage(s), {m} micro-batch(es): {message}")

        ladder = _ladder(self.options, stages)
        padding = None
        if algorithm == "megatron":  # Megatron pads the vocabulary for its tensor-parallel size
            inner = [lv.arity for lv in split.stage_machine.levels if lv.arity > 1]
            g, padding = megatron_vocabulary(g, inner[-1] if inner else 1)
        cm = cost_model_for(g, split.stage_machine, self.options, *ladder[0], micro_batches=m)
        points = cut_points(cm)  # where the graph can be cut does not depend on the plan
        if stages * self.options.interleave > len(points.segments()) and self.options.pipeline_stages is None:
            return None  # more stages than layers; a fixed count gets assign_stages' message
        hints = [h for h in self.hints if all(len(strategy) == len(cm.cuts) for strategy in h.values())]
        # drec+ adds the Megatron-SP layout as a candidate; repeated layers are planned once
        plan, cm = plan_stage(cm, algorithm, report, hints or None, self.fold_layers)
        if stages > 1:  # the search's own notes are about the plan of one stage
            plan.notes = [f"inside each stage: {note}" for note in plan.notes]
        if padding:
            plan.notes.append(padding)
        unconstrained = result_for(cm, plan, replace(self.options, pipeline_stages=stages, micro_batches=m,
                                                     recompute=ladder[0][0], zero=ladder[0][1],
                                                     sequence_parallel=cm.sequence_parallel),
                                   split=split, data_parallel_seconds=self.dp_seconds, points=points,
                                   data_parallel_memory=self.dp_memory)
        self.tried.append(unconstrained)
        result = climb_memory_ladder(unconstrained, ladder, self.tried)
        return result, unconstrained.total_seconds, self._least_memory(unconstrained, ladder)

    def _least_memory(self, first: PlanResult, ladder: list[tuple[str, int]]) -> float:
        """The fullest stage's memory on the lightest rung without ZeRO-3 (the last resort):
        what more stages would start from. The ladder's rungs need less and less memory, so that
        is the last one."""
        rungs = [rung for rung in ladder if rung[1] != 3]
        if not rungs:
            return first.memory.peak
        cm, plan, m = first.cost_model, first.plan, first.schedule.micro_batches
        return max(r.peak for r in stage_memory(cm.variant(*rungs[-1], m), plan.strategies, first.schedule.assignment,
                                                m, self.options.optimizer))


def plan_configurations(graph: OperatorGraph, machine: Machine, options: PlanOptions, progress: Progress = None,
                        hints: list[dict] | None = None, rebinder: Rebinder | None = None,
                        fold_layers: bool = False) -> PlanResult:
    """The fastest configuration that fits (see the module docstring); its notes list what was
    tried.

    Every stage count is priced, those that at least double first (so that a good leader is
    known early), then the others; a count is skipped only when it cannot win: when the lightest
    memory option of a smaller one, scaled, is still over capacity, or when a lower bound on its
    time (the training compute spread evenly over every device, plus its bubble) is no less
    than the best plan that fits. The time is not unimodal in the stage count (fewer devices per
    gradient all-reduce against more bubble and sends), so no count is skipped for being slower
    than its neighbour. Each count is planned with the algorithm asked for, exactly as when the
    count is fixed, so the result is never slower than fixing any count the search could choose
    (a screening with the thesis's D-Rec followed by drec+ on the winner alone missed winners:
    drec+ changes the ranking of the counts). drec+ also starts from the ``hints`` (plans of
    the same model, e.g. before a what-if change) that fit its stage machine. ``rebinder``
    re-binds the model to one micro-batch (needed for more than one). ``fold_layers`` False plans
    repeated layers one by one (:mod:`planner.search.folded`: the same plans, slower).
    """
    from planner.limits import check_planning_work

    check_planning_work(machine.num_devices, len(graph.operators))
    require_bound(graph)
    start = time.perf_counter()
    state = _Search(graph, machine, options, progress, hints, rebinder, fold_layers)
    candidates = _stage_candidates(machine, options, state.batch)
    if not candidates:
        raise ConfigError(f"interleaving needs pipeline stages, and the search puts stages only across the levels "
                          f"outside the innermost one, which this machine ({machine.summary()}) does not have: "
                          "give the number of stages, or set interleave to 1")
    results = _Scan(state, candidates).run()
    best = _ranked(results.values())[0]
    best.plan.search_seconds = time.perf_counter() - start
    best.notes.extend(_notes(best, state.tried, sorted(set(state.skipped))))
    return replace(best, tried=[_row(r) for r in state.tried])


def _as_drec_plus(outcome: tuple[PlanResult, float, float] | None) -> tuple[PlanResult, float, float] | None:
    """drec+ keeps the thesis's D-Rec plan (``drec``) when the schedule prices it faster: the
    searches rank plans by ``CostModel.total_seconds``, which hides communication operator by
    operator, while the iteration time buckets the gradient sync behind the backward pass, and
    the two can disagree (BERT-base, batch 2,048, dgx_a100_64nodes: drec+'s own plan 7.44 ms,
    drec's 7.21 ms). So drec+ is never slower than drec under the same options."""
    if outcome is None:
        return None
    result, seconds, memory = outcome
    note = "drec+ kept the thesis's D-Rec plan (--algorithm drec), which the schedule prices faster than its own"
    plan = replace(result.plan, algorithm="drec+", notes=result.plan.notes + [note])
    return replace(result, plan=plan, notes=result.notes + [note]), seconds, memory


def _ranked(pool) -> list[PlanResult]:
    return sorted(pool, key=functools.cmp_to_key(lambda a, b: -1 if _better(a, b) else 1))


class _Scan:
    """The scan over stage counts of :func:`plan_configurations`: every count priced, with the
    algorithm asked for (the one a fixed count uses), unless it provably cannot win; the doubling
    counts go first so that a good leader prunes the rest."""

    def __init__(self, state: _Search, candidates: list[int]):
        self.state, self.candidates = state, candidates
        self.machine, self.options = state.machine, state.options
        self.results: dict[int, PlanResult] = {}
        self.lightest = None  # (stages, least memory per device seen with them), ZeRO-3 aside
        self.floor = _compute_floor(state.graph, state.machine, state.options.precision)
        state.skipped = []

    def run(self) -> dict[int, PlanResult]:
        self.scan(_coarse(self.candidates))
        self.scan(self.candidates)
        return self.results

    def cannot_win(self, stages: int, leader: PlanResult | None) -> bool:
        """Even the compute alone, perfectly balanced, with this count's bubble is no faster."""
        if leader is None or not leader.memory.fits or len(self.candidates) == 1:
            return False
        return self.state.least_seconds(stages, self.floor) >= leader.total_seconds

    def too_large(self, stages: int) -> bool:
        """Memory per device falls about as 1/stages: a count whose scaled memory is still over
        capacity cannot fit either (unless ZeRO-3 may be tried)."""
        lightest, capacity = self.lightest, self.machine.device.memory_bytes
        return bool(lightest) and stages > lightest[0] and lightest[1] * lightest[0] / stages > SKIP_MARGIN * capacity \
            and all(z != 3 for _, z in _ladder(self.options, stages))

    def scan(self, counts: list[int]) -> None:
        for i, stages in enumerate(counts):
            if stages in self.results or self.too_large(stages):
                continue
            leader = (_ranked(self.results.values()) or [None])[0]
            if self.cannot_win(stages, leader):
                self.state.skipped.append(stages)
                continue
            outcome = self.state.run(stages, self.options.algorithm, i / len(self.candidates))
            if outcome is None:
                return  # more stages than the model has layers; larger counts neither
            result, _, least_memory = outcome
            self.results[stages] = result
            if least_memory > self.machine.device.memory_bytes:
                self.lightest = (stages, least_memory)


def _compute_floor(graph: OperatorGraph, machine: Machine, precision: str | None = None) -> float:
    """The least time the training compute of one iteration can take on the machine: 3x the
    forward FLOPs of the planned operators, spread evenly over every device at full rate (the
    roofline only adds to it). Valid for any plan, stage count and micro-batch count: a
    micro-batch's FLOPs are at least the batch's divided by the micro-batch count. Under fp8 every
    FLOP is taken at the faster of the two peaks."""
    flops = sum(graph.operators[n].flops for n in graph.planned_operators())
    rate = machine.device.effective_flops
    if precision == "fp8" and machine.device.peak_flops_fp8:
        rate = max(rate, machine.device.peak_flops_fp8 * machine.device.compute_efficiency)
    return 3 * flops / (machine.num_devices * rate)


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


def _notes(best: PlanResult, tried: list[PlanResult], skipped: list[int] | None = None) -> list[str]:
    notes = []
    if len(tried) > 1:
        fitting = sum(r.memory.fits for r in tried)
        kept = "kept the fastest that fits" if fitting else "none fits"
        notes.append(f"priced {len(tried)} configurations (stages x micro-batches x recomputation x ZeRO), "
                     f"{fitting} fit in memory; {kept}")
    if skipped:
        counts = ", ".join(str(p) for p in skipped)
        notes.append(f"not priced: {counts} stage(s), whose compute alone (spread evenly over every device) "
                     "plus their pipeline bubble already takes longer than the plan kept")
    s = best.schedule
    if s.stages > 1 and s.micro_batches == 1:
        faster = [r for r in tried if r.memory.fits and r.total_seconds < best.total_seconds]
        if best.graph.batch_size is None:
            why = "the model has no symbolic batch dimension to split into micro-batches"
        elif not faster:
            why = "still the fastest configuration tried"
        else:  # only a plan that does not fit, or one re-planned with another algorithm, was faster
            why = "the fastest configuration kept"
        notes.append(f"{s.stages} stages with one micro-batch run one after the other (the bubble is "
                     f"{(s.stages - 1) / s.stages:.0%} of the iteration): {why}")
    if not best.memory.fits:
        notes.append(f"no configuration tried fits in memory; this one comes closest "
                     f"({format_bytes(best.memory.peak)} per device of {format_bytes(best.memory.capacity)})")
    return notes


# ---- hand-made configurations -------------------------------------------------------------------

def evaluate_configuration(graph: OperatorGraph, machine: Machine, tensor: int, pipeline: int, data: int,
                           micro_batch_size: int, global_batch_size: int, options: PlanOptions | None = None,
                           graphs: dict[int, OperatorGraph] | None = None,
                           data_parallel: tuple[float, MemoryReport] | None = None,
                           rebinder: Rebinder | None = None, expert: int = 1) -> PlanResult:
    """Price a Megatron-style configuration: tensor parallelism (column- then row-parallel linear
    layers) over the innermost ``tensor`` devices, ``data`` replicas, ``pipeline`` stages outermost.

    Each data-parallel replica processes ``micro_batch_size`` samples per micro-batch, so the
    graph is bound to ``micro_batch_size * data`` (one micro-batch of a whole stage), and there
    are ``global_batch_size / (micro_batch_size * data)`` micro-batches per iteration (gradient
    accumulation when ``pipeline`` is 1). ``graphs`` caches the model per batch binding across
    calls; ``data_parallel`` is the baseline's time and memory if already known; ``rebinder``
    binds the model's batch to each of those sizes.
    """
    options = options or PlanOptions(algorithm="megatron")
    graphs = {} if graphs is None else graphs

    def bound(batch: int) -> OperatorGraph:
        if batch not in graphs:
            graphs[batch] = with_batch(graph, batch, rebinder)
        return graphs[batch]

    require_bound(graph)
    check_counts({"--micro-batch-size": micro_batch_size, "--global-batch": global_batch_size}, ConfigError)
    check_layout(tensor, pipeline, data, machine.num_devices)
    per_step = micro_batch_size * data
    if global_batch_size % per_step:
        raise ConfigError(f"--global-batch {global_batch_size} is not a multiple of --micro-batch-size x --dp = "
                          f"{micro_batch_size} x {data} = {per_step}: the micro-batches must add up to the batch")
    if graph.batch_symbol is None:
        raise ConfigError("the model has no symbolic batch dimension (axis 0 of its first input) to bind to the "
                          "micro-batch size; export it with a dynamic batch axis")
    micro_batches = global_batch_size // per_step
    split = split_machine(machine, pipeline, tensor=tensor, data=data)
    if data_parallel is None:
        data_parallel = data_parallel_baseline(cost_model_for(bound(global_batch_size), machine, options, "none", 0),
                                               options.optimizer)
    stage_graph, padding = megatron_vocabulary(bound(per_step), tensor)
    start = time.perf_counter()
    cm = cost_model_for(stage_graph, split.stage_machine, options, micro_batches=micro_batches)
    plan = plan_megatron(cm, tensor_levels=split.tensor_levels, expert=expert)  # expert: planner.cost.moe
    plan.algorithm = f"hand-made: tensor {tensor} x pipeline {pipeline} x data {data}" + (
        f" (expert {expert})" if expert > 1 else "")
    plan.search_seconds = time.perf_counter() - start
    result = result_for(cm, plan, replace(options, pipeline_stages=pipeline, micro_batches=micro_batches,
                                          recompute=cm.recompute, zero=cm.zero),
                        split=split, data_parallel_seconds=data_parallel[0], data_parallel_memory=data_parallel[1])
    if padding:
        result.notes.append(padding)
    result.notes.append(f"{micro_batches} micro-batch(es) of {micro_batch_size} sample(s) per data-parallel rank; "
                        f"iteration {format_seconds(result.total_seconds)}")
    return result


def megatron_vocabulary(graph: OperatorGraph, tensor: int) -> tuple[OperatorGraph, str | None]:
    """The graph with Megatron's padded vocabulary for ``tensor``-way tensor parallelism, and the
    note that says so (None when the vocabulary needs no padding)."""
    padded_graph, vocab, padded = pad_vocabulary(graph, tensor)
    if padded == vocab:
        return graph, None
    return padded_graph, (f"vocabulary padded from {vocab:,} to {padded:,} tokens (a multiple of "
                          f"{MAKE_VOCAB_SIZE_DIVISIBLE_BY} x tensor-parallel size {tensor}, Megatron-LM's "
                          "--make-vocab-size-divisible-by); the padded size is what is priced")


def enumerate_configurations(graph: OperatorGraph, machine: Machine, global_batch_size: int,
                             options: PlanOptions | None = None, tensor_sizes=(1, 2, 4, 8),
                             micro_batch_sizes=(1, 2, 4), progress: Progress = None,
                             rebinder: Rebinder | None = None) -> list[PlanResult]:
    """Every hand-made (tensor, pipeline, data, micro-batch size) configuration the machine and
    the batch allow, each with the least recomputation and ZeRO stage that fit (the memory
    ladder; ZeRO-3 without stages only), fastest first (those that fit before the others)."""
    options = options or PlanOptions(algorithm="megatron", recompute="none", zero=0)
    graphs: dict[int, OperatorGraph] = {}
    graphs[global_batch_size] = with_batch(graph, global_batch_size, rebinder)
    baseline = data_parallel_baseline(cost_model_for(graphs[global_batch_size], machine, options, "none", 0),
                                      options.optimizer)
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
                                           replace(options, recompute="none", zero=0), graphs, baseline, rebinder)
        except ConfigError:
            continue  # e.g. tensor ranks that straddle a level, or more stages than layers
        results.append(climb_memory_ladder(first, memory_ladder(None, None, pipeline == 1)))
    return sorted(results, key=lambda r: (not r.memory.fits, r.total_seconds))
