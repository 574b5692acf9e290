"""The plan's name follows what most of the work (the FLOPs) does and names the exceptions
(planner/plans/parallelism.py), the same in the command line, the JSON, the report and the
Overview sentence.

The hand-built plans start from GPT-2 small's data-parallel plan on one DGX A100 (8 GPUs, three
2-way cuts) and change a few operators' cuts. Which side of the 10% exception share a change
falls is worked out here from the operators' dimensions (a MatMul does ``2 b m n k`` FLOPs, a
Gather none), not from the module's FLOP counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import models  # tests/models.py

REPO = Path(__file__).resolve().parents[2]
GPT2 = str(REPO / "sample_models" / "gpt2_small.onnx")
LLAMA = str(REPO / "sample_models" / "llama3_8b.onnx")
DGX = str(REPO / "machines" / "dgx_a100.yaml")  # 1 node x 8 GPUs
SLOW = str(REPO / "machines" / "a100_2x8_slow.yaml")  # 2 nodes x 8 GPUs
BINDS = ["--bind", "batch=16", "--bind", "seq=64"]
run = models.run_cli


def _line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("parallelism"))[13:]


def _dp_plan(tmp_path: Path, capsys) -> dict:
    path = tmp_path / "dp.json"
    code, _, err = run(["plan", GPT2, "--machine", DGX, *BINDS, "--algorithm", "data_parallel", "--json", path], capsys)
    assert code == 0, err
    return json.loads(path.read_text())


def _evaluate(tmp_path: Path, capsys, data: dict) -> tuple[str, dict]:
    plan, out_json = tmp_path / "hand.json", tmp_path / "out.json"
    plan.write_text(json.dumps({"ops": [{"name": o["name"], "cuts": o["cuts"]} for o in data["ops"]]}))
    code, out, err = run(["evaluate", GPT2, "--machine", DGX, "--plan", plan, *BINDS, "--json", out_json], capsys)
    assert code == 0, err
    return out, json.loads(out_json.read_text())


def _matmul_flops(op: dict) -> int:
    d = op["dims"]
    return 2 * d["b0"] * d.get("b1", 1) * d["m"] * d["n"] * d["k"]


def test_pure_data_parallelism_has_no_exceptions(tmp_path, capsys):
    data = _dp_plan(tmp_path, capsys)
    assert data["parallelism"]["name"] == "DP 8" and data["parallelism"]["exceptions"] == []


def test_megatron_tp8_x_dp_is_named_as_configured(tmp_path, capsys):
    code, out, err = run(["evaluate", LLAMA, "--machine", SLOW, "--tp", 8, "--pp", 1, "--dp", 2,
                          "--micro-batch-size", 1, "--global-batch", 8, "--bind", "seq=64"], capsys)
    assert code == 0, err
    assert _line(out) == "DP 2 x TP 8 (column-row)"  # Megatron's layout has no exception to name


def test_data_parallel_with_the_embedding_split_by_hidden_is_dp_with_one_exception(tmp_path, capsys):
    # the default view's shape: every operator splits the batch but the token embedding, whose
    # table is split by its 768 columns (d1) at all three cuts; a Gather does no FLOPs, so the
    # batch split carries 100% of every cut's FLOPs and the embedding is an exception
    data = _dp_plan(tmp_path, capsys)
    for op in data["ops"]:
        if op["name"] == "embed.tokens":
            op["cuts"] = [["gpu", "d1", 2]] * 3
    out, result = _evaluate(tmp_path, capsys, data)
    expected = "DP 8; embed.tokens split by hidden 8 over gpu"
    assert _line(out) == expected and result["parallelism"]["name"] == expected
    assert result["parallelism"]["exceptions"] == ["embed.tokens split by hidden 8 over gpu"]
    assert result["parallelism"]["levels"][0]["exceptions"] == ["embed.tokens"]
    # per layer: the layers are plain DP; the exception sits outside them
    layers = {lv["layers"]: lv["name"] for lv in result["parallelism"]["layers"]}
    assert layers == {"outside the layers": expected, "layer0-11": "DP 8"}


def test_mlps_split_by_hidden_inside_data_parallel_layers_are_truly_hybrid(tmp_path, capsys):
    # at the first cut every MLP splits its hidden (fc1 column, fc2 row), the rest the batch
    data = _dp_plan(tmp_path, capsys)
    mlp = {op["name"]: op for op in data["ops"] if op["name"].endswith(("mlp.fc1", "mlp.fc2"))}
    for name, op in mlp.items():
        op["cuts"][0] = ["gpu", "n" if name.endswith("fc1") else "k", 2]
    matmuls = [op for op in data["ops"] if op["op_type"] == "MatMul"]
    share = sum(_matmul_flops(op) for op in mlp.values()) / sum(_matmul_flops(op) for op in matmuls)
    in_layer = [op for op in matmuls if op["name"].startswith("layer0.")]
    layer_share = sum(_matmul_flops(op) for op in in_layer if "mlp" in op["name"]) / sum(map(_matmul_flops, in_layer))
    assert 0.4 < share < 0.5 and 0.6 < layer_share < 0.7  # both far above an exception's 10%
    out, result = _evaluate(tmp_path, capsys, data)
    assert _line(out) == "DP 4 x hybrid 2 (batch / hidden) over gpu"
    layers = {lv["layers"]: lv["name"] for lv in result["parallelism"]["layers"]}
    assert layers["layer0-11"] == "DP 4 x hybrid 2 (batch / hidden) over gpu"
    assert result["parallelism"]["exceptions"] == []


def test_the_report_and_the_overview_sentence_agree_with_the_name(tmp_path, capsys):
    from explorer.views.overview import where_split
    from planner.api import evaluate_plan
    from planner.machine.tree import load_machine
    from planner.onnx.importer import import_model
    from planner.plans.report_doc import parallelism_lines

    data = _dp_plan(tmp_path, capsys)
    for op in data["ops"]:
        if op["name"] == "embed.tokens":
            op["cuts"] = [["gpu", "d1", 2]] * 3
    graph = import_model(GPT2, {"batch": 16, "seq": 64})
    result = evaluate_plan(graph, load_machine(DGX), {"ops": [{"name": o["name"], "cuts": o["cuts"]}
                                                              for o in data["ops"]]})
    assert parallelism_lines(result)[0] == "DP 8; embed.tokens split by hidden 8 over gpu"
    # the token embedding holds 50,257 x 768 of GPT-2's 124M weights (31%), but it is the named
    # exception: the sentence says what the rest does
    assert where_split(result) == "the batch over the 8 gpus"
