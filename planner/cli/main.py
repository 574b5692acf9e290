"""Command line: ``python -m planner inspect|plan|evaluate|strip-weights|export|report|verify ...``
(also installed as the ``planner`` command).

This module assembles the parser (each command's module adds its own sub-parser) and owns the
error policy: a ``PlannerError`` (planner/errors.py: the input is wrong) or a bad argument prints
one line, ``error: ...``, on stderr and exits with code 2; a bad argument's line also says where
the usage is. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from planner.cli import evaluate, export, inspect, plan, report, strip_weights, verify
from planner.errors import PlannerError

#: The commands in the order ``--help`` lists them; each module has ``add_parser(sub)``.
COMMANDS = (inspect, strip_weights, plan, evaluate, export, report, verify)

PROG = "python -m planner"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad argument reported in one line (not the whole usage) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)  # sub-parsers are of the same class
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return args.func(args)
    except PlannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 0


def console() -> int:
    """The ``planner`` console script (pyproject.toml)."""
    return main(prog="planner")
