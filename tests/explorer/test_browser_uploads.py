"""Uploading models one after another in a real browser: each upload becomes the model in use
(the Model page's "In use" line, the sidebar and the operator count), with no second try."""

from __future__ import annotations

import onnx
import pytest
from models import gemm_mlp
from test_browser import browser, server, wait_until_idle  # noqa: F401 - fixtures: one server, one Chromium

#: four small models (weights are external references that are never read: shapes only), each with
#: its own number of Gemm layers, so that the operator count tells them apart
WIDTHS = {"first.onnx": [16, 32], "second.onnx": [16, 32, 8], "third.onnx": [16, 32, 8, 4],
          "fourth.onnx": [16, 32, 8, 4, 2]}


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def test_four_uploads_in_a_row_each_become_the_model_in_use(server, browser, tmp_path):  # noqa: F811
    files = {}
    for name, widths in WIDTHS.items():
        path = tmp_path / name
        onnx.save(gemm_mlp(widths, batch="batch"), str(path))
        files[name] = path
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/model?model=mlp&bind=batch:8&machine=dgx_a100", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Model").first.wait_for(timeout=90_000)
        wait_until_idle(page)
        for name, path in files.items():
            page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(path))
            try:
                page.wait_for_function(
                    "n => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                    " return m && m.innerText.includes('In use: ' + n + ' (uploaded)'); }", arg=name, timeout=60_000)
            except Exception:  # noqa: BLE001 - say what the page shows instead
                pytest.fail(f"{name} did not become the model in use; the page reads:\n{main_text(page)[:1500]}")
            wait_until_idle(page)
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            assert name in sidebar, sidebar[:800]
            layers = len(WIDTHS[name]) - 1
            operators = page.locator('[data-testid="stMetric"]').filter(has_text="Planned operators")
            assert operators.locator('[data-testid="stMetricValue"]').inner_text().strip() == str(layers)
            assert page.locator('[data-testid="stException"]').count() == 0
            assert "unchanged" not in main_text(page)
    finally:
        page.close()
