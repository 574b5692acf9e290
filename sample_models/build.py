"""Build the sample ONNX models, deterministically, with ``onnx.helper``.

Run ``python sample_models/build.py`` to (re)write every ``*.onnx`` file next to this script,
``python sample_models/build.py --check`` to rebuild them in memory and exit non-zero if a
committed file differs (or is missing).  As a module: ``build_all(out_dir)`` writes them all and
returns ``{name: path}``; ``model_bytes(name)`` returns one model's serialized bytes;
``build_model(name)`` returns the ``onnx.ModelProto``.

The architectures are written out layer by layer the way ``torch.onnx.export`` would emit them in
plain opset-17 ops (MatMul + Add for ``nn.Linear`` on 3-D activations, Gemm with ``transB=1`` on
2-D ones, Conv / BatchNormalization / Relu / MaxPool, LayerNormalization, Softmax, Gather for
embeddings, exact GELU as ``Div/Erf/Add/Mul/Mul`` and GPT-2's ``gelu_new`` as its tanh formula).

Weights are *not* in the files.  Every float initializer is a ``TensorProto`` holding only its
name, dims and data type, with ``data_location = EXTERNAL`` and ``external_data`` entries
``location = <model>.weights.bin`` (a file that is never created or shipped), ``offset`` and
``length`` (running offsets, no padding, 4 bytes per element).  That keeps GPT-3 175B a small
file.  Shape constants (reshape targets, split sizes, axes, TopK's k) are ordinary int64
initializers with their data inline; float scalars (1/sqrt(d) scales, the mask fill value, GELU
coefficients) are ``Constant`` nodes, so the float initializers are exactly the model's
parameters (plus BatchNorm running statistics in the CNNs) and each one is counted once.

Consequences for consumers:

* load with ``onnx.load(path, load_external_data=False)``;
* ``onnx.checker.check_model`` rejects these models as they are, because it insists that the
  external file exists; ``planner.onnx.strip_weights.check_model_skeleton`` checks a copy in which
  the external initializers are turned into graph inputs instead;
* ``onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)`` works and gives
  every value a complete shape, symbolic in ``batch`` (and ``seq`` for the transformers), or
  numeric once those are bound to numbers on the graph inputs.

Inputs: ``input`` [batch, ...] float for the MLP and the CNNs; ``input_ids``, ``token_type_ids``,
``attention_mask``, ``position_ids`` [batch, seq] int64 for BERT; ``input_ids``, ``position_ids``
[batch, seq] int64 for the GPTs (positions come in as an input because ``Range`` / a ``Slice``
with a run-time end leave the sequence length unknown to ONNX shape inference); ``hidden_states``
[batch, seq, 512] float for the MoE layer.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER_NAME = "planner-samples"
PRODUCER_VERSION = "1"
HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# A tiny graph builder
# ---------------------------------------------------------------------------------------------


class GraphBuilder:
    """Collects nodes and initializers; float weights become external-data references."""

    def __init__(self, model_name: str):
        self.model_name = model_name
        self.location = f"{model_name}.weights.bin"
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.offset = 0
        self._values: set[str] = set()  # every tensor name defined so far
        self._node_names: set[str] = set()
        self._consts: dict[tuple, str] = {}

    # -- names ------------------------------------------------------------------------------
    def _define(self, name: str) -> str:
        if name in self._values:
            raise ValueError(f"tensor name defined twice: {name}")
        self._values.add(name)
        return name

    # -- graph inputs / outputs -------------------------------------------------------------
    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(self._define(name), elem_type, shape))
        return name

    def output(self, name: str, elem_type: int, shape: list) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    # -- initializers -----------------------------------------------------------------------
    def weight(self, name: str, shape: list[int]) -> str:
        """A float32 parameter stored (notionally) in the absent external weights file."""
        t = TensorProto()
        t.name = self._define(name)
        t.data_type = TensorProto.FLOAT
        t.dims.extend(int(d) for d in shape)
        t.data_location = TensorProto.EXTERNAL
        length = 4 * math.prod(shape)
        for key, value in (("location", self.location), ("offset", str(self.offset)), ("length", str(length))):
            entry = t.external_data.add()
            entry.key = key
            entry.value = value
        self.offset += length
        self.initializers.append(t)
        return name

    def ints(self, name: str, values, scalar: bool = False) -> str:
        """An int64 shape constant with its data inline (shared when the same one is asked again)."""
        arr = np.array(values, dtype=np.int64)
        if not scalar:
            arr = arr.reshape(-1)
        key = ("i64", name, arr.shape, tuple(arr.reshape(-1).tolist()))
        if key in self._consts:
            return self._consts[key]
        self.initializers.append(numpy_helper.from_array(arr, self._define(name)))
        self._consts[key] = name
        return name

    def scalar(self, name: str, value: float) -> str:
        """A float32 scalar as a Constant node (not an initializer, so not a parameter)."""
        key = ("f32", name, float(value))
        if key in self._consts:
            return self._consts[key]
        tensor = numpy_helper.from_array(np.array(value, dtype=np.float32), name)
        self.node("Constant", [], name, value=tensor)
        self._consts[key] = name
        return name

    # -- nodes ------------------------------------------------------------------------------
    def node(self, op: str, inputs: list[str], name: str, outputs: list[str] | None = None, **attrs) -> str | list[str]:
        if name in self._node_names:
            raise ValueError(f"node name used twice: {name}")
        self._node_names.add(name)
        for i in inputs:
            if i and i not in self._values:
                raise ValueError(f"node {name} reads undefined tensor {i}")
        outs = [name] if outputs is None else outputs
        for o in outs:
            self._define(o)
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if outputs is None else outs

    # -- finishing --------------------------------------------------------------------------
    def model(self, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.model_name, self.inputs, self.outputs, self.initializers)
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name=PRODUCER_NAME,
            producer_version=PRODUCER_VERSION,
            doc_string=doc,
        )

    # -- common layers ----------------------------------------------------------------------
    def linear(self, x: str, name: str, w_name: str, b_name: str, n_in: int, n_out: int) -> str:
        """nn.Linear on a 3-D activation as exported: MatMul by the [in, out] weight, Add bias."""
        w = self.weight(w_name, [n_in, n_out])
        b = self.weight(b_name, [n_out])
        y = self.node("MatMul", [x, w], name)
        return self.node("Add", [y, b], f"{name}.bias")

    def gemm(self, x: str, name: str, prefix: str, n_in: int, n_out: int) -> str:
        """nn.Linear on a 2-D activation as exported: Gemm(x, W[out, in], b, transB=1)."""
        w = self.weight(f"{prefix}.weight", [n_out, n_in])
        b = self.weight(f"{prefix}.bias", [n_out])
        return self.node("Gemm", [x, w, b], name, alpha=1.0, beta=1.0, transB=1)

    def layer_norm(self, x: str, name: str, prefix: str, dim: int, eps: float) -> str:
        scale = self.weight(f"{prefix}.weight", [dim])
        bias = self.weight(f"{prefix}.bias", [dim])
        return self.node("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=eps)

    def gelu_erf(self, x: str, name: str) -> str:
        """Exact GELU as torch exports it at opset 17: x * 0.5 * (1 + erf(x / sqrt(2)))."""
        t = self.node("Div", [x, self.scalar("const.sqrt2", math.sqrt(2.0))], f"{name}.div")
        t = self.node("Erf", [t], f"{name}.erf")
        t = self.node("Add", [t, self.scalar("const.one", 1.0)], f"{name}.add")
        t = self.node("Mul", [x, t], f"{name}.mul")
        return self.node("Mul", [t, self.scalar("const.half", 0.5)], f"{name}.mul_half")

    def gelu_tanh(self, x: str, name: str) -> str:
        """GPT-2's gelu_new: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))."""
        t = self.node("Pow", [x, self.scalar("const.three", 3.0)], f"{name}.pow")
        t = self.node("Mul", [t, self.scalar("const.gelu_coeff", 0.044715)], f"{name}.mul_coeff")
        t = self.node("Add", [x, t], f"{name}.add_x")
        t = self.node("Mul", [t, self.scalar("const.sqrt_2_over_pi", math.sqrt(2.0 / math.pi))], f"{name}.mul_sqrt")
        t = self.node("Tanh", [t], f"{name}.tanh")
        t = self.node("Add", [t, self.scalar("const.one", 1.0)], f"{name}.add_one")
        t = self.node("Mul", [x, t], f"{name}.mul_x")
        return self.node("Mul", [t, self.scalar("const.half", 0.5)], f"{name}.mul_half")

    def dropout(self, x: str, name: str, ratio: float) -> str:
        """Training-mode Dropout (as a training graph has it; exports for inference drop it)."""
        train = self._consts.get(("bool", "const.training_mode"))
        if train is None:
            train = self._consts[("bool", "const.training_mode")] = "const.training_mode"
            self.node("Constant", [], train, value=numpy_helper.from_array(np.array(True), train))
        return self.node("Dropout", [x, self.scalar(f"const.dropout_{ratio}", ratio), train], name)

    def heads_split(self, x: str, name: str, heads: int, head_dim: int, perm: list[int]) -> str:
        """[b, s, h] -> Reshape [b, s, heads, head_dim] -> Transpose(perm)."""
        shape = self.ints(f"shape.{heads}x{head_dim}", [0, 0, heads, head_dim])
        t = self.node("Reshape", [x, shape], f"{name}.reshape")
        return self.node("Transpose", [t], f"{name}.transpose", perm=perm)

    def attention_core(
        self, q: str, k: str, v: str, name: str, heads: int, head_dim: int, hidden: int, mask: Callable[[str], str],
        dropout: float = 0.0,
    ) -> str:
        """Scores, scale, mask, softmax, (dropout,) context, merge heads.  q/k/v are [b, s, hidden]."""
        qh = self.heads_split(q, f"{name}.q", heads, head_dim, [0, 2, 1, 3])
        kh = self.heads_split(k, f"{name}.k", heads, head_dim, [0, 2, 1, 3])
        vh = self.heads_split(v, f"{name}.v", heads, head_dim, [0, 2, 1, 3])
        kt = self.node("Transpose", [kh], f"{name}.k.transpose_last", perm=[0, 1, 3, 2])
        s = self.node("MatMul", [qh, kt], f"{name}.scores")
        s = self.node("Div", [s, self.scalar(f"const.sqrt_head_dim_{head_dim}", math.sqrt(head_dim))], f"{name}.scale")
        s = mask(s)
        p = self.node("Softmax", [s], f"{name}.softmax", axis=-1)
        if dropout:
            p = self.dropout(p, f"{name}.dropout", dropout)
        c = self.node("MatMul", [p, vh], f"{name}.context")
        c = self.node("Transpose", [c], f"{name}.merge.transpose", perm=[0, 2, 1, 3])
        return self.node("Reshape", [c, self.ints(f"shape.merge_{hidden}", [0, 0, hidden])], f"{name}.merge.reshape")


# ---------------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------------


def build_mlp() -> onnx.ModelProto:
    g = GraphBuilder("mlp")
    x = g.input("input", TensorProto.FLOAT, ["batch", 1024])
    x = g.gemm(x, "fc1", "fc1", 1024, 4096)
    x = g.node("Relu", [x], "relu1")
    x = g.gemm(x, "fc2", "fc2", 4096, 4096)
    x = g.node("Relu", [x], "relu2")
    x = g.gemm(x, "fc3", "fc3", 4096, 1024)
    g.node("Identity", [x], "output")
    g.output("output", TensorProto.FLOAT, ["batch", 1024])
    return g.model("3-layer MLP 1024-4096-4096-1024 with ReLU (nn.Linear exported as Gemm).")


def _conv(g: GraphBuilder, x: str, name: str, prefix: str, cin: int, cout: int, k: int, stride: int, pad: int, bias: bool) -> str:
    w = g.weight(f"{prefix}.weight", [cout, cin, k, k])
    ins = [x, w]
    if bias:
        ins.append(g.weight(f"{prefix}.bias", [cout]))
    return g.node(
        "Conv", ins, name, dilations=[1, 1], group=1, kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride]
    )


def _bn(g: GraphBuilder, x: str, name: str, prefix: str, c: int) -> str:
    ins = [x] + [g.weight(f"{prefix}.{p}", [c]) for p in ("weight", "bias", "running_mean", "running_var")]
    return g.node("BatchNormalization", ins, name, epsilon=1e-5, momentum=0.9)


def build_vgg16() -> onnx.ModelProto:
    """torchvision vgg16 (configuration D, no batch norm): 138,357,544 parameters."""
    g = GraphBuilder("vgg16")
    x = g.input("input", TensorProto.FLOAT, ["batch", 3, 224, 224])
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    idx, cin = 0, 3
    for v in cfg:
        if v == "M":
            x = g.node("MaxPool", [x], f"features.{idx}", ceil_mode=0, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])
            idx += 1
        else:
            x = _conv(g, x, f"features.{idx}", f"features.{idx}", cin, v, 3, 1, 1, bias=True)
            x = g.node("Relu", [x], f"features.{idx + 1}")
            idx += 2
            cin = v
    # AdaptiveAvgPool2d((7, 7)) on a 7x7 map: torch exports it as a 1x1 AveragePool.
    x = g.node("AveragePool", [x], "avgpool", ceil_mode=0, kernel_shape=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1])
    x = g.node("Flatten", [x], "flatten", axis=1)
    x = g.gemm(x, "classifier.0", "classifier.0", 512 * 7 * 7, 4096)
    x = g.node("Relu", [x], "classifier.1")  # classifier.2 is Dropout: absent in an eval export
    x = g.gemm(x, "classifier.3", "classifier.3", 4096, 4096)
    x = g.node("Relu", [x], "classifier.4")  # classifier.5 Dropout
    x = g.gemm(x, "classifier.6", "classifier.6", 4096, 1000)
    g.node("Identity", [x], "logits")
    g.output("logits", TensorProto.FLOAT, ["batch", 1000])
    return g.model("VGG-16 (torchvision vgg16, configuration D), 224x224x3 input, 1000 classes.")


def build_resnet50() -> onnx.ModelProto:
    """torchvision resnet50 (v1.5: stride on the 3x3 conv), BatchNorm kept as its own op."""
    g = GraphBuilder("resnet50")
    x = g.input("input", TensorProto.FLOAT, ["batch", 3, 224, 224])
    x = _conv(g, x, "conv1", "conv1", 3, 64, 7, 2, 3, bias=False)
    x = _bn(g, x, "bn1", "bn1", 64)
    x = g.node("Relu", [x], "relu")
    x = g.node("MaxPool", [x], "maxpool", ceil_mode=0, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    cin = 64
    for stage, (blocks, width, stride) in enumerate([(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)], start=1):
        cout = width * 4
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            s = stride if b == 0 else 1
            identity = x
            y = _conv(g, x, f"{p}.conv1", f"{p}.conv1", cin, width, 1, 1, 0, bias=False)
            y = _bn(g, y, f"{p}.bn1", f"{p}.bn1", width)
            y = g.node("Relu", [y], f"{p}.relu1")
            y = _conv(g, y, f"{p}.conv2", f"{p}.conv2", width, width, 3, s, 1, bias=False)
            y = _bn(g, y, f"{p}.bn2", f"{p}.bn2", width)
            y = g.node("Relu", [y], f"{p}.relu2")
            y = _conv(g, y, f"{p}.conv3", f"{p}.conv3", width, cout, 1, 1, 0, bias=False)
            y = _bn(g, y, f"{p}.bn3", f"{p}.bn3", cout)
            if b == 0:
                identity = _conv(g, x, f"{p}.downsample.0", f"{p}.downsample.0", cin, cout, 1, s, 0, bias=False)
                identity = _bn(g, identity, f"{p}.downsample.1", f"{p}.downsample.1", cout)
            y = g.node("Add", [y, identity], f"{p}.add")
            x = g.node("Relu", [y], f"{p}.relu3")
            cin = cout
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    x = g.gemm(x, "fc", "fc", 2048, 1000)
    g.node("Identity", [x], "logits")
    g.output("logits", TensorProto.FLOAT, ["batch", 1000])
    return g.model("ResNet-50 (torchvision resnet50, v1.5 bottlenecks with BatchNorm), 224x224x3 input, 1000 classes.")


def _bert(name: str, layers: int, hidden: int, heads: int, ffn: int, vocab: int = 30522, max_pos: int = 512) -> onnx.ModelProto:
    """HuggingFace BertModel (post-LN encoder + pooler).  Weights named as in BertModel's
    state_dict; Linear weights are stored [in, out] (transposed), as the exporter does for MatMul."""
    g = GraphBuilder(name)
    head_dim = hidden // heads
    ids = g.input("input_ids", TensorProto.INT64, ["batch", "seq"])
    tt = g.input("token_type_ids", TensorProto.INT64, ["batch", "seq"])
    am = g.input("attention_mask", TensorProto.INT64, ["batch", "seq"])
    pos = g.input("position_ids", TensorProto.INT64, ["batch", "seq"])

    we = g.weight("embeddings.word_embeddings.weight", [vocab, hidden])
    pe = g.weight("embeddings.position_embeddings.weight", [max_pos, hidden])
    te = g.weight("embeddings.token_type_embeddings.weight", [2, hidden])
    x = g.node("Gather", [we, ids], "embeddings.word", axis=0)
    t = g.node("Gather", [te, tt], "embeddings.token_type", axis=0)
    x = g.node("Add", [x, t], "embeddings.add_token_type")
    p = g.node("Gather", [pe, pos], "embeddings.position", axis=0)
    x = g.node("Add", [x, p], "embeddings.add_position")
    x = g.layer_norm(x, "embeddings.ln", "embeddings.LayerNorm", hidden, 1e-12)

    # Extended attention mask: (1 - mask[:, None, None, :]) * finfo(float32).min, added to scores.
    m = g.node("Unsqueeze", [am, g.ints("axes.1_2", [1, 2])], "mask.unsqueeze")
    m = g.node("Cast", [m], "mask.cast", to=TensorProto.FLOAT)
    m = g.node("Sub", [g.scalar("const.one", 1.0), m], "mask.invert")
    ext_mask = g.node("Mul", [m, g.scalar("const.f32_min", float(np.finfo(np.float32).min))], "mask.scale")

    for i in range(layers):
        p = f"encoder.layer.{i}"
        n = f"layer{i}"
        q = g.linear(x, f"{n}.attn.q", f"{p}.attention.self.query.weight", f"{p}.attention.self.query.bias", hidden, hidden)
        k = g.linear(x, f"{n}.attn.k", f"{p}.attention.self.key.weight", f"{p}.attention.self.key.bias", hidden, hidden)
        v = g.linear(x, f"{n}.attn.v", f"{p}.attention.self.value.weight", f"{p}.attention.self.value.bias", hidden, hidden)
        ctx = g.attention_core(
            q, k, v, f"{n}.attn", heads, head_dim, hidden,
            mask=lambda s, n=n: g.node("Add", [s, ext_mask], f"{n}.attn.mask"),
        )
        a = g.linear(ctx, f"{n}.attn.out", f"{p}.attention.output.dense.weight", f"{p}.attention.output.dense.bias", hidden, hidden)
        a = g.node("Add", [a, x], f"{n}.attn.residual")
        x = g.layer_norm(a, f"{n}.attn.ln", f"{p}.attention.output.LayerNorm", hidden, 1e-12)
        f = g.linear(x, f"{n}.mlp.fc1", f"{p}.intermediate.dense.weight", f"{p}.intermediate.dense.bias", hidden, ffn)
        f = g.gelu_erf(f, f"{n}.mlp.gelu")
        f = g.linear(f, f"{n}.mlp.fc2", f"{p}.output.dense.weight", f"{p}.output.dense.bias", ffn, hidden)
        f = g.node("Add", [f, x], f"{n}.mlp.residual")
        x = g.layer_norm(f, f"{n}.mlp.ln", f"{p}.output.LayerNorm", hidden, 1e-12)

    g.node("Identity", [x], "last_hidden_state")
    first = g.node("Gather", [x, g.ints("index.0", 0, scalar=True)], "pooler.first_token", axis=1)
    pooled = g.gemm(first, "pooler.dense", "pooler.dense", hidden, hidden)
    g.node("Tanh", [pooled], "pooler_output")
    g.output("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])
    g.output("pooler_output", TensorProto.FLOAT, ["batch", hidden])
    return g.model(
        f"BERT encoder ({layers} layers, hidden {hidden}, {heads} heads, FFN {ffn}, vocab {vocab}, "
        f"{max_pos} positions, 2 token types) with pooler, as HuggingFace BertModel."
    )


def build_bert_base() -> onnx.ModelProto:
    return _bert("bert_base", 12, 768, 12, 3072)


def build_bert_large() -> onnx.ModelProto:
    return _bert("bert_large", 24, 1024, 16, 4096)


def _gpt(name: str, layers: int, hidden: int, heads: int, ffn: int, vocab: int, max_pos: int, doc: str,
         dropout: float = 0.0) -> onnx.ModelProto:
    """HuggingFace GPT2LMHeadModel (pre-LN decoder, fused QKV, tied LM head). ``dropout`` > 0 adds
    training-mode Dropout where GPT-2 and Megatron-LM have it: after the embeddings, on the
    attention probabilities, and after the attention and MLP output projections."""
    g = GraphBuilder(name)
    head_dim = hidden // heads
    ids = g.input("input_ids", TensorProto.INT64, ["batch", "seq"])
    pos = g.input("position_ids", TensorProto.INT64, ["batch", "seq"])

    wte = g.weight("wte.weight", [vocab, hidden])
    wpe = g.weight("wpe.weight", [max_pos, hidden])
    x = g.node("Gather", [wte, ids], "embed.tokens", axis=0)
    p = g.node("Gather", [wpe, pos], "embed.positions", axis=0)
    x = g.node("Add", [x, p], "embed.add")
    if dropout:
        x = g.dropout(x, "embed.dropout", dropout)

    # Causal mask [seq, seq] (lower triangle True), built once from the run-time sequence length.
    s1 = g.node("Shape", [ids], "causal.seq_len", start=1, end=2)
    ss = g.node("Concat", [s1, s1], "causal.shape", axis=0)
    ones = g.node("ConstantOfShape", [ss], "causal.ones", value=helper.make_tensor("value", TensorProto.BOOL, [1], [True]))
    causal = g.node("Trilu", [ones], "causal.mask", upper=0)
    fill = g.scalar("const.f32_min", float(np.finfo(np.float32).min))

    split = g.ints(f"split.qkv_{hidden}", [hidden, hidden, hidden])
    for i in range(layers):
        p = f"h.{i}"
        n = f"layer{i}"
        a = g.layer_norm(x, f"{n}.ln_1", f"{p}.ln_1", hidden, 1e-5)
        qkv = g.linear(a, f"{n}.attn.qkv", f"{p}.attn.c_attn.weight", f"{p}.attn.c_attn.bias", hidden, 3 * hidden)
        q, k, v = g.node(
            "Split", [qkv, split], f"{n}.attn.split", outputs=[f"{n}.attn.split.q", f"{n}.attn.split.k", f"{n}.attn.split.v"], axis=-1
        )
        ctx = g.attention_core(
            q, k, v, f"{n}.attn", heads, head_dim, hidden,
            mask=lambda s, n=n: g.node("Where", [causal, s, fill], f"{n}.attn.causal_mask"), dropout=dropout,
        )
        a = g.linear(ctx, f"{n}.attn.proj", f"{p}.attn.c_proj.weight", f"{p}.attn.c_proj.bias", hidden, hidden)
        if dropout:
            a = g.dropout(a, f"{n}.attn.proj.dropout", dropout)
        x = g.node("Add", [x, a], f"{n}.attn.residual")
        m = g.layer_norm(x, f"{n}.ln_2", f"{p}.ln_2", hidden, 1e-5)
        m = g.linear(m, f"{n}.mlp.fc1", f"{p}.mlp.c_fc.weight", f"{p}.mlp.c_fc.bias", hidden, ffn)
        m = g.gelu_tanh(m, f"{n}.mlp.gelu")
        m = g.linear(m, f"{n}.mlp.fc2", f"{p}.mlp.c_proj.weight", f"{p}.mlp.c_proj.bias", ffn, hidden)
        if dropout:
            m = g.dropout(m, f"{n}.mlp.dropout", dropout)
        x = g.node("Add", [x, m], f"{n}.mlp.residual")

    x = g.layer_norm(x, "ln_f", "ln_f", hidden, 1e-5)
    # Tied LM head: logits = x @ wte^T, reading the same initializer as the token embedding.
    wte_t = g.node("Transpose", [wte], "lm_head.transpose", perm=[1, 0])
    g.node("MatMul", [x, wte_t], "logits")
    g.output("logits", TensorProto.FLOAT, ["batch", "seq", vocab])
    return g.model(doc)


def build_gpt2_small() -> onnx.ModelProto:
    return _gpt(
        "gpt2_small", 12, 768, 12, 3072, 50257, 1024,
        "GPT-2 small (124M): 12 layers, hidden 768, 12 heads, FFN 3072, vocab 50257, 1024 positions, "
        "tied LM head, as HuggingFace GPT2LMHeadModel.",
    )


def build_gpt3_175b() -> onnx.ModelProto:
    return _gpt(
        "gpt3_175b", 96, 12288, 96, 49152, 50257, 2048,
        "GPT-3 175B: 96 layers, hidden 12288, 96 heads, FFN 49152, vocab 50257, 2048 positions, tied "
        "LM head.  Written with GPT-2's block (dense attention everywhere; the paper's alternating "
        "locally banded sparse layers change no shapes or parameters).",
    )


def _rms_norm(g: GraphBuilder, x: str, name: str, weight: str, dim: int, eps: float) -> str:
    """LlamaRMSNorm as exported at opset 17: x / sqrt(mean(x^2) + eps) * weight."""
    t = g.node("Mul", [x, x], f"{name}.square")
    t = g.node("ReduceMean", [t], f"{name}.mean", axes=[-1], keepdims=1)
    t = g.node("Add", [t, g.scalar(f"const.rms_eps_{eps}", eps)], f"{name}.add_eps")
    t = g.node("Sqrt", [t], f"{name}.sqrt")
    t = g.node("Div", [x, t], f"{name}.normalise")
    return g.node("Mul", [t, g.weight(weight, [dim])], f"{name}.scale")


def _repeat_kv(g: GraphBuilder, x: str, name: str, kv_heads: int, heads: int, head_dim: int) -> str:
    """[b, s, kv*d] -> [b, kv, s, d], then each KV head repeated for its heads/kv query heads as
    HuggingFace's repeat_kv does: Unsqueeze, Expand (broadcast), Reshape to [b, heads, s, d]."""
    t = g.heads_split(x, name, kv_heads, head_dim, [0, 2, 1, 3])
    if kv_heads == heads:
        return t
    t = g.node("Unsqueeze", [t, g.ints("axes.2", [2])], f"{name}.unsqueeze")
    t = g.node("Expand", [t, g.ints(f"shape.repeat_{heads // kv_heads}", [1, 1, heads // kv_heads, 1, 1])],
               f"{name}.repeat")
    return g.node("Reshape", [t, g.ints(f"shape.heads_{heads}x{head_dim}", [0, heads, -1, head_dim])],
                  f"{name}.repeat.reshape")


def _llama(name: str, layers: int, hidden: int, heads: int, kv_heads: int, ffn: int, vocab: int,
           doc: str, moe: MoEShape | None = None) -> onnx.ModelProto:
    """A Llama-style decoder (HuggingFace LlamaForCausalLM's shapes): RMSNorm, separate Q, K, V
    projections without bias, grouped-query attention (``kv_heads`` K and V heads, each repeated for
    ``heads / kv_heads`` query heads), SwiGLU MLP, untied LM head. Rotary embeddings are left out
    (no parameters; a few element-wise FLOPs). With ``moe`` the MLP of every layer from
    ``moe.first_moe_layer`` on is a mixture of experts (:func:`_moe_mlp`); ``ffn`` stays the
    dense layers' FFN."""
    g = GraphBuilder(name)
    head_dim = hidden // heads
    ids = g.input("input_ids", TensorProto.INT64, ["batch", "seq"])
    x = g.node("Gather", [g.weight("model.embed_tokens.weight", [vocab, hidden]), ids], "embed.tokens", axis=0)
    s1 = g.node("Shape", [ids], "causal.seq_len", start=1, end=2)
    ss = g.node("Concat", [s1, s1], "causal.shape", axis=0)
    ones = g.node("ConstantOfShape", [ss], "causal.ones", value=helper.make_tensor("value", TensorProto.BOOL, [1], [True]))
    causal = g.node("Trilu", [ones], "causal.mask", upper=0)
    fill = g.scalar("const.f32_min", float(np.finfo(np.float32).min))
    for i in range(layers):
        p, n = f"model.layers.{i}", f"layer{i}"
        a = _rms_norm(g, x, f"{n}.input_layernorm", f"{p}.input_layernorm.weight", hidden, 1e-5)
        q = g.node("MatMul", [a, g.weight(f"{p}.self_attn.q_proj.weight", [hidden, hidden])], f"{n}.attn.q_proj")
        kv = {}
        for part in ("k", "v"):
            w = g.weight(f"{p}.self_attn.{part}_proj.weight", [hidden, kv_heads * head_dim])
            y = g.node("MatMul", [a, w], f"{n}.attn.{part}_proj")
            kv[part] = _repeat_kv(g, y, f"{n}.attn.{part}", kv_heads, heads, head_dim)
        qh = g.heads_split(q, f"{n}.attn.q", heads, head_dim, [0, 2, 1, 3])
        kt = g.node("Transpose", [kv["k"]], f"{n}.attn.k.transpose_last", perm=[0, 1, 3, 2])
        sc = g.node("MatMul", [qh, kt], f"{n}.attn.scores")
        sc = g.node("Div", [sc, g.scalar(f"const.sqrt_head_dim_{head_dim}", math.sqrt(head_dim))], f"{n}.attn.scale")
        sc = g.node("Where", [causal, sc, fill], f"{n}.attn.causal_mask")
        pr = g.node("Softmax", [sc], f"{n}.attn.softmax", axis=-1)
        c = g.node("MatMul", [pr, kv["v"]], f"{n}.attn.context")
        c = g.node("Transpose", [c], f"{n}.attn.merge.transpose", perm=[0, 2, 1, 3])
        c = g.node("Reshape", [c, g.ints(f"shape.merge_{hidden}", [0, 0, hidden])], f"{n}.attn.merge.reshape")
        o = g.node("MatMul", [c, g.weight(f"{p}.self_attn.o_proj.weight", [hidden, hidden])], f"{n}.attn.o_proj")
        x = g.node("Add", [x, o], f"{n}.attn.residual")
        m = _rms_norm(g, x, f"{n}.post_attention_layernorm", f"{p}.post_attention_layernorm.weight", hidden, 1e-5)
        if moe is not None and i >= moe.first_moe_layer:
            d = _moe_mlp(g, m, f"{n}.moe", f"{p}.block_sparse_moe", hidden, moe)
        else:
            d = _swiglu(g, m, f"{n}.mlp", f"{p}.mlp", hidden, ffn)
        x = g.node("Add", [x, d], f"{n}.mlp.residual")
    x = _rms_norm(g, x, "norm", "model.norm.weight", hidden, 1e-5)
    g.node("MatMul", [x, g.weight("lm_head.weight", [hidden, vocab])], "logits")
    g.output("logits", TensorProto.FLOAT, ["batch", "seq", vocab])
    return g.model(doc)


def _swiglu(g: GraphBuilder, m: str, n: str, p: str, hidden: int, ffn: int, experts: int = 0) -> str:
    """LlamaMLP: down(silu(gate(m)) * up(m)), weights ``{p}.gate_proj.weight`` etc.; with
    ``experts`` the weights are stacked on a leading expert axis (batched matmuls)."""
    lead = [experts] if experts else []
    gate = g.node("MatMul", [m, g.weight(f"{p}.gate_proj.weight", lead + [hidden, ffn])], f"{n}.gate_proj")
    up = g.node("MatMul", [m, g.weight(f"{p}.up_proj.weight", lead + [hidden, ffn])], f"{n}.up_proj")
    act = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{n}.sigmoid")], f"{n}.silu")
    h = g.node("Mul", [act, up], f"{n}.gated")
    return g.node("MatMul", [h, g.weight(f"{p}.down_proj.weight", lead + [ffn, hidden])], f"{n}.down_proj")


class MoEShape(NamedTuple):
    """A mixture-of-experts MLP: ``experts`` routed experts of FFN ``ffn`` each, ``top_k`` per
    token, ``shared`` always-on experts of the same FFN (DeepSeek-MoE), capacity factor
    ``capacity_factor`` (each expert takes at most ``ceil(tokens x top_k x factor / experts)``
    tokens of a sequence), MoE layers from ``first_moe_layer`` on (the ones before are dense)."""

    experts: int
    top_k: int
    ffn: int
    shared: int = 0
    capacity_factor: float = 1.0
    first_moe_layer: int = 0


def _moe_mlp(g: GraphBuilder, m: str, n: str, p: str, hidden: int, moe: MoEShape) -> str:
    """A routed MoE MLP as a dropping (capacity) implementation writes it, per sequence:

    router ``m @ W[hidden, E]``, Softmax; dispatch: each expert takes the ``C`` tokens that score
    it highest (TopK along the sequence of the transposed scores, ``C = ceil(s k f / E)``) and
    gathers them (``GatherND`` with ``batch_dims=1``) into ``[b, E, C, hidden]``; the experts are
    batched matmuls with weights stacked on a leading expert axis (``[E, hidden, ffn]``, SwiGLU);
    combine: each token gathers its ``k`` results back (``GatherND`` of its top-k slots),
    weighted by its top-k gates and summed. Shared experts are one dense SwiGLU of
    ``shared x ffn`` added to the routed output."""
    e, k = moe.experts, moe.top_k
    probs = g.node("Softmax", [g.node("MatMul", [m, g.weight(f"{p}.gate.weight", [hidden, e])], f"{n}.router")],
                   f"{n}.router.softmax", axis=-1)
    gates, slots = g.node("TopK", [probs, g.ints(f"topk.k{k}", [k])], f"{n}.router.topk",
                          outputs=[f"{n}.router.topk.values", f"{n}.router.topk.indices"], axis=-1, largest=1, sorted=1)
    seq = g.node("Shape", [m], f"{n}.capacity.seq", start=1, end=2)
    cap = g.node("Cast", [seq], f"{n}.capacity.float", to=TensorProto.FLOAT)
    cap = g.node("Mul", [cap, g.scalar(f"const.capacity_{k}x{moe.capacity_factor}/{e}", k * moe.capacity_factor / e)],
                 f"{n}.capacity.tokens")
    cap = g.node("Cast", [g.node("Ceil", [cap], f"{n}.capacity.ceil")], f"{n}.capacity", to=TensorProto.INT64)
    scores = g.node("Transpose", [probs], f"{n}.dispatch.transpose", perm=[0, 2, 1])
    _, chosen = g.node("TopK", [scores, cap], f"{n}.dispatch.topk",
                       outputs=[f"{n}.dispatch.topk.values", f"{n}.dispatch.topk.indices"], axis=-1, largest=1, sorted=1)
    rows = g.node("Reshape", [chosen, g.ints("shape.rows", [0, -1, 1])], f"{n}.dispatch.rows")
    x = g.node("GatherND", [m, rows], f"{n}.dispatch", batch_dims=1)
    x = g.node("Reshape", [x, g.ints(f"shape.experts_{e}x{hidden}", [0, e, -1, hidden])], f"{n}.dispatch.reshape")
    y = _swiglu(g, x, f"{n}.experts", f"{p}.experts", hidden, moe.ffn, experts=e)
    y = g.node("Reshape", [y, g.ints(f"shape.tokens_{hidden}", [0, -1, hidden])], f"{n}.combine.flatten")
    y = g.node("GatherND", [y, g.node("Reshape", [slots, g.ints("shape.rows", [0, -1, 1])], f"{n}.combine.rows")],
               f"{n}.combine", batch_dims=1)
    y = g.node("Reshape", [y, g.ints(f"shape.topk_{k}x{hidden}", [0, -1, k, hidden])], f"{n}.combine.reshape")
    w = g.node("Unsqueeze", [gates, g.ints("axes.-1", [-1])], f"{n}.combine.gates")
    y = g.node("ReduceSum", [g.node("Mul", [y, w], f"{n}.combine.weighted"), g.ints("axes.2", [2])],
               f"{n}.combine.sum", keepdims=0)
    if moe.shared:
        s = _swiglu(g, m, f"{n}.shared", f"{p}.shared_experts", hidden, moe.shared * moe.ffn)
        y = g.node("Add", [y, s], f"{n}.shared.add")
    return y


def build_llama3_8b() -> onnx.ModelProto:
    return _llama(
        "llama3_8b", 32, 4096, 32, 8, 14336, 128256,
        "Llama-3-8B shaped: 32 layers, hidden 4096, 32 query heads and 8 KV heads (grouped-query attention), "
        "SwiGLU FFN 14336, vocab 128256, untied LM head; no rotary embedding.",
    )


def build_llama2_70b() -> onnx.ModelProto:
    return _llama(
        "llama2_70b", 80, 8192, 64, 8, 28672, 32000,
        "Llama-2-70B shaped: 80 layers, hidden 8192, 64 query heads and 8 KV heads (grouped-query attention), "
        "SwiGLU FFN 28672, vocab 32000, untied LM head; no rotary embedding.",
    )


def build_mixtral_8x7b(layers: int = 32, hidden: int = 4096, heads: int = 32, kv_heads: int = 8, ffn: int = 14336,
                       vocab: int = 32000, experts: int = 8, top_k: int = 2,
                       capacity_factor: float = 1.0) -> onnx.ModelProto:
    """Mixtral-8x7B shaped (the defaults): 32 layers, hidden 4096, 32 query heads and 8 KV heads,
    8 experts of SwiGLU FFN 14336, top-2, vocab 32000; smaller versions for tests."""
    return _llama(
        "mixtral_8x7b", layers, hidden, heads, kv_heads, ffn, vocab,
        f"Mixtral-8x7B shaped: {layers} layers, hidden {hidden}, {heads} query heads and {kv_heads} KV heads, "
        f"{experts} experts of SwiGLU FFN {ffn}, top-{top_k}, capacity factor {capacity_factor}, vocab {vocab}.",
        MoEShape(experts, top_k, ffn, capacity_factor=capacity_factor),
    )


def build_deepseek_moe(layers: int = 28, hidden: int = 2048, heads: int = 16, ffn: int = 10944, vocab: int = 102400,
                       experts: int = 64, top_k: int = 6, expert_ffn: int = 1408, shared: int = 2,
                       capacity_factor: float = 1.0) -> onnx.ModelProto:
    """DeepSeek-MoE-16B shaped (the defaults): 28 layers, hidden 2048, 16 heads, the first layer
    dense (FFN 10944), then 64 fine-grained routed experts of FFN 1408, top-6, plus 2 shared
    experts; vocab 102400; smaller versions for tests."""
    return _llama(
        "deepseek_moe", layers, hidden, heads, heads, ffn, vocab,
        f"DeepSeek-MoE shaped: {layers} layers, hidden {hidden}, {heads} heads, first layer dense (FFN {ffn}), then "
        f"{experts} routed experts of FFN {expert_ffn}, top-{top_k}, {shared} shared, capacity factor "
        f"{capacity_factor}, vocab {vocab}.",
        MoEShape(experts, top_k, expert_ffn, shared, capacity_factor, first_moe_layer=1),
    )


#: Generated on demand (``build.py --only NAME --out-dir DIR``), never committed: their
#: skeletons are large (many layers of many experts) and their size is a parameter.
GENERATED: dict[str, Callable[..., onnx.ModelProto]] = {
    "mixtral_8x7b": build_mixtral_8x7b,
    "deepseek_moe": build_deepseek_moe,
}


def build_moe() -> onnx.ModelProto:
    """One mixture-of-experts FFN layer: d_model 512, d_ff 2048, E = 8 experts, top-2 routing.

    Dense formulation: every expert runs on every token (Einsum over an experts dimension e) and
    the top-k gates, scattered into an [b, s, E] tensor that is zero elsewhere, weight the sum."""
    d, f, e, k = 512, 2048, 8, 2
    g = GraphBuilder("moe")
    x = g.input("hidden_states", TensorProto.FLOAT, ["batch", "seq", d])
    r = g.node("MatMul", [x, g.weight("router.weight", [d, e])], "router.logits")
    probs = g.node("Softmax", [r], "router.softmax", axis=-1)
    top_v, top_i = g.node(
        "TopK", [probs, g.ints("topk.k", [k])], "router.topk", outputs=["router.topk.values", "router.topk.indices"],
        axis=-1, largest=1, sorted=1,
    )
    shape = g.node("Shape", [probs], "router.gates.shape")
    zeros = g.node("ConstantOfShape", [shape], "router.gates.zeros", value=helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0]))
    gates = g.node("ScatterElements", [zeros, top_i, top_v], "router.gates", axis=-1)
    h = g.node("Einsum", [x, g.weight("experts.w1", [e, d, f])], "experts.fc1", equation="bsd,edf->bsef")
    h = g.node("Add", [h, g.weight("experts.b1", [e, f])], "experts.fc1.bias")
    h = g.node("Relu", [h], "experts.relu")
    y = g.node("Einsum", [h, g.weight("experts.w2", [e, f, d])], "experts.fc2", equation="bsef,efd->bsed")
    y = g.node("Add", [y, g.weight("experts.b2", [e, d])], "experts.fc2.bias")
    g.node("Einsum", [y, gates], "output", equation="bsed,bse->bsd")
    g.output("output", TensorProto.FLOAT, ["batch", "seq", d])
    return g.model("Mixture-of-experts FFN layer: d_model 512, d_ff 2048, 8 experts, softmax router with top-2 gating.")


BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "mlp": build_mlp,
    "vgg16": build_vgg16,
    "resnet50": build_resnet50,
    "bert_base": build_bert_base,
    "bert_large": build_bert_large,
    "gpt2_small": build_gpt2_small,
    "gpt3_175b": build_gpt3_175b,
    "moe": build_moe,
    "llama3_8b": build_llama3_8b,
    "llama2_70b": build_llama2_70b,
}

MODEL_NAMES = tuple(BUILDERS)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def build_model(name: str, **shape) -> onnx.ModelProto:
    """A committed sample by name, or a generated one (:data:`GENERATED`) with its shape keywords."""
    if name in GENERATED:
        return GENERATED[name](**shape)
    if name not in BUILDERS:
        raise KeyError(f"unknown sample model {name!r}; known: {', '.join(MODEL_NAMES + tuple(GENERATED))}")
    return BUILDERS[name]()


def model_bytes(name: str) -> bytes:
    """The serialized model, identical on every run."""
    return build_model(name).SerializeToString(deterministic=True)


def build_all(out_dir: str | Path = HERE) -> dict[str, Path]:
    """Write every sample model to ``out_dir/<name>.onnx``; return ``{name: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in MODEL_NAMES:
        path = out / f"{name}.onnx"
        path.write_bytes(model_bytes(name))
        paths[name] = path
    return paths


def check(out_dir: str | Path = HERE) -> list[str]:
    """Rebuild in memory; return the names whose file in ``out_dir`` is missing or differs."""
    out = Path(out_dir)
    bad = []
    for name in MODEL_NAMES:
        path = out / f"{name}.onnx"
        if not path.is_file() or path.read_bytes() != model_bytes(name):
            bad.append(name)
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="rebuild in memory and fail if a committed file differs")
    ap.add_argument("--out-dir", default=str(HERE), help="where the .onnx files live (default: next to this script)")
    ap.add_argument("--only", choices=sorted(GENERATED), help="write only this generated (uncommitted) model")
    ap.add_argument("--moe-capacity-factor", type=float, default=1.0, help="with --only: the experts' capacity factor")
    args = ap.parse_args(argv)
    if args.only:
        if not args.moe_capacity_factor > 0:
            ap.error(f"--moe-capacity-factor must be above 0, not {args.moe_capacity_factor} (1.0: no tokens dropped "
                     "when routing is even)")
        path = Path(args.out_dir) / f"{args.only}.onnx"
        path.write_bytes(build_model(args.only, capacity_factor=args.moe_capacity_factor)
                         .SerializeToString(deterministic=True))
        print(f"{path}  {path.stat().st_size} bytes")
        return 0
    if args.check:
        bad = check(args.out_dir)
        if bad:
            print("out of date or missing: " + ", ".join(f"{n}.onnx" for n in bad), file=sys.stderr)
            return 1
        print(f"all {len(MODEL_NAMES)} sample models are up to date")
        return 0
    for name, path in build_all(args.out_dir).items():
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
