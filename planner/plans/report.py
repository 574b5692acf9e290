"""A plan as data: the JSON schema of ``python -m planner plan --json`` (also read back by
``evaluate``), and tables the app and the reports share."""

from __future__ import annotations

import math

from planner import __version__
from planner.cost import efficiency
from planner.cost.result import PlanResult
from planner.plans.parallelism import describe


def op_splits(result: PlanResult, name: str) -> dict[str, int]:
    """Total split factor of every dimension of one operator, over all levels."""
    cm = result.cost_model
    splits = {d: 1 for d in cm.graph.operators[name].dims}
    for t, dim in enumerate(result.plan.strategies[name]):
        if dim is not None:
            splits[dim] *= cm.cut_factor[t]
    return splits


def op_cuts(result: PlanResult, name: str) -> list[list]:
    """``[[level_name, dim or None, factor], ...]``, one entry per prime cut in schedule order."""
    cm = result.cost_model
    return [[c.level_name, dim, c.factor] for c, dim in zip(cm.cuts, result.plan.strategies[name])]


def plan_to_json(result: PlanResult, model_label: str | None = None, model_sha256: str | None = None,
                 bindings: dict[str, int] | None = None) -> dict:
    """The documented JSON schema (README, "Plan JSON"). ``cost_seconds`` and the operators'
    costs are for one micro-batch on one stage machine; ``iteration_seconds`` is the whole batch."""
    cm = result.cost_model
    seconds = result.cost.seconds()
    mem = result.memory
    ops = []
    for name in cm.planned:
        op = cm.graph.operators[name]
        ops.append({
            "name": name,
            "op_type": op.op_type,
            "dims": dict(op.dims),
            "splits": op_splits(result, name),
            "cuts": op_cuts(result, name),
            "cost_seconds": result.cost.op_seconds(name),
            **({"compute_efficiency": e} if (e := efficiency.describe(cm.machine.device, op, op_splits(result, name)))
               else {}),
        })
    data = {
        "tool_version": __version__,
        "model": model_label or result.graph.name,
        "machine": result.machine.to_dict(),
        "algorithm": result.plan.algorithm,
        "mode": result.options.mode,
        "options": result.options.to_dict(),
        "bindings": dict(bindings or {}),
        "devices": result.machine.num_devices,
        "search_seconds": result.plan.search_seconds,
        "iteration_seconds": result.total_seconds,
        "tflops_per_device": result.schedule.tflops_per_device(),
        "pipeline": result.schedule.to_dict(),
        "stage_machine": result.split.stage_machine.to_dict(),
        "cost_seconds": seconds,
        "cost_seconds_by_level": result.cost.by_level(),
        "memory_bytes_per_device": {
            "peak": mem.peak,
            "parameters_and_optimizer": mem.parameters + mem.gradients + mem.optimizer_state,
            "activations": mem.activations,
            "parameters": mem.parameters,
            "gradients": mem.gradients,
            "optimizer_state": mem.optimizer_state,
            "capacity": mem.capacity,
        },
        "fits_in_memory": mem.fits,
        "memory_shortfall_bytes": mem.shortfall_bytes,
        "data_parallel_cost_seconds": result.data_parallel_seconds,
        "data_parallel_fits_in_memory": result.data_parallel_memory.fits if result.data_parallel_memory else None,
        "speedup_over_data_parallel": result.speedup_over_data_parallel if math.isfinite(result.speedup_over_data_parallel) else None,
        "parallelism": describe(result),  # the plan in the engineers' terms (planner/plans/parallelism.py)
        "notes": list(result.notes),
        "ops": ops,
    }
    padding = getattr(cm.graph, "vocabulary_padding", None)  # Megatron's padded vocabulary (search/vocab.py)
    if padding:
        data["vocabulary_padded"] = {"from": padding[0], "to": padding[1]}
    if model_sha256:
        data["model_sha256"] = model_sha256
    return data
