"""Old exporters' weight-only Identity nodes (``torch.onnx.export(dynamo=False)`` writes an
``Identity`` of a shared weight before each reader) are inputs, not work: they join their readers'
layer (planner/model/layers.py), the graph view does not draw them (explorer/views/graph.py) and
the Operators table does not open with them (explorer/views/model.py).

The model is written here in that exporter's style: two layers ``/m/layers.{0,1}`` of MatMul,
Relu, MatMul, MatMul, each first MatMul reading its weight through an ``Identity_*`` of an initializer,
and one ``Identity_shared`` read by both layers (so in neither).
"""

from __future__ import annotations

from onnx import TensorProto, helper

from models import _model, _weight, graph_of

from explorer.views.graph import GraphView, build_view
from explorer.views.layers import layers_of
from explorer.views.model import operator_table
from planner.model.layers import weight_only


def _old_export():
    nodes, inits = [], [_weight("W_shared", [8, 8])]
    nodes.append(helper.make_node("Identity", ["W_shared"], ["w_shared"], name="Identity_shared"))
    x = "x"
    for i in range(2):
        inits += [_weight(f"W{i}", [8, 8]), _weight(f"V{i}", [8, 8])]
        nodes += [helper.make_node("Identity", [f"W{i}"], [f"w{i}"], name=f"Identity_{68 + i}"),
                  helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"], name=f"/m/layers.{i}/fc1/MatMul"),
                  helper.make_node("Relu", [f"h{i}"], [f"a{i}"], name=f"/m/layers.{i}/act/Relu"),
                  helper.make_node("MatMul", [f"a{i}", "w_shared"], [f"g{i}"], name=f"/m/layers.{i}/fc2/MatMul"),
                  helper.make_node("MatMul", [f"g{i}", f"V{i}"], [f"y{i}"], name=f"/m/layers.{i}/fc3/MatMul")]
        x = f"y{i}"
    return _model("old_export", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                  [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 8])], inits)


def test_weight_only_identities_join_their_readers_layer():
    graph = graph_of(_old_export(), batch=4)
    assert [n for n in graph.operators if weight_only(graph, n)] == ["Identity_shared", "Identity_68", "Identity_69"]
    layers = layers_of(graph)
    assert layers.count == 2
    assert layers.index["Identity_68"] == 0 and layers.index["Identity_69"] == 1
    assert "Identity_shared" not in layers.index  # read by both layers
    assert not weight_only(graph, "/m/layers.0/act/Relu")


def test_the_blocks_view_draws_no_fan_of_identities():
    graph = graph_of(_old_export(), batch=4)
    view = build_view(graph, GraphView("blocks", (0, 0)))
    # one node per layer, joined by one edge; no Identity_* node and no edge from one
    assert set(view.nodes) == {"[/m/layers.0]", "[/m/layers.1]"}
    assert view.edges == {("[/m/layers.0]", "[/m/layers.1]")}
    assert view.nodes["[/m/layers.0]"]["label"] == "/m/layers.0 (4 ops)"  # fc1, act, fc2, fc3: the Identity is no op drawn
    every = build_view(graph, GraphView("all", include_static=True))
    assert {"Identity_68", "Identity_shared"} <= set(every.nodes)  # still there when asked for


def test_the_operators_table_opens_with_work():
    graph = graph_of(_old_export(), batch=4)
    table = operator_table(graph)
    assert list(table["operator"])[0] == "/m/layers.0/fc1/MatMul"
    assert not table["operator"].str.startswith("Identity").any()
    # batch 4 x 8 x 8 MatMul: 2 * 4 * 8 * 8 = 512 FLOPs, the first row
    assert table["GFLOP"].iloc[0] * 1e9 == 512
    assert len(operator_table(graph, include_static=True)) == len(table) + 3
