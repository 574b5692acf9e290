"""Bindings of symbolic dimensions as text: one parser and one formatter for every place a user
writes them (``--bind NAME=VALUE`` on the command line, ``bind=NAME:VALUE,...`` in a shared link).

The core keeps bindings as ``{name: value}`` (``OperatorGraph.bindings``, the plan JSON's
``bindings``); only the separator differs between the two text forms. A value is a whole number
from 1 to :data:`MAX_BINDING`. Each caller words its own error message around :class:`BindingTextError`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

from planner.errors import PlannerError

MAX_BINDING = 2**40  # a symbolic dimension bound above this is a typo, and overflows int64 FLOPs
CLI_SEPARATOR = "="  # --bind batch=32
URL_SEPARATOR = ":"  # bind=batch:32,seq:128


class BindingTextError(PlannerError, ValueError):
    """One ``NAME<sep>VALUE`` that does not parse: ``name`` is None when the text has no name or no
    separator, else the value is bad and the message says what is expected of it."""

    def __init__(self, name: str | None, message: str):
        super().__init__(message)
        self.name = name


def binding_value(text: str) -> int:
    """A symbolic dimension's value as typed by a user; ValueError says what is expected."""
    try:
        number = int(text)
    except (TypeError, ValueError):
        number = 0
    if number > MAX_BINDING:
        raise ValueError(f"{number:,} is above the limit {MAX_BINDING:,}: give a smaller value")
    if number < 1:
        raise ValueError(f"must be a positive integer (at most {MAX_BINDING:,})")
    return number


def binding_problem(name: str, value) -> str | None:
    """What is wrong with binding ``name`` to ``value`` and how to fix it, leading with the limit
    (``batch 1,000,000,000,000,000 is above the limit 1,099,511,627,776: ...``); None when fine."""
    fix = f"e.g. {name}=32"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"{name}={value!r} is not a positive integer: give a whole number from 1 to {MAX_BINDING:,}, {fix}"
    if value > MAX_BINDING:
        return f"{name} {value:,} is above the limit {MAX_BINDING:,}: give a smaller value, {fix}"
    if value < 1:
        return f"{name} {value:,} is not a positive integer: give a whole number from 1 to {MAX_BINDING:,}, {fix}"
    return None


def parse_binding(text: str, separator: str) -> tuple[str, int]:
    """``"batch=32"`` (separator ``=``) or ``"batch:32"`` (``:``) -> ``("batch", 32)``."""
    name, found, value = text.partition(separator)
    name = name.strip()
    if not found or not name:
        raise BindingTextError(None, f"expected NAME{separator}VALUE")
    try:
        return name, binding_value(value)
    except ValueError as exc:
        raise BindingTextError(name, str(exc)) from None


def format_bindings(bindings: Mapping[str, int], separator: str) -> list[str]:
    """``{"batch": 32}`` -> ``["batch=32"]`` (or ``["batch:32"]``): what :func:`parse_binding` reads back."""
    return [f"{name}{separator}{value}" for name, value in bindings.items()]
