"""Small mixture-of-experts decoders from ``sample_models/build.py`` for the expert-parallel tests.

``small_mixtral``: 2 layers, hidden 64, 4 heads (2 KV heads), 8 experts of FFN 96, top-2, vocab 100.
``small_deepseek``: 3 layers (the first dense), hidden 64, 4 heads, 16 routed experts of FFN 32,
top-4, 2 shared experts, vocab 100. Written to a file (the tests re-bind the batch through it).
"""

from __future__ import annotations

from pathlib import Path

from sample_models import build

MIXTRAL = dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=100)
DEEPSEEK = dict(layers=3, hidden=64, heads=4, ffn=128, vocab=100, experts=16, top_k=4, expert_ffn=32, shared=2)


def write(directory: Path, name: str, **shape) -> Path:
    path = Path(directory) / ("_".join([name] + [f"{k}{v}" for k, v in sorted(shape.items())]) + ".onnx")
    path.write_bytes(build.build_model(name, **shape).SerializeToString(deterministic=True))
    return path
