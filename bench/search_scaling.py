"""Search time of D-Rec on GPT-style decoders (GPT-3 175B layer shape) against depth and devices.

Prints one row per (layers, devices): operators, search seconds (median of --repeat runs; the
search alone: import, cost-model set-up and evaluation are not counted) and operators per
second, for the thesis's `drec` and the default `drec+`; then the linearity ratio 192/96 layers.

    python bench/search_scaling.py [--layers 12 24 48 96 192] [--devices 8 64 512 4096] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.options import PlanOptions  # noqa: E402
from planner.cost.result import cost_model_for
from planner.search.registry import search
from planner.machine.tree import Machine, load_preset  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from sample_models.synthetic import gpt_decoder  # noqa: E402


def a100_cluster(devices: int) -> Machine:
    """nodes x 8 A100 with the 64-node DGX cluster's links (machines/dgx_a100_64nodes.yaml)."""
    base = load_preset("dgx_a100_64nodes")
    if devices <= 8:
        return Machine(f"{devices} x A100", base.device, (replace(base.levels[1], arity=devices),))
    return base.with_level(0, arity=devices // 8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[12, 24, 48, 96, 192])
    ap.add_argument("--devices", type=int, nargs="+", default=[8, 64, 512, 4096])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--algorithms", nargs="+", default=["drec", "drec+"])
    args = ap.parse_args(argv)
    print(f"{'layers':>6} {'devices':>7} {'ops':>6} " + " ".join(f"{a + ' s':>10} {a + ' ops/s':>12}" for a in args.algorithms))
    times: dict[tuple, float] = {}
    for layers in args.layers:
        graph = import_model(gpt_decoder(layers), {"batch": 1536, "seq": 2048})
        for devices in args.devices:
            cm = cost_model_for(graph, a100_cluster(devices), PlanOptions())
            row = f"{layers:>6} {devices:>7} {len(cm.planned):>6} "
            for algo in args.algorithms:
                runs = []
                for _ in range(args.repeat):
                    cm = cost_model_for(graph, a100_cluster(devices), PlanOptions())  # cold caches each run
                    runs.append(search(cm, algo).search_seconds)
                med = statistics.median(runs)
                times[(algo, layers, devices)] = med
                row += f"{med:>10.3f} {len(cm.planned) / med:>12,.0f} "
            print(row, flush=True)
    for algo in args.algorithms:
        for devices in args.devices:
            if (algo, 96, devices) in times and (algo, 192, devices) in times:
                print(f"{algo}: 192 layers / 96 layers on {devices} devices = "
                      f"{times[(algo, 192, devices)] / times[(algo, 96, devices)]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
