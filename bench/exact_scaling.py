"""The exact search's time and its cost ratio to drec+ on chains and trees of 10, 25 and 50
operators on 8, 16 and 64 devices (issue 13: exact, gap 0, within 60 s, never above drec+).

Chains are MLPs (Gemm + ReLU); trees are an MLP trunk whose output feeds two MLP heads; ``cnn``
is bench/quality.py's CNN chain (3-64-128-256, batch 32, 12 operators) at each device count. Machines
have nodes of 8 devices (1, 2 and 8 nodes), 25 GB/s between nodes and 300 GB/s inside. Each time is
the median of ``--repeat`` runs of the exact search (a fresh cost model each run; the drec+ run
whose plan bounds the program included).

    python bench/exact_scaling.py [--ops 10 25 50] [--devices 8 16 64] [--repeat 3] [--shapes chain tree cnn]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx import TensorProto  # noqa: E402

from planner.cost.result import cost_model_for  # noqa: E402
from planner.machine.tree import Machine  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.options import PlanOptions  # noqa: E402
from planner.search.exact_dp import dp_applies  # noqa: E402
from planner.search.registry import search  # noqa: E402
from sample_models import synthetic  # noqa: E402
from sample_models.build import GraphBuilder  # noqa: E402

WIDTHS = (1024, 4096, 2048, 512)


def chain(ops: int):
    """An MLP of about ``ops`` operators (Gemm, ReLU, ...): ``(ops + 1) // 2`` Gemm layers."""
    layers = (ops + 1) // 2
    return synthetic.mlp([WIDTHS[i % len(WIDTHS)] for i in range(layers + 1)])


def tree(ops: int):
    """A trunk MLP feeding two head MLPs (a fan-out, no reconvergence), about ``ops`` operators."""
    g = GraphBuilder("tree")
    x = g.input("input", TensorProto.FLOAT, ["batch", WIDTHS[0]])
    per_branch = max(1, (ops + 1) // 6)  # Gemm layers per branch: trunk and two heads, each Gemm + ReLU

    def branch(x, name, n, width):
        for i in range(n):
            out = WIDTHS[(i + 1) % len(WIDTHS)]
            x = g.node("Relu", [g.gemm(x, f"{name}{i}", f"{name}{i}", width, out)], f"{name}_relu{i}")
            width = out
        return x, width

    trunk, width = branch(x, "trunk", per_branch, WIDTHS[0])
    for h in range(2):
        y, w = branch(trunk, f"head{h}_", per_branch, width)
        g.output(g.gemm(y, f"head{h}_out", f"head{h}_out", w, 16), TensorProto.FLOAT, ["batch", 16])
    return g.model("synthetic tree")


def machine(devices: int) -> Machine:
    nodes = max(1, devices // 8)
    levels = ([{"name": "node", "arity": nodes, "bandwidth_Bps": 2.5e10, "latency_s": 1e-5}] if nodes > 1 else [])
    levels.append({"name": "gpu", "arity": min(devices, 8), "bandwidth_Bps": 3e11, "latency_s": 2e-6})
    return Machine.from_dict({"name": f"{devices}", "device": {"name": "dev", "peak_flops": 1e14,
                                                              "memory_bytes": 8e10}, "levels": levels})


def measure(shape: str, ops: int, devices: int, repeat: int) -> tuple[int, float, float]:
    if shape == "cnn":
        graph = import_model(synthetic.cnn_chain([3, 64, 128, 256]), {"batch": 32})
    else:
        graph = import_model((chain if shape == "chain" else tree)(ops), {"batch": 256})
    times, cost = [], None
    for _ in range(repeat):
        cm = cost_model_for(graph, machine(devices), PlanOptions())
        assert dp_applies(cm), "a chain or a tree"
        start = time.perf_counter()
        cost = cm.total_seconds(search(cm, "exact").strategies)
        times.append(time.perf_counter() - start)
    drec = cm.total_seconds(search(cm, "drec+").strategies)
    return len(cm.planned), statistics.median(times), cost / drec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--devices", type=int, nargs="+", default=[8, 16, 64])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shapes", nargs="+", choices=["chain", "tree", "cnn"], default=["chain", "tree", "cnn"])
    args = ap.parse_args(argv)
    print(f"{'graph':6s} {'ops':>4} {'devices':>7} {'exact s':>8} {'exact / drec+':>14}")
    worst_time, worst_ratio = 0.0, 0.0
    for shape in args.shapes:
        for ops in (args.ops if shape != "cnn" else [12]):
            for devices in args.devices:
                n, seconds, ratio = measure(shape, ops, devices, args.repeat)
                worst_time, worst_ratio = max(worst_time, seconds), max(worst_ratio, ratio)
                print(f"{shape:6s} {n:>4} {devices:>7} {seconds:>8.2f} {ratio:>14.6f}", flush=True)
    print(f"\nslowest {worst_time:.2f} s (target <= 60 s); largest ratio to drec+ {worst_ratio:.9f} (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
