"""``python -m planner plan`` and ``evaluate``: the JSON schema, round trips and usage errors.

Most cases call ``planner.cli.main.main`` in-process (fast); two run a real subprocess.
Model: sample_models/mlp.onnx, input [batch, 1024], fc1 1024->4096, relu1, fc2 4096->4096,
relu2, fc3 4096->1024, output (Identity); 25,175,040 parameters.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import models  # tests/models.py

REPO = Path(__file__).resolve().parents[2]
MLP = str(REPO / "sample_models" / "mlp.onnx")
DGX = str(REPO / "machines" / "dgx_a100.yaml")
SLOW = str(REPO / "machines" / "a100_2x8_slow.yaml")

TOP_KEYS = {"model", "machine", "algorithm", "mode", "devices", "search_seconds", "cost_seconds",
            "memory_bytes_per_device", "fits_in_memory", "data_parallel_cost_seconds", "ops"}
OP_KEYS = {"name", "op_type", "dims", "splits", "cuts", "cost_seconds"}
TERMS = ("compute", "communication", "redistribution")


run = models.run_cli


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """One real subprocess run of the documented command, from the repository root."""
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "plan", "sample_models/mlp.onnx", "--machine",
         "machines/dgx_a100.yaml", "--bind", "batch=64", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    return proc, out


def test_plan_subprocess_writes_documented_json(planned):
    proc, out = planned
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(out.read_text())
    assert TOP_KEYS <= set(data)
    assert data["model"] == "mlp.onnx"
    assert data["algorithm"] == "drec+" and data["mode"] == "train" and data["devices"] == 8
    assert isinstance(data["machine"], (dict, str))
    assert isinstance(data["search_seconds"], float) and data["search_seconds"] >= 0
    cost = data["cost_seconds"]
    assert set(TERMS) | {"total"} <= set(cost)
    assert cost["total"] == pytest.approx(sum(cost[t] for t in TERMS), rel=1e-12)
    mem = data["memory_bytes_per_device"]
    assert {"peak", "parameters_and_optimizer", "activations"} <= set(mem)
    assert mem["peak"] >= mem["parameters_and_optimizer"] + mem["activations"] - 1e-6
    assert isinstance(data["fits_in_memory"], bool)
    assert isinstance(data["data_parallel_cost_seconds"], float)
    assert data["cost_seconds"]["total"] <= data["data_parallel_cost_seconds"] * (1 + 1e-9)

    assert [op["name"] for op in data["ops"]] == ["fc1", "relu1", "fc2", "relu2", "fc3", "output"]
    schedule = [["gpu", 2]] * 3  # dgx_a100: one level of 8 = three cuts of 2
    for op in data["ops"]:
        assert OP_KEYS <= set(op)
        assert set(TERMS) <= set(op["cost_seconds"])
        assert [[c[0], c[2]] for c in op["cuts"]] == schedule
        for dim, size in op["dims"].items():
            f = math.prod(c[2] for c in op["cuts"] if c[1] == dim)
            assert op["splits"].get(dim, 1) == f and size % f == 0
    fc1 = data["ops"][0]
    assert fc1["op_type"] == "Gemm" and fc1["dims"] == {"m": 64, "n": 4096, "k": 1024}  # k included
    for t in TERMS:
        assert sum(op["cost_seconds"][t] for op in data["ops"]) == pytest.approx(cost[t], rel=1e-9, abs=1e-18)


def test_evaluate_reproduces_the_plan(planned, tmp_path, capsys):
    _, plan_json = planned
    out = tmp_path / "eval.json"
    code, stdout, err = run(["evaluate", MLP, "--machine", DGX, "--bind", "batch=64", "--plan", str(plan_json),
                             "--json", str(out)], capsys)
    assert code == 0, err
    original = json.loads(plan_json.read_text())
    again = json.loads(out.read_text())
    assert again["cost_seconds"]["total"] == pytest.approx(original["cost_seconds"]["total"], rel=1e-12)
    assert [op["cuts"] for op in again["ops"]] == [op["cuts"] for op in original["ops"]]


def test_data_parallel_json_by_hand(tmp_path, capsys):
    # Data parallel on 8 A100s (F = 312e12, B = 300e9 B/s, L = 5e-6 s), batch 64, train, fp32.
    # Parameters: fc1 1024*4096 + 4096 = 4,198,400; fc2 4096*4096 + 4096 = 16,781,312;
    # fc3 4096*1024 + 1024 = 4,195,328; total 25,175,040 = 100,700,160 B.
    # Communication: six tensors (3 weights, 3 biases) each all-reduced over 8:
    #   2*(7/8)*100,700,160 B / 300e9 = 176,225,280 / 3e11 = 5.874176e-4 s, plus 6 * 2 * 5e-6 = 6e-5 s.
    # Compute: with 8 samples per device every operator is memory-bound on an A100 (312e12 FLOP/s
    #   against 2.039e12 B/s is 153 FLOP per byte; fc2 does 2*8*4096*4096 = 268M FLOPs but moves
    #   67M bytes), so each is priced by the bytes it reads and writes, in fp32, per pass:
    #   fc1 (8*1024 + 1024*4096 + 4096 + 8*4096) * 4 = 16,957,440; relu1 2*8*4096*4 = 262,144;
    #   fc2 (8*4096 + 4096*4096 + 4096 + 8*4096) * 4 = 67,387,392; relu2 262,144;
    #   fc3 (8*4096 + 4096*1024 + 1024 + 8*1024) * 4 = 16,945,152; output Identity 2*8*1024*4 = 65,536
    #   -> 101,879,808 B, three passes (forward, two backward products).
    # Memory: 16 B per parameter with Adam in fp32 (4 weight + 4 gradient + 8 moments) =
    #   402,800,640 B; activations the backward pass reads, 1/8 of the batch: the inputs of relu1,
    #   fc2, relu2 and fc3 (the outputs of fc1, relu1, fc2, relu2), 8*4096*4 = 131,072 B each; the
    #   float input fc1 keeps for its weight gradient, 8*1024*4 = 32,768 B; the model's output, which
    #   the loss reads, 8*1024*4 = 32,768 B (the output Identity keeps nothing) -> 589,824 B.
    out = tmp_path / "dp.json"
    code, _, err = run(["plan", MLP, "--machine", DGX, "--bind", "batch=64", "--algorithm", "data_parallel",
                        "--bucket-mb", "0",  # one all-reduce per tensor, as counted above
                        "--no-overlap-gradient-sync",  # all of it after the backward pass
                        "--json", str(out)], capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    cost = data["cost_seconds"]
    assert cost["communication"] == pytest.approx(176_225_280 / 3e11 + 6e-5, rel=1e-12)
    assert cost["compute"] == pytest.approx(3 * 101_879_808 / 2.039e12, rel=1e-12)
    assert cost["redistribution"] == 0
    assert data["data_parallel_cost_seconds"] == pytest.approx(cost["total"], rel=1e-12)
    mem = data["memory_bytes_per_device"]
    assert mem["parameters_and_optimizer"] == 402_800_640
    assert mem["activations"] == 589_824
    assert mem["peak"] == 402_800_640 + 589_824
    assert data["fits_in_memory"] is True


def test_evaluate_with_splits_only_places_them(tmp_path, capsys):
    plan = tmp_path / "splits.json"
    plan.write_text(json.dumps({"ops": [
        {"name": "fc1", "splits": {"n": 8}},
        {"name": "relu1", "splits": {"d1": 8}},
        {"name": "fc2", "splits": {"k": 8}},
        {"name": "relu2", "splits": {"d0": 2}},  # 2 of 8: the other cuts stay unsplit
        {"name": "fc3", "splits": {"m": 8}},
        {"name": "output", "splits": {"d0": 8}},
    ]}))
    out = tmp_path / "eval.json"
    code, stdout, err = run(["evaluate", MLP, "--machine", DGX, "--bind", "batch=64", "--plan", str(plan),
                             "--json", str(out)], capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    splits = {op["name"]: {d: f for d, f in op["splits"].items() if f > 1} for op in data["ops"]}
    assert splits == {"fc1": {"n": 8}, "relu1": {"d1": 8}, "fc2": {"k": 8}, "relu2": {"d0": 2},
                      "fc3": {"m": 8}, "output": {"d0": 8}}
    assert "placed" in stdout and "splits" in stdout
    assert any("placed" in note for note in data.get("notes", []))


def test_evaluate_lists_operators_left_out(tmp_path, capsys):
    plan = tmp_path / "partial.json"
    plan.write_text(json.dumps({"ops": [{"name": "fc1", "splits": {"n": 8}}]}))
    code, stdout, err = run(["evaluate", MLP, "--machine", DGX, "--bind", "batch=64", "--plan", str(plan)],
                            capsys)
    assert code == 0, err
    # fc2 and fc3 are not layout-following: replicated, and named
    assert "replicated" in stdout and "fc2" in stdout and "fc3" in stdout
    assert "propagated" in stdout


def test_evaluate_names_the_propagated_operators(tmp_path, capsys):
    plan = tmp_path / "partial.json"
    plan.write_text(json.dumps({"ops": [{"name": "fc1", "splits": {"n": 8}}]}))
    code, stdout, err = run(["evaluate", MLP, "--machine", DGX, "--bind", "batch=64", "--plan", str(plan)],
                            capsys)
    assert code == 0, err
    note = next(line for line in stdout.splitlines() if "propagated" in line)
    assert all(name in note for name in ("relu1", "relu2", "output"))


# ---- usage errors: exit code 2, a message, no traceback ------------------------------------------

def assert_usage_error(code, err, *words):
    assert code == 2
    assert "Traceback" not in err
    assert err.strip()
    for w in words:
        assert w in err, (w, err)


def test_missing_model(capsys):
    code, _, err = run(["plan", "no/such/model.onnx", "--machine", DGX, "--bind", "batch=64"], capsys)
    assert_usage_error(code, err, "no/such/model.onnx")


def test_missing_machine(capsys):
    code, _, err = run(["plan", MLP, "--machine", "machines/nope.yaml", "--bind", "batch=64"], capsys)
    assert_usage_error(code, err, "nope.yaml")


def test_unknown_algorithm(capsys):
    code, _, err = run(["plan", MLP, "--machine", DGX, "--bind", "batch=64", "--algorithm", "greedy"], capsys)
    assert_usage_error(code, err, "greedy")


def test_unbound_dims(capsys):
    code, _, err = run(["plan", MLP, "--machine", DGX], capsys)
    assert_usage_error(code, err, "batch")


def test_unknown_operator_in_plan(tmp_path, capsys):
    plan = tmp_path / "bad_op.json"
    plan.write_text(json.dumps({"ops": [{"name": "fc9", "splits": {"m": 8}}]}))
    code, _, err = run(["evaluate", MLP, "--machine", DGX, "--bind", "batch=64", "--plan", str(plan)], capsys)
    assert_usage_error(code, err, "fc9")


def test_bad_json_plan(tmp_path, capsys):
    plan = tmp_path / "bad.json"
    plan.write_text('{"ops": [')
    code, _, err = run(["evaluate", MLP, "--machine", DGX, "--bind", "batch=64", "--plan", str(plan)], capsys)
    assert_usage_error(code, err, "bad.json")


def test_missing_plan_file(tmp_path, capsys):
    code, _, err = run(["evaluate", MLP, "--machine", DGX, "--bind", "batch=64", "--plan",
                        str(tmp_path / "absent.json")], capsys)
    assert_usage_error(code, err, "absent.json")


def test_exact_on_a_big_graph_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "planner", "plan", "sample_models/resnet50.onnx", "--machine",
         "machines/a100_2x8_slow.yaml", "--bind", "batch=64", "--algorithm", "exact"],  # residuals: not a chain
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert_usage_error(proc.returncode, proc.stderr, "bound")
