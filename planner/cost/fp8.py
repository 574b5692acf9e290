"""FP8 training (``--precision fp8``) as Transformer Engine runs it: what it changes in a plan's
price and memory.

Transformer Engine (and Megatron-LM with ``--fp8-format``) runs the *linear layers* in FP8: a
matrix product with a weight operand (MatMul, Gemm or Einsum reading a trained parameter or a view
of one) multiplies 1-byte inputs (E4M3 forward, E5M2 gradients, per-tensor scales) at the
device's FP8 peak, in the forward pass and in both backward products. Everything else (attention's
weight-free products, norms, softmax, element-wise operators, the outputs of the linear layers,
every gradient and every collective) stays in bf16; the optimizer keeps its fp32 master weights
and moments as in any 16-bit mixed-precision run. So, against ``--precision bf16``:

* **time**: a linear layer's FLOPs are priced at ``peak_flops_fp8`` (the device's new optional
  field; :func:`compute_ratio` is ``peak_flops / peak_flops_fp8``, the factor applied to its work
  in the ``1/F`` coordinate), and its inputs are read from memory at 1 byte each (the roofline);
* **memory**: the activation a linear layer saves for its weight gradient is its FP8 input, 1
  byte per element (one copy per tensor, kept under ``<tensor>:fp8``), and each weight it reads
  has an FP8 copy (1 byte per element) beside its bf16 weight, as Transformer Engine caches it
  across micro-batches;
* **unchanged**: collectives and redistributions (bf16 activations and gradients), gradients
  (bf16), optimizer state (master weights and moments in fp32).

A device without ``peak_flops_fp8`` cannot be priced in FP8: :func:`compute_ratio` says so in one
line. A quantised (frozen) weight keeps its own bits and makes no FP8 copy.
"""

from __future__ import annotations

from planner.errors import PlannerError
from planner.options import FP8_INPUT_BYTES

LINEAR_OPS = ("MatMul", "Gemm", "Einsum")


class FP8Error(PlannerError, ValueError):
    """``--precision fp8`` on a device whose FP8 peak is unknown."""


def compute_ratio(machine) -> float:
    """``peak_flops / peak_flops_fp8``: a linear layer's FLOPs in FP8 cost this many bf16 FLOPs."""
    fp8 = machine.device.peak_flops_fp8
    if fp8 is None:
        raise FP8Error(f"--precision fp8 needs the device's FP8 peak, and {machine.device.name} (machine "
                       f"{machine.name!r}) has no peak_flops_fp8: add it to the device in the machine YAML (the "
                       "datasheet's dense figure, e.g. peak_flops_fp8: 1979e12 for an H100 SXM; see "
                       "machines/h100_cluster.yaml) or use --precision bf16")
    return machine.device.peak_flops / fp8


def multiplied(op, use) -> bool:
    """Whether an input of a matrix product is one of its two multiplied operands (it indexes a
    contracted dimension), not a bias added after the product."""
    return any(d in op.reduction_dims for d in use.dims())


def _weights(cm, name: str) -> list:
    """The trained weights (not quantised) a matrix product multiplies, as its input uses."""
    op = cm.graph.operators[name]
    return [u for u, t in zip(cm.info[name].uses, op.inputs)
            if u.is_parameter and multiplied(op, t) and not cm.graph.tensors[u.grad_root or u.tensor].frozen]


def linear_layers(cm) -> frozenset[str]:
    """The planned operators that run in FP8: matrix products that multiply a trained weight."""
    return frozenset(n for n in cm.planned if cm.graph.operators[n].op_type in LINEAR_OPS and _weights(cm, n))


def input_scale(use) -> float:
    """The factor from a linear layer's input at its bf16 size to its FP8 size."""
    return FP8_INPUT_BYTES / use.itemsize


def weight_copies(cm, name: str) -> set[str]:
    """The parameters a linear layer keeps an FP8 copy of (the roots of the weights it multiplies)."""
    return {u.grad_root or u.tensor for u in _weights(cm, name)}
