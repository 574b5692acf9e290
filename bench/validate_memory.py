"""Memory that matches what ran: every configuration of the validation tables, priced per GPU by
part, against the 80 GB it ran in, and against the published formulas where there are some.

    python bench/validate_memory.py [--tables sc21 korthikanti llama] [--json OUT.json]

Rows (each priced as ``python -m planner evaluate`` prices it, on the project's presets):

* ``sc21``: Narayanan et al. SC21 Table 2 (``bench/validate_megatron.py``'s rows and options:
  bf16, Adam, full recomputation, Megatron-LM's PTD-P or DeepSpeed's ZeRO-3) on ``selene.yaml``.
* ``korthikanti``: Korthikanti et al. 2022 Table 5 (``bench/validate_korthikanti.py``'s rows:
  full recomputation, and sequence parallelism with selective recomputation) on ``selene.yaml``.
* ``llama``: Llama-3-8B as NVIDIA's NeMo 24.12 performance summary ran it on one DGX H100
  (8 GPUs, TP 1, PP 1, CP 2, DP 4, micro-batch 1, global batch 128, sequence 8,192, FP8, the
  distributed optimizer: ZeRO-1 over the 8 data- and context-parallel ranks; 12,273 tokens/s per
  GPU) on ``h100_cluster.yaml`` with one node. NeMo runs Transformer Engine's fused (flash)
  attention, which keeps no score matrix and recomputes the scores in its backward pass: in the
  planner's terms, selective recomputation of the attention core.

Per row, for the stage with the largest peak: weights, gradients, optimizer state, activations
(and the micro-batches in flight), the peak against the capacity, and whether it fits; then the
peak with the gradients the engine really keeps: Megatron-LM with bf16 accumulates and
all-reduces them in fp32 (``--accumulate-allreduce-grads-in-fp32``, forced on for bf16 in its
``arguments.py``: 18 bytes per parameter instead of 16); DeepSpeed's ZeRO-3 keeps 16-bit
gradients, and NeMo's FP8 performance recipes set ``grad_reduce_in_fp32 = False``. Published
figures, with the error per row, on the first stage: its model states against Rajbhandari et al.
(ZeRO, 2020: 16 bytes per parameter, ``16/N_d`` under ZeRO-3) for the parameters per GPU if the
model were split evenly (ZeRO-3's gathered parameters left out, as the formula leaves out its
buffers); its kept activations against Korthikanti et al. 2022 (Table 2: ``2 s b h`` per layer
with full recomputation, ``34 s b h / t`` with sequence parallelism and selective recomputation)
for the layers it holds, times the micro-batches in flight (``p``, or ``p (1 + (p-1)/(p v))``
interleaved: their section 4.2.3), without the layer being recomputed and the logits, which the
formulas leave out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import validate_korthikanti as vk  # noqa: E402
import validate_megatron as vm  # noqa: E402
from planner.cost.memory import zero3_working_set  # noqa: E402
from planner.machine.tree import load_machine  # noqa: E402
from planner.model.layers import find_layers  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.options import PlanOptions  # noqa: E402
from planner.search.configurations import evaluate_configuration  # noqa: E402
from planner.search.context_parallel import evaluate_context_configuration  # noqa: E402
from sample_models.synthetic import gpt_decoder  # noqa: E402

GIB = 2**30
MACHINES = ROOT / "machines"
#: Llama-3-8B in NeMo 24.12's performance summary (docs.nvidia.com/nemo-framework/user-guide/24.12/
#: nemotoolkit/performance/performance_summary.html): GPUs, GBS, MBS, sequence, TP, PP, CP, tokens/s/GPU
LLAMA3_8B_NEMO = (8, 128, 1, 8192, 1, 1, 2, 12273)


def _parts(result, row: dict, engine_grad_bytes: float, per_layer: float | None = None) -> dict:
    """The stage with the largest peak, by part, and the peak with the engine's gradients; the
    first stage's layers, its kept activations and ``per_layer`` bytes for each layer it holds per
    micro-batch in flight (Korthikanti's count), its model states without ZeRO-3's gathered ones."""
    stages = result.schedule.memory
    worst = max(range(len(stages)), key=lambda s: stages[s].peak)
    m, first = stages[worst], stages[0]
    ran = m.peak + m.gradients * (engine_grad_bytes / 2 - 1)  # the planner's gradients are 2 bytes in bf16
    cm, assignment = result.cost_model, result.schedule.assignment
    ops = [n for seg in assignment.stage_segments[0] for n in seg]
    index = find_layers(cm.graph).index
    layers = len({index[n] for n in ops if n in index})
    gathered = sum(zero3_working_set(cm, cm.complete(result.plan.strategies), ops)) if cm.zero == 3 else 0.0
    out = {**row, "stage": worst, "weights": m.parameters, "gradients": m.gradients,
           "optimizer": m.optimizer_state, "activations": m.activations, "in_flight": m.in_flight,
           "peak": m.peak, "capacity": m.capacity, "fits": m.fits, "engine_grad_bytes": engine_grad_bytes,
           "peak_as_ran": ran, "fits_as_ran": ran <= m.capacity, "iteration_seconds": result.total_seconds,
           "first_stage_layers": layers, "first_stage_kept": first.in_flight * first.kept_per_micro_batch,
           "states": first.parameters + first.gradients + first.optimizer_state - gathered}
    if per_layer is not None:
        out["kept_formula"] = per_layer * layers * first.in_flight
    return out


def _zero_formula(params: float, devices_per_copy: int, data: int, zero: int) -> float:
    """Rajbhandari et al.'s model states per GPU, mixed-precision Adam: 16 bytes per parameter."""
    per_gpu = params / devices_per_copy
    return 16 * per_gpu / data if zero == 3 else 16 * per_gpu


def sc21_rows() -> list[dict]:
    rows, models = [], {}
    for row in vm.ROWS:
        layers, hidden, heads = vm.MODELS[row.model]
        if row.model not in models:
            proto = gpt_decoder(layers, hidden, heads, 4 * hidden, vm.VOCAB, vm.SEQ)
            models[row.model] = (import_model(proto, {"batch": 1, "seq": vm.SEQ}, name=f"gpt_{row.model}"),
                                 rebinder_for(proto, name=f"gpt_{row.model}"))
        graph, rebinder = models[row.model]
        zero = 3 if row.scheme == "ZeRO-3" else 0
        options = PlanOptions(algorithm="megatron", precision="bf16", recompute="full", zero=zero,
                              overlap_gradient_sync=False, prefetch_parameters=True)
        machine = load_machine(MACHINES / "selene.yaml").with_level(0, arity=row.gpus // 8)
        result = evaluate_configuration(graph, machine, row.tensor, row.pipeline, row.data, row.micro_batch,
                                        row.batch, options, rebinder=rebinder, data_parallel=(1.0, None))
        sbh = vm.SEQ * row.micro_batch * hidden
        out = _parts(result, {"table": "SC21 T2", "model": row.model, "gpus": row.gpus,
                              "config": f"{row.scheme} t{row.tensor} p{row.pipeline} d{row.data} b{row.micro_batch}"},
                     2 if zero == 3 else 4, 2 * sbh)  # DeepSpeed ZeRO-3: 16-bit gradients; Megatron-LM bf16: fp32
        out["states_formula"] = _zero_formula(graph.parameter_count, row.tensor * row.pipeline, row.data, zero)
        rows.append(out)
    return rows


def korthikanti_rows() -> list[dict]:
    rows = []
    for row in vk.ROWS:
        proto = gpt_decoder(row.layers, row.hidden, row.heads, 4 * row.hidden, vk.VOCAB, vk.SEQ, dropout=vk.DROPOUT)
        graph = import_model(proto, {"batch": 1, "seq": vk.SEQ}, name=f"gpt_{row.model}")
        rebinder = rebinder_for(proto, name=f"gpt_{row.model}")
        machine = load_machine(MACHINES / "selene.yaml").with_level(0, arity=row.gpus // 8)
        data, graphs = row.gpus // (vk.TENSOR * row.pipeline), {}
        sbh = vk.SEQ * row.micro_batch * row.hidden
        for name, recompute, sp, per_layer in (("full", "full", False, 2 * sbh),
                                               ("SP+selective", "selective", True, 34 * sbh / vk.TENSOR)):
            options = PlanOptions(algorithm="megatron", precision="bf16", recompute=recompute, zero=0,
                                  interleave=row.interleave, sequence_parallel=sp, overlap_gradient_sync=False)
            result = evaluate_configuration(graph, machine, vk.TENSOR, row.pipeline, data, row.micro_batch, row.batch,
                                            options, graphs=graphs, rebinder=rebinder, data_parallel=(1.0, None))
            out = _parts(result, {"table": "Korthikanti T5", "model": row.model, "gpus": row.gpus,
                                  "config": f"{name} t{vk.TENSOR} p{row.pipeline} v{row.interleave} b{row.micro_batch}"},
                         4, per_layer)  # Megatron-LM with bf16: fp32 gradients
            out["states_formula"] = _zero_formula(graph.parameter_count, vk.TENSOR * row.pipeline, data, 0)
            rows.append(out)
    return rows


def llama_rows() -> list[dict]:
    gpus, batch, micro, seq, tensor, pipeline, context, tokens = LLAMA3_8B_NEMO
    path = ROOT / "sample_models" / "llama3_8b.onnx"
    graph = import_model(path, {"batch": micro, "seq": seq})
    machine = load_machine(MACHINES / "h100_cluster.yaml").with_level(0, arity=gpus // 8)
    data = gpus // (tensor * pipeline * context)
    options = PlanOptions(algorithm="megatron", precision="fp8", recompute="selective", zero=1)
    result = evaluate_context_configuration(graph, machine, tensor, pipeline, data, context, micro, batch, options,
                                            rebinder=rebinder_for(path))
    out = _parts(result, {"table": "NeMo 24.12", "model": "Llama-3-8B", "gpus": gpus,
                          "config": f"FP8 t{tensor} p{pipeline} c{context} d{data} b{micro} B{batch} s{seq}"},
                 2)  # NeMo's FP8 recipes: grad_reduce_in_fp32 = False
    out["measured_iteration_seconds"] = batch * seq / (tokens * gpus)
    return [out]


TABLES = {"sc21": sc21_rows, "korthikanti": korthikanti_rows, "llama": llama_rows}


def _error(row: dict, ours: str, formula: str) -> str:
    if formula not in row:
        return f"{'-':>15}"
    return f"{row[formula] / GIB:7.1f} {row[ours] / row[formula] - 1:+7.1%}"


def print_rows(rows: list[dict]) -> None:
    print(f"{'table':14s} {'model':10s} {'GPUs':>5} {'configuration':34s} {'stage':>5} | {'weights':>7} {'grads':>6} "
          f"{'optim':>6} {'activ':>6} {'in flight':>9} | {'peak':>6} {'of':>5} fits | {'as ran':>6} fits | "
          f"{'ZeRO formula':>15} | {'layers':>6} {'Korthikanti':>15}")
    for r in rows:
        print(f"{r['table']:14s} {r['model']:10s} {r['gpus']:>5} {r['config']:34s} {r['stage']:>5} | "
              f"{r['weights'] / GIB:7.1f} {r['gradients'] / GIB:6.1f} {r['optimizer'] / GIB:6.1f} "
              f"{r['activations'] / GIB:6.1f} {r['in_flight']:9.2f} | {r['peak'] / GIB:6.1f} {r['capacity'] / GIB:5.1f} "
              f"{'yes' if r['fits'] else 'NO ':4s} | {r['peak_as_ran'] / GIB:6.1f} {'yes' if r['fits_as_ran'] else 'NO ':4s} | "
              f"{_error(r, 'states', 'states_formula')} | {r['first_stage_layers']:>6} "
              f"{_error(r, 'first_stage_kept', 'kept_formula')}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [r for t in args.tables for r in TABLES[t]()]
    print("GiB per GPU, the stage with the largest peak; 'as ran': with the engine's gradient precision; "
          "formula columns: the published figure and the planner's error against it")
    print_rows(rows)
    fits = sum(r["fits_as_ran"] for r in rows)
    print(f"{fits} of {len(rows)} configurations predicted to fit as they ran; {time.perf_counter() - start:.0f} s")
    for r in rows:
        if "measured_iteration_seconds" in r:
            print(f"{r['model']}: iteration predicted {r['iteration_seconds']:.2f} s, measured "
                  f"{r['measured_iteration_seconds']:.2f} s ({r['iteration_seconds'] / r['measured_iteration_seconds'] - 1:+.0%})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
