"""How many bytes a cached object keeps alive, for caches bounded by bytes rather than entries.

:func:`deep_size` walks the objects reachable from one value (``gc.get_referents``), counting
each once with ``sys.getsizeof``, numpy arrays by their buffers and protobuf messages (ONNX
``ModelProto``) by their serialized size. It does not follow modules, classes or the globals and
code of functions (a function counts by its closure and defaults), so that a value is charged for
what it holds, not for the program. Objects shared with other cached values are counted in each:
the bound errs on the side of evicting early.

A walk costs about a microsecond per object (0.1-0.5 s for a plan result of the samples, 2.7 s
for GPT-3's), so each entry is sized once, where it is made: the explorer's planning workers send
a result pickled, and :func:`pickled_size` charges it :data:`BYTES_PER_PICKLED_BYTE` times its
pickle's length (a walk-free upper bound, tests/explorer/test_app_memory.py), and so is a graph imported
in a worker. :class:`Sized` carries such a size to the cache.
"""

from __future__ import annotations

import gc
import sys
import types
from typing import NamedTuple

import numpy as np

try:  # the protobuf runtime (upb) keeps messages in C memory: sys.getsizeof does not see it
    from google.protobuf.message import Message as _Message
except ImportError:  # pragma: no cover - onnx depends on protobuf
    _Message = ()

#: Bytes a graph or a plan result takes in memory per byte of its pickle. Measured on the samples
#: (tests/explorer/test_app_memory.py): graphs 8.6-10.5, results without their graph 6.3-9.2 (the cost
#: model's memo tables of small tuples and floats; the smallest models have the highest ratios).
#: 12 errs on the side of evicting early.
BYTES_PER_PICKLED_BYTE = 12


class Sized(NamedTuple):
    """A value to cache and the bytes it keeps alive, measured when it was made."""

    value: object
    nbytes: int


def pickled_size(payload: bytes) -> int:
    """The bytes the value unpickled from ``payload`` keeps alive (an upper bound, no walk)."""
    return BYTES_PER_PICKLED_BYTE * len(payload)


_SKIP = (type, types.ModuleType, types.CodeType, types.FrameType, types.BuiltinFunctionType)


def deep_size(value, limit: int | None = None, exclude: tuple = ()) -> int:
    """Bytes reachable from ``value`` (stops counting past ``limit`` when given), not counting
    the objects in ``exclude`` nor what is reachable only through them."""
    seen: set[int] = {id(x) for x in exclude}
    stack = [value]
    total = 0
    while stack:
        obj = stack.pop()
        oid = id(obj)
        if oid in seen or isinstance(obj, _SKIP):
            continue
        seen.add(oid)
        if isinstance(obj, _Message):
            total += 2 * obj.ByteSize() + 64  # parsed messages take about twice their wire size
            continue
        try:
            total += sys.getsizeof(obj)
        except TypeError:
            total += 64
        if isinstance(obj, np.ndarray):
            if obj.base is None and not obj.flags.owndata:
                pass
            elif obj.base is not None:
                stack.append(obj.base)
            continue  # getsizeof counts the data an array owns
        if limit is not None and total > limit:
            return total
        if isinstance(obj, types.FunctionType):
            stack.extend(c.cell_contents for c in (obj.__closure__ or ()) if _has_contents(c))
            stack.extend(obj.__defaults__ or ())
            continue
        if isinstance(obj, (str, bytes, int, float, complex, bool)) or obj is None:
            continue
        stack.extend(gc.get_referents(obj))
    return total


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True
