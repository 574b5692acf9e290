"""Float initializers that are not trainable parameters (lifted buffers and scalars).

The dynamo exporter lifts a module's float buffers and some computed constants into
initializers: a Llama's rotary ``inv_freq`` (shape [head_dim / 2]), ``nn.MultiheadAttention``'s
attention scale (shape [1]). ``torch``'s ``named_parameters`` does not list them, so neither should
the planner. The names do not tell (buffers keep their module path, like parameters), and the
stripped file holds no values, so the rule is structural:

* a float initializer with a single element and an exporter-made name (``val_71``, ``onnx::Mul_5``)
  is a constant (a scale, an epsilon, a ratio): the rank-0 rule of the importer, extended to
  shape [1] and [1, 1]; a one-element weight keeps its module path as its name (``head.bias``);
* a float initializer is a buffer when the data it first meets is derived from *integer* graph
  inputs only: following its values through operators that combine it with no other
  input-dependent float tensor (Unsqueeze, Expand, Reshape, Cast, Transpose, ...), every operator
  where it meets an input-dependent float tensor meets one computed from integer inputs
  alone (``inv_freq`` x ``float(position_ids)``), and it is never the table of a Gather. A
  weight meets the activations (which depend on a float input or on other weights), an embedding
  table is gathered: both stay parameters.

``non_parameter_initializers`` returns the names; ``planner.onnx.importer`` classes them as
constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx
from onnx import TensorProto

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
for _name in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ"):
    if hasattr(TensorProto, _name):
        FLOAT_TYPES.add(getattr(TensorProto, _name))

GENERATED_PREFIXES = ("val_", "_val_", "onnx::", "const_")

# Operators whose first input is a table indexed by the others: a float table there is an embedding.
_TABLE_OPS = {"Gather", "GatherElements", "GatherND"}


def non_parameter_initializers(graph: onnx.GraphProto, float_types: dict[str, bool] | None = None) -> set[str]:
    """Names of float initializers (rank >= 1) that are not trainable parameters (see the module doc).

    ``float_types`` maps tensor names to "is a float tensor" for the activations (from shape
    inference); without it an activation counts as float unless an integer source is known."""
    inits = {i.name: i for i in graph.initializer}
    candidates = {n for n, i in inits.items() if i.data_type in FLOAT_TYPES and len(i.dims) > 0}
    # One element and a name the exporter made up (dynamo's val_71, TorchScript's onnx::Mul_5): a
    # constant lifted out of the code. A module's own one-element weight (the bias of a
    # Linear(k, 1)) keeps its module path as its name and stays a parameter.
    out = {n for n in candidates if math.prod(inits[n].dims) == 1 and n.startswith(GENERATED_PREFIXES)}
    weights = candidates - out  # float initializers that may be weights
    flow = _Flow.of(graph, inits, weights, float_types)
    out |= {n for n in weights if flow.is_buffer(n)}
    return out


@dataclass
class _Flow:
    """For every tensor: does it depend on a graph input, on float data (a float graph input or a
    multi-element float initializer), is it float; and which nodes read it."""

    depends_input: dict[str, bool]
    depends_float: dict[str, bool]
    is_float: dict[str, bool]
    consumers: dict[str, list[onnx.NodeProto]]

    @classmethod
    def of(cls, graph: onnx.GraphProto, inits: dict, weights: set[str], float_types: dict[str, bool] | None) -> _Flow:
        flow = cls({}, {}, dict(float_types or {}), {})
        for name, init in inits.items():
            flow.depends_input[name] = False
            flow.depends_float[name] = name in weights
            flow.is_float[name] = init.data_type in FLOAT_TYPES
        for vi in graph.input:
            if vi.name in inits:
                continue
            floating = vi.type.tensor_type.elem_type in FLOAT_TYPES
            flow.depends_input[vi.name] = True
            flow.depends_float[vi.name] = floating
            flow.is_float[vi.name] = floating
        for node in graph.node:
            ins = [i for i in node.input if i]
            for i in ins:
                flow.consumers.setdefault(i, []).append(node)
            dep_in = any(flow.depends_input.get(i, False) for i in ins)
            dep_float = any(flow.depends_float.get(i, False) for i in ins)
            for o in node.output:
                if not o:
                    continue
                flow.depends_input[o] = dep_in
                flow.depends_float[o] = dep_float
                if o not in flow.is_float:
                    flow.is_float[o] = _output_is_float(node, ins, flow.is_float)
        return flow

    def is_buffer(self, name: str) -> bool:
        """Followed through its consumers, the initializer meets only data computed from integer
        inputs (and at least once), and is never the table of a gather."""
        seen = {name}
        frontier = [name]
        met = False
        while frontier:
            tensor = frontier.pop()
            for node in self.consumers.get(tensor, []):
                ins = [i for i in node.input if i]
                if node.op_type in _TABLE_OPS and ins and ins[0] == tensor:
                    return False
                others = [i for i in ins if i not in seen and self.is_float.get(i, True) and self.depends_input.get(i, False)]
                if others:
                    if any(self.depends_float.get(i, True) for i in others):
                        return False  # meets activations: a weight
                    met = True  # meets data computed from integer inputs only: stop here
                    continue
                for o in node.output:
                    if o and o not in seen:
                        seen.add(o)
                        frontier.append(o)
        return met


def _output_is_float(node: onnx.NodeProto, ins: list[str], is_float: dict[str, bool]) -> bool:
    if node.op_type in ("Shape", "Size", "NonZero", "ArgMax", "ArgMin"):
        return False
    if node.op_type == "Cast":
        to = next((a.i for a in node.attribute if a.name == "to"), TensorProto.FLOAT)
        return to in FLOAT_TYPES
    if node.op_type in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "IsNaN"):
        return False
    return any(is_float.get(i, True) for i in ins) if ins else True
