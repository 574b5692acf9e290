"""What an operator graph computes once (its topological order, the operators on the data, each
operator's structural signature) stays right when the graph is re-wired, copied or pickled."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace

import models  # tests/models.py
from planner.model.graph import TensorRole
from planner.onnx.importer import import_model


def chain():
    return import_model(models.gemm_mlp([16, 16, 16, 16], batch="batch", bias=False), {"batch": 4})


def test_the_order_is_computed_once_and_again_after_a_rewiring():
    graph = chain()
    first = graph.topological_order()
    assert graph.topological_order() == first
    graph.topological_order().reverse()  # a caller's list: the graph's own order is not touched
    assert graph.topological_order() == first
    last = first[-1]
    graph.graph.remove_node(last)  # an in-place edit changes the graph's size: computed again
    assert graph.topological_order() == first[:-1]
    graph.build_edges()  # a new wiring: computed again
    assert graph.topological_order() == first


def test_the_operators_on_the_data_by_hand():
    graph = chain()
    gemms = [n for n, op in graph.operators.items() if op.op_type in ("Gemm", "MatMul")]
    assert len(gemms) == 3 and set(gemms) <= graph.data_dependent_operators()
    graph.inputs = []  # no data input: no operator depends on the data
    assert graph.data_dependent_operators() == frozenset()


def test_a_copy_and_a_pickle_keep_a_right_order():
    graph = chain()
    order = graph.topological_order()
    assert copy.copy(graph).topological_order() == order
    again = pickle.loads(pickle.dumps(graph))
    assert again.topological_order() == order


def test_a_signature_follows_its_tensor_table():
    """Identical layers have one signature; a padded copy of the tensors (another table) with one
    shape changed gives another, and a pickled operator does not carry the table."""
    graph = chain()
    ops = [op for op in graph.operators.values() if op.op_type in ("Gemm", "MatMul")]
    assert ops[1].signature(graph.tensors) == ops[2].signature(graph.tensors)  # 16 x 16 both
    tensors = dict(graph.tensors)
    weight = next(u.tensor for u in ops[1].inputs if graph.tensors[u.tensor].role is TensorRole.PARAMETER)
    tensors[weight] = replace(tensors[weight], itemsize=2)
    assert ops[1].signature(tensors) != ops[2].signature(tensors)
    assert ops[1].signature(graph.tensors) == ops[2].signature(graph.tensors)
    assert "_signature" not in pickle.loads(pickle.dumps(ops[1])).__dict__


def test_cost_models_of_one_graph_share_its_tables_and_a_padded_copy_gets_its_own():
    from planner.cost.result import cost_model_for
    from planner.machine.tree import load_preset
    from planner.options import PlanOptions
    from planner.search.vocab import pad_vocabulary

    graph = import_model("sample_models/gpt2_small.onnx", {"batch": 8, "seq": 16})
    one, two = load_preset("dgx_a100"), load_preset("dgx_a100_64nodes")
    a, b = cost_model_for(graph, one, PlanOptions()), cost_model_for(graph, two, PlanOptions())
    assert a.info is b.info and a.edges is b.edges
    assert cost_model_for(graph, one, PlanOptions(precision="bf16")).info is not a.info  # other bytes
    padded, vocab, to = pad_vocabulary(graph, 8)
    assert (vocab, to) == (50257, 51200)  # 50 x 1024: the next multiple of 128 x 8 (by hand)
    c = cost_model_for(padded, one, PlanOptions())
    head = next(n for n in c.planned if any(v == 51200 for v in padded.operators[n].dims.values()))
    assert c.info[head].op.dims != cost_model_for(graph, one, PlanOptions()).info[head].op.dims
    assert "_memo" not in vars(pickle.loads(pickle.dumps(graph)))
