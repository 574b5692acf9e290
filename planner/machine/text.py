"""Machine descriptions as text: bounded, strict YAML and JSON parsing with one-line errors.

Split out of :mod:`planner.machine.tree`, which builds and validates the parsed data. The text is
bounded (:data:`planner.limits.MAX_MACHINE_FILE_BYTES`) before the parser sees it, so a 10 MB
upload or link is refused at once instead of costing a minute of CPU and a gigabyte.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from planner.limits import MAX_MACHINE_FILE_BYTES, LimitError, check_text_size


def _error(message: str) -> Exception:
    from planner.machine.tree import MachineError

    return MachineError(message)


def _check_size(text: str | bytes, kind: str) -> None:
    try:
        check_text_size(text, MAX_MACHINE_FILE_BYTES, f"the machine {kind}",
                        "a machine description is a few hundred bytes (see machines/dgx_a100.yaml)")
    except LimitError as exc:
        raise _error(str(exc)) from None


def _reject_json_constant(name: str) -> Any:
    raise _error(f"invalid JSON: {name} is not a number JSON allows; write a finite number")


def parse_json(text: str | bytes) -> Any:
    """The data of a machine's JSON text; MachineError (one line) when it is not JSON."""
    _check_size(text, "JSON")
    from planner.machine.tree import MachineError

    try:
        # NaN/Infinity are not JSON; refuse them at the parser rather than later.
        return json.loads(text, parse_constant=_reject_json_constant)
    except MachineError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad bytes, deep nesting
        raise _error(f"invalid JSON: {exc}") from None


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """PyYAML's 3-7 line message as one line: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    what = f"{problem} ({context})" if context and context != problem else problem
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {' '.join(str(what).split())}"


def parse_yaml(text: str | bytes) -> Any:
    """The data of a machine's YAML text (safe, duplicate keys refused); MachineError in one line."""
    _check_size(text, "YAML")
    from planner.machine.tree import MachineError

    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except MachineError:
        raise
    except yaml.YAMLError as exc:
        raise _error(yaml_error_line(exc)) from None
    except Exception as exc:  # noqa: BLE001
        # PyYAML's constructors raise plain built-in errors for some malformed scalars
        # (ValueError for the date 2001-02-30, RecursionError for absurd nesting, ...).
        # Everything coming out of the parser is a problem with the input text.
        raise _error(f"invalid YAML: {type(exc).__name__}: {' '.join(str(exc).split())}") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys.

    Plain PyYAML keeps the last of two equal keys, so a file with two ``bandwidth_Bps`` lines
    would load silently with one of them ignored.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        from planner.machine.tree import _show

        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # unhashable key: let SafeLoader report it
                if duplicate:
                    raise _error(
                        f"{_show(key)}: duplicate key in YAML "
                        f"(line {key_node.start_mark.line + 1}); each key may appear once"
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)
