"""A new user's display findings (issue 15): the Compare table's short headers with units, the
sweep's times in one unit per column, its markers and its caption, the Report page's distinct
download labels, the sidebar's short precision label and an edited machine named
``<name> (edited)`` everywhere."""

from __future__ import annotations

import json
import math

import pandas as pd
from models import gemm_mlp, graph_of
from test_app import rendered, run_app, goto, assert_clean

from explorer.views import compare
from explorer.views.machine import edit_effect
from planner.api import plan_model
from planner.machine.tree import load_preset
from planner.options import PlanOptions


def _plan(machine, algorithm="data_parallel"):
    g = graph_of(gemm_mlp([256, 512, 512, 64], batch="batch"), batch=1024)
    return plan_model(g, machine, PlanOptions(algorithm=algorithm))


def test_compare_rows_have_short_headers_with_units_and_memory_before_the_configuration():
    r = _plan(load_preset("a100_2x8_slow"))
    row = compare.compare_row("data_parallel", r)
    assert list(row) == ["algorithm", "iteration (ms)", "speed-up", "memory (GiB)", "fits", "configuration",
                         "search (s)", "note"]
    assert max(len(k) for k in row if k not in ("configuration",)) <= 14  # "memory per devic" was clipped
    assert math.isclose(row["memory (GiB)"], r.memory.peak / 2**30, rel_tol=1e-9)
    assert math.isclose(row["iteration (ms)"], r.total_seconds * 1000, rel_tol=1e-12)
    assert list(compare.compare_row("exact", None, "too large")) == list(row)  # a failed row: the same columns
    assert set(compare.COMPARE_HELP) <= set(row)


def _sweep(ms, dp_ms, changed=None) -> pd.DataFrame:
    n = len(ms)
    return pd.DataFrame({"devices": [8 * 2**i for i in range(n)], "iteration (ms)": ms,
                         "speed-up over data parallel": [d / t for d, t in zip(dp_ms, ms)],
                         "data parallel (ms)": dp_ms, "fits": [True] * n, "strategy": [f"s{i}" for i in range(n)],
                         "changed": changed or [False] * n})


def test_the_sweep_table_shows_each_time_column_in_one_unit():
    shown = compare.sweep_table(_sweep([49840.0, 20000.0, 900.0], [5.0, 60.0, 900.0]))
    # 49,840 ms is 49.84 s: the column reads in seconds; data parallel peaks at 900 ms: in ms
    assert list(shown.columns) == ["devices", "iteration (s)", "speed-up", "data parallel (ms)", "fits", "strategy"]
    assert list(shown["iteration (s)"]) == [49.84, 20.0, 0.9]
    assert list(shown["data parallel (ms)"]) == [5.0, 60.0, 900.0]
    assert math.isclose(shown["speed-up"][0], 5.0 / 49840.0)


def test_a_failed_sweep_point_stays_a_missing_cell():
    frame = _sweep([1.5, 2.0], [3.0, 4.0])
    frame.loc[1, ["iteration (ms)", "data parallel (ms)", "speed-up over data parallel"]] = None
    shown = compare.sweep_table(frame)
    assert shown.columns[1] == "iteration (ms)" and shown["iteration (ms)"][0] == 1.5
    assert shown["iteration (ms)"].isna()[1]


def test_every_strategy_change_of_a_sweep_has_its_own_marker():
    # changes at every count from 16 to 4,096 (9 changes): the 1st and the 7th once shared a purple diamond
    frame = _sweep([10.0 * (i + 1) for i in range(10)], [20.0] * 10, [False] + [True] * 9)
    fig = compare.sweep_figure(frame)
    markers = [(t.marker.symbol, t.marker.color) for t in fig.data if t.legendgroup == "changes"]
    assert len(markers) == 9 and len(set(markers)) == 9
    assert len({compare.change_marker(i) for i in range(36)}) == 36


def test_the_sweep_caption_agrees_with_the_devices_slider():
    # a100_2x8_slow: 8 gpus under each node, the node slider goes to 1,024 nodes = 8,192 devices
    text = compare.sweep_caption(load_preset("a100_2x8_slow"), compare.SWEEP_DEVICE_COUNTS, "node")
    assert "8 to 4,096 devices" in text and "goes to 8,192" in text
    # dgx_a100: one level of 8 gpus, the slider goes to 1,024 gpus
    assert "goes to 1,024" in compare.sweep_caption(load_preset("dgx_a100"), compare.SWEEP_DEVICE_COUNTS, "gpu")


def test_the_machine_page_caption_names_an_edited_preset():
    preset = load_preset("a100_2x8_slow")
    edited = preset.with_level(0, bandwidth_Bps=1e11)
    effect = edit_effect({"label": "custom", "machine": preset, "result": _plan(preset)}, _plan(edited), "custom")
    assert effect["caption"].startswith("Before: a100_2x8_slow (edited) (2 nodes x 8 gpus")
    assert "After: a100_2x8_slow (edited) (2 nodes" in effect["caption"] and "custom" not in effect["caption"]


def test_the_sidebar_and_the_machine_page_name_an_edited_machine():
    edited = load_preset("a100_2x8_slow").with_level(0, bandwidth_Bps=1e11)
    at = run_app(model="mlp", machine_json=json.dumps(edited.to_dict()))
    assert_clean(at)
    sidebar = " ".join(rendered(m.value) for m in at.sidebar.markdown)
    assert "a100_2x8_slow (edited)" in sidebar and "custom" not in sidebar
    precision = at.selectbox(key="sb_precision")
    assert precision.options[0] == "model's" and "as in the model" in precision.help
    goto(at, "machine")
    assert_clean(at)
    preset_box = at.selectbox(key="mc_preset")
    assert preset_box.value is None and preset_box.proto.placeholder == "a100_2x8_slow (edited)"


def test_the_report_downloads_have_short_distinct_labels():
    at = goto(run_app(model="mlp", machine="dgx_a100"), "report")
    assert_clean(at)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["HTML", "Markdown", "Plan JSON", "Machine YAML"]
    assert [b.label for b in at.button] == ["PDF", "Run the verification"][:len(at.button)]
