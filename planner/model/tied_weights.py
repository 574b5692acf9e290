"""Tied weights stored twice: an initializer that is exactly the transpose of another.

A language model whose output projection shares the token embedding (GPT-2, T5:
``lm_head.weight is wte.weight``) computes ``logits = h @ wte^T``. Both PyTorch exporters
constant-fold that ``Transpose(wte)`` into a second initializer (``onnx::MatMul_656``,
``val_309``), so the file holds the [vocab, hidden] table and its [hidden, vocab] transpose, and
anything that counts initializers counts the tied weight twice (and prices two gradients).

:func:`fold_transposed_copies` finds each 2-D float initializer whose values are exactly the
transpose of another's and replaces it with a ``Transpose`` node reading the original, which is
what the module computes. It needs the values, so it runs before the weights are stripped
(``strip_weights`` calls it); an initializer without inline data is never compared.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_GENERATED_PREFIXES = ("onnx::", "val_", "_val_", "const_")


def _looks_generated(name: str) -> bool:
    return name.startswith(_GENERATED_PREFIXES) or "." not in name


def _has_values(init: onnx.TensorProto) -> bool:
    """Inline data for every element (a stripped or neutralised weight has none)."""
    if init.data_location == TensorProto.EXTERNAL or init.external_data:
        return False
    if init.raw_data:
        return True
    held = {TensorProto.FLOAT: init.float_data, TensorProto.DOUBLE: init.double_data}.get(init.data_type, init.int32_data)
    return len(held) == int(np.prod(init.dims))


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()


def transposed_copies(graph: onnx.GraphProto) -> list[tuple[str, str]]:
    """Pairs (copy, original): the 2-D float initializer ``copy`` equals ``original`` transposed.

    Only non-square matrices are compared (a tied embedding is [vocab, hidden]; comparing every
    square attention weight with every other would cost a pass over most of the model).

    Of two initializers that are each other's transpose, the one with an exporter-generated name
    (``onnx::...``, ``val_...``) is the copy; if neither or both are, the later one is."""
    candidates = []
    for index, init in enumerate(graph.initializer):
        if (len(init.dims) == 2 and init.dims[0] != init.dims[1] and init.data_type in _FLOAT_TYPES
                and _has_values(init)):
            candidates.append((index, init))
    by_digest: dict[tuple, list] = {}
    arrays = {}
    for index, init in list(candidates):
        try:
            array = numpy_helper.to_array(init)
        except ValueError:  # data of the wrong length: not a tensor to compare
            candidates.remove((index, init))
            continue
        arrays[init.name] = array
        by_digest.setdefault((init.data_type, array.shape, _digest(array)), []).append((index, init.name))
    pairs = []
    used = set()
    for index, init in candidates:
        if init.name in used:
            continue
        array = arrays[init.name]
        key = (init.data_type, array.shape[::-1], _digest(array.T))
        for other_index, other in by_digest.get(key, []):
            if other in used or other == init.name or not np.array_equal(arrays[other], array.T):
                continue
            first, second = (init.name, other) if index < other_index else (other, init.name)
            copy, original = (first, second) if _looks_generated(first) and not _looks_generated(second) \
                else (second, first)
            pairs.append((copy, original))
            used.update((copy, original))
            break
    return pairs


def fold_transposed_copies(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """Replace, in place, each initializer that is the transpose of another by ``Transpose(original)``.

    Returns the (copy, original) pairs folded. The new node is placed first in the graph (its
    only input is an initializer), named ``<copy>/tied_transpose``, and its output keeps the
    copy's name, so every consumer is unchanged."""
    graph = model.graph
    pairs = transposed_copies(graph)
    if not pairs:
        return []
    copies = {copy for copy, _ in pairs}
    kept = [init for init in graph.initializer if init.name not in copies]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [vi for vi in graph.input if vi.name not in copies]  # IR < 4 lists initializers as inputs too
    if len(inputs) != len(graph.input):
        del graph.input[:]
        graph.input.extend(inputs)
    nodes = [helper.make_node("Transpose", [original], [copy], name=f"{copy}/tied_transpose", perm=[1, 0])
             for copy, original in pairs]
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    return pairs


def without_transposed_copies(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` itself if no initializer is the transpose of another, else a folded copy
    (for importing an export whose weights were not stripped)."""
    if not transposed_copies(model.graph):
        return model
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    fold_transposed_copies(folded)
    return folded


_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
