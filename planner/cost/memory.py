"""Per-device memory of a plan: parameters, gradients, optimizer state and activations.

All sizes are local (partitioned) sizes under the plan. Training keeps, per parameter, its
weight and gradient at the training precision plus the optimizer's state (and, under
``--precision fp8``, a 1-byte FP8 copy of each linear layer's weight: :mod:`planner.cost.fp8`);
inference keeps the weights and the largest working set of one operator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from planner.cost import fp8
from planner.cost.activations import saved_tensors
from planner.cost.model import CostModel, Strategy
from planner.model.graph import TensorRole
from planner.options import DEFAULT_OPTIMIZER, FP8_INPUT_BYTES, OPTIMIZERS, OptionsError


@dataclass
class MemoryReport:
    """Bytes per device; ``shortfall_bytes`` is how much is missing when it does not fit."""

    parameters: float
    gradients: float
    optimizer_state: float
    activations: float
    capacity: float

    @property
    def peak(self) -> float:
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    @property
    def fits(self) -> bool:
        return self.peak <= self.capacity

    @property
    def shortfall_bytes(self) -> float:
        return max(0.0, self.peak - self.capacity)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(peak=self.peak, fits=self.fits, shortfall_bytes=self.shortfall_bytes)
        return d


def optimizer_bytes_per_parameter(optimizer: str, param_itemsize: int) -> int:
    """State bytes per parameter: Adam mixed precision (bf16/fp16 weights) is 4 + 8 = 12,
    so with the 2 + 2 of weight and gradient the familiar 16 bytes per parameter."""
    if optimizer not in OPTIMIZERS:
        raise OptionsError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    state, _ = OPTIMIZERS[optimizer]
    return state + (4 if param_itemsize < 4 else 0)


def stored_activations(cm: CostModel, full: dict[str, Strategy], ops: list[str]) -> dict[str, float]:
    """Local bytes of every activation the backward pass of ``ops`` reads, one micro-batch: the
    tensors each operator saves (:mod:`planner.cost.activations`); under selective recomputation
    the attention core's own tensors are recomputed instead of kept."""
    return saved_tensors(cm, full, ops, drop_core=cm.recompute == "selective")


def _segment_inputs(cm: CostModel, full: dict[str, Strategy], segment: list[str]) -> float:
    """Bytes of the activations a segment reads from outside it: what full recomputation keeps."""
    inside = set(segment)
    tensors = cm.graph.tensors
    seen: dict[str, float] = {}
    for name in segment:
        for i, use in enumerate(cm.info[name].uses):
            t = tensors[use.tensor]
            if use.is_output or t.role not in (TensorRole.ACTIVATION, TensorRole.INPUT) or t.producer in inside:
                continue
            seen[use.tensor] = max(seen.get(use.tensor, 0.0), cm.local_bytes(name, i, full[name]))
    return sum(seen.values())


def memory_per_device(cm: CostModel, plan: dict[str, Strategy], optimizer: str = DEFAULT_OPTIMIZER,
                      segments: list[list[str]] | None = None, in_flight: float = 1.0) -> MemoryReport:
    """Memory of one device holding ``segments`` (consecutive groups of operators, e.g. the layers
    of one pipeline stage; default: the whole graph as one segment).

    ``in_flight`` micro-batches have their activations kept at once (1F1B keeps up to the number
    of stages after this one). Under full recomputation only each segment's inputs are kept per
    micro-batch, plus the activations of one segment while it is recomputed. ZeRO (``cm.zero``)
    divides optimizer state (stage 1) or everything of a parameter (stage 3) by the size of the
    group its gradient is all-reduced over.
    """
    if segments is None:
        segments = [list(cm.planned)]
    ops = [n for seg in segments for n in seg]
    full = {n: tuple(plan.get(n, cm.replicated())) for n in ops}
    tensors = cm.graph.tensors
    param_bytes: dict[str, tuple[float, int]] = {}  # tensor -> (local bytes, data-parallel group size)
    working_set = 0.0
    for name in ops:
        info = cm.info[name]
        op_total = 0.0
        for i, use in enumerate(info.uses):
            local = cm.local_bytes(name, i, full[name])
            role = tensors[use.tensor].role
            if role is TensorRole.PARAMETER and not use.is_output:
                # a parameter read in several layouts is stored at its largest local size
                group = math.prod(cm.cut_factor[t] for t in cm.partial_cuts(name, i, full[name]))
                if local > param_bytes.get(use.tensor, (0.0, 1))[0]:
                    param_bytes[use.tensor] = (local, group)
            if role in (TensorRole.ACTIVATION, TensorRole.INPUT):
                op_total += local
        working_set = max(working_set, op_total)
    capacity = cm.machine.device.memory_bytes
    copies = set().union(*(fp8.weight_copies(cm, n) for n in ops if n in cm.fp8_ops))  # FP8 weight copies
    if cm.mode == "infer":
        return MemoryReport(sum(b * (1 + (FP8_INPUT_BYTES / cm.tensor_itemsize(t) if t in copies else 0))
                                for t, (b, _) in param_bytes.items()), 0.0, 0.0, working_set, capacity)
    params = grads = state = 0.0
    for tname, (local, group) in param_bytes.items():
        itemsize = cm.tensor_itemsize(tname)
        shard = group if cm.zero == 3 else 1
        params += local / shard * (1 + (FP8_INPUT_BYTES / itemsize if tname in copies else 0))
        if tensors[tname].frozen:
            continue  # a quantised weight is not trained: no gradient, no optimizer state
        grads += local / shard
        state += local / itemsize * optimizer_bytes_per_parameter(optimizer, itemsize) / (group if cm.zero else 1)
    if cm.recompute == "full":
        kept = sum(_segment_inputs(cm, full, seg) for seg in segments)
        recomputing = max(sum(stored_activations(cm, full, seg).values()) for seg in segments)
        activations = in_flight * kept + recomputing
    else:
        activations = in_flight * sum(stored_activations(cm, full, ops).values())
    return MemoryReport(params, grads, state, activations, capacity)
