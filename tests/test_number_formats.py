"""No user-facing number is formatted with a ``g`` format (``:.4g``, ``%.4g``, ``:g``, plotly's
``%{y:.4g}``) in the explorer, the reports or the command line: they print ``1e+03`` and mix
digits (issue 15); every figure a person reads goes through ``planner.units``. A scan of the
source (string literals and f-string format specs, docstrings aside), with an allow-list of what
is not a figure for a reader, each with its reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("explorer", "planner/plans", "planner/cli")
#: a printf or plotly/str.format spec ending in g: "%.4g", "%g", "{x:.3g}", "%{y:.4g}"
G_IN_TEXT = re.compile(r"%[-+ #0-9.]*[gG](?![a-zA-Z])|\{[^{}]*:[-+ #0-9.,]*[gG]\}")
G_SPEC = re.compile(r"^[-+ #0-9.,]*[gG]$")
#: (file, the formatted expression's source): why it is not a figure a reader sees
ALLOWED = {
    ("planner/plans/report_doc.py", "o.bucket_mb"): "a command-line argument in the reproduce command, read back "
                                                     "by argparse (25, 0.5), not a figure",
    ("explorer/views/machine.py", "arity"): "the Machine page's error messages echo the typed value: teach's",
    ("explorer/views/machine.py", "bw"): "the Machine page's error messages echo the typed value: teach's",
    ("explorer/views/machine.py", "lat"): "the Machine page's error messages echo the typed value: teach's",
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def g_formats(source: str) -> list[tuple[int, str]]:
    """(line, what is formatted) of every g format in the source's strings, docstrings aside."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            spec = "".join(v.value for v in node.format_spec.values if isinstance(v, ast.Constant))
            if G_SPEC.match(spec):
                hits.append((node.lineno, ast.unparse(node.value)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            hits += [(node.lineno, m.group(0)) for m in G_IN_TEXT.finditer(node.value)]
    return sorted(hits)


def test_the_scan_finds_each_kind_of_g_format():
    source = ('a = f"{x:.4g} s"\nb = "%.3g" % y\nc = "%{y:.4g} ms"\nd = f"%{{x:.4g}}"\ne = "{0:g}".format(z)\n'
              'f = f"{n:,} {t:.2f} 50%"\ndef h():\n    """%g in a docstring"""\n')
    assert [line for line, _ in g_formats(source)] == [1, 2, 3, 4, 5]


def test_no_user_facing_g_format():
    found = []
    for room in SCANNED:
        for path in sorted((REPO / room).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for line, what in g_formats(path.read_text(encoding="utf-8")):
                if (rel, what) not in ALLOWED:
                    found.append(f"{rel}:{line}: {what}")
    assert found == [], "format these through planner.units (or allow-list with a reason): " + "; ".join(found)
