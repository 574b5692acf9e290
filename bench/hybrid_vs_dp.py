"""Where the hybrid plan should beat pure data parallelism: predicted iteration time and memory.

``drec+`` also chooses pipeline stages, micro-batches, recomputation and ZeRO (keeping the fastest
configuration that fits); ``data_parallel`` is plain data parallelism, as it is.

    python bench/hybrid_vs_dp.py

Cases: VGG-16 (batch 64) on 2 nodes x 8 A100 with 10 Gb/s between the nodes, and the GPT-3
175B sample (batch 1536, sequence 2048, bf16) on 128 nodes x 8 A100 = 1024 devices.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.options import PlanOptions  # noqa: E402
from planner.api import plan_model
from planner.machine.tree import load_preset  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.units import format_bytes, format_seconds  # noqa: E402

CASES = [
    ("vgg16", {"batch": 64}, load_preset("a100_2x8_slow"), None),
    ("gpt3_175b", {"batch": 1536, "seq": 2048}, load_preset("dgx_a100_64nodes").with_level(0, arity=128), "bf16"),
]


def main() -> int:
    print(f"{'model':10s} {'devices':>7} {'algorithm':14s} {'iteration':>10} {'speed-up':>8} {'memory/device':>14} fits  "
          "configuration")
    for name, binds, machine, precision in CASES:
        graph = import_model(ROOT / "sample_models" / f"{name}.onnx", binds)
        for algo in ("drec+", "data_parallel"):
            r = plan_model(graph, machine, PlanOptions(algorithm=algo, precision=precision),
                           rebinder=rebinder_for(ROOT / "sample_models" / f"{name}.onnx"))
            s = r.schedule
            config = (f"{s.stages} stage(s) x {s.micro_batches} micro-batch(es), recompute {s.recompute}, "
                      f"ZeRO {s.zero}")
            print(f"{name:10s} {machine.num_devices:>7} {algo:14s} {format_seconds(r.total_seconds):>10} "
                  f"{r.speedup_over_data_parallel:>7.2f}x {format_bytes(r.memory.peak):>14} {str(r.memory.fits):5s} "
                  f"{config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
