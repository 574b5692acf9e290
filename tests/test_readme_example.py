"""The README's worked example, checked against the cost model (numbers worked out by hand)."""

import pytest
from onnx import TensorProto, helper

from planner.cost.model import CostModel
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.search.drec import plan_drec


def one_matmul_fp16():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4096, 12288])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4096, 12288])
    w = TensorProto(name="w", data_type=TensorProto.FLOAT16, dims=[12288, 12288], data_location=TensorProto.EXTERNAL)
    w.external_data.add(key="location", value="absent.bin")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_worked_example():
    cm = CostModel(import_model(one_matmul_fp16().SerializeToString()), load_preset("dgx_a100"))
    compute = 3 * 2 * 4096 * 12288 * 12288 / 8 / (312e12 * 0.808)  # 1.840 ms at the ceiling
    # tile and wave quantisation, 256 x 128 tiles on 108 SMs: split m (512 x 12288) or n
    # (4096 x 1536): 192 tiles in 2 waves, 8/9; split k (4096 x 12288): 1536 tiles in 15 waves
    q_mn, q_k = 192 / 216, 1536 / 1620
    w_allreduce = 2 * 7 / 8 * 12288 * 12288 * 2 / 300e9 + 2 * 5e-6  # 1.772 ms
    y_allreduce = 2 * 7 / 8 * 4096 * 12288 * 2 / 300e9 + 2 * 5e-6   # 0.597 ms
    assert cm.op_seconds("mm", ("m",) * 3) == pytest.approx(compute / q_mn + w_allreduce, rel=1e-12)
    assert cm.op_seconds("mm", ("n",) * 3) == pytest.approx(compute / q_mn, rel=1e-12)
    assert cm.op_seconds("mm", ("k",) * 3) == pytest.approx(compute / q_k + y_allreduce, rel=1e-12)
    assert compute / q_mn + w_allreduce == pytest.approx(3.842e-3, rel=1e-3)
    assert plan_drec(cm).strategies["mm"] == ("n", "n", "n")
