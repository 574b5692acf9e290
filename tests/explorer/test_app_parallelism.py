"""The plan in the engineers' terms on the Overview and Strategy pages (planner/plans/parallelism.py)."""

from __future__ import annotations

from test_app import assert_clean, ctx, goto, rendered, run_app  # tests/explorer/test_app.py


def test_overview_and_strategy_name_the_plans_parallelism():
    at = run_app()
    assert_clean(at)
    sched = ctx(at).result.schedule
    captions = [rendered(c.value) for c in at.caption if c.value.startswith("Parallelism: ")]
    assert len(captions) == 1
    name = captions[0][len("Parallelism: "):]
    # a pipelined plan names its stages; the default (Llama-3-8B at 1,024 sequences on 64 x 8 A100) is
    # one stage, and then no PP is named
    assert (f"PP {sched.stages}" in name) if sched.stages > 1 else ("PP" not in name)
    goto(at, "strategy")
    assert_clean(at)
    terms = [rendered(m.value) for m in at.markdown if m.value.startswith("**In engineers' terms:**")]
    assert len(terms) == 1 and name in terms[0] and "per layer" in terms[0]


def test_reports_name_the_parallelism():
    from explorer.cache import PlanCache, PlanRequest
    from explorer.sources import sample_source
    from explorer.views.report import ReportMeta, report_html, report_json, report_markdown
    from planner.machine.tree import load_preset
    from planner.options import PlanOptions

    c = PlanCache()
    src = sample_source("mlp")
    g = c.graph(src, {"batch": 8})
    r = c.result(PlanRequest(src, {"batch": 8}, load_preset("dgx_a100"), PlanOptions(algorithm="data_parallel")), g)
    meta = ReportMeta(src, {"batch": 8}, "dgx_a100")
    assert report_json(r, meta)["parallelism"]["name"] == "DP 8"  # the batch split over the 8 GPUs
    assert "DP 8" in report_markdown(r, meta) and "DP 8" in report_html(r, meta)
