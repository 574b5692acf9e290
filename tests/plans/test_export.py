"""Plan export (``planner.plans.export``, ``python -m planner export``) against hand-written layouts.

Conventions used for the expectations below (worked out by hand from each plan's cuts):
* cuts are listed outermost first; the mesh has one dimension per cut, named after its level
  (``node``, ``gpu``; ``gpu0``, ``gpu1`` when a level has several cuts);
* MindSpore: per tensor input (constants excluded), the number of slices of each axis = the
  product of the factors of the cuts that split it;
* JAX: per tensor axis None, one mesh axis name, or a list (a tuple in the PartitionSpec) of
  the mesh axes splitting it, in cut order; partial sums are listed as ``psum_axes``;
* DTensor: per mesh dimension ``Shard(axis)`` / ``Replicate()``, ``Partial()`` for an output
  before the all-reduce the plan prices (and in ``grad_placements`` for an input whose
  gradient is partial because the operator splits a dimension the input lacks).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import models  # tests/models.py
from planner.plans.export import ExportError, apply_dtensor_plan, export_plan, parse_placement, tuple_literal
from planner.onnx.importer import import_model

REPO = Path(__file__).resolve().parents[2]
R, P = "Replicate()", "Partial()"


def S(axis: int) -> str:
    return f"Shard({axis})"


def plan_for(machine, strategies: dict[str, list]) -> dict:
    """A plan JSON (the schema of ``plan --json``) with the given dims per cut."""
    cuts = machine.cuts()
    return {"machine": machine.to_dict(), "mode": "train", "algorithm": "hand",
            "ops": [{"name": n, "cuts": [[c.level_name, d, c.factor] for c, d in zip(cuts, dims)]}
                    for n, dims in strategies.items()]}


def op(data: dict, name: str) -> dict:
    return next(o for o in data["ops"] if o["name"] == name)


# ---- a MatMul chain on 2 nodes x 4 gpus (cuts node x2, gpu x2, gpu x2) ----------------------------
#
# x[64,128] @ w1[128,256] -> h[64,256] (mm1: m=64, n=256, k=128)
# h[64,256] @ w2[256,32]  -> y[64,32]  (mm2: m=64, n=32, k=256)
# mm1 splits m at node and gpu0 (rows 4 ways) and k at gpu1 (contracted dimension 2 ways):
#   x (m, k) -> (4, 2); w1 (k, n) -> (2, 1); h is a partial sum over gpu1 until all-reduced.
# mm2 splits n at node and k at gpu0 and gpu1:
#   h (m, k) -> (1, 4); w2 (k, n) -> (4, 2); y is a partial sum over gpu0 and gpu1.

CHAIN_PLAN = {"mm1": ["m", "m", "k"], "mm2": ["n", "k", "k"]}


@pytest.fixture(scope="module")
def chain():
    machine = models.two_level(2, 4)
    graph = import_model(models.two_matmuls(m=64, k=128, n=256, n2=32))
    plan = plan_for(machine, CHAIN_PLAN)
    return {fmt: export_plan(plan, graph, fmt) for fmt in ("dtensor", "jax", "mindspore")}


def test_chain_mindspore_strategies(chain):
    ms = chain["mindspore"]
    assert ms["device_num"] == 8
    assert op(ms, "mm1")["in_strategy"] == [[4, 2], [2, 1]]
    assert op(ms, "mm1")["shard"] == "((4, 2), (2, 1))"
    assert op(ms, "mm1")["output_all_reduce_devices"] == 2
    assert op(ms, "mm2")["in_strategy"] == [[1, 4], [4, 2]]
    assert op(ms, "mm2")["shard"] == "((1, 4), (4, 2))"
    assert op(ms, "mm2")["output_all_reduce_devices"] == 4
    assert op(ms, "mm1")["inputs"] == ["x", "w1"]


def test_chain_jax_specs(chain):
    jx = chain["jax"]
    assert jx["mesh"]["shape"] == [2, 2, 2]
    assert jx["mesh"]["axis_names"] == ["node", "gpu0", "gpu1"]
    mm1, mm2 = op(jx, "mm1"), op(jx, "mm2")
    assert mm1["in_specs"] == [[["node", "gpu0"], "gpu1"], ["gpu1", None]]
    assert mm1["out_specs"] == [[["node", "gpu0"], None]]
    assert mm1["psum_axes"] == [["gpu1"]]
    assert mm2["in_specs"] == [[None, ["gpu0", "gpu1"]], [["gpu0", "gpu1"], "node"]]
    assert mm2["out_specs"] == [[None, "node"]]
    assert mm2["psum_axes"] == [["gpu0", "gpu1"]]
    t = jx["tensors"]
    assert t["w1"]["partition_spec"] == ["gpu1", None]
    assert t["w2"]["partition_spec"] == [["gpu0", "gpu1"], "node"]
    assert t["h"]["partition_spec"] == [["node", "gpu0"], None]  # as mm1 leaves it, after the psum
    assert t["x"]["partition_spec"] == [["node", "gpu0"], "gpu1"]


def test_chain_dtensor_placements(chain):
    dt = chain["dtensor"]
    assert dt["mesh"] == {"dims_are": "cuts", "shape": [2, 2, 2], "dim_names": ["node", "gpu0", "gpu1"],
                          "levels": ["node", "gpu", "gpu"], "cuts": [[0], [1], [2]]}
    mm1 = op(dt, "mm1")
    x, w1 = mm1["inputs"]
    assert x == {"tensor": "x", "placements": [S(0), S(0), S(1)]}  # a graph input: no gradient
    assert w1["placements"] == [R, R, S(0)]
    assert w1["grad_placements"] == [P, P, S(0)]  # w1 lacks m: its gradient is partial over node, gpu0
    (h,) = mm1["outputs"]
    assert h["placements"] == [S(0), S(0), P]
    assert h["placements_after_reduce"] == [S(0), S(0), R]
    mm2 = op(dt, "mm2")
    h_in, w2 = mm2["inputs"]
    assert h_in["placements"] == [R, S(1), S(1)]
    assert h_in["grad_placements"] == [P, S(1), S(1)]  # h lacks n, split at node
    assert w2 == {"tensor": "w2", "placements": [S(1), S(0), S(0)]}  # w2 has n and k: nothing partial
    (y,) = mm2["outputs"]
    assert y["placements"] == [S(1), P, P] and y["placements_after_reduce"] == [S(1), R, R]
    assert dt["tensors"]["w1"]["placements"] == [R, R, S(0)]
    assert dt["tensors"]["h"]["placements"] == [S(0), S(0), R]


def test_gemm_transb_matches_the_documented_example():
    """A Gemm with transB=1 (W is [n, k]) on 8 devices, rows split 4 and k split 2: ((4, 2), (1, 2))."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 128])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 256])
    node = helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1)
    model = models._model("gemm", [node], [x], [y], [models._weight("W", [256, 128])])
    graph = import_model(model)
    machine = models.two_level(2, 4)
    ms = export_plan(plan_for(machine, {"fc": ["m", "m", "k"]}), graph, "mindspore")
    assert op(ms, "fc")["shard"] == "((4, 2), (1, 2))"
    dt = export_plan(plan_for(machine, {"fc": ["m", "m", "k"]}), graph, "dtensor")
    assert dt["tensors"]["W"]["placements"] == [R, R, S(1)]


# ---- a transformer block (the verification's, exported by torch) on 2 nodes x 2 gpus -------------
#
# Megatron style inside a node, data parallel across nodes (cuts node x2, gpu x2):
#   Q/K/V and MLP-in projections column parallel: b0 (batch) at node, n at gpu;
#   attention batched over b0 (node) and heads b1 (gpu); output and MLP-out projections row
#   parallel: b0 at node, k at gpu (partial sums all-reduced over gpu).
# Shapes: x [8, 8, 64]; wq, wk, wv, wo [64, 64]; w1 [64, 256]; w2 [256, 64]; 4 heads of 16.

BLOCK_PLAN = {
    "/MatMul": ["b0", "n"], "/MatMul_1": ["b0", "n"], "/MatMul_2": ["b0", "n"],
    "/Add": ["d0", "d2"],
    "/MatMul_3": ["b0", "b1"], "/MatMul_4": ["b0", "b1"],
    "/MatMul_5": ["b0", "k"],
    "/MatMul_6": ["b0", "n"], "/MatMul_7": ["b0", "k"],
}


@pytest.fixture(scope="module")
def block():
    pytest.importorskip("torch")
    from planner.verify import build_model, export_onnx

    graph = import_model(export_onnx(build_model("transformer")), {}, name="transformer")
    plan = plan_for(models.two_level(2, 2), BLOCK_PLAN)
    return {fmt: export_plan(plan, graph, fmt) for fmt in ("dtensor", "jax", "mindspore")}


def test_block_mindspore_strategies(block):
    ms = block["mindspore"]
    expected = {
        "/MatMul": "((2, 1, 1), (1, 2))", "/MatMul_1": "((2, 1, 1), (1, 2))", "/MatMul_2": "((2, 1, 1), (1, 2))",
        "/Add": "((2, 1, 2), (2,))",
        "/MatMul_3": "((2, 2, 1, 1), (2, 2, 1, 1))", "/MatMul_4": "((2, 2, 1, 1), (2, 2, 1, 1))",
        "/MatMul_5": "((2, 1, 2), (2, 1))",
        "/MatMul_6": "((2, 1, 1), (1, 2))", "/MatMul_7": "((2, 1, 2), (2, 1))",
    }
    for name, shard in expected.items():
        assert op(ms, name)["shard"] == shard, name
    assert op(ms, "/MatMul")["inputs"] == ["/ln1/LayerNormalization_output_0", "wq"]
    assert op(ms, "/MatMul_5")["output_all_reduce_devices"] == 2
    assert "output_all_reduce_devices" not in op(ms, "/MatMul")


def test_block_jax_specs(block):
    jx = block["jax"]
    assert jx["mesh"]["shape"] == [2, 2] and jx["mesh"]["axis_names"] == ["node", "gpu"]
    q = op(jx, "/MatMul")
    assert q["in_specs"] == [["node", None, None], [None, "gpu"]]
    assert q["out_specs"] == [["node", None, "gpu"]] and q["psum_axes"] == [[]]
    att = op(jx, "/MatMul_3")
    assert att["in_specs"] == [["node", "gpu", None, None], ["node", "gpu", None, None]]
    assert att["out_specs"] == [["node", "gpu", None, None]]
    out = op(jx, "/MatMul_5")
    assert out["in_specs"] == [["node", None, "gpu"], ["gpu", None]]
    assert out["out_specs"] == [["node", None, None]] and out["psum_axes"] == [["gpu"]]
    t = jx["tensors"]
    assert t["wq"]["partition_spec"] == [None, "gpu"]
    assert t["wo"]["partition_spec"] == ["gpu", None]
    assert t["w1"]["partition_spec"] == [None, "gpu"]
    assert t["w2"]["partition_spec"] == ["gpu", None]
    assert t["bq"]["partition_spec"] == ["gpu"]


def test_block_dtensor_placements(block):
    dt = block["dtensor"]
    t = dt["tensors"]
    assert t["wq"]["placements"] == [R, S(1)]
    assert t["wo"]["placements"] == [R, S(0)]
    assert t["w1"]["placements"] == [R, S(1)]
    assert t["w2"]["placements"] == [R, S(0)]
    assert t["bq"]["placements"] == [R, S(0)]
    assert t["x"]["role"] == "input"
    q = op(dt, "/MatMul")
    assert q["inputs"][1]["grad_placements"] == [P, S(1)]  # data parallel across nodes
    assert q["inputs"][0]["placements"] == [S(0), R]
    assert q["inputs"][0]["grad_placements"] == [S(0), P]  # the activation lacks n (column parallel)
    o = op(dt, "/MatMul_5")
    assert o["outputs"][0]["placements"] == [S(0), P]
    assert o["outputs"][0]["placements_after_reduce"] == [S(0), R]
    assert o["inputs"][0]["placements"] == [S(0), S(2)]


# ---- layouts a plain Shard cannot express ------------------------------------------------------

def fused_qkv(batch=4, seq=8, heads=2, head_dim=8) -> onnx.ModelProto:
    """qkv = x @ w ([E, 3E]), split into q, k, v, each reshaped into heads: w's axis 1 has the
    atomic factors (3, heads, head_dim)."""
    e = heads * head_dim
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, seq, e])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, seq, heads, head_dim]) for n in "qkv"]
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [batch, seq, heads, head_dim])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["qkv"], name="qkv"),
             helper.make_node("Split", ["qkv"], ["q0", "k0", "v0"], name="split", axis=2, num_outputs=3)]
    nodes += [helper.make_node("Reshape", [f"{n}0", "shape"], [n], name=f"{n}.reshape") for n in "qkv"]
    graph = helper.make_graph(nodes, "fused", [x], outs, [models._weight("w", [e, 3 * e]), shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def test_split_of_an_inner_factor_is_exported_on_a_view():
    graph = import_model(fused_qkv())
    assert graph.tensors["w"].axis_factors == ((16,), (3, 2, 8))
    machine = models.one_level(2)
    plan = plan_for(machine, {"qkv": ["n"]})  # n = (3, heads, head_dim): the cut splits the heads
    dt = export_plan(plan, graph, "dtensor")
    w = dt["tensors"]["w"]
    assert w["shape"] == [16, 48] and w["view_shape"] == [16, 3, 2, 8]
    assert w["placements"] == [S(2)]
    jx = export_plan(plan, graph, "jax")
    assert jx["tensors"]["w"]["partition_spec"] == [None, None, "gpu", None]
    ms = export_plan(plan, graph, "mindspore")
    assert op(ms, "qkv")["in_strategy"] == [[1, 1, 1], [1, 1, 2, 1]]
    assert op(ms, "qkv")["in_view_shapes"] == [None, [16, 3, 2, 8]]

    class FakeMesh:
        shape = (2,)

    torch = pytest.importorskip("torch")
    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.zeros(16, 48))
    with pytest.raises(ExportError, match="fused weight"):
        apply_dtensor_plan(module, dt, FakeMesh())


def test_level_mesh_when_expressible_and_a_clear_error_otherwise():
    machine = models.two_level(2, 4)
    graph = import_model(models.two_matmuls(m=64, k=128, n=256, n2=32))
    same = plan_for(machine, {"mm1": ["m", "k", "k"], "mm2": ["m", "n", "n"]})
    dt = export_plan(same, graph, "dtensor", mesh="levels")
    assert dt["mesh"]["shape"] == [2, 4] and dt["mesh"]["dim_names"] == ["node", "gpu"]
    assert op(dt, "mm1")["inputs"][1]["placements"] == [R, S(0)]
    assert op(dt, "mm1")["outputs"][0]["placements"] == [S(0), P]
    mixed = plan_for(machine, CHAIN_PLAN)  # mm1 splits m at gpu0 but k at gpu1
    with pytest.raises(ExportError, match="mesh='cuts'"):
        export_plan(mixed, graph, "dtensor", mesh="levels")


def test_helpers():
    assert tuple_literal([[4, 2], [1, 2]]) == "((4, 2), (1, 2))"
    assert tuple_literal([[8]]) == "((8,),)"
    assert parse_placement("Shard(3)") == ("shard", 3)
    assert parse_placement(R) == ("replicate", None) and parse_placement(P) == ("partial", None)
    with pytest.raises(ExportError):
        parse_placement("Sharded(1)")


def test_apply_checks_the_format_and_the_mesh(chain):
    class FakeMesh:
        shape = (2, 4)

    with pytest.raises(ExportError, match="DTensor export"):
        apply_dtensor_plan(object(), chain["jax"], FakeMesh())
    with pytest.raises(ExportError, match="shape"):
        apply_dtensor_plan(object(), chain["dtensor"], FakeMesh())


# ---- the command line --------------------------------------------------------------------------

run = models.run_cli


def test_cli_export_round_trip(tmp_path, capsys):
    model = tmp_path / "chain.onnx"
    model.write_bytes(models.two_matmuls(m=64, k=128, n=256, n2=32).SerializeToString())
    machine = tmp_path / "m.yaml"
    machine.write_text(json.dumps(models.two_level(2, 4).to_dict()))  # JSON is valid YAML
    plan = tmp_path / "plan.json"
    code, _, err = run(["plan", str(model), "--machine", str(machine), "--json", str(plan)], capsys)
    assert code == 0, err
    data = json.loads(plan.read_text())
    data["model"] = "chain.onnx"  # the plan names the file; export finds it next to the plan
    plan.write_text(json.dumps(data))
    out = tmp_path / "ms.json"
    code, stdout, err = run(["export", str(plan), "--format", "mindspore", "--out", str(out)], capsys)
    assert code == 0, err
    assert "mindspore layouts of 2 operators on 8 devices" in stdout
    ms = json.loads(out.read_text())
    assert [o["name"] for o in ms["ops"]] == ["mm1", "mm2"]
    cuts = {o["name"]: o["cuts"] for o in data["ops"]}
    for o in ms["ops"]:  # the strategy is the plan's own
        assert o["strategy"] == [c[1] for c in cuts[o["name"]]]
    code, stdout, err = run(["export", str(plan), "--format", "jax", "--model", str(model)], capsys)
    assert code == 0, err
    assert json.loads(stdout)["format"] == "jax"


def test_cli_export_errors(tmp_path, capsys):
    code, _, err = run(["export", str(tmp_path / "none.json"), "--format", "jax"], capsys)
    assert code == 2 and "plan file not found" in err
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"model": "absent.onnx", "machine": {}, "ops": []}))
    code, _, err = run(["export", str(plan), "--format", "jax"], capsys)
    assert code == 2 and "--model" in err
    code, _, err = run(["export", str(plan), "--format", "onnx"], capsys)
    assert code == 2 and "invalid choice" in err


def test_export_and_cli_work_without_torch():
    """torch is optional: the export module, the CLI parser and a verify request without it."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import planner.plans.export, planner.verify\n"
            "from planner.cli.main import build_parser, main\n"
            "build_parser()\n"
            "assert not planner.verify.torch_available()\n"
            "sys.exit(main(['verify']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "requirements-verify.txt" in proc.stderr and "Traceback" not in proc.stderr
