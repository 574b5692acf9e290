"""The planner as a library: options, the algorithm registry, plan and evaluate.

The command line and the Streamlit pages both call :func:`plan_model` and
:func:`evaluate_plan`; neither computes a cost itself.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from planner.cost.model import (DEFAULT_BUCKET_MB, CostModel, OptionsError, Plan, PlanCost, PlanError, Strategy, check_bucket_mb,
                   check_counts, check_memory_options, check_mode_and_precision)
from planner.model.graph import OperatorGraph, OpKind
from planner.machine.tree import Machine
from planner.cost.memory import DEFAULT_OPTIMIZER, OPTIMIZERS, MemoryReport, memory_per_device
from planner.onnx.importer import require_bound
from planner.search.data_parallel import data_parallel_strategies, plan_data_parallel
from planner.search.drec import DRecSearch, plan_drec
from planner.search.megatron import plan_megatron
from planner.search.vocab import pad_as_recorded
from planner.search.pipeline import CutPoints, MachineSplit, PipelineSchedule, micro_batch_graph, price_schedule, split_machine

ALGORITHMS: dict[str, str] = {
    "drec+": "improved D-Rec (default): the thesis's search plus re-sweeps, whole-cut candidates and a local polish",
    "drec": "D-Rec exactly as the thesis describes it",
    "data_parallel": "pure data parallelism: split the batch everywhere it divides",
    "exact": "the exact optimum under the same cost model (integer program; small graphs only)",
    "megatron": "Megatron tensor parallelism inside the innermost level, data parallel across the others",
}
DEFAULT_ALGORITHM = "drec+"


@dataclass
class PlanOptions:
    """What a plan depends on besides the model and the machine.

    mode:       ``train`` (forward + backward, gradients, optimizer state) or ``infer``.
    precision:  bytes of float tensors: ``fp32``, ``bf16`` or ``fp16``; None keeps the ONNX type.
    optimizer:  ``adam`` or ``sgd``: sets the optimizer state in memory (train mode only).
    algorithm:  one of :data:`ALGORITHMS`.
    pipeline_stages: stages over the outermost machine levels. None lets ``drec``/``drec+`` try the
                counts that make sense (training only); the other algorithms use 1.
    micro_batches: micro-batches per iteration (the batch dimension must divide by it). None: 1
                without stages, otherwise enough to fill the stage's data-parallel width.
    interleave: model chunks per device (the interleaved 1F1B schedule); needs stages.
    recompute:  ``none``, ``selective`` or ``full`` (:data:`planner.cost.model.RECOMPUTE`); None: the
                least recomputation that fits in memory.
    zero:       ZeRO stage 0, 1 or 3 for the data-parallel groups; None: the lowest that fits.
    overlap_gradient_sync: hide the gradient all-reduce behind the last backward pass, as far
                as that pass lasts.
    bucket_mb:  gradients are all-reduced in buckets of this many megabytes (10^6 bytes), as
                PyTorch DDP (``bucket_cap_mb``) and Megatron-LM do: latency is paid per bucket,
                not per tensor; 0 all-reduces each gradient tensor on its own.
    sequence_parallel: with Megatron tensor parallelism, split the LayerNorm, dropout, bias and
                residual regions along the sequence (Korthikanti et al. 2022): the all-reduces
                become reduce-scatters and all-gathers of the same bytes, and those regions'
                compute and activations are divided by the tensor-parallel size
                (:mod:`planner.cost.sequence_parallel`). Only the ``megatron`` layouts use it.
    """

    mode: str = "train"
    precision: str | None = None
    optimizer: str = DEFAULT_OPTIMIZER
    algorithm: str = DEFAULT_ALGORITHM
    pipeline_stages: int | None = None
    micro_batches: int | None = None
    interleave: int = 1
    recompute: str | None = None
    zero: int | None = None
    overlap_gradient_sync: bool = False
    bucket_mb: float = DEFAULT_BUCKET_MB
    sequence_parallel: bool = False

    def __post_init__(self) -> None:
        check_mode_and_precision(self.mode, self.precision)
        if self.optimizer not in OPTIMIZERS:
            raise OptionsError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.algorithm not in ALGORITHMS:
            raise OptionsError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        check_counts({name: getattr(self, name) for name in ("pipeline_stages", "micro_batches", "interleave")
                      if getattr(self, name) is not None})
        check_memory_options(self.recompute or "none", 0 if self.zero is None else self.zero, 1)
        if not isinstance(self.overlap_gradient_sync, bool):
            raise OptionsError(f"overlap_gradient_sync must be true or false, not {self.overlap_gradient_sync!r}")
        self.bucket_mb = check_bucket_mb(self.bucket_mb)
        if not isinstance(self.sequence_parallel, bool):
            raise OptionsError(f"sequence_parallel must be true or false, not {self.sequence_parallel!r}")
        if self.mode == "infer" and ((self.pipeline_stages or 1) > 1 or (self.micro_batches or 1) > 1):
            raise OptionsError("pipeline stages and micro-batches are for training (--mode train)")

    @property
    def searches_configuration(self) -> bool:
        """Whether some of stages, micro-batches, recomputation and ZeRO are left to the search."""
        return self.mode == "train" and (None in (self.pipeline_stages, self.micro_batches, self.recompute, self.zero))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlanResult:
    """A plan with everything the summary, the JSON and the app show."""

    graph: OperatorGraph
    machine: Machine
    options: PlanOptions
    cost_model: CostModel
    plan: Plan
    cost: PlanCost  # one micro-batch on one stage machine
    schedule: PipelineSchedule
    split: MachineSplit
    data_parallel_seconds: float
    notes: list[str] = field(default_factory=list)
    tried: list[dict] = field(default_factory=list)  # the configurations the search priced
    data_parallel_memory: MemoryReport | None = None  # per device, when the baseline was priced here

    @property
    def memory(self) -> MemoryReport:
        """The stage that needs the most memory per device."""
        return self.schedule.worst_memory

    @property
    def total_seconds(self) -> float:
        """One iteration (the whole batch): all micro-batches, the bubble and the gradient sync."""
        return self.schedule.iteration_seconds

    @property
    def pipelined(self) -> bool:
        return self.schedule.stages > 1 or self.schedule.micro_batches > 1

    @property
    def speedup_over_data_parallel(self) -> float:
        return self.data_parallel_seconds / self.total_seconds if self.total_seconds > 0 else math.inf


def cost_model_for(graph: OperatorGraph, machine: Machine, options: PlanOptions, recompute: str | None = None,
                   zero: int | None = None, micro_batches: int = 1) -> CostModel:
    require_bound(graph)
    cm = CostModel(graph, machine, options.mode, options.precision, recompute or options.recompute or "none",
                   options.zero or 0 if zero is None else zero, micro_batches, options.bucket_mb)
    cm.sequence_parallel = options.sequence_parallel
    return cm


def search(cm: CostModel, algorithm: str, progress: Callable[[float, str], None] | None = None,
           hints: list[dict[str, Strategy]] | None = None) -> Plan:
    """Run one algorithm on a cost model; ``drec+`` also starts from the ``hints`` (plans of the
    same graph, e.g. the plan before a what-if change)."""
    if algorithm == "drec+":
        return plan_drec(cm, improved=True, progress=progress, data_parallel=data_parallel_strategies(cm),
                         hints=hints)
    if algorithm == "drec":
        return plan_drec(cm, improved=False, progress=progress)
    if algorithm == "data_parallel":
        return plan_data_parallel(cm)
    if algorithm == "exact":
        from planner.search.exact import plan_exact  # scipy: imported only when asked for

        return plan_exact(cm)
    if algorithm == "megatron":
        return plan_megatron(cm)
    raise OptionsError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")


def result_for(cm: CostModel, plan: Plan, options: PlanOptions, notes: list[str] | None = None,
               split: MachineSplit | None = None, data_parallel_seconds: float | None = None,
               points: CutPoints | None = None, data_parallel_memory: MemoryReport | None = None) -> PlanResult:
    """Score a plan with the shared evaluator: the schedule (one stage and one micro-batch unless
    ``split`` and ``cm.micro_batches`` say otherwise), memory and the data-parallel baseline."""
    split = split or split_machine(cm.machine, 1)
    cost = cm.evaluate(plan.strategies)
    schedule = price_schedule(cm, plan.strategies, split, cm.micro_batches, options.interleave, options.optimizer,
                              options.overlap_gradient_sync, points, cost=cost)
    if data_parallel_seconds is None:  # the baseline of a plain plan: same graph and machine
        if split.stages > 1 or cm.micro_batches > 1:
            raise ValueError("result_for needs data_parallel_seconds (the whole batch on the whole machine) "
                             "for a pipelined plan")
        plain = cm.variant("none", 0, 1)
        data_parallel_seconds, data_parallel_memory = data_parallel_baseline(plain, options.optimizer)
    return PlanResult(cm.graph, split.machine, options, cm, plan, cost, schedule, split,
                      data_parallel_seconds, list(plan.notes) + list(notes or []),
                      data_parallel_memory=data_parallel_memory)


def data_parallel_baseline(cm: CostModel, optimizer: str) -> tuple[float, MemoryReport]:
    """Pure data parallelism on ``cm``'s graph and machine: its time and its memory per device."""
    strategies = data_parallel_strategies(cm)
    return cm.total_seconds(strategies), memory_per_device(cm, strategies, optimizer)


def plan_model(graph: OperatorGraph, machine: Machine, options: PlanOptions | None = None,
               progress: Callable[[float, str], None] | None = None) -> PlanResult:
    """Plan a model: with D-Rec, over the stage counts, micro-batches, recomputation and ZeRO
    stages the options leave open (:mod:`planner.search.configurations`); otherwise as the options fix them."""
    from planner.search.configurations import plan_configurations

    return plan_configurations(graph, machine, options or PlanOptions(), progress)


# ---- plans written elsewhere -------------------------------------------------------------

def strategies_from_json(cm: CostModel, data: dict) -> tuple[dict[str, Strategy], list[str]]:
    """Read ``{"ops": [{"name": ..., "cuts": [[level, dim, factor], ...]} | {"name", "splits": {dim: f}}]}``.

    Operators the file leaves out: layout-following ones get layouts propagated from their
    neighbours, the others are replicated; the notes list both. With only ``splits``, each
    operator's factors are placed on the machine's cuts in the cheapest way for it.
    """
    if not isinstance(data, dict) or not isinstance(data.get("ops"), list):
        raise PlanError('a plan file must be a JSON object with a list "ops": [{"name": ..., "cuts": ... or "splits": ...}]')
    graph = cm.graph
    planned = set(cm.planned)
    strategies: dict[str, Strategy] = {}
    placed_by_splits = []
    seen: dict[str, int] = {}
    mismatched_cuts: list[str] = []
    for i, entry in enumerate(data["ops"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PlanError(f'ops[{i}] must be an object with a "name" (the ONNX node name, a string)')
        name = entry["name"]
        if name in seen:
            raise PlanError(f"ops[{i}]: operator {name!r} appears twice (also ops[{seen[name]}]); keep one entry")
        seen[name] = i
        if name not in graph.operators:
            raise PlanError(f"ops[{i}]: the model has no operator named {name!r}")
        if name not in planned:
            continue  # shape arithmetic: never planned
        if entry.get("cuts") is not None and (entry.get("splits") is None or _cuts_fit(cm, entry["cuts"])):
            strategies[name] = _strategy_from_cuts(cm, name, entry["cuts"], i)
        elif entry.get("splits") is not None:
            if entry.get("cuts") is not None:
                mismatched_cuts.append(name)
            strategies[name] = _strategy_from_splits(cm, name, entry["splits"], i)
            placed_by_splits.append(name)
        else:
            raise PlanError(f'ops[{i}] ({name}) needs "cuts" or "splits"')
    notes = []
    if mismatched_cuts:
        notes.append(f"{len(mismatched_cuts)} operator(s) have cuts for another machine; their splits were used")
    if placed_by_splits:
        notes.append(f"{len(placed_by_splits)} operator(s) gave only splits; their factors were placed on the "
                     "machine levels in the cheapest way for each")
    missing = [n for n in cm.planned if n not in strategies]
    follow = [n for n in missing if graph.operators[n].kind is OpKind.FOLLOW]
    replicated = [n for n in missing if graph.operators[n].kind is not OpKind.FOLLOW]
    for n in replicated:
        strategies[n] = cm.replicated()
    if follow:
        searcher = DRecSearch(cm)
        for n in follow:
            strategies[n] = ()
        given = set(cm.planned) - set(follow)
        for t in range(len(cm.cuts)):
            searcher.propagate(strategies, t, set(given), followers=follow)
        notes.append(f"{len(follow)} layout-following operator(s) not in the file got propagated layouts: "
                     + ", ".join(follow[:10]) + (" ..." if len(follow) > 10 else ""))
    if replicated:
        notes.append(f"{len(replicated)} other operator(s) not in the file are replicated: " + ", ".join(replicated[:10])
                     + (" ..." if len(replicated) > 10 else ""))
    return strategies, notes


def _cuts_fit(cm: CostModel, cuts) -> bool:
    """Whether a ``cuts`` list follows this machine's schedule (level names and factors)."""
    return isinstance(cuts, list) and len(cuts) == len(cm.cuts) and all(
        isinstance(e, (list, tuple)) and len(e) == 3 and e[0] == c.level_name and e[2] == c.factor
        for c, e in zip(cm.cuts, cuts))


def _strategy_from_cuts(cm: CostModel, name: str, cuts, index: int) -> Strategy:
    if not isinstance(cuts, list) or len(cuts) != len(cm.cuts):
        raise PlanError(f"ops[{index}] ({name}): \"cuts\" must list {len(cm.cuts)} entries [level, dim or null, factor], "
                        f"one per prime cut of this machine ({_schedule(cm)})")
    strategy = []
    for t, (cut, entry) in enumerate(zip(cm.cuts, cuts)):
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise PlanError(f"ops[{index}] ({name}): cuts[{t}] must be [level, dim or null, factor]")
        level, dim, factor = entry
        if dim is not None and not isinstance(dim, str):
            raise PlanError(f"ops[{index}] ({name}): cuts[{t}] names dimension {dim!r}: write a dimension name "
                            "(a string) or null")
        if level != cut.level_name or factor != cut.factor:
            raise PlanError(f"ops[{index}] ({name}): cuts[{t}] is [{level}, {dim}, {factor}] but this machine's cut {t} "
                            f"is on level {cut.level_name!r} with factor {cut.factor} (schedule: {_schedule(cm)})")
        if dim is not None and dim not in cm.graph.operators[name].dims:
            raise PlanError(f"ops[{index}] ({name}): cuts[{t}] names dimension {dim!r}; the operator's dimensions are "
                            + ", ".join(cm.graph.operators[name].dims))
        strategy.append(dim)
    s = tuple(strategy)
    if cm.assignment(name, s) is None:
        raise PlanError(f"ops[{index}] ({name}): the cuts {list(s)} split a dimension that is not splittable "
                        "or not divisible by the cut's factor")
    return s


def _strategy_from_splits(cm: CostModel, name: str, splits, index: int, limit: int = 5000) -> Strategy:
    op = cm.graph.operators[name]
    if not isinstance(splits, dict):
        raise PlanError(f'ops[{index}] ({name}): "splits" must be an object {{dim: factor}}')
    wanted = {}
    for dim, f in splits.items():
        if dim not in op.dims:
            raise PlanError(f"ops[{index}] ({name}): splits names dimension {dim!r}; the operator's dimensions are "
                            + ", ".join(op.dims))
        if not isinstance(f, int) or isinstance(f, bool) or f < 1:
            raise PlanError(f"ops[{index}] ({name}): splits[{dim!r}] must be a positive integer, not {f!r}")
        if f > 1:
            wanted[dim] = f
    if math.prod(wanted.values()) > cm.machine.num_devices or cm.machine.num_devices % math.prod(wanted.values() or [1]):
        raise PlanError(f"ops[{index}] ({name}): the splits multiply to {math.prod(wanted.values())}, which does not "
                        f"divide the {cm.machine.num_devices} devices")
    best, best_cost = None, math.inf
    for s in itertools.islice(_placements(cm, wanted), limit):
        if cm.assignment(name, s) is None:
            continue
        cost = cm.op_seconds(name, s)
        if cost < best_cost:
            best, best_cost = s, cost
    if best is None:
        raise PlanError(f"ops[{index}] ({name}): the splits {wanted} cannot be placed on this machine's cuts "
                        f"({_schedule(cm)}): each factor must be a product of the cuts' primes and divide its dimension")
    return best


def _placements(cm: CostModel, wanted: dict[str, int]):
    """Every way to give each cut one of the wanted dims (or none) so that the products match."""
    def rec(t, remaining, prefix):
        if t == len(cm.cuts):
            if all(v == 1 for v in remaining.values()):
                yield tuple(prefix)
            return
        p = cm.cut_factor[t]
        left = math.prod(cm.cut_factor[t:])
        need = math.prod(remaining.values())
        for dim, r in remaining.items():
            if r % p == 0:
                remaining[dim] = r // p
                yield from rec(t + 1, remaining, prefix + [dim])
                remaining[dim] = r
        if need * p <= left:
            yield from rec(t + 1, remaining, prefix + [None])
    yield from rec(0, dict(wanted), [])


def _schedule(cm: CostModel) -> str:
    return ", ".join(f"{c.level_name} x{c.factor}" for c in cm.cuts) or "no cuts (1 device)"


def evaluate_plan(graph: OperatorGraph, machine: Machine, data: dict, options: PlanOptions | None = None) -> PlanResult:
    """Score a plan written by hand or by another tool (see :func:`strategies_from_json`)."""
    from planner.limits import check_planning_work

    options = options or PlanOptions()
    require_bound(graph)
    check_planning_work(machine.num_devices, len(graph.operators))
    split = split_machine(machine, options.pipeline_stages or 1)
    micro_batches = options.micro_batches or 1
    stage_graph = pad_as_recorded(micro_batch_graph(graph, micro_batches), data)
    cm = cost_model_for(stage_graph, split.stage_machine, options, micro_batches=micro_batches)
    start = time.perf_counter()
    strategies, notes = strategies_from_json(cm, data)
    plan = Plan(strategies, str(data.get("algorithm", "user plan")), time.perf_counter() - start)
    dp_seconds, dp_memory = data_parallel_baseline(cost_model_for(graph, machine, options, "none", 0), options.optimizer)
    return result_for(cm, plan, options, notes, split=split, data_parallel_seconds=dp_seconds,
                      data_parallel_memory=dp_memory)
