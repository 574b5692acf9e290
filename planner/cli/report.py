"""``report PLAN.json --format html|pdf|md [-o FILE]``: the plan file as a report to send (the
Report page's HTML, PDF and Markdown). The plan is re-priced as written (``evaluate --plan``, no
search) on its model (``--model``, else the file it names: as given, next to the plan, or in
sample_models/) and its recorded machine, bindings and options, so that the report has every
figure, the formulas included."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

from planner.cli.common import UsageError
from planner.limits import require_regular_file
from planner.units import SECOND_UNITS, common_scale, format_bytes, format_number

FORMATS = ("html", "pdf", "md")


def add_parser(sub) -> None:
    sp = sub.add_parser("report", help="the plan as a report to send: HTML, PDF (headless Chromium) or Markdown")
    sp.add_argument("plan", metavar="PLAN.json", help="a plan written by plan --json or evaluate --json")
    sp.add_argument("--format", choices=FORMATS, required=True, help="html, pdf or md")
    sp.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: PLAN.html, .pdf or .md "
                                                               "next to the plan file)")
    sp.add_argument("--model", metavar="MODEL.onnx", help="the model (default: the file the plan names)")
    sp.set_defaults(func=run)


def _model_of(args, plan: dict) -> Path:
    from planner.plans.export import find_model

    if args.model:
        return Path(require_regular_file(args.model, "model file"))
    model = find_model(plan, args.plan)
    if model is None:
        raise UsageError(f"the plan names model {plan.get('model')!r}, which is not found (as given, next to "
                         "the plan, or in sample_models/): give it with --model MODEL.onnx")
    return model


def _shown_path(path: Path) -> str:
    """The path relative to the working directory when it is below it (the command to type)."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else Path(relative).as_posix()


def priced_plan(args):
    """The plan file re-priced as written, and where it came from (a ``ReportSource``)."""
    from planner.api import evaluate_plan
    from planner.machine.tree import Machine
    from planner.onnx.importer import import_model, model_sha256
    from planner.onnx.rebinder import rebinder_for
    from planner.options import ALGORITHMS, PlanOptions
    from planner.plans.plan_json import merge_recorded_options, plan_bindings, read_plan_file
    from planner.plans.report_doc import ReportSource, machine_label

    data = read_plan_file(args.plan)
    if not isinstance(data.get("machine"), dict):
        raise UsageError(f"plan file {args.plan} records no machine (write it with plan --json or evaluate --json)")
    model = _model_of(args, data)
    machine = Machine.from_dict(data["machine"])
    options, notes = merge_recorded_options(data, PlanOptions())
    recorded_algorithm = (data.get("options") or {}).get("algorithm")
    if recorded_algorithm in ALGORITHMS:  # what the reproduce command searches with
        options = replace(options, algorithm=recorded_algorithm)
    bindings = plan_bindings(data, f"plan file {args.plan}")
    result = evaluate_plan(import_model(str(model), bindings), machine, data, options,
                           rebinder=rebinder_for(str(model)))
    result.notes.extend(notes)
    recorded = data.get("iteration_seconds")
    if isinstance(recorded, (int, float)) and not math.isclose(recorded, result.total_seconds, rel_tol=1e-6):
        unit, scale = common_scale([recorded, result.total_seconds], SECOND_UNITS)  # six digits: they differ
        result.notes.append(f"re-priced at {format_number(result.total_seconds / scale, 6)} {unit}; the plan file "
                            f"records {format_number(recorded / scale, 6)} {unit} (made by another version or with "
                            "other options)")
    sha = model_sha256(str(model))
    if data.get("model_sha256") and data["model_sha256"] != sha:
        result.notes.insert(0, f"{model.name} is not the file the plan was made for (its SHA-256 differs)")
    search = data.get("search_seconds")
    source = ReportSource(str(data.get("model") or model.name), _shown_path(model), sha, bindings,
                          machine_label(machine), search if isinstance(search, (int, float)) else None)
    return result, source


def run(args) -> int:
    from planner.plans.report_doc import build_report
    from planner.plans.report_html import report_html
    from planner.plans.report_md import report_markdown

    result, source = priced_plan(args)
    report = build_report(result, source)
    if args.format == "md":
        content: bytes = report_markdown(report).encode("utf-8")
    else:
        page = report_html(report)
        if args.format == "pdf":
            from planner.plans.report_pdf import html_to_pdf

            content = html_to_pdf(page)
        else:
            content = page.encode("utf-8")
    target = Path(args.output) if args.output else Path(args.plan).with_suffix("." + args.format)
    try:
        target.write_bytes(content)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    print(f"wrote {target}: {args.format} report, {format_bytes(len(content))}")
    return 0
