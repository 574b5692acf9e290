"""``plan`` and ``evaluate`` take ``--moe-capacity-factor F``: validated in one line (exit 2), and
priced: on one device (no communication) the experts' compute grows with the capacity,
ceil(s x k x F / E) tokens per expert, worked out by hand."""

from __future__ import annotations

import json

import pytest

from moe_models import MIXTRAL, write
from planner.cli.main import main



@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(write(tmp_path_factory.mktemp("moe"), "mixtral_8x7b", **MIXTRAL))


def _flops(model, tmp_path, *extra) -> float:
    out = tmp_path / "plan.json"
    assert main(["evaluate", model, "--machine", "machines/dgx_a100.yaml", "--tp", "1", "--pp", "1", "--dp", "8",
                 "--micro-batch-size", "1", "--global-batch", "8", "--bind", "seq=16", "--json", str(out),
                 *extra]) == 0
    return json.loads(out.read_text())


def test_evaluate_prices_the_capacity(model, tmp_path, capsys):
    base, more = _flops(model, tmp_path), _flops(model, tmp_path, "--moe-capacity-factor", "1.5")
    capsys.readouterr()
    # the experts of one sample (8 samples over 8 devices: one per device), C = ceil(16 x 2 x F / 8) tokens per
    # expert: 4 at 1.0, 6 at 1.5. Per layer and token-expert pair: 3 matmuls of 2 x 64 x 96 FLOPs and 3 element-wise
    # operators (sigmoid, silu, gating) of 96 elements, one FLOP each; 2 layers; training: 3 passes
    extra = 3 * 2 * 8 * (6 - 4) * (3 * 2 * 64 * 96 + 3 * 96)
    per_device = more["tflops_per_device"]["model"] * more["iteration_seconds"] - base["tflops_per_device"][
        "model"] * base["iteration_seconds"]
    assert per_device * 1e12 == pytest.approx(extra, rel=1e-6)
    assert any(n.startswith("MoE capacity factor 1.5 (--moe-capacity-factor)") for n in more["notes"])
    assert not any("capacity factor" in n for n in base["notes"])


@pytest.mark.parametrize("command", ["plan", "evaluate"])
@pytest.mark.parametrize("value, message", [("0", "0 must be above 0"), ("-2", "-2 must be above 0"),
                                            ("many", "'many' is not a number")])
def test_a_bad_factor_is_one_line_and_exit_2(model, capsys, command, value, message):
    argv = [command, model, "--machine", "machines/dgx_a100.yaml", "--bind", "seq=16", "--moe-capacity-factor", value]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err


def test_a_dense_model_is_told_to_drop_it(capsys):
    assert main(["plan", "sample_models/llama3_8b.onnx", "--machine", "machines/dgx_a100.yaml", "--bind", "seq=16",
                 "--bind", "batch=8", "--moe-capacity-factor", "1.25"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --moe-capacity-factor: the model has no expert capacity to set")
    assert err.count("\n") == 1


def test_plan_takes_it(model, capsys):
    assert main(["plan", model, "--machine", "machines/dgx_a100.yaml", "--bind", "seq=16", "--bind", "batch=8",
                 "--algorithm", "data_parallel", "--moe-capacity-factor", "1.25"]) == 0
    assert "iteration" in capsys.readouterr().out
