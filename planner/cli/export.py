"""``export PLAN.json --format dtensor|jax|mindspore``: a plan as another framework's layouts."""

from __future__ import annotations

import json
import sys

from planner.cli.common import (BUCKET_HELP, UsageError, add_batch_arg, megabytes, model_bindings, parse_bindings,
                                write_json)
from planner.limits import check_binding_product, require_regular_file
from planner.onnx.importer import import_model, model_sha256
from planner.plans.plan_json import plan_bindings, read_plan_file


def add_parser(sub) -> None:
    from planner.plans.export import FORMATS, MESH_MODES

    sp = sub.add_parser("export", help="the plan as DTensor placements, JAX PartitionSpecs or MindSpore strategies")
    sp.add_argument("plan", metavar="PLAN.json", help="a plan written by plan --json")
    sp.add_argument("--format", choices=FORMATS, required=True, help="dtensor, jax or mindspore")
    sp.add_argument("--model", metavar="MODEL.onnx", help="the model (default: the file the plan names)")
    add_batch_arg(sp)
    sp.add_argument("--bind", action="append", metavar="NAME=VALUE",
                    help="bind a symbolic dimension (default: the plan's bindings)")
    sp.add_argument("--mesh", choices=MESH_MODES, default="cuts",
                    help="mesh dimensions: one per prime cut (default) or one per machine level")
    sp.add_argument("--out", metavar="OUT.json", help="write the export here (default: print it)")
    sp.add_argument("--bucket-mb", type=megabytes, metavar="MB",
                    help=BUCKET_HELP + "; written to the export as gradient_bucket_mb (default: the plan's, or 25)")
    sp.set_defaults(func=run)


def _model_of(args, plan: dict):
    """The model file: ``--model``, else the one the plan names (as given, next to it, in sample_models/)."""
    from planner.plans.export import find_model

    if args.model:
        return require_regular_file(args.model, "model file")
    model = find_model(plan, args.plan)
    if model is None:
        raise UsageError(f"the plan names model {plan.get('model')!r}, which is not found (as given, next to "
                         "the plan, or in sample_models/): give it with --model MODEL.onnx")
    return model


def run(args) -> int:
    from planner.plans.export import export_plan

    plan = read_plan_file(args.plan)
    model = _model_of(args, plan)
    bindings = plan_bindings(plan, f"plan file {args.plan}")
    bindings.update(parse_bindings(args.bind))
    bindings = model_bindings(str(model), args, bindings)  # --batch replaces the plan's batch
    check_binding_product(bindings, "the plan file's bindings with --bind")
    graph = import_model(str(model), bindings)
    data = export_plan(plan, graph, args.format, args.mesh, args.bucket_mb)
    if plan.get("model_sha256") and plan["model_sha256"] != model_sha256(str(model)):
        data["notes"].insert(0, f"{model} is not the file the plan was made for (its SHA-256 differs)")
        print(f"warning: {model} is not the file the plan was made for (its SHA-256 differs)", file=sys.stderr)
    if args.out:
        write_json(args.out, data)
        print(f"wrote {args.out}: {args.format} layouts of {len(data['ops'])} operators on "
              f"{data['devices']} devices")
    else:
        print(json.dumps(data, indent=2))
    return 0
