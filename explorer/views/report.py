"""The Report page: the plan JSON stamped with the model's identity, the Markdown and
self-contained HTML reports, the command that reproduces the plan, and the verification's tables."""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass

import pandas as pd

from explorer.safe_markdown import md_code, md_fence, md_text
from explorer.sources import ModelSource
from explorer.tables import text_frame
from explorer.url_state import encode_bindings
from explorer.views.cost import level_cost_figure, op_cost_figure
from explorer.views.memory import memory_figure, memory_table
from explorer.views.overview import explanation, headline
from explorer.views.pipeline import configuration_label, stage_table
from explorer.views.strategy import strategy_table
from planner import __version__
from planner.api import PlanResult
from planner.machine.tree import load_preset, preset_paths
from planner.model.graph import OpKind
from planner.plans.report import plan_to_json
from planner.units import format_bytes_like, format_number, microseconds


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


def report_stamp(result: PlanResult, meta: ReportMeta) -> list[tuple[str, str]]:
    o = result.options
    return [
        ("tool version", __version__),
        ("model", meta.model.label + (" (sample)" if meta.model.kind == "sample" else " (uploaded)")),
        ("model sha256", meta.model.sha256),
        ("bound dimensions", encode_bindings(meta.bindings) or "none"),
        ("machine", f"{meta.machine_label}: {result.machine.summary()}"),
        ("mode", o.mode), ("algorithm", o.algorithm), ("precision", o.precision or "as in the model"),
        ("optimizer", o.optimizer), ("configuration", configuration_label(result)),
        ("command", reproduce_command(result, meta)),
    ]


def reproduce_command(result: PlanResult, meta: ReportMeta) -> str:
    o = result.options
    model = f"sample_models/{meta.model.label}.onnx" if meta.model.kind == "sample" else meta.model.label
    preset = meta.machine_label in preset_paths() and load_preset(meta.machine_label) == result.machine
    machine_file = f"machines/{meta.machine_label}.yaml" if preset else f"{result.machine.name}.yaml"
    parts = ["python -m planner plan", model, f"--machine {machine_file}"]
    parts += [f"--bind {k}={v}" for k, v in meta.bindings.items()]
    parts += [f"--mode {o.mode}", f"--algorithm {o.algorithm}", f"--optimizer {o.optimizer}"]
    if o.precision:
        parts.append(f"--precision {o.precision}")
    # the configuration the result has (the search's choice, when the options left it open)
    for flag, value in (("--pipeline-stages", o.pipeline_stages), ("--micro-batches", o.micro_batches),
                        ("--recompute", o.recompute), ("--zero", o.zero)):
        if value is not None:
            parts.append(f"{flag} {value}")
    if o.interleave > 1:
        parts.append(f"--interleave {o.interleave}")
    if o.overlap_gradient_sync:
        parts.append("--overlap-gradient-sync")
    return " ".join(parts)


def _md_table(frame: pd.DataFrame) -> str:
    """A Markdown table with the cells as the app's tables show them (:func:`explorer.tables.text_frame`)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(md_text(c) for c in cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in text_frame(frame).itertuples(index=False):
        lines.append("| " + " | ".join(md_text(v) for v in row) + " |")
    return "\n".join(lines)


def report_tables(result: PlanResult) -> dict[str, pd.DataFrame]:
    h = headline(result)
    stage = f" (stage {h['fullest_stage']}, the fullest)" if result.schedule.stages > 1 else ""
    summary = pd.DataFrame([
        {"figure": "devices", "value": f"{result.machine.num_devices:,}"},
        {"figure": "configuration", "value": h["configuration"]},
        {"figure": "predicted iteration", "value": f"{h['iteration']} = {h['breakdown']}"},
        {"figure": "compute / communication / redistribution" + (" (one micro-batch)" if result.pipelined else ""),
         "value": f"{h['compute']} / {h['communication']} / {h['redistribution']}"},
        {"figure": "TFLOP/s per device (model / hardware)", "value": f"{format_number(h['tflops_model'])} / {format_number(h['tflops_hardware'])}"},
        {"figure": "pure data parallel", "value": h["data_parallel"]},
        {"figure": "speed-up over pure data parallel", "value": h["speedup"]},
        {"figure": "memory per device" + stage,
         "value": f"{format_bytes_like(result.memory.peak, result.memory.capacity)} of "
                  f"{format_bytes_like(result.memory.capacity, result.memory.peak)}"
                                                         + ("" if h["fits"] else f" (does NOT fit: {h['shortfall']} short)")},
        {"figure": "search time", "value": h["search"]},
    ])
    levels = pd.DataFrame([{"level": lv, "communication (µs)": microseconds(v["communication"]),
                            "redistribution (µs)": microseconds(v["redistribution"])}
                           for lv, v in result.cost.by_level().items()])
    ops = strategy_table(result)
    ops = ops[ops["kind"] == OpKind.COMPUTE.value].drop(columns=["position", "kind"])
    tables = {"summary": summary, "levels": levels, "memory": memory_table(result), "operators": ops}
    if result.schedule.stages > 1:
        tables["stages"] = stage_table(result)
    return tables


def report_markdown(result: PlanResult, meta: ReportMeta) -> str:
    t = report_tables(result)
    out = [f"# Parallel plan: {md_text(meta.model.label)} on {md_text(result.machine.name)}", ""]
    out += [f"- **{k}**: {md_code(v)}" for k, v in report_stamp(result, meta)]
    out += ["", "## Headline", "", _md_table(t["summary"]), "", explanation(result, meta.model.label), "",
            *(["## Pipeline stages", "", _md_table(t["stages"]), ""] if "stages" in t else []),
            "## Communication per machine level", "", _md_table(t["levels"]), "",
            "## Memory per device", "", _md_table(t["memory"]), "",
            "## Machine (YAML, SI units)", "", md_fence(result.machine.to_yaml().rstrip(), "yaml"), "",
            f"## Compute operators ({len(t['operators'])}; the JSON lists every planned operator)", "",
            _md_table(t["operators"]), ""]
    if result.notes:
        out += ["## Notes", ""] + [f"- {md_text(n)}" for n in result.notes] + [""]
    return "\n".join(out)


def report_html(result: PlanResult, meta: ReportMeta) -> str:
    """A self-contained HTML report: tables, the figures (plotly.js inlined once) and the stamp."""
    t = report_tables(result)
    figs = [("Cost per operator", op_cost_figure(result, top=25)), ("Cost per machine level", level_cost_figure(result)),
            ("Memory per device", memory_figure(result))]
    parts = []
    for i, (title, fig) in enumerate(figs):
        parts.append(f"<h2>{html.escape(title)}</h2>" + fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    stamp = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>"
                    for k, v in report_stamp(result, meta))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ddd;padding:3px 6px;"
             "text-align:left}th{background:#f4f4f4}pre{background:#f6f6f6;padding:1em;overflow:auto}")
    body = [
        f"<h1>Parallel plan: {html.escape(meta.model.label)} on {html.escape(result.machine.name)}</h1>",
        f"<table>{stamp}</table>",
        "<h2>Headline</h2>", text_frame(t["summary"]).to_html(index=False, escape=True),
        f"<p>{html.escape(explanation(result, meta.model.label, markdown=False)).replace('**', '')}</p>",
        *(["<h2>Pipeline stages</h2>", text_frame(t["stages"]).to_html(index=False)] if "stages" in t else []),
        "<h2>Communication per machine level</h2>", text_frame(t["levels"]).to_html(index=False),
        "<h2>Memory per device</h2>", text_frame(t["memory"]).to_html(index=False),
        *parts,
        "<h2>Machine (YAML, SI units)</h2>", f"<pre>{html.escape(result.machine.to_yaml())}</pre>",
        f"<h2>Compute operators ({len(t['operators'])}; the JSON lists every planned operator)</h2>",
        text_frame(t["operators"]).to_html(index=False),
    ]
    if notes:
        body += ["<h2>Notes</h2>", f"<ul>{notes}</ul>"]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Plan: {html.escape(meta.model.label)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}"
            f"<p><small>planner {__version__}, generated {time.strftime('%Y-%m-%d %H:%M:%S')}</small></p></body></html>")


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
