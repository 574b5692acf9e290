"""The Cost page's cards add up (issue 15): the terms each card shows sum to the total it shows,
in one unit, with what the overlaps hide and the gradient sync the micro-batches share taken off
as terms of their own; the operator bar chart draws the card's total; the memory view is in the
peak's unit. Sums are worked out in the test from the displayed strings."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from explorer.views import cost, memory
from explorer.views.formulas import latex_terms
from planner.api import plan_model
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.units import format_seconds

MLP = str(Path(__file__).resolve().parents[2] / "sample_models" / "mlp.onnx")
_TERM = re.compile(r"&(= -|= |\+ |- )\\underbrace\{([0-9.]+)\\,\\mathrm\{([^}]*)\}\}_\{\\text\{([^}]*)\}\}")
_TOTAL = re.compile(r"&= ([0-9.]+)\\,\\mathrm\{([^}]*)\}\\end\{aligned\}$")


def _plan(micro_batches: int = 1):
    graph = import_model(MLP, {"batch": 4096})  # large enough that data parallelism (gradient sync) stays in the plan
    options = PlanOptions(pipeline_stages=1, micro_batches=micro_batches)
    return plan_model(graph, load_preset("dgx_a100"), options, rebinder=rebinder_for(MLP))


@pytest.fixture(scope="module", params=[1, 2], ids=["one micro-batch", "two micro-batches"])
def planned(request):
    return _plan(request.param)


def _half_unit(number: str) -> Decimal:
    """Half a unit of the last digit shown (the most a rounded number is off by)."""
    decimals = len(number.split(".")[1]) if "." in number else 0
    return Decimal(5) * Decimal(10) ** -(decimals + 1)


def _card(latex: str) -> tuple[list[tuple[str, Decimal, str]], Decimal, Decimal, str]:
    """The card's terms (label, signed value, unit), its total, the rounding slack, its unit."""
    found = _TERM.findall(latex)
    terms = [(label, Decimal(number) * (-1 if sign.strip() in ("-", "= -") else 1), unit)
             for sign, number, unit, label in found]
    total_text, unit = _TOTAL.search(latex).groups() if len(found) > 1 else found[0][1:3]  # one term: the total
    numbers = [number for _, number, _, _ in found] + [total_text]
    return terms, Decimal(total_text), sum(_half_unit(n) for n in numbers), unit


def _card_total_text(latex: str) -> str:
    """The total a card's terms end with (``168 \\mu s``), or its one term."""
    total = _TOTAL.search(latex)
    return " ".join(total.groups() if total else _TERM.findall(latex)[0][1:3])


def test_every_card_s_terms_add_up_to_its_total_in_one_unit(planned):
    cm = planned.cost_model
    taken_off = set()
    for name in cm.planned:
        strategy = tuple(planned.plan.strategies[name])
        latex = latex_terms(cm, name, strategy)
        terms, total, slack, unit = _card(latex)
        assert terms, latex
        assert {u for _, _, u in terms} == {unit}, latex  # one unit per sum: the total's
        assert abs(sum(v for _, v, _ in terms) - total) <= slack, latex
        # the total is the card's big number (the metric under the formula)
        shown = format_seconds(cm.op_seconds(name, strategy)).replace("µs", "\\mu s")
        assert shown == f"{_card_total_text(latex)}", (shown, latex)
        taken_off |= {label for label, v, _ in terms if v < 0}
    # overlap is on by default: a weight's gradient all-reduce hides behind its backward compute
    assert "hidden behind backward compute" in taken_off
    if cm.micro_batches > 1:
        assert f"gradient sync once per {cm.micro_batches} micro-batches" in taken_off


def test_the_operator_bars_draw_each_card_s_total_and_rank_by_it(planned):
    fig = cost.op_cost_figure(planned, top=100)
    names = list(fig.data[0].y)
    bars = {n: sum(trace.x[i] for trace in fig.data) for i, n in enumerate(names)}
    cm = planned.cost_model
    for i, name in enumerate(names):
        strategy = tuple(planned.plan.strategies[name])
        terms, total, slack, unit = _card(latex_terms(cm, name, strategy))
        own = fig.data[0].x[i] + fig.data[1].x[i]  # compute + exposed communication (µs)
        assert unit == "\\mu s" or own < 1  # the MLP's operators take microseconds
        if unit == "\\mu s":
            assert abs(Decimal(str(own)) - total) <= slack + Decimal("1e-9")
    assert [bars[n] for n in names] == sorted(bars.values(), reverse=True)  # costliest first, as drawn


def test_the_memory_view_is_in_the_peak_s_unit():
    result = _plan()
    peak = result.memory.peak
    assert peak < 2**30  # a small plan: MiB, not "0.0127 GiB"
    table = memory.memory_table(result)
    assert list(table.columns) == ["part", "MiB"]
    parts = table[~table["part"].isin(["total (peak)", "capacity"])]["MiB"]
    assert parts.sum() == pytest.approx(peak / 2**20)
    assert table[table["part"] == "capacity"]["MiB"].iloc[0] == pytest.approx(80e9 / 2**20)


def test_the_d_rec_table_says_what_a_cut_is():
    # 64 nodes are 2^6: six cuts of factor 2 (the trial read "cut 0..5, node factor 2" unexplained)
    assert "six cuts of factor 2" in cost.TRACE_CAPTION and "one cut at a time" in cost.TRACE_CAPTION
    machine = load_preset("dgx_a100_64nodes")
    from planner.cost.model import CostModel

    cm = CostModel(import_model(MLP, {"batch": 8}), machine)
    assert [c.factor for c in cm.cuts if machine.levels[c.level].name == "node"] == [2] * 6


def test_the_drec_table_reads_its_times_in_one_unit_that_fits_the_largest(planned):
    """A trial found '10593372 µs' in D-Rec's table: its three time columns share the unit of the
    table's largest figure, so that figure reads between 1 and 1,000 of it, and the values are the
    trace's seconds divided by that unit."""
    name = next(e["operator"] for e in planned.plan.trace if e.get("candidates"))
    table = cost.trace_table(planned, name)
    cols = [c for c in table.columns if c.startswith(("operator (", "redistribution (", "total ("))]
    assert len(cols) == 3 and len({c.split("(")[1] for c in cols}) == 1
    unit = cols[0].split("(")[1].rstrip(")")
    scale = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}[unit]
    biggest = max(c.get(k, 0.0) for e in planned.plan.trace if e.get("operator") == name
                  for c in e["candidates"] for k in ("op_seconds", "redistribution_seconds", "total_seconds"))
    assert 1 <= biggest / scale < 1000
    assert table[cols[2]].max() == pytest.approx(max(
        c["total_seconds"] for e in planned.plan.trace if e.get("operator") == name for c in e["candidates"]) / scale)
