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
    # the default plan is pipelined (BERT-base on 64 x 8 A100): its stages are named
    assert sched.stages > 1 and f"PP {sched.stages}" in name
    goto(at, "strategy")
    assert_clean(at)
    terms = [rendered(m.value) for m in at.markdown if m.value.startswith("**In engineers' terms:**")]
    assert len(terms) == 1 and name in terms[0] and "per layer" in terms[0]
