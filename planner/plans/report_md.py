"""The report as Markdown (CommonMark with GFM tables): the same sections as the HTML page, the
charts' numbers as tables. Every name from outside (the model's file and operator names, the
machine's and its levels' names) is made inert: punctuation that could start a Markdown construct
is backslash-escaped, code spans and the one fenced block (the machine YAML) get a fence longer
than any run of backticks inside: the rules of :mod:`planner.plans.safe_markdown`, as in the app.
"""

from __future__ import annotations

from planner.plans.report_doc import Report, Table, terms_text
from planner.plans.safe_markdown import md_code, md_fence, md_text


def md_table(table: Table, code_first: bool = False) -> str:
    lines = ["| " + " | ".join(md_text(h) for h in table.header) + " |",
             "| " + " | ".join("---" for _ in table.header) + " |"]
    for row in table.rows:
        cells = [md_code(v, in_table=True) if code_first and i == 0 else md_text(v) for i, v in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _formulas(report: Report) -> list[str]:
    out = [md_text(report.symbols), ""]
    for i, f in enumerate(report.formulas, 1):
        alike = f" and {f.alike:,} more like it" if f.alike else ""
        out += [f"{i}\\. {md_code(f.name)}{alike} ({md_text(f.op_type)}), split {md_text(f.split)}", "",
                f"   {md_code(f.symbolic)}", "", f"   with {md_text(f.sizes)}", "",
                f"   {md_code(terms_text(f))}", ""]
    return out


def report_markdown(report: Report) -> str:
    out = [f"# {md_text(report.title)}", "", md_text(report.summary), "",
           "## Headline", "", md_table(report.headline), "",
           "## Configuration", "", md_table(report.stamp), "",
           "## Parallelism", "", *[f"- {md_text(line)}" for line in report.parallelism], "",
           "## Cost breakdown", "", md_table(report.cost), "", md_table(report.levels), ""]
    if report.stages:
        out += ["### Pipeline stages", "", md_table(report.stages), ""]
    out += ["## Memory per device", "", md_table(report.memory), "",
            f"## Formulas of the {len(report.formulas)} costliest operators (own time and redistribution)", "", *_formulas(report),
            f"## The {len(report.operators.rows)} costliest operators", "", "The plan JSON lists every operator.", "",
            md_table(report.operators, code_first=True), "",
            "## Reproduce", "", md_code(report.command), "",
            "## Machine (YAML, SI units)", "", md_fence(report.machine_yaml, "yaml"), ""]
    if report.notes:
        out += ["## Notes", "", *[f"- {md_text(n)}" for n in report.notes], ""]
    return "\n".join(out)
