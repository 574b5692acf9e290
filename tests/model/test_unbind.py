"""Dynamo's unbind of a fused QKV (Slice + Squeeze) is priced like the legacy exporter's
Split + Squeeze: a Slice reads and writes only the part it outputs, and the heads split chosen on
the QKV projection flows through it (issue 10, item 12).

The model is a ViT-like pre-norm block with timm's fused QKV:
``qkv(x).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)``; the legacy exporter writes
the unbind as Split + Squeeze, dynamo as three Slice + Squeeze. Both are the same computation, so
both must cost the same.
"""

from __future__ import annotations

import json
import warnings

import pytest

import models  # tests/models.py

DIM, HEADS = 96, 8  # 8 heads: Megatron needs the tensor size (8 GPUs) to divide them
MACHINE = "machines/dgx_a100_64nodes.yaml"


def _exports(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.export import Dim

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(DIM, 3 * DIM)
            self.proj = torch.nn.Linear(DIM, DIM)
            self.norm1, self.norm2 = torch.nn.LayerNorm(DIM), torch.nn.LayerNorm(DIM)
            self.fc1, self.fc2 = torch.nn.Linear(DIM, 4 * DIM), torch.nn.Linear(4 * DIM, DIM)

        def forward(self, x):
            b, n, c = x.shape
            qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            a = ((q @ k.transpose(-2, -1)) * (c // HEADS) ** -0.5).softmax(-1)
            x = x + self.proj((a @ v).transpose(1, 2).reshape(b, n, c))
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))

    model, x = Block().eval(), torch.randn(2, 8, DIM)
    legacy, dynamo = tmp_path / "vit_legacy.onnx", tmp_path / "vit_dynamo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(legacy), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch", 1: "seq"}})
        torch.onnx.export(model, (x,), str(dynamo), dynamo=True, input_names=["x"], verbose=False,
                          dynamic_shapes={"x": {0: Dim("batch", min=2, max=4096), 1: Dim("seq", min=2, max=4096)}})
    return legacy, dynamo


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return _exports(tmp_path_factory.mktemp("vit"))


def _plan(path, algorithm, tmp_path, capsys):
    out = tmp_path / f"{path.stem}_{algorithm}.json"
    code, _, err = models.run_cli(["plan", str(path), "--bind", "batch=512", "--bind", "seq=197", "--machine", MACHINE,
                                   "--algorithm", algorithm, "--pipeline-stages", "1", "--json", str(out)], capsys)
    assert code == 0, err
    return json.loads(out.read_text())


def test_the_exports_write_unbind_differently(vit):
    from planner.onnx.importer import import_model

    legacy, dynamo = (import_model(p, {"batch": 4, "seq": 8}).op_type_histogram() for p in vit)
    assert legacy.get("Split", 0) >= 1 and "Slice" not in legacy
    assert dynamo.get("Slice", 0) == 3 and "Split" not in dynamo


@pytest.mark.parametrize("algorithm", ["data_parallel", "drec+", "megatron"])
def test_both_exports_cost_the_same(vit, algorithm, tmp_path, capsys):
    legacy, dynamo = (_plan(p, algorithm, tmp_path, capsys) for p in vit)
    # the same computation: compute (roofline) and communication agree to rounding; 2% is the
    # acceptance bound of the issue, the compute term was 4.7% apart before Slice read only its part
    assert dynamo["iteration_seconds"] == pytest.approx(legacy["iteration_seconds"], rel=0.02)
    for key in ("compute", "communication", "redistribution"):
        assert dynamo["cost_seconds"][key] == pytest.approx(legacy["cost_seconds"][key], rel=0.005, abs=1e-9), key
