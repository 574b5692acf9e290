"""The constants of a static export that hold its batch, and their values at another batch.

Used by ``planner.model.rebatch.rebatch_static``. Three kinds of constant carry the exported batch
``old`` in a static TorchScript export:

* **Shape vectors** of ``Reshape`` and ``Expand`` whose output axis carries the batch. The element
  for that axis holds ``k * old`` and becomes ``k * new``. The vector is followed back from the
  node to the constant that holds the element: through ``Where`` (an attention mask's expand shape
  is ``Where(Equal(shape, -1), ones, shape)``: both branches), ``Concat`` (the piece holding the
  element), ``Cast``, ``Identity`` and ``Unsqueeze`` of a scalar. A vector computed at run time
  (``Shape`` of an activation) re-infers by itself and is left alone.
* **Per-sample indices**: a ``Gather`` that the batch trace passes from its data's ``(batch*seq)``
  rows to its indices' leading axis (``flat_mask[arange(batch) * seq + arange(seq)]``,
  ``planner.model.batch_trace``). The indices are followed back through broadcasting element-wise
  operators and ``Unsqueeze`` to the constants whose axis has the exported batch's size; a constant
  linear along that axis (``arange(old)``, ``arange(old) * seq``, or ``old`` equal slices) is
  extended to ``new`` rows the same way.
* **Expands to the batch that no data reaches**: an operator carrying the batch (element-wise
  with broadcasting, ``Where``, ``Concat``) whose other input has the batch's extent on that axis
  without carrying it (a causal mask built from constants, ViT's class token) is followed back
  through element-wise operators to the ``Expand`` that made the extent, whose shape is patched as
  above.

Anything else is left as exported (a mask baked into a constant tensor, one row per sample: no
new row can be made up), and the re-import then reports the shapes that no longer fit.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from planner.model.graph import OperatorGraph, TensorRole

#: element-wise operators (numpy broadcasting) the per-sample indices are followed through
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Mod", "Neg", "Cast", "Identity"})
#: operators whose inputs must agree with their output on every axis they do not broadcast
#: (Concat: on every axis but its own), followed back to an ``Expand`` to the exported batch
_BROADCASTING = _ELEMENTWISE | frozenset({"Where", "And", "Or", "Xor", "Not", "Pow", "Max", "Min", "Equal", "Less",
                                          "LessOrEqual", "Greater", "GreaterOrEqual", "Concat"})


def rewrite_batch_constants(model: onnx.ModelProto, graph: OperatorGraph, position: dict[str, tuple[int, int]],
                            old: int, new: int) -> None:
    """Rewrite, in ``model`` (a copy being re-batched), every constant holding the batch ``old``.

    ``graph`` is ``model``'s import at ``old`` and ``position`` the batch trace's tensor positions
    (``planner.model.batch_trace.trace``). Patched values become new initializers; only the
    consumer that reads them is rewired (a constant shared with other consumers keeps its value)."""
    _Patcher(model, graph, old, new).run(position)


class _Patcher:
    def __init__(self, model: onnx.ModelProto, graph: OperatorGraph, old: int, new: int):
        self.g = model.graph
        self.graph, self.old, self.new = graph, old, new
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.inits = {i.name: i for i in self.g.initializer}
        self.count = 0

    def run(self, position: dict[str, tuple[int, int]]) -> None:
        for node in list(self.g.node):
            if not node.input or not node.output or node.output[0] not in self.graph.tensors:
                continue
            pos = position.get(node.output[0])
            if pos is None:
                continue
            out_shape = self.graph.tensors[node.output[0]].shape
            axis = pos[0]
            if node.op_type in ("Reshape", "Expand"):
                extent = out_shape[axis]
                width = self._length(node.input[1])
                if width is not None and extent % self.old == 0:
                    self._shape_element(node, 1, axis - (len(out_shape) - width), extent)
            elif node.op_type in _BROADCASTING:
                for k, name in enumerate(node.input):
                    if name and name not in position:
                        self._expanded(node, k, axis - (len(out_shape) - len(self._shape(name) or ())), out_shape[axis])
            elif node.op_type == "Gather" and self._role(node.input[1]) is TensorRole.CONSTANT:
                gathered = _attribute(node, "axis", 0) % max(1, len(self.graph.tensors[node.input[0]].shape))
                if axis == gathered:
                    self._rows(node, 1, 0)

    # -- values --------------------------------------------------------------------------------
    def _role(self, name: str) -> TensorRole | None:
        t = self.graph.tensors.get(name)
        return t.role if t is not None else None

    def _shape(self, name: str) -> tuple[int, ...] | None:
        t = self.graph.tensors.get(name)
        return t.shape if t is not None else None

    def _value(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            init = self.inits[name]
            return None if init.data_location == onnx.TensorProto.EXTERNAL else numpy_helper.to_array(init)
        node = self.producer.get(name)
        if node is None or node.op_type != "Constant":
            return None
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name == "value_ints":
                return np.array(list(a.ints), dtype=np.int64)
            if a.name == "value_int":
                return np.array(a.i, dtype=np.int64)
        return None

    def _length(self, name: str) -> int | None:
        value = self._value(name)
        if value is not None:
            return value.size
        shape = self._shape(name)
        return shape[0] if shape is not None and len(shape) == 1 else None

    def _replace(self, node: onnx.NodeProto, k: int, value: np.ndarray) -> None:
        name = f"{node.input[k]}__rebatched_{self.count}"
        self.count += 1
        self.g.initializer.append(numpy_helper.from_array(value, name))
        node.input[k] = name

    # -- shape vectors -------------------------------------------------------------------------
    def _shape_element(self, node: onnx.NodeProto, k: int, index: int, extent: int) -> bool:
        """Patch element ``index`` (== ``extent``) of the shape vector ``node.input[k]``."""
        name = node.input[k]
        if index < 0:
            return False
        value = self._value(name)
        if value is not None:
            flat = value.reshape(-1)
            if value.ndim > 1 or index >= flat.size or flat[index] != extent:
                return False  # -1 / 0 (inferred or copied) or a broadcast: nothing to rewrite
            patched = flat.copy()
            patched[index] = extent // self.old * self.new
            self._replace(node, k, patched.reshape(value.shape).astype(value.dtype))
            return True
        src = self.producer.get(name)
        if src is None:
            return False
        if src.op_type == "Where" and len(src.input) == 3:
            return any([self._shape_element(src, j, index, extent) for j in (1, 2)])
        if src.op_type in ("Cast", "Identity") or (src.op_type == "Unsqueeze" and index == 0
                                                   and self._shape(src.input[0]) == ()):
            return self._shape_element(src, 0, index, extent)
        if src.op_type == "Concat":
            offset = 0
            for j, piece in enumerate(src.input):
                width = self._length(piece)
                if width is None:
                    return False
                if offset <= index < offset + width:
                    return self._shape_element(src, j, index - offset, extent)
                offset += width
        return False

    def _expanded(self, node: onnx.NodeProto, k: int, axis: int, extent: int) -> bool:
        """Patch the ``Expand`` behind ``node.input[k]`` whose ``axis`` is the batch (``extent``)
        although no data reaches it (a constant causal mask, ViT's class token expanded to the batch)."""
        name = node.input[k]
        shape = self._shape(name)
        if shape is None or not 0 <= axis < len(shape) or shape[axis] != extent or extent % self.old:
            return False
        src = self.producer.get(name)
        if src is None:
            return False
        if src.op_type == "Expand" and len(src.input) == 2:
            width = self._length(src.input[1])
            return width is not None and self._shape_element(src, 1, axis - (len(shape) - width), extent)
        if src.op_type in _BROADCASTING and src.op_type != "Concat":
            return any([self._expanded(src, j, axis - (len(shape) - len(self._shape(inp) or ())), extent)
                        for j, inp in enumerate(src.input) if inp])
        return False

    # -- per-sample indices ----------------------------------------------------------------------
    def _rows(self, node: onnx.NodeProto, k: int, axis: int) -> bool:
        """Extend the indices ``node.input[k]``, whose ``axis`` has the exported batch's size."""
        name = node.input[k]
        shape = self._shape(name)
        if shape is None or axis >= len(shape) or shape[axis] != self.old:
            return False
        value = self._value(name)
        if value is not None:
            patched = extend_linear(value, axis, self.new)
            if patched is None:
                return False
            self._replace(node, k, patched)
            return True
        src = self.producer.get(name)
        if src is None:
            return False
        if src.op_type in _ELEMENTWISE:
            rank = len(shape)
            found = False
            for j, inp in enumerate(src.input):
                s = self._shape(inp)
                if s is not None and 0 <= axis - (rank - len(s)) < len(s):
                    found = self._rows(src, j, axis - (rank - len(s))) or found
            return found
        if src.op_type == "Unsqueeze":
            axes = _unsqueeze_axes(self, src, len(shape))
            if axes is None or axis in axes:
                return False
            return self._rows(src, 0, axis - sum(1 for a in axes if a < axis))
        return False


def extend_linear(value: np.ndarray, axis: int, new: int) -> np.ndarray | None:
    """``value`` with ``new`` entries along ``axis`` instead of its own, continuing it linearly
    (``arange(old)`` becomes ``arange(new)``, equal slices stay equal); None if it is not linear."""
    moved = np.moveaxis(value, axis, 0)
    old = moved.shape[0]
    if old < 2:
        return None
    step = moved[1] - moved[0]
    steps = np.arange(old).reshape((old,) + (1,) * (moved.ndim - 1))
    if not np.array_equal(moved, moved[0] + steps * step):
        return None
    steps = np.arange(new).reshape((new,) + (1,) * (moved.ndim - 1))
    return np.moveaxis((moved[0] + steps * step).astype(value.dtype), 0, axis)


def _attribute(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _unsqueeze_axes(patcher: _Patcher, node: onnx.NodeProto, rank: int) -> list[int] | None:
    axes = _attribute(node, "axes", None)
    if axes is None and len(node.input) > 1:
        value = patcher._value(node.input[1])
        axes = None if value is None else value.reshape(-1).tolist()
    return None if axes is None else [int(a) % rank for a in axes]
