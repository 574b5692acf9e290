"""Search algorithms: exact, megatron, data_parallel, D-Rec's trace, and properties comparing them.

Hand numbers use the machines of tests/models.py (F = 1e14 FLOP/s; node B0 = 1e10 B/s,
L0 = 1e-5 s; gpu B1 = 2e11 B/s, L1 = 2e-6 s).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import models  # tests/models.py: pytest puts tests/ on sys.path
from planner.search.registry import search
from planner.cost.model import CostModel
from planner.model.graph import OpKind
from planner.cost.baseline import data_parallel_strategies
from planner.search.data_parallel import plan_data_parallel
from planner.search.drec import plan_drec
from planner.search.exact import SearchTooLargeError, all_strategies, plan_exact
from planner.search.megatron import NotATransformerError, plan_megatron

REL = 1e-9  # "never worse" allows float rounding only


def mlp_cm(widths=(32, 64, 16), batch=64, relu=True, machine=None, mode="train"):
    g = models.graph_of(models.gemm_mlp(list(widths), batch=batch, relu=relu))
    return CostModel(g, machine or models.two_level(), mode, bucket_mb=0)  # one all-reduce per gradient tensor


# ---- exact ----------------------------------------------------------------------------------

def test_exact_refuses_too_large_naming_the_bound():
    # a residual block (a cycle): the integer program's bound applies (chains go to exact_dp)
    from sample_models import synthetic

    cm = CostModel(models.graph_of(synthetic.transformer(1, 32, 2, 64), batch=2, seq=4), models.two_level())
    with pytest.raises(SearchTooLargeError, match=r"bound of 10\b"):
        plan_exact(cm, max_variables=10)


def brute_force(cm):
    names = list(cm.planned)
    best = None
    for combo in itertools.product(*(all_strategies(cm, n) for n in names)):
        plan = dict(zip(names, combo))
        cost = cm.total_seconds(plan)
        if best is None or cost < best:
            best = cost
    return best


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("machine", [models.one_level(2), models.two_level()], ids=["2", "2x2"])
def test_exact_equals_brute_force_on_two_matmuls(machine, mode):
    # 2 operators with at most 4 choices per cut: at most 16 x 16 plans, all enumerated.
    cm = CostModel(models.graph_of(models.two_matmuls()), machine, mode)
    plan = plan_exact(cm)
    assert cm.total_seconds(plan.strategies) == pytest.approx(brute_force(cm), rel=REL)


def test_exact_on_microsecond_costs_beats_data_parallel():
    # A small MLP whose every plan costs well under a microsecond (inference, fast links):
    # the objective values are ~1e-10 s. Data parallel here has no communication at all
    # (inference, batch split everywhere, aligned layouts) and compute
    # (2*12*8*64 + 64*12 + 2*12*64*32 + 32*12 + 2*12*32*8) / 12 / 1e14 FLOP/s:
    #   fc0 12,288 + relu0 768 + fc1 49,152 + relu1 384 + fc2 6,144 = 68,736 FLOPs
    #   -> 68,736 / 12 / 1e14 = 5.728e-11 s,
    # so the optimum can be no worse than 5.728e-11 s.
    m = models.two_level(3, 4, b0=1e9)
    cm = mlp_cm((8, 64, 32, 8), batch=12, relu=True, machine=m, mode="infer")
    dp = data_parallel_strategies(cm)
    assert cm.total_seconds(dp) == pytest.approx(68_736 / 12 / 1e14, rel=1e-12)
    exact = plan_exact(cm)
    assert cm.total_seconds(exact.strategies) <= 5.728e-11 * (1 + REL)


# ---- megatron -------------------------------------------------------------------------------

def test_megatron_refuses_a_non_transformer():
    with pytest.raises(NotATransformerError, match="transformer"):
        plan_megatron(mlp_cm())


@pytest.fixture(scope="module")
def transformer_cm():
    from sample_models import synthetic

    g = models.graph_of(synthetic.transformer(1, 128, 4, 512), batch=8, seq=32)
    return CostModel(g, models.two_level(2, 4))


def test_megatron_on_one_transformer_layer(transformer_cm):
    cm = transformer_cm
    assert [(c.level_name, c.factor) for c in cm.cuts] == [("node", 2), ("gpu", 2), ("gpu", 2)]
    plan = plan_megatron(cm)
    s = plan.strategies
    # data parallel on the batch across nodes, then tensor parallel over the 4 gpus of a node:
    # Q, K, V and the MLP's first layer column-parallel (n: output features), the attention
    # output projection and the MLP's second layer row-parallel (k: input features).
    for name in ("layer0.attn.q", "layer0.attn.k", "layer0.attn.v", "layer0.mlp.fc1"):
        assert s[name] == ("b0", "n", "n"), name
    for name in ("layer0.attn.out", "layer0.mlp.fc2"):
        assert s[name] == ("b0", "k", "k"), name
    assert any("4-way" in note for note in plan.notes)
    # every strategy divides its operator's dims (a valid plan the evaluator accepts)
    cost = cm.evaluate(s)
    assert cost.total_seconds > 0


# ---- data parallel --------------------------------------------------------------------------

def test_data_parallel_splits_batch_everywhere_it_divides():
    cm = mlp_cm(batch=64)
    assert cm.graph.batch_dims() == {"fc0": "m", "relu0": "d0", "fc1": "m"}
    assert plan_data_parallel(cm).strategies == {"fc0": ("m", "m"), "relu0": ("d0", "d0"), "fc1": ("m", "m")}
    # batch 6 on 2 x 2: the first 2 divides 6, the remaining 3 is not divisible by the second 2
    cm6 = mlp_cm(batch=6)
    assert data_parallel_strategies(cm6) == {"fc0": ("m", None), "relu0": ("d0", None), "fc1": ("m", None)}
    # batch 6 on one level of 6 (cuts 2 then 3): 6 = 2 * 3 splits fully
    cm66 = mlp_cm(batch=6, machine=models.one_level(6))
    assert [c.factor for c in cm66.cuts] == [2, 3]
    assert data_parallel_strategies(cm66)["fc0"] == ("m", "m")


def test_data_parallel_on_a_transformer_uses_the_batch(transformer_cm):
    cm = transformer_cm
    dp = data_parallel_strategies(cm)
    batch = cm.graph.batch_dims()
    for name in cm.planned:
        dim = batch.get(name)
        if dim is None:
            assert dp[name] == (None,) * 3, name
        else:
            # batch 8 = 2*2*2: divisible at all three cuts
            assert dp[name] == (dim,) * 3, name
    assert batch["layer0.attn.q"] == "b0"


# ---- D-Rec ----------------------------------------------------------------------------------

@pytest.mark.parametrize("improved", [False, True])
def test_drec_trace(improved):
    cm = mlp_cm()
    plan = plan_drec(cm, improved=improved)
    critical = [n for n in cm.planned if cm.graph.operators[n].kind is OpKind.COMPUTE]
    assert critical == ["fc0", "fc1"]
    pairs = [(e["cut"], e["operator"]) for e in plan.trace]
    # one entry per (cut, critical operator), and nothing else
    assert sorted(pairs) == sorted((t, n) for t in range(len(cm.cuts)) for n in critical)
    for e in plan.trace:
        assert e["level"] == cm.cuts[e["cut"]].level_name and e["factor"] == cm.cuts[e["cut"]].factor
        rows = e["candidates"]
        dims = [r["dim"] for r in rows]
        assert None in dims and len(set(dims)) == len(dims)
        for r in rows:
            assert r["total_seconds"] == pytest.approx(r["op_seconds"] + r["redistribution_seconds"])
        chosen = next(r for r in rows if r["dim"] == e["chosen"])
        assert chosen["total_seconds"] == min(r["total_seconds"] for r in rows)
    if not improved:
        # the thesis's algorithm: the final plan is exactly the trace's choices
        for e in plan.trace:
            assert plan.strategies[e["operator"]][e["cut"]] == e["chosen"]
            prefix = plan.strategies[e["operator"]][:e["cut"]]
            assert [r["dim"] for r in e["candidates"]] == cm.candidates(e["operator"], prefix)


def test_drec_trace_first_decision_by_hand():
    # The heaviest critical operator decides first at cut 0 (node x2), with no neighbours
    # decided: fc0 (x[64,32] @ W0[32,64] + b0), forward 2*64*32*64 = 262,144 FLOPs.
    #   None: 3*262,144/1e14 = 7.86432e-9 s
    #   n:    half of it, 3.93216e-9 s, W0 and b0 split, x has no gradient: nothing to send
    #   m:    3.93216e-9 + W0 gradient all-reduce over the node pair 2*(1/2)*8,192 B*1e-10
    #         (8.192e-7) + 2e-5, + b0's 256 B*1e-10 (2.56e-8) + 2e-5 = 4.084873216e-5 s
    #   k:    3.93216e-9 + h0 partial sums 2*(1/2)*16,384 B*1e-10 (1.6384e-6) + 2e-5
    #         = 2.164233216e-5 s (b0 is added after the reduction over k: its gradient is whole)
    cm = mlp_cm()
    plan = plan_drec(cm, improved=False)
    first = plan.trace[0]
    assert (first["cut"], first["operator"]) == (0, "fc0")
    rows = {r["dim"]: r["op_seconds"] for r in first["candidates"]}
    assert rows == pytest.approx({None: 7.86432e-9, "n": 3.93216e-9, "m": 4.084873216e-5,
                                  "k": 2.164233216e-5}, rel=1e-12)
    assert first["chosen"] == "n"


def test_drec_plus_returns_data_parallel_when_better():
    cm = mlp_cm()
    dp = data_parallel_strategies(cm)
    plan = search(cm, "drec+")
    assert cm.total_seconds(plan.strategies) <= cm.total_seconds(dp) * (1 + REL)
    assert plan.algorithm == "drec+"


# ---- properties -----------------------------------------------------------------------------

@st.composite
def small_cases(draw):
    mode = draw(st.sampled_from(["train", "infer"]))
    if draw(st.integers(0, 3)) == 0:
        # a tiny CNN chain (Conv, Relu, MaxPool, GlobalAveragePool, Flatten, Gemm) on at most
        # two cuts: the exact search over convolutions grows fast with the number of cuts
        from sample_models import synthetic

        channels = [3] + draw(st.lists(st.sampled_from([4, 8, 16]), min_size=1, max_size=3))
        g = models.graph_of(synthetic.cnn_chain(channels, size=8, classes=10),
                            batch=draw(st.sampled_from([2, 4, 6])))
        machine = draw(st.sampled_from([models.one_level(2), models.one_level(4), models.one_level(6),
                                        models.two_level(2, 2, b0=1e9), models.two_level(3, 2)]))
        return CostModel(g, machine, mode)
    widths = draw(st.lists(st.sampled_from([8, 16, 32, 64, 256]), min_size=2, max_size=4))
    batch = draw(st.sampled_from([4, 8, 12, 32]))
    relu = draw(st.booleans())
    if draw(st.booleans()):
        machine = models.two_level(draw(st.sampled_from([2, 3])), draw(st.sampled_from([2, 4])),
                                   b0=draw(st.sampled_from([1e9, 1e10, 1e11])))
    else:
        machine = models.one_level(draw(st.sampled_from([2, 4, 6, 8])),
                                   bandwidth=draw(st.sampled_from([1e9, 1e11])))
    return mlp_cm(widths, batch, relu, machine, mode)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cm=small_cases())
def test_exact_is_never_worse(cm):
    exact = cm.total_seconds(plan_exact(cm).strategies)
    for algorithm in ("drec", "drec+", "data_parallel"):
        other = cm.total_seconds(search(cm, algorithm).strategies)
        assert exact <= other * (1 + REL), (algorithm, exact, other)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cm=small_cases())
def test_drec_plus_is_never_worse_than_data_parallel(cm):
    drec_plus = cm.total_seconds(search(cm, "drec+").strategies)
    dp = cm.total_seconds(data_parallel_strategies(cm))
    assert drec_plus <= dp * (1 + REL)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_drec_plus_never_worse_than_a_hint(data):
    """A what-if re-plan starts from the plan it had: drec+ never returns something slower."""
    cm = mlp_cm(widths=tuple(data.draw(st.lists(st.sampled_from([8, 32, 128]), min_size=2, max_size=4))),
                batch=data.draw(st.sampled_from([4, 16, 64])), machine=models.two_level())
    rng = data.draw(st.randoms(use_true_random=False))
    hint = {}
    for n in cm.planned:  # a random valid plan
        s = ()
        for _ in cm.cuts:
            s = s + (rng.choice(cm.candidates(n, s)),)
        hint[n] = s
    plan = search(cm, "drec+", hints=[hint])
    assert cm.total_seconds(plan.strategies) <= cm.total_seconds(hint) * (1 + 1e-12)
