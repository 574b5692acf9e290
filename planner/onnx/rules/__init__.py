"""The registry of per-operator rules (in the spirit of PyTorch's ``torch/distributed/tensor/_ops/``).

``base`` owns the :data:`REGISTRY`, the ``@rule("MatMul")`` decorator, the typed :class:`OpSpec` a
rule returns and the :class:`NodeContext` it reads. The rules, by family: ``matmul_conv`` (MatMul,
Gemm, Conv, ConvTranspose, Einsum), ``elementwise``, ``reductions`` (reductions, normalisations,
softmax, pooling, TopK, CumSum), ``movement`` (reshapes, transposes, concat, split, slices, value
sources), ``gathers`` (gathers and scatters) and ``control`` (Constant, Shape, Size: handled by the
importer, declared here). Importing this package registers them all.
"""

from planner.onnx.rules import control, elementwise, gathers, matmul_conv, movement, reductions  # noqa: F401
from planner.onnx.rules.base import REGISTRY, NodeContext, OpSpec, Rule, RuleError, Static, opaque_spec, rule

__all__ = ["REGISTRY", "NodeContext", "OpSpec", "Rule", "RuleError", "Static", "opaque_spec", "rule",
           "supported_op_types"]


def supported_op_types() -> set[str]:
    """Every op type with a rule or handled by the importer: the others are planned as opaque."""
    return REGISTRY.op_types()
