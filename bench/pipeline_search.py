"""D-Rec with pipeline stages against every hand-made configuration: GPT-3 175B on 1024 A100.

    python bench/pipeline_search.py [--runs 3] [--nodes 128]

The GPT-3 175B sample (batch 1536, sequence 2048, bf16, Adam) on machines/selene.yaml with 128
nodes x 8 A100 80GB. Prints the configuration search's time (median of ``--runs``) and plan for
``--algorithm drec`` and ``drec+``, then the best hand-made (tensor, pipeline, data, micro-batch)
configurations found by enumerating them all with the evaluator, and the ratio of throughputs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.options import PlanOptions  # noqa: E402
from planner.api import plan_model
from planner.search.configurations import enumerate_configurations  # noqa: E402
from planner.machine.tree import load_machine  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.units import format_bytes, format_seconds  # noqa: E402

BATCH = 1536


def describe(result) -> str:
    s = result.schedule
    tf = s.tflops_per_device()
    return (f"{s.stages:>3} stages x {s.micro_batches:>4} micro-batches, recompute {s.recompute:9s} ZeRO {s.zero}: "
            f"{format_seconds(result.total_seconds):>8} per iteration, {tf['model']:6.1f} TFLOP/s per GPU (model), "
            f"{format_bytes(result.memory.peak):>9} per GPU, {'fits' if result.memory.fits else 'does NOT fit'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=128)
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    machine = load_machine(ROOT / "machines" / "selene.yaml").with_level(0, arity=args.nodes)
    graph = import_model(ROOT / "sample_models" / "gpt3_175b.onnx", {"batch": BATCH, "seq": 2048})
    rebinder = rebinder_for(ROOT / "sample_models" / "gpt3_175b.onnx")
    print(f"GPT-3 175B, batch {BATCH}, on {machine.summary()}")
    found = {}
    for algorithm in ("drec", "drec+"):
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            result = plan_model(graph, machine, PlanOptions(algorithm=algorithm, precision="bf16"), rebinder=rebinder)
            times.append(time.perf_counter() - start)
        found[algorithm] = result
        print(f"{algorithm:6s} search {statistics.median(times):5.2f} s (median of {args.runs}; "
              f"{len(result.tried)} configurations priced): {describe(result)}")
    start = time.perf_counter()
    hand = enumerate_configurations(graph, machine, BATCH, PlanOptions(algorithm="megatron", precision="bf16"),
                                    rebinder=rebinder)
    print(f"hand-made: {len(hand)} configurations enumerated in {time.perf_counter() - start:.0f} s, "
          f"{sum(r.memory.fits for r in hand)} fit; the fastest:")
    for r in hand[:args.top]:
        print(f"  {r.plan.algorithm.removeprefix('hand-made: '):34s} b={r.schedule.micro_batch_size // max(1, r.split.stage_machine.num_devices // _tensor(r)):<2} {describe(r)}")
    best = next((r for r in hand if r.memory.fits), None)
    if best is not None:
        for algorithm, result in found.items():
            ratio = best.total_seconds / result.total_seconds
            print(f"{algorithm} predicts {ratio:.3f}x the throughput of the best hand-made configuration")
    return 0


def _tensor(result) -> int:
    levels = result.split.stage_machine.levels
    t = 1
    for i in result.split.tensor_levels:
        t *= levels[i].arity
    return t


if __name__ == "__main__":
    sys.exit(main())
