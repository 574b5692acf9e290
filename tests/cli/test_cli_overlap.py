"""The CLI's ``iteration`` line honours --overlap-gradient-sync (the default) and
--no-overlap-gradient-sync on one-stage plans (issue 10, item 13): it must equal the JSON's
``iteration_seconds``.

By hand, mlp.onnx (25,175,040 fp32 parameters, 6 tensors) data parallel on 8 A100s with one
all-reduce per tensor: the gradient sync is 2 * 7/8 * 100,700,160 B / 300e9 B/s + 12 * 5e-6 s
= 0.6474176 ms; the compute of the three passes is 3 * 101,879,808 B / 2.039e12 B/s = 0.1499 ms
(memory-bound; see tests/cli/test_cli_plan.py), of which the backward passes are 2/3 = 0.09993 ms.
Overlapped bucket by bucket (one bucket per operator with --bucket-mb 0): the first gradient, fc3's,
is ready after the backward of the output Identity and of fc3 (2 * (65,536 + 16,945,152) B /
2.039e12 B/s = 16.69 µs); from then on the all-reduces (108 µs for fc3's alone) outlast the rest of
the backward pass, which is hidden: 99.93 - 16.69 = 83.25 µs.
"""

from __future__ import annotations

import json

import pytest

import models  # tests/models.py

ARGS = ["plan", "sample_models/mlp.onnx", "--machine", "machines/dgx_a100.yaml", "--bind", "batch=64",
        "--algorithm", "data_parallel", "--bucket-mb", "0", "--recompute", "none", "--zero", "0"]


UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}


def iteration_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("iteration"))


def printed_seconds(line: str) -> float:
    value, unit = line.split()[1:3]
    return float(value) * UNITS[unit]


def test_one_stage_iteration_line_with_overlap(tmp_path, capsys):
    code, plain_out, err = models.run_cli(ARGS + ["--no-overlap-gradient-sync", "--json", tmp_path / "plain.json"],
                                          capsys)
    assert code == 0, err
    code, out, err = models.run_cli(ARGS + ["--overlap-gradient-sync", "--json", tmp_path / "o.json"], capsys)
    assert code == 0, err
    plain = json.loads((tmp_path / "plain.json").read_text())
    data = json.loads((tmp_path / "o.json").read_text())
    sync = 2 * 7 / 8 * 100_700_160 / 300e9 + 12 * 5e-6
    backward = 2 * 101_879_808 / 2.039e12
    before_first_bucket = 2 * (65_536 + 16_945_152) / 2.039e12
    assert plain["iteration_seconds"] - data["iteration_seconds"] == pytest.approx(backward - before_first_bucket,
                                                                                   rel=1e-9)
    assert plain["cost_seconds"]["communication"] == pytest.approx(sync, rel=1e-12)
    # the printed figure is the JSON's (3 significant digits), not the plain sum
    assert printed_seconds(iteration_line(out)) == pytest.approx(data["iteration_seconds"], rel=5e-3)
    assert "hidden behind compute 83.2 µs" in iteration_line(out)
    assert "overlap      gradient sync (once per iteration): 83.2 µs hidden, 564 µs exposed per iteration" in out
    assert printed_seconds(iteration_line(plain_out)) == pytest.approx(plain["iteration_seconds"], rel=5e-3)
    assert "hidden" not in iteration_line(plain_out)
