"""``--precision fp8`` (planner/cost/fp8.py): FP8 bytes and time against hand arithmetic.

Model: sample_models/mlp.onnx at batch 64: fc1 Gemm x[64,1024] @ W[1024,4096] + b[4096], relu1,
fc2 Gemm [64,4096] @ W[4096,4096] + b, relu2, fc3 Gemm [64,4096] @ W[4096,1024] + b[1024], output
(Identity). Weights 4,194,304 + 16,777,216 + 4,194,304 = 25,165,824 elements; biases 4,096 +
4,096 + 1,024 = 9,216; 25,175,040 parameters.
Machine: one device, F = 1e15 FLOP/s, F8 = 2e15 FLOP/s (FP8), no memory bandwidth unless a test
gives one (then every operator is priced by the larger of FLOPs and bytes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import models  # tests/models.py
from planner.api import plan_model
from planner.cost.fp8 import FP8Error
from planner.machine.tree import Machine
from planner.onnx.importer import import_model
from planner.options import PlanOptions

REPO = Path(__file__).resolve().parents[2]
MLP = str(REPO / "sample_models" / "mlp.onnx")
GEMM_FLOPS = 2 * 64 * (1024 * 4096 + 4096 * 4096 + 4096 * 1024)  # 3,221,225,472 per forward pass
RELU_FLOPS = 2 * 64 * 4096  # one per element, two ReLUs: 524,288
WEIGHTS, BIASES = 25_165_824, 9_216


def _machine(bandwidth: float | None = None, fp8: float | None = 2e15) -> Machine:
    device = {"name": "dev", "peak_flops": 1e15, "memory_bytes": 80e9}
    if fp8 is not None:
        device["peak_flops_fp8"] = fp8
    if bandwidth is not None:
        device["memory_bandwidth_Bps"] = bandwidth
    return Machine.from_dict({"name": "one", "device": device,
                              "levels": [{"name": "gpu", "arity": 1, "bandwidth_Bps": 1e11, "latency_s": 0}]})


def _plan(precision: str, batch: int = 64, machine: Machine | None = None):
    graph = import_model(MLP, {"batch": batch})
    return plan_model(graph, machine or _machine(), PlanOptions(
        algorithm="data_parallel", precision=precision, pipeline_stages=1, micro_batches=1, recompute="none", zero=0))


def test_linear_layers_run_at_the_fp8_peak_the_rest_at_the_bf16_peak():
    bf16, fp8 = _plan("bf16"), _plan("fp8")
    # three passes (forward and the two backward products) of every operator
    assert bf16.cost.seconds()["compute"] == pytest.approx(3 * (GEMM_FLOPS + RELU_FLOPS) / 1e15)  # 9.665 µs
    assert fp8.cost.seconds()["compute"] == pytest.approx(3 * (GEMM_FLOPS / 2e15 + RELU_FLOPS / 1e15))  # 4.833 µs


def test_fp8_memory_adds_weight_copies_and_keeps_one_byte_inputs():
    bf16, fp8 = _plan("bf16").memory, _plan("fp8").memory
    params = WEIGHTS + BIASES
    # bf16: weights and gradients 2 bytes, Adam 12 (fp32 master copy + two moments)
    assert (bf16.parameters, bf16.gradients, bf16.optimizer_state) == (2 * params, 2 * params, 12 * params)
    # fp8: the same plus a 1-byte copy of each multiplied weight (not of the biases)
    assert (fp8.parameters, fp8.gradients, fp8.optimizer_state) == (2 * params + WEIGHTS, 2 * params, 12 * params)
    # bf16 activations: x (fc1's input) 64x1024, each ReLU's input 64x4096, each ReLU's output
    # (fc2's and fc3's input) 64x4096, all 2 bytes; the model's output 64x1024 as the loss keeps it,
    # in fp32 (planner.cost.activations.loss_tensors)
    assert bf16.activations == 2 * (64 * 1024 + 4 * 64 * 4096) + 4 * 64 * 1024  # 2,490,368
    # fp8: the linear layers keep their inputs (x and the ReLU outputs) in 1 byte; the ReLUs'
    # inputs stay bf16, the output fp32
    assert fp8.activations == 1 * (64 * 1024 + 2 * 64 * 4096) + 2 * 2 * 64 * 4096 + 4 * 64 * 1024  # 1,900,544


def test_a_memory_bound_linear_layer_reads_its_fp8_inputs_at_one_byte():
    # batch 1 on a 1 TB/s memory: fc2 moves far more bytes than it computes (33.5 MFLOP in 33.5 ns)
    machine = _machine(bandwidth=1e12)
    bf16, fp8 = _plan("bf16", 1, machine), _plan("fp8", 1, machine)
    # bf16: x 4,096 + W 16,777,216 + b 4,096 + y 4,096 elements, 2 bytes each, per pass
    assert bf16.cost.op_seconds("fc2")["compute"] == pytest.approx(3 * 2 * (4096 + 16_777_216 + 4096 + 4096) / 1e12)
    # fp8: x and W in 1 byte, the bias and the output in bf16
    assert fp8.cost.op_seconds("fc2")["compute"] == pytest.approx(3 * (4096 + 16_777_216 + 2 * (4096 + 4096)) / 1e12)


def test_a_device_without_an_fp8_peak_is_refused_in_one_line():
    with pytest.raises(FP8Error, match="has no peak_flops_fp8: add it to the device"):
        _plan("fp8", machine=_machine(fp8=None))


def test_cli_fp8_without_the_peak_exits_2(capsys):
    code, out, err = models.run_cli(["plan", MLP, "--machine", str(REPO / "machines" / "dgx_a100.yaml"),
                                     "--bind", "batch=64", "--precision", "fp8"], capsys)
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "A100-SXM4-80GB" in err and "peak_flops_fp8" in err


def test_cli_fp8_on_the_h100_preset(capsys, tmp_path):
    h100 = str(REPO / "machines" / "h100_cluster.yaml")
    code, out, err = models.run_cli(["plan", MLP, "--machine", h100, "--bind", "batch=256", "--precision", "fp8",
                                     "--algorithm", "data_parallel", "--json", tmp_path / "p.json"], capsys)
    assert code == 0, err
    assert "FP8 1.979 PFLOP/s" in out  # the machine line shows the device's FP8 peak
    assert '"precision": "fp8"' in (tmp_path / "p.json").read_text()
