"""Say which node of a model is malformed, and why, instead of "shape inference could not resolve".

Called after shape inference for the nodes whose outputs stayed unresolved: a node with the
wrong number of inputs, an axis out of range, a ``perm`` that is not a permutation, an Einsum
equation that does not match its inputs, or an operator ONNX does not define is named with the
reason in one line.
"""

from __future__ import annotations

import re

import onnx
from onnx import checker

# onnxruntime contrib operators exported in the default domain by some tools: no ONNX schema
_KNOWN_WITHOUT_SCHEMA = {"SimplifiedLayerNormalization", "RMSNormalization", "FastGelu", "BiasGelu", "QuickGelu",
                         "Gelu", "SkipLayerNormalization"}
_ONNX_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training"}


class InvalidNodeError(ValueError):
    """A node does not match its operator's definition; the message names it and says why."""


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "invalid"
    return line[:300]


def _axis_range(op: str, rank: int) -> tuple[int, int]:
    return (-rank - 1, rank) if op == "Flatten" else (-rank, rank - 1)


def _einsum_problem(equation: str, ranks: list[int | None]) -> str | None:
    eq = equation.replace(" ", "")
    if eq.count("->") > 1:
        return f"equation {equation!r} has more than one '->'"
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        return f"equation {equation!r} has {len(terms)} input term(s) for {len(ranks)} input(s)"
    for k, (term, rank) in enumerate(zip(terms, ranks)):
        if not re.fullmatch(r"[A-Za-z]*(\.\.\.)?[A-Za-z]*", term):
            return f"equation {equation!r}: input term {term!r} is not letters (with at most one '...')"
        letters = len(term.replace("...", ""))
        if rank is not None and ("..." not in term and letters != rank or "..." in term and letters > rank):
            return f"equation {equation!r}: input {k} has rank {rank} but its term {term!r} names {letters} axes"
    if "->" in eq:
        if not re.fullmatch(r"[A-Za-z]*(\.\.\.)?[A-Za-z]*", rhs):
            return f"equation {equation!r}: output term {rhs!r} is not letters"
        unknown = sorted(set(rhs.replace("...", "")) - set(lhs))
        if unknown:
            return f"equation {equation!r}: output letter(s) {', '.join(unknown)} appear in no input"
    return None


def diagnose(node: onnx.NodeProto, opsets: dict[str, int], ir_version: int,
             ranks: list[int | None]) -> str | None:
    """Why ``node`` is invalid (one line), or None if nothing definite is wrong.

    ``ranks`` are the ranks of its inputs where known (None where not).
    """
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    if domain not in _ONNX_DOMAINS:
        return None  # a custom operator: nothing to check it against
    if node.op_type in _KNOWN_WITHOUT_SCHEMA and not domain:
        return None
    if not onnx.defs.has(node.op_type, domain):
        where = f"domain '{domain}'" if domain else "the ONNX standard"
        return f"'{node.op_type}' is not an operator of {where}: replace it or export with a supported operator set"
    ctx = checker.C.CheckerContext()
    ctx.ir_version = max(int(ir_version), 3)
    ctx.opset_imports = {d: v for d, v in opsets.items()}
    try:
        checker.check_node(node, ctx, checker.C.LexicalScopeContext())
    except Exception as exc:  # noqa: BLE001 - ValidationError and SchemaError
        return _first_line(str(exc))
    attrs = {a.name: a for a in node.attribute}
    rank = ranks[0] if ranks else None
    if "axis" in attrs and rank is not None and node.op_type not in ("Unsqueeze",):
        axis = attrs["axis"].i
        low, high = _axis_range(node.op_type, rank)
        if not low <= axis <= high:
            return f"axis={axis} is out of range for an input of rank {rank} (allowed {low}..{high})"
    if node.op_type == "Transpose" and "perm" in attrs:
        perm = list(attrs["perm"].ints)
        if sorted(perm) != list(range(len(perm))) or (rank is not None and len(perm) != rank):
            return f"perm={perm} is not a permutation of the input's {rank if rank is not None else len(perm)} axes"
    if node.op_type == "Einsum":
        if "equation" not in attrs:
            return "it has no 'equation' attribute"
        try:
            equation = attrs["equation"].s.decode()
        except UnicodeDecodeError:
            return "its equation is not text"
        problem = _einsum_problem(equation, ranks)
        if problem:
            return problem
    return None


def check_unresolved(model: onnx.ModelProto, names: list[str], shapes: dict) -> None:
    """Raise InvalidNodeError for the first node whose outputs are unresolved and that is malformed."""
    opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in model.opset_import}
    for node, name in zip(model.graph.node, names):
        outs = [o for o in node.output if o]
        if outs and all(shapes.get(o) is not None for o in outs):
            continue
        ranks = [len(shapes[i]) if shapes.get(i) is not None else None for i in node.input if i]
        reason = diagnose(node, opsets, model.ir_version, ranks)
        if reason:
            raise InvalidNodeError(f"node '{name}' ({node.op_type}) is invalid: {reason}; fix the node or "
                                   "export the model again")
