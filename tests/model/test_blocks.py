"""The folded graph of planner.model.blocks: which layers are copies of one another (the structural
hash) and how a folded plan unfolds.

The hash must tell apart two layers that differ by one shape, one attribute the cost model sees
or one wire, whatever the layer and operator: random single mutations of a small generated stack
(hypothesis) are never folded into their neighbours. The unmutated stack is, so the check can fail.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.model.blocks import KEEP_HEAD, KEEP_TAIL, _layer_members, fold_layers, layer_hashes
from planner.model.graph import OpKind
from planner.onnx.importer import import_model
from sample_models.synthetic import gpt_decoder, mlp

LAYERS = 16


@pytest.fixture(scope="module")
def stack():
    return import_model(gpt_decoder(LAYERS, hidden=256, heads=4, ffn=1024, vocab=1000, max_pos=128),
                        {"batch": 8, "seq": 64})


def test_the_unmutated_stack_folds(stack):
    members = _layer_members(stack)
    hashes = layer_hashes(stack, members)
    assert len(members) == LAYERS
    assert len(set(hashes[1:])) == 1 and hashes[0] != hashes[1]  # layer 0 reads the embeddings
    folded = fold_layers(stack)
    left_out = {n.split(".")[0] for n in folded.source}
    rep = f"layer{KEEP_HEAD}"  # the run is layers 1-15: the 6th of them is the representative
    assert left_out == {f"layer{i}" for i in range(KEEP_HEAD + 1, LAYERS - KEEP_TAIL)}
    assert {r.split(".")[0] for r in folded.source.values()} == {rep}
    assert set(folded.multiplicity.values()) == {LAYERS - KEEP_TAIL - KEEP_HEAD}
    assert not set(folded.source) & set(folded.graph.operators)
    # the first copy kept after the left-out ones reads the representative's output
    first_tail = f"layer{LAYERS - KEEP_TAIL}.ln_1"
    assert folded.graph.operators[first_tail].inputs[0].tensor == f"{rep}.mlp.residual"
    planned = stack.planned_operators()
    assert set(folded.graph.planned_operators()) | {n for n in folded.source if n in planned} == set(planned)


def test_a_plan_unfolds_with_the_representative_strategy(stack):
    folded = fold_layers(stack)
    plan = {n: (n,) for n in folded.graph.planned_operators()}  # a distinct strategy per operator
    full = folded.unfold(plan, stack.planned_operators())
    assert list(full) == stack.planned_operators()
    assert full["layer9.attn.qkv"] == (f"layer{KEEP_HEAD}.attn.qkv",)
    assert full["layer2.attn.qkv"] == ("layer2.attn.qkv",)
    assert folded.fold(full) == plan


def _mutate(graph, kind: str, layer: int, position: int) -> bool:
    """Change one shape, attribute or wire of one operator of ``layer``; False if it has none."""
    members = _layer_members(graph)
    ops = [n for n in members[layer] if graph.operators[n].kind is not OpKind.STATIC]
    op = graph.operators[ops[position % len(ops)]]
    if kind == "shape":
        t = graph.tensors[op.outputs[0].tensor]
        graph.tensors[t.name] = replace(t, shape=(*t.shape[:-1], t.shape[-1] * 2))
    elif kind == "attribute":
        free = [d for d in op.dims if d not in op.fixed_dims]
        if not free:
            return False
        op.fixed_dims = op.fixed_dims | {free[0]}
    else:  # wire: read the same operator's output two layers back instead of the previous layer's
        where = {n: p for p, n in enumerate(members[layer - 1])}
        for i, use in enumerate(op.inputs):
            producer = graph.tensors[use.tensor].producer
            if producer in where:
                back = graph.operators[members[layer - 2][where[producer]]]
                out = [u.tensor for u in graph.operators[producer].outputs].index(use.tensor)
                op.inputs[i] = replace(use, tensor=back.outputs[out].tensor)
                graph.build_edges()
                return True
        return False
    op.__dict__.pop("_signature", None)
    return True


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["shape", "attribute", "wire"]), layer=st.integers(3, LAYERS - 2),
       position=st.integers(0, 40))
def test_one_difference_is_never_folded_away(stack, kind, layer, position):
    graph = copy.deepcopy(stack)
    if not _mutate(graph, kind, layer, position):
        return
    hashes = layer_hashes(graph, _layer_members(graph))
    assert hashes[layer] != hashes[layer - 1] or hashes[layer] != hashes[layer + 1]
    folded = fold_layers(graph)
    if folded is None:
        return
    layer_of = lambda n: int(n.split(".")[0].removeprefix("layer"))  # noqa: E731
    for copy_name, rep in folded.source.items():  # every copy left out has its representative's hash
        assert hashes[layer_of(copy_name)] == hashes[layer_of(rep)]
        assert layer_of(copy_name) != layer


def test_no_repeated_layers_no_folding():
    assert fold_layers(import_model(mlp([64, 128, 128, 64]), {"batch": 8})) is None


def test_a_skip_across_layers_is_not_folded(stack):
    """A layer read two layers later (a wire mutation) splits the run where it is."""
    graph = copy.deepcopy(stack)
    assert _mutate(graph, "wire", 8, 0)
    folded = fold_layers(graph)
    assert folded is None or all(not n.startswith(("layer6.", "layer7.", "layer8.")) for n in folded.source)
