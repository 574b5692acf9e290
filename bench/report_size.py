"""The report people send: its size in each format and the time to write it (issue 15: HTML under
1.5 MB; before, 4.9 MB with plotly.js inlined).

Plans a model (by default the explorer's opening view: BERT-base, batch 256, sequence 128, on 64
nodes x 8 A100, drec+), then writes its report as ``python -m planner report`` does and prints,
per format, the bytes and the seconds (the report's contents once, then each renderer; the PDF is
the HTML printed by headless Chromium).

    python bench/report_size.py [--model sample_models/bert_base.onnx] [--bind batch=256 --bind seq=128]
                                [--machine machines/dgx_a100_64nodes.yaml] [--algorithm drec+]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.api import plan_model  # noqa: E402
from planner.machine.tree import load_machine  # noqa: E402
from planner.onnx.importer import import_model, model_sha256  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.options import PlanOptions  # noqa: E402
from planner.plans.report_doc import ReportSource, build_report, formulas, machine_label  # noqa: E402
from planner.plans.report_html import report_html  # noqa: E402
from planner.plans.report_md import report_markdown  # noqa: E402
from planner.plans.report_pdf import html_to_pdf  # noqa: E402
from planner.units import format_bytes, format_seconds  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sample_models/bert_base.onnx")
    p.add_argument("--bind", action="append", default=None, metavar="NAME=VALUE")
    p.add_argument("--machine", default="machines/dgx_a100_64nodes.yaml")
    p.add_argument("--algorithm", default="drec+")
    args = p.parse_args()
    bindings = dict((k, int(v)) for k, v in (b.split("=", 1) for b in (args.bind or ["batch=256", "seq=128"])))
    model = str(ROOT / args.model)
    machine = load_machine(str(ROOT / args.machine))
    result = plan_model(import_model(model, bindings), machine, PlanOptions(algorithm=args.algorithm),
                        rebinder=rebinder_for(model))
    source = ReportSource(Path(model).name, args.model, model_sha256(model), bindings, machine_label(machine))
    start = time.perf_counter()
    report = build_report(result, source)
    print(f"{Path(model).name} on {machine.num_devices:,} devices ({args.algorithm}): "
          f"contents {format_seconds(time.perf_counter() - start)} (formulas of {len(report.formulas)} operators)")
    start = time.perf_counter()
    written = formulas(result)  # again, warm: the formulas alone
    seconds = time.perf_counter() - start
    print(f"formulas: {format_seconds(seconds)} for {len(written)} operators "
          f"({format_seconds(seconds / max(len(written), 1))} per operator)")
    rows = []
    start = time.perf_counter()
    page = report_html(report)
    rows.append(("html", len(page.encode()), time.perf_counter() - start))
    start = time.perf_counter()
    rows.append(("md", len(report_markdown(report).encode()), time.perf_counter() - start))
    start = time.perf_counter()
    rows.append(("pdf", len(html_to_pdf(page)), time.perf_counter() - start))
    for fmt, size, seconds in rows:
        print(f"{fmt:5} {format_bytes(size):>10} ({size:,} bytes)  {format_seconds(seconds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
