"""planner.cost.formula_text: cost formulas as a student reads them, on hand-written expressions
(the coefficients below are worked out by hand from the raw sympy rationals the Cost page used to
show, issue 15)."""

import sympy

from models import gemm_mlp, graph_of
from planner.cost import formula_text as ft

b, k, m, n = sympy.symbols("b_0 k m n", positive=True)
F = sympy.Symbol("F", positive=True)
g = sympy.Symbol("g_{gpu}", positive=True)
L = sympy.Symbol("L_{gpu}", positive=True)
K = 153.01618440411966  # an A100's F / B_mem: 312e12 FLOP/s over 2.039e12 B/s
MEM = ft.memory_constants(K, F)
B_MEM = sympy.Symbol(ft.MEMORY_BANDWIDTH, positive=True)


def test_engineering_notation_has_exponents_in_threes_and_four_digits():
    assert ft.engineering(1.625e9) == "1.625 \\cdot 10^{9}"
    assert ft.engineering(4.639e11) == "463.9 \\cdot 10^{9}"
    assert ft.engineering(571392) == "571.4 \\cdot 10^{3}"
    assert ft.engineering(999.96e6) == "1 \\cdot 10^{9}"  # 999.96 has 4 digits only as 1000
    assert ft.engineering(2e-8) == "20 \\cdot 10^{-9}"
    assert ft.engineering(0.755) == "0.755"
    assert ft.engineering(3072) == "3072"


def test_a_raw_rational_becomes_four_significant_digits():
    # 239087788131437/50000000000000 = 4.78175576262874
    raw = sympy.Rational(239087788131437, 50000000000000) * b * k * m
    assert ft.to_latex(ft.readable(raw)) == "4.782 b_{0} k m"


def test_integers_stay_integers_and_small_fractions_stay_exact():
    assert ft.to_latex(ft.readable(sympy.Float(2.0) * L)) == "2 L_{gpu}"
    assert ft.to_latex(ft.readable(sympy.Rational(63, 64) * g * k * n)) == "\\frac{63 g_{gpu} k n}{64}"
    assert ft.to_latex(ft.readable(sympy.Float(0.984375) * g)) == "\\frac{63 g_{gpu}}{64}"
    # a bucket count: k n over 50 million stays an exact fraction, its denominator in engineering notation
    assert ft.to_latex(ft.readable(k * n / 50_000_000)) == "\\frac{k n}{50 \\cdot 10^{6}}"


def test_the_memory_bandwidth_is_a_symbol():
    # 612.064737616479 = 4 bytes (fp32) x F / B_mem; 2.39087788131437 = F / B_mem / 64
    assert ft.readable(sympy.Float(612.064737616479) * k * n, MEM) == 4 * F * k * n / B_MEM
    assert ft.readable(sympy.Float(2.39087788131437) * b * k * m, MEM) == F * b * k * m / (64 * B_MEM)


def test_the_roofline_reads_max_of_work_over_F_and_bytes_over_B_mem():
    expr = 3 * sympy.Max(b * k * m * n / 256, sympy.Float(K / 32) * b * k * m) / F + 2 * L
    text = ft.latex_lines(expr, MEM, F)
    assert text == ("\\begin{aligned}&3 \\max\\left(\\frac{b_{0} k m n}{256 F}, \\frac{b_{0} k m}{32 B_{mem}}\\right)"
                    "\\\\&+ 2 L_{gpu}\\end{aligned}")


def test_a_long_roofline_is_broken_over_lines():
    traffic = sympy.Float(K) * (b * k * m + b * m * n + k * n + b * k * n + m * n * k + b * m)
    expr = 3 * sympy.Max(2 * b * k * m * n, traffic) / F + g * k * n
    text = ft.latex_lines(expr, MEM, F)
    lines = text.removeprefix("\\begin{aligned}").removesuffix("\\end{aligned}").split("\\\\")
    assert lines[0] == "&3 \\max\\bigg(\\frac{2 b_{0} k m n}{F},"
    assert lines[1].startswith("&\\quad \\frac{") and lines[1].endswith("}{B_{mem}}\\bigg)")
    assert lines[2] == "&+ g_{gpu} k n"


def test_a_long_sum_times_a_symbol_is_one_summand_per_line():
    expr = g * (b * k * m / 32 + 3 * k * n + b * m * n / 7 + b * k * n / 5 + k * m * n / 9)
    text = ft.latex_lines(expr)
    assert text.startswith("\\begin{aligned}&g_{gpu}\\bigg(")
    lines = text.removeprefix("\\begin{aligned}&").removesuffix("\\end{aligned}").split("\\\\&\\quad ")
    assert len(lines) == 5
    assert lines[-1].endswith("\\bigg)") and all(line.startswith("+ ") for line in lines[1:])
    # short: one line
    assert ft.latex_lines(g * (k + n)) == "g_{gpu} \\left(k + n\\right)"


def test_no_raw_rational_survives_a_realistic_formula():
    raw = (3 * sympy.Max(b * k * m * n / 256, sympy.Rational(239087788131437, 25000000000000) * b * k * m
                         + sympy.Rational(382540461010299, 5000000000000) * k * n) / F
           + g * (sympy.Rational(3, 32) * b * k * m + k * n / 2) + sympy.Float(2.0) * L)
    text = ft.latex_lines(raw, MEM, F)
    assert "239087788131437" not in text and "382540461010299" not in text and "2.0" not in text
    # 9.5635 = F/B_mem / 16 and 76.508 = F/B_mem / 2: (b k m + 8 k n) / (16 B_mem), k factored out
    assert "\\frac{k \\left(b_{0} m + 8 n\\right)}{16 B_{mem}}" in text


def test_signature_and_dimension_names_of_a_gemm():
    graph = graph_of(gemm_mlp([64, 128, 32], batch="batch"), batch=16)
    op = graph.operators["fc0"]
    params = {"W0", "b0", "W1", "b1"}
    assert ft.signature(op, params) == "y[m,n] = Σ_k x[m,k] · w1[k,n] + w2[n]"
    names = ft.dimension_names(graph, "fc0")
    assert names == {"m": "batch", "n": "output features", "k": "summed input features"}
    assert ft.dimensions_text(op, names) == "m = batch (16), n = output features (128), k = summed input features (64)"


def test_signature_of_an_elementwise_operator_names_the_operation():
    graph = graph_of(gemm_mlp([8, 8, 8], batch=4, relu=True))
    assert ft.signature(graph.operators["relu0"], set()) == "y[d0,d1] = Relu(x[d0,d1])"


def test_exact_makes_floats_rational_as_nsimplify_does_and_keeps_the_max():
    # 4.78175576262874 is its decimal value 478175576262874/10^14 (what nsimplify gave); 0.984375 is 63/64
    expr = 3 * sympy.Max(b * k * m * n / 256, sympy.Float(4.78175576262874) * b * k * m) / F + sympy.Float(0.984375) * g
    out = ft.exact(expr)
    assert not out.atoms(sympy.Float)
    assert out == 3 * sympy.Max(b * k * m * n / 256, sympy.Rational(478175576262874, 10**14) * b * k * m) / F \
        + sympy.Rational(63, 64) * g
    assert ft.exact(2.5) == sympy.Rational(5, 2)


def test_plain_text_writes_the_roofline_with_the_memory_bandwidth():
    # 3 max(b k m n / 256, (F/B_mem / 32) b k m) / F: the 1/F moves inside, F cancels in the traffic
    expr = 3 * sympy.Max(b * k * m * n / 256, sympy.Float(K / 32) * b * k * m) / F + 2 * L + g * k * n
    assert ft.plain_text(expr, MEM, F) == "3·max(b_0·k·m·n/(256·F), b_0·k·m/(32·B_mem)) + g_gpu·k·n + 2·L_gpu"


def test_term_seconds_of_a_matmul_split_k_then_m_by_hand():
    # models.matmul (m=64, k=128, n=256, fp32) on two_level (node x2: 10 GB/s, 10 µs; gpu x2:
    # 200 GB/s, 2 µs; 1e14 FLOP/s), train, k split over the nodes, m over the gpus:
    # compute 3 x 2*64*128*256 / 4 = 3,145,728 FLOPs -> 31.45728 ns; y partial over the node pair
    # 32,768 B -> 3.2768 µs and 2 steps -> 20 µs; w's gradient over the gpu pair 65,536 B ->
    # 327.68 ns and 2 steps -> 4 µs.
    import pytest

    import models
    from planner.cost.model import CostModel

    cm = CostModel(graph_of(models.matmul()), models.two_level(), "train", bucket_mb=0)
    terms = ft.term_seconds(cm, "mm", ("k", "m"))
    assert [label for label, _ in terms] == ["compute", "node bytes", "node latency", "gpu bytes", "gpu latency"]
    assert [v for _, v in terms] == pytest.approx([31.45728e-9, 3.2768e-6, 20e-6, 327.68e-9, 4e-6], rel=1e-12)
    # replicated: no communication, compute alone (3 x 4,194,304 FLOPs)
    assert ft.term_seconds(cm, "mm", (None, None)) == [("compute", pytest.approx(12_582_912 / 1e14))]


def test_the_gradient_bucket_is_a_named_symbol():
    # the cost model writes a 4-byte k x n gradient's share of a 25 MB bucket as min(1, k n/6250000):
    # 25e6 / 6.25e6 = 4 bytes per element, so it reads min(1, 4 k n/S_bucket)
    bucket = sympy.Symbol(ft.BUCKET, positive=True)
    expr = 2 * L * sympy.Min(1, k * n / 6_250_000) + g * k * n
    named = ft.named_buckets(expr, 25e6)
    assert named == 2 * L * sympy.Min(1, 4 * k * n / bucket, evaluate=False) + g * k * n
    assert "6.25" not in ft.latex_lines(expr, None, F, 25e6) and "S_{bucket}" in ft.latex_lines(expr, None, F, 25e6)
    assert ft.plain_text(expr, None, F, 25e6) == "g_gpu·k·n + 2·L_gpu·min(1, 4·k·n/S_bucket)"
    # a 1 MB bucket: the same gradient's share is 4 k n/1e6, still 4 k n/S_bucket
    assert ft.named_buckets(2 * L * sympy.Min(1, k * n / 250_000), 1e6) == 2 * L * sympy.Min(1, 4 * k * n / bucket)
    assert ft.named_buckets(expr, 0) == expr  # no buckets: one all-reduce per tensor, nothing to name


def test_the_rate_cancels_when_it_is_above_and_below():
    # the trial's GPT-2 node_add_17: (3F d0d1d2/(64 B_mem) + 12F d1d2/B_mem) / F, a memory-bound Add
    d0, d1, d2 = sympy.symbols("d_0 d_1 d_2", positive=True)
    expr = (sympy.Float(3 * K / 64) * d0 * d1 * d2 + sympy.Float(12 * K) * d1 * d2) / F
    text = ft.latex_lines(expr, MEM, F)
    assert "F" not in text
    assert text == ("\\begin{aligned}&\\frac{3 d_{0} d_{1} d_{2}}{64 B_{mem}}\\\\&+ \\frac{12 d_{1} d_{2}}{B_{mem}}"
                    "\\end{aligned}")
    assert set(ft.plain_text(expr, MEM, F).split(" + ")) == {"3·d_0·d_1·d_2/(64·B_mem)", "12·d_1·d_2/B_mem"}
    # 7344.78 = 48 F/B_mem is written so (not 7043641/959), and then F cancels
    assert ft.latex_lines(sympy.Float(48 * K) / F, MEM, F) == "\\frac{48}{B_{mem}}"
