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


def test_ep_with_cp_draws_the_experts_from_the_data_and_context_ranks(model, capsys):
    """--tp 2 --dp 2 --cp 2 --ep 4 on 8 GPUs: the 4 expert-parallel ranks are the 2 x 2 data- and
    context-parallel ranks (Megatron-LM's rule: D x C a multiple of E). The small Mixtral's experts
    are 2 layers x 3 matrices x 8 experts x 64 x 96 = 294,912 parameters, halved by TP 2; EP 4 keeps
    a quarter of those, so each device holds 147,456 x 3/4 = 110,592 fewer parameters (bf16: 2 bytes)."""
    from planner.machine.tree import load_machine
    from planner.onnx.importer import import_model
    from planner.onnx.rebinder import rebinder_for
    from planner.options import PlanOptions
    from planner.search.context_parallel import evaluate_context_configuration

    args = ("--tp", "2", "--dp", "2", "--cp", "2", "--global-batch", "8")
    assert _evaluate(model, *args, "--ep", "4") == 0
    text = capsys.readouterr().out
    assert "parallelism  DP 2 x TP 2 (column-row) x EP 4 x CP 2" in text
    graph = import_model(model, {"batch": 1, "seq": 16})
    options = PlanOptions(algorithm="megatron", precision="bf16", recompute="none", zero=0)
    priced = {ep: evaluate_context_configuration(graph, load_machine(DGX), 2, 1, 2, 2, 1, 8, options,
                                                 rebinder_for(model), expert=ep) for ep in (1, 4)}
    assert priced[1].memory.parameters - priced[4].memory.parameters == pytest.approx(110_592 * 2)


def test_ep_with_cp_must_divide_the_data_and_context_ranks(model, capsys):
    assert _evaluate(model, "--tp", "2", "--dp", "2", "--cp", "2", "--ep", "8", "--global-batch", "8") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ep 8 does not divide --dp x --cp = 2 x 2 = 4") and err.count("\n") == 1
