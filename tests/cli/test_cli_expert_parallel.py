"""``evaluate --ep E``: expert parallelism on a hand-made configuration, validated in one line."""

from __future__ import annotations

import json

import pytest

from moe_models import MIXTRAL, write
from planner.cli.main import main

DGX = "machines/dgx_a100.yaml"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(write(tmp_path_factory.mktemp("moe"), "mixtral_8x7b", **MIXTRAL))


def _evaluate(model, *extra):
    return main(["evaluate", model, "--machine", DGX, "--pp", "1", "--micro-batch-size", "1", "--bind", "seq=16",
                 *extra])


def test_ep_is_priced_and_named(model, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert _evaluate(model, "--tp", "2", "--dp", "4", "--ep", "4", "--global-batch", "8", "--json", str(out)) == 0
    text = capsys.readouterr().out
    assert "parallelism  DP 4 x TP 2 (column-row) x EP 4" in text
    assert "expert parallel 4: 6 expert operators" in text
    assert json.loads(out.read_text())["parallelism"]["name"] == "DP 4 x TP 2 (column-row) x EP 4"
    iteration = next(line for line in text.splitlines() if line.startswith("iteration"))
    # the plan file read back is priced the same and named the same
    assert main(["evaluate", model, "--machine", DGX, "--plan", str(out)]) == 0
    again = capsys.readouterr().out
    assert iteration in again.splitlines() and "parallelism  DP 4 x TP 2 (column-row) x EP 4" in again


@pytest.mark.parametrize("tp, dp, ep, message", [
    ("1", "8", "3", "error: --ep 3 does not divide the 8 experts of a MoE layer: choose a divisor of 8"),
    ("2", "4", "8", "error: --ep 8 does not divide the data-parallel size 4"),
])
def test_a_bad_ep_is_one_line_and_exit_2(model, capsys, tp, dp, ep, message):
    assert _evaluate(model, "--tp", tp, "--dp", dp, "--ep", ep, "--global-batch", "8") == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_ep_on_a_dense_model_is_refused(capsys):
    assert main(["evaluate", "sample_models/llama3_8b.onnx", "--machine", DGX, "--tp", "8", "--pp", "1", "--dp", "1",
                 "--ep", "2", "--micro-batch-size", "1", "--global-batch", "1", "--bind", "seq=16"]) == 2
    assert "no mixture-of-experts layer found" in capsys.readouterr().err


def test_ep_with_a_plan_file_is_refused(model, tmp_path, capsys):
    plan = tmp_path / "p.json"
    plan.write_text('{"ops": []}')
    assert main(["evaluate", model, "--machine", DGX, "--plan", str(plan), "--ep", "2", "--bind", "seq=16",
                 "--bind", "batch=8"]) == 2
    assert "drop --tp/--pp/--dp/--ep" in capsys.readouterr().err
