"""The 1F1B pipeline schedule of a plan: where the stages are cut, how they are balanced, what it costs.

A 3-D plan puts consecutive groups of operators (stages) on disjoint groups of devices along the
outermost machine level(s); every stage is the same sub-machine (the machine is symmetric), and
D-Rec plans the operators on it, on the levels the stages do not use. A batch is processed as
``m`` micro-batches in the 1F1B schedule:

* per micro-batch, stage ``s`` takes ``t_s``: its operators' compute, collectives and
  redistributions under the stage plan, plus the point-to-point sends of activations to the next
  stage and of their gradients to the previous one, over the level the stage boundary crosses
  (scattered over a replicated tensor's replicas and gathered, when cheaper:
  :mod:`planner.cost.pipeline_sends`); ZeRO-3 gathers and the sends count as far as the compute
  does not hide them (:mod:`planner.cost.overlap`);
* the iteration takes ``(m + (P-1)/v) * max_s t_s``: ``m`` slots of the slowest stage plus the
  fill-and-drain bubble of ``(P-1)/v`` slots (``v`` model chunks per device with the interleaved
  schedule, which sends ``v`` times as many activations), then the once-per-iteration gradient
  all-reduce, the longest of the stages' exposed part (bucket by bucket behind the last backward
  pass when that overlap is on);
* stage ``s`` keeps the activations of ``min(m, P - s)`` micro-batches (the first stage the most;
  interleaved, Megatron-LM's count: :func:`planner.cost.memory.in_flight_micro_batches`).

The stage boundaries are chosen by dynamic programming over the cut points (the places where the
fewest activations cross, e.g. between transformer layers) to minimise the slowest stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from planner.cost.gradients import data_dependent_ops, gradient_bytes, tied_stage_sync
from planner.cost.memory import MemoryReport, in_flight_micro_batches, memory_per_device
from planner.cost.model import CostModel, Strategy
from planner.cost.overlap import Overlaps, Split, backward_fraction, bucket_timeline, exposed_split
from planner.cost.pipeline_sends import BACKWARD, FORWARD, BoundaryTraffic, boundary_traffic
from planner.machine.split import MachineSplit
from planner.options import ConfigError, check_counts

MAX_CUT_POINTS = 600  # the DP is O(stages x points^2); beyond this, every k-th point is kept


# ---- where the stages can be cut ----------------------------------------------------------

@dataclass(frozen=True)
class CutPoints:
    """Positions in the planned operators' topological order where a stage may end.

    A position ``k`` cuts between ``order[k-1]`` and ``order[k]``; the candidates are the
    positions crossed by the fewest activations (between layers). ``segments`` are the operator
    runs between consecutive candidates: the units stages are made of.
    """

    order: tuple[str, ...]
    positions: tuple[int, ...]  # 0 < k < n, ascending

    @property
    def bounds(self) -> list[int]:
        return [0, *self.positions, len(self.order)]

    def segments(self) -> list[list[str]]:
        b = self.bounds
        return [list(self.order[b[i]:b[i + 1]]) for i in range(len(b) - 1)]


def per_sample_edges(cm: CostModel) -> list:
    """The edges whose tensor depends on the data (a stage sends it once per micro-batch).

    A tensor computed from parameters alone (the transposed embedding of a tied output layer)
    is the same for every micro-batch: the stage that reads it computes it itself (see
    :func:`assign_stages`).
    """
    data_ops = data_dependent_ops(cm.graph)
    return [e for e in cm.edges if e.producer in data_ops]


def activation_order(cm: CostModel) -> tuple[list[str], list[int]]:
    """The planned operators in a topological order where each operator computing from parameters
    or constants alone (a legacy export's ``Identity`` copy of a weight, the ``Transpose`` of a tied
    embedding, a ``Cast`` of a weight) sits just before its first consumer that carries
    activations; one with no such consumer (a dead end) goes last. Cuts between these operators
    and that consumer would be crossed by no activation but leave the stage before them empty.

    Returns the order and, per operator, the index of the operator on the data it goes with."""
    planned = list(cm.planned)
    data_ops = data_dependent_ops(cm.graph)
    data_index = {n: i for i, n in enumerate(n for n in planned if n in data_ops)}
    graph = cm.graph.graph
    key: dict[str, float] = dict(data_index)
    for name in reversed(planned):  # consumers first, so chains of weight arithmetic follow
        if name not in data_index:
            users = [key[u] for u in graph.successors(name) if u in key]
            key[name] = min(users, default=math.inf)
    last = len(data_index) - 1
    rank = {n: i for i, n in enumerate(planned)}
    group = {n: int(min(key[n], last)) if last >= 0 else 0 for n in planned}
    order = sorted(planned, key=lambda n: (group[n], rank[n]))
    return order, [group[n] for n in order]


def cut_points(cm: CostModel) -> CutPoints:
    """Cut where the fewest activations cross, not counting the ones that cross a third of the
    graph or more (an attention mask read by every layer): they cross every cut alike.

    Only positions just before an operator that carries activations are candidates; the
    operators on parameters alone follow their consumers (:func:`activation_order`), so every
    segment, and so every stage, holds at least one operator on the data."""
    order, group = activation_order(cm)
    index = {n: i for i, n in enumerate(order)}
    n = len(order)
    candidates = [k for k in range(1, n) if group[k] != group[k - 1]]  # a new operator on the data's group
    last_use: dict[str, int] = {}
    edges = per_sample_edges(cm)
    for e in edges:
        last_use[e.tensor] = max(last_use.get(e.tensor, -1), index[e.consumer])
    spans = {e.tensor: (index[e.producer] + 1, last_use[e.tensor]) for e in edges}
    if not candidates:
        return CutPoints(tuple(order), ())
    positions: list[int] = []
    for long_lived in (n / 3, math.inf):
        count = np.zeros(n + 1, dtype=np.int64)
        for first, last in spans.values():
            if last - first < long_lived:
                count[first:last + 1] += 1  # crossing positions first..last
        fewest = min(count[k] for k in candidates)
        positions = [k for k in candidates if count[k] == fewest]
        if len(positions) >= 2 or long_lived == math.inf:
            break
    if len(positions) > MAX_CUT_POINTS:
        step = math.ceil(len(positions) / MAX_CUT_POINTS)
        positions = positions[::step]
    return CutPoints(tuple(order), tuple(positions))


def balance_stages(weights: list[float], parts: int,
                   sends: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None) -> list[int]:
    """Split ``weights`` (one per segment) into ``parts`` contiguous non-empty groups minimising
    the heaviest group; returns the start segment of each group.

    ``sends(j)`` gives group ``j``'s send seconds by boundary (index ``i`` = before segment
    ``i``, ``0..n``): what it pays when a boundary is its first (the gradients sent back) and
    when it is its last (the activations sent forward), as :func:`price_schedule` charges them.

    Dynamic programming: ``best[j][k]`` is the lightest heaviest-group over the first ``k``
    segments in ``j + 1`` groups; ``best[j][k] = min_i max(best[j-1][i], load_j(i, k))``,
    computed for all ``i < k`` at once.
    """
    n = len(weights)
    if parts < 1 or parts > n:
        raise ConfigError(f"cannot make {parts} stages from {n} segment(s) between cut points: the model can be "
                          f"cut into at most {n} stages")
    no_sends = (np.zeros(n + 1), np.zeros(n + 1))
    prefix = np.concatenate([[0.0], np.cumsum(weights)])
    best = prefix + (sends(0) if sends else no_sends)[1]
    best[0] = math.inf  # a group is never empty
    choice = [np.zeros(n + 1, dtype=np.int64)]
    i, k = np.arange(n + 1)[:, None], np.arange(n + 1)[None, :]
    for j in range(1, parts):
        start_cost, end_cost = sends(j) if sends else no_sends
        load = prefix[k] - prefix[i] + start_cost[i] + end_cost[k]  # [i, k]: group j over [i, k)
        cand = np.where(i < k, np.maximum(best[i], load), math.inf)
        arg = np.argmin(cand, axis=0)
        best = cand[arg, np.arange(n + 1)]
        choice.append(arg)
    starts = []
    k_end = n
    for j in range(parts - 1, 0, -1):
        k_end = int(choice[j][k_end])
        starts.append(k_end)
    return [0, *reversed(starts)]


@dataclass
class PipelineSchedule:
    """A priced 3-D schedule; seconds per micro-batch unless named per iteration."""

    stages: int
    micro_batches: int
    interleave: int
    micro_batch_size: int  # the batch one micro-batch binds (over the whole stage)
    recompute: str
    zero: int
    stage_of_op: dict[str, int]
    stage_seconds: list[float]  # one micro-batch through each stage, forward and backward, sends included
    work_seconds: list[float]  # compute, collectives and redistribution, without the sends
    send_seconds: list[float]  # point-to-point sends per micro-batch
    gradient_sync_seconds: list[float]  # once per iteration, exposed part
    boundary_levels: list[str]
    memory: list[MemoryReport]
    bubble_seconds: float
    iteration_seconds: float
    model_flops: float  # forward + backward FLOPs of the model, per iteration
    hardware_flops: float  # every FLOP executed per iteration, recomputation included
    devices: int
    assignment: StageAssignment | None = field(default=None, repr=False)  # which device holds what
    timing: list = field(default_factory=list, repr=False)  # StageTiming per stage: hidden and exposed

    @property
    def worst_memory(self) -> MemoryReport:
        return max(self.memory, key=lambda m: m.peak)

    @property
    def fits(self) -> bool:
        return all(m.fits for m in self.memory)

    def tflops_per_device(self) -> dict[str, float]:
        per = self.iteration_seconds * self.devices * 1e12
        return {"model": self.model_flops / per, "hardware": self.hardware_flops / per}

    def overlap_breakdown(self) -> list[dict]:
        """Per iteration, each kind of communication hidden behind compute and exposed: the
        slowest stage's collectives, ZeRO-3 gathers and sends over its ``m`` micro-batches, and
        the gradient sync of the stage whose sync is the most exposed (:mod:`planner.cost.overlap`)."""
        if not self.timing:
            return []
        slowest = self.timing[self.stage_seconds.index(max(self.stage_seconds))]
        sync = max(self.timing, key=lambda t: t.sync.exposed).sync
        m = self.micro_batches
        rows = [("tensor-parallel and other collectives inside operators", Split(0.0, slowest.collectives).times(m)),
                ("ZeRO-3 parameter gathers and gradient reduce-scatters", slowest.gathers.times(m)),
                ("pipeline sends", slowest.sends.times(m)),
                ("gradient sync (once per iteration)", sync)]
        return [{"communication": name, "hidden_seconds": split.hidden, "exposed_seconds": split.exposed}
                for name, split in rows]

    def to_dict(self) -> dict:
        return {
            "overlap": self.overlap_breakdown(),
            "stages": self.stages,
            "micro_batches": self.micro_batches,
            "interleave": self.interleave,
            "micro_batch_size": self.micro_batch_size,
            "recompute": self.recompute,
            "zero": self.zero,
            "bubble_seconds": self.bubble_seconds,
            "stage_seconds": list(self.stage_seconds),
            "send_seconds": list(self.send_seconds),
            "gradient_sync_seconds": list(self.gradient_sync_seconds),
            "boundary_levels": list(self.boundary_levels),
            "stage_memory_bytes": [m.peak for m in self.memory],
            "stage_of_op": dict(self.stage_of_op),
        }


@dataclass
class StageAssignment:
    """Which operators each device of the pipeline holds: chunk ``c`` of ``P * v`` on device
    ``c mod P``; ``starts`` are the segment indices where chunks begin."""

    stages: int
    interleave: int
    starts: list[int]
    stage_of_op: dict[str, int]
    stage_segments: list[list[list[str]]]


def _check_schedule(stages: int, micro_batches: int, interleave: int) -> None:
    check_counts({"micro-batches": micro_batches, "interleave": interleave}, ConfigError)
    if interleave > 1 and stages == 1:
        raise ConfigError("interleaving needs pipeline stages: give --pipeline-stages (or --pp) > 1")
    if interleave > 1 and micro_batches % stages:
        raise ConfigError(f"the interleaved schedule needs the micro-batches ({micro_batches}) to be a multiple of the "
                          f"pipeline stages ({stages})")


def _per_op_seconds(cm: CostModel, cost) -> dict[str, float]:
    """Per micro-batch: compute, collectives other than the gradient sync (whose share
    ``cost.communication`` includes), and redistribution."""
    basis = cm.basis
    share = 1 / cost.micro_batches
    return {n: basis.time(cost.compute[n] + cost.communication[n] - share * cost.gradient_sync[n]
                          + cost.redistribution[n]) for n in cm.planned}


def assign_stages(cm: CostModel, strategies: dict[str, Strategy], split: MachineSplit, interleave: int = 1,
                  points: CutPoints | None = None, cost=None, crossing=None) -> StageAssignment:
    """Balance the chunks by dynamic programming on the plan's per-micro-batch operator times,
    counting the sends at each boundary (over the outermost pipeline level).

    Operators computing from parameters alone (a tied embedding's transpose) run on the stage of
    their first consumer, which then holds its own copy of the parameter, as Megatron-LM keeps
    the word embeddings on both the first and the last stage."""
    stages = split.stages
    full = cm.complete(strategies)
    cost = cost or cm.evaluate(full)
    points = points or cut_points(cm)
    segments = points.segments()
    chunks = stages * interleave
    if chunks > len(segments):
        what = f"{stages} stages x {interleave} chunks = {chunks} chunks" if interleave > 1 else f"{stages} stages"
        raise ConfigError(f"cannot make {what}: the model can be cut into at most {len(segments)} (between its layers)")
    per_op = _per_op_seconds(cm, cost)
    if chunks > 1:
        crossing = crossing or _crossing_bytes(cm, full, points)
        links = [split.crossing_level((c - 1) % stages, c % stages) for c in range(1, chunks)]
        nothing = np.zeros(len(segments) + 1)

        def sends(j):  # chunk j: what it pays at its first boundary and at its last (pipeline_sends)
            first = nothing
            if j > 0:  # sends the gradients back, gathers the activations it receives
                first = crossing.seconds(links[j - 1], BACKWARD)[0] + crossing.seconds(links[j - 1], FORWARD)[1]
            last = nothing
            if j < chunks - 1:  # sends the activations forward, gathers the gradients it receives
                last = crossing.seconds(links[j], FORWARD)[0] + crossing.seconds(links[j], BACKWARD)[1]
            return first, last

        starts = balance_stages([sum(per_op[n] for n in seg) for seg in segments], chunks, sends)
    else:
        starts = [0]
    bounds = starts + [len(segments)]
    stage_of_op: dict[str, int] = {}
    for c in range(chunks):
        for seg in segments[bounds[c]:bounds[c + 1]]:
            for n in seg:
                stage_of_op[n] = c % stages
    if stages > 1:
        data_ops = data_dependent_ops(cm.graph)
        graph = cm.graph.graph
        for n in reversed(points.order):  # consumers first, so chains of weight arithmetic follow
            users = [stage_of_op[u] for u in graph.successors(n) if u in stage_of_op]
            if n not in data_ops and users:
                stage_of_op[n] = min(users)
    stage_segments: list[list[list[str]]] = [[] for _ in range(stages)]
    for seg in segments:
        for s in sorted({stage_of_op[n] for n in seg}):
            stage_segments[s].append([n for n in seg if stage_of_op[n] == s])
    return StageAssignment(stages, interleave, starts, stage_of_op, stage_segments)


def stage_memory(cm: CostModel, strategies: dict[str, Strategy], assignment: StageAssignment, micro_batches: int,
                 optimizer: str = "adam") -> list[MemoryReport]:
    """Memory per device of each stage under 1F1B: stage ``s`` keeps ``min(m, P - s)`` micro-batches
    of activations; with ``v`` chunks per device Megatron-LM's interleaved count (the first stage
    ``P + (P-1)/v``, Korthikanti et al. 2022; :func:`planner.cost.memory.in_flight_micro_batches`)."""
    stages, v = assignment.stages, assignment.interleave
    return [memory_per_device(cm, strategies, optimizer, assignment.stage_segments[s],
                              in_flight_micro_batches(s, stages, micro_batches, v)) for s in range(stages)]


def price_schedule(cm: CostModel, strategies: dict[str, Strategy], split: MachineSplit, micro_batches: int,
                   interleave: int = 1, optimizer: str = "adam", overlap_gradient_sync: bool | None = None,
                   points: CutPoints | None = None, assignment: StageAssignment | None = None,
                   cost=None) -> PipelineSchedule:
    """Price the 1F1B schedule of a plan (``cm`` prices one micro-batch on ``split.stage_machine``);
    the stages are balanced for this plan unless an ``assignment`` is given; ``cost`` is the
    plan's :class:`PlanCost` if already evaluated. The overlaps are ``cm.overlap``'s
    (:mod:`planner.cost.overlap`); ``overlap_gradient_sync``, when given, overrides its gradient sync."""
    stages = split.stages
    _check_schedule(stages, micro_batches, interleave)
    full = cm.complete(strategies)
    cost = cost or cm.evaluate(full)
    points = points or cut_points(cm)
    chunks = stages * interleave
    crossing = _crossing_bytes(cm, full, points) if chunks > 1 else None
    assignment = assignment or assign_stages(cm, full, split, interleave, points, cost, crossing)
    stage_of_op, starts = assignment.stage_of_op, assignment.starts

    # point-to-point: chunk c sends its last activations forward to chunk c+1 and gradients back
    sends = [0.0] * stages
    boundary_levels = []
    for c in range(1, chunks):
        a, b = (c - 1) % stages, c % stages
        level = split.crossing_level(a, b)
        if c < stages:
            boundary_levels.append(level.name)
        i = starts[c]
        (fwd_send, fwd_gather), (bwd_send, bwd_gather) = (crossing.seconds(level, way) for way in (FORWARD, BACKWARD))
        sends[a] += float(fwd_send[i] + bwd_gather[i])  # activations out, their gradients gathered back in
        sends[b] += float(bwd_send[i] + fwd_gather[i])

    if stages > 1:  # a parameter whose consumers sit on several stages: a copy per stage, synced
        tied = tied_stage_sync(cm, full, stage_of_op, split.crossing_level)
    else:
        tied = {}
    overlaps = cm.overlap if overlap_gradient_sync is None else replace(cm.overlap, gradient_sync=overlap_gradient_sync)
    timing = [_stage_timing(cm, cost, full, [n for seg in assignment.stage_segments[s] for n in seg], sends[s],
                            tied.get(s, 0.0), overlaps) for s in range(stages)]
    stage_seconds = [t.work + t.sends.exposed for t in timing]
    slowest = max(stage_seconds)
    bubble = (stages - 1) / interleave * slowest
    iteration = micro_batches * slowest + bubble + max(t.sync.exposed for t in timing)
    memory = stage_memory(cm, full, assignment, micro_batches, optimizer)

    forward_flops = cm.graph.flops_forward
    recomputed_flops = sum(cm.graph.operators[n].flops for n in cm.planned if cm.recomputed(n))
    per_mb_model = (3 if cm.mode == "train" else 1) * forward_flops
    per_mb_hardware = per_mb_model + recomputed_flops
    return PipelineSchedule(stages, micro_batches, interleave, cm.graph.batch_size or 0, cm.recompute, cm.zero, stage_of_op,
                            stage_seconds, [t.work for t in timing], [t.sends.exposed for t in timing],
                            [t.sync.exposed for t in timing], boundary_levels, memory, bubble, iteration,
                            per_mb_model * micro_batches, per_mb_hardware * micro_batches,
                            split.machine.num_devices, assignment, timing)


@dataclass(frozen=True)
class StageTiming:
    """One stage's time per micro-batch and what its communication hides (:mod:`planner.cost.overlap`).

    ``work``: its operators per micro-batch, with the ZeRO-3 gathers the compute does not hide;
    ``collectives``: the collectives inside its operators (tensor-parallel partial sums; exposed);
    ``gathers`` (ZeRO-3's, per micro-batch) and ``sends`` (point-to-point, per micro-batch) hidden
    and exposed; ``sync``: the gradient sync once per iteration, hidden behind the last backward
    pass and exposed after it."""

    work: float
    collectives: float
    gathers: Split
    sends: Split
    sync: Split


def _stage_timing(cm: CostModel, cost, full: dict[str, Strategy], order: list[str], sends: float, tied: float,
                  overlaps: Overlaps) -> StageTiming:
    """Price one stage's operators (``order``: forward order) with the overlaps asked for."""
    basis = cm.basis
    share = 1 / cost.micro_batches
    gathers = {n: basis.time(cost.parameter_gathers[n]) if n in cost.parameter_gathers else 0.0 for n in order}
    work = {n: basis.time(cost.compute[n] + cost.communication[n] - share * cost.gradient_sync[n]
                          + cost.redistribution[n]) - gathers[n] for n in order}
    collectives = sum(basis.time(cost.communication[n] - share * cost.gradient_sync[n]) - gathers[n] for n in order)
    if cm.mode != "train":
        return StageTiming(sum(work.values()), collectives, Split(0.0, sum(gathers.values())),
                           Split(0.0, sends), Split())
    back = {n: backward_fraction(cm, n) for n in order}
    forward_items = [(gathers[n] / 3, work[n] * (1 - back[n]), 0.0) for n in order]
    backward_items = [(gathers[n] / 3, work[n] * back[n], gathers[n] / 3) for n in reversed(order)]
    zero = (exposed_split(forward_items, overlaps.parameter_prefetch)
            + exposed_split(backward_items, overlaps.parameter_prefetch))
    busy = sum(work.values()) + zero.exposed
    hidden_sends = min(sends, busy) if overlaps.pipeline_sends else 0.0
    sync = bucket_timeline([work[n] * back[n] for n in reversed(order)],
                           [basis.time(cost.gradient_sync[n]) for n in reversed(order)],
                           [gradient_bytes(cm, n, full[n]) for n in reversed(order)],
                           cm.bucket_bytes, tied, overlaps.gradient_sync)
    return StageTiming(busy, collectives, zero, Split(hidden_sends, sends - hidden_sends), sync)


def _crossing_bytes(cm: CostModel, full: dict[str, Strategy], points: CutPoints) -> BoundaryTraffic:
    """The point-to-point traffic at every boundary between segments (:mod:`planner.cost.pipeline_sends`)."""
    return boundary_traffic(cm, full, points, per_sample_edges(cm))
