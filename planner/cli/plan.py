"""``plan MODEL.onnx --machine X.yaml``: search a parallel plan and print its cost."""

from __future__ import annotations

from pathlib import Path

from planner.cli.common import (add_memory_args, add_planning_args, capacity_note, load_graph, load_machine,
                                model_bindings, plan_options, positive_int, rebinder_of, write_json)
from planner.cli.output import print_result
from planner.units import format_seconds


def add_parser(sub) -> None:
    from planner.options import ALGORITHMS, DEFAULT_ALGORITHM

    sp = sub.add_parser("plan", help="search a parallel plan and print its cost")
    add_planning_args(sp)
    sp.add_argument("--algorithm", choices=list(ALGORITHMS), default=DEFAULT_ALGORITHM,
                    help="; ".join(f"{k}: {v}" for k, v in ALGORITHMS.items()))
    sp.add_argument("--pipeline-stages", type=positive_int, metavar="N",
                    help="pipeline stages over the outermost machine levels (default: drec/drec+ try the counts "
                         "that make sense; other algorithms 1)")
    sp.add_argument("--micro-batches", type=positive_int, metavar="M",
                    help="micro-batches per iteration; must divide the batch (default: chosen with the stages)")
    add_memory_args(sp)
    sp.set_defaults(func=run)


def run(args) -> int:
    from planner.api import plan_model
    from planner.onnx.importer import model_sha256
    from planner.plans.report import plan_to_json

    graph = load_graph(args)
    result = plan_model(graph, load_machine(args.machine), plan_options(args), rebinder=rebinder_of(args))
    capacity_note(args, result)
    print_result(result, Path(args.model).name, f"search {format_seconds(result.plan.search_seconds)}")
    write_json(args.json, plan_to_json(result, Path(args.model).name, model_sha256(args.model),
                                       model_bindings(args.model, args)))
    return 0
