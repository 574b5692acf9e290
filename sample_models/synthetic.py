"""Small and scaled synthetic models for tests and benchmarks (built in memory, never written).

``gpt_decoder(layers)`` is the GPT-3 175B block stack with any number of layers (the scaling
benchmark); ``mlp``, ``cnn_chain`` and ``transformer`` make the small graphs on which D-Rec is
compared with the exact optimum; ``random_case(seed)`` draws one of them with random sizes.
"""

from __future__ import annotations

import random

import onnx
from onnx import TensorProto

from .build import GraphBuilder, _bert, _conv, _gpt


def gpt_decoder(layers: int, hidden: int = 12288, heads: int = 96, ffn: int = 49152,
                vocab: int = 50257, max_pos: int = 2048, dropout: float = 0.0) -> onnx.ModelProto:
    """A GPT-style decoder (fused QKV, pre-LN, tied LM head), GPT-3 175B shaped by default;
    ``dropout`` > 0 adds training-mode Dropout where Megatron-LM has it."""
    return _gpt(f"gpt_{layers}l", layers, hidden, heads, ffn, vocab, max_pos, f"GPT-style decoder, {layers} layers",
                dropout)


def transformer(layers: int = 1, hidden: int = 256, heads: int = 4, ffn: int = 1024, vocab: int = 1000) -> onnx.ModelProto:
    """A small BERT-style encoder (separate Q, K, V projections)."""
    return _bert(f"bert_{layers}l_{hidden}", layers, hidden, heads, ffn, vocab=vocab, max_pos=128)


def mlp(widths: list[int]) -> onnx.ModelProto:
    """Gemm + ReLU layers of the given widths, input [batch, widths[0]]."""
    g = GraphBuilder("mlp_" + "x".join(map(str, widths)))
    x = g.input("input", TensorProto.FLOAT, ["batch", widths[0]])
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        x = g.gemm(x, f"fc{i}", f"fc{i}", a, b)
        if i < len(widths) - 2:
            x = g.node("Relu", [x], f"relu{i}")
    g.output(x, TensorProto.FLOAT, ["batch", widths[-1]])
    return g.model("synthetic MLP")


def cnn_chain(channels: list[int], size: int = 32, classes: int = 10) -> onnx.ModelProto:
    """3x3 convolutions with ReLU and 2x2 max-pooling, then global pooling and a classifier."""
    g = GraphBuilder("cnn_" + "x".join(map(str, channels)))
    x = g.input("input", TensorProto.FLOAT, ["batch", channels[0], size, size])
    for i, (a, b) in enumerate(zip(channels, channels[1:])):
        x = _conv(g, x, f"conv{i}", f"conv{i}", a, b, 3, 1, 1, True)
        x = g.node("Relu", [x], f"relu{i}")
        x = g.node("MaxPool", [x], f"pool{i}", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("GlobalAveragePool", [x], "gap")
    x = g.node("Flatten", [x], "flatten", axis=1)
    x = g.gemm(x, "fc", "fc", channels[-1], classes)
    g.output(x, TensorProto.FLOAT, ["batch", classes])
    return g.model("synthetic CNN chain")


def random_case(seed: int) -> tuple[str, onnx.ModelProto, dict[str, int], dict]:
    """One random small case: (label, model, bindings, machine dict) with 1 or 2 levels and
    fast or slow links; small enough for the exact search."""
    rng = random.Random(seed)
    kind = rng.choice(["mlp", "cnn", "transformer"])
    if kind == "mlp":
        widths = [rng.choice([64, 256, 1024, 4096]) for _ in range(rng.randint(3, 5))]
        model, binds = mlp(widths), {"batch": rng.choice([8, 32, 256])}
        label = "mlp " + "-".join(map(str, widths))
    elif kind == "cnn":
        channels = [3] + [rng.choice([16, 64, 256]) for _ in range(rng.randint(2, 3))]
        model, binds = cnn_chain(channels, size=rng.choice([16, 32])), {"batch": rng.choice([8, 32])}
        label = "cnn " + "-".join(map(str, channels))
    else:
        hidden = rng.choice([128, 512])
        model = transformer(1, hidden, 4, 4 * hidden, vocab=rng.choice([1000, 8000]))
        binds = {"batch": rng.choice([4, 16]), "seq": rng.choice([32, 128])}
        label = f"transformer h{hidden}"
    two_levels = rng.random() < 0.5
    slow = rng.choice([1e9, 1e10, 1e11])
    levels = [{"name": "node", "arity": 2, "bandwidth_Bps": slow, "latency_s": 1e-5}] if two_levels else []
    levels.append({"name": "gpu", "arity": rng.choice([2, 4]) if two_levels else rng.choice([2, 4, 8]),
                   "bandwidth_Bps": rng.choice([1e10, 1e11, 3e11]), "latency_s": 2e-6})
    machine = {"name": "random", "device": {"name": "dev", "peak_flops": rng.choice([1e13, 1e14]), "memory_bytes": 8e10},
               "levels": levels}
    return f"{label} on {'x'.join(str(lv['arity']) for lv in levels)} (seed {seed})", model, binds, machine
