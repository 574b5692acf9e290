"""The command line's error policy: one ``PlannerError`` base for every user-facing error, a bad
argument reported in one line (not argparse's usage text), and ``evaluate`` saying it searched
nothing."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest

import models  # tests/models.py
import planner
from planner.errors import PlannerError

REPO = Path(__file__).resolve().parents[2]
MLP = str(REPO / "sample_models" / "mlp.onnx")
DGX = str(REPO / "machines" / "dgx_a100.yaml")

# (module, class, the base it had before PlannerError and keeps) - every user-facing error class
USER_ERRORS = [
    ("planner.cli.common", "UsageError", Exception),
    ("planner.limits", "LimitError", ValueError),
    ("planner.plans.plan_json", "PlanFileError", ValueError),
    ("planner.plans.export", "ExportError", ValueError),
    ("planner.model.rebatch", "RebatchError", ValueError),
    ("planner.machine.tree", "MachineError", ValueError),
    ("planner.onnx.validate", "InvalidNodeError", ValueError),
    ("planner.onnx.importer", "ModelImportError", ValueError),
    ("planner.onnx.guard", "LimitError", ValueError),
    ("planner.search.megatron", "NotATransformerError", ValueError),
    ("planner.search.megatron", "HeadSplitError", ValueError),
    ("planner.search.exact", "SearchTooLargeError", ValueError),
    ("planner.options", "ConfigError", ValueError),
    ("planner.options", "OptionsError", ValueError),
    ("planner.bindings", "BindingTextError", ValueError),
    ("planner.cost.model", "PlanError", ValueError),
    ("planner.verify.base", "VerificationError", RuntimeError),
]


@pytest.mark.parametrize("module, name, old_base", USER_ERRORS, ids=[f"{m}.{n}" for m, n, _ in USER_ERRORS])
def test_every_user_error_is_a_planner_error_and_keeps_its_old_base(module, name, old_base):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, PlannerError) and issubclass(cls, old_base)


def test_no_public_error_class_in_the_planner_escapes_the_base():
    """Every public exception class defined anywhere in planner/ derives from PlannerError (a new
    one that does not would print a traceback from the CLI and the app)."""
    offenders = []
    for info in pkgutil.walk_packages(planner.__path__, "planner."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == module.__name__ and issubclass(cls, BaseException) and not name.startswith("_")
                    and not issubclass(cls, PlannerError)):
                offenders.append(f"{module.__name__}.{name}")
    print("\n".join(offenders))
    assert offenders == []


def test_a_planner_error_exits_2_with_its_message_in_one_line(capsys):
    code, out, err = models.run_cli(["plan", MLP, "--machine", DGX, "--bind", "batch=64", "--pipeline-stages", "3",
                                     "--micro-batches", "5"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_choice_is_one_line_that_points_to_the_help(capsys):
    code, out, err = models.run_cli(["plan", MLP, "--machine", DGX, "--algorithm", "greedy"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: argument --algorithm: invalid choice: 'greedy' (choose from ")
    assert err.endswith(" (see python -m planner plan --help)\n") and err.count("\n") == 1
    assert "usage:" not in err


def test_a_bad_number_is_one_line_with_the_types_message(capsys):
    code, out, err = models.run_cli(["evaluate", MLP, "--machine", DGX, "--tp", "0"], capsys)
    assert code == 2 and out == ""
    assert err == "error: argument --tp: 0 must be >= 1, e.g. 4 (see python -m planner evaluate --help)\n"


def test_no_command_is_one_line(capsys):
    code, _, err = models.run_cli([], capsys)
    assert code == 2
    assert err == "error: the following arguments are required: command (see python -m planner --help)\n"


def test_the_console_script_names_itself_planner(capsys, monkeypatch):
    from planner.cli.main import console

    monkeypatch.setattr(sys, "argv", ["planner", "inspect"])
    with pytest.raises(SystemExit) as exc:
        console()
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("error: the following arguments are required: model "
                                       "(see planner inspect --help)\n")


def test_help_still_prints_the_usage(capsys):
    code, out, _ = models.run_cli(["plan", "--help"], capsys)
    assert code == 0 and out.startswith("usage: python -m planner plan ")


def _algorithm_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("algorithm "))


def test_plan_reports_its_search_and_evaluate_says_it_searched_nothing(tmp_path, capsys):
    plan = tmp_path / "p.json"
    code, out, err = models.run_cli(["plan", MLP, "--machine", DGX, "--bind", "batch=64", "--json", plan], capsys)
    assert code == 0, err
    assert _algorithm_line(out).startswith("algorithm    drec+ (train), search ")
    code, out, err = models.run_cli(["evaluate", MLP, "--machine", DGX, "--plan", plan], capsys)
    assert code == 0, err
    assert _algorithm_line(out) == "algorithm    drec+ (train), plan file p.json, priced as written (no search)"
    assert " search " not in out


def test_a_hand_made_configuration_says_it_searched_nothing(capsys):
    code, out, err = models.run_cli(["evaluate", "sample_models/gpt2_small.onnx", "--machine", DGX, "--tp", "2",
                                     "--pp", "1", "--dp", "4", "--micro-batch-size", "4", "--global-batch", "32",
                                     "--bind", "seq=128"], capsys)
    assert code == 0, err
    assert _algorithm_line(out) == ("algorithm    hand-made: tensor 2 x pipeline 1 x data 4 (train), "
                                    "priced as given (no search)")


def test_the_app_shows_a_planner_error_as_the_inputs_fault_and_anything_else_as_a_bug():
    from explorer.options import error_text
    from planner.verify import VerificationError  # a PlannerError that is not a ValueError

    assert error_text("drec+", VerificationError("a worker timed out")) == "drec+: a worker timed out"
    assert error_text("drec+", KeyError("x")).startswith("drec+: the planner failed (KeyError: 'x'); this is a bug")
