"""One operator's cost formula per candidate split: in symbols, with its sizes, and term by
term on this machine (LaTeX for the Cost page)."""

from __future__ import annotations

import math

from explorer.views.splits import strategy_label
from planner.api import PlanResult
from planner.cost.model import CostModel
from planner.units import format_seconds


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
    import sympy

    cm = result.cost_model
    rows = []
    subs = cm.basis.substitutions()
    for label, s in candidates:
        symbolic = cm.op_formula(name, s, symbolic_dims=True)
        sized = cm.op_formula(name, s)
        numeric = sized.subs(subs)
        rows.append({
            "label": label,
            "strategy": s,
            "latex_symbolic": latex_lines(symbolic),
            "latex_sized": latex_lines(sympy.N(sized, 4)),
            "latex_numeric": sympy.latex(sympy.N(numeric, 4)),
            "latex_terms": latex_terms(cm, name, s),
            "seconds": cm.op_seconds(name, s),
            "seconds_text": format_seconds(cm.op_seconds(name, s)),
        })
    return rows


def term_seconds(cm: CostModel, name: str, strategy: tuple) -> list[tuple[str, float]]:
    """The operator's cost on this machine term by term: compute, then bytes and latencies per level."""
    c = cm.op_cost(name, strategy)
    vec = c.compute + c.communication
    vals = cm.basis.values
    d = len(cm.machine.levels)
    out = [("compute", float(vec[0] * vals[0]))]
    for i, lv in enumerate(cm.machine.levels):
        out.append((f"{lv.name} bytes", float(vec[1 + i] * vals[1 + i])))
        out.append((f"{lv.name} latency", float(vec[1 + d + i] * vals[1 + d + i])))
    return [(label, v) for label, v in out if v > 0] or [("compute", 0.0)]


def latex_terms(cm: CostModel, name: str, strategy: tuple) -> str:
    """``= 23.2 µs (compute) + 34.1 µs (gpu bytes) + ...``, one term per line, in LaTeX."""
    parts = []
    for label, v in term_seconds(cm, name, strategy):
        text = format_seconds(v).replace("µs", "\\mu s")
        number, unit = text.split(" ", 1) if " " in text else (text, "")
        parts.append(f"\\underbrace{{{number}\\,\\mathrm{{{unit}}}}}_{{\\text{{{label}}}}}")
    return "\\begin{aligned}&= " + "\\\\&+ ".join(parts) + "\\end{aligned}"


def latex_lines(expr) -> str:
    """A cost formula one term per line (compute first, then each level's bytes and latencies),
    so that it fits a narrow column."""
    import sympy

    terms = list(sympy.Add.make_args(expr))
    if len(terms) <= 1:
        return sympy.latex(expr)

    def rank(term):
        names = sorted(str(s) for s in term.free_symbols)
        return (0 if "F" in names else 1 if any(n.startswith("g") for n in names) else 2, names)
    terms.sort(key=rank)
    lines = [sympy.latex(t) for t in terms]
    return "\\begin{aligned}&" + "\\\\&+ ".join(lines) + "\\end{aligned}"
