"""The Report page: the plan JSON stamped with the model's identity, the report (HTML with static
SVG charts, PDF, Markdown: ``planner.plans.report_*``, the same as ``python -m planner report``),
the command that reproduces the plan, and the verification's tables."""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass

import pandas as pd

from explorer.sources import ModelSource
from planner.api import PlanResult
from planner.plans.report import plan_to_json
from planner.plans.report_doc import Report, ReportSource, build_report, reproduce_command, stamp_rows
from planner.plans.report_html import report_html as html_of
from planner.plans.report_md import report_markdown as markdown_of
from planner.plans.report_pdf import ReportError, find_chromium, html_to_pdf


@dataclass
class ReportMeta:
    model: ModelSource
    bindings: dict[str, int]
    machine_label: str


def report_json(result: PlanResult, meta: ReportMeta) -> dict:
    """The command line's plan JSON, stamped with the model's sha256 and the bound dimensions."""
    data = plan_to_json(result, meta.model.label, meta.model.sha256, meta.bindings)
    data.setdefault("model_sha256", meta.model.sha256)
    return data


def report_source(meta: ReportMeta) -> ReportSource:
    """Where the plan comes from, as the report names it (a sample by its file in sample_models/)."""
    label = meta.model.label
    path = f"sample_models/{label}.onnx" if meta.model.kind == "sample" else label
    shown = label + (" (sample)" if meta.model.kind == "sample" else " (uploaded)")
    return ReportSource(shown, path, meta.model.sha256, dict(meta.bindings), meta.machine_label)


#: The last reports built, by plan (a weak reference: a plan evicted from the cache is not kept
#: alive here) and source: the page's reruns do not write the formulas again.
_REPORTS: dict[int, tuple[weakref.ref, ReportSource, Report]] = {}
_KEPT_REPORTS = 4


def report_document(result: PlanResult, meta: ReportMeta) -> Report:
    """The report of the plan (planner.plans.report_doc), as ``python -m planner report`` writes it."""
    source = report_source(meta)
    kept = _REPORTS.get(id(result))
    if kept and kept[0]() is result and kept[1] == source:
        return kept[2]
    report = build_report(result, source)
    dead = [key for key, kept in _REPORTS.items() if kept[0]() is None]
    for key in dead + list(_REPORTS)[:-(_KEPT_REPORTS - 1)]:  # room for this one
        _REPORTS.pop(key, None)
    _REPORTS[id(result)] = (weakref.ref(result), source, report)
    return report


def report_stamp(result: PlanResult, meta: ReportMeta) -> list[tuple[str, str]]:
    source = report_source(meta)
    return list(stamp_rows(result, source)) + [("command", reproduce_command(result, source))]


def report_markdown(result: PlanResult, meta: ReportMeta) -> str:
    return markdown_of(report_document(result, meta))


def report_html(result: PlanResult, meta: ReportMeta) -> str:
    """A self-contained HTML page: tables and static SVG charts, no script."""
    return html_of(report_document(result, meta))


def report_pdf(result: PlanResult, meta: ReportMeta) -> tuple[bytes | None, str | None]:
    """The PDF (the HTML page printed by headless Chromium), or why it cannot be made."""
    try:
        return html_to_pdf(report_html(result, meta)), None
    except ReportError as exc:
        return None, str(exc)


def pdf_available() -> bool:
    return find_chromium() is not None


def verification_frames(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The verification's rows as two tables: one line per run, and predicted against measured
    bytes per operator (operators with no communication either way are left out)."""
    runs = pd.DataFrame([{
        "model": r["model"], "plan": r["plan"], "processes": r["processes"],
        "numerics match": r["numerics_match"],
        "max |gradient error|": r["max_abs_gradient_error"],
        "operators within 10%": f"{sum(o['within_tolerance'] for o in r['ops'])} / {len(r['ops'])}",
    } for r in rows])
    ops = pd.DataFrame([{
        "model": r["model"], "plan": r["plan"], "processes": r["processes"], "operator": o["op"],
        "predicted bytes": o["predicted_bytes"], "measured bytes": o["measured_bytes"],
        "ratio": o["measured_bytes"] / o["predicted_bytes"] if o["predicted_bytes"] else float("nan"),
        "within 10%": o["within_tolerance"],
    } for r in rows for o in r["ops"] if o["predicted_bytes"] or o["measured_bytes"]])
    return runs, ops


def stamp_table(result: PlanResult, meta: ReportMeta) -> pd.DataFrame:
    return pd.DataFrame(report_stamp(result, meta), columns=["field", "value"])


def plan_json_text(result: PlanResult, meta: ReportMeta) -> str:
    return json.dumps(report_json(result, meta), indent=2)


def file_stem(result: PlanResult, meta: ReportMeta) -> str:
    """``plan_<model>_<machine>_<algorithm>``, the downloads' file name."""
    return f"plan_{meta.model.label.rsplit('.', 1)[0]}_{result.machine.name}_{result.plan.algorithm}".replace("+", "plus")


# ---- "Run it": the verification on a CPU process group (planner.verify) ------------------------

def verification_hint() -> str | None:
    """What to install for the verification, or None when it can run (torch is imported lazily)."""
    from planner import verify

    return None if verify.torch_available() else verify.INSTALL_HINT


def run_verification(progress) -> tuple[list[dict] | None, str | None]:
    """The verification's rows, or why it could not run."""
    from planner import verify

    try:
        return verify.run_verification(progress=progress), None
    except (verify.VerificationError, ValueError) as exc:
        return None, str(exc)


def verification_summary(rows: list[dict]) -> str:
    from planner import verify

    s = verify.summary(rows)
    return (f"Numerics match in {s['numerics_match']} of {s['runs']} runs; predicted and measured bytes agree "
            f"within 10% on {s['within_tolerance']} of {s['operators']} operators.")
