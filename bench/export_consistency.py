"""Do the two PyTorch exporters give the planner the same model? Per family of the real-export corpus.

Each family of ``tests/real_exports.py`` (tiny GPT-2, Llama with grouped-query attention, Mixtral,
BERT, T5, ViT from ``transformers`` configs, ``nn.MultiheadAttention`` with batch_first True and
False) is exported by the TorchScript (``dynamo=False``) and the dynamo exporter with a symbolic
batch and sequence, stripped of its weights, and planned with the default ``plan`` command. The
table shows, per exporter, parameters (and torch's own count), forward FLOPs, the pure
data-parallel baseline and the default plan's iteration time, and the relative difference
between the exporters (|a - b| / max(a, b)).

    python bench/export_consistency.py                       # dgx_a100_64nodes, batch 512, seq 128
    python bench/export_consistency.py --machine machines/dgx_a100.yaml --batch 16 --families gpt2 llama

The TorchScript exporter bakes the example sequence length (8) into nn.MultiheadAttention's key
reshape although the axis is declared dynamic, so its ``mha_*`` rows are right only at ``--seq 8``.

Needs torch, onnxscript and transformers (requirements-test.txt); builds everything, downloads nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from planner.cli.common import positive_int  # noqa: E402
from planner.errors import PlannerError  # noqa: E402
from planner.api import PlanOptions, plan_model  # noqa: E402
from planner.machine.tree import load_machine  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.units import format_seconds  # noqa: E402

FAMILIES = ("gpt2", "llama", "mixtral", "bert", "t5", "vit", "mha_batch_first", "mha_seq_first")
EXPORTERS = ("torchscript", "dynamo")


def _relative(a: float, b: float) -> str:
    if max(abs(a), abs(b)) == 0:
        return "0.0%"
    return f"{100 * abs(a - b) / max(abs(a), abs(b)):.1f}%"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--machine", default=str(ROOT / "machines" / "dgx_a100_64nodes.yaml"), metavar="X.yaml")
    p.add_argument("--batch", type=positive_int, default=512)
    p.add_argument("--seq", type=positive_int, default=128)
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES), metavar="FAMILY",
                   help="any of " + ", ".join(FAMILIES))
    args = p.parse_args(argv)
    if not Path(args.machine).is_file():
        print(f"error: machine file not found: {args.machine} (presets are in machines/)", file=sys.stderr)
        return 2
    try:
        from real_exports import Corpus
    except ImportError as exc:
        print(f"error: {exc.name} is not installed: pip install -r requirements-test.txt", file=sys.stderr)
        return 2
    try:
        machine = load_machine(args.machine)
    except PlannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"machine {machine.summary()}; batch {args.batch}, seq {args.seq}; default plan (drec+, train)")
    header = (f"{'family':16s} {'exporter':11s} {'params':>8} {'torch':>8} {'FLOPs/fwd':>10} "
              f"{'data par.':>10} {'plan':>10}  note")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Corpus(tmp)
        print(header)
        for family in args.families:
            rows = {}
            for exporter in EXPORTERS:
                try:
                    export = corpus.get(family, exporter)
                    graph = import_model(export.path, export.bindings(args.batch, args.seq))
                    start = time.perf_counter()
                    result = plan_model(graph, machine, PlanOptions())
                    rows[exporter] = (graph.parameter_count, export.torch_parameters, graph.summary()["flops_forward"],
                                      result.data_parallel_seconds, result.total_seconds,
                                      f"search {time.perf_counter() - start:.1f} s")
                except Exception as exc:  # noqa: BLE001 - a row per failure, the table goes on
                    rows[exporter] = None
                    print(f"{family:16s} {exporter:11s} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
                    continue
                params, torch_params, flops, dp, plan, note = rows[exporter]
                print(f"{family:16s} {exporter:11s} {params:>8,} {torch_params:>8,} {flops:>10.4g} "
                      f"{format_seconds(dp):>10} {format_seconds(plan):>10}  {note}")
            if all(rows.values()):
                a, b = rows["torchscript"], rows["dynamo"]
                print(f"{family:16s} {'difference':11s} {_relative(a[0], b[0]):>8} {'':>8} {_relative(a[2], b[2]):>10} "
                      f"{_relative(a[3], b[3]):>10} {_relative(a[4], b[4]):>10}")
        if any(f.startswith("mha") for f in args.families) and args.seq != 8:
            print("note: the TorchScript mha_* files are right only at --seq 8 (the exporter bakes the example length in)")
        print(f"exports took {corpus.seconds:.1f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
