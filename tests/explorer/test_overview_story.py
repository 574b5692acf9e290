"""The Overview's two sentences, the Machine page's before and after, and splits named by role."""

from __future__ import annotations

from models import gemm_mlp, graph_of

from explorer.views.machine import edit_effect
from explorer.views.overview import machine_text, story, where_split
from explorer.views.splits import level_roles, role_label
from planner.api import plan_model
from planner.machine.tree import load_preset
from planner.options import PlanOptions


def _dp_plan(machine):
    g = graph_of(gemm_mlp([256, 512, 512, 64], batch="batch"), batch=1024)
    return plan_model(g, machine, PlanOptions(algorithm="data_parallel"))


def test_a_data_parallel_plan_splits_the_batch_at_every_level():
    # a100_2x8_slow: 2 nodes x 8 gpus; pure data parallelism splits every operator's batch over both
    r = _dp_plan(load_preset("a100_2x8_slow"))
    assert level_roles(r) == [("node", ["batch"]), ("gpu", ["batch"])]
    assert where_split(r) == "the batch over the 2 nodes and the batch over the 8 gpus of each node"
    for name in r.cost_model.planned:
        assert role_label(r, name) == "batch x2 over node · batch x8 over gpu"


def test_the_story_names_the_edited_machine_by_its_shape_not_the_preset():
    preset = load_preset("a100_2x8_slow")
    edited = preset.with_level(0, arity=4)  # 4 nodes x 8 gpus, still named after the preset
    r = _dp_plan(edited)
    text = story(r, "custom")
    assert "a100\\_2x8\\_slow" not in text and "a100_2x8_slow" not in text
    # one pair of parentheses, not "(... (edited))" (the trial's "(preset dgx_a100_64nodes))")
    assert text.startswith("On 32 devices, 4 nodes x 8 gpus of A100-SXM4-80GB \\(edited\\), the planner splits ")
    preset_story = story(_dp_plan(preset), "a100_2x8_slow")
    assert "))" not in preset_story and "\\)\\)" not in preset_story
    assert machine_text(_dp_plan(preset), "a100_2x8_slow") == "2 nodes x 8 gpus of A100-SXM4-80GB (preset a100_2x8_slow)"


def test_the_machine_page_shows_the_iteration_before_and_after_an_edit():
    preset = load_preset("a100_2x8_slow")
    before, after = _dp_plan(preset), _dp_plan(preset.with_level(0, bandwidth_Bps=1e11))  # 80x faster node links
    assert after.total_seconds < before.total_seconds  # the gradient all-reduce crosses the faster links
    effect = edit_effect({"label": "a100_2x8_slow", "machine": preset, "result": before}, after, "custom")
    assert effect["faster"] and effect["iteration_delta"].startswith("-")
    assert effect["caption"].startswith("Before: a100_2x8_slow (2 nodes x 8 gpus")
    assert edit_effect(None, after, "custom") is None
    assert edit_effect({"label": "x", "machine": preset, "result": after}, after, "custom") is None
