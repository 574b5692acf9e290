"""The registry of operator rules, the typed spec a rule returns and the context it reads.

A rule turns one ONNX node into an iteration space (see ``planner.model.graph``): the operator's
named dimensions, which of them index each axis of each input and output, its FLOPs, and which
dimensions are reductions, unsplittable or carry a halo. Rules are registered per op type with
:func:`rule`; the importer looks them up in :data:`REGISTRY` by op type (whatever the domain).

Some op types are handled by the importer itself and only *declared* here (``Constant``, ``Shape``,
``Size``: static shape arithmetic); each entry also says when the operator is static, i.e. shape
arithmetic the planner never places (:class:`Static`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import onnx

from planner.model.graph import OpKind

Axes = tuple[tuple[str, ...], ...]  # one tuple of dimension names per tensor axis (major to minor)


class RuleError(Exception):
    """A rule cannot describe this node (an axis it cannot match, a value known only at run time);
    the message says why, and the importer plans the node as an opaque, replicated operator."""


@dataclass(frozen=True)
class OpSpec:
    """What a rule says about one node: the operator's iteration space.

    ``in_axes``/``out_axes`` have one entry per (non-empty) input/output; ``loose_in``/``loose_out``
    map an input/output index to the axes whose size differs from their dim (convolution spatial
    axes). ``kind`` is how the planner treats the operator (a matrix product decides layouts).
    """

    dims: dict[str, int]
    in_axes: list
    out_axes: list
    flops: float = 0
    kind: OpKind = OpKind.FOLLOW
    reduction: frozenset[str] = frozenset()
    fixed: frozenset[str] = frozenset()
    halo: dict[str, int] = field(default_factory=dict)
    loose_in: dict[int, frozenset[int]] = field(default_factory=dict)
    loose_out: dict[int, frozenset[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeContext:
    """One node as a rule sees it: names and static shapes of its non-empty inputs and outputs,
    its attributes, the opset of the default domain, and the values the importer could fold."""

    node: onnx.NodeProto
    ins: list[str]
    outs: list[str]
    in_shapes: list[tuple[int, ...]]
    out_shapes: list[tuple[int, ...]]
    attrs: dict
    opset: int
    const_values: dict[str, np.ndarray]
    parameters: frozenset[str]  # initializers that are trained weights

    @property
    def op_type(self) -> str:
        return self.node.op_type

    def const(self, name: str) -> np.ndarray:
        """The folded value of an input; a RuleError when it is only known at run time."""
        if name not in self.const_values:
            raise RuleError(f"needs the constant value of '{name}', which is computed at run time")
        return self.const_values[name]


class Static(str, Enum):
    """When an operator is static shape arithmetic (never planned, no data dependence)."""

    INPUTS = "inputs"  # when it has inputs and every one is static (the default)
    SOURCE = "source"  # when every input is static, none included (ConstantOfShape, Range, random)
    ALWAYS = "always"  # Shape and Size read only a shape
    CONSTANT = "constant"  # Constant: its value is its attribute


RuleFn = Callable[[NodeContext], OpSpec]


@dataclass(frozen=True)
class Rule:
    op_type: str
    fn: RuleFn | None  # None: the importer handles the op type itself (Constant, Shape, Size)
    static: Static = Static.INPUTS


class Registry:
    """Op type -> :class:`Rule`; an op type registers once."""

    def __init__(self):
        self._rules: dict[str, Rule] = {}

    def add(self, op_types: tuple[str, ...], fn: RuleFn | None, static: Static) -> None:
        for op_type in op_types:
            if op_type in self._rules:
                raise ValueError(f"op type {op_type} already has a rule ({self._rules[op_type].fn})")
            self._rules[op_type] = Rule(op_type, fn, static)

    def get(self, op_type: str) -> Rule | None:
        return self._rules.get(op_type)

    def static_policy(self, op_type: str) -> Static:
        entry = self._rules.get(op_type)
        return entry.static if entry else Static.INPUTS

    def op_types(self) -> set[str]:
        return set(self._rules)

    def __contains__(self, op_type: str) -> bool:
        return op_type in self._rules


REGISTRY = Registry()


def rule(*op_types: str, static: Static = Static.INPUTS) -> Callable[[RuleFn], RuleFn]:
    """Register the decorated function as the rule of each of ``op_types``."""
    def register(fn: RuleFn) -> RuleFn:
        REGISTRY.add(op_types, fn, static)
        return fn
    return register


def declare(*op_types: str, static: Static) -> None:
    """Op types the importer handles itself (no rule function), with their static policy."""
    REGISTRY.add(op_types, None, static)


# ---- helpers shared by the rules ---------------------------------------------------------------

def axis_names(rank: int, prefix: str = "d") -> list[str]:
    return [f"{prefix}{i}" for i in range(rank)]


def broadcast_axes(in_shape, out_names, out_shape) -> list[tuple[str, ...]]:
    """Right-aligned broadcasting: axes of size 1 against a larger output are broadcast."""
    offset = len(out_shape) - len(in_shape)
    axes = []
    for j, size in enumerate(in_shape):
        k = j + offset
        if k < 0:
            raise RuleError("input has a higher rank than the output")
        if size == out_shape[k]:
            axes.append((out_names[k],))
        elif size == 1:
            axes.append(())
        else:
            raise RuleError(f"cannot broadcast {tuple(in_shape)} to {tuple(out_shape)}")
    return axes


def unused(shapes) -> list[list[tuple[()]]]:
    """Axes of inputs that index nothing (a shape, axes or repeats operand)."""
    return [[() for _ in s] for s in shapes]


def opaque_spec(in_shapes, out_shapes, kind: OpKind = OpKind.OPAQUE) -> OpSpec:
    """Every axis of every tensor its own unsplittable dim: the operator can only be replicated."""
    dims: dict[str, int] = {}

    def own(prefix, shapes):
        axes = []
        for k, s in enumerate(shapes):
            names = [f"{prefix}{k}_{a}" for a in range(len(s))]
            dims.update(zip(names, s))
            axes.append([(n,) for n in names])
        return axes
    in_axes, out_axes = own("i", in_shapes), own("o", out_shapes)
    return OpSpec(dims, in_axes, out_axes, 0, kind, fixed=frozenset(dims))
