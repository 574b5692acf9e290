"""Gradient buckets (issue 10, item 6): latency paid per bucket, not per tensor, everywhere the
options are given (PlanOptions, the CLI's --bucket-mb, the app's URL).

A data-parallel all-reduce of a tensor of ``S`` bytes over ``f`` devices moves ``2 (f-1)/f S``
bytes per device; its two supersteps are shared by the tensors of a bucket of ``B`` bytes, so a
tensor pays ``2 min(1, S/B)`` of them (a tensor larger than a bucket is a bucket of its own).
"""

from __future__ import annotations

import json

import pytest
from onnx import TensorProto, helper

import models  # tests/models.py
from explorer.sources import sample_source
from explorer.url_state import decode_url_state, encode_url_state
from planner.cost.result import cost_model_for
from planner.options import OptionsError, PlanOptions
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.cost.baseline import data_parallel_strategies

CHANNELS = [3, 16, 32, 32, 64]


def cnn(identity_biases: bool, batch: int = 8):
    """Conv(3x3, pad 1) + Relu layers; with ``identity_biases`` each bias reaches its Conv through
    an Identity, as the legacy exporter writes de-duplicated biases."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", CHANNELS[0], 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CHANNELS[-1], 16, 16])
    nodes, inits, cur = [], [], "x"
    for i, (cin, cout) in enumerate(zip(CHANNELS, CHANNELS[1:])):
        inits += [models._weight(f"W{i}", [cout, cin, 3, 3]), models._weight(f"b{i}", [cout])]
        bias = f"b{i}"
        if identity_biases:
            nodes.append(helper.make_node("Identity", [bias], [f"b{i}.copy"], name=f"bias{i}"))
            bias = f"b{i}.copy"
        nodes.append(helper.make_node("Conv", [cur, f"W{i}", bias], [f"c{i}"], name=f"conv{i}",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        out = "y" if i == len(CHANNELS) - 2 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [out], name=f"relu{i}"))
        cur = out
    graph = helper.make_graph(nodes, "cnn", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return import_model(model, {"batch": batch})


def tensor_bytes() -> list[int]:
    """Each weight and bias in fp32: cout*cin*9*4 and cout*4 bytes."""
    out = []
    for cin, cout in zip(CHANNELS, CHANNELS[1:]):
        out += [cout * cin * 9 * 4, cout * 4]
    return out


@pytest.mark.parametrize("bucket_mb", [0, 0.004, 25])
@pytest.mark.parametrize("identity", [False, True])
def test_cnn_data_parallel_gradient_sync_by_hand(identity, bucket_mb):
    f = 4
    cm = cost_model_for(cnn(identity), models.one_level(f), PlanOptions(bucket_mb=bucket_mb))
    cost = cm.evaluate(data_parallel_strategies(cm))
    comm = sum(cost.communication.values())
    sizes = tensor_bytes()
    bucket = bucket_mb * 1e6
    # by hand: every parameter once; supersteps 2 per tensor, or 2 per bucket of B bytes
    # (0.004 MB = 4,000 B: the first weight, 1,728 B, and the biases fill part of a bucket each, the
    # other weights, 18,432 B and more, are buckets of their own)
    steps = sum(2 if bucket == 0 else 2 * min(1, s / bucket) for s in sizes)
    assert comm[1] == pytest.approx(2 * (f - 1) / f * sum(sizes))
    assert comm[2] == pytest.approx(steps)
    assert sum(cost.redistribution.values()).any() == False  # noqa: E712 - batch layout throughout


@pytest.mark.parametrize("bucket_mb", [0, 25])
def test_identity_biases_cost_the_same_data_parallel_baseline(bucket_mb):
    # the legacy export routed each bias through Identity, whose output was an activation: its
    # gradient was all-reduced per micro-batch and paid its own latency (up to 1.67x the baseline)
    options = PlanOptions(bucket_mb=bucket_mb)
    seconds = []
    for identity in (False, True):
        cm = cost_model_for(cnn(identity), models.one_level(4), options)
        seconds.append(cm.total_seconds(data_parallel_strategies(cm)))
    assert seconds[1] == pytest.approx(seconds[0], rel=1e-12)


def test_buckets_make_many_small_tensors_cheaper():
    per_tensor, bucketed = (cost_model_for(cnn(True), models.one_level(4), PlanOptions(bucket_mb=b))
                            for b in (0, 25))
    plan = data_parallel_strategies(per_tensor)
    # 8 tensors of 131,328 B in all, one 25 MB bucket's share: 2 * 131,328 / 25e6 supersteps instead of 16
    saved = (16 - 2 * sum(tensor_bytes()) / 25e6) * models.L1
    assert per_tensor.total_seconds(plan) - bucketed.total_seconds(plan) == pytest.approx(saved, rel=1e-9)


@pytest.mark.parametrize("bad", [-1, float("nan"), "big", None])
def test_plan_options_refuse_a_bad_bucket(bad):
    with pytest.raises(OptionsError, match="bucket_mb must be a number of megabytes >= 0"):
        PlanOptions(bucket_mb=bad)


def test_cli_bucket_mb_on_plan_evaluate_and_export(tmp_path, capsys):
    out = tmp_path / "plan.json"
    args = ["plan", "sample_models/mlp.onnx", "--machine", "machines/dgx_a100.yaml", "--bind", "batch=64",
            "--algorithm", "data_parallel"]
    code, _, err = models.run_cli(args + ["--bucket-mb", "0", "--json", out], capsys)
    assert code == 0, err
    per_tensor = json.loads(out.read_text())
    assert per_tensor["options"]["bucket_mb"] == 0
    code, _, err = models.run_cli(args + ["--json", out], capsys)
    default = json.loads(out.read_text())
    assert default["options"]["bucket_mb"] == 25
    # mlp.onnx: 3 weights and 3 biases, all-reduced over 8 GPUs (5 us per superstep): bucketed, the
    # 12 supersteps become 2 x 25,175,040 x 4 B / 25 MB = 8.06 (the weights are 16.8, 67.1, 16.8 MB)
    mb = [4 * n / 25e6 for n in (1024 * 4096, 4096, 4096 * 4096, 4096, 4096 * 1024, 1024)]
    saved = (12 - 2 * sum(min(1, s) for s in mb)) * 5e-6
    assert per_tensor["cost_seconds"]["total"] - default["cost_seconds"]["total"] == pytest.approx(saved, rel=1e-6)
    # evaluate keeps the plan file's bucket unless told otherwise
    code, stdout, err = models.run_cli(["evaluate", "sample_models/mlp.onnx", "--machine", "machines/dgx_a100.yaml",
                                        "--plan", out, "--bucket-mb", "0", "--json", tmp_path / "e.json"], capsys)
    assert code == 0, err
    assert "--bucket-mb 0.0 overrides the plan file's 25.0" in stdout
    assert json.loads((tmp_path / "e.json").read_text())["cost_seconds"]["total"] == pytest.approx(
        per_tensor["cost_seconds"]["total"], rel=1e-12)
    code, stdout, err = models.run_cli(["export", out, "--format", "dtensor"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["gradient_bucket_mb"] == 25
    code, stdout, err = models.run_cli(["export", out, "--format", "dtensor", "--bucket-mb", "40"], capsys)
    assert json.loads(stdout)["gradient_bucket_mb"] == 40


@pytest.mark.parametrize("command", ["plan", "evaluate", "export"])
def test_cli_refuses_a_negative_bucket_in_one_line(command, capsys):
    argv = {"plan": ["plan", "sample_models/mlp.onnx", "--machine", "machines/dgx_a100.yaml"],
            "evaluate": ["evaluate", "sample_models/mlp.onnx", "--machine", "machines/dgx_a100.yaml"],
            "export": ["export", "plan.json", "--format", "dtensor"]}[command]
    code, out, err = models.run_cli(argv + ["--bucket-mb", "-5"], capsys)
    assert code == 2
    assert "--bucket-mb" in err and "must be a number of megabytes >= 0" in err
    assert "Traceback" not in err


def test_url_carries_the_bucket():
    src = sample_source("mlp")
    m = load_preset("dgx_a100")
    opts = PlanOptions(bucket_mb=10)
    params = encode_url_state(src, {"batch": 64}, m, "dgx_a100", opts)
    assert params["bucket_mb"] == "10.0"
    state, problems = decode_url_state(params)
    assert not problems and state.options == opts
    assert "bucket_mb" not in encode_url_state(src, {"batch": 64}, m, "dgx_a100", PlanOptions())
    state, problems = decode_url_state({"bucket_mb": "-3"})
    assert state.options == PlanOptions()
    assert problems and problems[0].startswith("bucket_mb='-3' is not a number of megabytes >= 0")
