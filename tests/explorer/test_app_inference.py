"""In inference the explorer's memory and stage figures speak of no gradients (issue 15): an
inference pass keeps no gradients and no optimizer state and syncs none, so the memory table,
the memory chart and the Cost page name parameters and activations only."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.views.memory import memory_figure, memory_table
from explorer.views.pipeline import stage_table
from planner.api import plan_model
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.options import PlanOptions
from planner.plans.report_doc import charts, cost_rows, memory_rows

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def _page_text(at: AppTest) -> str:
    texts = [e.value for kind in ("markdown", "caption", "subheader", "info", "warning") for e in at.get(kind)]
    frames = [e.value.to_string() for e in at.dataframe]
    charts_ = [e.proto.spec for e in at.get("plotly_chart")]
    return "\n".join(map(str, texts + frames + charts_))


@pytest.fixture(scope="module")
def cost_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(model="mlp", bind="batch:64", machine="dgx_a100", mode="infer", algorithm="drec")
    at.run()
    return at.switch_page("pages/cost.py").run()


def test_the_cost_page_in_inference_names_no_gradients(cost_page):
    assert not cost_page.exception
    memory = next(f.value for f in cost_page.dataframe if "part" in f.value.columns)
    # parameters, activations, the peak and the capacity: four rows, no gradients or optimizer state
    assert list(memory["part"]) == ["parameters", "activations", "total (peak)", "capacity"]
    assert "gradient" not in _page_text(cost_page).lower()


def test_training_keeps_the_four_parts():
    graph = import_model(str(ROOT / "sample_models" / "mlp.onnx"), {"batch": 64})
    train = plan_model(graph, load_preset("dgx_a100"), PlanOptions("train", algorithm="drec"))
    assert list(memory_table(train)["part"]) == ["parameters", "gradients", "optimizer state", "activations",
                                                 "total (peak)", "capacity"]
    assert [t.name for t in memory_figure(train).data] == ["parameters", "gradients", "optimizer state", "activations"]


def test_the_report_and_the_chart_in_inference_name_no_gradients():
    graph = import_model(str(ROOT / "sample_models" / "mlp.onnx"), {"batch": 64})
    infer = plan_model(graph, load_preset("dgx_a100"), PlanOptions("infer", algorithm="drec"))
    assert [t.name for t in memory_figure(infer).data] == ["parameters", "activations"]
    assert [label for label, _ in memory_rows(infer)] == ["parameters", "activations", "peak", "capacity"]
    assert [part for part, _ in charts(infer)[2].bars[0].parts] == ["parameters", "activations"]
    assert not any("gradient" in label for label, _ in cost_rows(infer))
    assert "gradient sync (µs)" not in stage_table(infer).columns
