"""Candidates for the explorer's default view (issue 15): recognised models at batches of
thousands of sequences on 16-64 nodes, each planned as the app plans it (``plan_model`` with the
app's default options, drec+ with the configuration search).

For each: the plan's configuration, its iteration against pure data parallelism (speed-up),
whether data parallelism fits, the plan's memory per device, what each level splits (by role),
and the time to plan. The default (``explorer.sources``) is chosen from this table (README,
"The explorer").

    python bench/default_candidates.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.views.overview import split_by_level  # noqa: E402
from explorer.views.pipeline import configuration_label  # noqa: E402
from planner.api import PlanOptions, plan_model  # noqa: E402
from planner.machine.tree import load_preset  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.units import format_bytes, format_seconds, format_speedup  # noqa: E402

#: (sample, batch, sequence, machine preset)
CANDIDATES = [
    ("bert_base", 2048, 128, "dgx_a100_64nodes"),  # the default before
    ("bert_large", 4096, 128, "dgx_a100_64nodes"),
    ("bert_large", 1024, 512, "h100_cluster"),
    ("gpt2_small", 2048, 1024, "dgx_a100_64nodes"),
    ("gpt2_small", 512, 1024, "ascend910_16x8"),
    ("llama3_8b", 1024, 128, "dgx_a100_64nodes"),
    ("llama3_8b", 1024, 512, "dgx_a100_64nodes"),
    ("llama3_8b", 1024, 1024, "dgx_a100_64nodes"),  # the default now
    ("llama3_8b", 512, 2048, "dgx_a100_64nodes"),
    ("llama3_8b", 2048, 1024, "dgx_a100_64nodes"),
    ("llama3_8b", 512, 4096, "dgx_a100_64nodes"),
    ("llama3_8b", 1024, 1024, "h100_cluster"),
    ("llama3_8b", 1024, 2048, "selene"),
]


def row(name: str, batch: int, seq: int, preset: str) -> str:
    path = ROOT / "sample_models" / f"{name}.onnx"
    rebinder = rebinder_for(str(path))
    graph = import_model(rebinder.model, {"batch": batch, "seq": seq}, name=name)
    machine = load_preset(preset)
    start = time.perf_counter()
    r = plan_model(graph, machine, PlanOptions(), rebinder=rebinder)
    took = time.perf_counter() - start
    dp = r.data_parallel_memory
    dp_fits = "-" if dp is None else ("yes" if dp.fits else f"no ({format_bytes(dp.peak)})")
    return (f"| {name} | {batch:,} x {seq:,} | {preset} ({machine.num_devices:,}) | {configuration_label(r)} | "
            f"{format_seconds(r.total_seconds)} | {format_seconds(r.data_parallel_seconds)} | "
            f"{format_speedup(r.speedup_over_data_parallel)} | {dp_fits} | {format_bytes(r.memory.peak)} | "
            f"{split_by_level(r)} | {took:.1f} s |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="sample names to keep")
    ap.add_argument("--case", nargs="*", default=[], help="other cases, as SAMPLE:BATCH:SEQ:PRESET")
    args = ap.parse_args()
    cases = [(n, int(b), int(s), m) for n, b, s, m in (c.split(":") for c in args.case)] or CANDIDATES
    print("| model | batch x seq | machine (devices) | configuration | plan | data parallel | speed-up | DP fits "
          "| plan memory | split by level | plan time |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | --- | ---: |")
    for name, batch, seq, preset in cases:
        if args.only and name not in args.only:
            continue
        print(row(name, batch, seq, preset), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
