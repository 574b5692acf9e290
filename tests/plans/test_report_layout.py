"""Nothing in the HTML report is clipped or overflows its box, looked at in Chromium (the browser
the PDF is printed with) at 1440 and 1024 px and at an A4 page's printable width: a model with
long operator names and a machine with a long name, every table cell, formula, heading and the
command within its box, the page no wider than the window, and every text of the SVG charts
inside its drawing."""

from __future__ import annotations

import onnx
import pytest

from models import gemm_mlp
from planner.api import plan_model
from planner.machine.tree import Machine, load_preset
from planner.onnx.importer import import_model
from planner.options import PlanOptions
from planner.plans.report_doc import ReportSource, build_report
from planner.plans.report_html import report_html
from planner.plans.report_pdf import find_chromium

import playwright.sync_api as playwright_api  # pinned in requirements-test.txt

OVERFLOWS = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('td, th, pre, h1, h2, h3, p, li, .formula')) {
    if (el.scrollWidth > el.clientWidth + 1) bad.push(el.tagName + ' ' + el.textContent.slice(0, 80));
  }
  if (document.documentElement.scrollWidth > window.innerWidth) bad.push('the page is wider than the window');
  for (const svg of document.querySelectorAll('svg')) {
    const width = svg.viewBox.baseVal.width;
    if (svg.getBoundingClientRect().right > document.body.getBoundingClientRect().right + 1) bad.push('svg too wide');
    for (const t of svg.querySelectorAll('text')) {
      const b = t.getBBox();
      if (b.x < -1 || b.x + b.width > width + 1) bad.push('svg text ' + t.textContent);
    }
  }
  return bad;
}"""


@pytest.fixture(scope="module")
def long_names_page(tmp_path_factory) -> str:
    model = gemm_mlp([64, 128, 32], batch=16, relu=True)
    for i, node in enumerate(model.graph.node):
        node.name = f"/model/decoder/layers.{i}/self_attention/query_key_value_projection_with_a_long_name/MatMul_{i}"
    path = tmp_path_factory.mktemp("long") / ("a_model_file_with_a_rather_long_name_" * 3 + ".onnx")
    onnx.save(model, str(path))
    data = load_preset("dgx_a100").to_dict()
    data["name"] = "a-machine-description-whose-name-goes-on-and-on-without-any-space-to-break-at"
    result = plan_model(import_model(str(path), {}), Machine.from_dict(data), PlanOptions())
    return report_html(build_report(result, ReportSource(path.name, str(path), "f" * 64, {}, data["name"])))


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize("width, media", [(1440, "screen"), (1024, "screen"), (690, "print")])
def test_nothing_in_the_html_report_overflows(browser, long_names_page, width, media):
    """690 px: an A4 page's width less the 14 mm margins, at 96 px per inch, in print styles."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.emulate_media(media=media)
        page.set_content(long_names_page)
        assert page.evaluate(OVERFLOWS) == []
        assert page.locator("svg").count() == 3
    finally:
        page.close()
