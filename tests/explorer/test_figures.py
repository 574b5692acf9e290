"""Every chart of the explorer fits its box (explorer/figures.py), checked on the figure objects:
automargins on every axis, the legend above the plot, operator names abbreviated on the axis and
whole on hover, log axes of times ticked at decades in the unit, device axes at powers of two,
the memory chart scaled to the plan, the sweep's strategy changes as markers in the legend."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from explorer import timeline
from explorer.cache import PlanCache, PlanRequest
from explorer.figures import abbreviate, devices_axis, name_axis, nice_log_ticks, time_log_axis
from explorer.sources import sample_source
from explorer.views import compare, cost, graph, machine, memory, pipeline, strategy
from planner.machine.tree import load_preset
from planner.options import PlanOptions
from planner.units import GIB


def _plan(name: str, bindings: dict, preset: str, options: PlanOptions):
    cache = PlanCache()
    src = sample_source(name)
    g = cache.graph(src, bindings)
    return cache.result(PlanRequest(src, bindings, load_preset(preset), options), g)


@pytest.fixture(scope="module")
def plain():
    """The MLP on a DGX A100 (8 GPUs): a plan of a few MiB per device against 80 GB."""
    return _plan("mlp", {"batch": 8}, "dgx_a100", PlanOptions())


@pytest.fixture(scope="module")
def pipelined():
    return _plan("gpt2_small", {"batch": 8, "seq": 64}, "dgx_a100",
                 PlanOptions(algorithm="drec", pipeline_stages=2, micro_batches=4))


def _sweep_frame() -> pd.DataFrame:
    rows = [(8, 40.0, 1.0, 40.0, "node: data"), (16, 22.0, 1.1, 24.0, "node: data"),
            (32, 12.0, 1.3, 15.0, "node: data | gpu: model"), (64, 7.0, 1.6, 11.0, "node: data | gpu: model"),
            (128, 4.5, 2.0, 9.0, "pipeline: 2 stages | node: data | gpu: model")]
    return pd.DataFrame([{"devices": d, "iteration (ms)": t, "speed-up over data parallel": s, "data parallel (ms)": dp,
                          "fits": True, "strategy": k, "changed": i > 0 and k != rows[i - 1][4]}
                         for i, (d, t, s, dp, k) in enumerate(rows)])


def _figures(plain, pipelined):
    frame = pd.DataFrame([{"algorithm": "drec+", "iteration (ms)": 4.0, "fits": True},
                          {"algorithm": "data_parallel", "iteration (ms)": 400.0, "fits": False}])
    g = plain.graph
    out = {
        "op cost": cost.op_cost_figure(plain), "level cost": cost.level_cost_figure(plain),
        "memory": memory.memory_figure(plain), "memory (stages)": memory.memory_figure(pipelined),
        "iteration": pipeline.iteration_figure(pipelined), "stage time": pipeline.stage_time_figure(pipelined),
        "stage layers": pipeline.stage_layer_figure(pipelined),
        "timeline": timeline.timeline_figure(timeline.plan_timeline(pipelined)),
        "heatmap": strategy.strategy_heatmap(plain, list(plain.cost_model.planned)),
        "machine": machine.machine_tree_figure(plain.machine),
        "graph": graph.graph_figure(g, graph.build_view(g, graph.default_view(g)), "strategy", plain),
        "compare": compare.compare_figure(frame), "sweep": compare.sweep_figure(_sweep_frame()),
    }
    return out


def _axes(fig):
    layout = fig.to_plotly_json()["layout"]
    return {k: v for k, v in layout.items() if k.startswith(("xaxis", "yaxis"))}


def test_every_axis_has_automargin_and_every_legend_is_above(plain, pipelined):
    for label, fig in _figures(plain, pipelined).items():
        axes = _axes(fig)
        assert axes, label
        for name, axis in axes.items():
            assert axis.get("automargin") is True, (label, name)
        legend = fig.layout.legend
        if len(fig.data) > 1 and fig.layout.showlegend is not False:
            assert legend.orientation == "h" and legend.y >= 1 and legend.yanchor == "bottom", label


def test_log_ticks_of_a_narrow_time_range_read_in_the_unit():
    axis = time_log_axis([0.021, 0.039])
    assert axis["tickvals"] == [0.02, 0.03, 0.04]
    assert axis["ticktext"] == ["20 ms", "30 ms", "40 ms"]
    # the data lie inside the drawn range (log10 of seconds)
    assert axis["range"][0] < math.log10(0.021) and axis["range"][1] > math.log10(0.039)


def test_log_ticks_of_a_wide_time_range_are_decades():
    axis = time_log_axis([0.0012, 0.43])  # 1.2 ms to 430 ms: the decades 1 ms .. 1 s around them
    assert axis["ticktext"] == ["1 ms", "10 ms", "100 ms", "1 s"]
    assert nice_log_ticks(1e-6, 1) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1]
    assert nice_log_ticks(1.5, 45) == [1, 2, 5, 10, 20, 50]  # 1-2-5 over 0.6 to two decades


def test_device_axes_tick_the_powers_of_two():
    axis = devices_axis(compare.SWEEP_DEVICE_COUNTS)
    assert axis["tickvals"] == [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    assert axis["ticktext"][-1] == "4,096" and axis["type"] == "log"
    fig = compare.sweep_figure(_sweep_frame())
    assert list(fig.layout.xaxis.tickvals) == [8, 16, 32, 64, 128]
    # 4.5 to 40 ms (plan) and 9 to 40 ms (data parallel): 1-2-5 from the tick below to the tick above
    assert list(fig.layout.yaxis.ticktext) == ["2 ms", "5 ms", "10 ms", "20 ms", "50 ms"]


def test_sweep_strategy_changes_are_markers_in_the_legend_not_rotated_text():
    fig = compare.sweep_figure(_sweep_frame())
    changes = [t for t in fig.data if t.legendgroup == "changes"]
    assert [(t.x[0], t.mode) for t in changes] == [(32, "markers"), (128, "markers")]
    assert changes[0].name == "from 32: node: data | gpu: model"
    assert len({t.marker.symbol for t in changes}) == 2
    assert not any(a.textangle for a in fig.layout.annotations)


def test_memory_axis_is_scaled_to_the_plan_not_to_the_capacity(plain):
    fig = memory.memory_figure(plain)
    assert plain.memory.peak < GIB  # the MLP needs far less than 1 GiB: its axis is in MiB (issue 15)
    peak, capacity = plain.memory.peak / 2**20, plain.memory.capacity / 2**20
    assert peak < capacity / 100  # the MLP needs far less than 80 GB
    top = fig.layout.xaxis.range[1]
    assert peak < top < 2 * peak  # the bar fills most of the axis
    assert sum(bar.x[0] for bar in fig.data) == pytest.approx(peak)  # the parts in MiB add up to the peak
    assert fig.layout.xaxis.title.text == "MiB per device"  # short enough for a 1024 px window's half column
    assert not fig.layout.shapes  # no capacity line far off the axis
    # the capacity is named in the hover and in the sentence under the chart: 80e9 bytes = 74.5 GiB
    assert all("of the 74.5 GiB capacity" in bar.hovertemplate for bar in fig.data)
    text = memory.capacity_text(plain)
    share = re.fullmatch(r"Capacity 74\.5 GiB per device; the peak uses (\d+\.\d+)% of it\.", text)
    assert share, text  # 3 significant digits (planner.units.format_percent): a tiny share never reads 0.0%
    assert float(share.group(1)) == pytest.approx(100 * plain.memory.peak / 80e9, rel=5e-3)


def test_memory_capacity_is_a_line_when_the_plan_is_near_it(plain):
    from dataclasses import replace
    from types import SimpleNamespace

    near = SimpleNamespace(memory=replace(plain.memory, capacity=plain.memory.peak * 1.25), schedule=plain.schedule,
                           options=plain.options)
    fig = memory.memory_figure(near)
    assert fig.layout.xaxis.title.text == "MiB per device"  # the peak's unit: it is below 1 GiB
    assert fig.layout.xaxis.range[1] >= near.memory.capacity / 2**20
    assert fig.layout.shapes[0].x0 == pytest.approx(near.memory.capacity / 2**20)


def test_operator_names_are_abbreviated_on_the_axis_and_whole_on_hover(plain):
    long = "/bert/encoder/layer.11/attention/self/query/MatMul"
    assert abbreviate(long) == "…/layer.11/…/self/query/MatMul"
    assert abbreviate("x" * 50, 20) == "x" * 7 + "…" + "x" * 12  # a third of the room for the start
    axis = name_axis([long, "<b>short</b>"])
    assert axis["tickvals"] == [long, "<b>short</b>"]  # the values (and the hover) keep the name
    assert axis["ticktext"][1] == "&lt;b&gt;short&lt;/b&gt;"
    fig = cost.op_cost_figure(plain)
    assert list(fig.layout.yaxis.tickvals) == list(fig.data[0].y)
    assert all(len(t) <= 32 for t in fig.layout.yaxis.ticktext)


def test_nothing_is_drawn_above_the_plot_where_the_legend_is(pipelined):
    """The slowest stage is named in its tick label and the priced line in the axis title: an
    arrow or a label above the plot would meet the legend."""
    times = pipelined.schedule.stage_seconds
    stages = pipeline.stage_time_figure(pipelined)
    labels = list(stages.data[0].x)
    assert [i for i, label in enumerate(labels) if label.endswith("(slowest)")] == [times.index(max(times))]
    for fig in (stages, timeline.timeline_figure(timeline.plan_timeline(pipelined))):
        assert all(a.yref != "paper" or a.y < 1 for a in fig.layout.annotations)


def test_an_edited_machine_is_named_edited_in_the_tree_and_the_label():
    """A trial found 'In use: custom' beside a tree still titled with the preset's name: both now
    say which machine it was and that it was edited; a preset keeps its own name."""
    from planner.machine.tree import load_preset

    m = load_preset("dgx_a100")
    assert machine.machine_label_text(m, "custom") == f"{m.name} (edited)"
    assert machine.machine_label_text(m, "dgx_a100") == "dgx_a100"
    root = machine.machine_tree_figure(m, label="custom").data[0].labels[0]
    assert root == f"{m.name} (edited): {m.num_devices:,} devices"
