"""Reading an ONNX model: bytes or a file, through the guard, into a checked ModelProto.

``load_model_proto`` parses a file or bytes without ever opening external data (the guard strips
every external reference and checks the work bounds before any inference); ``check_graph`` makes
sure every tensor has one producer defined before it is read (sorting nodes listed out of order)
and that there is no cycle. Every failure raises :class:`ModelImportError` with a fix-it message.
Also: operator names (``operator_names``), the model's symbolic input dimensions and its SHA-256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import networkx as nx
import onnx

from planner.onnx import guard as onnx_guard


class ModelImportError(ValueError):
    """The model cannot be imported or planned; the message says why and how to fix it."""


# ---- loading ---------------------------------------------------------------------------------

def load_model_proto(source: bytes | str | Path) -> onnx.ModelProto:
    """Parse an ONNX model from bytes or a path without opening any external-data file."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        data = onnx_guard.read_regular_file(path, ModelImportError)
        label = str(path)
    else:
        data = bytes(source)
        label = "the uploaded file"
        if len(data) > onnx_guard.MAX_MODEL_BYTES:
            raise ModelImportError(f"{label} is {len(data):,} bytes, above the bound of {onnx_guard.MAX_MODEL_BYTES:,}: "
                                   "save the weights as external data (they are never read)")
    if not data:
        raise ModelImportError(f"{label} is empty (0 bytes): export the model again with torch.onnx.export")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and, for some inputs, other errors
        raise ModelImportError(
            f"{label} is not a valid ONNX model (the protobuf could not be parsed: {exc}); "
            "it may be truncated or not an .onnx file at all"
        ) from None
    check_header(model, label)
    return model


def check_header(model: onnx.ModelProto, label: str) -> None:
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelImportError(
            f"{label} is not an ONNX model (no IR version or no graph); choose an .onnx file "
            "written by an exporter such as torch.onnx.export"
        )
    if len(model.graph.node) == 0:
        raise ModelImportError(f"{label} has an empty graph (no operators): nothing to plan")
    try:  # no external-data reference survives parsing; bounds are checked before any inference
        onnx_guard.neutralise(model)
        onnx_guard.check_limits(model, operator_names(model.graph.node))
    except onnx_guard.LimitError as exc:
        raise ModelImportError(f"{label}: {exc}") from None


def operator_names(nodes) -> list[str]:
    """The operator name of each node: its own name, else ``OpType_index``; made unique."""
    used: set[str] = set()
    names = []
    for index, node in enumerate(nodes):
        name = node.name or f"{node.op_type}_{index}"
        base, k = name, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
    return names


def check_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every tensor defined once and before it is read; no cycle.

    Nodes listed out of order (ONNX asks for topological order, some tools do not keep it) are
    sorted in a copy; an undefined tensor or a cycle is an error that names the nodes.
    """
    g = model.graph
    names = operator_names(g.node)
    sources = {i.name for i in g.initializer} | {i.name for i in g.input}
    producer: dict[str, int] = {}
    for idx, node in enumerate(g.node):
        for out in node.output:
            if not out:
                continue
            if out in producer or out in sources:
                first = f"node '{names[producer[out]]}'" if out in producer else "a graph input or initializer"
                raise ModelImportError(
                    f"tensor '{out}' is written by node '{names[idx]}' ({node.op_type}) and also by {first}: "
                    "in an ONNX graph every tensor has exactly one producer; re-export the model"
                )
            producer[out] = idx
    out_of_order = False
    for idx, node in enumerate(g.node):
        for inp in node.input:
            if not inp or inp in sources:
                continue
            if inp not in producer:
                raise ModelImportError(
                    f"node '{names[idx]}' ({node.op_type}) reads tensor '{inp}', which is not a graph input, "
                    "not an initializer and not the output of any node: the model is incomplete; re-export it"
                )
            out_of_order |= producer[inp] >= idx
    if not out_of_order:
        return model
    deps = nx.DiGraph()
    deps.add_nodes_from(range(len(g.node)))
    for idx, node in enumerate(g.node):
        for inp in node.input:
            if inp in producer:
                deps.add_edge(producer[inp], idx)
    if not nx.is_directed_acyclic_graph(deps):
        cycle = [names[u] for u, _ in nx.find_cycle(deps)]
        raise ModelImportError(
            "the graph has a cycle: " + " -> ".join(f"'{n}'" for n in cycle + cycle[:1])
            + " (each feeds the next); an ONNX graph must be acyclic: re-export the model"
        )
    order = list(nx.lexicographical_topological_sort(deps))
    sorted_model = onnx.ModelProto()
    sorted_model.CopyFrom(model)
    del sorted_model.graph.node[:]
    for idx in order:
        node = sorted_model.graph.node.add()
        node.CopyFrom(g.node[idx])
        node.name = names[idx]  # keep the names the nodes had in the original order
    return sorted_model


def model_sha256(source: bytes | str | Path) -> str:
    data = onnx_guard.read_regular_file(Path(source), ModelImportError) if isinstance(source, (str, Path)) else bytes(source)
    return hashlib.sha256(data).hexdigest()


def symbolic_dims(model: onnx.ModelProto) -> list[str]:
    """Names of the symbolic dimensions of the graph's data inputs, in order of appearance."""
    inits = {i.name for i in model.graph.initializer}
    names: list[str] = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_param"):
                continue
            if not isinstance(d.dim_param, str):  # protobuf hands back bytes that are not UTF-8
                raise ModelImportError(f"input {vi.name!r} has a dimension name that is not valid text: "
                                       "the file is corrupt; export the model again")
            if d.dim_param not in names:
                names.append(d.dim_param)
    return names


def batch_symbol(model: onnx.ModelProto) -> str | None:
    """The symbolic dimension on axis 0 of the first data input: the batch, by convention."""
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        return dims[0].dim_param or None if len(dims) and dims[0].HasField("dim_param") else None
    return None
