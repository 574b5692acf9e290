"""The real-export corpus: tiny Hugging Face models and torch modules, exported as users export them.

Every model is built here from a small config (no download), filled with seeded random values (both
exporters merge initializers with equal values, which freshly initialised LayerNorms and biases are),
and exported by BOTH PyTorch exporters with a symbolic batch and sequence, as people export for
serving:

* ``torchscript``: ``torch.onnx.export(..., dynamo=False, opset_version=17, dynamic_axes=...)``
* ``dynamo``: ``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)`` (opset 18)

then stripped of its weights with ``planner.onnx.strip_weights``. Families: GPT-2 (tied lm_head), Llama
(grouped-query attention: 2 key/value heads for 4 heads, rotary embedding), Mixtral (4 experts,
top-2), BERT, T5 (encoder-decoder) and ViT (batch only: its sequence is fixed by the image size);
plus ``torch.nn.MultiheadAttention`` with ``batch_first`` True and False, and two quantised-weight
models written with ``onnx.helper`` (an INT8 and an INT4 weight feeding ``DequantizeLinear``).

:class:`Corpus` exports each (family, exporter) once, on first use, into one directory and records
how long each export took (``Corpus.seconds``). The tests share one corpus per session; the bench
``bench/export_consistency.py`` builds its own.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from planner.onnx.strip_weights import strip_weights

EXPORTERS = ("torchscript", "dynamo")
HF_FAMILIES = ("gpt2", "llama", "mixtral", "bert", "t5", "vit")
TORCH_FAMILIES = ("mha_batch_first", "mha_seq_first")
MOE_FAMILIES = ("qwen2_moe",)  # built on demand (tests/onnx/test_moe_real.py), not in the corpus-wide tests
ONNX_FAMILIES = ("quant_int8", "quant_int4")  # built with onnx.helper: one file, no exporter
FAMILIES = HF_FAMILIES + TORCH_FAMILIES + ONNX_FAMILIES

# Sizes chosen so that no two of vocabulary, hidden, head, intermediate and sequence sizes are equal
# (an equal pair would let a wrong axis pass for the right one).
VOCAB, HIDDEN, HEADS, KV_HEADS, INTERMEDIATE, LAYERS, POSITIONS = 96, 32, 4, 2, 80, 2, 64
EXAMPLE_BATCH, EXAMPLE_SEQ = 2, 8
QUANT_K, QUANT_N = 64, 48
MOE_FFN, SHARED_FFN = 40, 56  # Qwen2-MoE's routed and shared experts' FFN


@dataclass
class Export:
    family: str
    exporter: str  # "torchscript", "dynamo" or "onnx" (written with onnx.helper)
    path: Path
    torch_parameters: int  # sum of numel over the module's named_parameters (ties counted once)
    symbols: tuple[str, ...]  # the symbolic dimensions the file should have
    seconds: float  # export + strip

    @property
    def label(self) -> str:
        return f"{self.family}/{self.exporter}"

    def bindings(self, batch: int, seq: int) -> dict[str, int]:
        values = {"batch": batch, "seq": seq}
        return {s: values[s] for s in self.symbols}


def randomize(module, seed: int = 0):
    """Distinct seeded values in every parameter and float buffer (see the module docstring).

    Buffers that are computed constants (rotary ``inv_freq``, position id ranges) are left alone."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return module


def torch_parameter_count(module) -> int:
    """Parameters as torch counts them: ``named_parameters`` yields a tied weight once."""
    return sum(p.numel() for _, p in module.named_parameters())


# ---- the modules ---------------------------------------------------------------------------------

def _hf_module(family: str):
    """(module, example args, input names, {input name: {axis: symbol}}) for a Hugging Face family."""
    import torch
    import transformers
    from torch import nn

    transformers.utils.logging.set_verbosity_error()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (EXAMPLE_BATCH, EXAMPLE_SEQ), generator=gen)
    pos = torch.arange(EXAMPLE_SEQ).expand(EXAMPLE_BATCH, EXAMPLE_SEQ).contiguous()
    mask = torch.ones_like(ids)
    bs = {0: "batch", 1: "seq"}

    class CausalLM(nn.Module):
        # Explicit position ids (GPT-2 otherwise derives them with aten::diff, which the TorchScript
        # exporter cannot export); use_cache=False: no key/value cache outputs.
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, position_ids, attention_mask):
            return self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                              use_cache=False).logits

    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=INTERMEDIATE, max_position_embeddings=POSITIONS)
    if family == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                                      n_inner=INTERMEDIATE, n_positions=POSITIONS, bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2LMHeadModel(cfg)
        return CausalLM(model), (ids, pos, mask), ["input_ids", "position_ids", "attention_mask"], \
            {"input_ids": bs, "position_ids": bs, "attention_mask": bs}
    if family in ("llama", "mixtral", "qwen2_moe"):
        if family == "llama":
            cfg = transformers.LlamaConfig(num_key_value_heads=KV_HEADS, tie_word_embeddings=False, **common)
            cfg._attn_implementation = "eager"
            model = transformers.LlamaForCausalLM(cfg)
        elif family == "qwen2_moe":
            cfg = transformers.Qwen2MoeConfig(num_key_value_heads=KV_HEADS, num_experts=4, num_experts_per_tok=2,
                                              moe_intermediate_size=MOE_FFN, shared_expert_intermediate_size=SHARED_FFN,
                                              tie_word_embeddings=False, **common)
            cfg._attn_implementation = "eager"
            _set_experts_implementation(cfg)
            model = transformers.Qwen2MoeForCausalLM(cfg)
        else:
            cfg = transformers.MixtralConfig(num_key_value_heads=KV_HEADS, num_local_experts=4, num_experts_per_tok=2,
                                             tie_word_embeddings=False, **common)
            cfg._attn_implementation = "eager"
            _set_experts_implementation(cfg)
            model = transformers.MixtralForCausalLM(cfg)
        return CausalLM(model), (ids, pos, mask), ["input_ids", "position_ids", "attention_mask"], \
            {"input_ids": bs, "position_ids": bs, "attention_mask": bs}
    if family == "bert":
        cfg = transformers.BertConfig(type_vocab_size=2, **common)
        cfg._attn_implementation = "eager"
        model = transformers.BertModel(cfg, add_pooling_layer=False)

        class Bert(nn.Module):
            # All inputs explicit: left to itself BERT builds position ids and the mask from
            # constants, which the dynamo exporter folds into float initializers.
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, token_type_ids, position_ids, attention_mask):
                return self.model(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                  attention_mask=attention_mask).last_hidden_state

        names = ["input_ids", "token_type_ids", "position_ids", "attention_mask"]
        return Bert(model), (ids, torch.zeros_like(ids), pos, mask), names, {n: bs for n in names}
    if family == "t5":
        cfg = transformers.T5Config(vocab_size=VOCAB, d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=INTERMEDIATE,
                                    num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=HEADS,
                                    relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0,
                                    tie_word_embeddings=True)
        cfg._attn_implementation = "eager"
        model = transformers.T5ForConditionalGeneration(cfg)

        class T5(nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, decoder_input_ids):
                return self.model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False).logits

        names = ["input_ids", "decoder_input_ids"]
        return T5(model), (ids, ids.flip(1).contiguous()), names, {n: bs for n in names}
    if family == "vit":
        cfg = transformers.ViTConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                     intermediate_size=INTERMEDIATE, image_size=16, patch_size=4, num_channels=3)
        cfg._attn_implementation = "eager"
        model = transformers.ViTModel(cfg, add_pooling_layer=False)

        class ViT(nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, pixel_values):
                return self.model(pixel_values=pixel_values).last_hidden_state

        pixels = torch.randn(EXAMPLE_BATCH, 3, 16, 16, generator=gen)
        return ViT(model), (pixels,), ["pixel_values"], {"pixel_values": {0: "batch"}}
    raise ValueError(f"unknown family {family!r}")


def _set_experts_implementation(cfg) -> None:
    """Mixtral's default expert dispatch loops over the experts that were hit (data-dependent
    control flow, which neither exporter traces); the batched matmul one exports."""
    for attr in ("experts_implementation", "_experts_implementation"):
        with contextlib.suppress(Exception):
            setattr(cfg, attr, "batched_mm")


def _mha_module(batch_first: bool):
    import torch
    from torch import nn

    class MHA(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=batch_first)

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    gen = torch.Generator().manual_seed(2)
    shape = (EXAMPLE_BATCH, EXAMPLE_SEQ, HIDDEN) if batch_first else (EXAMPLE_SEQ, EXAMPLE_BATCH, HIDDEN)
    axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    return MHA(), (torch.randn(*shape, generator=gen),), ["x"], {"x": axes}


def quantized_model(bits: int, k: int = QUANT_K, n: int = QUANT_N) -> onnx.ModelProto:
    """x[batch, seq, k] @ DequantizeLinear(W[k, n] of INT``bits``, per-column scale) + bias[n].

    Parameters (by hand, as the planner counts them): k*n quantised weights, n scales and n zero
    points (frozen) + n biases."""
    qtype = {8: TensorProto.INT8, 4: TensorProto.INT4}[bits]
    rng = np.random.default_rng(bits)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    w = rng.integers(lo, hi + 1, size=(k, n))
    weight = helper.make_tensor("w_q", qtype, [k, n], w.flatten().tolist())
    scale = numpy_helper.from_array((rng.random(n) * 0.01 + 0.001).astype(np.float32), "w_scale")
    zero = helper.make_tensor("w_zero", qtype, [n], [0] * n)
    bias = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "bias")
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=1, name="dequant"),
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "bias"], ["y"], name="add_bias"),
    ]
    graph = helper.make_graph(
        nodes, f"quant_int{bits}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", n])],
        initializer=[weight, scale, zero, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


QUANT_PARAMS = {bits: QUANT_K * QUANT_N + 3 * QUANT_N for bits in (8, 4)}  # weight, scales, zero points (frozen) and bias


# ---- exporting -----------------------------------------------------------------------------------

def export_module(module, args, input_names, axes, exporter: str, path: Path) -> None:
    """Export quietly with a symbolic dimension on every axis named in ``axes``."""
    import torch

    kwargs = {"input_names": list(input_names), "output_names": ["y"]}
    if exporter == "torchscript":
        kwargs.update(dynamo=False, opset_version=17, dynamic_axes={n: dict(axes[n]) for n in input_names})
    elif exporter == "dynamo":
        dims = {}
        shapes = []
        for n in input_names:
            shapes.append({axis: dims.setdefault(sym, torch.export.Dim(sym, min=2 if sym == "batch" else 4, max=4096))
                           for axis, sym in axes[n].items()})
        kwargs.update(dynamo=True, dynamic_shapes=tuple(shapes))
    else:
        raise ValueError(f"unknown exporter {exporter!r}")
    module.eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(args), str(path), **kwargs)


class Corpus:
    """Exports on first use, once per (family, exporter), into ``directory``."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._exports: dict[tuple[str, str], Export] = {}
        self._modules: dict[str, object] = {}

    @property
    def seconds(self) -> float:
        """Total time spent exporting and stripping so far."""
        return sum(e.seconds for e in self._exports.values())

    def module(self, family: str):
        """The (randomised) torch module of a family, built once."""
        if family not in self._modules:
            if family in HF_FAMILIES + MOE_FAMILIES:
                built = _hf_module(family)
            elif family in TORCH_FAMILIES:
                built = _mha_module(family == "mha_batch_first")
            else:
                raise ValueError(f"{family} has no torch module")
            randomize(built[0])
            self._modules[family] = built
        return self._modules[family]

    def get(self, family: str, exporter: str) -> Export:
        key = (family, exporter)
        if key in self._exports:
            return self._exports[key]
        start = time.perf_counter()
        path = self.directory / f"{family}_{exporter}.onnx"
        if family in ONNX_FAMILIES:
            bits = int(family.removeprefix("quant_int"))
            model = quantized_model(bits)
            torch_params, symbols = QUANT_PARAMS[bits], ("batch", "seq")
        else:
            module, args, names, axes = self.module(family)
            raw = self.directory / f"{family}_{exporter}.full.onnx"
            export_module(module, args, names, axes, exporter, raw)
            model = onnx.load(str(raw))
            raw.unlink()
            for extra in raw.parent.glob(raw.name + ".data"):
                extra.unlink()
            torch_params = torch_parameter_count(module)
            symbols = tuple(dict.fromkeys(s for n in names for s in axes[n].values()))
        stripped = strip_weights(model, f"{path.stem}.weights.bin")
        path.write_bytes(stripped.SerializeToString(deterministic=True))
        export = Export(family, exporter, path, torch_params, symbols, time.perf_counter() - start)
        self._exports[key] = export
        return export

    def exporters(self, family: str) -> tuple[str, ...]:
        return ("onnx",) if family in ONNX_FAMILIES else EXPORTERS
