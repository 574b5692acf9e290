"""One operator's cost formula per candidate split: in symbols, with its sizes, and term by
term on this machine (LaTeX for the Cost page), and the legend under the cards: what each symbol
and each dimension letter means, with the operator's einsum-style signature. The formulas are
made readable by :mod:`planner.cost.formula_text`."""

from __future__ import annotations

import math

from explorer.safe_markdown import md_code, md_text
from explorer.views.splits import strategy_label
from planner.api import PlanResult
from planner.cost import formula_text
from planner.cost.model import CostModel
from planner.model.graph import TensorRole
from planner.units import format_number, format_seconds, format_seconds_in, gbps, microseconds, seconds_unit, tflops

#: The formula cards' style: a row of cards wraps to one card per row when a card would be
#: narrower than its formulas (a 1024 px window), KaTeX blocks scroll (with a visible scrollbar)
#: rather than clip if a formula is still wider, and formulas use the body's font size. KaTeX
#: ends every stacked box (a fraction, a subscript, an underbrace) with an empty 2 px table cell
#: (``.vlist-s``, a Safari workaround) hidden by a -2 px margin (``.vlist-t2``): at the end of a
#: formula that cell sticks out of the formula's box by 2 px, so the box keeps 2 px for it.
FORMULA_CSS = ("<style>[data-testid='stHorizontalBlock']:has(.katex-display){flex-wrap:wrap}"
               "[data-testid='stHorizontalBlock']:has(.katex-display)>[data-testid='stColumn']"
               "{min-width:min(100%,22rem)}"
               "[data-testid='stColumn'] .katex-display{overflow-x:auto;overflow-y:hidden;scrollbar-width:thin;"
               "margin:0.4em 0;padding:0 0.25em}"
               "[data-testid='stColumn'] .katex-display>.katex{font-size:1em}"
               ".katex-display>.katex>.katex-html{padding-right:2px}</style>")
CARDS_PER_ROW = 2  #: formula cards side by side (3 clip at 1024 px)


def candidate_strategies(result: PlanResult, name: str) -> list[tuple[str, tuple]]:
    """Side-by-side candidates for one operator: the plan's choice, replicated, and for each
    splittable dimension that dimension split at every cut it divides (outermost first)."""
    cm = result.cost_model
    chosen = tuple(result.plan.strategies[name])
    out = [("chosen: " + strategy_label(result, name), chosen)]
    seen = {chosen}
    rep = cm.replicated()
    if rep not in seen:
        out.append(("replicated", rep))
        seen.add(rep)
    for d in sorted(cm.info[name].splittable):
        s: tuple = ()
        for _ in cm.cuts:
            s = s + ((d,) if d in cm.candidates(name, s) else (None,))
        if s not in seen and any(x is not None for x in s):
            f = math.prod(c.factor for c, x in zip(cm.cuts, s) if x is not None)
            out.append((f"all on {d}: {d} x{f}", s))
            seen.add(s)
    return out


def formula_rows(result: PlanResult, name: str, candidates: list[tuple[str, tuple]]) -> list[dict]:
    """For each candidate: the sympy formula with symbols, with the machine's numbers, and seconds."""
    cm = result.cost_model
    flops = cm.basis.symbols[0]
    constants = formula_text.memory_constants(cm.flops_per_memory_byte, flops)
    rows = []
    for label, s in candidates:
        rows.append({
            "label": label,
            "strategy": s,
            "latex_symbolic": formula_text.latex_lines(cm.op_formula(name, s, symbolic_dims=True), constants, flops,
                                                       cm.bucket_bytes),
            "latex_sized": formula_text.latex_lines(cm.op_formula(name, s), constants, flops),
            "latex_terms": latex_terms(cm, name, s),
            "seconds": cm.op_seconds(name, s),
            "seconds_text": format_seconds(cm.op_seconds(name, s)),
        })
    return rows


def latex_terms(cm: CostModel, name: str, strategy: tuple) -> str:
    """``= 25.5 µs (compute) + 92.9 µs (node bytes) + ... − 17 µs (hidden behind backward
    compute)``, one term per line, in LaTeX: the terms of :func:`planner.cost.formula_text.card_terms`,
    which add up to the card's total, all in the total's unit."""
    terms = formula_text.card_terms(cm, name, strategy)
    total = cm.op_seconds(name, strategy)
    unit = seconds_unit(total)
    latex_unit = "\\mathrm{" + unit[0].replace("µs", "\\mu s") + "}"
    parts = []
    for k, (label, v) in enumerate(terms):
        number = format_seconds_in(abs(v), unit).split(" ", 1)[0]
        sign = ("= -" if v < 0 else "= ") if k == 0 else ("- " if v < 0 else "+ ")
        parts.append(f"&{sign}\\underbrace{{{number}\\,{latex_unit}}}_{{\\text{{{label}}}}}")
    if len(terms) > 1:  # the total the terms add up to (one term is the total already)
        parts.append(f"&= {format_seconds_in(total, unit).split(' ', 1)[0]}\\,{latex_unit}")
    return "\\begin{aligned}" + "\\\\".join(parts) + "\\end{aligned}"


def formula_legend(result: PlanResult, name: str) -> tuple[str, str]:
    """The paragraph under the cards (Markdown with inline LaTeX) and its tooltip: the operator's
    signature, its dimensions (named where the model tells them), and the machine's symbols with
    their values here."""
    graph = result.graph
    op = graph.operators[name]
    params = {u.tensor for u in op.inputs if graph.tensors[u.tensor].role is TensorRole.PARAMETER}
    names = formula_text.dimension_names(graph, name)
    unnamed = [d for d in op.dims if d not in names]
    text = (f"**Reading the cards.** The operator is {md_code(formula_text.signature(op, params))} "
            f"(x: an activation, w: a weight, y: the output, Σ: a sum). Its dimensions: "
            f"{md_text(formula_text.dimensions_text(op, names))}; a letter over p (k/8) is that dimension "
            f"divided among p devices. {machine_symbols_text(result)} {_mode_text(result)}{_bucket_text(result)}"
            f"{_total_text(result)}")
    tip = ("The letters are the operator's own names for the axes of its iteration space (the loops of its "
           "einsum), numbered per operator: the same letter in two operators need not be the same axis."
           + (f" {', '.join(unnamed)}: not named by the model (no traced batch, heads, vocabulary or experts, no bound symbolic dimension, no "
              "weight or sum); its size says what it is." if unnamed else ""))
    return text, tip


def machine_symbols_text(result: PlanResult) -> str:
    """``$F$`` the device's rate, ``$B_{mem}$`` its memory bandwidth, ``$g_l$`` and ``$L_l$`` per level."""
    m = result.cost_model.machine
    sym = result.cost_model.basis.symbols
    d = len(m.levels)
    levels = "; ".join(f"${sym[1 + i]}$ = 1/({format_number(gbps(lv.bandwidth_Bps))} GB/s) and "
                       f"${sym[1 + d + i]}$ = {format_number(microseconds(lv.latency_s))} µs at the "
                       f"{md_text(lv.name)} level" for i, lv in enumerate(m.levels))
    mem = m.device.memory_bandwidth_Bps
    memory = (f" and ${formula_text.MEMORY_BANDWIDTH}$ its memory bandwidth "
              f"({format_number(gbps(mem))} GB/s)" if mem else "")
    return (f"$F$ is a device's effective compute rate ({format_number(tflops(m.device.effective_flops))} "
            f"TFLOP/s here){memory}; $g_l$ is the time per byte sent at level $l$ (1 over its bandwidth) "
            f"and $L_l$ the latency of one superstep there: {levels}.")


def _mode_text(result: PlanResult) -> str:
    if result.options.mode == "train":
        return ("The first line is the work: the larger of the FLOPs over $F$ and the bytes read and written "
                "over the memory bandwidth (the roofline), for the forward and backward passes together; then "
                "the bytes each level moves times its $g$, and its supersteps times its $L$.")
    return ("The first line is the work of the forward pass: the larger of the FLOPs over $F$ and the bytes "
            "read and written over the memory bandwidth (the roofline); then the bytes each level moves "
            "times its $g$, and its supersteps times its $L$.")


def _bucket_text(result: PlanResult) -> str:
    """What ``min(1, S/S_bucket)`` in a formula is, when the gradients are bucketed."""
    bucket = result.cost_model.bucket_bytes
    if not bucket or result.options.mode != "train":
        return ""
    return (f" ${formula_text.BUCKET}$ is the gradient bucket ({format_number(bucket / 1e6)} MB, "
            "the sidebar's bucket size): a weight's gradient of $S$ bytes fills $\\min(1, S/S_{bucket})$ of a "
            "bucket and pays that share of the bucket's all-reduce latency.")


def _total_text(result: PlanResult) -> str:
    """What is taken off under the formulas, so that the terms add up to the card's total."""
    if result.options.mode != "train":
        return ""
    return (" Under the formulas, the terms on this machine add up to the card's total: what the overlaps hide "
            "behind the operator's compute (the sidebar's overlap options)"
            + (" and the share of the once-per-iteration gradient sync that the other micro-batches carry"
               if result.schedule.micro_batches > 1 else "")
            + " is taken off (−).")
