"""Bounds on what one input may ask of the planner, and the checks that enforce them.

Every input that a user (or a shared link) controls is bounded *before* anything is built
from it: a machine file by size, levels and devices; a plan file by size and nesting; a URL
parameter by length; bindings by the product of their values; a plan by devices x operators.
Each check raises ``LimitError`` (a ``ValueError``) with one line that names the input, the
bound and what to do. The README's "Security and limits" section lists these constants.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

from planner.errors import PlannerError

#: A machine description (YAML or JSON text): the largest preset is about 1 KiB.
MAX_MACHINE_FILE_BYTES = 64 * 1024
#: Levels of a machine hierarchy (real machines have 2-4).
MAX_MACHINE_LEVELS = 16
#: Devices of a machine (the product of the arities): 1,048,576.
MAX_DEVICES = 2**20
#: A plan file (plan --json of gpt3_175b on 4,096 devices is about 1 MiB).
MAX_PLAN_FILE_BYTES = 16 * 2**20
#: Nesting of JSON arrays and objects in a plan file (plan --json writes 4 levels).
MAX_PLAN_NESTING = 32
#: Characters of one URL query parameter (a 16-level machine_json is about 1,700).
MAX_URL_VALUE_CHARS = 4096
#: Characters of a user's value quoted back in a message.
QUOTE_CHARS = 80
#: The product of all bound symbolic dimensions (e.g. batch x seq): 2^40 = 1.1e12. Above it,
#: a tensor's bytes (times a hidden size and element size) overflow ONNX's int64 shapes.
MAX_BINDING_PRODUCT = 2**40
#: Planning work: devices x operators of one plan (e.g. 4,096 devices x 2,048 operators = 2^23).
MAX_PLANNING_WORK = 2**27


class LimitError(PlannerError, ValueError):
    """An input exceeds a documented bound; the message names it and says what to do."""


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, cut to at most ``limit`` characters with the full length said.

    >>> quote("x" * 100_000)[-30:]
    "... (100,000 characters in all)"
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[:limit]}... ({size} in all)"


def check_text_size(text: str | bytes, limit: int, what: str, fix: str) -> None:
    """Refuse ``text`` longer than ``limit`` bytes (UTF-8) before parsing it."""
    size = len(text) if isinstance(text, (bytes, bytearray)) else len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise LimitError(f"{what} is {size:,} bytes, more than the {limit:,} allowed; {fix}")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_nesting(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text``, found without recursion
    (brackets inside strings do not count). Malformed text gives some number; the parser
    reports the syntax error afterwards."""
    deepest = depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_json_nesting(text: str, limit: int, what: str) -> None:
    depth = json_nesting(text)
    if depth > limit:
        raise LimitError(f"{what} nests arrays and objects {depth:,} deep, more than the {limit} allowed; "
                         "give the JSON that plan --json writes")


def require_regular_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """``path`` as a Path if it names a regular file (after symlinks); else a LimitError that says
    whether it is missing or something else (a directory, a FIFO, a device such as /dev/zero).
    Checked before opening, so a FIFO never blocks and a device is never read."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise LimitError(f"{what} not found: {path}{hint}") from None
    except OSError as exc:
        raise LimitError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a file")
        raise LimitError(f"{what} {path} is not a regular file: it is {kind}; give the path of a file")
    return path


def read_bounded(path: str | os.PathLike, limit: int, what: str, fix: str) -> bytes:
    """The bytes of a regular file no larger than ``limit``; LimitError otherwise."""
    path = require_regular_file(path, what)
    size = path.stat().st_size
    if size > limit:
        raise LimitError(f"{what} {path} is {size:,} bytes, more than the {limit:,} allowed; {fix}")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise LimitError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:  # grew since the stat
        raise LimitError(f"{what} {path} is more than the {limit:,} bytes allowed; {fix}")
    return data


def check_binding_product(bindings: dict[str, int], source: str) -> None:
    """Refuse bindings whose values multiply past MAX_BINDING_PRODUCT, naming them.

    ``source`` says where they came from: ``"--bind"``, ``"plan file x.json: bindings"``, ``"bind="``.
    """
    product = math.prod(int(v) for v in bindings.values())
    if product > MAX_BINDING_PRODUCT:
        given = ", ".join(f"{k}={v}" for k, v in bindings.items())
        raise LimitError(f"{source} {quote(given)[1:-1] if len(given) > QUOTE_CHARS else given}: the bound dimensions "
                         f"multiply to {product:.3g}, more than 2^40 ({MAX_BINDING_PRODUCT:.3g}), which overflows the "
                         "model's tensor sizes; give smaller values (e.g. batch=32, seq=2048)")


def check_planning_work(devices: int, operators: int) -> None:
    """Refuse a plan of more than MAX_PLANNING_WORK devices x operators before searching."""
    work = devices * operators
    if work > MAX_PLANNING_WORK:
        raise LimitError(f"planning {operators:,} operators on {devices:,} devices is {work:,} device-operators, "
                         f"more than the {MAX_PLANNING_WORK:,} (2^27) a plan may take; use a machine with fewer "
                         "devices (e.g. fewer nodes) or a smaller model")
