"""One planning entry: the explorer's plan (through AppTest, as a user opens a link) equals the
command line's ``python -m planner plan --json`` for the same model, machine, bindings and options:
the predicted iteration, every operator's cuts and the pipeline configuration. Both go through
``planner.api.plan_model``; before it was the single entry, the app dispatched by itself (and a
fully fixed configuration was planned by another route)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    # the configuration search (stages, micro-batches, recomputation and ZeRO left open)
    "search": ("gpt2_small", {"batch": 64, "seq": 32}, "dgx_a100", {"algorithm": "drec+"}),
    # every option fixed: one stage, one micro-batch
    "fixed": ("mlp", {"batch": 64}, "dgx_a100",
              {"algorithm": "drec", "stages": "1", "micro_batches": "1", "recompute": "none", "zero": "0"}),
    # the exact search, under its size guard
    "exact": ("mlp", {"batch": 64}, "dgx_a100", {"algorithm": "exact"}),
}
CLI_FLAGS = {"algorithm": "--algorithm", "stages": "--pipeline-stages", "micro_batches": "--micro-batches",
             "recompute": "--recompute", "zero": "--zero"}
CONFIGURATION = ("stages", "micro_batches", "interleave", "micro_batch_size", "recompute", "zero", "stage_of_op")


def cli_plan(model, bindings, machine, options, tmp_path) -> dict:
    out = tmp_path / "plan.json"
    cmd = [sys.executable, "-m", "planner", "plan", f"sample_models/{model}.onnx", "--machine",
           f"machines/{machine}.yaml", "--json", str(out)]
    cmd += [f"--bind={k}={v}" for k, v in bindings.items()]
    cmd += [x for k, v in options.items() for x in (CLI_FLAGS[k], v)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def app_plan(model, bindings, machine, options) -> dict:
    from explorer.views.report import report_json

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params.update(model=model, bind=",".join(f"{k}:{v}" for k, v in bindings.items()), machine=machine,
                           **options)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    ctx = at.session_state["_ctx"]
    assert ctx.plan_error is None and ctx.model_error is None, (ctx.plan_error, ctx.model_error)
    assert ctx.options.algorithm == options["algorithm"]
    return report_json(ctx.result, ctx.meta)


@pytest.mark.parametrize("case", list(CASES))
def test_the_app_plans_what_the_command_line_plans(case, tmp_path):
    model, bindings, machine, options = CASES[case]
    cli = cli_plan(model, bindings, machine, options, tmp_path)
    app = app_plan(model, bindings, machine, options)
    assert app["iteration_seconds"] == pytest.approx(cli["iteration_seconds"], rel=1e-9)
    assert {op["name"]: op["cuts"] for op in app["ops"]} == {op["name"]: op["cuts"] for op in cli["ops"]}
    assert {k: app["pipeline"][k] for k in CONFIGURATION} == {k: cli["pipeline"][k] for k in CONFIGURATION}
    assert app["options"] == cli["options"] and app["algorithm"] == cli["algorithm"]
    assert app.get("vocabulary_padded") == cli.get("vocabulary_padded")
