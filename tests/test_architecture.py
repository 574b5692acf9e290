"""The declared architecture, checked: the import-linter contracts of pyproject.toml (the layers
of planner/, planner never importing explorer or a UI library), pages importing only explorer,
and no file in planner/ or explorer/ over 700 lines nor a function over 60. Each failure prints
its offenders."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 700
MAX_FUNCTION_LINES = 60

CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


@pytest.mark.parametrize("contract", [c["id"] for c in CONTRACTS])
def test_import_contract(contract, monkeypatch):
    from importlinter.api import use_cases

    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.chdir(REPO)
    kept = use_cases.lint_imports(config_filename=str(REPO / "pyproject.toml"), limit_to_contracts=(contract,),
                                  cache_dir=None, no_logo=True)
    assert kept, f"contract {contract} is broken: lint-imports --contract {contract} lists the imports"


def first_party_imports(path: Path) -> set[str]:
    """The top-level names of the project's packages that ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & {"planner", "explorer", "pages", "app"}


def test_first_party_imports_are_read_from_the_source(tmp_path):
    page = tmp_path / "page.py"
    page.write_text("import streamlit as st\nimport explorer.core as ex\nfrom planner.units import x\n"
                    "def f():\n    import app\n")
    assert first_party_imports(page) == {"explorer", "planner", "app"}


def test_pages_import_only_explorer():
    """pages/ are Streamlit scripts, not a package, so this rule is read from their source."""
    offenders = [f"{p.relative_to(REPO)} imports {', '.join(sorted(first_party_imports(p) - {'explorer'}))}"
                 for p in sorted((REPO / "pages").glob("*.py")) if first_party_imports(p) - {"explorer"}]
    print("\n".join(offenders))
    assert offenders == []


def size_offences(path: Path) -> list[str]:
    """``path: N lines`` when the file is too long, ``path:LINE name: N lines`` for each function too long."""
    text = path.read_text()
    out = []
    if len(text.splitlines()) > MAX_FILE_LINES:
        out.append(f"{path}: {len(text.splitlines())} lines (at most {MAX_FILE_LINES})")
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                out.append(f"{path}:{node.lineno} {node.name}: {lines} lines (at most {MAX_FUNCTION_LINES})")
    return out


def test_size_offences_count_files_and_functions(tmp_path):
    short = tmp_path / "short.py"
    short.write_text("def f():\n" + "    x = 1\n" * 59 + "\n" * 600)  # a 60-line function in a 660-line file
    assert size_offences(short) == []
    long = tmp_path / "long.py"
    long.write_text("class C:\n    def m(self):\n" + "        x = 1\n" * 60 + "\n" * 700)
    assert size_offences(long) == [f"{long}: 762 lines (at most 700)", f"{long}:2 m: 61 lines (at most 60)"]


SOURCES = sorted(str(p.relative_to(REPO)) for root in ("planner", "explorer") for p in (REPO / root).rglob("*.py"))


@pytest.mark.parametrize("source", SOURCES)
def test_file_and_function_sizes(source):
    offences = size_offences(REPO / source)
    print("\n".join(offences))
    assert offences == []


def test_the_contracts_cover_the_declared_rules():
    by_id = {c["id"]: c for c in CONTRACTS}
    assert by_id["planner-layers"]["layers"][0] == "planner.cli"
    assert set(by_id["planner-no-ui-libraries"]["forbidden_modules"]) == {"streamlit", "plotly", "pandas"}
    assert by_id["planner-not-explorer"]["forbidden_modules"] == ["explorer"]
    assert sys.version_info >= (3, 11)  # tomllib


ROOMS = {"onnx", "model", "machine", "cost", "search", "plans", "verify", "cli", "explorer"}
CROSS_CUTTING = {"test_architecture.py", "test_readme_example.py", "test_real_exports.py", "test_units.py",
                 "test_number_formats.py"}


def test_the_tests_mirror_the_rooms():
    """A test file lives in the folder of the room it tests (tests/cost/, tests/explorer/, ...);
    only the cross-cutting ones sit at the top."""
    misplaced = [str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                 if not (p.parent.name in ROOMS and p.parent.parent == REPO / "tests")
                 and not (p.parent == REPO / "tests" and p.name in CROSS_CUTTING)]
    assert misplaced == []
    # tests/artifacts/ holds the browser test's screenshots (git-ignored), not tests
    assert {p.name for p in (REPO / "tests").iterdir() if p.is_dir() and p.name not in ("__pycache__", "artifacts")} \
        <= ROOMS
