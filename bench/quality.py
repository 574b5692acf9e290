"""Plan quality: D-Rec (thesis), the default drec+ and data parallelism against the exact optimum.

Runs a fixed set of small named cases (MLPs, CNN chains, transformer blocks on one- and
two-level machines with slow and fast links) plus random ones, and prints each algorithm's
cost ratio to the optimum (1.000 = optimal), then per algorithm the share of cases within 5%
of the optimum, the median and the worst ratio.

    python bench/quality.py [--random 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.options import PlanOptions  # noqa: E402
from planner.cost.result import cost_model_for
from planner.search.registry import search
from planner.machine.tree import Machine  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.search.exact import SearchTooLargeError  # noqa: E402
from sample_models import synthetic  # noqa: E402

ALGORITHMS = ("drec", "drec+", "data_parallel")


def machine(levels: list[tuple[str, int, float]], flops: float = 1e14) -> Machine:
    return Machine.from_dict({
        "name": "bench", "device": {"name": "dev", "peak_flops": flops, "memory_bytes": 8e10},
        "levels": [{"name": n, "arity": a, "bandwidth_Bps": b, "latency_s": 1e-5 if b < 5e10 else 2e-6}
                   for n, a, b in levels]})


def named_cases():
    fast8 = machine([("gpu", 8, 3e11)])
    slow2x4 = machine([("node", 2, 1.25e9), ("gpu", 4, 3e11)])
    mid2x2 = machine([("node", 2, 2.5e10), ("gpu", 2, 3e11)])
    yield "mlp 1024-4096-4096-1024 b64 on 8 fast", synthetic.mlp([1024, 4096, 4096, 1024]), {"batch": 64}, fast8
    yield "mlp 1024-4096-4096-1024 b64 on 2x4 slow", synthetic.mlp([1024, 4096, 4096, 1024]), {"batch": 64}, slow2x4
    yield "mlp 256-256-256 b4096 on 2x4 slow", synthetic.mlp([256, 256, 256]), {"batch": 4096}, slow2x4
    yield "mlp 8192-8192 b8 on 2x2", synthetic.mlp([8192, 8192, 8192]), {"batch": 8}, mid2x2
    yield "cnn 3-64-128-256 b32 on 8 fast", synthetic.cnn_chain([3, 64, 128, 256]), {"batch": 32}, fast8
    yield "cnn 3-64-128-256 b32 on 2x4 slow", synthetic.cnn_chain([3, 64, 128, 256]), {"batch": 32}, slow2x4
    yield "cnn 3-32-64 b8 on 2x2", synthetic.cnn_chain([3, 32, 64], size=64), {"batch": 8}, mid2x2
    yield "transformer h256 b8 s128 on 4", synthetic.transformer(1, 256, 4, 1024), {"batch": 8, "seq": 128}, machine([("gpu", 4, 3e11)])
    yield "transformer h512 b4 s128 on 2x2", synthetic.transformer(1, 512, 8, 2048), {"batch": 4, "seq": 128}, mid2x2
    yield "transformer h1024 b2 s64 on 2x2 slow", synthetic.transformer(1, 1024, 8, 4096), {"batch": 2, "seq": 64}, \
        machine([("node", 2, 1.25e9), ("gpu", 2, 3e11)])
    yield "2 transformer blocks h256 b8 s64 on 4", synthetic.transformer(2, 256, 4, 1024), {"batch": 8, "seq": 64}, machine([("gpu", 4, 1e11)])
    sample_mlp = ROOT / "sample_models" / "mlp.onnx"  # found in review: needs joint moves over two cuts
    for batch, levels in ((12, [("gpu", 4, 1e11)]), (32, [("gpu", 4, 1e11)]), (32, [("gpu", 8, 3e11)]),
                          (128, [("node", 2, 1.25e9), ("gpu", 4, 3e11)])):
        label = "x".join(str(a) for _, a, _ in levels)
        yield f"sample mlp b{batch} on {label}", sample_mlp.read_bytes(), {"batch": batch}, machine(levels)


def random_cases(n: int, seed: int):
    for s in range(seed, seed + n):
        label, model, binds, md = synthetic.random_case(s)
        yield label, model, binds, Machine.from_dict(md)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=20, help="number of random cases")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ratios = {a: [] for a in ALGORITHMS}
    print(f"{'case':56s} {'ops':>4} " + " ".join(f"{a:>13}" for a in ALGORITHMS))
    for label, model, binds, mach in [*named_cases(), *random_cases(args.random, args.seed)]:
        cm = cost_model_for(import_model(model, binds), mach, PlanOptions())
        try:
            optimum = cm.total_seconds(search(cm, "exact").strategies)
        except SearchTooLargeError:
            print(f"{label:56s} skipped: too large for the exact search")
            continue
        row = f"{label:56s} {len(cm.planned):>4} "
        for algo in ALGORITHMS:
            r = cm.total_seconds(search(cm, algo).strategies) / optimum
            ratios[algo].append(r)
            row += f"{r:>13.3f}"
        print(row, flush=True)
    n = len(ratios[ALGORITHMS[0]])
    print(f"\n{n} cases; cost ratio to the exact optimum:")
    for algo in ALGORITHMS:
        rs = ratios[algo]
        within = sum(r <= 1.05 for r in rs)
        print(f"  {algo:14s} within 5%: {within}/{n} ({100 * within / n:.0f}%)  median {statistics.median(rs):.3f}  worst {max(rs):.3f}")
    worse = sum(a > b * (1 + 1e-9) for a, b in zip(ratios["drec+"], ratios["data_parallel"]))
    print(f"  drec+ worse than data_parallel in {worse}/{n} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
