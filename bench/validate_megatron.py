"""Predicted against measured: Table 2 of Narayanan et al., "Efficient Large-Scale Language Model
Training on GPU Clusters Using Megatron-LM" (SC21).

    python bench/validate_megatron.py [--machine machines/selene.yaml] [--ceiling C] [--fit] [--json OUT.json]

Every row is a hand-made configuration priced by ``python -m planner evaluate --tp --pp --dp``:
GPT-3 175B (96 layers, hidden 12288, 96 heads, sequence 2048, vocabulary 51200) and the 530B
model (105 layers, hidden 20480, 128 heads), with PTD-P (tensor 8 x pipeline 12 or 35) or ZeRO-3
data parallelism, bf16, Adam, full activation recomputation (as in the paper). The machine is
Selene: DGX A100 80GB nodes, 8 HDR InfiniBand adapters per node (machines/selene.yaml). TFLOP/s
are counted as the paper counts them, recomputation included:
``96 B s l h^2 (1 + s/(6h) + V/(16 l h))`` FLOPs per iteration, over iteration time and GPUs.

This table is the only one the A100 family's calibrated constant, the ceiling large matrix
multiplies reach (``compute_efficiency``; each operator runs at the ceiling times its tile and wave
quantisation, planner.cost.efficiency), is fitted on: ``--fit`` searches the ceiling that minimises
the root-mean-square of the log errors over all twelve rows and prints it; ``--ceiling C`` prices
the table with another ceiling.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.options import PlanOptions  # noqa: E402
from planner.search.configurations import evaluate_configuration  # noqa: E402
from planner.machine.tree import load_machine  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from sample_models.synthetic import gpt_decoder  # noqa: E402

SEQ = 2048
VOCAB = 51200
MODELS = {  # name -> (layers, hidden, heads)
    "175B": (96, 12288, 96),
    "530B": (105, 20480, 128),
}


@dataclass(frozen=True)
class Row:
    model: str
    scheme: str  # "PTD-P" or "ZeRO-3"
    gpus: int
    tensor: int
    pipeline: int
    micro_batch: int
    batch: int
    measured_tflops: float

    @property
    def data(self) -> int:
        return self.gpus // (self.tensor * self.pipeline)


ROWS = [
    Row("175B", "PTD-P", 384, 8, 12, 1, 1536, 153),
    Row("175B", "PTD-P", 768, 8, 12, 1, 1536, 149),
    Row("175B", "PTD-P", 1536, 8, 12, 1, 1536, 141),
    Row("175B", "ZeRO-3", 384, 1, 1, 4, 1536, 144),
    Row("175B", "ZeRO-3", 768, 1, 1, 2, 1536, 88),
    Row("175B", "ZeRO-3", 1536, 1, 1, 1, 1536, 44),
    Row("530B", "PTD-P", 560, 8, 35, 1, 2240, 171),
    Row("530B", "PTD-P", 1120, 8, 35, 1, 2240, 167),
    Row("530B", "PTD-P", 2240, 8, 35, 1, 2240, 159),
    Row("530B", "ZeRO-3", 640, 1, 1, 4, 2560, 138),
    Row("530B", "ZeRO-3", 1120, 1, 1, 2, 2240, 98),
    Row("530B", "ZeRO-3", 2240, 1, 1, 1, 2240, 48),
]


def paper_flops(batch: int, layers: int, hidden: int) -> float:
    """FLOPs per iteration as the paper counts them (its equation 3, recomputation included)."""
    return 96 * batch * SEQ * layers * hidden**2 * (1 + SEQ / (6 * hidden) + VOCAB / (16 * layers * hidden))


def predict(row: Row, machine_path: Path, models: dict, ceiling: float | None = None) -> dict:
    layers, hidden, heads = MODELS[row.model]
    if row.model not in models:
        proto = gpt_decoder(layers, hidden, heads, 4 * hidden, VOCAB, SEQ)
        models[row.model] = (import_model(proto, {"batch": 1, "seq": SEQ}, name=f"gpt_{row.model}"),
                             rebinder_for(proto, name=f"gpt_{row.model}"))
    nodes = row.gpus // 8
    machine = load_machine(machine_path)
    machine = machine.with_level(0, arity=nodes)
    if ceiling is not None:
        machine = machine.with_device(compute_efficiency=ceiling)
    # as the runs were made: Megatron-LM (2021) all-reduced the gradients after the backward pass;
    # DeepSpeed's ZeRO-3 prefetches the parameter gathers (planner.cost.overlap)
    options = PlanOptions(algorithm="megatron", precision="bf16", recompute="full", zero=3 if row.scheme == "ZeRO-3" else 0,
                          overlap_gradient_sync=False, prefetch_parameters=True)
    graph, rebinder = models[row.model]
    result = evaluate_configuration(graph, machine, row.tensor, row.pipeline, row.data, row.micro_batch,
                                    row.batch, options, rebinder=rebinder)
    predicted = paper_flops(row.batch, layers, hidden) / (result.total_seconds * row.gpus) / 1e12
    return {
        "model": row.model, "scheme": row.scheme, "gpus": row.gpus,
        "config": f"t{row.tensor} p{row.pipeline} d{row.data} b{row.micro_batch}",
        "measured_tflops": row.measured_tflops, "predicted_tflops": predicted,
        "error": predicted / row.measured_tflops - 1,
        "iteration_seconds": result.total_seconds, "bubble_seconds": result.schedule.bubble_seconds,
        "memory_gib": result.memory.peak / 2**30, "fits": result.memory.fits,
    }


def rms_log_error(rows: list[dict]) -> float:
    """The fit's objective: root-mean-square of log(predicted / measured) over the rows."""
    return math.sqrt(sum(math.log(1 + r["error"]) ** 2 for r in rows) / len(rows))


def fit_ceiling(machine_path: Path, models: dict, low: float = 0.6, high: float = 0.95, steps: int = 12) -> float:
    """Golden-section search of the ceiling minimising :func:`rms_log_error` over Table 2."""
    ratio = (math.sqrt(5) - 1) / 2
    cost = lambda c: rms_log_error([predict(row, machine_path, models, c) for row in ROWS])  # noqa: E731
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = cost(c), cost(d)
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = cost(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = cost(d)
        print(f"  ceiling in [{a:.4f}, {b:.4f}]", flush=True)
    return round((a + b) / 2, 3)


def report(rows: list[dict]) -> None:
    print(f"{'model':5s} {'scheme':7s} {'GPUs':>5} {'config':16s} {'measured':>9} {'predicted':>9} {'error':>7} "
          f"{'iteration':>10} {'memory':>10}")
    for r in rows:
        print(f"{r['model']:5s} {r['scheme']:7s} {r['gpus']:>5} {r['config']:16s} {r['measured_tflops']:>9.0f} "
              f"{r['predicted_tflops']:>9.1f} {r['error']:>+7.1%} {r['iteration_seconds']:>9.2f}s "
              f"{r['memory_gib']:>6.1f} GiB{'' if r['fits'] else ' (does not fit)'}")
    worst = max(abs(r["error"]) for r in rows)
    ranking = []
    for model in MODELS:
        for hybrid, zero in zip([r for r in rows if r["model"] == model and r["scheme"] == "PTD-P"],
                                [r for r in rows if r["model"] == model and r["scheme"] == "ZeRO-3"]):
            measured = hybrid["measured_tflops"] > zero["measured_tflops"]
            predicted = hybrid["predicted_tflops"] > zero["predicted_tflops"]
            ranking.append(measured == predicted)
    within = sum(abs(r["error"]) <= 0.10 for r in rows)
    print(f"worst error {worst:.1%}; median |error| {sorted(abs(r['error']) for r in rows)[len(rows) // 2]:.1%}; "
          f"rms log error {rms_log_error(rows):.3f}; {within} of {len(rows)} rows within 10% (target: all); "
          f"hybrid vs ZeRO-3 ranked right in {sum(ranking)} of {len(ranking)} pairs (target: all)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", type=Path, default=ROOT / "machines" / "selene.yaml")
    parser.add_argument("--ceiling", type=float, help="price with this compute_efficiency instead of the file's")
    parser.add_argument("--fit", action="store_true", help="fit the ceiling on this table, then price with it")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    start = time.perf_counter()
    models: dict = {}
    ceiling = args.ceiling
    if args.fit:
        ceiling = fit_ceiling(args.machine, models)
        print(f"fitted ceiling (compute_efficiency): {ceiling}")
    rows = [predict(row, args.machine, models, ceiling) for row in ROWS]
    report(rows)
    print(f"{time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
