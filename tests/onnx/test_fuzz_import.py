"""Fuzzing import-then-plan with structure-aware mutations of the sample models (issue 16).

Each example takes a small sample model, applies a few mutations that keep it a parseable ONNX
file (a dimension changed, an attribute changed, an input dropped, an op type swapped, a node
removed, a huge Range inserted, an initializer pointed at external data, an output duplicated),
then imports it and plans it on a 2-device machine. The outcome must be a plan, or the planner's
own error (the classes the CLI reports in one line with exit 2) with a one-line message: never
another exception.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import models
from planner.errors import PlannerError
from planner.api import PlanOptions, plan_model
from planner.onnx.importer import import_model, require_bound, symbolic_dims

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
NAMES = ["mlp", "moe", "vgg16"]
OP_TYPES = ["MatMul", "Add", "Relu", "Softmax", "Transpose", "Reshape", "Gemm", "Conv", "Einsum", "Range",
            "ConstantOfShape", "Expand", "Tile", "Concat", "Gather", "Frobnicate", "If", "Identity"]
DIMS = [0, 1, 2, 3, 7, 64, -1, 2**31, 2**40, 2**40 + 1, 2**62]
INTS = [-100, -3, -1, 0, 1, 2, 3, 99, 2**31, -(2**62)]


@pytest.fixture(scope="module")
def samples() -> dict[str, bytes]:
    return {n: (SAMPLES / f"{n}.onnx").read_bytes() for n in NAMES}


def _mutate(m: onnx.ModelProto, data) -> list[str]:
    g = m.graph
    done = []
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        kind = data.draw(st.sampled_from(["dim", "init_dims", "attr", "drop_input", "op_type", "delete_node",
                                          "huge_range", "external", "dup_output", "rename_input"]), label="kind")
        nodes = list(g.node)
        k = data.draw(st.integers(0, max(len(nodes) - 1, 0)), label="node")
        node = g.node[k] if nodes else None
        if kind == "dim" and g.input:
            vi = g.input[data.draw(st.integers(0, len(g.input) - 1))]
            dims = vi.type.tensor_type.shape.dim
            if len(dims):
                d = dims[data.draw(st.integers(0, len(dims) - 1))]
                if data.draw(st.booleans()):
                    d.dim_value = data.draw(st.sampled_from(DIMS))
                else:
                    d.dim_param = data.draw(st.sampled_from(["batch", "seq", "z"]))
        elif kind == "init_dims" and g.initializer:
            init = g.initializer[data.draw(st.integers(0, len(g.initializer) - 1))]
            if len(init.dims):
                init.dims[data.draw(st.integers(0, len(init.dims) - 1))] = data.draw(st.sampled_from([d for d in DIMS if d >= 0]))
        elif kind == "attr" and node is not None:
            a = node.attribute.add() if not len(node.attribute) or data.draw(st.booleans()) else \
                node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
            if not a.name:
                a.name = data.draw(st.sampled_from(["axis", "perm", "equation", "transB", "group", "keepdims"]))
            a.ClearField("ints")
            if a.name in ("perm", "axes", "kernel_shape", "pads", "strides"):
                a.type = onnx.AttributeProto.INTS
                a.ints.extend(data.draw(st.lists(st.sampled_from(INTS), max_size=4)))
            elif a.name == "equation":
                a.type = onnx.AttributeProto.STRING
                a.s = data.draw(st.sampled_from([b"ij,jk->ik", b"ij->", b"...,x", b"ijk,jk->iz", b"\xff"]))
            else:
                a.type = onnx.AttributeProto.INT
                a.i = data.draw(st.sampled_from(INTS))
        elif kind == "drop_input" and node is not None and len(node.input):
            del node.input[data.draw(st.integers(0, len(node.input) - 1))]
        elif kind == "op_type" and node is not None:
            node.op_type = data.draw(st.sampled_from(OP_TYPES))
        elif kind == "delete_node" and node is not None and len(nodes) > 1:
            del g.node[k]
        elif kind == "huge_range":
            limit = data.draw(st.sampled_from([10**12, 2**32 + 1, 2**62, 5, -7]))
            step = data.draw(st.sampled_from([1, 0, -1, 3]))
            tag = f"fz{len(g.node)}"
            g.initializer.extend([numpy_helper.from_array(np.array(v, np.int64), f"{tag}_{n}")
                                  for n, v in (("a", 0), ("b", limit), ("c", step))])
            g.node.insert(k, helper.make_node("Range", [f"{tag}_a", f"{tag}_b", f"{tag}_c"], [f"{tag}_r"], name=tag))
            g.node.insert(k + 1, helper.make_node("ReduceSum", [f"{tag}_r"], [f"{tag}_s"], name=tag + "_sum", keepdims=0))
            g.output.append(helper.make_tensor_value_info(f"{tag}_s", TensorProto.INT64, None))
        elif kind == "external" and g.initializer:
            init = g.initializer[data.draw(st.integers(0, len(g.initializer) - 1))]
            init.ClearField("raw_data")
            init.data_location = TensorProto.EXTERNAL
            e = init.external_data.add()
            e.key, e.value = "location", data.draw(st.sampled_from(["/etc/passwd", "../x", ".git/config"]))
        elif kind == "dup_output" and g.output:
            g.output.append(g.output[0])
        elif kind == "rename_input" and node is not None and len(node.input):
            node.input[0] = data.draw(st.sampled_from(["nowhere", node.output[0] if node.output else "x"]))
        done.append(kind)
    return done


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(data=st.data())
def test_import_then_plan_never_raises_anything_else(samples, data):
    name = data.draw(st.sampled_from(NAMES), label="sample")
    m = onnx.ModelProto()
    m.ParseFromString(samples[name])
    mutations = _mutate(m, data)
    blob = m.SerializeToString()
    try:
        proto = onnx.ModelProto()
        proto.ParseFromString(blob)
        bindings = {d: 2 for d in symbolic_dims(proto)}
        graph = import_model(blob, bindings, name)
        require_bound(graph)
        result = plan_model(graph, models.one_level(2), PlanOptions(mode="infer", algorithm="data_parallel"))
        assert result is not None
    except PlannerError as exc:
        message = str(exc)
        assert message and "\n" not in message, (mutations, message)
