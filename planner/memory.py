"""Per-device memory of a plan: parameters, gradients, optimizer state and activations.

All sizes are local (partitioned) sizes under the plan. Training keeps, per parameter, its
weight and gradient at the training precision plus the optimizer's state; inference keeps the
weights and the largest working set of one operator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .cost import CostModel, OptionsError, Strategy
from .ir import TensorRole

OPTIMIZERS = {
    # optimizer -> (bytes of state per parameter, why)
    "adam": (8, "Adam's two moments in fp32 (plus an fp32 master copy when training in 16 bits)"),
    "sgd": (4, "SGD momentum in fp32 (plus an fp32 master copy when training in 16 bits)"),
}
DEFAULT_OPTIMIZER = "adam"


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


def _local_bytes(cm: CostModel, name: str, use_index: int, strategy: Strategy) -> float:
    use = cm.info[name].uses[use_index]
    split = math.prod(cm.cut_factor[t] for t, d in enumerate(strategy) if d is not None and d in use.dims)
    return use.nbytes / split


def memory_per_device(cm: CostModel, plan: dict[str, Strategy], optimizer: str = DEFAULT_OPTIMIZER) -> MemoryReport:
    full = cm.complete(plan)
    tensors = cm.graph.tensors
    param_bytes: dict[str, float] = {}
    activation_bytes: dict[str, float] = {}
    working_set = 0.0
    for name in cm.planned:
        info = cm.info[name]
        op_total = 0.0
        for i, use in enumerate(info.uses):
            local = _local_bytes(cm, name, i, full[name])
            role = tensors[use.tensor].role
            if role is TensorRole.PARAMETER and not use.is_output:
                # a parameter read in several layouts is stored at its largest local size
                param_bytes[use.tensor] = max(param_bytes.get(use.tensor, 0.0), local)
            if role in (TensorRole.ACTIVATION, TensorRole.INPUT):
                op_total += local
                if use.is_output and tensors[use.tensor].requires_grad:
                    activation_bytes[use.tensor] = local
                elif role is TensorRole.INPUT and tensors[use.tensor].is_float:
                    # a float data input is kept for the first layer's weight gradient
                    activation_bytes[use.tensor] = max(activation_bytes.get(use.tensor, 0.0), local)
        working_set = max(working_set, op_total)
    params = sum(param_bytes.values())
    capacity = cm.machine.device.memory_bytes
    if cm.mode == "infer":
        return MemoryReport(params, 0.0, 0.0, working_set, capacity)
    state = 0.0
    for tname, local in param_bytes.items():
        itemsize = cm.tensor_itemsize(tname)
        state += local / itemsize * optimizer_bytes_per_parameter(optimizer, itemsize)
    return MemoryReport(params, params, state, sum(activation_bytes.values()), capacity)
