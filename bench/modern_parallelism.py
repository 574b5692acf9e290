"""The parallelism of today's models (issue 12): context parallelism for long sequences
(``context_rows``) and expert parallelism (``moe_rows``, the experts' part).

    python bench/modern_parallelism.py [--nodes 16 128] [--seq 8192 32768 131072] [--json OUT.json]

Context rows: the Llama-2-70B-shaped sample (``sample_models/llama2_70b.onnx``: 80 layers, hidden
8,192, 64 query / 8 KV heads) in bf16 with Adam on 16 and 128 DGX H100 nodes
(``machines/h100_cluster.yaml`` with the node count changed), at sequence 8K, 32K and 128K with
about 4M tokens per iteration (``2^22 / s`` sequences, at least one per node). Per row: the plan
``python -m planner plan`` finds (drec+, which tries context parallelism from 8K on), and the best
hand-made configuration: every ``TP 8 x PP P x DP D x CP C`` (powers of two, one sequence per
micro-batch), each on the first rung of the memory ladder (recomputation, ZeRO) that fits. Each
with its parallelism name, iteration time, memory per GPU, recomputation and ZeRO stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.api import plan_model  # noqa: E402
from planner.machine.split import stage_counts  # noqa: E402
from planner.machine.tree import load_machine  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.options import ConfigError, PlanOptions  # noqa: E402
from planner.plans.parallelism import describe  # noqa: E402
from planner.search.configurations import climb_memory_ladder, evaluate_configuration, memory_ladder  # noqa: E402
from planner.search.context_parallel import (climb_context, context_layouts, preferred,  # noqa: E402
                                             sequence_symbol)
from planner.units import format_bytes, format_seconds  # noqa: E402

LLAMA = str(ROOT / "sample_models" / "llama2_70b.onnx")
TOKENS = 2 ** 22
OPTIONS = PlanOptions(precision="bf16")


def _machine(nodes: int):
    return load_machine(str(ROOT / "machines" / "h100_cluster.yaml")).with_level("node", arity=nodes)


def _row(result) -> dict:
    return {"parallelism": describe(result)["name"], "iteration_seconds": result.total_seconds,
            "memory_bytes": result.memory.peak, "fits": result.memory.fits,
            "recompute": result.schedule.recompute, "zero": result.schedule.zero}


def hand_made(graph, machine, seq: int):
    """Every TP 8 x PP x DP x CP (powers of two; DP x CP over the nodes), one sample per micro-batch,
    each on its first rung of the memory ladder that fits; the best (fits, then fastest)."""
    rebinder = rebinder_for(LLAMA)
    batch = graph.batch_size
    results = []
    outer = machine.num_devices // 8
    for pipeline in [p for p in stage_counts(machine) if p & (p - 1) == 0 and p <= outer]:
        data = outer // pipeline
        if batch % data == 0:
            try:
                first = evaluate_configuration(graph, machine, 8, pipeline, data, 1, batch,
                                               replace(OPTIONS, algorithm="megatron", recompute="none", zero=0),
                                               rebinder=rebinder)
                results.append(climb_memory_ladder(first, memory_ladder(None, None, pipeline == 1)))
            except ConfigError:
                pass
    symbol, _ = sequence_symbol(graph)
    baseline = (results[0].data_parallel_seconds, results[0].data_parallel_memory) if results else (0.0, None)
    for layout in context_layouts(machine, seq, 64, batch):
        try:
            results.append(climb_context(graph, machine, OPTIONS, rebinder, layout, symbol, seq, baseline))
        except ConfigError:
            pass
    best = results[0]
    for r in results[1:]:
        if preferred(r, best):
            best = r
    return best, len(results)


def context_rows(nodes_list=(16, 128), seqs=(8192, 32768, 131072), on_row=None) -> list[dict]:
    """Per machine and sequence: the plan ``plan`` finds (drec+, context parallelism among its
    candidates) and the best hand-made configuration, with the seconds each took to find."""
    rows = []
    for nodes in nodes_list:
        machine = _machine(nodes)
        for seq in seqs:
            batch = max(TOKENS // seq, nodes)
            graph = import_model(LLAMA, {"batch": batch, "seq": seq})
            start = time.perf_counter()
            found = plan_model(graph, machine, OPTIONS, rebinder=rebinder_for(LLAMA))
            searched = time.perf_counter() - start
            start = time.perf_counter()
            best, priced = hand_made(graph, machine, seq)
            rows.append({"nodes": nodes, "seq": seq, "batch": batch, "found": _row(found), "search_seconds": searched,
                         "hand_made": _row(best), "hand_made_priced": priced,
                         "hand_made_seconds": time.perf_counter() - start})
            if on_row:
                on_row(rows[-1])
    return rows


def _show(row: dict) -> str:
    fits = "" if row["fits"] else " (does not fit)"
    return (f"{row['parallelism']}, {format_seconds(row['iteration_seconds'])}, "
            f"{format_bytes(row['memory_bytes'])}/GPU{fits}, recompute {row['recompute']}, ZeRO {row['zero']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--seq", type=int, nargs="+", default=[8192, 32768, 131072])
    parser.add_argument("--json", metavar="OUT.json")
    args = parser.parse_args()
    print("Llama-2-70B shape, bf16, Adam, ~4M tokens per iteration, DGX H100 nodes (8 GPUs, 80 GB)", flush=True)
    rows = context_rows(args.nodes, args.seq, on_row=_print_row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _print_row(row: dict) -> None:
    print(f"{row['nodes']:>4} nodes  seq {row['seq']:>7,}  batch {row['batch']:>4}  "
          f"plan: {_show(row['found'])} (search {row['search_seconds']:.0f} s)  |  "
          f"best hand-made of {row['hand_made_priced']}: {_show(row['hand_made'])}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
