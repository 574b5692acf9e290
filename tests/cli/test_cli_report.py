"""``python -m planner report PLAN.json --format html|pdf|md [-o FILE]`` on a plan made in the test,
and its input checks: a missing, non-regular or invalid plan file, or a model it cannot find, is
one line and exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import models  # tests/models.py

REPO = Path(__file__).resolve().parents[2]
MLP = str(REPO / "sample_models" / "mlp.onnx")
DGX = str(REPO / "machines" / "dgx_a100.yaml")


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    from planner.cli.main import main

    path = tmp_path_factory.mktemp("report") / "plan.json"
    assert main(["plan", MLP, "--machine", DGX, "--bind", "batch=64", "--algorithm", "drec", "--json", str(path)]) == 0
    return path


def _one_line_error(code, out, err, *words):
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_markdown_report_of_a_plan_made_in_the_test(plan_file, tmp_path, capsys):
    out_file = tmp_path / "r.md"
    code, out, err = models.run_cli(["report", plan_file, "--format", "md", "-o", out_file], capsys)
    assert code == 0 and err == "" and out.startswith(f"wrote {out_file}: md report, ")
    text = out_file.read_text()
    data = json.loads(plan_file.read_text())
    assert text.startswith("# Parallel plan\\: mlp.onnx on ")
    assert "## Formulas of the" in text and "## Reproduce" in text
    # the reproduce command carries the plan's own algorithm (drec, not the default drec+)
    assert "--algorithm drec --optimizer adam" in text and "--bind batch=64" in text
    assert data["model_sha256"] in text


def test_html_report_default_name_size_and_figures(plan_file, capsys):
    code, out, _ = models.run_cli(["report", plan_file, "--format", "html"], capsys)
    target = plan_file.with_suffix(".html")
    assert code == 0 and out.startswith(f"wrote {target}")
    page = target.read_text()
    assert len(page.encode()) < 1.5e6 and page.count("<svg") == 3 and "<script" not in page


def test_pdf_report_starts_with_the_pdf_magic(plan_file, tmp_path, capsys):
    code, _, err = models.run_cli(["report", plan_file, "--format", "pdf", "-o", tmp_path / "r.pdf"], capsys)
    assert code == 0, err
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_pdf_without_chromium_is_one_line(plan_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PLANNER_CHROMIUM", str(tmp_path / "no-chromium"))
    code, out, err = models.run_cli(["report", plan_file, "--format", "pdf", "-o", tmp_path / "r.pdf"], capsys)
    _one_line_error(code, out, err, "needs Chromium", "--format html")


def test_a_missing_plan_file_is_one_line(tmp_path, capsys):
    _one_line_error(*models.run_cli(["report", tmp_path / "none.json", "--format", "md"], capsys), "none.json")


def test_a_directory_is_not_a_plan_file(tmp_path, capsys):
    _one_line_error(*models.run_cli(["report", tmp_path, "--format", "md"], capsys), "plan file")


def test_an_invalid_plan_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    _one_line_error(*models.run_cli(["report", bad, "--format", "html"], capsys), "bad.json")


def test_a_plan_without_a_machine_is_one_line(plan_file, tmp_path, capsys):
    data = json.loads(plan_file.read_text())
    del data["machine"]
    path = tmp_path / "nomachine.json"
    path.write_text(json.dumps(data))
    _one_line_error(*models.run_cli(["report", path, "--format", "md"], capsys), "records no machine")


def test_a_model_that_cannot_be_found_is_one_line(plan_file, tmp_path, capsys):
    data = json.loads(plan_file.read_text())
    data["model"] = "gone.onnx"
    path = tmp_path / "moved.json"
    path.write_text(json.dumps(data))
    _one_line_error(*models.run_cli(["report", path, "--format", "md"], capsys), "gone.onnx", "--model")
    # given with --model, the report is written
    shutil.copy(MLP, tmp_path / "here.onnx")
    code, _, err = models.run_cli(["report", path, "--format", "md", "--model", tmp_path / "here.onnx",
                                   "-o", tmp_path / "r.md"], capsys)
    assert code == 0, err


def test_a_bad_format_is_one_line(plan_file, capsys):
    code, out, err = models.run_cli(["report", plan_file, "--format", "docx"], capsys)
    _one_line_error(code, out, err, "invalid choice: 'docx'")
