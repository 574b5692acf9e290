"""How many bytes a cached object keeps alive, for caches bounded by bytes rather than entries.

:func:`deep_size` walks the objects reachable from one value (``gc.get_referents``), counting
each once with ``sys.getsizeof``, numpy arrays by their buffers and protobuf messages (ONNX
``ModelProto``) by their serialized size. It does not follow modules, classes or the globals and
code of functions (a function counts by its closure and defaults), so that a value is charged for
what it holds, not for the program. Objects shared with other cached values are counted in each:
the bound errs on the side of evicting early.
"""

from __future__ import annotations

import gc
import sys
import types

import numpy as np

try:  # the protobuf runtime (upb) keeps messages in C memory: sys.getsizeof does not see it
    from google.protobuf.message import Message as _Message
except ImportError:  # pragma: no cover - onnx depends on protobuf
    _Message = ()

_SKIP = (type, types.ModuleType, types.CodeType, types.FrameType, types.BuiltinFunctionType)


def deep_size(value, limit: int | None = None) -> int:
    """Bytes reachable from ``value`` (stops counting past ``limit`` when given)."""
    seen: set[int] = set()
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
