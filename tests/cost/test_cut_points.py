"""Cut points only between operators on the data; weight-only operators follow their consumers.

A legacy-exporter GPT-2 lists the ``Identity`` copies of its weights and the ``Transpose`` of its
tied embedding before any operator on the data. Cutting among them is crossed by no activation,
so the old cut points all landed there: one real segment, empty stages, and full recomputation
ended in ``max() arg is an empty sequence`` (issue 10 item 1, issue 16 item 6).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import models  # tests/models.py
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.api import plan_model
from planner.cost.model import CostModel
from planner.machine.tree import Device, Level, Machine
from planner.cost.schedule import assign_stages, cut_points, data_dependent_ops, price_schedule
from planner.machine.split import split_machine

F, BW, LAT = 1e14, 1e10, 1e-5


def nodes(n: int, gpus: int = 1) -> Machine:
    return Machine("nodes", Device("dev", F, 80e9), (Level("node", n, BW, LAT), Level("gpu", gpus, 2e11, 2e-6)))


def legacy_gpt(layers: int = 2, width: int = 16, vocab: int = 32, *, copies: bool = True, casts: bool = False,
               tied: bool = True, data_dead_end: int = -1, weight_dead_end: bool = False, seq: int = 4):
    """ids[batch, seq] -> Gather(wte) -> layers x (MatMul W_i, Add b_i, Relu) -> MatMul wte^T.

    Like the legacy exporter, every operator on weights alone comes first: ``Identity`` copies of
    the weights (``copies``), ``Cast`` of the biases (``casts``), the ``Transpose`` of the tied
    embedding (``tied``; else a separate head weight). ``data_dead_end``: a ``Relu`` of that
    layer's output that nothing reads; ``weight_dead_end``: an ``Identity`` of W0 nothing reads.
    """
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", seq])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", seq, vocab])
    weights = [models._weight("wte", [vocab, width])]
    head, body = [], []

    def use(w):
        if not copies:
            return w
        head.append(helper.make_node("Identity", [w], [w + "_c"], name=f"copy_{w}"))
        return w + "_c"

    wte = use("wte")
    body.append(helper.make_node("Gather", [wte, "ids"], ["h0"], name="embed"))
    cur = "h0"
    for i in range(layers):
        weights += [models._weight(f"W{i}", [width, width]), models._weight(f"b{i}", [width])]
        w, b = use(f"W{i}"), use(f"b{i}")
        if casts:
            head.append(helper.make_node("Cast", [b], [b + "_f"], name=f"cast_b{i}", to=TensorProto.FLOAT))
            b = b + "_f"
        body += [helper.make_node("MatMul", [cur, w], [f"m{i}"], name=f"mm{i}"),
                 helper.make_node("Add", [f"m{i}", b], [f"a{i}"], name=f"add{i}"),
                 helper.make_node("Relu", [f"a{i}"], [f"h{i + 1}"], name=f"relu{i}")]
        cur = f"h{i + 1}"
        if i == data_dead_end:
            body.append(helper.make_node("Relu", [cur], [f"dead{i}"], name=f"dead{i}"))
    if weight_dead_end:
        head.append(helper.make_node("Identity", ["W0"], ["W0_unused"], name="weight_dead"))
    if tied:
        head.append(helper.make_node("Transpose", [wte], ["wte_t"], name="tie", perm=[1, 0]))
        lm = "wte_t"
    else:
        weights.append(models._weight("lm", [width, vocab]))
        lm = use("lm")
    body.append(helper.make_node("MatMul", [cur, lm], ["y"], name="lm_head"))
    return models._model("legacy_gpt", head + body, [ids], [y], weights)


def stages_of(graph, stages: int, recompute: str = "none"):
    split = split_machine(nodes(stages), stages)
    cm = CostModel(graph, split.stage_machine, "train", recompute=recompute)
    return cm, split


def test_legacy_gpt_is_cut_between_every_operator_on_the_data():
    # a pure chain of data operators: every position between two of them is crossed by exactly one
    # activation, so each of the 1 + 3 * 2 + 1 = 8 data operators is a segment of its own, and
    # the weight-only copies, casts and the tied transpose ride with their first consumer
    graph = models.graph_of(legacy_gpt(2, casts=True), batch=4)
    cm, _ = stages_of(graph, 1)
    points = cut_points(cm)
    data = data_dependent_ops(graph)
    segments = points.segments()
    assert len(segments) == 8
    assert [[n for n in seg if n in data] for seg in segments] == [
        ["embed"], ["mm0"], ["add0"], ["relu0"], ["mm1"], ["add1"], ["relu1"], ["lm_head"]]
    assert segments[0] == ["copy_wte", "embed"]
    assert segments[1] == ["copy_W0", "mm0"]
    assert segments[2] == ["copy_b0", "cast_b0", "add0"]
    assert segments[-1] == ["tie", "lm_head"]


def test_the_default_plan_of_a_legacy_gpt_has_no_empty_stage():
    # 8 nodes x 1 GPU, training with the automatic configuration: before the fix this ended in
    # ValueError: max() arg is an empty sequence (memory of an empty stage under full recomputation)
    graph = models.graph_of(legacy_gpt(3), batch=8)
    for recompute in ("full", "none"):
        result = plan_model(graph, nodes(8), PlanOptions(pipeline_stages=8, recompute=recompute),
                            rebinder=rebinder_for(legacy_gpt(3)))
        sched = result.schedule
        held = [sorted(n for n, s in sched.stage_of_op.items() if s == k) for k in range(8)]
        assert all(any(n in data_dependent_ops(graph) for n in ops) for ops in held), held


def test_a_dead_end_branch_on_3_x_2_devices_plans():
    # issue 16 item 6: a valid model with a dead-end branch on 3 nodes x 2 GPUs
    graph = models.graph_of(legacy_gpt(2, data_dead_end=0, weight_dead_end=True), batch=6)
    machine = Machine("m", Device("dev", F, 80e9), (Level("node", 3, BW, LAT), Level("gpu", 2, 2e11, 2e-6)))
    for stages in (None, 3):
        for recompute in (None, "full", "none"):
            result = plan_model(graph, machine, PlanOptions(pipeline_stages=stages, recompute=recompute),
                                rebinder=rebinder_for(legacy_gpt(2, data_dead_end=0, weight_dead_end=True)))
            assert math.isfinite(result.total_seconds)
            assert set(result.schedule.stage_of_op.values()) == set(range(result.schedule.stages))


@settings(max_examples=25, deadline=None)
@given(layers=st.integers(1, 3), copies=st.booleans(), casts=st.booleans(), tied=st.booleans(),
       data_dead_end=st.integers(-1, 2), weight_dead_end=st.booleans(), interleave=st.sampled_from([1, 2]))
def test_no_stage_is_ever_empty(layers, copies, casts, tied, data_dead_end, weight_dead_end, interleave):
    graph = models.graph_of(legacy_gpt(layers, copies=copies, casts=casts, tied=tied, data_dead_end=data_dead_end,
                                       weight_dead_end=weight_dead_end), batch=4)
    data = data_dependent_ops(graph)
    cm, _ = stages_of(graph, 1)
    points = cut_points(cm)
    segments = points.segments()
    # every segment holds an operator on the data, and a cut never comes before the first one
    assert all(any(n in data for n in seg) for seg in segments)
    assert sorted(points.order) == sorted(cm.planned)
    for stages in range(2, len(segments) // interleave + 1):
        cm, split = stages_of(graph, stages, recompute="full")
        assignment = assign_stages(cm, {}, split, interleave)
        for s in range(stages):
            assert any(n in data for n, k in assignment.stage_of_op.items() if k == s), (stages, s)
        sched = price_schedule(cm, {}, split, 2 * stages, interleave, assignment=assignment)
        assert all(m.peak > 0 for m in sched.memory)


def test_cut_points_respect_the_topological_order():
    graph = models.graph_of(legacy_gpt(2, casts=True, weight_dead_end=True), batch=4)
    cm, _ = stages_of(graph, 1)
    order = cut_points(cm).order
    pos = {n: i for i, n in enumerate(order)}
    g = graph.graph
    assert all(pos[a] < pos[b] for a, b in g.edges if a in pos and b in pos)


if __name__ == "__main__":
    pytest.main([__file__])
