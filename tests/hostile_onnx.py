"""Builders of hostile ONNX models: tensors whose data points at files on the server, and
constant-driven operators that would make enormous tensors.

Used by tests/onnx/test_import_security.py (in process, with an ``open`` audit hook) and by the strace
subprocess it runs (``python tests/hostile_onnx.py DIR TARGET...`` imports every model for each
target and prints one line per model).
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, defs, helper, numpy_helper

I64, F, U8 = TensorProto.INT64, TensorProto.FLOAT, TensorProto.UINT8
OPSET = 17


def external(name: str, location: str, dims=(1,), dtype=I64, offset: int = 0, length: int | None = None) -> TensorProto:
    """A tensor whose data lives in ``location`` (relative to the model's directory, or absolute)."""
    t = TensorProto()
    t.name, t.data_type = name, dtype
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    entries = [("location", location), ("offset", str(offset))]
    if length is not None:
        entries.append(("length", str(length)))
    for key, value in entries:
        e = t.external_data.add()
        e.key, e.value = key, value
    return t


def sparse_external(name: str, location: str) -> onnx.SparseTensorProto:
    values = external(name, location, dims=(1,), dtype=F, length=4)
    indices = external(name + "_idx", location, dims=(1,), dtype=I64, length=8)
    return helper.make_sparse_tensor(values, indices, [4])


def model(nodes, inputs, outputs, inits=(), opsets=None, functions=(), sparse=()) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "hostile", list(inputs), list(outputs), initializer=list(inits),
                              sparse_initializer=list(sparse))
    opsets = opsets or [helper.make_opsetid("", OPSET)]
    m = helper.make_model(graph, opset_imports=opsets, ir_version=8, functions=list(functions))
    return m


def _vi(name, dtype=I64, shape=(2,)):
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def tensor_attributes() -> list[tuple[str, str, str, int]]:
    """Every (domain, op type, attribute, attribute type) of ONNX's schemas whose attribute is a
    tensor, sparse tensor or list of tensors: taken from onnx.defs, so new operators are covered."""
    kinds = {onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS, onnx.AttributeProto.SPARSE_TENSOR,
             onnx.AttributeProto.SPARSE_TENSORS}
    found = {}
    for s in defs.get_all_schemas_with_history():
        for a in s.attributes.values():
            if int(a.type) in kinds:
                found[(s.domain, s.name, a.name)] = int(a.type)
    return sorted((d, op, a, t) for (d, op, a), t in found.items())


def _attribute(attr: str, kind: int, location: str) -> onnx.AttributeProto:
    a = onnx.AttributeProto()
    a.name, a.type = attr, kind
    if kind == onnx.AttributeProto.TENSOR:
        a.t.CopyFrom(external(attr, location))
    elif kind == onnx.AttributeProto.TENSORS:
        a.tensors.extend([external(attr, location), external(attr + "2", location, offset=1)])
    elif kind == onnx.AttributeProto.SPARSE_TENSOR:
        a.sparse_tensor.CopyFrom(sparse_external(attr, location))
    else:
        a.sparse_tensors.extend([sparse_external(attr, location)])
    return a


def leak_chain(location: str) -> onnx.ModelProto:
    """The issue's reproduction: the first byte of ``location`` becomes the length of a Range.

    ConstantOfShape([1], value=<1 byte at location>) -> Cast(int64) -> Reshape(scalar) -> Range(0, byte, 1)
    -> Cast(float) -> Add(x): before the fix the Range's length (the byte) was in the operator table.
    """
    nodes = [
        helper.make_node("ConstantOfShape", ["one"], ["c"], name="cos", value=external("v", location, dims=(1,), dtype=U8, length=1)),
        helper.make_node("Cast", ["c"], ["c64"], name="cast", to=I64),
        helper.make_node("Reshape", ["c64", "scalar_shape"], ["n"], name="reshape"),
        helper.make_node("Range", ["zero", "n", "step"], ["r"], name="range"),
        helper.make_node("Cast", ["r"], ["rf"], name="castf", to=F),
        helper.make_node("Add", ["x", "rf"], ["y"], name="add"),
    ]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([], np.int64), "scalar_shape"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(1, np.int64), "step")]
    return model(nodes, [_vi("x", F, ("n_x",))], [_vi("y", F, None)], inits)


def hostile_models(location: str) -> list[tuple[str, onnx.ModelProto]]:
    """Every way a model can point a tensor at ``location``."""
    out = []
    for domain, op, attr, kind in tensor_attributes():
        node = helper.make_node(op, ["x"], ["y"], name=f"{op}_{attr}", domain=domain)
        node.attribute.append(_attribute(attr, kind, location))
        if op == "ConstantOfShape":
            node.input[0] = "shape"
        elif op == "Constant":
            del node.input[:]
        opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid(domain, 3)] if domain else [])
        inits = [numpy_helper.from_array(np.array([2, 3], np.int64), "shape")]
        out.append((f"{domain or 'ai.onnx'}.{op}.{attr}",
                    model([node, helper.make_node("Identity", ["y"], ["z"], name="id")], [_vi("x")], [_vi("z", F, None)],
                          inits, opsets)))
    # a custom-domain node with a list of tensors and a list of sparse tensors
    for kind in (onnx.AttributeProto.TENSORS, onnx.AttributeProto.SPARSE_TENSORS):
        node = helper.make_node("Custom", ["x"], ["y"], name="custom", domain="com.example")
        node.attribute.append(_attribute("t", kind, location))
        out.append((f"custom.{kind}", model([node], [_vi("x")], [_vi("y", F, None)],
                                            opsets=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.example", 1)])))
    # initializers, sparse initializers
    out.append(("initializer", model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [_vi("x")], [_vi("y", I64, None)],
                                     [external("w", location, dims=(2,), length=16)])))
    out.append(("shape initializer", model([helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")],
                                           [_vi("x")], [_vi("y", I64, None)], [external("s", location, dims=(1,), length=8)])))
    out.append(("sparse initializer", model([helper.make_node("Add", ["x", "w"], ["y"], name="add")],
                                            [_vi("x", F, (4,))], [_vi("y", F, None)],
                                            sparse=[sparse_external("w", location)])))
    # a Constant inside an If branch, a Loop body and a function body
    branch = helper.make_graph([helper.make_node("ConstantOfShape", ["shape"], ["b"], value=external("v", location))],
                               "branch", [], [_vi("b", I64, None)])
    out.append(("If branch", model([helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch, else_branch=branch)],
                                   [_vi("cond", TensorProto.BOOL, ())], [_vi("y", I64, None)],
                                   [numpy_helper.from_array(np.array([2], np.int64), "shape")])))
    fn = helper.make_function("com.example", "Leak", ["s"], ["o"],
                              [helper.make_node("ConstantOfShape", ["s"], ["o"], value=external("v", location))],
                              [helper.make_opsetid("", OPSET)])
    out.append(("function", model([helper.make_node("Leak", ["x"], ["y"], name="leak", domain="com.example")],
                                  [_vi("x")], [_vi("y", I64, None)],
                                  opsets=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.example", 1)],
                                  functions=[fn])))
    out.append(("leak chain", leak_chain(location)))
    return out


def huge_range(limit: int = 10**12) -> onnx.ModelProto:
    """The issue's 233-byte memory bomb: Range(0, limit) -> Cast -> ReduceSum."""
    nodes = [helper.make_node("Range", ["zero", "limit", "one"], ["r"], name="range"),
             helper.make_node("Cast", ["r"], ["f"], name="cast", to=F),
             helper.make_node("ReduceSum", ["f"], ["s"], name="sum", keepdims=0),
             helper.make_node("Add", ["x", "s"], ["y"], name="add")]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("zero", 0), ("limit", limit), ("one", 1))]
    return model(nodes, [_vi("x", F, (4,))], [_vi("y", F, None)], inits)


def constant_driven(op: str, count: int) -> onnx.ModelProto:
    """One constant-driven operator asked for ``count`` elements (as exactly as the operator allows)."""
    x = [_vi("x", F, (1,))]
    if op == "ConstantOfShape":
        nodes = [helper.make_node(op, ["s"], ["c"], name="big")]
        inits = [numpy_helper.from_array(np.array([count], np.int64), "s")]
    elif op == "Expand":
        nodes = [helper.make_node(op, ["one", "s"], ["c"], name="big")]
        inits = [numpy_helper.from_array(np.array([count], np.int64), "s"),
                 numpy_helper.from_array(np.ones(1, np.float32), "one")]
    elif op == "Tile":
        nodes = [helper.make_node(op, ["one", "s"], ["c"], name="big")]
        inits = [numpy_helper.from_array(np.array([count], np.int64), "s"),
                 numpy_helper.from_array(np.ones(1, np.float32), "one")]
    elif op == "Resize":
        nodes = [helper.make_node(op, ["one", "", "", "s"], ["c"], name="big")]
        inits = [numpy_helper.from_array(np.array([count], np.int64), "s"),
                 numpy_helper.from_array(np.ones(1, np.float32), "one")]
    else:  # Range
        nodes = [helper.make_node(op, ["zero", "s", "step"], ["c"], name="big")]
        inits = [numpy_helper.from_array(np.array(count, np.int64), "s"),
                 numpy_helper.from_array(np.array(0, np.int64), "zero"),
                 numpy_helper.from_array(np.array(1, np.int64), "step")]
    nodes += [helper.make_node("Cast", ["c"], ["cf"], name="cast", to=F),
              helper.make_node("ReduceSum", ["cf"], ["r"], name="sum", keepdims=0),
              helper.make_node("Add", ["x", "r"], ["y"], name="add")]
    return model(nodes, x, [_vi("y", F, None)], inits)


if __name__ == "__main__":  # the strace run: import every hostile model for each target
    from planner.onnx.importer import ModelImportError, import_model

    for target in sys.argv[1:]:
        for label, m in hostile_models(target):
            try:
                import_model(m.SerializeToString())
                print(f"{label}: imported")
            except ModelImportError as exc:
                print(f"{label}: refused: {exc}")
