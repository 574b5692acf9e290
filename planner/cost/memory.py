"""Per-device memory of a plan: parameters, gradients, optimizer state and activations.

All sizes are local (partitioned) sizes under the plan. Training keeps, per parameter, its
weight and gradient at the training precision plus the optimizer's state (mixed-precision Adam:
an fp32 master copy and two fp32 moments, 2 + 2 + 12 = 16 bytes per parameter in bf16; under
``--precision fp8``, a 1-byte FP8 copy of each linear layer's weight: :mod:`planner.cost.fp8`),
sharded by ZeRO (stage 1: the optimizer state; stage 3: everything, plus the parameters being
gathered and the gradient being reduce-scattered); inference keeps the weights and the largest
working set of one operator.

Activations follow the engines: the tensors each backward pass reads (:mod:`planner.cost.activations`)
for every micro-batch in flight (:func:`in_flight_micro_batches`, Megatron-LM's 1F1B counts), the
logits the loss keeps in fp32 once, and under full recomputation only each transformer layer's
input (Megatron-LM checkpoints one layer at a time), plus one layer's tensors while it is recomputed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from planner.cost import fp8
from planner.cost.activations import loss_tensors, saved_tensors
from planner.cost.model import CostModel, Strategy
from planner.model.graph import TensorRole
from planner.model.layers import find_layers
from planner.options import DEFAULT_OPTIMIZER, FP8_INPUT_BYTES, OPTIMIZERS, OptionsError


@dataclass
class MemoryReport:
    """Bytes per device; ``shortfall_bytes`` is how much is missing when it does not fit.

    ``activations`` is ``in_flight`` micro-batches of ``kept_per_micro_batch`` bytes, plus (full
    recomputation) the ``recomputing`` layer's tensors, plus the ``logits`` the loss keeps once."""

    parameters: float
    gradients: float
    optimizer_state: float
    activations: float
    capacity: float
    in_flight: float = field(default=1.0, compare=False)
    kept_per_micro_batch: float = field(default=0.0, compare=False)
    recomputing: float = field(default=0.0, compare=False)
    logits: float = field(default=0.0, compare=False)

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


def in_flight_micro_batches(stage: int, stages: int, micro_batches: int, interleave: int = 1) -> float:
    """Micro-batches whose activations stage ``stage`` (0 first) holds at its peak under 1F1B, in
    units of the whole stage's activations.

    Without interleaving stage ``i`` runs ``P - i - 1`` warm-up forward passes, then one more
    forward before each backward: ``min(P - i, m)``. Interleaved (``v`` chunks per device),
    Megatron-LM's schedule runs ``2 (P - i - 1) + (v - 1) P`` warm-up forward passes of chunks
    (all ``m v`` when ``m = P``), then one more before each backward: ``min(that + 1, m v)``
    chunk-micro-batches of ``1/v`` of the stage each. On the first stage that is ``P + (P - 1)/v``,
    Korthikanti et al.'s ``P (1 + (P - 1)/(P v))``; the last stage still holds ``(v - 1) P + 1``
    chunk-micro-batches, not one."""
    if interleave <= 1 or stages <= 1:
        return float(min(micro_batches, stages - stage))
    total = micro_batches * interleave
    if micro_batches == stages:
        return float(micro_batches)
    warm_up = 2 * (stages - stage - 1) + (interleave - 1) * stages
    return min(warm_up + 1, total) / interleave


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


def checkpointed_segments(cm: CostModel, segments: list[list[str]]) -> list[list[str]]:
    """What full recomputation checkpoints: the segments between cut points (a transformer layer's
    attention and MLP halves are two, the residual between them being a cut point), merged per
    repeated layer (:func:`planner.model.layers.find_layers`), as Megatron-LM checkpoints one whole
    transformer layer and keeps only its input; segments outside the layers stay as they are."""
    index = cm.graph.memo("memory.layers", None, lambda: find_layers(cm.graph)).index
    merged: list[list[str]] = []
    last = None
    for seg in segments:
        layer = {index[n] for n in seg if n in index}
        key = next(iter(layer)) if len(layer) == 1 else None
        if key is not None and key == last:
            merged[-1] = merged[-1] + seg
        else:
            merged.append(list(seg))
        last = key
    return merged


def _activations(cm: CostModel, full: dict[str, Strategy], segments: list[list[str]],
                 in_flight: float) -> tuple[float, float, float]:
    """Activation bytes of one device, in three parts: what one micro-batch keeps (``in_flight`` of
    them are held), the tensors of the layer being recomputed (full recomputation), and the logits
    the loss keeps once (:func:`planner.cost.activations.loss_tensors`)."""
    ops = [n for seg in segments for n in seg]
    logits = sum(loss_tensors(cm, full, ops).values())
    if cm.recompute == "full":
        checkpoints = checkpointed_segments(cm, segments)
        kept = sum(_segment_inputs(cm, full, seg) for seg in checkpoints)
        recomputing = max(sum(saved_tensors(cm, full, seg, outputs=False).values()) for seg in checkpoints)
        return kept, recomputing, logits
    return sum(saved_tensors(cm, full, ops, drop_core=cm.recompute == "selective", outputs=False).values()), 0.0, logits


def zero3_working_set(cm: CostModel, full: dict[str, Strategy], ops: list[str]) -> tuple[float, float]:
    """ZeRO-3's whole parameters in use at the worst moment of the backward pass, and the whole
    gradient there: an operator's parameters gathered (at their tensor-parallel size), its gradient
    before the reduce-scatter, and, with ``prefetch_parameters``, the next operator's (in backward
    order) gathered ahead."""
    weights = []
    for name in ops:
        size = sum(cm.local_bytes(name, i, full[name]) for i, u in enumerate(cm.info[name].uses)
                   if not u.is_output and cm.graph.tensors[u.tensor].role is TensorRole.PARAMETER
                   and not cm.graph.tensors[u.tensor].frozen)
        if size:
            weights.append(size)
    prefetch = cm.overlap.parameter_prefetch
    best = (0.0, 0.0)
    for k, w in enumerate(weights):
        ahead = weights[k - 1] if prefetch and k > 0 else 0.0
        if 2 * w + ahead > sum(best):
            best = (w + ahead, w)
    return best


def memory_per_device(cm: CostModel, plan: dict[str, Strategy], optimizer: str = DEFAULT_OPTIMIZER,
                      segments: list[list[str]] | None = None, in_flight: float = 1.0) -> MemoryReport:
    """Memory of one device holding ``segments`` (consecutive groups of operators, e.g. the layers
    of one pipeline stage; default: the whole graph as one segment).

    ``in_flight`` micro-batches have their activations kept at once (:func:`in_flight_micro_batches`).
    Under full recomputation only each checkpointed layer's input is kept per micro-batch, plus the
    activations of one layer while it is recomputed. ZeRO (``cm.zero``) divides optimizer state
    (stage 1) or everything of a parameter (stage 3) by the size of the group its gradient is
    all-reduced over; stage 3 adds the parameters it gathers (:func:`zero3_working_set`).
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
    if cm.zero == 3:
        gathered, gradient = zero3_working_set(cm, full, ops)
        params, grads = params + gathered, grads + gradient
    kept, recomputing, logits = _activations(cm, full, segments, in_flight)
    return MemoryReport(params, grads, state, in_flight * kept + recomputing + logits, capacity,
                        in_flight, kept, recomputing, logits)
