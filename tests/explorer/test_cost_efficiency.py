"""The Cost page's per-operator compute efficiency (explorer/views/cost.py) against hand arithmetic.

Model: the generator's GPT, 1 layer, hidden 256, 4 heads, MLP 1024, vocabulary 1000, batch 2,
sequence 128, on one device with 256 x 128 tiles, 108 multiprocessors and a ceiling of 0.75.
"""

from __future__ import annotations

import pytest

import models  # tests/models.py
from explorer.views import cost as view
from planner.api import plan_model
from planner.machine.tree import Device, Level, Machine
from planner.options import PlanOptions
from sample_models.synthetic import gpt_decoder


@pytest.fixture(scope="module")
def result():
    graph = models.graph_of(gpt_decoder(1, 256, 4, 1024, 1000, 128), batch=2, seq=128)
    device = Device("gpu", 312e12, 80e9, compute_efficiency=0.75, tile_rows=256, tile_cols=128, multiprocessors=108)
    machine = Machine("one", device, (Level("gpu", 1, 300e9, 5e-6),))
    return plan_model(graph, machine, PlanOptions(algorithm="data_parallel", pipeline_stages=1, micro_batches=1))


def test_the_formula_line_spells_out_ceiling_tile_and_wave(result):
    # qkv: rows b s = 256, columns 3 h = 768: 1 x 6 tiles of 256 x 128, no padding (tile 1), one
    # wave with 6 of 108 busy (0.0556): 75% x 1 x 0.0556 = 4.17%
    text = view.efficiency_text(result, "layer0.attn.qkv")
    assert "75% × 1 × 0.0556 = **4.17%**" in text
    assert "1 × 256 × 768 output in 256 × 128 tiles" in text and "6 tiles in 1 waves of 108" in text
    assert "not a matrix product" in view.efficiency_text(result, "layer0.ln_1")


def test_the_table_lists_the_matrix_products(result):
    table = view.efficiency_table(result)
    fc1 = table.set_index("operator").loc["layer0.mlp.fc1"]
    # fc1: 256 x 1024: 1 x 8 tiles, one wave: 8/108 = 0.074; 75% x 0.074 = 5.6%
    assert (fc1["tiles"], fc1["waves"], fc1["wave"], fc1["efficiency (%)"]) == (8, 1, 0.074, 5.6)
    assert set(table["operator"]) >= {"layer0.attn.qkv", "layer0.attn.scores", "logits"}
    assert (table["of peak (%)"] <= table["efficiency (%)"] + 1e-9).all()
