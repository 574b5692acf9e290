"""The two small models the verification runs, and the machine their plans are made for.

Each model exists in PyTorch (:class:`VerifyMLP`, :class:`VerifyTransformerBlock`, built with
deterministic weights by :func:`build_model`) and as ONNX (:func:`export_onnx`:
``torch.onnx.export(..., dynamo=False, opset_version=17)``; the modules use their parameters as
is, so every ONNX initializer is named after its parameter). :func:`reference_step` is the
single-process training step every distributed run is compared with.

**The planning machine.** On these small models and a real CPU the search would replicate
everything, so the plans are made for :func:`verification_machine`, a *fast machine
description* (1 GFLOP/s devices, 1 GB/s between the two nodes, 10 GB/s inside a node, no
latency): splitting is then worth it and D-Rec picks tensor-parallel splits of the weights
(rows, columns and contracted dimensions, with partial sums and redistributions) that differ
from data parallelism. The execution itself is the same whatever the machine.
"""

from __future__ import annotations

import contextlib
import io
import math

from planner.verify.base import require_torch, torch


def verification_machine(processes: int):
    """Two levels, ``2 x processes/2``: a fast machine description (see this module's docstring)."""
    from planner.machine.tree import Machine

    if processes < 2 or processes % 2:
        raise ValueError(f"processes must be an even number >= 2, not {processes}")
    return Machine.from_dict({
        "name": f"fast-cpu-2x{processes // 2}",
        "device": {"name": "cpu-process", "peak_flops": 1e9, "memory_bytes": 1e9},
        "levels": [
            {"name": "node", "arity": 2, "bandwidth_Bps": 1e9, "latency_s": 0.0},
            {"name": "cpu", "arity": processes // 2, "bandwidth_Bps": 1e10, "latency_s": 0.0},
        ],
    })


# ---- the models, in PyTorch --------------------------------------------------------------------

MODEL_SPECS = {
    # batch 16, widths 64 -> 256 -> 256 -> 64 (Gemm with transB=1 in ONNX, weights "fc.{i}.weight")
    "mlp": {"batch": 16, "widths": (64, 256, 256, 64)},
    # batch 8, sequence 8, hidden 64, 4 heads, MLP 256; pre-norm block with residuals
    "transformer": {"batch": 8, "seq": 8, "hidden": 64, "heads": 4, "ffn": 256},
}

if torch is not None:
    import torch.nn as nn
    import torch.nn.functional as F

    class VerifyMLP(nn.Module):
        """``Linear -> ReLU -> Linear -> ReLU -> Linear`` (ONNX: Gemm, Relu, Gemm, Relu, Gemm)."""

        def __init__(self, batch: int = 16, widths=(64, 256, 256, 64)):
            super().__init__()
            self.input_shape = (batch, widths[0])
            self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
            with torch.no_grad():
                for layer in self.fc:  # distinct values: the exporter merges equal initializers
                    layer.bias.normal_(0, 0.1)

        def forward(self, x):
            for i, layer in enumerate(self.fc):
                x = layer(x)
                if i < len(self.fc) - 1:
                    x = torch.relu(x)
            return x

    class VerifyTransformerBlock(nn.Module):
        """A pre-norm transformer encoder block: multi-head self-attention and a GELU MLP.

        Weights are ``[in, out]`` parameters used directly (``x @ w + b``), so that the ONNX
        export reads each one as an initializer with the parameter's name (nn.Linear on a 3-D
        input would be exported through a folded, renamed transpose).
        """

        def __init__(self, batch: int = 8, seq: int = 8, hidden: int = 64, heads: int = 4, ffn: int = 256):
            super().__init__()
            self.input_shape = (batch, seq, hidden)
            self.heads, self.head_dim = heads, hidden // heads
            self.ln1 = nn.LayerNorm(hidden)
            self.ln2 = nn.LayerNorm(hidden)

            def weight(a, b):
                return nn.Parameter(torch.randn(a, b) / math.sqrt(a))

            def bias(n):
                return nn.Parameter(torch.randn(n) * 0.1)

            self.wq, self.bq = weight(hidden, hidden), bias(hidden)
            self.wk, self.bk = weight(hidden, hidden), bias(hidden)
            self.wv, self.bv = weight(hidden, hidden), bias(hidden)
            self.wo, self.bo = weight(hidden, hidden), bias(hidden)
            self.w1, self.b1 = weight(hidden, ffn), bias(ffn)
            self.w2, self.b2 = weight(ffn, hidden), bias(hidden)
            with torch.no_grad():
                for ln in (self.ln1, self.ln2):
                    ln.weight.normal_(1.0, 0.1)
                    ln.bias.normal_(0.0, 0.1)

        def _split_heads(self, t):
            b, s, _ = self.input_shape
            return t.reshape(b, s, self.heads, self.head_dim).transpose(1, 2)

        def forward(self, x):
            b, s, d = self.input_shape
            h = self.ln1(x)
            q = self._split_heads(h @ self.wq + self.bq)
            k = self._split_heads(h @ self.wk + self.bk)
            v = self._split_heads(h @ self.wv + self.bv)
            att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(self.head_dim)), dim=-1)
            ctx = (att @ v).transpose(1, 2).reshape(b, s, d)
            x = x + (ctx @ self.wo + self.bo)
            m = F.gelu(self.ln2(x) @ self.w1 + self.b1) @ self.w2 + self.b2
            return x + m


def build_model(name: str, seed: int = 0):
    """The PyTorch module of one verification model, with deterministic weights."""
    require_torch()
    if name not in MODEL_SPECS:
        raise ValueError(f"model must be one of {', '.join(MODEL_SPECS)}, not {name!r}")
    torch.manual_seed(seed)
    spec = MODEL_SPECS[name]
    return VerifyMLP(**spec) if name == "mlp" else VerifyTransformerBlock(**spec)


def export_onnx(module) -> bytes:
    """The module as ONNX bytes (TorchScript exporter, opset 17, fixed shapes, input ``x``)."""
    require_torch()
    buf = io.BytesIO()
    x = torch.zeros(module.input_shape)
    with warnings_silenced():
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    return buf.getvalue()


@contextlib.contextmanager
def warnings_silenced():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reference_step(module, seed: int = 1) -> dict:
    """One single-process training step: input, target, loss, output and every gradient."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(module.input_shape, generator=g)
    module.zero_grad()
    y = module(x)
    target = torch.randn(y.shape, generator=g)
    loss = ((y - target) ** 2).mean()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in module.named_parameters()}
    module.zero_grad()
    return {"x": x, "target": target, "loss": float(loss.detach()), "y": y.detach().clone(), "grads": grads}

