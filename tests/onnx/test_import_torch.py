"""Real exports: small PyTorch modules built here, exported by both PyTorch exporters, imported.

Each module is exported once per exporter (module-scoped fixtures) with
``torch.onnx.export(..., dynamo=False, opset_version=17)`` (TorchScript) and
``torch.onnx.export(..., dynamo=True)`` (opset 18, IR 10), then imported; every expected number
below is worked out by hand from the module's definition, never read back from the importer.

Two export habits shape these tests:

* Both exporters merge initializers whose *values* are equal: a freshly built LayerNorm's weight
  (all ones) is stored once for norm1 and norm2, and the file then holds fewer floats than the
  module. Real, trained weights are never equal, so every parameter and buffer is filled with
  seeded random values before export (``_randomize``).
* The dynamo exporter lifts Python scalars (0.5 and sqrt(2) in GELU, a dropout ratio, ...) into
  rank-0 float initializers. The importer treats rank-0 float initializers as constants, so
  they are not counted; the one non-scalar case is noted where it occurs.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")  # the dynamo exporter translates with onnxscript

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from planner.model.graph import OpKind  # noqa: E402
from planner.onnx.importer import import_model, load_model_proto, symbolic_dims  # noqa: E402

EXPORTERS = ("torchscript", "dynamo")


# ---- export helpers ---------------------------------------------------------------------------

def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct values everywhere, so that no exporter merges two equal initializers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for name, b in module.named_buffers():
            if b.is_floating_point():
                fill = torch.rand(b.shape, generator=gen) + 0.5  # running_var must stay positive
                b.copy_(fill if name.endswith("running_var") else fill - 1.0)
    return module


def _export(module, args, path, exporter, *, input_names, dynamic_batch=False, train=False, optimize=True):
    """Export quietly (the dynamo exporter prints progress; both warn a lot)."""
    kwargs = {"input_names": list(input_names), "output_names": ["y"]}
    if exporter == "torchscript":
        kwargs.update(dynamo=False, opset_version=17)
        if dynamic_batch:
            kwargs["dynamic_axes"] = {name: {0: "batch"} for name in input_names}
        if train:
            # Training mode keeps BatchNormalization as its own node (eval mode folds it into
            # the preceding Conv); constant folding would fold it as well.
            kwargs.update(training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    else:
        kwargs.update(dynamo=True, opset_version=18, optimize=optimize)
        if dynamic_batch:
            batch = torch.export.Dim("batch")
            kwargs["dynamic_shapes"] = tuple({0: batch} for _ in args)
    module.train(train)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(args), str(path), **kwargs)
    return path


def _compute_flops(graph) -> list[float]:
    return sorted(op.flops for op in graph.operators.values() if op.op_type in ("MatMul", "Gemm", "Conv"))


def _assert_no_opaque(graph):
    assert graph.unsupported_op_types == []
    opaque = [(n, op.op_type) for n, op in graph.operators.items() if op.kind is OpKind.OPAQUE]
    assert opaque == []
    assert graph.warnings == []


# ---- the modules ------------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SmallCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> MaxPool -> grouped strided Conv -> ReLU -> global pool -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv1(x))))
        x = self.gap(torch.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


class EncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` called with ``is_causal=False`` as a Python bool.

    Why the wrapper: the TorchScript exporter completes the argument list from the signature of
    the exported module's ``forward`` (``_decide_input_format``), so exporting the layer itself
    passes ``(src, None, None, False)`` to the tracer, which turns ``is_causal=False`` into a
    tensor, and ``scaled_dot_product_attention`` then fails with "argument 'is_causal' must be
    bool, not Tensor" (in eval and in train mode alike). This wrapper's ``forward`` takes only the
    input, so the flag stays a Python constant. Used for both exporters, so they see one module.
    """

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)

    def forward(self, x):
        return self.layer(x, is_causal=False)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """ResNet-18 written out layer by layer as in torchvision (timm needs torchvision, see below)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


# ---- fixtures: one export per module and exporter -------------------------------------------

@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlp")
    module = _randomize(MLP())
    x = torch.randn(4, 32)
    paths = {e: _export(module, (x,), d / f"{e}.onnx", e, input_names=["x"], dynamic_batch=True) for e in EXPORTERS}
    return module, paths


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("cnn")
    module = _randomize(SmallCNN())
    x = torch.randn(2, 3, 16, 16)
    paths = {
        # TorchScript in training mode keeps BatchNormalization unfolded.
        "torchscript": _export(module, (x,), d / "ts.onnx", "torchscript", input_names=["x"], train=True),
        # The dynamo exporter's optimizer folds BatchNormalization into the Conv even in
        # training mode; optimize=False keeps the node.
        "dynamo": _export(module, (x,), d / "dynamo.onnx", "dynamo", input_names=["x"], optimize=False),
        # ... and the default (optimized) export, as users will make it.
        "dynamo-optimized": _export(module, (x,), d / "dynamo_opt.onnx", "dynamo", input_names=["x"]),
    }
    return module, paths


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    d = tmp_path_factory.mktemp("encoder")
    module = _randomize(EncoderLayer())
    x = torch.randn(2, 5, 32)
    paths = {e: _export(module, (x,), d / f"{e}.onnx", e, input_names=["x"]) for e in EXPORTERS}
    return module, paths


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    d = tmp_path_factory.mktemp("resnet18")
    module = _randomize(ResNet18())
    x = torch.randn(1, 3, 224, 224)
    paths = {
        "torchscript": _export(module, (x,), d / "ts.onnx", "torchscript", input_names=["x"], train=True),
        "dynamo": _export(module, (x,), d / "dynamo.onnx", "dynamo", input_names=["x"]),
    }
    return module, paths


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- the exporters produce what the issue says ------------------------------------------------

def test_dynamo_export_is_opset_18_ir_10(mlp):
    model = load_model_proto(mlp[1]["dynamo"])
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [("", 18)]
    assert model.ir_version == 10
    ts = load_model_proto(mlp[1]["torchscript"])
    assert [(o.domain, o.version) for o in ts.opset_import if o.domain in ("", "ai.onnx")] == [("", 17)]


# ---- MLP ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("exporter", EXPORTERS)
def test_mlp(mlp, exporter):
    module, paths = mlp
    model = load_model_proto(paths[exporter])
    assert symbolic_dims(model) == ["batch"]
    graph = import_model(paths[exporter], {"batch": 4})
    _assert_no_opaque(graph)
    assert graph.unbound_dims == []
    # fc1: 32*64 + 64 = 2112; fc2: 64*10 + 10 = 650; total 2762
    assert _n_params(module) == 2762
    assert graph.parameter_count == 2762
    # batch 4: fc1 2*4*64*32 = 16384; fc2 2*4*10*64 = 5120
    assert _compute_flops(graph) == [5120.0, 16384.0]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_mlp_unbound_batch_is_listed_and_taken_as_one(mlp, exporter):
    graph = import_model(mlp[1][exporter])
    assert graph.unbound_dims == ["batch"]
    # batch taken as 1: 2*1*64*32 = 4096 and 2*1*10*64 = 1280
    assert _compute_flops(graph) == [1280.0, 4096.0]


# ---- CNN with BatchNorm and pooling --------------------------------------------------------------

# conv1 8*3*3*3 + 8 = 224; bn weight+bias 8 + 8 = 16; conv2 (grouped, 2 groups) 16*(8/2)*3*3 + 16
# = 592; fc 16*10 + 10 = 170. Total 224 + 16 + 592 + 170 = 1002.
CNN_PARAMS = 1002
CNN_EXPECTED_PARAMS = {
    # BatchNormalization kept: its running mean and variance (8 + 8) are float initializers too,
    # and count as the issue defines parameters (num_batches_tracked, int64, is not exported).
    "torchscript": 1002 + 8 + 8,
    "dynamo": 1002 + 8 + 8,
    # BatchNorm folded into conv1's weight and bias (same shapes): its 16 floats are gone.
    "dynamo-optimized": 1002 - 16,
}
# conv1: N=2, OC=8, 16x16 out, IC*K*K = 3*3*3: 2*2*8*16*16*27 = 221184
# conv2 after the 2x2 max pool (8x8 in), stride 2, pad 1 -> 4x4 out; IC/group = 4:
#        2*2*16*4*4*(4*3*3) = 36864
# fc:    2*2*10*16 = 640
CNN_FLOPS = [640.0, 36864.0, 221184.0]


@pytest.mark.parametrize("variant", ["torchscript", "dynamo", "dynamo-optimized"])
def test_cnn(cnn, variant):
    module, paths = cnn
    graph = import_model(paths[variant])
    _assert_no_opaque(graph)
    assert _n_params(module) == CNN_PARAMS
    assert graph.parameter_count == CNN_EXPECTED_PARAMS[variant]
    assert _compute_flops(graph) == CNN_FLOPS
    hist = graph.op_type_histogram()
    assert ("BatchNormalization" in hist) == (variant != "dynamo-optimized")
    assert "MaxPool" in hist
    conv2 = [op for op in graph.operators.values() if op.op_type == "Conv" and op.dims.get("g") == 2]
    assert len(conv2) == 1 and conv2[0].dims["oc"] == 8 and conv2[0].dims["ic"] == 4


@pytest.mark.parametrize("variant", ["torchscript", "dynamo", "dynamo-optimized"])
def test_cnn_batch_dim_is_found_everywhere(cnn, variant):
    graph = import_model(cnn[1][variant])
    batch = graph.batch_dims()
    planned = [n for n in graph.planned_operators() if graph.operators[n].inputs]
    missing = [n for n in planned if batch[n] is None]
    assert missing == []


# ---- TransformerEncoderLayer --------------------------------------------------------------------

# in_proj 3*32*32 + 96 = 3168; out_proj 32*32 + 32 = 1056; linear1 32*64 + 64 = 2112;
# linear2 64*32 + 32 = 2080; norm1 and norm2 2*32 each = 128. Total 8544.
ENCODER_PARAMS = 8544
# batch 2, sequence 5, d_model 32, 4 heads of 8, feed-forward 64 (10 tokens):
#   in_proj   2*10*32*96 = 61440       out_proj 2*10*32*32 = 20480
#   linear1   2*10*32*64 = 40960       linear2  2*10*64*32 = 40960
#   Q K^T     2*(2*4)*5*5*8 = 3200     attn V   2*(2*4)*5*8*5 = 3200
ENCODER_FLOPS = [3200.0, 3200.0, 20480.0, 40960.0, 40960.0, 61440.0]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_transformer_encoder_layer(encoder, exporter):
    module, paths = encoder
    graph = import_model(paths[exporter])
    _assert_no_opaque(graph)
    assert _n_params(module) == ENCODER_PARAMS
    expected = ENCODER_PARAMS
    if exporter == "dynamo":
        # The dynamo exporter's attention scales q and k each by head_dim ** -0.25 and stores
        # that factor as a float initializer of shape [1] (not rank 0); one element: a constant,
        # not a parameter (torch's named_parameters does not list it).
        model = load_model_proto(paths[exporter])
        ones = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and list(t.dims) == [1]]
        assert len(ones) == 1
        assert abs(float(numpy_helper.to_array(ones[0])[0]) - 8 ** -0.25) < 1e-6
    assert graph.parameter_count == expected
    assert _compute_flops(graph) == ENCODER_FLOPS
    assert {"Softmax", "LayerNormalization"} <= set(graph.op_type_histogram())


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_export_without_value_info(encoder, exporter):
    """Files that carry no value_info (and no output shapes) import the same."""
    model = load_model_proto(encoder[1][exporter])
    del model.graph.value_info[:]
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    graph = import_model(model)
    _assert_no_opaque(graph)
    assert graph.parameter_count == ENCODER_PARAMS  # the dynamo export's [1] scale is a constant
    assert _compute_flops(graph) == ENCODER_FLOPS


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_transformer_in_proj_factors_into_qkv_heads(encoder, exporter):
    """The fused in-projection's 96 outputs factor as 3 (q, k, v) x 4 heads x 8 (head_dim)."""
    graph = import_model(encoder[1][exporter])
    in_proj = [op for op in graph.operators.values() if op.op_type == "MatMul" and op.dims.get("n") == 96]
    assert len(in_proj) == 1
    assert in_proj[0].factors_of("n") == (3, 4, 8)
    batch = graph.batch_dims()
    # The attention products are batched over (batch, heads): the batch is their leading dim.
    attention = [n for n, op in graph.operators.items() if op.op_type == "MatMul" and op.dims.get("b1") == 4]
    assert len(attention) == 2
    assert all(batch[n] == "b0" for n in attention)


# ---- ResNet-18 (in place of timm's) --------------------------------------------------------------

# Published: torchvision's resnet18 has 11,689,512 parameters and 1.81 GFLOPS (multiply-adds) at
# 224x224. BatchNorm channels: stem 64; per stage 2 blocks x 2 BN (+ 1 BN in the downsample of
# stages 2-4): 4*64 + (4*128 + 128) + (4*256 + 256) + (4*512 + 512) = 256 + 640 + 1280 + 2560,
# plus the stem's 64: 4800 channels.
RESNET18_PARAMS = 11_689_512
RESNET18_BN_CHANNELS = 4800
# Multiply-adds at 1x3x224x224:
#   stem 7x7/2: 112*112*64*3*49                              = 118,013,952
#   stage 1 (56x56): 4 convs 56*56*64*64*9 = 4*115,605,504    = 462,422,016
#   stages 2, 3, 4 each: first 3x3/2 (half the input channels) 57,802,752
#                        + 3 convs 3*115,605,504 = 346,816,512
#                        + 1x1/2 downsample                   = 6,422,528
#     (28*28*128*64*9, 28*28*128*128*9, 28*28*128*64; halving the side doubles both channel
#      counts, so stages 3 and 4 give the same figures) -> 3 * 411,041,792 = 1,233,125,376
#   fc 512*1000                                               = 512,000
#   total 118,013,952 + 462,422,016 + 1,233,125,376 + 512,000 = 1,814,073,344 (the published 1.81 G)
RESNET18_MACS = 1_814_073_344


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_resnet18(resnet18, exporter):
    module, paths = resnet18
    graph = import_model(paths[exporter])
    _assert_no_opaque(graph)
    assert _n_params(module) == RESNET18_PARAMS
    if exporter == "torchscript":
        # training-mode export: BatchNorm kept, with running mean and variance
        expected = RESNET18_PARAMS + 2 * RESNET18_BN_CHANNELS
    else:
        # the optimizer folds every BatchNorm (weight + bias: 2 * 4800) into the bias-free conv
        # before it, which gains a bias (4800)
        expected = RESNET18_PARAMS - 2 * RESNET18_BN_CHANNELS + RESNET18_BN_CHANNELS
    assert graph.parameter_count == expected
    assert sum(_compute_flops(graph)) == 2 * RESNET18_MACS
    assert graph.op_type_histogram()["Conv"] == 20  # 1 stem + 8 blocks * 2 + 3 downsamples


# ---- Hugging Face transformers (built from a config, no pretrained weights) ---------------------
#
# timm is not covered: it imports torchvision, and the only torchvision wheels matching torch
# 2.13 here are CUDA builds that fail to load against the CPU torch ("operator torchvision::nms
# does not exist"), so ResNet-18 is written out above instead.

class _BertWrapper(nn.Module):
    # All inputs explicit: left to itself BERT builds position ids and the attention mask from
    # constants, which the dynamo exporter folds into float initializers (a [2,1,8,8] mask, a
    # slice of the position table) that are not the module's parameters.
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, token_type_ids, position_ids, attention_mask):
        return self.model(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                          attention_mask=attention_mask).last_hidden_state


class _GPT2Wrapper(nn.Module):
    # Explicit position ids: GPT-2 otherwise derives them with aten::diff, which the TorchScript
    # exporter cannot export at opset 17. use_cache=False: no key/value cache outputs.
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, position_ids, attention_mask):
        return self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                          use_cache=False).last_hidden_state


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    d = tmp_path_factory.mktemp("hf")
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=32), add_pooling_layer=False)
    gpt2 = transformers.GPT2Model(transformers.GPT2Config(
        vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0))
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    pos = torch.arange(8).expand(2, 8).contiguous()
    mask = torch.ones_like(ids)
    out = {}
    for name, module, args, names in (
        ("bert", _BertWrapper(bert), (ids, torch.zeros_like(ids), pos, mask), ["input_ids", "token_type_ids", "position_ids", "attention_mask"]),
        ("gpt2", _GPT2Wrapper(gpt2), (ids, pos, mask), ["input_ids", "position_ids", "attention_mask"]),
    ):
        _randomize(module)
        module.eval()
        out[name] = (module, {e: _export(module, args, d / f"{name}_{e}.onnx", e, input_names=names) for e in EXPORTERS})
    return out


# BERT: embeddings 100*64 + 32*64 + 2*64 + LayerNorm 128 = 8704; per layer: q, k, v, attention
# output 4*(64*64 + 64) = 16640, two LayerNorms 256, intermediate 64*128 + 128 = 8320, output
# 128*64 + 64 = 8256 -> 33472; 2 layers 66944. Total 75648.
# GPT-2: wte 100*64 + wpe 32*64 = 8448; per layer: ln_1, ln_2 256, c_attn 64*192 + 192 = 12480,
# attn c_proj 64*64 + 64 = 4160, mlp c_fc 64*256 + 256 = 16640, mlp c_proj 256*64 + 64 = 16448
# -> 49984; 2 layers 99968; ln_f 128. Total 108544.
HF_PARAMS = {"bert": 75648, "gpt2": 108544}


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_hugging_face_models(hf_models, name, exporter):
    module, paths = hf_models[name]
    graph = import_model(paths[exporter])
    _assert_no_opaque(graph)
    assert _n_params(module) == HF_PARAMS[name]
    assert graph.parameter_count == HF_PARAMS[name]
    # batch 2, sequence 8, hidden 64, 4 heads of 16, intermediate 128 (BERT) / 256 (GPT-2):
    # per layer q,k,v,o (BERT: 4 * 2*16*64*64 = 4*131072) or c_attn + c_proj (GPT-2: 2*16*64*192
    # + 2*16*64*64 = 393216 + 131072), the MLP 2 * 2*16*64*ff, and the attention products
    # 2 * 2*(2*4)*8*8*16 = 2 * 16384.
    ff = 128 if name == "bert" else 256
    per_layer = 4 * 131072 + 2 * (2 * 16 * 64 * ff) + 2 * 16384
    assert sum(_compute_flops(graph)) == 2 * per_layer
    if name == "gpt2":
        c_attn = [op for op in graph.operators.values() if op.op_type in ("Gemm", "MatMul") and op.dims.get("n") == 192]
        assert len(c_attn) == 2
        assert all(op.factors_of("n") == (3, 4, 16) for op in c_attn)
