"""Planning time on GPT-3-shaped decoders: the figures issue 13 sets targets for.

Default: the rows of the issue, on the GPT-3 175B shape (hidden 12288, 96 heads, batch 1536,
sequence 2048) on 512 nodes x 8 A100 = 4,096 GPUs (``machines/a100_512x8.yaml``), each the median
of ``--repeat`` runs of :func:`planner.api.plan_model`, the entry ``python -m planner plan`` calls
(the import of the model is not counted; the search's own re-binding to micro-batches is):

* ``plan`` default (the configuration search: stages x micro-batches x recomputation x ZeRO),
  96 layers (target <= 2 s) and 192 layers, and their ratio (target <= 2.3x);
* one configuration (``--pipeline-stages 1 --micro-batches 1 --recompute none --zero 0``), 96 and
  192 layers (target <= 0.5 s at 96).

Wall seconds and the process's CPU seconds are both printed, with the target and the ratio of
the wall time to it (<= 1 meets it): on a shared machine the CPU seconds are the steadier figure.
The planner's default is the full search; ``--fold`` times the opt-in folded search
(``plan_model(..., fold_layers=True)``: repeated layers planned once, ``planner.search.folded``). ``--table`` prints instead the earlier table: the search alone
(``drec`` and ``drec+``, one configuration) against depth and device count.

    python bench/search_scaling.py [--repeat 3] [--layers 96 192] [--fold]
    python bench/search_scaling.py --table [--layers 12 24 48 96 192] [--devices 8 64 512 4096]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.api import plan_model  # noqa: E402
from planner.cost.result import cost_model_for  # noqa: E402
from planner.machine.tree import Machine, load_machine, load_preset  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.options import PlanOptions  # noqa: E402
from planner.search.folded import search_folded  # noqa: E402
from sample_models.synthetic import gpt_decoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BINDINGS = {"batch": 1536, "seq": 2048}
ONE_CONFIGURATION = PlanOptions(pipeline_stages=1, micro_batches=1, recompute="none", zero=0)
TARGETS = {("default", 96): 2.0, ("one configuration", 96): 0.5}
RATIO_TARGET = 2.3


def a100_cluster(devices: int) -> Machine:
    """nodes x 8 A100 with the 64-node DGX cluster's links (machines/dgx_a100_64nodes.yaml)."""
    base = load_preset("dgx_a100_64nodes")
    if devices <= 8:
        return Machine(f"{devices} x A100", base.device, (replace(base.levels[1], arity=devices),))
    return base.with_level(0, arity=devices // 8)


def time_plan(layers: int, options: PlanOptions, repeat: int, fold: bool = True) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``plan_model`` on a fresh graph and rebinder each run."""
    model = gpt_decoder(layers)
    machine = load_machine(ROOT / "machines" / "a100_512x8.yaml")
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        rebinder = rebinder_for(model, name=f"gpt_{layers}l")  # cold: no graph re-bound before
        graph = import_model(model, dict(BINDINGS), f"gpt_{layers}l")
        wall, cpu = time.perf_counter(), time.process_time()
        result = plan_model(graph, machine, options, rebinder=rebinder, fold_layers=fold)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def issue_rows(layers: list[int], repeat: int, fold: bool = True) -> None:
    path = "repeated layers planned once (--fold)" if fold else "full search (the default)"
    print(f"GPT-3 175B shape, batch 1536, seq 2048, 512 x 8 A100 = 4096 GPUs; median of {repeat} run(s); {path}")
    print(f"{'measure':<20} {'layers':>6} {'wall s':>8} {'cpu s':>8} {'target':>8} {'ratio':>6}  plan")
    walls: dict[tuple[str, int], float] = {}
    cpus: dict[tuple[str, int], float] = {}
    for label, options in (("default", PlanOptions()), ("one configuration", ONE_CONFIGURATION)):
        for n in layers:
            wall, cpu, r = time_plan(n, options, repeat, fold)
            walls[(label, n)], cpus[(label, n)] = wall, cpu
            s = r.schedule
            target = TARGETS.get((label, n))
            ratio = f"{wall / target:.2f}" if target else ""
            print(f"{label:<20} {n:>6} {wall:>8.2f} {cpu:>8.2f} {'<= ' + format(target, 'g') if target else '':>8} "
                  f"{ratio:>6}  {s.stages} stage(s) x {s.micro_batches} micro-batch(es), {s.recompute}/ZeRO-{s.zero}, "
                  f"iteration {r.total_seconds:.4f} s", flush=True)
    for label in ("default", "one configuration"):
        if (label, 96) in walls and (label, 192) in walls:
            ratio = walls[(label, 192)] / walls[(label, 96)]
            target = f" (target <= {RATIO_TARGET}x: ratio to target {ratio / RATIO_TARGET:.2f})" \
                if label == "default" else ""
            cpu_ratio = cpus[(label, 192)] / cpus[(label, 96)]
            print(f"{label}: 192 layers / 96 layers = {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU{target}")


def search_table(layers: list[int], devices: list[int], repeat: int, algorithms: list[str], fold: bool = True) -> None:
    """The search alone (import, cost-model set-up and evaluation not counted), one configuration."""
    print(f"{'layers':>6} {'devices':>7} {'ops':>6} " + " ".join(f"{a + ' s':>10} {a + ' ops/s':>12}" for a in algorithms))
    for n in layers:
        graph = import_model(gpt_decoder(n), dict(BINDINGS))
        for count in devices:
            row = None
            for algo in algorithms:
                runs = []
                for _ in range(repeat):
                    cm = cost_model_for(graph, a100_cluster(count), PlanOptions())  # cold caches each run
                    runs.append(search_folded(cm, algo, fold=fold).search_seconds)
                med = statistics.median(runs)
                row = row or f"{n:>6} {count:>7} {len(cm.planned):>6} "
                row += f"{med:>10.3f} {len(cm.planned) / med:>12,.0f} "
            print(row, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true", help="the search alone against depth and devices")
    ap.add_argument("--layers", type=int, nargs="+", default=None)
    ap.add_argument("--devices", type=int, nargs="+", default=[8, 64, 512, 4096])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--algorithms", nargs="+", default=["drec", "drec+"])
    ap.add_argument("--fold", action="store_true", help="the opt-in folded search: repeated layers planned once")
    args = ap.parse_args(argv)
    if args.table:
        search_table(args.layers or [12, 24, 48, 96, 192], args.devices, args.repeat, args.algorithms, args.fold)
    else:
        issue_rows(args.layers or [96, 192], args.repeat, args.fold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
