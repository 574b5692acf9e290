"""The explorer looked at as a person would, in Chromium at 1440 and at 1024 px: on every page and
in the downloaded HTML report no text overflows its box (formula cards, table cells, metric labels
and values, plotly axis titles and tick labels), no table cell reads None or nan, and no number is
printed in scientific notation (``1e+03``). Run on the default view and on a real dynamo export
uploaded through the file uploader (``tests/real_exports.py``). Screenshots of every page at both
widths are saved under ``tests/artifacts/`` (git-ignored; CI keeps them as artefacts); with
``README_SCREENSHOTS=1`` the Overview and Cost pages at 1440 px are also written, cropped and
reduced to a palette, as the README's ``docs/overview.png`` and ``docs/cost.png``.

One server and one browser page for all of it: each width is a viewport change, not a new session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from real_exports import Corpus
from test_browser import PAGES, browser, check_page, server, wait_until_idle  # noqa: F401 - one server, one Chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
WIDTHS = (1440, 1024)

#: What overflows, read in the page: every element whose text is wider than its box (scrollWidth >
#: clientWidth), every SVG text of a plotly axis that sticks out of its figure, every table cell
#: that reads None/nan, every number written with an exponent.
LOOK = r"""
() => {
  const out = {overflow: [], cells: [], exponents: []};
  const short = e => (e.innerText || e.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 70);
  const boxes = [
    ['formula', '[data-testid="stMarkdownContainer"] .katex-display, [data-testid="stMarkdownContainer"] .katex-html'],
    ['metric', '[data-testid="stMetricLabel"] p, [data-testid="stMetricLabel"] div, [data-testid="stMetricValue"] div'],
    ['table cell', '[data-testid="stTable"] td, [data-testid="stTable"] th'],
    ['caption', '[data-testid="stCaptionContainer"]'],
  ];
  for (const [kind, sel] of boxes) {
    for (const e of document.querySelectorAll(sel)) {
      if (e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
        out.overflow.push(`${kind}: "${short(e)}" (${e.scrollWidth} px of text in ${e.clientWidth} px)`);
    }
  }
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const svg = plot.querySelector('svg.main-svg');
    if (!svg || plot.offsetParent === null) continue;
    const box = svg.getBoundingClientRect();
    for (const t of plot.querySelectorAll('.g-xtitle text, .g-ytitle text, .xtick text, .ytick text, .legendtext')) {
      const r = t.getBoundingClientRect();
      if (r.width === 0) continue;
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
        out.overflow.push(`chart text: "${t.textContent.slice(0, 60)}" outside its figure`);
    }
  }
  // st.table's cells hold their text; st.dataframe draws on a canvas and keeps an accessible copy of
  // each drawn cell, where a missing value (drawn "None") is an empty cell (read-only tables only:
  // an editor's empty row for adding one is not a missing value)
  for (const c of document.querySelectorAll('[data-testid="stTable"] td')) {
    const t = (c.innerText || '').trim();
    if (/^(None|nan|NaN|<NA>|NaT)$/.test(t)) out.cells.push(t);
  }
  for (const c of document.querySelectorAll('[data-testid="stDataFrame"] td[role="gridcell"][aria-readonly="true"]')) {
    const t = (c.textContent || '').trim();
    if (t === '' || /^(None|nan|NaN|<NA>|NaT)$/.test(t)) out.cells.push(`${c.id}: "${t}" (drawn as None)`);
  }
  // numbers for people (not the YAML or JSON shown as code, which keeps SI units: 1.0e-05 s)
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const copy = main.cloneNode(true);
  copy.querySelectorAll('pre, code, [data-testid="stCode"]').forEach(e => e.remove());
  for (const m of (copy.innerText || copy.textContent).matchAll(/[^\s]*\d(?:\.\d+)?e\+\d+[^\s]*/gi))
    out.exponents.push(m[0]);
  for (const t of document.querySelectorAll('.js-plotly-plot text'))
    if (/\d(?:\.\d+)?e\+\d/i.test(t.textContent)) out.exponents.push('chart: ' + t.textContent);
  return out;
}
"""


def summary(problems: list[str]) -> str:
    """One line per page, width and kind: how many, and the first."""
    groups: dict[str, list[str]] = {}
    for p in problems:
        where, _, what = p.partition(": ")
        groups.setdefault(where, []).append(what)
    return f"{len(problems)} problems:\n" + "\n".join(f"{where}: {len(items)}, e.g. {items[0][:150]}"
                                                       for where, items in groups.items())


def look(page) -> dict:
    return page.evaluate(LOOK)


def shoot(page, name: str) -> None:
    """A screenshot of the whole page into tests/artifacts/ (Streamlit scrolls inside its main
    block: the viewport is made as tall as its content, then put back)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"]')]"
                           ".map(e => e.scrollHeight), 800)")
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(800)  # plotly re-lays out on resize
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(size)


def readme_screenshots() -> None:
    """docs/overview.png and docs/cost.png from this run's 1440 px screenshots: the top of the page
    (the headline and the first charts or formula cards), 1000 px wide, 64 colours."""
    from PIL import Image

    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    for name in ("overview", "cost"):
        with Image.open(ARTIFACTS / f"default_{name}_1440.png") as shot:
            top = shot.convert("RGB").crop((0, 0, shot.width, min(shot.height, 1250)))
            small = top.resize((1000, round(top.height * 1000 / top.width)), Image.LANCZOS)
            small.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(docs / f"{name}.png", optimize=True)


def visit_every_page(page, base: str | None, label: str) -> list[str]:
    """Every page at both widths: what a person would see wrong, as lines. With ``base`` each page
    is opened by its URL (a new run of the default view); without, through the sidebar's links
    (the session, and an upload, stay)."""
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        for path, (title, texts) in PAGES.items():
            if base is not None:
                page.goto(f"{base}/{path}", wait_until="domcontentloaded")
            else:
                page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
            check_page(page, title, texts[:1])
            page.wait_for_timeout(600)
            seen = look(page)
            for kind in ("overflow", "cells", "exponents"):
                problems += [f"{label} {title} at {width} px, {kind}: {p}" for p in seen[kind]]
            shoot(page, f"{label}_{path or 'overview'}_{width}")
    return problems


def download_report(page, base: str, tmp_path: Path) -> Path:
    page.goto(f"{base}/report", wait_until="domcontentloaded")
    check_page(page, "Report", ["Machine YAML"])
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="HTML", exact=True).click()
    path = tmp_path / "report.html"
    download.value.save_as(str(path))
    return path


def test_default_view_and_report_look_right(server, browser, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": WIDTHS[0], "height": 1000})
    try:
        problems = visit_every_page(page, server, "default")
        if os.environ.get("README_SCREENSHOTS") == "1":
            readme_screenshots()
        report = download_report(page, server, tmp_path)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 1000})
            page.goto(report.as_uri())
            page.wait_for_timeout(1500)
            seen = look(page)
            for kind in ("overflow", "cells", "exponents"):
                problems += [f"report at {width} px, {kind}: {p}" for p in seen[kind]]
            shoot(page, f"report_{width}")
    finally:
        page.close()
    assert not problems, summary(problems)


@pytest.fixture(scope="module")
def dynamo_export(tmp_path_factory) -> Path:
    """A Llama exported by dynamo (operator names like ``node_linear_28``), without weights."""
    return Corpus(tmp_path_factory.mktemp("looks_exports")).get("llama", "dynamo").path


def test_an_uploaded_dynamo_export_looks_right(server, browser, dynamo_export):  # noqa: F811
    page = browser.new_page(viewport={"width": WIDTHS[0], "height": 1000})
    try:
        page.goto(f"{server}/model", wait_until="domcontentloaded")
        check_page(page, "Model", ["Operators"])
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(dynamo_export))
        page.wait_for_function(
            "n => { const m = document.querySelector('[data-testid=\"stMain\"]');"
            " return m && m.innerText.includes('In use: ' + n + ' (uploaded)'); }", arg=dynamo_export.name,
            timeout=120_000)
        wait_until_idle(page)
        main = page.locator('[data-testid="stMain"]').inner_text()
        # its two decoder layers are found by structure, though no name says "layer"
        metric = page.locator('[data-testid="stMetric"]').filter(has_text="Repeated layers")
        assert metric.locator('[data-testid="stMetricValue"]').inner_text().strip() == "2", main[:1500]
        assert main.count("none found") == 0
        problems = visit_every_page(page, None, "dynamo")
    finally:
        page.close()
    assert not problems, summary(problems)
