"""Op types the importer handles itself, declared with when they are static shape arithmetic:
``Constant`` (its value is its attribute) and ``Shape``/``Size`` (they read only a shape). The
value sources (ConstantOfShape, Range, random tensors) are rules in ``movement``."""

from __future__ import annotations

from planner.onnx.rules.base import Static, declare

declare("Constant", static=Static.CONSTANT)
declare("Shape", "Size", static=Static.ALWAYS)
