"""strip_weights: weights become references to an absent file; shape constants stay inline."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from planner.onnx.strip_weights import check_model_skeleton, strip_weights, strip_weights_file


def small_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((256, 512)).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(rng.standard_normal(512).astype(np.float32), "fc.bias"),
        numpy_helper.from_array(np.array([0, 0, 8, 64], dtype=np.int64), "shape.heads"),
        # 1-D int64: ONNX data propagation reads these, so it stays inline however long it is
        numpy_helper.from_array(np.arange(2048, dtype=np.int64), "big_index_table"),
        numpy_helper.from_array(np.arange(4096, dtype=np.int64).reshape(2048, 2), "big_int_2d"),
        numpy_helper.from_array(rng.standard_normal((2048, 16)).astype(np.float16), "emb.weight"),
    ]
    big_const = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "c")
    nodes = [
        helper.make_node("MatMul", ["x", "fc.weight"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "fc.bias"], ["fc_out"], name="fc.bias_add"),
        helper.make_node("Reshape", ["fc_out", "shape.heads"], ["heads"], name="split_heads"),
        helper.make_node("Gather", ["big_index_table", "ids"], ["idx"], name="lookup", axis=0),
        helper.make_node("Gather", ["emb.weight", "idx"], ["emb"], name="embed", axis=0),
        helper.make_node("Gather", ["big_int_2d", "ids"], ["pairs"], name="pairs", axis=0),
        helper.make_node("Constant", [], ["c"], name="big_const", value=big_const),
        helper.make_node("Constant", [], ["two"], name="two", value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("MatMul", ["x32", "c"], ["cx"], name="const_mm"),
        helper.make_node("Mul", ["cx", "two"], ["cx2"], name="double"),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 256]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("x32", TensorProto.FLOAT, ["batch", 64]),
        ],
        [
            helper.make_tensor_value_info("heads", TensorProto.FLOAT, ["batch", "seq", 8, 64]),
            helper.make_tensor_value_info("emb", TensorProto.FLOAT16, ["batch", "seq", 16]),
            helper.make_tensor_value_info("cx2", TensorProto.FLOAT, ["batch", 32]),
            helper.make_tensor_value_info("pairs", TensorProto.INT64, ["batch", "seq", 2]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def float_params(model: onnx.ModelProto) -> int:
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    return sum(math.prod(t.dims) for t in model.graph.initializer if t.data_type in floats)


def test_strip_preserves_structure_and_shrinks():
    model = small_model()
    before = model.SerializeToString()
    stripped = strip_weights(model, "small.weights.bin")
    assert model.SerializeToString() == before, "input model must not be modified"

    assert float_params(stripped) == float_params(model) == 256 * 512 + 512 + 2048 * 16
    assert len(stripped.SerializeToString()) < len(before) / 20

    by_name = {t.name: t for t in stripped.graph.initializer}
    original = {t.name: t for t in model.graph.initializer}
    # small or 1-D integer constants: untouched, data inline
    assert by_name["shape.heads"] == original["shape.heads"]
    assert by_name["big_index_table"] == original["big_index_table"]
    np.testing.assert_array_equal(numpy_helper.to_array(by_name["shape.heads"]), [0, 0, 8, 64])
    # everything else: external, no data, running offsets
    offset = 0
    for name, itemsize in (("fc.weight", 4), ("fc.bias", 4), ("big_int_2d", 8), ("emb.weight", 2)):
        t = by_name[name]
        assert t.data_location == TensorProto.EXTERNAL
        assert not t.raw_data and not t.float_data and not t.int64_data and not t.int32_data
        assert list(t.dims) == list(original[name].dims) and t.data_type == original[name].data_type
        length = itemsize * math.prod(t.dims)
        assert {e.key: e.value for e in t.external_data} == {
            "location": "small.weights.bin", "offset": str(offset), "length": str(length)
        }
        offset += length
    # the large Constant goes external too, the scalar one stays
    consts = {n.name: n.attribute[0].t for n in stripped.graph.node if n.op_type == "Constant"}
    assert consts["big_const"].data_location == TensorProto.EXTERNAL
    assert {e.key: e.value for e in consts["big_const"].external_data}["offset"] == str(offset)
    assert numpy_helper.to_array(consts["two"]) == np.float32(2.0)


def test_shape_inference_and_checker_still_work():
    stripped = strip_weights(small_model(), "small.weights.bin")
    inferred = onnx.shape_inference.infer_shapes(stripped, strict_mode=True, data_prop=True)
    shapes = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    assert shapes["heads"] == ["batch", "seq", 8, 64]
    assert shapes["fc_out"] == ["batch", "seq", 512]
    assert shapes["emb"] == ["batch", "seq", 16]
    assert shapes["cx2"] == ["batch", 32]
    assert shapes["pairs"] == ["batch", "seq", 2]
    check_model_skeleton(stripped, full_check=True)


def test_strip_file_never_reads_external_data(tmp_path):
    # A model that already points at an external file which does not exist.
    model = strip_weights(small_model(), "missing.bin")
    src = tmp_path / "in.onnx"
    src.write_bytes(model.SerializeToString())
    out = strip_weights_file(src, tmp_path / "out.onnx")
    stripped = onnx.load(str(out), load_external_data=False)
    locations = {
        e.value for t in stripped.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {"out.weights.bin"}
    assert float_params(stripped) == float_params(small_model())
    assert not (tmp_path / "out.weights.bin").exists()
    assert not (tmp_path / "missing.bin").exists()
    # idempotent
    assert strip_weights(stripped, "out.weights.bin") == stripped
