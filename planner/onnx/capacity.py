"""The capacity factor of a mixture-of-experts model, set on its ONNX graph before import
(``plan``/``evaluate --moe-capacity-factor F``).

Owns finding where a model computes its experts' capacity and rewriting it. A dropping
implementation (the generator's Mixtral and DeepSeek samples, ``sample_models/build.py``) gives
each expert ``C = ceil(s x k x f / E)`` tokens of a sequence: the dispatch ``TopK`` along the
sequence takes ``k`` = ``Cast(Ceil(Mul(s, k f / E)))``, its scores the router's Softmax over ``E``
experts (transposed), beside the router's own ``TopK`` of ``k``. Setting ``f`` rewrites that
constant to ``k F / E``; shape inference then sizes the dispatched tokens ``[b, E, C, hidden]``, so
the experts' compute and the all-to-all bytes (:mod:`planner.cost.alltoall`) follow. A model whose
capacity is not written this way (no MoE layer, or a fixed capacity) is refused with a message.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from planner.errors import PlannerError


class CapacityFactorError(PlannerError, ValueError):
    """The factor is not a number above 0, or the model has no capacity to set; the message says why."""


def check_capacity_factor(factor) -> float:
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < math.inf:
        raise CapacityFactorError(f"the MoE capacity factor must be a number above 0 (1.0: each expert takes its "
                                  f"share of the tokens, none dropped when balanced), not {factor!r}")
    return float(factor)


def _constant(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _capacity_sites(model: onnx.ModelProto) -> list[tuple[str, float]]:
    """(name of the constant ``k f / E``, ``k / E``) for each dispatch TopK whose k is
    ``Cast(Ceil(Mul(tokens, constant)))`` over transposed router scores."""
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    sites = []
    for node in model.graph.node:
        if node.op_type != "TopK" or len(node.input) < 2:
            continue
        chain = [producer.get(node.input[1])]
        for _ in ("Ceil", "Mul"):
            chain.append(producer.get(chain[-1].input[0]) if chain[-1] is not None and chain[-1].input else None)
        cast, ceil, mul = chain
        transpose = producer.get(node.input[0])
        if None in (cast, ceil, mul, transpose) or (cast.op_type, ceil.op_type, mul.op_type,
                                                    transpose.op_type) != ("Cast", "Ceil", "Mul", "Transpose"):
            continue
        ratio = _router_ratio(model, transpose.input[0], producer, consumers, node)
        constant = next((name for name in mul.input if name not in producer or producer[name].op_type == "Constant"),
                        None)
        if ratio is not None and constant is not None:
            sites.append((constant, ratio))
    return sites


def _router_ratio(model, scores: str, producer, consumers, dispatch) -> float | None:
    """``k / E`` of the router whose Softmax produced ``scores``: ``k`` of its own TopK (a constant),
    ``E`` the last axis of the router's weight."""
    softmax = producer.get(scores)
    if softmax is None or softmax.op_type != "Softmax":
        return None
    router = producer.get(softmax.input[0])
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}  # weights may be stripped of data
    weight = None if router is None else next((shapes[n] for n in router.input if n in shapes), None)
    topk = next((n for n in consumers.get(scores, []) if n.op_type == "TopK" and n is not dispatch), None)
    k = None if topk is None or len(topk.input) < 2 else _constant(model, topk.input[1])
    if weight is None or len(weight) != 2 or k is None or np.asarray(k).size != 1:
        return None
    return float(np.asarray(k).reshape(-1)[0]) / weight[-1]


def with_capacity_factor(model: onnx.ModelProto, factor: float) -> onnx.ModelProto:
    """A copy of ``model`` whose experts take ``ceil(s x k x factor / E)`` tokens of a sequence.
    An uploaded file's unusual constants (no tensor attribute, a zero-width router) are one
    CapacityFactorError, never a traceback."""
    factor = check_capacity_factor(factor)
    try:
        return _with_capacity_factor(model, factor)
    except CapacityFactorError:
        raise
    except (TypeError, IndexError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise CapacityFactorError(f"--moe-capacity-factor: the model's expert capacity could not be read "
                                  f"({type(exc).__name__}: {exc}); drop --moe-capacity-factor or export the "
                                  "model again") from None


def _with_capacity_factor(model: onnx.ModelProto, factor: float) -> onnx.ModelProto:
    sites = _capacity_sites(model)
    if not sites:
        raise CapacityFactorError("--moe-capacity-factor: the model has no expert capacity to set (no MoE layer whose "
                                  "experts take ceil(tokens x top-k x factor / experts) tokens, as the generated "
                                  "Mixtral and DeepSeek samples write it); drop --moe-capacity-factor")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    values = {name: np.float32(ratio * factor) for name, ratio in sites}
    for init in out.graph.initializer:
        if init.name in values:
            init.CopyFrom(numpy_helper.from_array(np.asarray(values[init.name], dtype=numpy_helper.to_array(init).dtype)
                                                  .reshape(numpy_helper.to_array(init).shape), init.name))
    for node in out.graph.node:
        if node.op_type == "Constant" and node.output[0] in values:
            old = numpy_helper.to_array(node.attribute[0].t)
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(
                np.asarray(values[node.output[0]], dtype=old.dtype).reshape(old.shape)))
    return out
