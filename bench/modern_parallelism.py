"""The parallelism of today's models (issue 12): context parallelism for long sequences
(``context_rows``) and expert parallelism (``moe_rows``, the experts' part).

    python bench/modern_parallelism.py [--nodes 16 128] [--seq 8192 32768 131072] [--json OUT.json]

Context rows: the Llama-2-70B-shaped sample (``sample_models/llama2_70b.onnx``: 80 layers, hidden
8,192, 64 query / 8 KV heads) in bf16 with Adam, selective recomputation and ZeRO-1, on 16 and 128
DGX H100 nodes (``machines/h100_cluster.yaml`` with the node count changed), at sequence 8K, 32K
and 128K, a global batch of about 4M tokens (``2^22 / s`` sequences, at least one per data-parallel
rank), micro-batch 1. Each row prices every hand-made ``TP 8 x PP P x DP D x CP C`` on the machine
(``P`` up to 16, ``C`` up to 16) with ``python -m planner evaluate``'s code and prints the best
without CP and the best overall: its parallelism name, iteration time and memory per GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.machine.tree import load_machine  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.options import ConfigError, PlanOptions  # noqa: E402
from planner.plans.parallelism import describe  # noqa: E402
from planner.search.configurations import evaluate_configuration  # noqa: E402
from planner.search.context_parallel import evaluate_context_configuration  # noqa: E402
from planner.units import format_bytes, format_seconds  # noqa: E402

LLAMA = str(ROOT / "sample_models" / "llama2_70b.onnx")
TOKENS = 2 ** 22
OPTIONS = PlanOptions(algorithm="megatron", precision="bf16", recompute="selective", zero=1)


def _price(nodes: int, seq: int, pp: int, cp: int):
    machine = load_machine(str(ROOT / "machines" / "h100_cluster.yaml")).with_level("node", arity=nodes)
    dp = machine.num_devices // (8 * pp * cp)
    batch = max(dp, TOKENS // seq)
    graph = import_model(LLAMA, {"batch": 1, "seq": seq})
    if cp == 1:
        return evaluate_configuration(graph, machine, 8, pp, dp, 1, batch, OPTIONS, rebinder=rebinder_for(LLAMA))
    return evaluate_context_configuration(graph, machine, 8, pp, dp, cp, 1, batch, OPTIONS, rebinder=rebinder_for(LLAMA))


def _row(result) -> dict:
    return {"parallelism": describe(result)["name"], "iteration_seconds": result.total_seconds,
            "memory_bytes": result.memory.peak, "fits": result.memory.fits}


def context_rows(nodes_list=(16, 128), seqs=(8192, 32768, 131072)) -> list[dict]:
    rows = []
    for nodes in nodes_list:
        for seq in seqs:
            priced = []
            for pp in (1, 2, 4, 8, 16):
                for cp in (1, 2, 4, 8, 16):
                    if nodes % (pp * cp):
                        continue
                    try:
                        priced.append((cp, _price(nodes, seq, pp, cp)))
                    except ConfigError:
                        continue
            best = _best([r for _, r in priced])
            best_no_cp = _best([r for cp, r in priced if cp == 1])
            rows.append({"nodes": nodes, "seq": seq, "best": _row(best), "best_without_cp": _row(best_no_cp)})
    return rows


def _best(results):
    fitting = [r for r in results if r.memory.fits]
    return min(fitting, key=lambda r: r.total_seconds) if fitting else min(results, key=lambda r: r.memory.peak)


def _show(row: dict) -> str:
    fits = "" if row["fits"] else " (does not fit)"
    return (f"{row['parallelism']}, {format_seconds(row['iteration_seconds'])}, "
            f"{format_bytes(row['memory_bytes'])}/GPU{fits}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--seq", type=int, nargs="+", default=[8192, 32768, 131072])
    parser.add_argument("--json", metavar="OUT.json")
    args = parser.parse_args()
    rows = context_rows(args.nodes, args.seq)
    print("Llama-2-70B shape, bf16, selective recomputation, ZeRO-1, H100 nodes of 8; TP 8 x PP x DP x CP")
    for row in rows:
        print(f"{row['nodes']:>4} nodes  seq {row['seq']:>7,}  best: {_show(row['best'])}  |  "
              f"best without CP: {_show(row['best_without_cp'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
