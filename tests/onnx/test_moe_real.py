"""Real Mixtral exports (tests/real_exports.py: 2 layers, hidden 32, 4 experts of FFN 80, top-2,
both exporters, symbolic batch and sequence, weights stripped) get expert parallelism: their
gathered MoE layers are rewritten at import into the stacked form (planner/onnx/moe_rewrite.py).

Hand counts. Tokens T = batch x seq. Each MoE layer's experts: a gate-up projection [E, 2F, H] and
a down projection [E, H, F], each token through k of them: 2 T k H 2F + 2 T k F H FLOPs forward.
Expert parameters per layer: E x 2F x H + E x H x F = 4 x 160 x 32 + 4 x 32 x 80 = 30,720.
All-to-all (planner/cost/alltoall.py): a device with t tokens sends S = t x k x H x bytes per
all-to-all, of which (E_p - 1) / E_p leaves it; dispatch and combine, forward and backward.
"""

from __future__ import annotations

import re

import onnx
import pytest
from onnx import TensorProto, helper

from planner.api import plan_model
from planner.cli.main import main
from planner.cost.moe import find_moe_layers, moe_notes
from planner.machine.tree import Device, Level, Machine
from planner.onnx import importer
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.plans.parallelism import describe
from planner.search.configurations import evaluate_configuration
from real_exports import EXPORTERS, HIDDEN, INTERMEDIATE, LAYERS, MOE_FFN, SHARED_FFN

E, K, H, F = 4, 2, HIDDEN, INTERMEDIATE
FIXED = dict(precision="bf16", recompute="none", zero=0)
REWRITTEN = f"MoE: {E} experts, top-{K}, rewritten from the gathered form ({LAYERS} layers; capacity factor 1)"


@pytest.fixture(scope="module")
def corpus(real_corpus):  # tests/conftest.py: shared with tests/test_real_exports.py
    return real_corpus


def _path(corpus, exporter):
    return str(corpus.get("mixtral", exporter).path)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_rewritten_with_the_parameters_and_flops_by_hand(corpus, exporter, monkeypatch):
    graph = import_model(_path(corpus, exporter), {"batch": 4, "seq": 128})
    assert [n.startswith(REWRITTEN) for n in moe_notes(graph)] == [True]
    layers = find_moe_layers(graph)
    assert [(m.form, m.experts, m.top_k) for m in layers] == [("stacked", E, K)] * LAYERS
    # by hand: embedding and lm_head 2 x 96 x 32; per layer attention 32 x (32 + 16 + 16 + 32), two norms
    # 2 x 32, router 32 x 4, experts 30,720; final norm 32: 6,144 + 2 x 33,984 + 32 = 74,144
    assert graph.parameter_count == corpus.get("mixtral", exporter).torch_parameters == 74_144
    t = 4 * 128
    experts = [op.flops for name, op in graph.operators.items() if name.endswith(("experts.gate_up", "experts.down"))]
    assert sum(experts) == LAYERS * (2 * t * K * H * 2 * F + 2 * t * K * F * H) == 31_457_280
    # the gathered form as exported does the same matmul work: the totals agree within 0.1%
    monkeypatch.setattr(importer, "rewrite_gathered_moe", lambda model, shapes: (model, []))
    written = import_model(_path(corpus, exporter), {"batch": 4, "seq": 128})
    assert [m.form for m in find_moe_layers(written)] == ["gathered"] * LAYERS
    assert written.parameter_count == graph.parameter_count
    assert graph.flops_forward == pytest.approx(written.flops_forward, rel=1e-3)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_inspect_and_the_default_plan_say_so(corpus, exporter, capsys):
    path = _path(corpus, exporter)
    assert main(["inspect", path, "--bind", "batch=16", "--bind", "seq=128"]) == 0
    assert f"moe          {REWRITTEN}" in capsys.readouterr().out
    assert main(["plan", path, "--machine", "machines/dgx_a100.yaml", "--bind", "batch=16", "--bind", "seq=128"]) == 0
    assert f"moe          {REWRITTEN}" in capsys.readouterr().out


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_qwen2_moe_is_rewritten_and_its_shared_expert_stays_dense(corpus, exporter):
    """Qwen2-MoE (4 routed experts of FFN 40, top-2, one shared expert of FFN 56 with a sigmoid gate).
    Parameters by hand: embedding and lm_head 2 x 96 x 32; per layer attention with q, k, v biases
    3,136, norms 64, router 128, routed experts 4 x 80 x 32 + 4 x 32 x 40 = 15,360, shared expert
    3 x 32 x 56 = 5,376 and its gate 32; final norm 32: 6,144 + 2 x 24,096 + 32 = 54,368."""
    export = corpus.get("qwen2_moe", exporter)
    graph = import_model(str(export.path), {"batch": 4, "seq": 128})
    assert moe_notes(graph) == [REWRITTEN + ": expert parallelism available"]
    assert graph.parameter_count == export.torch_parameters == 54_368
    t, f = 4 * 128, MOE_FFN
    experts = [op.flops for name, op in graph.operators.items() if name.endswith(("experts.gate_up", "experts.down"))]
    assert sum(experts) == LAYERS * (2 * t * K * H * 2 * f + 2 * t * K * f * H) == 15_728_640
    shared = [name for name, op in graph.operators.items() if op.op_type in ("MatMul", "Gemm")
              and any(graph.tensors[u.tensor].shape in ((H, SHARED_FFN), (SHARED_FFN, H)) for u in op.inputs)]
    assert len(shared) == 3 * LAYERS  # gate, up and down of the shared expert, as exported
    assert not any("moe_rewrite" in name for name in shared)


def _machine(flops=1e14, node_bw=1e10, latency=1e-5) -> Machine:
    return Machine("2x4", Device("gpu", flops, 80e9), (Level("node", 2, node_bw, latency),
                                                       Level("gpu", 4, node_bw * 10, latency / 10)))


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("ep", [2, 4])
def test_evaluate_ep_prices_the_all_to_all_by_hand(corpus, exporter, ep):
    """DP 8 x EP ep on 2 nodes x 4 GPUs, one sequence of 16 tokens per device, bf16: EP takes the
    innermost data-parallel cuts, all on the GPU level. S = 16 x 2 x 32 x 2 = 2,048 bytes; over the
    GPUs leave 1/2 (EP 2) or 3/4 (EP 4) of it, twice (forward and backward)."""
    path = _path(corpus, exporter)
    graph = import_model(path, {"batch": 8, "seq": 16})
    options = PlanOptions(algorithm="megatron", **FIXED)
    result, dense = (evaluate_configuration(graph, _machine(), 1, 1, 8, 1, 8, options, rebinder=rebinder_for(path),
                                            expert=e) for e in (ep, 1))
    s = 16 * K * H * 2
    moved = {name: vec for name, vec in result.cost.redistribution.items() if "moe_rewrite" in name and any(vec[1:3])}
    assert len(moved) == 2 * LAYERS  # dispatch (the first expert einsum) and combine (its flattening)
    for name, vec in moved.items():
        assert name.endswith(("experts.gate_up", "combine.flatten"))
        assert vec[1:5].tolist() == pytest.approx([0, 2 * s * (ep - 1) / ep, 0, 2])
    # each device keeps 1/ep of the expert weights (bf16)
    assert dense.memory.parameters - result.memory.parameters == pytest.approx(LAYERS * 30_720 * (ep - 1) / ep * 2)


def test_evaluate_ep_on_the_command_line(corpus, capsys):
    code = main(["evaluate", _path(corpus, "dynamo"), "--machine", "machines/dgx_a100.yaml", "--tp", "1", "--pp", "1",
                 "--dp", "8", "--ep", "4", "--micro-batch-size", "1", "--global-batch", "8", "--bind", "seq=16"])
    assert code == 0
    assert "EP 4" in capsys.readouterr().out


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_the_search_chooses_expert_parallelism_where_it_wins(corpus, exporter):
    """Slow devices and links, 2 sequences of 16 tokens per node: the experts' gradients (61,440
    parameters) cost more to all-reduce over 8 devices than the tokens' all-to-all, and the search
    splits the experts over the GPUs of each node. The TorchScript file's layers are named
    (``layers.0``), so their parallelism reads ``DP 8 x EP 4``; the dynamo file's node names carry
    no layer index, so its plan is named per level (by the FLOP-weighted naming of
    planner.plans.parallelism: an EP degree, or experts among a hybrid level's axes)."""
    path = _path(corpus, exporter)
    result = plan_model(import_model(path, {"batch": 8, "seq": 16}), _machine(1e11, 1e9, 1e-7),
                        PlanOptions(algorithm="drec+", pipeline_stages=1, micro_batches=1, **FIXED),
                        rebinder=rebinder_for(path))
    names = [layer["name"] for layer in describe(result)["layers"]]
    if exporter == "torchscript":
        assert any("DP 8 x EP 4" in name for name in names), names
    else:
        assert any(re.search(r"\bEP \d|experts\)? over", name) for name in names), names


def _one_weight_moe(top_k: int) -> onnx.ModelProto:
    """A routing other than Mixtral's: x[2, 4, 8] -> tokens [8, 8] -> router [8, 4] -> Softmax ->
    TopK(top_k); ONE expert weight [4, 8, 8] gathered by the indices (no down projection), a
    batched matmul with each token's copies, summed over the top-k -> [2, 4, 8]."""
    shapes = {"flat": [8, 8], "rows": [-1], "axis1": [1], "copies": [8, top_k, 8], "column": [8 * top_k, 8, 1],
              "routed": [8, top_k, 8], "out": [2, 4, 8]}
    inits = [helper.make_tensor("router", TensorProto.FLOAT, [8, 4], [0.0] * 32),
             helper.make_tensor("experts", TensorProto.FLOAT, [4, 8, 8], [0.0] * 256),
             helper.make_tensor("k", TensorProto.INT64, [1], [top_k])]
    inits += [helper.make_tensor(n, TensorProto.INT64, [len(v)], v) for n, v in shapes.items()]
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["t"]),
             helper.make_node("MatMul", ["t", "router"], ["scores"]),
             helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
             helper.make_node("TopK", ["p", "k"], ["g", "i"], axis=-1),
             helper.make_node("Reshape", ["i", "rows"], ["ri"]),
             helper.make_node("Gather", ["experts", "ri"], ["w"], axis=0),
             helper.make_node("Expand", ["t1", "copies"], ["tk"]),
             helper.make_node("Reshape", ["tk", "column"], ["tc"]),
             helper.make_node("MatMul", ["w", "tc"], ["y"]),
             helper.make_node("Reshape", ["y", "routed"], ["yk"]),
             helper.make_node("ReduceSum", ["yk", "axis1"], ["o"], keepdims=0),
             helper.make_node("Reshape", ["o", "out"], ["y3"])]
    nodes.insert(6, helper.make_node("Unsqueeze", ["t", "axis1"], ["t1"]))
    graph = helper.make_graph(nodes, "moe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8])],
                              [helper.make_tensor_value_info("y3", TensorProto.FLOAT, [2, 4, 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("top_k, reason", [
    (2, "expected two stacked weights [E=4, ...] gathered by the routed indices (gate-up and down), found 1"),
    (4, "top-4 of 4 experts is not a routing (top-k must be below the experts)"),
])
def test_another_routing_is_planned_as_written_with_a_note(tmp_path, top_k, reason, capsys):
    path = tmp_path / "moe.onnx"
    path.write_bytes(_one_weight_moe(top_k).SerializeToString())
    graph = import_model(path)
    [note] = moe_notes(graph)
    assert note.startswith("MoE not rewritten: the MoE layer routed by ") and reason in note
    assert note.endswith("; planned as written, without expert parallelism")
    assert [m.form for m in find_moe_layers(graph)] == (["gathered"] if top_k < 4 else [])
    assert main(["inspect", str(path)]) == 0
    assert f"moe          {note}" in capsys.readouterr().out


def test_a_failing_rewrite_leaves_the_export_as_written(corpus, monkeypatch):
    def broken(model, shapes):
        raise ValueError("an export nobody foresaw")

    monkeypatch.setattr(importer, "rewrite_gathered_moe", broken)
    graph = import_model(_path(corpus, "torchscript"), {"batch": 4, "seq": 128})
    assert moe_notes(graph) == ["MoE not rewritten (ValueError: an export nobody foresaw); planned as written, "
                                "without expert parallelism"]
    assert [m.form for m in find_moe_layers(graph)] == ["gathered"] * LAYERS
