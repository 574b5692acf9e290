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
