"""``evaluate --cp C`` (context parallelism) on the GPT-2 small sample (12 heads, sequence bound
by --bind) and a 2 nodes x 4 GPUs machine: named, priced with the ring, and its inputs checked."""

from __future__ import annotations

from pathlib import Path

import pytest

import models  # tests/models.py

REPO = Path(__file__).resolve().parents[2]
GPT2 = str(REPO / "sample_models" / "gpt2_small.onnx")
run = models.run_cli


@pytest.fixture(scope="module")
def machine_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("machine") / "two_nodes.yaml"
    path.write_text(models.two_level(2, 4).to_yaml())
    return str(path)


def _evaluate(machine_file, capsys, seq: int, cp: str, *extra):
    return run(["evaluate", GPT2, "--machine", machine_file, "--bind", f"seq={seq}", "--tp", "4", "--pp", "1",
                "--dp", "1", "--cp", cp, "--micro-batch-size", "1", "--global-batch", "2", *extra], capsys)


def test_evaluate_cp_names_and_prices_the_ring(machine_file, capsys):
    code, out, err = _evaluate(machine_file, capsys, 512, "2")
    assert code == 0, err
    lines = dict(line.split(None, 1) for line in out.splitlines() if line and not line.startswith(" "))
    assert lines["parallelism"] == "TP 4 (column-row) x CP 2"
    assert "tensor 4 x pipeline 1 x data 1 x context 2" in lines["algorithm"]
    assert "per level: node (2) CP 2, gpu (4) TP 4 (column-row)" in out
    assert "context parallel 2 over node (ring, zig-zag chunks of 128 tokens)" in out


def test_evaluate_cp_needs_2c_to_divide_the_sequence(machine_file, capsys):
    code, out, err = _evaluate(machine_file, capsys, 514, "2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--cp 2 needs the sequence (seq=514) to be a multiple of 2 x 2 = 4" in err


def test_evaluate_cp_multiplies_the_devices(machine_file, capsys):
    code, _, err = _evaluate(machine_file, capsys, 512, "4")
    assert code == 2 and "--tp x --pp x --dp x --cp = 4 x 1 x 1 x 4 = 16, but the machine has 8 devices" in err


def test_cp_is_not_for_a_plan_file(machine_file, tmp_path, capsys):
    plan = tmp_path / "p.json"
    plan.write_text('{"ops": []}')
    code, _, err = run(["evaluate", GPT2, "--machine", machine_file, "--plan", plan, "--cp", "2"], capsys)
    assert code == 2 and "--plan scores a plan file as written" in err
