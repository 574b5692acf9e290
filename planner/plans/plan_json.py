"""Plan files (the JSON ``plan --json`` writes): read with bounds, and their fields checked by name.

A plan file is user input like a model: it may be huge, nested 100,000 deep, a FIFO, or carry
``interleave: 0`` or ``bindings: {"batch": -1}``. Everything here is refused with one line that
names the file and the field, before the model is imported or a plan is priced.
"""

from __future__ import annotations

import json
import os

from planner.limits import (MAX_PLAN_FILE_BYTES, MAX_PLAN_NESTING, LimitError, check_binding_product, check_json_nesting,
                     check_text_size, quote, read_bounded)

_FIX = "give the JSON that `python -m planner plan --json` writes"

#: Top-level fields whose JSON type is checked (the others are outputs, ignored when read).
_FIELD_TYPES = {"ops": (list, "a list of operators"), "options": (dict, "an object of plan options"),
                "bindings": (dict, 'an object {"name": value}'), "model": (str, "a file name"),
                "model_sha256": (str, "a hex string"), "algorithm": (str, "a string")}


class PlanFileError(LimitError):
    """A plan file is unreadable, too large, too deep or has a bad field; one line says which."""


def check_plan_bounds(text: str | bytes, what: str) -> None:
    """Refuse a plan file's text that is too large or nested too deep (without parsing it)."""
    try:
        check_text_size(text, MAX_PLAN_FILE_BYTES, what, _FIX)
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "replace")
        check_json_nesting(text, MAX_PLAN_NESTING, what)
    except LimitError as exc:
        raise PlanFileError(str(exc)) from None


def parse_plan_text(text: str | bytes, what: str) -> dict:
    """The object in a plan file's text, bounded in size and nesting, with its fields checked.

    ``what`` names the file in messages, e.g. ``"plan file p.json"``.
    """
    try:
        check_text_size(text, MAX_PLAN_FILE_BYTES, what, _FIX)
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        check_json_nesting(text, MAX_PLAN_NESTING, what)
    except UnicodeDecodeError:
        raise PlanFileError(f"{what} is not UTF-8 text; {_FIX}") from None
    except LimitError as exc:
        raise PlanFileError(str(exc)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                            f"{_FIX}") from None
    except RecursionError:  # not reached after the nesting check; kept so that no traceback can escape
        raise PlanFileError(f"{what} nests too deep; {_FIX}") from None
    if not isinstance(data, dict):
        raise PlanFileError(f"{what} must hold a JSON object, like the one plan --json writes")
    return check_plan_fields(data, what)


def read_plan_file(path: str | os.PathLike) -> dict:
    """Read a plan file from disk: a regular file (never a FIFO or a device) of bounded size."""
    try:
        raw = read_bounded(path, MAX_PLAN_FILE_BYTES, "plan file", _FIX)
    except LimitError as exc:
        raise PlanFileError(str(exc)) from None
    return parse_plan_text(raw, f"plan file {path}")


def check_plan_fields(data: dict, what: str) -> dict:
    """Refuse, by field name, the fields a plan file may carry in a wrong form."""
    for key, (kind, expected) in _FIELD_TYPES.items():
        if key in data and data[key] is not None and not isinstance(data[key], kind):
            raise PlanFileError(f"{what}: {key} must be {expected}; got {quote(data[key])}")
    if isinstance(data.get("options"), dict):
        _check_options(data["options"], what)
    if isinstance(data.get("bindings"), dict):
        plan_bindings(data, what)
    return data


def _check_options(options: dict, what: str) -> None:
    """Each recorded option alone must be one PlanOptions accepts (``interleave: 0`` is not)."""
    from planner.api import PlanOptions
    from planner.cost.model import OptionsError

    known = PlanOptions.__dataclass_fields__
    for key, value in options.items():
        if key not in known:
            raise PlanFileError(f"{what}: options.{quote(key)[1:-1]} is not a plan option; the options are "
                                f"{', '.join(known)}")
        if value is None and key in ("precision", "pipeline_stages", "micro_batches", "recompute", "zero"):
            continue  # None: left to the search or the model
        if key in ("pipeline_stages", "micro_batches", "interleave") and (isinstance(value, bool)
                                                                          or not isinstance(value, int)):
            raise PlanFileError(f"{what}: options.{key} must be a whole number >= 1; got {quote(value)}")
        try:
            PlanOptions(**{key: value})
        except (OptionsError, TypeError, ValueError) as exc:
            raise PlanFileError(f"{what}: options.{key} = {quote(value)} is refused: {exc}") from None


def plan_bindings(data: dict, what: str) -> dict[str, int]:
    """The plan file's ``bindings`` as {name: value >= 1}, refused by name when one is not."""
    from planner.onnx.importer import MAX_BINDING

    out = {}
    for name, value in (data.get("bindings") or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BINDING:
            raise PlanFileError(f"{what}: bindings.{quote(name)[1:-1]} must be a whole number from 1 to "
                                f"{MAX_BINDING:,}; got {quote(value)}")
        out[name] = value
    try:
        check_binding_product(out, f"{what}: bindings")
    except LimitError as exc:
        raise PlanFileError(str(exc)) from None
    return out


__all__ = ["PlanFileError", "check_plan_bounds", "parse_plan_text", "read_plan_file", "check_plan_fields", "plan_bindings"]
