"""Building the :class:`planner.model.rebind.Rebinder` of an ONNX model (a file, its bytes or a
parsed ModelProto): parsed once, re-imported by :func:`planner.onnx.importer.import_model`."""

from __future__ import annotations

from pathlib import Path

import onnx

from planner.model.rebind import Rebinder
from planner.onnx.importer import import_model, load_model_proto


def rebinder_for(source: bytes | str | Path | onnx.ModelProto, name: str | None = None) -> Rebinder:
    """The rebinder of ``source``; ``name`` as :func:`import_model` takes it (default: the file's stem)."""
    model = source if isinstance(source, onnx.ModelProto) else load_model_proto(source)
    if name is None:
        name = Path(source).stem if isinstance(source, (str, Path)) else (model.graph.name or "model")
    return Rebinder(model, name, import_model)
