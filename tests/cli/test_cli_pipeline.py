"""``plan`` with pipeline options and ``evaluate`` of a hand-made tensor x pipeline x data
configuration, on the GPT-2 small sample (12 layers, hidden 768) and a 2 nodes x 4 GPUs machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import models  # tests/models.py
from planner.onnx.importer import import_model
from planner.search.vocab import pad_vocabulary

REPO = Path(__file__).resolve().parents[2]
GPT2 = str(REPO / "sample_models" / "gpt2_small.onnx")
run = models.run_cli


@pytest.fixture(scope="module")
def machine_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("machine") / "two_nodes.yaml"
    path.write_text(models.two_level(2, 4).to_yaml())
    return str(path)


def hand_made(machine_file, tmp_path, capsys, *extra):
    out = tmp_path / "hand.json"
    code, stdout, err = run(["evaluate", GPT2, "--machine", machine_file, "--bind", "seq=128", "--tp", "4", "--pp", "2",
                             "--dp", "1", "--micro-batch-size", "2", "--global-batch", "8", *extra, "--json", out],
                            capsys)
    assert code == 0, err
    return json.loads(out.read_text()), stdout


def test_hand_made_configuration_is_priced_as_documented(machine_file, tmp_path, capsys):
    data, stdout = hand_made(machine_file, tmp_path, capsys, "--recompute", "full")
    p = data["pipeline"]
    # 8 samples in micro-batches of 2 on one data-parallel rank: 4 micro-batches, 2 stages
    assert (p["stages"], p["micro_batches"], p["interleave"], p["micro_batch_size"]) == (2, 4, 1, 2)
    assert set(p["stage_of_op"].values()) == {0, 1}
    # the 1F1B formula from the JSON's own parts: (m + P - 1) slowest-stage slots + gradient sync
    slowest = max(p["stage_seconds"])
    assert p["bubble_seconds"] == pytest.approx(slowest)
    assert data["iteration_seconds"] == pytest.approx(5 * slowest + max(p["gradient_sync_seconds"]), rel=1e-12)
    # model TFLOP/s: 3 x the forward FLOPs of the whole batch (imported separately, batch 8)
    # (GPT-2's vocabulary padded as Megatron does for 4-way tensor parallelism: 50,688 tokens)
    whole, _, padded = pad_vocabulary(import_model(GPT2, {"batch": 8, "seq": 128}), 4)
    assert padded == 50688 and data["vocabulary_padded"] == {"from": 50257, "to": 50688}
    expected = 3 * whole.flops_forward / (data["iteration_seconds"] * 8) / 1e12
    assert data["tflops_per_device"]["model"] == pytest.approx(expected, rel=1e-9)
    # full recomputation runs the forward pass once more: 4/3 of the model's FLOPs executed
    assert data["tflops_per_device"]["hardware"] / data["tflops_per_device"]["model"] == pytest.approx(4 / 3)
    assert "2 stages" in stdout and "TFLOP/s per device" in stdout
    assert data["stage_machine"]["levels"] == [{"name": "gpu", "arity": 4, "bandwidth_Bps": models.B1,
                                                "latency_s": models.L1}]


def test_interleaving_shrinks_the_bubble(machine_file, tmp_path, capsys):
    plain, _ = hand_made(machine_file, tmp_path, capsys)
    interleaved, _ = hand_made(machine_file, tmp_path, capsys, "--interleave", "2")
    p = interleaved["pipeline"]
    assert p["bubble_seconds"] == pytest.approx(max(p["stage_seconds"]) / 2)
    assert p["bubble_seconds"] < plain["pipeline"]["bubble_seconds"]


@pytest.mark.parametrize("args, message", [
    (["--tp", "3", "--pp", "2", "--dp", "1"], "must equal"),
    (["--tp", "2", "--pp", "3", "--dp", "1"], "must equal"),
    (["--tp", "8", "--pp", "2", "--dp", "1"], "must equal"),
    (["--tp", "1", "--pp", "1", "--dp", "8", "--micro-batch-size", "3"], "not a multiple"),
    (["--tp", "4", "--pp", "2"], "missing: --dp"),
    (["--tp", "0", "--pp", "2", "--dp", "4"], "must be >= 1"),
])
def test_bad_hand_made_configurations_say_what_to_fix(machine_file, capsys, args, message):
    argv = ["evaluate", GPT2, "--machine", machine_file, "--bind", "seq=128", *args]
    if "--micro-batch-size" not in args:
        argv += ["--micro-batch-size", "1"]
    argv += ["--global-batch", "8"]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_plan_with_fixed_pipeline_options_round_trips_through_evaluate(machine_file, tmp_path, capsys):
    out = tmp_path / "plan.json"
    code, stdout, err = run(["plan", GPT2, "--machine", machine_file, "--bind", "batch=8", "--bind", "seq=128",
                             "--pipeline-stages", "2", "--micro-batches", "4", "--recompute", "selective", "--zero", "1",
                             "--json", out], capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    p = data["pipeline"]
    assert (p["stages"], p["micro_batches"], p["recompute"], p["zero"]) == (2, 4, "selective", 1)
    again = tmp_path / "again.json"
    code, _, err = run(["evaluate", GPT2, "--machine", machine_file, "--plan", out, "--json", again], capsys)
    assert code == 0, err
    assert json.loads(again.read_text())["iteration_seconds"] == pytest.approx(data["iteration_seconds"], rel=1e-9)


@pytest.mark.parametrize("args, message", [
    (["--pipeline-stages", "3"], "3 pipeline stages does not fit"),
    (["--micro-batches", "3"], "do not divide the batch"),
    (["--micro-batches", "0"], "must be >= 1"),
    (["--interleave", "2", "--pipeline-stages", "1"], "interleaving needs pipeline stages"),
])
def test_bad_pipeline_options_say_what_to_fix(machine_file, capsys, args, message):
    code, _, err = run(["plan", GPT2, "--machine", machine_file, "--bind", "batch=8", "--bind", "seq=128", *args], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_export_of_a_pipelined_plan_is_per_stage(machine_file, tmp_path, capsys):
    out = tmp_path / "plan.json"
    code, _, err = run(["plan", GPT2, "--machine", machine_file, "--bind", "batch=8", "--bind", "seq=128",
                        "--pipeline-stages", "2", "--micro-batches", "4", "--json", out], capsys)
    assert code == 0, err
    exported = tmp_path / "dtensor.json"
    code, _, err = run(["export", out, "--format", "dtensor", "--model", GPT2, "--out", exported], capsys)
    assert code == 0, err
    data = json.loads(exported.read_text())
    assert data["devices"] == 4  # one stage: the 4 GPUs of a node
    assert set(data["stage_of_op"].values()) == {0, 1}
    assert "2-stage pipeline" in data["notes"][0]


def test_hand_made_with_data_parallelism_round_trips_through_evaluate(machine_file, tmp_path, capsys):
    # tensor 4 inside a node, 2 data-parallel replicas across the nodes, 2 micro-batches of 2 per
    # replica: the file records the whole batch (8), so evaluate --plan prices the same iteration
    out = tmp_path / "hand.json"
    code, _, err = run(["evaluate", GPT2, "--machine", machine_file, "--bind", "seq=128", "--tp", "4", "--pp", "1",
                        "--dp", "2", "--micro-batch-size", "2", "--global-batch", "8", "--json", out], capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["bindings"]["batch"] == 8
    assert (data["pipeline"]["micro_batches"], data["pipeline"]["micro_batch_size"]) == (2, 4)
    again = tmp_path / "again.json"
    code, _, err = run(["evaluate", GPT2, "--machine", machine_file, "--plan", out, "--json", again], capsys)
    assert code == 0, err
    assert json.loads(again.read_text())["iteration_seconds"] == pytest.approx(data["iteration_seconds"], rel=1e-9)


def test_evaluate_plan_reproduces_a_hand_made_configuration_that_shares_a_level(machine_file, tmp_path, capsys):
    """Tensor 2 and data 2 share the 4 GPUs of a node: the stage machine is 2 ``gpu (data)`` x 2
    ``gpu (tensor)``. ``evaluate --plan`` of the file must price the same stage machine, so the
    same cuts, and give the same iteration time to the last bit."""
    out = tmp_path / "shared.json"
    code, _, err = run(["evaluate", GPT2, "--machine", machine_file, "--bind", "seq=128", "--tp", "2", "--pp", "2",
                        "--dp", "2", "--micro-batch-size", "1", "--global-batch", "8", "--json", out], capsys)
    assert code == 0, err
    written = json.loads(out.read_text())
    assert [lv["name"] for lv in written["stage_machine"]["levels"]] == ["gpu (data)", "gpu (tensor)"]
    again = tmp_path / "again.json"
    code, stdout, err = run(["evaluate", GPT2, "--machine", machine_file, "--plan", out, "--json", again], capsys)
    assert code == 0, err
    read_back = json.loads(again.read_text())
    assert read_back["stage_machine"] == written["stage_machine"]
    assert read_back["iteration_seconds"] == written["iteration_seconds"]
    assert "cuts for another machine" not in stdout
