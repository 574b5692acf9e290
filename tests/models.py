"""Small ONNX models and machines for the cost, memory and search tests, built with onnx.helper.

Weights are float initializers holding only their dims and data type, stored as references to an
absent external file (the importer never reads weights, only shapes), so every model is tiny in
memory whatever its sizes.
"""

from __future__ import annotations

import math

import onnx
from onnx import TensorProto, helper

from planner.machine.tree import Device, Level, Machine
from planner.onnx.importer import import_model

OPSET = 17


def _weight(name: str, shape: list[int], elem_type: int = TensorProto.FLOAT) -> TensorProto:
    t = TensorProto()
    t.name = name
    t.data_type = elem_type
    t.dims.extend(int(d) for d in shape)
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "absent.weights.bin"), ("offset", "0"),
                       ("length", str(4 * math.prod(shape)))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _model(name: str, nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def matmul(m: int = 64, k: int = 128, n: int = 256, elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """One MatMul ``y[m,n] = x[m,k] @ w[k,n]``: x a graph input, w a float initializer.

    The operator is named ``mm``; its dims are m, n (parallel) and k (reduction).
    """
    x = helper.make_tensor_value_info("x", elem_type, [m, k])
    y = helper.make_tensor_value_info("y", elem_type, [m, n])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    return _model("matmul", [node], [x], [y], [_weight("w", [k, n], elem_type)])


def two_matmuls(m: int = 64, k: int = 128, n: int = 256, n2: int = 32) -> onnx.ModelProto:
    """``h[m,n] = x[m,k] @ w1[k,n]`` (``mm1``) then ``y[m,n2] = h @ w2[n,n2]`` (``mm2``).

    The edge mm1 -> mm2 carries h: m*n floats, and h needs a gradient (it depends on w1).
    In mm2, h is indexed by (m, k) with mm2's k the same axis as mm1's n.
    """
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n2])
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm2")]
    return _model("two_matmuls", nodes, [x], [y], [_weight("w1", [k, n]), _weight("w2", [n, n2])])


def gemm_mlp(widths: list[int], batch: int | str = 32, relu: bool = False, bias: bool = True) -> onnx.ModelProto:
    """Gemm layers ``fc{i}``: x[batch, widths[i]] @ W{i}[widths[i], widths[i+1]] (+ b{i}[widths[i+1]]).

    Plain Gemm (no transposition): dims m = batch, k = widths[i], n = widths[i+1].
    With ``relu`` a Relu ``relu{i}`` sits between consecutive layers.
    """
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, widths[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, widths[-1]])
    nodes, inits = [], []
    cur = "x"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        inits.append(_weight(f"W{i}", [a, b]))
        ins = [cur, f"W{i}"]
        if bias:
            inits.append(_weight(f"b{i}", [b]))
            ins.append(f"b{i}")
        last = i == len(widths) - 2
        out = "y" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", ins, [out], name=f"fc{i}"))
        cur = out
        if relu and not last:
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"], name=f"relu{i}"))
            cur = f"r{i}"
    return _model("gemm_mlp", nodes, [x], [y], inits)


def graph_of(model: onnx.ModelProto, **bindings):
    return import_model(model, bindings or None)


# ---- machines ----------------------------------------------------------------------------------

F = 1e14  # FLOP/s
B0, L0 = 1e10, 1e-5  # node level: bytes/s, seconds
B1, L1 = 2e11, 2e-6  # gpu level
MEMORY = 80e9


def two_level(node_arity: int = 2, gpu_arity: int = 2, b0: float = B0, l0: float = L0,
              b1: float = B1, l1: float = L1, flops: float = F, memory: float = MEMORY) -> Machine:
    """node x gpu: level 0 'node' (outer), level 1 'gpu' (inner); cuts node x2 then gpu x2."""
    return Machine("two_level", Device("dev", flops, memory),
                   (Level("node", node_arity, b0, l0), Level("gpu", gpu_arity, b1, l1)))


def one_level(p: int, bandwidth: float = B1, latency: float = L1, flops: float = F,
              memory: float = MEMORY) -> Machine:
    return Machine(f"flat{p}", Device("dev", flops, memory), (Level("gpu", p, bandwidth, latency),))


def run_cli(argv, capsys):
    """``python -m planner`` in-process: (exit code, stdout, stderr); argparse errors exit via SystemExit."""
    from planner.cli.main import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# ---- the sample models, as the search-equality tests bind them ----------------------------------

SAMPLE_BINDINGS = {"batch": 256, "seq": 128}


def sample_graph(name: str):
    """A sample model of ``sample_models/`` imported at batch 256 and sequence 128 (GPT-3 175B at
    1536 x 2048), or at batch 256 alone when it has no sequence; with its path."""
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "sample_models" / f"{name}.onnx"
    binds = {"batch": 1536, "seq": 2048} if name == "gpt3_175b" else SAMPLE_BINDINGS
    try:
        return import_model(model, binds), model
    except ValueError:  # no sequence dimension (MLP, CNNs, the MoE layer's hidden states)
        return import_model(model, {"batch": binds["batch"]}), model


def sixteen_nodes():
    """16 nodes x 8 GPUs: seven prime cuts over two levels."""
    from planner.machine.tree import load_preset

    return load_preset("dgx_a100_64nodes").with_level(0, arity=16)
