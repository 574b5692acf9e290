"""The report as one self-contained HTML page: tables, static SVG charts (``report_svg``), no
script and nothing fetched, tens of kilobytes. Every name is HTML-escaped. Long names, formulas
and the command wrap inside their boxes on screen and in print (the PDF is this page printed by
Chromium, ``report_pdf``)."""

from __future__ import annotations

import time
from html import escape

from planner import __version__
from planner.plans.report_doc import Report, Table, terms_text
from planner.plans.report_svg import chart_svg

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:820px;margin:1.5em auto;padding:0 1em;
color:#222;font-size:14px;line-height:1.4}
h1{font-size:22px;margin:.2em 0 .4em}h2{font-size:17px;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:1em 0 .2em}
h1,h2,h3,p,li{overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:13px;margin:.5em 0;max-width:100%}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}
th{background:#f4f4f4}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;overflow-wrap:anywhere;
white-space:pre-wrap;word-break:break-word}
pre{background:#f6f6f6;padding:.6em .8em;margin:.4em 0}
.formula{background:#f6f6f6;padding:.4em .8em;margin:.3em 0 .8em}
.lead{font-size:15px}
svg{display:block;max-width:100%;height:auto;margin:.3em 0 1em}
@page{size:A4;margin:14mm}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}svg,table,.formula{break-inside:avoid}}
"""


def table_html(table: Table, code_first: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    rows = []
    for row in table.rows:
        cells = [f"<code>{escape(v)}</code>" if code_first and i == 0 else escape(v) for i, v in enumerate(row)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _pairs_html(table: Table) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in table.rows) + "</table>"


def _formulas_html(report: Report) -> list[str]:
    out = [f"<p>{escape(report.symbols)}</p>"]
    for i, f in enumerate(report.formulas, 1):
        alike = f" and {f.alike:,} more like it" if f.alike else ""
        out += [f"<h3>{i}. <code>{escape(f.name)}</code>{alike} ({escape(f.op_type)}), split {escape(f.split)}</h3>",
                f"<div class='formula'><code>{escape(f.symbolic)}</code><br>"
                f"<small>with {escape(f.sizes)}</small><br>"
                f"<code>{escape(terms_text(f))}</code></div>"]
    return out


def report_html(report: Report) -> str:
    """The whole page."""
    charts = [f"<h3>{escape(c.title)}</h3>{chart_svg(c)}" for c in report.charts]
    body = [
        f"<h1>{escape(report.title)}</h1>", f"<p class='lead'>{escape(report.summary)}</p>",
        "<h2>Headline</h2>", _pairs_html(report.headline),
        "<h2>Configuration</h2>", _pairs_html(report.stamp),
        "<h2>Parallelism</h2>", "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in report.parallelism) + "</ul>",
        "<h2>Cost breakdown</h2>", _pairs_html(report.cost), table_html(report.levels),
        *(["<h3>Pipeline stages</h3>", table_html(report.stages)] if report.stages else []),
        *charts[:2],
        "<h2>Memory per device</h2>", _pairs_html(report.memory), *charts[2:],
        f"<h2>Formulas of the {len(report.formulas)} costliest operators (own time and redistribution)</h2>", *_formulas_html(report),
        f"<h2>The {len(report.operators.rows)} costliest operators</h2>",
        "<p>The plan JSON lists every operator.</p>", table_html(report.operators, code_first=True),
        "<h2>Reproduce</h2>", f"<pre>{escape(report.command)}</pre>",
        "<h2>Machine (YAML, SI units)</h2>", f"<pre>{escape(report.machine_yaml)}</pre>",
    ]
    if report.notes:
        body += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>"]
    stamp = f"planner {__version__}, generated {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(report.title)}</title><style>{STYLE}</style></head><body>{''.join(body)}"
            f"<p><small>{escape(stamp)}</small></p></body></html>")
