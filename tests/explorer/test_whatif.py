"""What an edit of the machine does at once: the plan in use re-priced on the edited machine
(labelled as such) before the re-plan, then the re-planned figures and what the re-plan gained;
edits of the device count re-plan; bad input is a message, never a traceback."""

from __future__ import annotations

import math
from pathlib import Path

from streamlit.testing.v1 import AppTest

from explorer.cache import PlanCache, PlanRequest
from explorer.sources import sample_source
from explorer.views.compare import outer_arities
from explorer.views.machine import replan_gain
from planner.api import PlanOptions, evaluate_plan, plan_model, reprice_plan
from planner.machine.tree import Machine, load_preset
from planner.plans.report import plan_to_json
from planner.units import format_seconds

ROOT = Path(__file__).resolve().parents[2]
QUERY = {"model": "mlp", "bind": "batch:64", "machine": "a100_2x8_slow", "algorithm": "drec"}


def app(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update(QUERY)
    at.run()
    return at.switch_page(f"pages/{page}.py").run()


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def labels(at: AppTest) -> list[str]:
    return [m.label for m in at.metric]


def independent_reprice(at: AppTest, what_if: Machine) -> float:
    """The plan in use scored on ``what_if`` from its plan file (evaluate_plan, a second method)."""
    ctx = at.session_state["_ctx"]
    return evaluate_plan(ctx.graph, what_if, plan_to_json(ctx.result), ctx.result.options,
                         rebinder=ctx.cache.rebinder(ctx.source)).total_seconds


def test_a_what_if_bandwidth_shows_the_current_plan_repriced_then_the_replanned_one():
    at = app("compare")
    clean(at)
    ctx = at.session_state["_ctx"]
    what_if = ctx.machine.with_level(0, bandwidth_Bps=1.0e9)  # the slider's 1 GB/s on the outer level
    expected = independent_reprice(at, what_if)
    at.select_slider(key=f"wi_bw_0_{at.session_state['machine_version']}").set_value(1.0).run()
    clean(at)
    shown = metrics(at)
    assert shown["Current plan: Predicted iteration time"] == format_seconds(expected)
    cached = ctx.cache.repriced(ctx.request(machine=what_if), ctx.graph, ctx.request())
    assert math.isclose(cached.total_seconds, expected, rel_tol=1e-9)
    assert math.isclose(cached.total_seconds, reprice_plan(ctx.graph, ctx.result, what_if).total_seconds,
                        rel_tol=1e-9)
    replanned = ctx.cache.result(ctx.request(machine=what_if), ctx.graph)
    assert shown["Predicted iteration time"] == format_seconds(replanned.total_seconds)
    order = labels(at)  # the re-priced figures are drawn first, the re-plan's after them
    assert order.index("Current plan: Predicted iteration time") < order.index("Predicted iteration time")
    assert [s.label for s in at.status] == ["Re-planned on the what-if machine"]  # the re-plan's progress
    assert any(i.value.startswith("The re-plan") for i in at.info)


def test_a_what_if_device_count_replans_without_repricing():
    at = app("compare")
    ver = at.session_state["machine_version"]
    at.select_slider(key=f"wi_outer_{ver}").set_value(4).run()
    clean(at)
    shown = metrics(at)
    assert not any(k.startswith("Current plan:") for k in shown)
    assert shown["Devices"] == "32" and shown["Predicted iteration time"]
    assert [s.label for s in at.status] == ["Re-planned on the what-if machine"]


def test_the_machine_page_shows_repriced_and_replanned_figures_after_a_bandwidth_edit():
    at = app("machine")
    ctx = at.session_state["_ctx"]
    before = ctx.result.total_seconds
    what_if = ctx.machine.with_level(1, bandwidth_Bps=5e9)
    expected = independent_reprice(at, what_if)
    at.session_state[f"mc_levels_{at.session_state['machine_version']}"] = {
        "edited_rows": {1: {"bandwidth (GB/s)": 5.0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    clean(at)
    shown = metrics(at)
    after = at.session_state["_ctx"]
    assert after.machine.levels[1].bandwidth_Bps == 5e9
    assert shown["Current plan on the edited machine"] == format_seconds(expected)
    assert shown["Re-planned iteration time"] == format_seconds(after.result.total_seconds)
    assert expected > before  # a slower link costs the unchanged plan more
    assert any(i.value.startswith("The re-plan") for i in at.info)


def test_the_machine_page_replans_a_device_count_edit():
    at = app("machine")
    at.session_state[f"mc_levels_{at.session_state['machine_version']}"] = {
        "edited_rows": {0: {"arity": 4}}, "added_rows": [], "deleted_rows": []}
    at.run()
    clean(at)
    shown = metrics(at)
    assert at.session_state["_ctx"].result.machine.num_devices == 32
    assert "Current plan on the edited machine" not in shown
    assert shown["Iteration time"] == format_seconds(at.session_state["_ctx"].result.total_seconds)


def test_bad_machine_input_is_a_message_not_a_traceback():
    at = app("machine")
    for row, problem in (({"bandwidth (GB/s)": -5.0}, "more than 0 GB/s"), ({"latency (µs)": "zero"}, "must be a number"),
                         ({"bandwidth (GB/s)": "0"}, "more than 0 GB/s"), ({"arity": 2.5}, "whole number")):
        at.session_state[f"mc_levels_{at.session_state['machine_version']}"] = {
            "edited_rows": {1: row}, "added_rows": [], "deleted_rows": []}
        at.run()
        assert not at.exception
        assert any(problem in e.value for e in at.error), (row, [e.value for e in at.error])
    at.session_state[f"mc_levels_{at.session_state['machine_version']}"] = {
        "edited_rows": {1: {"latency (µs)": "0"}}, "added_rows": [], "deleted_rows": []}
    at.run()  # zero latency, as text, is a valid machine
    clean(at)
    assert at.session_state["_ctx"].machine.levels[1].latency_s == 0


def test_the_cache_reprices_only_what_it_can_answer_at_once():
    src, bindings, options = sample_source("mlp"), {"batch": 64}, PlanOptions(algorithm="drec")
    machine = load_preset("a100_2x8_slow")
    cache = PlanCache()
    graph = cache.graph(src, bindings)
    current = PlanRequest(src, bindings, machine, options)
    slower = current.on(machine=machine.with_level(0, bandwidth_Bps=1e9))
    assert cache.repriced_if_possible(slower, graph, current) is None  # the plan in use is not made yet
    cache.result(current, graph)
    assert cache.repriced_if_possible(current, graph, current) is None  # nothing changed
    assert cache.repriced_if_possible(current.on(machine=machine.with_level(0, arity=4)), graph, current) is None
    fast = cache.repriced_if_possible(slower, graph, current)
    assert fast.plan.strategies == cache.result(current, graph).plan.strategies
    assert not cache.has_result(slower)  # nothing was re-planned


def test_replan_gain_says_whether_the_replan_changed_the_plan():
    src = sample_source("mlp")
    cache = PlanCache()
    graph = cache.graph(src, {"batch": 64})
    machine = load_preset("a100_2x8_slow")
    slow = machine.with_level(1, bandwidth_Bps=machine.levels[1].bandwidth_Bps / 1000)
    rebinder = cache.rebinder(src)
    current = plan_model(graph, machine, PlanOptions(algorithm="drec"), rebinder=rebinder)
    repriced = reprice_plan(graph, current, slow)
    replanned = plan_model(graph, slow, PlanOptions(algorithm="drec"), rebinder=rebinder)
    assert replanned.plan.strategies != current.plan.strategies  # a 1000x slower link changes the plan
    gain = repriced.total_seconds - replanned.total_seconds
    assert gain > 0
    text = replan_gain(repriced, replanned)
    assert text.startswith("The re-plan finds a different plan") and format_seconds(gain) in text
    assert f"({gain / repriced.total_seconds:.1%})" in text
    assert replan_gain(repriced, reprice_plan(graph, current, slow)).startswith("The re-plan keeps the current plan")


def test_outer_arities_are_powers_of_two_with_the_current_one():
    machine = load_preset("a100_2x8_slow")  # 2 nodes x 8 GPUs
    inner, choices = outer_arities(machine)
    assert inner == 8
    assert choices[:3] == [1, 2, 4] and 2 in choices and choices[-1] == 1024
    odd = machine.with_level(0, arity=3)
    assert 3 in outer_arities(odd)[1]
    big = Machine.from_dict({**machine.to_dict(), "levels": [dict(machine.to_dict()["levels"][0], arity=2),
                                                             dict(machine.to_dict()["levels"][1], arity=4096)]})
    assert outer_arities(big)[1][-1] == 256  # 256 x 4096 = 2**20 devices at most


def test_an_option_changed_after_a_machine_edit_is_not_shown_as_a_repricing():
    at = app("machine")
    at.selectbox(key="sb_algorithm").set_value("data_parallel").run()  # cached on the machine before the edit
    at.selectbox(key="sb_algorithm").set_value("drec").run()
    at.session_state[f"mc_levels_{at.session_state['machine_version']}"] = {
        "edited_rows": {1: {"bandwidth (GB/s)": 5.0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert "Current plan on the edited machine" in metrics(at)
    at.selectbox(key="sb_algorithm").set_value("data_parallel").run()  # the plan before was drec's
    clean(at)
    shown = metrics(at)
    assert "Current plan on the edited machine" not in shown
    assert shown["Iteration time"] == format_seconds(at.session_state["_ctx"].result.total_seconds)


def test_the_cache_keeps_a_refusal_instead_of_planning_it_again(monkeypatch):
    """The Compare page asks for every algorithm on every run (each what-if move): a request the
    planner refused (Megatron's layout on an MLP, not a transformer) is refused again at once."""
    import explorer.cache as cache_module
    from planner.search.megatron import NotATransformerError

    calls = []
    original = cache_module.plan_model
    monkeypatch.setattr(cache_module, "plan_model", lambda *a, **k: calls.append(1) or original(*a, **k))
    src, bindings = sample_source("mlp"), {"batch": 64}
    cache = PlanCache()
    graph = cache.graph(src, bindings)
    request = PlanRequest(src, bindings, load_preset("a100_2x8_slow"), PlanOptions(algorithm="megatron"))
    for _ in range(2):
        try:
            cache.result(request, graph)
        except NotATransformerError:
            pass
        else:
            raise AssertionError("megatron planned an MLP")
    assert len(calls) == 1
