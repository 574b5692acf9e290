"""The report adds up (issue 15): its cost table's rows sum to the iteration (the communication the
overlaps hide is a row of its own), each formula's terms sum to the total it shows, in one unit,
and the formulas are ranked by that total; the Markdown escapes only what Markdown would misread.
Sums are worked out here from the displayed strings."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from planner.api import plan_model
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from planner.options import PlanOptions
from planner.plans.report_doc import Formula, ReportSource, build_report, terms_text
from planner.plans.report_md import report_markdown
from planner.plans.safe_markdown import md_text
from planner.units import format_seconds

GPT2 = str(Path(__file__).resolve().parents[2] / "sample_models" / "gpt2_small.onnx")
SCALE = {"s": Decimal(1), "ms": Decimal("1e-3"), "µs": Decimal("1e-6"), "ns": Decimal("1e-9")}
_TIME = re.compile(r"(-?\s?)([0-9.]+) (s|ms|µs|ns)\b")


@pytest.fixture(scope="module")
def report():
    # GPT-2 small, 8 x 64 tokens on one DGX A100, overlap on (the default): part of the gradient sync hides
    bindings = {"batch": 8, "seq": 64}
    graph = import_model(GPT2, bindings)
    result = plan_model(graph, load_preset("dgx_a100"), PlanOptions(pipeline_stages=1, micro_batches=1))
    source = ReportSource("gpt2_small.onnx", "sample_models/gpt2_small.onnx", None, bindings, "dgx_a100")
    return result, build_report(result, source)


def _seconds(text: str) -> tuple[Decimal, Decimal]:
    """A displayed time in seconds, with half a unit of its last digit (its rounding)."""
    sign, number, unit = _TIME.fullmatch(text.strip()).groups()
    decimals = len(number.split(".")[1]) if "." in number else 0
    value = Decimal(number) * SCALE[unit]
    return (-value if sign.strip() else value), Decimal(5) * Decimal(10) ** -(decimals + 1) * SCALE[unit]


def test_the_cost_table_adds_up_to_the_iteration(report):
    result, doc = report
    rows = dict(doc.cost.rows)
    assert "hidden behind compute (overlap)" in rows  # the trial's missing row
    parts = [_seconds(rows[k]) for k in ("compute", "communication inside operators",
                                         "redistribution between operators", "hidden behind compute (overlap)")]
    iteration, slack = _seconds(rows["iteration"])
    assert parts[-1][0] < 0  # taken off
    assert abs(sum(v for v, _ in parts) - iteration) <= slack + sum(s for _, s in parts)


def test_every_formula_s_terms_add_up_to_its_total_in_one_unit(report):
    _, doc = report
    for f in doc.formulas:
        text = terms_text(f)
        if len(f.terms) == 1:  # one term is the total: "= 6.94 µs (compute)"
            assert text == f"= {format_seconds(f.seconds)} ({f.terms[0][0]})"
            continue
        body, total_text = text.removeprefix("= ").rsplit(" = ", 1)
        total, slack = _seconds(total_text)
        terms = [(_seconds(f"{sign}{number} {unit}"), unit)
                 for sign, number, unit in _TIME.findall(body.replace(" - ", " -").replace(" + ", " "))]
        assert len(terms) == len(f.terms)
        assert {unit for _, unit in terms} == {total_text.split()[-1]}, text  # the total's unit
        assert abs(sum(v for (v, _), _ in terms) - total) <= slack + sum(s for (_, s), _ in terms), text


def test_formulas_are_ranked_by_the_total_they_show_with_redistribution(report):
    _, doc = report
    totals = [f.seconds for f in doc.formulas]
    assert totals == sorted(totals, reverse=True)
    assert "Operators are ranked by that time" in doc.symbols
    md = report_markdown(doc)
    assert "costliest operators (own time and redistribution)" in md


def test_one_unit_per_sum_the_gpt2_card():
    # the trial's GPT-2 card: 434 ns + 323 ns + 20 µs + 191 ns + 10 µs, whose total is in µs
    terms = (("compute", 434e-9), ("gpu bytes", 323e-9), ("gpu latency", 20e-6), ("node bytes", 191e-9),
             ("node latency", 10e-6))
    f = Formula("node_add_17", "Add", "replicated", "d0=8", "x", terms, sum(v for _, v in terms))
    assert terms_text(f) == ("= 0.434 µs (compute) + 0.323 µs (gpu bytes) + 20 µs (gpu latency) + 0.191 µs "
                             "(node bytes) + 10 µs (node latency) = 30.9 µs")  # 30.948 µs to 3 digits


def test_markdown_escapes_only_what_markdown_would_misread(report):
    # numbers and versions as written (the trial read "7\.44 ms", "0\.1.0", "36\.1 / 36.1")
    for text in ("7.44 ms", "0.1.0", "36.1 / 36.1", "-340 µs", "+1.2 ms", "1.5x"):
        assert md_text(text) == text
    # what would open a block still does not: a list item, a thematic break, a setext underline
    md = MarkdownIt("commonmark")
    for text in ("1. x", "12) y", "- item", "+ item", "---", "===", "1."):
        tokens = md.parse("para\n\n" + md_text(text))
        assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"] * 2, text
        assert tokens[4].children[0].content == text
    _, doc = report
    page = report_markdown(doc)
    iteration = dict(doc.cost.rows)["iteration"]
    assert f"| iteration | {iteration} |" in page
