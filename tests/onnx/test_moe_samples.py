"""The generated mixture-of-experts samples (sample_models/build.py, never committed): parameter
counts worked out by hand and compared with the published ones, and the generator's options."""

from __future__ import annotations

import math

import onnx
import pytest
from onnx import TensorProto

from planner.onnx.importer import import_model
from sample_models import build


def float_params(model: onnx.ModelProto) -> int:
    return sum(math.prod(t.dims) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT)


def test_mixtral_8x7b_parameters_by_hand():
    h, layers, vocab = 4_096, 32, 32_000
    attention = 2 * h * h + 2 * h * 1_024  # q, o; k, v for 8 KV heads of 128
    experts = 8 * 3 * h * 14_336  # gate, up, down of 8 experts
    per_layer = attention + experts + h * 8 + 2 * h  # + router + two RMSNorms
    expected = 2 * vocab * h + layers * per_layer + h
    assert expected == 46_702_792_704  # Mixtral-8x7B's published 46.7B
    assert float_params(build.build_model("mixtral_8x7b")) == expected


def test_deepseek_moe_parameters_by_hand():
    h, layers, vocab, ffn = 2_048, 28, 102_400, 1_408
    attention = 4 * h * h
    dense_mlp = 3 * h * 10_944
    moe = 64 * 3 * h * ffn + 3 * h * (2 * ffn) + h * 64  # routed, 2 shared (one SwiGLU of 2 x 1,408), router
    expected = 2 * vocab * h + layers * (attention + 2 * h) + dense_mlp + (layers - 1) * moe + h
    assert abs(expected - 16.4e9) < 0.01 * 16.4e9  # DeepSeek-MoE-16B's published 16.4B
    assert float_params(build.build_model("deepseek_moe")) == expected


def test_the_capacity_factor_sets_the_tokens_each_expert_takes(tmp_path):
    """C = ceil(seq x top-k x factor / experts): 16 x 2 x 1.25 / 8 = 5 tokens per expert."""
    path = tmp_path / "m.onnx"
    path.write_bytes(build.build_model("mixtral_8x7b", layers=1, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=100,
                                       capacity_factor=1.25).SerializeToString())
    graph = import_model(path, {"batch": 2, "seq": 16})
    assert graph.operators["layer0.moe.experts.gate_proj"].dims == {"b0": 2, "b1": 8, "m": 5, "n": 96, "k": 64}


def test_the_generator_writes_a_generated_sample_on_request(tmp_path, capsys):
    assert build.main(["--only", "deepseek_moe", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "deepseek_moe.onnx").stat().st_size > 0
    assert "mixtral_8x7b" not in build.MODEL_NAMES  # not among the committed samples
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--only", "mixtral_8x7b", "--moe-capacity-factor", "0", "--out-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--moe-capacity-factor must be above 0" in capsys.readouterr().err
