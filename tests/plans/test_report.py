"""The report people send (planner/plans/report_*): its contents, its size (static SVG, no
plotly.js), names escaped in HTML and Markdown, charts that fit (the memory chart scaled to the
plan), formulas a reader can read, and the PDF printed by headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
import sympy
from markdown_it import MarkdownIt

from models import gemm_mlp
from planner.api import plan_model
from planner.machine.tree import Machine, load_preset
from planner.onnx.importer import import_model
from planner.options import PlanOptions
from planner.cost.formula_text import plain_text as formula_text
from planner.plans.report_doc import Bar, Chart, ReportSource, build_report, machine_label, reproduce_command
from planner.plans.report_html import report_html
from planner.plans.report_md import report_markdown
from planner.plans.report_pdf import INSTALL_HINT, ReportError, html_to_pdf
from planner.plans.report_svg import axis_ticks, chart_svg

REPO = Path(__file__).resolve().parents[2]
EVIL = "![i](http://evil/x.png)<img src=x>`c`$m$|:red[r]"
MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
SECTIONS = ["Headline", "Configuration", "Parallelism", "Cost breakdown", "Memory per device",
            "Formulas of the", "costliest operators", "Reproduce", "Machine (YAML, SI units)"]


@pytest.fixture(scope="module")
def mlp_report():
    graph = import_model(str(REPO / "sample_models" / "mlp.onnx"), {"batch": 8})
    result = plan_model(graph, load_preset("dgx_a100"), PlanOptions())
    source = ReportSource("mlp.onnx", "sample_models/mlp.onnx", "ab" * 32, {"batch": 8}, "dgx_a100")
    return result, build_report(result, source)


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory):
    """A model whose operator names and a machine whose names carry HTML and Markdown payloads."""
    model = gemm_mlp([32, 64, 16], batch=8, relu=True)
    for i, node in enumerate(model.graph.node):
        node.name = f"layers.{i}.{EVIL}"
    path = tmp_path_factory.mktemp("evil") / "evil.onnx"
    onnx.save(model, str(path))
    data = load_preset("dgx_a100").to_dict()
    data["name"] = "machine" + EVIL
    data["levels"][0]["name"] = "level" + EVIL
    result = plan_model(import_model(str(path), {}), Machine.from_dict(data), PlanOptions())
    return build_report(result, ReportSource("file" + EVIL, str(path), None, {}, data["name"]))


def test_the_report_has_every_section_and_the_headline(mlp_report):
    result, report = mlp_report
    page, md = report_html(report), report_markdown(report)
    for section in SECTIONS:
        assert f"{section}" in page and section in md.replace("\\", ""), section
    assert dict(report.headline.rows)["devices"] == "8"
    assert report.command.startswith("python -m planner plan sample_models/mlp.onnx --machine machines/dgx_a100.yaml "
                                     "--bind batch=8 --mode train --algorithm drec+")
    assert report.command in page and report.command in md
    assert 1 <= len(report.formulas) <= 5 and report.parallelism


def test_the_html_report_is_small_and_self_contained(mlp_report):
    _, report = mlp_report
    page = report_html(report)
    assert len(page.encode()) < 1.5e6 and len(page.encode()) < 100_000  # plotly.js alone is 4.6 MB
    assert "<script" not in page.lower() and not re.search(r"\b(src|href)=", page)  # nothing fetched
    assert page.count("<svg") == 3


def test_names_are_escaped_in_html(evil_report):
    page = report_html(evil_report)
    assert "<img" not in page and "&lt;img src=x&gt;" in page
    assert "layers.0.![i](http://evil/x.png)&lt;img" in page  # shown as written


def test_names_are_escaped_in_markdown(evil_report):
    md = report_markdown(evil_report)
    tokens = MD.parse(md)
    kinds = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
    assert not kinds & {"image", "link_open", "html_inline", "html_block"}
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and "level![i]" in fences[0].content  # the machine YAML, and nothing else
    assert "layers.0." in md and "file" in md
    # the operator table keeps its columns: a pipe in a name does not open a cell
    table_rows = [line for line in md.splitlines() if line.startswith("| ") and "layers.0." in line]
    assert table_rows and all(len(re.findall(r"(?<!\\)\|", row)) == 8 for row in table_rows)


def test_formulas_print_four_significant_digits_and_integers_as_integers():
    b, k, m, n, F, g, L = sympy.symbols("b k m n F g_{gpu} L_{gpu}", positive=True)
    expr = (sympy.Rational(239087788131437, 50000000000000) * b * k * m / F + 2 * L + g * k * n / 32
            + sympy.Rational(3, 2) * 12_345_678 * L * k + sympy.Float(12_345_678.9) * g * n)
    text = formula_text(expr)
    # 239087788131437 / 5e13 = 4.78175...; 1.5 x 12345678 = 18518517 is an integer and stays one;
    # a float of 1e6 or more is written with a power of ten, never "e+"
    assert text == "4.782·b·k·m/F + 1.235×10^7·g_gpu·n + g_gpu·k·n/32 + 18518517·L_gpu·k + 2·L_gpu"
    assert "e+" not in text and "{" not in text
    # between 10^4 and 10^6 a coefficient keeps its integer digits: 12345.6 g reads 12346, not 1.235e+04
    assert formula_text(sympy.Float(12_345.6) * g) == "12346·g_gpu"


def test_byte_axes_tick_in_one_binary_unit():
    ticks, labels = axis_ticks(1.55 * 2**30, "B")
    assert labels == ["0", "0.5 GiB", "1 GiB", "1.5 GiB", "2 GiB"] and ticks[-1] == 2 * 2**30
    assert axis_ticks(0.042, "s")[1] == ["0", "10 ms", "20 ms", "30 ms", "40 ms", "50 ms"]


def test_the_memory_chart_is_scaled_to_the_plan_with_the_capacity_named(mlp_report):
    result, report = mlp_report
    chart = report.charts[2]
    svg = chart_svg(chart)
    assert chart.capacity == 80e9 and result.memory.peak < 1e9
    labels = re.findall(r'text-anchor="middle">([^<]+)<', svg)
    top_label = labels[-1]
    assert top_label.endswith("MiB")  # the axis ends in MiB, not at 80 GB
    assert "capacity 74.5 GiB per device" in svg and "off this scale" in svg and "stroke-dasharray" not in svg
    near = Chart("memory", "B", (Bar("per device", (("parameters", 60e9),)),), capacity=80e9)
    near_svg = chart_svg(near)
    assert "stroke-dasharray" in near_svg and "off this scale" not in near_svg


def test_long_operator_names_are_cut_on_the_chart_and_whole_in_the_tooltip():
    name = "/model/layers.31/self_attn/q_proj/MatMul_with_a_very_long_suffix"
    svg = chart_svg(Chart("ops", "s", (Bar(name, (("compute", 1e-3),)),)))
    assert f"<title>{name}:" in svg
    shown = re.findall(r'text-anchor="end">([^<]+)<', svg)[0]
    assert len(shown) <= 36 and shown.startswith("/model/") and shown.endswith("suffix")


def test_the_command_names_a_preset_only_when_the_machine_is_that_preset(mlp_report):
    result, _ = mlp_report
    assert machine_label(load_preset("dgx_a100")) == "dgx_a100"
    edited = load_preset("dgx_a100").with_level(0, latency_s=1e-3)
    assert machine_label(edited) == edited.name
    source = ReportSource("mlp.onnx", "mlp.onnx", None, {"batch": 8}, "dgx_a100")
    assert "--machine machines/dgx_a100.yaml" in reproduce_command(result, source)


def test_the_pdf_is_printed_by_chromium(mlp_report):
    pdf = html_to_pdf(report_html(mlp_report[1]))
    assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-1024:]


def test_a_missing_chromium_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("PLANNER_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(ReportError) as caught:
        html_to_pdf("<html></html>")
    assert str(caught.value) == INSTALL_HINT and "apt-get install chromium" in INSTALL_HINT
