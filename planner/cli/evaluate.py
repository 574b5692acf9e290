"""``evaluate MODEL.onnx --machine X.yaml --plan PLAN.json`` (score a plan file as written) or
``--tp T --pp P --dp D [--ep E] --micro-batch-size b --global-batch B`` (price a hand-made
Megatron-style configuration, with expert parallelism on mixture-of-experts models). Neither searches anything."""

from __future__ import annotations

from pathlib import Path

from planner.cli.common import (UsageError, add_memory_args, add_planning_args, capacity_note, load_graph,
                                load_machine, model_bindings, parse_bindings, plan_options, positive_int, rebinder_of,
                                write_json)
from planner.cli.output import print_result
from planner.onnx.importer import model_sha256
from planner.options import PlanOptions
from planner.plans.parallelism import describe, recorded_name
from planner.plans.plan_json import OVERRIDABLE, merge_recorded_options, plan_bindings, read_plan_file

HAND_MADE = ("tp", "pp", "dp", "micro_batch_size", "global_batch")

#: What ``evaluate`` takes for an option that neither the command line nor the plan file gives.
DEFAULTS = {"mode": "train", "precision": None, "optimizer": "adam", "recompute": None, "zero": None,
            "interleave": 1, "bucket_mb": None}


def add_parser(sub) -> None:
    sp = sub.add_parser("evaluate", help="score a plan file, or a hand-made tensor x pipeline x data configuration")
    add_planning_args(sp, defaults=False)
    sp.add_argument("--plan", metavar="PLAN.json",
                    help='{"ops": [{"name": ..., "cuts": [[level, dim, factor], ...]} or {"name": ..., "splits": {dim: f}}]}')
    hand = sp.add_argument_group("hand-made configuration (transformers; instead of --plan)")
    hand.add_argument("--tp", type=positive_int, metavar="T", help="tensor-parallel size (innermost devices)")
    hand.add_argument("--pp", type=positive_int, metavar="P", help="pipeline stages (outermost devices)")
    hand.add_argument("--dp", type=positive_int, metavar="D", help="data-parallel size; T x P x D = devices")
    hand.add_argument("--micro-batch-size", type=positive_int, metavar="b",
                      help="samples per micro-batch per data-parallel rank")
    hand.add_argument("--global-batch", type=positive_int, metavar="B",
                      help="samples per iteration; B / (b x D) micro-batches")
    hand.add_argument("--cp", type=positive_int, metavar="C", default=1,
                      help="context-parallel size (ring attention over the sequence, zig-zag chunks; 2C must divide "
                           "the sequence); T x P x D x C = devices (default 1)")
    hand.add_argument("--ep", type=positive_int, metavar="E", default=None,
                      help="expert-parallel size (mixture-of-experts models): the experts split over E of the D "
                           "data-parallel ranks (of the D x C data- and context-parallel ranks with --cp, as "
                           "Megatron-LM); E divides D (D x C) and every MoE layer's experts")
    add_memory_args(hand)
    hand.add_argument("--sequence-parallel", action="store_true",
                      help="sequence parallelism (Korthikanti et al. 2022): LayerNorm, dropout and residual regions "
                           "split on the sequence over the tensor-parallel ranks; all-reduces become reduce-scatter "
                           "+ all-gather (same bytes)")
    sp.set_defaults(func=run)


def run(args) -> int:
    given = [k for k in HAND_MADE if getattr(args, k) is not None]
    if args.plan is None:
        if len(given) != len(HAND_MADE):
            missing = ", ".join("--" + k.replace("_", "-") for k in HAND_MADE if getattr(args, k) is None)
            raise UsageError("give a plan file (--plan PLAN.json) or a hand-made configuration: "
                             f"--tp T --pp P --dp D --micro-batch-size b --global-batch B (missing: {missing})")
        return run_hand_made(args)
    if given or args.ep is not None or args.cp != 1:
        raise UsageError("--plan scores a plan file as written; drop --tp/--pp/--dp/--ep/--cp/--micro-batch-size/"
                         "--global-batch (or drop --plan to evaluate a hand-made configuration)")
    return run_plan_file(args)


def run_plan_file(args) -> int:
    from planner.api import evaluate_plan
    from planner.plans.report import plan_to_json

    data = read_plan_file(args.plan)
    given = {key: getattr(args, key) for key in OVERRIDABLE}  # the plan's own settings, unless overridden
    options, notes = merge_recorded_options(data, PlanOptions(), given)
    if isinstance(data.get("bindings"), dict):
        args.plan_bindings = plan_bindings(data, f"plan file {args.plan}")
    graph = load_graph(args)
    result = evaluate_plan(graph, load_machine(args.machine), data, options, rebinder=rebinder_of(args))
    result.notes.extend(notes)
    recorded = recorded_name(data)  # an output of plan --json: only compared, never trusted
    if recorded is not None and recorded != describe(result)["name"]:
        result.notes.append(f"the plan file calls its parallelism {recorded!r}; as priced here it is "
                            f"{describe(result)['name']!r}")
    capacity_note(args, result)
    print_result(result, Path(args.model).name, f"plan file {Path(args.plan).name}, priced as written (no search)")
    write_json(args.json, plan_to_json(result, Path(args.model).name, model_sha256(args.model),
                                       model_bindings(args.model, args)))
    return 0


def run_hand_made(args) -> int:
    from planner.model.rebatch import STATIC_SYMBOL
    from planner.plans.report import plan_to_json
    from planner.search.hand_made import HandMade, price_hand_made

    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.batch is not None:
        raise UsageError("--batch does not apply to a hand-made configuration: its batch is --global-batch "
                         "(and --micro-batch-size); drop --batch")
    graph = load_graph(args)
    symbol = graph.batch_symbol or (STATIC_SYMBOL if graph.batch_axes else None)  # a static export: re-batched
    if symbol and symbol not in parse_bindings(args.bind):
        # the batch dimension is bound by the configuration; only the others need --bind
        graph = load_graph(args, {**parse_bindings(args.bind), symbol: args.micro_batch_size})
    config = HandMade(tp=args.tp, pp=args.pp, dp=args.dp, ep=args.ep or 1, cp=args.cp,
                      micro_batch_size=args.micro_batch_size, interleave=args.interleave)
    result = price_hand_made(graph, load_machine(args.machine), config, args.global_batch,
                             plan_options(args, algorithm="megatron"), rebinder=rebinder_of(args))
    capacity_note(args, result)
    print_result(result, Path(args.model).name, "priced as given (no search)")
    # the file records the whole batch, so that evaluate --plan prices the same iteration
    # (with --cp, the plan of s / C tokens per rank and B x C of those: replayed without the ring, and said so)
    bindings = {**parse_bindings(args.bind), **result.graph.bindings,
                graph.batch_symbol or symbol: args.global_batch * args.cp}
    write_json(args.json, plan_to_json(result, Path(args.model).name, model_sha256(args.model), bindings))
    return 0
