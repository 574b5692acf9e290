"""Cost formulas as a student reads them: sympy expressions turned into short LaTeX, and the words
around them.

Owns: the numbers of a formula (integers as integers, exact small fractions such as 63/64 kept,
every other coefficient in engineering notation with 4 significant digits: ``1.625 \\cdot
10^{9}``, ``463.9 \\cdot 10^{9}``), the machine constants written as symbols (``F``, ``g_l``,
``L_l`` and ``B_mem``, the device's memory bandwidth, in the roofline ``max(w/F, bytes/B_mem)``),
long formulas broken over lines (KaTeX ``aligned``), an operator's einsum-style signature
(``y[b,m,n] = Σ_k x[b,m,k] · w[k,n]``) and the names of its dimensions where the model tells them
(the batch, a bound symbolic dimension such as the sequence, heads, head_dim, vocabulary, experts,
a summed or a weight's dimension).
No streamlit here: the explorer's Cost page and the reports draw what these functions return.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import TYPE_CHECKING

from planner.units import format_number

if TYPE_CHECKING:
    import sympy

    from planner.cost.model import CostModel
    from planner.model.graph import OperatorGraph

SIGNIFICANT = 4  #: significant digits of a coefficient that is not a small exact fraction
MAX_DENOMINATOR = 1024  #: a fraction is kept exact when its denominator is at most this ...
MAX_NUMERATOR = 10_000  #: ... and its numerator below this
MEMORY_BANDWIDTH = "B_{mem}"  #: the symbol of the device's memory bandwidth
BUCKET = "S_{bucket}"  #: the symbol of the gradient bucket's size in bytes (``min(1, 4kn/S_bucket)``)
BUCKET_TEXT = "S_bucket"  #: the same in plain text
LONG = 28  #: a term whose LaTeX shows more characters (commands and braces aside) is broken over lines
CONTRACTIONS = {"MatMul", "Gemm", "Einsum", "Conv", "ConvTranspose", "MatMulInteger", "QLinearMatMul"}

#: names of bound symbolic dimensions, as a reader says them
_SYMBOL_WORDS = {"seq": "sequence", "seq_len": "sequence", "sequence": "sequence", "sequence_length": "sequence",
                 "tokens": "tokens", "heads": "heads", "hidden": "hidden", "vocab": "vocabulary",
                 "experts": "experts", "height": "height", "width": "width", "channels": "channels"}


# ---- numbers ---------------------------------------------------------------------------------

def nice_fraction(x) -> Fraction | None:
    """``x`` as an integer or an exact small fraction (``2.0`` -> 2, ``0.984375`` -> 63/64, at
    most ``MAX_DENOMINATOR`` below and ``MAX_NUMERATOR`` in size), or None."""
    x = float(x)
    if not math.isfinite(x):
        return None
    if x.is_integer():
        return Fraction(int(x))
    f = Fraction(x).limit_denominator(MAX_DENOMINATOR)
    if abs(f) < MAX_NUMERATOR and math.isclose(float(f), x, rel_tol=1e-9, abs_tol=0.0):
        return f
    return None


def engineering(x: float, digits: int = SIGNIFICANT) -> str:
    """LaTeX of a number in engineering notation: ``1.625 \\cdot 10^{9}``, ``463.9 \\cdot
    10^{9}``, ``0.755``, ``3072``; exponents are multiples of 3, mantissas have ``digits``
    significant digits and no trailing zeros."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else ("\\infty" if x > 0 else "-\\infty")
    if 1e-3 <= abs(x) < 1e4:
        return format_number(x, digits)
    exponent = 3 * math.floor(math.log10(abs(x)) / 3)
    mantissa = format_number(x / 10.0**exponent, digits)
    if abs(float(mantissa)) >= 1000:  # 999.96e6 rounds to 1000e6: 1e9
        exponent += 3
        mantissa = format_number(x / 10.0**exponent, digits)
    return f"{mantissa} \\cdot 10^{{{exponent}}}"


def plain_number(c: float) -> str:
    """A coefficient in plain text: integers below 10^6 as integers, four significant digits
    (``4.782``, ``12346``: integer digits kept below 10^6), a power of ten beyond (``1.235×10^7``),
    never ``e+``."""
    if float(c).is_integer() and abs(c) < 1e6:
        return str(int(c))
    if 1e-3 <= abs(c) < 1e6:
        return format_number(c, SIGNIFICANT)
    mantissa, exponent = f"{c:.{SIGNIFICANT - 1}e}".split("e")
    return f"{format_number(float(mantissa), SIGNIFICANT)}×10^{int(exponent)}"


def _number(n, constants: dict, round_integers: bool = True) -> sympy.Expr:
    """One coefficient made readable: a small exact fraction, a small fraction of a named
    machine constant (``F/B_mem``), or a float (printed with ``SIGNIFICANT`` digits); with
    ``round_integers`` a big integer too (LaTeX: ``571.4 \\cdot 10^{3}``)."""
    import sympy

    if n.is_Integer and abs(n) >= 10**5:  # 571392 reads 571.4 \cdot 10^{3}
        return sympy.Float(float(n)) if round_integers else n
    if n.is_Integer or (n.is_Rational and abs(n.p) < MAX_NUMERATOR and abs(n.q) <= MAX_DENOMINATOR):
        return n  # 3/64 stays exact
    for value, symbol in constants.items():  # 7344.8 is 48 F/B_mem, not 7043641/959
        f = nice_fraction(float(n) / value)
        if f is not None:
            return sympy.Rational(f.numerator, f.denominator) * symbol
    if n.is_Rational and abs(n.p) < MAX_NUMERATOR:  # 1/50000000 stays exact
        return n
    f = nice_fraction(n)
    if f is not None:
        return sympy.Rational(f.numerator, f.denominator)
    return sympy.Float(float(n))


def readable(expr, constants: dict | None = None, round_integers: bool = True) -> sympy.Expr:
    """``expr`` with each coefficient made readable (see :func:`_number`); ``constants`` maps a
    value to the symbol that stands for it (``{F_eff / B_mem: F / B_mem}``)."""
    import sympy

    constants = constants or {}
    numbers = {n for n in expr.atoms(sympy.Number) if not n.is_Integer or abs(n) >= 10**5}
    return _replaced(expr, {n: _number(n, constants, round_integers) for n in numbers})


def _replaced(expr, mapping: dict):
    """``expr.xreplace(mapping)`` without deciding a ``Max`` or ``Min`` again (sympy compares
    their arguments pairwise, a second per roofline; a coefficient made readable changes no order)."""
    import sympy

    if expr in mapping:
        return mapping[expr]
    if not expr.args:
        return expr
    args = [_replaced(a, mapping) for a in expr.args]
    if all(a is b for a, b in zip(args, expr.args)):
        return expr
    if isinstance(expr, (sympy.Max, sympy.Min)):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


def memory_constants(flops_per_memory_byte: float, flops_symbol) -> dict:
    """The roofline's constant ``F/B_mem`` (FLOP-equivalents of one byte of memory traffic)
    for :func:`readable`; none when the device has no memory bandwidth."""
    import sympy

    if not flops_per_memory_byte:
        return {}
    return {flops_per_memory_byte: flops_symbol / sympy.Symbol(MEMORY_BANDWIDTH, positive=True)}


def named_buckets(expr, bucket_bytes: float) -> sympy.Expr:
    """``expr`` with the gradient bucket written as a symbol: a weight gradient of ``S`` bytes fills
    ``min(1, S/S_bucket)`` of a bucket and pays that share of its all-reduce latency
    (:func:`planner.cost.gradients.sync_traffic`); the cost model writes ``min(1, k n/6250000)``
    for a 4-byte ``k x n`` gradient in a 25 MB bucket, this gives ``min(1, 4 k n/S_bucket)``."""
    import sympy

    if not bucket_bytes or not expr.has(sympy.Min):
        return expr
    size = sympy.Symbol(BUCKET, positive=True)
    scale = sympy.Rational(str(bucket_bytes)) if float(bucket_bytes).is_integer() else exact(bucket_bytes)

    def rename(node):
        if isinstance(node, sympy.Min) and any(a == 1 for a in node.args):
            args = [a if a == 1 else sympy.expand(a * scale) / size for a in node.args]
            return sympy.Min(*args, evaluate=False)
        if not node.args:
            return node
        args = [rename(a) for a in node.args]
        if isinstance(node, (sympy.Max, sympy.Min)):
            return node.func(*args, evaluate=False)
        return node.func(*args)

    return rename(expr)


def exact(expr) -> sympy.Expr:
    """``expr`` with every float made an exact rational (its decimal value; a small fraction such
    as 63/64 as itself), in one walk: what ``sympy.nsimplify`` gives for a cost formula, without
    its search for closed forms and without re-deciding a roofline's ``Max`` (kept as built)."""
    import sympy

    if isinstance(expr, (int, float)):
        expr = sympy.sympify(expr)
    if expr.is_Float:
        f = nice_fraction(expr)
        return sympy.Rational(f.numerator, f.denominator) if f is not None else sympy.Rational(repr(float(expr)))
    if not expr.args or not expr.has(sympy.Float):
        return expr
    args = [exact(a) for a in expr.args]
    if isinstance(expr, (sympy.Max, sympy.Min)):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


# ---- LaTeX -----------------------------------------------------------------------------------

def _printer():
    from sympy.printing.latex import LatexPrinter

    class _Printer(LatexPrinter):
        def _print_Float(self, expr):
            return engineering(float(expr))

        def _print_Integer(self, expr):
            n = int(expr)
            if abs(n) >= 10**5:
                return engineering(float(n))
            return str(n)

    return _Printer({"mul_symbol": None})


def to_latex(expr) -> str:
    """LaTeX of a readable expression (engineering notation for floats and round big integers)."""
    return _printer().doprint(expr)


def _roofline_args(term, flops_symbol):
    """For ``c * Max(a, b) / F`` (the roofline of a compute term): ``(c, [a/F, b/F])``, the
    1/F moved inside so that ``F`` cancels against ``F/B_mem``; None for any other term."""
    import sympy

    maxes = [f for f in sympy.Mul.make_args(term) if isinstance(f, sympy.Max)]
    if len(maxes) != 1 or flops_symbol is None:
        return None
    rest = sympy.Mul(*[f for f in sympy.Mul.make_args(term) if f is not maxes[0]])
    coefficient = rest * flops_symbol
    if coefficient.has(flops_symbol):
        return None
    return coefficient, [sympy.together(sympy.expand(a / flops_symbol)) for a in maxes[0].args]


def _term_latex(term, flops_symbol) -> list[str]:
    """One term, on one line or, when long, several: a roofline one argument per line, a
    factor times a sum (``g_l (a + b)``) one summand per line."""
    import sympy

    roof = _roofline_args(term, flops_symbol)
    if roof is not None:
        coefficient, args = roof
        lead = "" if coefficient == 1 else to_latex(coefficient) + " "
        return _bracketed(f"{lead}\\max", [to_latex(a) for a in args], ", ", ",")
    text = to_latex(term)
    sums = [f for f in sympy.Mul.make_args(term) if isinstance(f, sympy.Add)]
    if visible_length(text) < LONG or len(sums) != 1:
        return [text]
    rest = sympy.Mul(*[f for f in sympy.Mul.make_args(term) if f is not sums[0]])
    lead = "" if rest == 1 else to_latex(rest)
    return _bracketed(lead, [to_latex(a) for a in sympy.Add.make_args(sums[0])], " + ", "")


def visible_length(latex: str) -> int:
    """Roughly how many characters ``latex`` shows: without its commands, braces, scripts' marks
    and spaces (a fraction counts both its lines: an overestimate that errs towards breaking)."""
    return len(re.sub(r"\\[a-zA-Z]+|[{}_^ ]", "", latex))


def _bracketed(lead: str, parts: list[str], joint: str, comma: str) -> list[str]:
    """``lead(parts joined)`` on one line when short, else one part per line inside tall brackets."""
    if visible_length(lead) + sum(visible_length(t) + 1 for t in parts) < LONG:
        return [f"{lead}\\left({joint.join(parts)}\\right)"]
    lines = [f"{lead}\\bigg({parts[0]}{comma}"]
    for i, text in enumerate(parts[1:], 1):
        sign = "" if comma or text.startswith("-") else "+ "
        lines.append(f"{sign}{text}" + (comma if i < len(parts) - 1 else "\\bigg)"))
    return lines


def _rank(term) -> tuple:
    names = sorted(str(s) for s in term.free_symbols)
    work = "F" in names or MEMORY_BANDWIDTH in names
    return (0 if work else 1 if any(n.startswith("g") for n in names) else 2, names)


def _terms(expr, flops_symbol) -> list:
    """The terms of a readable formula, compute first, with the rate cancelled where it is above
    and below (``(3 F d0 d1 d2/(64 B_mem) + 12 F d1 d2/B_mem)/F`` is ``3 d0 d1 d2/(64 B_mem) +
    12 d1 d2/B_mem``: two terms); a roofline stays one term."""
    import sympy

    out = []
    for term in sympy.Add.make_args(expr):
        if flops_symbol is not None and term.has(flops_symbol) and _roofline_args(term, flops_symbol) is None:
            expanded = sympy.expand(term)
            if not expanded.has(flops_symbol) or sympy.count_ops(expanded) < sympy.count_ops(term):
                out += list(sympy.Add.make_args(expanded))
                continue
        out.append(term)
    return sorted(out, key=_rank)


def latex_lines(expr, constants: dict | None = None, flops_symbol=None, bucket_bytes: float = 0.0) -> str:
    """A cost formula made readable, one term per line (compute first, then each level's bytes
    and latencies; a long roofline over several lines) in a KaTeX ``aligned`` block; the gradient
    bucket as ``S_bucket`` (:func:`named_buckets`)."""
    expr = readable(named_buckets(expr, bucket_bytes), constants)
    terms = _terms(expr, flops_symbol)
    lines = [line for t in terms for line in _term_latex(t, flops_symbol)]
    if len(lines) == 1:
        return lines[0]
    starts = {0}
    i = 0
    for t in terms:
        starts.add(i)
        i += len(_term_latex(t, flops_symbol))
    body = [("&" if k == 0 else "&+ " if k in starts else "&\\quad ") + line for k, line in enumerate(lines)]
    return "\\begin{aligned}" + "\\\\".join(body) + "\\end{aligned}"


# ---- plain text (the reports) ---------------------------------------------------------------

def _plain_printer():
    from sympy.printing.str import StrPrinter

    class _Printer(StrPrinter):
        def _print_Float(self, expr):
            return plain_number(float(expr))

        def _print_Symbol(self, expr):
            return re.sub(r"_\{([^}]*)\}", r"_\1", expr.name)

        def _print_Max(self, expr):
            return "max(" + ", ".join(self._print(a) for a in expr.args) + ")"

        def _print_Min(self, expr):
            return "min(" + ", ".join(self._print(a) for a in expr.args) + ")"

    return _Printer()


def _plain(expr, printer) -> str:
    return printer.doprint(expr).replace("**", "^").replace("*", "·")


def plain_text(expr, constants: dict | None = None, flops_symbol=None, bucket_bytes: float = 0.0) -> str:
    """A cost formula as one line of plain text, made readable as the LaTeX is (integers kept
    whole): ``·`` for products, ``g_gpu`` for ``g_{gpu}``, a roofline as ``3·max(b·k·m·n/(128·F),
    F·b·k·m/(64·B_mem))``; the compute term first, then bytes, then latencies."""
    import sympy

    printer = _plain_printer()
    expr = readable(named_buckets(sympy.expand(expr), bucket_bytes), constants, round_integers=False)
    terms = []
    for term in _terms(expr, flops_symbol):
        roof = _roofline_args(term, flops_symbol)
        if roof is None:
            text = _plain(term, printer)
        else:
            lead = "" if roof[0] == 1 else _plain(roof[0], printer) + "·"
            text = lead + "max(" + ", ".join(_plain(a, printer) for a in roof[1]) + ")"
        terms.append((_rank(term)[0], text))
    return " + ".join(text for _, text in sorted(terms)) or "0"


def card_terms(cm: CostModel, name: str, strategy: tuple, redistribution: float = 0.0) -> list[tuple[str, float]]:
    """The operator's time on this machine as terms that add up to it exactly: :func:`term_seconds`,
    then what is taken off (negative): the once-per-iteration gradient all-reduce shared by the
    micro-batches (``(1 - 1/m)`` of it) and the communication the overlaps hide behind the
    operator's compute (:func:`planner.cost.overlap.hidden_seconds`), then ``redistribution``
    (with its neighbours, as the plan has them) when given. Their sum is
    ``cm.op_seconds(name, strategy) + redistribution``."""
    from planner.cost import overlap

    c = cm.op_cost(name, strategy)
    terms = [t for t in term_seconds(cm, name, strategy) if t[1] > 0]
    m = cm.micro_batches
    shared = (1 - 1 / m) * cm.basis.time(c.gradient_sync)
    if shared > 0:
        terms.append((f"gradient sync once per {m} micro-batches", -shared))
    hidden = overlap.hidden_seconds(cm, name, c)
    if hidden > 0:
        gathers = cm.overlap.parameter_prefetch and c.parameter_gathers is not None and cm.basis.time(c.parameter_gathers) > 0
        terms.append(("hidden behind compute" if gathers else "hidden behind backward compute", -hidden))
    if redistribution > 0:
        terms.append(("redistribution", redistribution))
    return terms or [("compute", 0.0)]


def operator_parts(result, name: str) -> dict[str, float]:
    """One operator of a plan as its card and the charts show it (seconds): ``compute``,
    ``communication`` (exposed: less the gradient sync shared by the micro-batches and what the
    overlaps hide, as :func:`card_terms` takes them off), ``redistribution`` and ``total``."""
    cm = result.cost_model
    strategy = tuple(result.plan.strategies[name])
    compute = cm.basis.time(cm.op_cost(name, strategy).compute)
    alone = cm.op_seconds(name, strategy)
    redistribution = result.cost.op_seconds(name)["redistribution"]
    return {"compute": compute, "communication": max(0.0, alone - compute), "redistribution": redistribution,
            "total": alone + redistribution}


def costliest(result) -> list[str]:
    """The planned operators, costliest first by :func:`operator_parts` (what the cards and the
    charts show: the operator's own time with its redistribution)."""
    return sorted(result.cost_model.planned, key=lambda n: -operator_parts(result, n)["total"])


def term_seconds(cm: CostModel, name: str, strategy: tuple) -> list[tuple[str, float]]:
    """The operator's cost on this machine term by term: compute, then bytes and latencies per
    level (``[("compute", s), ("node bytes", s), ("node latency", s), ...]``, zero terms left
    out; ``[("compute", 0.0)]`` when all are zero)."""
    c = cm.op_cost(name, strategy)
    vec, vals = c.compute + c.communication, cm.basis.values
    d = len(cm.machine.levels)
    out = [("compute", float(vec[0] * vals[0]))]
    for i, lv in enumerate(cm.machine.levels):
        out += [(f"{lv.name} bytes", float(vec[1 + i] * vals[1 + i])),
                (f"{lv.name} latency", float(vec[1 + d + i] * vals[1 + d + i]))]
    return [(label, v) for label, v in out if v > 0] or [("compute", 0.0)]


# ---- words: the signature and the dimensions -------------------------------------------------

def _axes_text(axes) -> str:
    return ",".join(axis[0] if len(axis) == 1 else "(" + " ".join(axis) + ")" for axis in axes)


def signature(op, parameters: set[str]) -> str:
    """The operator's einsum-style signature in plain text: ``y[b0,m,n] = Σ_k x[b0,m,k] ·
    w[k,n]`` for a contraction (``+ w2[n]``: a Gemm's bias), ``y[b0,m,n] = Add(x1[b0,m,n], w[n])`` otherwise; a flattened
    axis reads ``(m b)``. ``parameters`` are the tensor names that are weights (``w``)."""
    names, counts = [], {"x": 0, "w": 0}
    kinds = ["w" if u.tensor in parameters else "x" for u in op.inputs]
    for kind in kinds:
        counts[kind] += 1
    seen = {"x": 0, "w": 0}
    for kind in kinds:
        seen[kind] += 1
        names.append(kind if counts[kind] == 1 else f"{kind}{seen[kind]}")
    args = [f"{n}[{_axes_text(u.axes)}]" if u.axes else n for n, u in zip(names, op.inputs)]
    outs = [f"y[{_axes_text(u.axes)}]" if u.axes else "y" for u in op.outputs[:1]]
    summed = sorted(op.reduction_dims)
    sigma = f"Σ_{','.join(summed)} " if summed else ""
    if op.op_type in CONTRACTIONS and len(args) >= 2:
        body = " · ".join(args[:2]) + "".join(f" + {a}" for a in args[2:])  # a Gemm's bias
    else:
        body = f"{op.op_type}({', '.join(args)})"
    return f"{outs[0] if outs else 'y'} = {sigma}{body}"


def dimension_names(graph: OperatorGraph, name: str) -> dict[str, str]:
    """What each of the operator's dimensions is, where the model tells it: ``batch`` (traced
    from the batch axis), ``heads``, ``head_dim``, ``vocabulary`` or ``experts`` (from the roles
    of attention, embedding and expert operators: ``planner.cost.dimension_roles``), a bound symbolic dimension by its size (``sequence`` for ``seq``),
    ``summed`` (a reduction; ``summed input features`` when a weight has it), ``output
    features`` (a weight's other dimension in a contraction), ``weight``; the others are left out (the
    letter and its size are all that is known)."""
    from planner.cost.dimension_roles import dimension_roles
    from planner.model.graph import TensorRole

    op = graph.operators[name]
    batch_dim = graph.batch_dims().get(name)
    params = {u.tensor for u in op.inputs if graph.tensors[u.tensor].role is TensorRole.PARAMETER}
    weight_dims = {d for u in op.inputs if u.tensor in params for d in u.dims()}
    symbols = {v: _SYMBOL_WORDS.get(k.lower(), k) for k, v in graph.bindings.items()
               if k != graph.batch_symbol and v > 1}
    roles = dimension_roles(graph).get(name, {})
    out: dict[str, str] = {}
    for d, size in op.dims.items():
        if d == batch_dim or d.endswith("~b"):
            out[d] = "batch"
        elif d in roles:
            summed = d in op.reduction_dims and op.op_type in CONTRACTIONS
            out[d] = f"summed {roles[d]}" if summed else roles[d]
        elif d in op.reduction_dims:
            out[d] = "summed input features" if d in weight_dims else "summed"
        elif d in weight_dims:
            out[d] = "output features" if op.op_type in CONTRACTIONS else "weight"
        elif size in symbols:
            out[d] = symbols[size]
    return out


def dimensions_text(op, names: dict[str, str]) -> str:
    """``b0 = batch (256), m = sequence (128), k = summed (768)``: every dimension with its size
    and, where known, its name."""
    return ", ".join(f"{d} = {names[d]} ({size:,})" if d in names else f"{d} ({size:,})"
                     for d, size in op.dims.items())
