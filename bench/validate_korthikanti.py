"""Predicted against measured: Table 5 of Korthikanti et al., "Reducing Activation Recomputation
in Large Transformer Models" (2022), a table no constant of the planner was fitted to.

    python bench/validate_korthikanti.py [--machine machines/selene.yaml] [--ceiling C] [--models 22B 175B ...] [--json OUT.json]

Each row is a hand-made configuration priced as ``python -m planner evaluate --tp --pp --dp``
would price it, on ``machines/selene.yaml`` with only the node count changed (the same file and
constants as ``bench/validate_megatron.py``, whose SC21 Table 2 the one calibrated constant,
``compute_efficiency`` 0.808, the ceiling each matrix multiply's tile and wave quantisation is
applied to, was fitted on; nothing here feeds back into it). The models are the generator's GPT
(``sample_models.synthetic.gpt_decoder``) with training-mode dropout, sequence 2048, vocabulary
51,200, bf16, Adam, data parallel 1, tensor parallel 8; two measurements per model: full
recomputation without sequence parallelism, and sequence parallelism with selective
recomputation (``--sequence-parallel --recompute selective``).

The measured iteration seconds are the paper's Table 5 (also in Calculon's validation,
``calculon/llm/validation.py``, ``seqsel_tab5``); the configurations (GPUs, pipeline stages,
interleaving, global batch, micro-batch) are those of the paper's runs as Calculon records them
(``validation/seqsel/tab5/*.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.api import PlanOptions  # noqa: E402
from planner.machine.tree import load_machine  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.search.configurations import evaluate_configuration  # noqa: E402
from sample_models.synthetic import gpt_decoder  # noqa: E402

SEQ = 2048
VOCAB = 51200
DROPOUT = 0.1
TENSOR = 8


@dataclass(frozen=True)
class Row:
    model: str
    layers: int
    hidden: int
    heads: int
    gpus: int
    pipeline: int
    interleave: int
    batch: int
    micro_batch: int
    full_seconds: float  # measured, full recomputation
    sp_selective_seconds: float  # measured, sequence parallelism + selective recomputation


ROWS = [
    Row("22B", 48, 6144, 64, 8, 1, 1, 4, 4, 1.42, 1.10),
    Row("175B", 96, 12288, 96, 64, 8, 3, 64, 1, 18.13, 13.75),
    Row("530B", 105, 20480, 128, 280, 35, 3, 280, 1, 49.05, 37.83),
    Row("1T", 128, 25600, 160, 512, 64, 1, 512, 1, 94.42, 71.49),
]


def predict(row: Row, machine_path: Path, ceiling: float | None = None) -> dict:
    proto = gpt_decoder(row.layers, row.hidden, row.heads, 4 * row.hidden, VOCAB, SEQ, dropout=DROPOUT)
    graph = import_model(proto, {"batch": 1, "seq": SEQ}, name=f"gpt_{row.model}")
    rebinder = rebinder_for(proto, name=f"gpt_{row.model}")
    graphs: dict = {}  # the model bound per batch, shared by the two configurations
    machine = load_machine(machine_path).with_level(0, arity=row.gpus // 8)
    if ceiling is not None:  # a what-if: the shipped figure is the one fitted on SC21 Table 2
        machine = machine.with_device(compute_efficiency=ceiling)
    data = row.gpus // (TENSOR * row.pipeline)
    out = {"model": row.model, "gpus": row.gpus,
           "config": f"t{TENSOR} p{row.pipeline} v{row.interleave} d{data} b{row.micro_batch} B{row.batch}"}
    for key, recompute, sp, measured in (("full", "full", False, row.full_seconds),
                                         ("sp_selective", "selective", True, row.sp_selective_seconds)):
        options = PlanOptions(algorithm="megatron", precision="bf16", recompute=recompute, zero=0,
                              interleave=row.interleave, sequence_parallel=sp, overlap_gradient_sync=False)
        result = evaluate_configuration(graph, machine, TENSOR, row.pipeline, data, row.micro_batch, row.batch,
                                        options, graphs=graphs, rebinder=rebinder)
        out[key] = {"measured_seconds": measured, "predicted_seconds": result.total_seconds,
                    "error": result.total_seconds / measured - 1, "memory_gib": result.memory.peak / 2**30,
                    "fits": result.memory.fits, "bubble_seconds": result.schedule.bubble_seconds}
    out["measured_ratio"] = row.sp_selective_seconds / row.full_seconds
    out["predicted_ratio"] = out["sp_selective"]["predicted_seconds"] / out["full"]["predicted_seconds"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", type=Path, default=ROOT / "machines" / "selene.yaml")
    parser.add_argument("--models", nargs="*", default=[r.model for r in ROWS], help="rows to price (default: all)")
    parser.add_argument("--ceiling", type=float, help="price with this compute_efficiency instead of the file's")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    print(f"{'model':5s} {'GPUs':>5} {'configuration':24s} | {'full: measured':>14} {'predicted':>9} {'error':>7} "
          f"{'memory':>9} | {'SP+selective: measured':>22} {'predicted':>9} {'error':>7} {'memory':>9} | "
          f"{'ratio measured':>14} {'predicted':>9}")
    for row in ROWS:
        if row.model not in args.models:
            continue
        r = predict(row, args.machine, args.ceiling)
        rows.append(r)
        cells = []
        for key in ("full", "sp_selective"):
            c = r[key]
            cells.append(f"{c['measured_seconds']:>{14 if key == 'full' else 22}.2f} {c['predicted_seconds']:>9.2f} "
                         f"{c['error']:>+7.1%} {c['memory_gib']:>5.1f} GiB{'' if c['fits'] else '!'}")
        print(f"{r['model']:5s} {r['gpus']:>5} {r['config']:24s} | {cells[0]} | {cells[1]} | "
              f"{r['measured_ratio']:>14.3f} {r['predicted_ratio']:>9.3f}", flush=True)
    errors = [abs(r[k]["error"]) for r in rows for k in ("full", "sp_selective")]
    ratios = [abs(r["predicted_ratio"] - r["measured_ratio"]) for r in rows]
    if rows:
        print(f"worst error {max(errors):.1%}; {sum(e <= 0.10 for e in errors)} of {len(errors)} figures within 10% "
              f"(target: all); worst ratio difference {max(ratios):.3f}, {sum(d <= 0.05 for d in ratios)} of "
              f"{len(ratios)} within 0.05 (target: all); '!' marks a predicted memory over capacity; "
              f"{time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
