"""The Streamlit explorer through AppTest (streamlit.testing.v1): every page, uploads, machine
edits, the sidebar's options, the URL, and the explorer helpers they rely on."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.cache import PlanCache, PlanRequest
from explorer.context import Context
from explorer.options import COMPARE_ALGORITHMS, DEFAULT_OPTIONS, options_with, searches_configurations
from explorer.sources import DEFAULT_BINDINGS, DEFAULT_MACHINE, DEFAULT_SAMPLE, sample_source
from explorer.url_state import PIPELINE_URL_PARAMS, decode_url_state, encode_url_state
from explorer.views.compare import SWEEP_DEVICE_COUNTS, what_if_machine
from explorer.views.compare import sweep as compare_sweep
from explorer.views.graph import build_view, default_view
from explorer.views.layers import layers_of
from explorer.views.machine import levels_frame, machine_from_levels, machine_with_devices, same_levels
from explorer.views.report import ReportMeta, report_html, report_json, report_markdown, verification_frames
from explorer.views.strategy import plan_file_options, with_override
from planner.cost.result import cost_model_for
from planner.options import PlanOptions
from planner.onnx.importer import model_sha256
from planner.search.exact_guard import count_strategies
from planner.units import format_seconds, gbps
from explorer import timeline
from planner.machine.tree import MachineError, load_preset

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 60
PAGES = ["overview", "model", "machine", "strategy", "cost", "compare", "report"]
TITLES = {p: p.capitalize() for p in PAGES}


def run_app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def goto(at: AppTest, page: str) -> AppTest:
    return at.switch_page(f"pages/{page}.py").run()


def rendered(markdown: str) -> str:
    """The text a reader sees of an escaped message (explorer.safe_markdown): without the backslashes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}; metrics: {[m.label for m in at.metric]}")


def ctx(at: AppTest) -> Context:
    return at.session_state["_ctx"]


def chart_keys(at: AppTest) -> set[str]:
    """The keys of the plotly charts on the page (an element id ends with ``-<key>``)."""
    return {e.proto.id.rsplit("-", 1)[-1] for e in at.get("plotly_chart")}


# ---- every page with the default sample ---------------------------------------------------

def test_first_load_shows_a_real_plan():
    at = run_app()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Overview"]
    c = ctx(at)
    assert c.source.label == DEFAULT_SAMPLE and c.bindings == DEFAULT_BINDINGS
    assert c.machine_label == DEFAULT_MACHINE and c.options == DEFAULT_OPTIONS
    assert metric(at, "Devices") == "512"
    assert metric(at, "Predicted iteration time").endswith("s")
    assert metric(at, "Speed-up vs data parallel").endswith("x")
    # Llama-3-8B at 1,024 sequences of 1,024 tokens on 512 A100s: tens of GiB per device, in units a
    # person reads (not "6.32e+04 MiB"): format_bytes of the result's own peak, whose unit is worked out here
    peak = c.result.memory.peak
    assert 2**30 <= peak < 2**40 and metric(at, "Memory per device") == f"{peak / 2**30:.3g} GiB"
    assert metric(at, "Search time")
    assert any("speed-up over pure data parallel" in m.value for m in at.markdown)
    # the view is in the URL
    assert at.query_params["model"] == "llama3_8b"
    assert at.query_params["machine"] == "dgx_a100_64nodes"
    assert at.query_params["bind"] == "batch:1024,seq:1024"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs(page):
    at = run_app()
    goto(at, page)
    assert_clean(at)
    assert [t.value for t in at.title] == [TITLES[page]]


def test_pages_show_their_content():
    at = run_app()
    goto(at, "cost")
    assert len(at.latex) >= 4  # formulas with symbols and with sizes, per candidate
    assert any(d.value is not None and "candidate" in d.value.columns for d in at.dataframe)  # D-Rec's trace
    goto(at, "compare")
    table = at.dataframe[0].value
    assert list(table["algorithm"]) == list(COMPARE_ALGORITHMS)
    exact = table[table["algorithm"] == "exact"].iloc[0]
    assert exact["note"].startswith("exact: too large for this graph: more than") and "bound" in exact["note"]
    # the exact search's row has no speed-up (a dash), so the column reads as text, as format_speedup writes it
    assert table[table["algorithm"] == "data_parallel"].iloc[0]["speed-up"] == "1.00x"
    goto(at, "report")
    labels = [b.label for b in at.get("download_button")]
    assert {"Plan JSON", "HTML", "Markdown", "Machine YAML"} <= set(labels)
    goto(at, "strategy")
    assert any("split" in (d.value.columns if d.value is not None else []) for d in at.dataframe)
    # the default plan is one an engineer would run: Llama-3-8B at 1,024 sequences on 512 GPUs is one
    # stage and one micro-batch (no pipeline bubble; pipelined plans are drawn in
    # test_a_pipelined_plan_on_every_page)
    sched = ctx(at).result.schedule
    assert sched.stages == 1 and sched.micro_batches == 1 and sched.bubble_seconds == 0


# ---- the model: samples, uploads, bindings ------------------------------------------------

def test_upload_a_model_through_the_file_uploader():
    at = run_app()
    goto(at, "model")
    data = (ROOT / "sample_models" / "mlp.onnx").read_bytes()
    at.file_uploader(key="mp_upload").upload("my_mlp.onnx", data).run()
    assert_clean(at)
    c = ctx(at)
    assert c.source.kind == "upload" and c.source.label == "my_mlp.onnx"
    assert c.source.sha256 == model_sha256(data)
    assert c.result is not None and c.graph.name == "my_mlp.onnx"
    assert metric(at, "Operators") == str(len(c.graph.operators))
    goto(at, "overview")
    assert_clean(at)
    assert metric(at, "Devices") == "512"
    assert ctx(at).source.label == "my_mlp.onnx"
    assert at.query_params["model"] == "upload:my_mlp.onnx"


def test_upload_garbage_shows_the_importers_message():
    at = run_app()
    goto(at, "model")
    at.file_uploader(key="mp_upload").upload("garbage.onnx", b"\x00\x01 definitely not onnx" * 50).run()
    assert not at.exception
    errors = [rendered(e.value) for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("garbage.onnx:") and "not a valid ONNX model" in errors[0]
    assert ctx(at).source.label == DEFAULT_SAMPLE  # the model in use is unchanged
    goto(at, "overview")
    assert_clean(at)


def test_pick_a_sample_and_bind_its_dimensions():
    at = run_app()
    goto(at, "model")
    at.selectbox(key="mp_sample").select("gpt2_small").run()
    assert_clean(at)
    assert ctx(at).source.label == "gpt2_small"
    at.number_input(key="mp_bind_seq").set_value(64).run()
    assert_clean(at)
    c = ctx(at)
    assert c.bindings == {"batch": 1024, "seq": 64}  # the batch kept from the default view
    assert c.graph is not None and c.result is not None
    # the sidebar shows the same binding
    assert at.number_input(key="sb_bind_seq").value == 64
    at.number_input(key="sb_bind_batch").set_value(8).run()
    assert ctx(at).bindings == {"batch": 8, "seq": 64}


def test_a_96_layer_model_graph_stays_small():
    at = run_app(model="gpt3_175b", bind="batch:8,seq:256", machine="dgx_a100")
    goto(at, "model")
    assert_clean(at)
    g = ctx(at).graph
    assert layers_of(g).count == 96
    view = default_view(g)
    vg = build_view(g, view)
    assert view.mode == "blocks" and len(vg.nodes) < 200
    assert any("nodes" in c.value for c in at.caption)


# ---- the machine --------------------------------------------------------------------------

def test_edit_a_machine_level_changes_the_plan():
    at = run_app()
    before = ctx(at).result.total_seconds
    goto(at, "machine")
    key = f"mc_levels_{at.session_state['machine_version']}"
    # the gpu level: the default plan splits the hidden size over GPU pairs inside each node
    at.session_state[key] = {"edited_rows": {1: {"bandwidth (GB/s)": 30.0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert_clean(at)
    c = ctx(at)
    assert c.machine.levels[1].bandwidth_Bps == pytest.approx(30e9)
    assert c.machine_label == "custom"
    assert c.result.total_seconds != pytest.approx(before)
    goto(at, "overview")
    assert_clean(at)
    assert metric(at, "Predicted iteration time") == format_seconds(c.result.total_seconds)
    assert "machine_json" in at.query_params


def test_invalid_level_shows_an_inline_error_and_keeps_the_machine():
    at = run_app()
    goto(at, "machine")
    key = f"mc_levels_{at.session_state['machine_version']}"
    at.session_state[key] = {"edited_rows": {1: {"arity": 0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception
    errors = [rendered(e.value) for e in at.error]
    assert len(errors) == 1 and "arity" in errors[0] and "at least 1" in errors[0]
    assert ctx(at).machine == load_preset(DEFAULT_MACHINE)
    goto(at, "strategy")
    assert_clean(at)


def test_add_a_level_and_pick_a_preset():
    at = run_app()
    goto(at, "machine")
    key = f"mc_levels_{at.session_state['machine_version']}"
    at.session_state[key] = {"edited_rows": {}, "deleted_rows": [0],
                             "added_rows": [{"name": "rack", "arity": 2, "bandwidth (GB/s)": 12.5, "latency (µs)": 20}]}
    at.run()
    assert_clean(at)
    m = ctx(at).machine
    assert [lv.name for lv in m.levels] == ["gpu", "rack"] and m.num_devices == 16
    at.selectbox(key="mc_preset").select("v100_8").run()
    assert_clean(at)
    assert ctx(at).machine_label == "v100_8" and ctx(at).machine.num_devices == 8


def test_machine_yaml_upload_good_and_bad():
    at = run_app()
    goto(at, "machine")
    yaml_text = load_preset("dgx_a100").to_yaml().encode()
    at.file_uploader(key="mc_upload").upload("small.yaml", yaml_text).run()
    assert_clean(at)
    assert ctx(at).machine.num_devices == 8
    at.file_uploader(key="mc_upload").clear().upload("bad.yaml", b"name: x\ndevice: 3\nlevels: []\n").run()
    assert not at.exception
    assert any("bad.yaml" in rendered(e.value) and "device" in rendered(e.value) for e in at.error)
    assert ctx(at).machine.num_devices == 8


def test_device_field_error():
    at = run_app()
    goto(at, "machine")
    ver = at.session_state["machine_version"]
    at.number_input(key=f"mc_dev_eff_{ver}").set_value(1.5).run()
    assert not at.exception
    assert any("efficiency" in rendered(e.value) for e in at.error)
    at.number_input(key=f"mc_dev_eff_{ver}").set_value(0.5).run()
    assert_clean(at)
    assert ctx(at).machine.device.compute_efficiency == 0.5


# ---- the sidebar's options and the URL ---------------------------------------------------

def test_switch_algorithm_and_mode():
    at = run_app()
    train = ctx(at).result
    at.selectbox(key="sb_algorithm").select("data_parallel").run()
    assert_clean(at)
    assert ctx(at).options.algorithm == "data_parallel"
    assert metric(at, "Speed-up vs data parallel") == "1.00x"
    at.segmented_control(key="sb_mode").set_value("infer").run()
    assert_clean(at)
    r = ctx(at).result
    assert r.options.mode == "infer" and r.plan.algorithm == "data_parallel"
    assert r.total_seconds < train.total_seconds
    assert r.memory.optimizer_state == 0
    at.selectbox(key="sb_precision").select("bf16").run()
    at.selectbox(key="sb_optimizer").select("sgd").run()
    assert_clean(at)
    assert ctx(at).options == PlanOptions("infer", "bf16", "sgd", "data_parallel")
    assert at.query_params["mode"] == "infer" and at.query_params["precision"] == "bf16"
    # options survive page switches
    goto(at, "cost")
    goto(at, "overview")
    assert ctx(at).options == PlanOptions("infer", "bf16", "sgd", "data_parallel")


def test_megatron_on_a_cnn_is_explained_inline():
    at = run_app(model="resnet50", bind="batch:64", machine="dgx_a100", algorithm="megatron")
    assert not at.exception
    assert any("transformer" in rendered(e.value) for e in at.error)
    for page in ("strategy", "cost", "report"):
        goto(at, page)
        assert not at.exception and at.error


def test_url_restores_a_view():
    at = run_app(model="mlp", bind="batch:64", machine="dgx_a100", mode="infer", algorithm="drec", precision="fp16")
    assert_clean(at)
    c = ctx(at)
    assert (c.source.label, c.bindings, c.machine_label) == ("mlp", {"batch": 64}, "dgx_a100")
    assert c.options == PlanOptions("infer", "fp16", "adam", "drec")
    custom = load_preset("dgx_a100").with_level(0, bandwidth_Bps=1e11)
    at = run_app(model="mlp", machine_json=json.dumps(custom.to_dict()))
    assert ctx(at).machine == custom and ctx(at).machine_label == "custom"


def test_bad_url_is_reported_not_fatal():
    at = run_app(model="nope", bind="batch:zero", machine="mars", algorithm="magic")
    assert not at.exception
    warnings = " ".join(rendered(w.value) for w in at.sidebar.warning)
    for word in ("nope", "bind", "mars", "magic"):
        assert word in warnings
    assert ctx(at).result is not None


# ---- strategy, cost, compare --------------------------------------------------------------

def test_override_one_operator():
    at = run_app()
    goto(at, "strategy")
    op = at.selectbox(key="st_ov_op").value
    r = ctx(at).result
    last = len(r.cost_model.cuts) - 1
    box = at.selectbox(key=f"st_ov_{op}_{last}")
    other = next(o for o in box.options if o != box.value)
    box.select(other).run()
    assert_clean(at)
    from planner.plans.override import price_override

    strategy = tuple(r.plan.strategies[op][:last]) + (None if other == "not split" else other,)
    priced = price_override(r, op, strategy)
    if priced.pipelined:  # the plan's own stages and re-balanced, each with its figure
        assert metric(at, "Iteration with the override (stages fixed)") == format_seconds(priced.fixed.total_seconds)
        assert metric(at, "Iteration with the override (re-balanced)") == \
            format_seconds(priced.rebalanced.total_seconds)
    else:
        assert metric(at, "Iteration with the override") == format_seconds(priced.fixed.total_seconds)
        assert priced.fixed.total_seconds != r.total_seconds
    assert any(rendered(c.value) == " ".join(priced.lines()) for c in at.caption)


def test_upload_a_plan_json_and_compare():
    at = run_app()
    goto(at, "strategy")
    c = ctx(at)
    dp = c.plan(options=options_with(c.options, algorithm="data_parallel"))
    data = json.dumps(report_json(dp, c.meta)).encode()
    at.file_uploader(key="st_plan").upload("dp.json", data).run()
    assert_clean(at)
    assert metric(at, "dp.json") == format_seconds(dp.total_seconds)
    assert int(metric(at, "Operators that differ").split()[0].replace(",", "")) > 0
    at.file_uploader(key="st_plan").clear().upload("bad.json", b"{not json").run()
    assert not at.exception
    assert any("not valid JSON" in rendered(e.value) for e in at.error)


def test_what_if_and_sweep():
    """One small AppTest of the Compare page: a what-if slider re-plans, the sweep button sweeps
    (the logic is tested directly below, without the app)."""
    at = run_app(model="mlp", bind="batch:64", machine="dgx_a100", algorithm="drec")
    goto(at, "compare")
    assert_clean(at)
    before = metric(at, "Predicted iteration time")
    ver = at.session_state["machine_version"]
    at.select_slider(key=f"wi_bw_0_{ver}").set_value(1.0).run()
    assert_clean(at)
    assert metric(at, "Predicted iteration time") != before
    at.button(key="wi_sweep").click().run()
    assert_clean(at)
    sweep = at.dataframe[-1].value
    assert list(sweep["devices"]) == list(SWEEP_DEVICE_COUNTS)
    times = [c for c in sweep.columns if c.startswith("iteration (")]  # one unit for the column, in its header
    assert len(times) == 1 and times[0] in ("iteration (s)", "iteration (ms)", "iteration (µs)")
    assert sweep[times[0]].notna().all()


def test_what_if_machine_changes_only_what_the_sliders_say():
    m = load_preset("dgx_a100_64nodes")
    w = what_if_machine(m, {0: gbps(m.levels[0].bandwidth_Bps), 1: 25.0}, {0: 3.0}, outer_arity=16)
    assert w.levels[1].bandwidth_Bps == 25e9 and w.levels[0].bandwidth_Bps == m.levels[0].bandwidth_Bps
    assert w.levels[0].latency_s == pytest.approx(3e-6) and w.levels[1].latency_s == m.levels[1].latency_s
    assert w.levels[0].arity == 16 and w.num_devices == 16 * m.num_devices // m.levels[0].arity
    assert what_if_machine(m, {}, {}) == m


def test_what_if_communication_scales_with_the_bandwidth():
    """Without latency, a plan's communication time is bytes over bandwidth: halving every link's
    bandwidth doubles it (the same data-parallel plan: its gradient all-reduce), compute unchanged."""
    c = PlanCache()
    src, bindings = sample_source("mlp"), {"batch": 64}
    g = c.graph(src, bindings)
    m = load_preset("dgx_a100")
    fast = what_if_machine(m, {0: 200.0}, {0: 0.0})
    slow = what_if_machine(m, {0: 100.0}, {0: 0.0})
    opts = PlanOptions(algorithm="data_parallel")
    a, b = (c.result(PlanRequest(src, bindings, x, opts), g).cost.seconds() for x in (fast, slow))
    assert a["communication"] > 0
    assert b["communication"] == pytest.approx(2 * a["communication"], rel=1e-9)
    assert b["compute"] == pytest.approx(a["compute"], rel=1e-12)


def test_device_sweep_plans_each_count_by_the_outermost_level():
    c = PlanCache()
    src, bindings = sample_source("mlp"), {"batch": 64}
    g = c.graph(src, bindings)
    m = load_preset("dgx_a100_64nodes")  # 64 nodes x 8 GPUs
    opts = PlanOptions(algorithm="data_parallel")
    sweep = compare_sweep(c, PlanRequest(src, bindings, m, opts), g, counts=(8, 16, 64))
    assert list(sweep["devices"]) == [8, 16, 64]
    assert sweep["iteration (ms)"].notna().all()
    for n, ms in zip(sweep["devices"], sweep["iteration (ms)"]):
        machine = machine_with_devices(m, n)
        assert machine.num_devices == n
        assert ms == pytest.approx(c.result(PlanRequest(src, bindings, machine, opts), g).total_seconds * 1e3)
    assert c.cached_sweep(PlanRequest(src, bindings, m, opts), (8, 16, 64)) is sweep


# ---- the explorer's helpers ---------------------------------------------------------------

def test_machine_tables_round_trip_and_errors():
    m = load_preset("dgx_a100_64nodes")
    frame = levels_frame(m)
    assert same_levels(frame, m)
    assert machine_from_levels(m, frame) == m
    frame.loc[0, "bandwidth (GB/s)"] = -1
    with pytest.raises(MachineError, match="bandwidth must be more than 0"):
        machine_from_levels(m, frame)
    frame = levels_frame(m)
    frame.loc[1, "name"] = "node"
    with pytest.raises(MachineError, match="duplicate"):
        machine_from_levels(m, frame)
    assert machine_with_devices(m, 4096).num_devices == 4096
    assert machine_with_devices(m, 8).num_devices == 8
    assert machine_with_devices(m, 12) is None


def test_count_strategies_matches_the_exact_search():
    from planner.search.exact import all_strategies

    c = PlanCache()
    src = sample_source("mlp")
    g = c.graph(src, {"batch": 8})
    cm = cost_model_for(g, load_preset("a100_2x8_slow"), PlanOptions())
    for name in cm.planned:
        assert count_strategies(cm, name, 10**9) == len(all_strategies(cm, name))


def test_url_state_round_trip():
    m = load_preset("dgx_a100").with_level(0, latency_s=2e-6)
    src = sample_source("mlp")
    opts = PlanOptions("infer", "bf16", "sgd", "drec")
    params = encode_url_state(src, {"batch": 4}, m, None, opts)
    state, problems = decode_url_state(params)
    assert not problems
    assert state.model == "mlp" and state.bindings == {"batch": 4} and state.options == opts
    assert state.machine == m.to_dict() and state.machine_preset is None


def test_reports_are_stamped():
    c = PlanCache()
    src = sample_source("mlp")
    g = c.graph(src, {"batch": 8})
    r = c.result(PlanRequest(src, {"batch": 8}, load_preset("dgx_a100"), PlanOptions()), g)
    meta = ReportMeta(src, {"batch": 8}, "dgx_a100")
    data = report_json(r, meta)
    assert data["model_sha256"] == src.sha256 and data["bindings"] == {"batch": 8}
    assert data["machine"] == load_preset("dgx_a100").to_dict()
    md = report_markdown(r, meta)
    html = report_html(r, meta)
    for text in (src.sha256, "tool version", "bf16" if False else "adam", "machines/dgx_a100.yaml"):
        assert text in md and text in html
    # static SVG charts, no plotly.js (4.6 MB): the page stays far under 1.5 MB
    assert "<script" not in html and html.count("<svg") == 3 and len(html.encode()) < 1.5e6
    assert math.isfinite(r.total_seconds)


def test_plan_cache_hits_and_bounds():
    c = PlanCache(result_bytes=1)  # one result at a time (the newest always stays)
    src = sample_source("mlp")
    g = c.graph(src, {"batch": 8})
    assert c.graph(src, {"batch": 8}) is g and c.stats["graph_hits"] == 1
    m = load_preset("dgx_a100")
    request = PlanRequest(src, {"batch": 8}, m, PlanOptions())
    r = c.result(request, g)
    assert c.result(PlanRequest(src, {"batch": 8}, m, PlanOptions()), g) is r
    assert c.has_result(request)
    c.result(request.on(options=PlanOptions(algorithm="drec")), g)
    assert not c.has_result(request)  # evicted by weight
    assert c.stats["result_misses"] == 2 and c.stats["result_hits"] == 1


@pytest.mark.parametrize("algorithm", ["drec+", "exact", "data_parallel"])
def test_one_device_machine_never_shows_a_traceback(algorithm):
    one = {"name": "one", "device": {"name": "A100", "peak_flops": 312e12, "memory_bytes": 80e9},
           "levels": [{"name": "gpu", "arity": 1, "bandwidth_Bps": 300e9, "latency_s": 5e-6}]}
    at = run_app(model="mlp", bind="batch:8", machine_json=json.dumps(one), algorithm=algorithm)
    for page in PAGES:
        goto(at, page)
        assert not at.exception, (page, [e.value for e in at.exception])


# ---- "Run it" (issue 5): the verification section of the Report page -----------------------

FAKE_ROWS = [{"model": "mlp", "plan": "drec+", "processes": 4, "numerics_match": True, "max_abs_gradient_error": 2e-8,
              "ops": [{"op": "/fc.0/Gemm", "predicted_bytes": 4096.0, "measured_bytes": 4096.0, "within_tolerance": True},
                      {"op": "/Relu", "predicted_bytes": 0.0, "measured_bytes": 0.0, "within_tolerance": True}]},
             {"model": "mlp", "plan": "data_parallel", "processes": 4, "numerics_match": False,
              "max_abs_gradient_error": 0.5,
              "ops": [{"op": "/fc.0/Gemm", "predicted_bytes": 100.0, "measured_bytes": 150.0,
                       "within_tolerance": False}]}]


def test_verification_frames():
    runs, ops = verification_frames(FAKE_ROWS)
    assert list(runs["operators within 10%"]) == ["2 / 2", "0 / 1"]
    assert list(ops["operator"]) == ["/fc.0/Gemm", "/fc.0/Gemm"]  # the silent /Relu is left out
    assert list(ops["ratio"]) == [1.0, 1.5]


def test_run_it_section(monkeypatch):
    from planner import verify

    calls = []

    def fake_run(progress=None, **kwargs):
        progress(0.5, "half way")
        calls.append(kwargs)
        return FAKE_ROWS

    monkeypatch.setattr(verify, "torch_available", lambda: True)
    monkeypatch.setattr(verify, "run_verification", fake_run)
    at = goto(run_app(), "report")
    assert_clean(at)
    next(b for b in at.button if b.label == "Run the verification").click().run()
    assert_clean(at)
    assert calls
    assert any("Numerics match in 1 of 2 runs" in s.value and "on 2 of 3 operators" in s.value for s in at.success)


# ---- pipelined plans: sidebar, URL, Strategy and Cost pages, the 1F1B timeline ------------

PIPELINED = dict(model="gpt2_small", bind="batch:8,seq:64", machine="dgx_a100")  # small and quick to plan


def test_a_pipelined_plan_on_every_page():
    at = run_app(**PIPELINED, stages="2", micro_batches="4")
    assert_clean(at)
    r = ctx(at).result
    assert (r.schedule.stages, r.schedule.micro_batches) == (2, 4)
    assert metric(at, "Predicted iteration time") == format_seconds(r.total_seconds)
    assert metric(at, "TFLOP/s per device") == f"{r.schedule.tflops_per_device()['model']:.3g}"
    assert any("2 pipeline stages x 4 micro-batches of 2" in c.value for c in at.caption)
    goto(at, "strategy")
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "split" in d.value.columns)
    assert set(table["stage"]) <= {0, 1} and "stage" in table.columns
    assert {"st_stage_layers", "st_timeline"} <= chart_keys(at)
    assert any(c.value.startswith("Each stage's forward and backward passes") for c in at.caption)
    goto(at, "cost")
    assert_clean(at)
    frames = {tuple(d.value.columns): d.value for d in at.dataframe}
    stages = next(f for cols, f in frames.items() if "slowest" in cols)
    assert list(stages["stage"]) == [0, 1] and list(stages["slowest"]).count("yes") == 1
    tried = next(f for cols, f in frames.items() if "in use" in cols)
    assert list(tried["in use"]) == ["yes"] and list(tried["stages"]) == [2]
    assert any(m.value.startswith("**One iteration**: 4 micro-batches x slowest stage") for m in at.markdown)
    assert {"co_iteration", "co_stages"} <= chart_keys(at)
    for page in ("overview", "report", "compare"):
        goto(at, page)
        assert_clean(at)


def test_sidebar_pipeline_options_and_their_errors():
    at = run_app(**PIPELINED)
    assert_clean(at)
    assert at.selectbox(key="sb_stages").options == ["auto", "1", "2", "4", "8"]
    at.selectbox(key="sb_stages").select(2).run()
    at.number_input(key="sb_micro_batches").set_value(4).run()
    at.selectbox(key="sb_recompute").select("selective").run()
    at.selectbox(key="sb_zero").select(1).run()
    at.toggle(key="sb_overlap").set_value(False).run()  # on by default, as PyTorch DDP
    at.toggle(key="sb_overlap_sends").set_value(True).run()
    at.toggle(key="sb_sequence_parallel").set_value(True).run()
    assert_clean(at)
    c = ctx(at)
    assert c.options == PlanOptions(pipeline_stages=2, micro_batches=4, recompute="selective", zero=1,
                                       overlap_gradient_sync=False, overlap_pipeline_sends=True,
                                       sequence_parallel=True)
    s = c.result.schedule
    assert (s.stages, s.micro_batches, s.recompute, s.zero) == (2, 4, "selective", 1)
    keys = ("stages", "micro_batches", "recompute", "zero", "overlap", "overlap_sends", "sp")
    assert {k: at.query_params[k] for k in keys} == \
        {"stages": "2", "micro_batches": "4", "recompute": "selective", "zero": "1", "overlap": "false",
         "overlap_sends": "true", "sp": "true"}
    # a micro-batch count that does not divide the batch (8): the planner's message, no traceback
    at.number_input(key="sb_micro_batches").set_value(3).run()
    assert not at.exception
    assert any("3 micro-batches do not divide the batch" in e.value and "pipeline and memory options" in e.value
               for e in at.error)
    goto(at, "strategy")
    assert not at.exception and at.error
    # interleaving on one stage
    at.number_input(key="sb_micro_batches").set_value(None).run()
    at.selectbox(key="sb_stages").select(1).run()
    at.number_input(key="sb_interleave").set_value(2).run()
    assert not at.exception
    assert any("interleaving needs pipeline stages" in rendered(e.value) for e in at.error)
    # switching to inference with stages set: inference is one stage, so the stages go back to auto
    at.number_input(key="sb_interleave").set_value(1).run()
    at.selectbox(key="sb_stages").select(2).run()
    at.segmented_control(key="sb_mode").set_value("infer").run()
    assert not at.exception and not at.sidebar.error
    assert ctx(at).options.mode == "infer" and ctx(at).options.pipeline_stages is None
    assert ctx(at).result.schedule.stages == 1
    at.segmented_control(key="sb_mode").set_value("train").run()
    # back to auto: the options are the defaults again and the URL carries none of them
    at.selectbox(key="sb_stages").select("auto").run()
    at.selectbox(key="sb_recompute").select("auto").run()
    at.selectbox(key="sb_zero").select("auto").run()
    at.toggle(key="sb_overlap").set_value(True).run()
    at.toggle(key="sb_overlap_sends").set_value(False).run()
    at.toggle(key="sb_sequence_parallel").set_value(False).run()
    assert_clean(at)
    assert ctx(at).options == DEFAULT_OPTIONS
    assert not {"stages", "micro_batches", "recompute", "zero", "overlap", "interleave"} & set(at.query_params)


def test_a_stage_count_the_machine_does_not_allow_is_an_error_not_a_crash():
    at = run_app(**PIPELINED, stages="3")  # 8 GPUs cannot be cut into 3 stages
    assert not at.exception
    assert "3" in at.selectbox(key="sb_stages").options
    assert any("3 pipeline stages does not fit the machine" in rendered(e.value) for e in at.error)
    for page in ("strategy", "cost", "compare"):
        goto(at, page)
        assert not at.exception and at.error


def test_url_round_trip_of_the_pipeline_options():
    src = sample_source("mlp")
    m = load_preset("dgx_a100")
    opts = PlanOptions(pipeline_stages=2, micro_batches=8, interleave=2, recompute="full", zero=3,
                          overlap_gradient_sync=False, prefetch_parameters=False, overlap_pipeline_sends=True,
                          sequence_parallel=True)
    params = encode_url_state(src, {"batch": 64}, m, "dgx_a100", opts)
    state, problems = decode_url_state(params)
    assert not problems and state.options == opts
    defaults = encode_url_state(src, {"batch": 64}, m, "dgx_a100", PlanOptions())
    assert not set(PIPELINE_URL_PARAMS) & set(defaults)
    assert decode_url_state({"stages": "auto", "zero": "auto"})[0].options == PlanOptions()


def test_bad_pipeline_options_in_the_url_are_reported():
    state, problems = decode_url_state({"stages": "many", "micro_batches": "0", "interleave": "-1",
                                           "recompute": "most", "zero": "2", "overlap": "maybe"})
    assert state.options == PlanOptions()
    assert len(problems) == 6
    for word in ("stages='many'", "micro_batches='0'", "interleave='-1'", "recompute='most'", "zero='2'",
                 "overlap='maybe'"):
        assert any(p.startswith(word) for p in problems), (word, problems)
    state, problems = decode_url_state({"mode": "infer", "stages": "2"})
    assert state.options == PlanOptions(mode="infer")
    assert len(problems) == 1 and "for training" in problems[0] and "not used" in problems[0]
    at = run_app(**PIPELINED, stages="many", zero="2")
    assert not at.exception
    warnings = " ".join(rendered(w.value) for w in at.sidebar.warning)
    assert "stages='many'" in warnings and "zero='2'" in warnings
    assert ctx(at).result is not None


def test_the_cache_keeps_configurations_apart():
    c = PlanCache()
    src = sample_source("gpt2_small")
    b = {"batch": 8, "seq": 64}
    g = c.graph(src, b)
    m = load_preset("dgx_a100")
    fixed = PlanOptions(pipeline_stages=1, micro_batches=1, recompute="none", zero=0)
    assert not searches_configurations(fixed) and searches_configurations(PlanOptions())
    assert searches_configurations(options_with(fixed, micro_batches=2))
    one = c.result(PlanRequest(src, b, m, fixed), g)
    assert len(one.tried) == 1 and not one.pipelined  # plan_model prices the one configuration the options fix
    piped = c.result(PlanRequest(src, b, m, options_with(fixed, pipeline_stages=2, micro_batches=4)), g)
    assert piped.schedule.stages == 2 and len(piped.tried) == 1
    assert c.has_result(PlanRequest(src, b, m, fixed)) and not c.has_result(PlanRequest(src, b, m, options_with(fixed, zero=1)))
    # overriding an operator keeps the plan's configuration
    slowest = piped.schedule.stage_seconds.index(max(piped.schedule.stage_seconds))  # its change shows
    op = next(n for n in piped.cost_model.planned if piped.plan.strategies[n] != piped.cost_model.replicated()
              and piped.schedule.stage_of_op[n] == slowest)
    alt = with_override(piped, op, piped.cost_model.replicated())
    assert (alt.schedule.stages, alt.schedule.micro_batches) == (2, 4) and alt.total_seconds != piped.total_seconds


def slot_table(slots) -> dict:
    return {(s.kind[0].upper(), s.micro_batch, s.stage): (s.start, s.end) for s in slots}


def test_1f1b_order_warm_up_steady_cool_down():
    assert timeline.one_f_one_b_order(2, 3, 0) == [("forward", 0), ("forward", 1), ("backward", 0), ("forward", 2),
                                                   ("backward", 1), ("backward", 2)]
    assert timeline.one_f_one_b_order(2, 3, 1) == [("forward", 0), ("backward", 0), ("forward", 1), ("backward", 1),
                                                   ("forward", 2), ("backward", 2)]
    # fewer micro-batches than the warm-up wants: every forward first
    assert timeline.one_f_one_b_order(4, 2, 0) == [("forward", 0), ("forward", 1), ("backward", 0), ("backward", 1)]


def test_1f1b_timeline_two_stages_three_micro_batches_by_hand():
    # forward 1, backward 2 on both stages. Stage 0 runs F0 F1 B0 F2 B1 B2, stage 1 F0 B0 F1 B1 F2 B2;
    # F_i on stage 1 waits for F_i on stage 0, B_i on stage 0 for B_i on stage 1.
    slots = timeline.simulate_1f1b([1.0, 1.0], [2.0, 2.0], 3)
    assert slot_table(slots) == {
        ("F", 0, 0): (0, 1), ("F", 1, 0): (1, 2), ("F", 0, 1): (1, 2), ("B", 0, 1): (2, 4),
        ("B", 0, 0): (4, 6), ("F", 1, 1): (4, 5), ("B", 1, 1): (5, 7), ("F", 2, 0): (6, 7),
        ("F", 2, 1): (7, 8), ("B", 1, 0): (7, 9), ("B", 2, 1): (8, 10), ("B", 2, 0): (10, 12)}
    assert max(s.end for s in slots) == 12 == (3 + 2 - 1) * (1 + 2)  # (m + P - 1)(f + b)
    # a slower second stage (forward 2, backward 4): stage 0 waits for it
    slots = timeline.simulate_1f1b([1.0, 2.0], [2.0, 4.0], 3)
    assert slot_table(slots) == {
        ("F", 0, 0): (0, 1), ("F", 1, 0): (1, 2), ("F", 0, 1): (1, 3), ("B", 0, 1): (3, 7),
        ("B", 0, 0): (7, 9), ("F", 1, 1): (7, 9), ("B", 1, 1): (9, 13), ("F", 2, 0): (9, 10),
        ("F", 2, 1): (13, 15), ("B", 1, 0): (13, 15), ("B", 2, 1): (15, 19), ("B", 2, 0): (19, 21)}


@pytest.mark.parametrize("stages,micro_batches", [(1, 1), (1, 4), (2, 1), (3, 7), (4, 4), (8, 3)])
def test_1f1b_timeline_matches_the_priced_formula_when_stages_are_equal(stages, micro_batches):
    slots = timeline.simulate_1f1b([1.0] * stages, [2.0] * stages, micro_batches)
    assert len(slots) == 2 * stages * micro_batches
    assert max(s.end for s in slots) == pytest.approx((micro_batches + stages - 1) * 3.0)
    for stage in range(stages):  # a stage never runs two passes at once
        mine = sorted((s.start, s.end) for s in slots if s.stage == stage)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:]))


def test_plan_timeline_of_a_pipelined_plan_is_truncated_and_split_by_recomputation():
    c = PlanCache()
    src = sample_source("gpt2_small")
    b = {"batch": 64, "seq": 32}
    g = c.graph(src, b)
    r = c.result(PlanRequest(src, b, load_preset("dgx_a100"),
                             PlanOptions(pipeline_stages=2, micro_batches=32, recompute="full", zero=0)), g)
    tl = timeline.plan_timeline(r, most=6)
    assert tl.truncated and tl.micro_batches == 6 and tl.plan_micro_batches == 32
    first = next(s for s in tl.slots if (s.stage, s.micro_batch, s.kind) == (0, 0, "forward"))
    assert first.end - first.start == pytest.approx(r.schedule.stage_seconds[0] / 4)  # full recomputation
    assert tl.makespan <= tl.priced_seconds * (1 + 1e-12)
    assert "showing the schedule of 6 of the plan's 32 micro-batches" in timeline.timeline_caption(tl)
    timeline.timeline_figure(tl).to_json()


def test_a_plan_file_is_scored_with_its_own_configuration():
    current = PlanOptions(pipeline_stages=4, micro_batches=1, recompute="none", zero=0)
    one_stage = {"options": {"pipeline_stages": 1, "micro_batches": 1, "recompute": "full", "zero": 1}}
    got = plan_file_options(current, one_stage)
    assert (got.pipeline_stages, got.micro_batches, got.recompute, got.zero) == (1, 1, "full", 1)
    older = {"options": {"mode": "train"}}  # written before stages existed: one stage, one micro-batch
    got = plan_file_options(current, older)
    assert (got.pipeline_stages, got.micro_batches) == (1, 1)
    # a file that records no options is a one-stage plan too (the CLI's evaluate --plan scores it so)
    got = plan_file_options(current, {})
    assert (got.pipeline_stages, got.micro_batches) == (1, 1)
    assert (got.recompute, got.zero, got.mode) == (current.recompute, current.zero, current.mode)
    with pytest.raises(ValueError, match="options are not valid"):
        plan_file_options(current, {"options": {"zero": 2}})
