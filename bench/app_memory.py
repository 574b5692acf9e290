"""Memory of the explorer's server across uploads (issue 16 item 3).

30 ONNX models of 9-69 MB (MLPs with real float32 weights) go through what the Model page's
uploader calls (``explorer.upload.accept_upload``: weights dropped, dimensions bound, graph
imported into the shared ``PlanCache``) and are then planned as the app plans them (default
machine and options), one after another in one process, as on a server. Prints the resident set
size (RSS, /proc/self/statm) after each, and its growth over the start (taken after one small
upload, when the libraries are loaded). Target: within 300 MB of the start.

    python bench/app_memory.py [--uploads 30]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer import upload as app_upload  # noqa: E402
from explorer.cache import PlanCache, PlanRequest  # noqa: E402
from explorer.options import DEFAULT_OPTIONS  # noqa: E402
from explorer.sources import DEFAULT_MACHINE  # noqa: E402
from planner.machine.tree import load_preset  # noqa: E402

WIDTH = 1536  # one layer's weight: 1536 x 1536 float32 = 9.4 MB
MB = 2**20


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def mlp_bytes(layers: int, seed: int) -> bytes:
    """An MLP of ``layers`` Gemm layers with real (random) float32 weights, batch symbolic."""
    rng = np.random.default_rng(abs(seed))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])
    nodes, inits, cur = [], [], "x"
    for i in range(layers):
        w = rng.standard_normal((WIDTH, WIDTH), dtype=np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}"], [out], name=f"layers.{i}.fc"))
        cur = out
    graph = helper.make_graph(nodes, f"mlp{seed}", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=30)
    args = parser.parse_args()
    cache = PlanCache()
    machine = load_preset(DEFAULT_MACHINE)
    options = DEFAULT_OPTIONS

    def upload(i: int, layers: int) -> tuple[int, float]:
        data = mlp_bytes(layers, seed=i)
        size = len(data)
        t0 = time.perf_counter()
        source, small, bindings = app_upload.accept_upload(f"model{i}.onnx", data, cache, {"batch": 256})
        del data
        graph = cache.graph(source, bindings, small)
        cache.result(PlanRequest(source, bindings, machine, options), graph)
        return size, time.perf_counter() - t0

    upload(1000, 1)  # load the libraries
    gc.collect()
    start = rss_mb()
    print(f"start: RSS {start:.0f} MB (after one upload)")
    total = peak = 0.0
    for i in range(args.uploads):
        layers = 1 + i % 7  # 9.4 to 66 MB
        size, seconds = upload(i, layers)
        total += size
        now = rss_mb()
        peak = max(peak, now - start)
        print(f"upload {i + 1:2d}: {size / 1e6:5.1f} MB in {seconds:4.1f} s, RSS {now:6.0f} MB "
              f"(+{now - start:4.0f} MB), cache {sum(cache.bytes_held().values()) / MB:5.1f} MB")
    gc.collect()
    end = rss_mb()
    print(f"{args.uploads} uploads, {total / 1e9:.2f} GB in all: RSS grew {end - start:+.0f} MB "
          f"(at most +{peak:.0f} MB on the way); target: within 300 MB of the start")


if __name__ == "__main__":
    main()
