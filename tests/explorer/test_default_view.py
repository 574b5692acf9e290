"""The view the app opens on (explorer/sources.py): Llama-3-8B at 1,024 sequences of 1,024 tokens
on 64 x 8 A100, its plan shipped with the sample (explorer/default_plan.py), and the Overview's two
sentences that tell its story, checked against the plan object and against numbers worked out by
hand."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, TIMEOUT, assert_clean, ctx

from explorer.cache import PlanCache
from explorer.default_plan import NOTE, SHIPPED, default_request, fresh_default_plan, shipped_data, shipped_result
from explorer.views.memory import capacity_text
from explorer.views.overview import story
from explorer.views.splits import level_roles
from planner.machine.tree import load_preset
from planner.units import format_bytes, format_percent, format_seconds, format_speedup

LLAMA3_8B_WEIGHTS = 8_030_261_248  # sample_models/README.md: the float initializers of llama3_8b.onnx


@pytest.fixture(scope="module")
def shipped():
    """The default request answered by the app's cache (so from the shipped file), and a fresh plan."""
    request = default_request()
    cache = PlanCache()
    graph = cache.graph(request.source, request.bindings)
    return cache.result(request, graph), fresh_default_plan()


def test_the_shipped_plan_is_the_plan_the_search_makes_now(shipped):
    # fails when a change of the cost model, the search or the sample moves the default's plan:
    # write the file again with `python -m explorer.default_plan`
    loaded, fresh = shipped
    assert NOTE in loaded.notes and NOTE not in fresh.notes  # it did come from the file
    assert loaded.plan.strategies == fresh.plan.strategies
    assert loaded.options == fresh.options
    for figure in (lambda r: r.total_seconds, lambda r: r.data_parallel_seconds, lambda r: r.memory.peak,
                   lambda r: r.data_parallel_memory.peak, lambda r: r.cost.seconds()["total"]):
        assert figure(loaded) == pytest.approx(figure(fresh), rel=1e-9, abs=0)
    assert [t["iteration_seconds"] for t in loaded.tried] == pytest.approx(
        [t["iteration_seconds"] for t in fresh.tried], rel=1e-9, abs=0)
    assert [n for n in loaded.notes if n != NOTE] == fresh.notes
    assert len(loaded.plan.trace) == len(fresh.plan.trace) > 0  # the Cost page's decision trace


def test_only_the_same_request_gets_the_shipped_plan():
    request = default_request()
    assert shipped_data(request.key) is not None
    other_machine = request.on(machine=load_preset("selene"))
    other_options = request.on(options=request.options.__class__(zero=0))
    for other in (other_machine, other_options):
        assert shipped_data(other.key) is None
    # a model file that changed (another sha256) does not match either
    key = ("0" * 64,) + request.key[1:]
    assert shipped_data(key) is None
    assert shipped_result(key, None, request.machine, request.options) is None


def test_a_missing_or_corrupt_file_plans_as_usual(tmp_path):
    request = default_request()
    assert shipped_data(request.key, tmp_path / "absent.json.gz") is None
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"not gzip")
    assert shipped_data(request.key, bad) is None
    not_json = tmp_path / "not_json.json.gz"
    not_json.write_bytes(gzip.compress(b"{not json"))
    assert shipped_data(request.key, not_json) is None
    good = tmp_path / "good.json.gz"
    good.write_bytes(SHIPPED.read_bytes())
    data = json.loads(gzip.decompress(good.read_bytes()))
    assert data["request_key"][0] == request.source.sha256 and shipped_data(request.key, good) is not None


def test_data_parallelism_does_not_fit_and_the_plan_does(shipped):
    r, _ = shipped
    dp = r.data_parallel_memory
    # by hand: fp32 weights (4 B), their gradients (4 B) and Adam's two moments (8 B) per weight
    assert r.graph.parameter_count == LLAMA3_8B_WEIGHTS
    assert dp.parameters + dp.gradients + dp.optimizer_state == LLAMA3_8B_WEIGHTS * 16
    assert dp.peak > dp.capacity == 80e9  # 128.5 GB of state alone: no A100-80GB holds it
    assert r.memory.fits and r.memory.peak < 80e9
    assert r.schedule.zero >= 1  # the optimizer state is sharded
    assert r.speedup_over_data_parallel > 1
    # every level of the machine splits something
    roles = dict(level_roles(r))
    assert set(roles) == {"node", "gpu"} and all(roles.values())


def test_the_story_names_what_the_plan_does(shipped):
    r, _ = shipped
    text = story(r, "dgx_a100_64nodes")
    sentences = re.split(r"(?<=\.) (?=[A-Z])", text)
    assert len(sentences) == 2, sentences
    first, second = sentences
    assert first.startswith("On 512 devices (64 nodes x 8 gpus of A100-SXM4-80GB")
    levels = {lv.name: lv.arity for lv in r.machine.levels}
    for level, roles in level_roles(r):  # what each level splits, by role, from the plan
        assert " and ".join(roles) in first and f"the {levels[level]} {level}s" in first, (level, roles)
    assert f"(ZeRO-{r.schedule.zero})" in first and "optimizer state" in first
    dp = r.data_parallel_memory
    assert second.startswith("Pure data parallelism does not fit")
    assert "8.03B weights" in second
    for figure in (format_bytes(dp.peak), format_bytes(dp.capacity), format_bytes(r.memory.peak),
                   format_seconds(r.total_seconds), format_seconds(r.data_parallel_seconds),
                   format_speedup(r.speedup_over_data_parallel)):
        assert figure in second, figure
    assert "faster than data parallelism would be if it fit" in second


def test_the_default_loads_and_says_its_story():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert_clean(at)
    r = ctx(at).result
    assert NOTE in r.notes  # drawn from the shipped plan, without a search
    texts = [m.value for m in at.markdown]
    assert story(r, "dgx_a100_64nodes") in texts
    assert any(capacity_text(r) in c.value for c in at.caption)


def test_shares_never_read_zero_percent():
    # a plan that uses 0.045% of its device (36 MB of 80 GB): 3 significant digits, not "0.0%"
    assert format_percent(36e6 / 80e9) == "0.045%" and format_percent(1 / 3) == "33.3%"
    assert format_percent(0.022) == "2.2%" and format_percent(0.6) == "60%" and format_percent(1) == "100%"
    assert format_percent(0.5318, 2) == "53%" and format_percent(0) == "0%"
    assert format_percent(None) == "–"


def test_the_time_by_level_reads_in_the_unit_of_its_largest_bar(shipped):
    from explorer.views.cost import level_cost_figure

    r, _ = shipped
    fig = level_cost_figure(r).to_plotly_json()
    # a 0.6 s iteration: its half-second of compute reads in ms (not "500k" µs)
    assert 0.1 < r.cost.seconds()["compute"] < 1
    assert fig["layout"]["yaxis"]["title"]["text"] == "ms per iteration"
    assert fig["data"][0]["y"][0] == pytest.approx(r.cost.seconds()["compute"] * 1e3)
