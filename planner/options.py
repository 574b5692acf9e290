"""The plan options: what a plan depends on besides the model and the machine, and the
vocabulary each option takes (modes, precisions, optimizers, algorithms, recomputation, ZeRO).

The lowest layer of the library with :mod:`planner.units` and :mod:`planner.limits`: it imports
nothing from ``planner``, so the cost model, the searches, the plan files, the CLI and the app all
check options against the same lists. The algorithms' implementations are registered in
:mod:`planner.search.registry` under the names :data:`ALGORITHMS` lists.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from planner.errors import PlannerError

MODES = ("train", "infer")
#: bytes of the float tensors under each precision; under ``fp8`` everything but the linear layers'
#: FP8 inputs is bf16 (:data:`FP8_INPUT_BYTES`, :mod:`planner.cost.fp8`)
PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 2}
FP8_INPUT_BYTES = 1  #: a linear layer's activation and weight copy under fp8, as Transformer Engine keeps them
RECOMPUTE = {
    "none": "keep every activation the backward pass needs",
    "selective": "recompute the attention core (scores, mask, softmax, dropout, context); keep the rest",
    "full": "keep only each pipeline stage's layer inputs; recompute the whole forward pass",
}
ZERO_STAGES = {
    0: "every data-parallel replica keeps its own optimizer state",
    1: "optimizer state sharded over the data-parallel group (same traffic as an all-reduce)",
    3: "parameters, gradients and optimizer state sharded; parameters all-gathered before each pass",
}


class OptionsError(PlannerError, ValueError):
    """An option (mode, precision, optimizer, algorithm) outside its allowed values."""


def check_mode_and_precision(mode: str, precision: str | None) -> None:
    if mode not in MODES:
        raise OptionsError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if precision is not None and precision not in PRECISION_BYTES:
        raise OptionsError(f"precision must be one of {', '.join(PRECISION_BYTES)} (or unset for the model's own "
                         f"element types), not {precision!r}")


def check_counts(counts: dict[str, object], error: type[OptionsError] = OptionsError) -> None:
    """Each value must be a whole number >= 1 (not a bool); the message names it by its key."""
    for label, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise error(f"{label} must be a whole number >= 1, not {value!r}")


def check_memory_options(recompute: str, zero: int, micro_batches: int) -> None:
    if recompute not in RECOMPUTE:
        raise OptionsError(f"recompute must be one of {', '.join(RECOMPUTE)}, not {recompute!r}")
    if isinstance(zero, bool) or zero not in ZERO_STAGES:
        raise OptionsError(f"zero must be one of {', '.join(map(str, ZERO_STAGES))} (the ZeRO stage), not {zero!r}")
    check_counts({"micro_batches": micro_batches})


#: The overlaps of communication with compute (planner.cost.overlap), each with what it hides.
#: Tensor-parallel collectives are never overlapped (the next operator needs their result).
OVERLAPS = {
    "overlap_gradient_sync": "gradient all-reduce, bucket by bucket, during the last backward pass (PyTorch DDP)",
    "prefetch_parameters": "ZeRO-3 parameter gathers, one layer ahead (DeepSpeed, FSDP)",
    "overlap_pipeline_sends": "pipeline sends during another micro-batch's compute (Megatron-LM's "
                              "--overlap-p2p-communication)",
}

DEFAULT_BUCKET_MB = 25.0  # PyTorch DDP's and Megatron-LM's gradient bucket


def check_bucket_mb(bucket_mb) -> float:
    if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)) or not 0 <= bucket_mb < math.inf:
        raise OptionsError(f"bucket_mb must be a number of megabytes >= 0 (0: one all-reduce per gradient tensor), "
                           f"not {bucket_mb!r}")
    return float(bucket_mb)


class ConfigError(OptionsError):
    """A (pipeline, data, tensor) configuration that does not fit the machine or the model."""


OPTIMIZERS = {
    # optimizer -> (bytes of state per parameter, why)
    "adam": (8, "Adam's two moments in fp32 (plus an fp32 master copy when training in 16 bits)"),
    "sgd": (4, "SGD momentum in fp32 (plus an fp32 master copy when training in 16 bits)"),
}
DEFAULT_OPTIMIZER = "adam"

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
                ``fp8``: the linear layers' matrix multiplies at the device's FP8 peak with 1-byte
                inputs, everything else bf16 (:mod:`planner.cost.fp8`).
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
    overlap_gradient_sync: all-reduce the gradients bucket by bucket during the last backward pass
                (PyTorch DDP, Megatron-LM's ``--overlap-grad-reduce``): only what that pass cannot
                hide is exposed (:mod:`planner.cost.overlap`).
    bucket_mb:  gradients are all-reduced in buckets of this many megabytes (10^6 bytes), as
                PyTorch DDP (``bucket_cap_mb``) and Megatron-LM do: latency is paid per bucket,
                not per tensor; 0 all-reduces each gradient tensor on its own.
    sequence_parallel: with Megatron tensor parallelism, split the LayerNorm, dropout, bias and
                residual regions along the sequence (Korthikanti et al. 2022): the all-reduces
                become reduce-scatters and all-gathers of the same bytes, and those regions'
                compute and activations are divided by the tensor-parallel size
                (:mod:`planner.cost.sequence_parallel`). Only the ``megatron`` layouts use it.
    prefetch_parameters: under ZeRO-3, all-gather each operator's parameters while the one before
                it computes (DeepSpeed's and FSDP's default): only the part its compute cannot hide
                is exposed.
    overlap_pipeline_sends: run a stage's point-to-point sends while it computes another
                micro-batch (Megatron-LM's ``--overlap-p2p-communication``, off by default).
    Tensor-parallel collectives are always exposed (the next operator needs their result).
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
    overlap_gradient_sync: bool = True
    bucket_mb: float = DEFAULT_BUCKET_MB
    sequence_parallel: bool = False
    prefetch_parameters: bool = True
    overlap_pipeline_sends: bool = False

    def __post_init__(self) -> None:
        check_mode_and_precision(self.mode, self.precision)
        if self.optimizer not in OPTIMIZERS:
            raise OptionsError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.algorithm not in ALGORITHMS:
            raise OptionsError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        check_counts({name: getattr(self, name) for name in ("pipeline_stages", "micro_batches", "interleave")
                      if getattr(self, name) is not None})
        check_memory_options(self.recompute or "none", 0 if self.zero is None else self.zero, 1)
        for name in ("sequence_parallel", *OVERLAPS):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name} must be true or false, not {getattr(self, name)!r}")
        self.bucket_mb = check_bucket_mb(self.bucket_mb)
        if self.mode == "infer" and ((self.pipeline_stages or 1) > 1 or (self.micro_batches or 1) > 1):
            raise OptionsError("pipeline stages and micro-batches are for training (--mode train)")

    @property
    def searches_configuration(self) -> bool:
        """Whether some of stages, micro-batches, recomputation and ZeRO are left to the search."""
        return self.mode == "train" and (None in (self.pipeline_stages, self.micro_batches, self.recompute, self.zero))

    def to_dict(self) -> dict:
        return asdict(self)
