"""ONNX -> OperatorGraph: dimension binding, and the graph built node by node from the rule registry.

``import_model`` loads the model (``planner.onnx.load``), binds its symbolic dimensions, infers
every shape (``planner.onnx.shapes``) and builds the graph: each initializer becomes a parameter
or a constant, each node an :class:`Operator` described by the rule its op type has in
``planner.onnx.rules.REGISTRY``. A node whose op type has no rule, or whose rule cannot describe
it, is planned as an opaque (replicated) operator and reported. Shape arithmetic (nodes whose
inputs are all constant, ``Shape``, ``Size``) becomes static operators the planner never places.

The importer never reads external data: a model file may name any path on disk, so only shapes are
used. Every failure a user can cause raises :class:`ModelImportError` with a message that says
what to do.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import onnx

from planner.bindings import binding_problem
from planner.model.batch_trace import split_batch_dims
from planner.model.buffers import non_parameter_initializers
from planner.model.graph import Operator, OperatorGraph, OpKind, Tensor, TensorRole, TensorUse, refine_factors
from planner.model.quantised import quantised_weights
from planner.model.rebatch import STATIC_SYMBOL, RebatchError, import_rebatched, locate_batch
from planner.model.tied_weights import without_transposed_copies
from planner.onnx import validate as onnx_validate
from planner.onnx.moe_rewrite import rewrite_gathered_moe
from planner.onnx.load import (ModelImportError, batch_symbol, check_graph, check_header, load_model_proto,  # noqa: F401
                               model_sha256, operator_names, symbolic_dims)
from planner.onnx.rules import REGISTRY, NodeContext, OpSpec, RuleError, Static, opaque_spec, supported_op_types  # noqa: F401
from planner.onnx.shapes import (ShapeTable, constant_shape, constant_value,  # noqa: F401
                                 dtype_of, infer_shapes, inline_value, opset_of)


def _check_bindings(bindings: dict) -> None:
    for key, value in bindings.items():
        if (problem := binding_problem(key, value)) is not None:
            raise ModelImportError(f"binding {problem}")


def _unknown_bindings(bindings: dict, known: list[str]) -> None:
    unknown_keys = [k for k in bindings if k not in known]
    if unknown_keys:
        hint = ", ".join(known) if known else "none: every input dimension is fixed"
        raise ModelImportError(
            f"the model has no symbolic dimension named {', '.join(unknown_keys)}; its symbolic dimensions are: {hint}"
        )


def import_model(
    source: bytes | str | Path | onnx.ModelProto,
    bindings: dict[str, int] | None = None,
    name: str | None = None,
) -> OperatorGraph:
    """Import an ONNX model as an OperatorGraph.

    ``bindings`` gives values to symbolic input dimensions (``{"batch": 32, "seq": 2048}``).
    Dimensions left unbound are listed in ``graph.unbound_dims`` and taken as 1, so that
    ``inspect`` works; planning refuses such a graph (see :func:`require_bound`).
    """
    if isinstance(source, onnx.ModelProto):
        model = source
        check_header(model, f"model '{model.graph.name or 'model'}'")
    else:
        model = load_model_proto(source)
    if name is None:
        name = Path(source).stem if isinstance(source, (str, Path)) else (model.graph.name or "model")
    bindings = dict(bindings or {})
    _check_bindings(bindings)
    known = symbolic_dims(model)
    if STATIC_SYMBOL in bindings and STATIC_SYMBOL not in known:  # --batch N on a static export
        try:
            return import_rebatched(model, bindings, name, import_model)
        except RebatchError as exc:
            raise ModelImportError(str(exc)) from None
    _unknown_bindings(bindings, known)
    unbound = [d for d in known if d not in bindings]
    values = {**{d: 1 for d in unbound}, **bindings}
    model, graph = _build(model, values, name)
    graph.unbound_dims = unbound
    graph.bindings = dict(bindings)
    locate_batch(model, graph)  # planner.model.rebatch: the batch's symbol and its axis in each input
    split_batch_dims(graph)
    return graph


def _build(model: onnx.ModelProto, values: dict[str, int], name: str) -> tuple[onnx.ModelProto, OperatorGraph]:
    """Check, infer and build; every failure becomes a ModelImportError with a message."""
    try:
        model = check_graph(model)
        model = without_transposed_copies(model)  # a tied embedding exported twice (unstripped file)
        table = infer_shapes(model, values)
        model, table, notes = _rewrite_moe(model, table, values)
        onnx_validate.check_unresolved(model, operator_names(model.graph.node), table.shapes)
        graph = _Builder(model, table, name).build()
        graph.warnings[:0] = notes
        return model, graph
    except ModelImportError:
        raise
    except onnx_validate.InvalidNodeError as exc:
        raise ModelImportError(str(exc)) from None
    except RecursionError:
        raise ModelImportError("the model is nested too deeply to import (recursion limit)") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt model must give a message, not a traceback
        raise ModelImportError(
            f"the model could not be imported ({type(exc).__name__}: {exc}); it is probably corrupt: "
            "check it with onnx.checker.check_model or export it again"
        ) from None


def _rewrite_moe(model: onnx.ModelProto, table: ShapeTable, values: dict[str, int]):
    """Gathered MoE layers in the stacked form (:mod:`planner.onnx.moe_rewrite`), shapes inferred
    again; a rewrite that fails leaves the model as written, with a note, never the import."""
    try:
        rewritten, notes = rewrite_gathered_moe(model, table.shapes)
        if rewritten is model:
            return model, table, notes
        check_graph(rewritten)  # one producer per tensor, unique names: else kept as written (below)
        return rewritten, infer_shapes(rewritten, values), notes
    except Exception as exc:  # noqa: BLE001 - an unforeseen export must still import, as written
        return model, table, [f"MoE not rewritten ({type(exc).__name__}: {exc}); planned as written, "
                              "without expert parallelism"]


def require_bound(graph: OperatorGraph) -> None:
    """Refuse to plan a graph whose symbolic dimensions are not all bound."""
    if graph.unbound_dims:
        names = ", ".join(graph.unbound_dims)
        example = " ".join(f"--bind {d}=N" for d in graph.unbound_dims)
        raise ModelImportError(
            f"symbolic dimension(s) {names} are not bound: give each a value "
            f"(command line: {example}; in the app: the sidebar's dimension fields)"
        )


def _is_static(op_type: str, ins: list[str], static: set[str]) -> bool:
    """Shape arithmetic: Shape/Size always; a value source when all its inputs (if any) are static;
    any other operator when it has inputs and all of them are static."""
    policy = REGISTRY.static_policy(op_type)
    if policy is Static.ALWAYS:
        return True
    all_static = all(i in static for i in ins)
    return all_static if policy is Static.SOURCE else bool(ins) and all_static


class _Builder:
    """Builds the OperatorGraph of one model from its shape table, node by node."""

    def __init__(self, model: onnx.ModelProto, table: ShapeTable, name: str):
        self.model = model
        self.g = model.graph
        self.table = table
        self.name = name
        self.opset = opset_of(model)
        self.tensors: dict[str, Tensor] = {}
        self.operators: dict[str, Operator] = {}
        self.static: set[str] = set()
        self.const_values: dict[str, np.ndarray] = dict(table.values)
        self.parameters: frozenset[str] = frozenset()  # set once the initializers are read
        self.opaque_types: set[str] = set()
        self.warnings: list[str] = []

    # -- tensors --
    def _shape(self, name: str, where: str) -> tuple[int, ...]:
        shape = self.table.shapes.get(name)
        if shape is None:
            raise ModelImportError(
                f"shape inference could not resolve the shape of tensor '{name}' {where}; export the "
                "model with fixed or named input dimensions, or add value_info with that tensor's shape "
                "(for example with onnx.shape_inference or onnxruntime's symbolic shape inference)"
            )
        return shape

    def _add_tensor(self, name: str, role: TensorRole, producer: str | None, label: str) -> Tensor:
        if name in self.tensors:
            return self.tensors[name]
        dtype, itemsize = dtype_of(self.table.dtypes.get(name, onnx.TensorProto.FLOAT))
        t = Tensor(name, self._shape(name, label), dtype, itemsize, role, producer)
        self.tensors[name] = t
        return t

    def _add_initializers(self) -> set[str]:
        """Parameters (trained or frozen quantised weights) and constants; returns their names."""
        init_names = set()
        not_params = non_parameter_initializers(self.g)  # lifted buffers (rotary inv_freq), one-element scales
        quantised = quantised_weights(self.g)
        for init in self.g.initializer:
            init_names.add(init.name)
            dtype, _ = dtype_of(init.data_type)
            # A float initializer is a weight, except a rank-0 one: that is a scalar constant the
            # dynamo exporter lifts out of the code (0.5, sqrt(2), a dropout ratio), never a layer's
            # weight. (A learnable rank-0 scalar, rare, is then missed: one parameter.)
            is_param = (dtype.startswith(("float", "bfloat")) and len(init.dims) > 0 and init.name not in not_params
                        or init.name in quantised)
            role = TensorRole.PARAMETER if is_param else TensorRole.CONSTANT
            self.table.shapes[init.name] = tuple(int(x) for x in init.dims)
            self.table.dtypes[init.name] = init.data_type
            self._add_tensor(init.name, role, None, "(an initializer)").frozen = init.name in quantised
            if not is_param:
                self.static.add(init.name)
                value = inline_value(init)
                if value is not None:
                    self.const_values[init.name] = value
        return init_names

    def build(self) -> OperatorGraph:
        g = self.g
        init_names = self._add_initializers()
        self.parameters = frozenset(n for n, t in self.tensors.items() if t.role is TensorRole.PARAMETER)
        inputs = []
        for vi in g.input:
            if vi.name in init_names:
                continue
            self._add_tensor(vi.name, TensorRole.INPUT, None, "(a graph input: give each of its dimensions a size or a name)")
            inputs.append(vi.name)
        for node, op_name in zip(g.node, operator_names(g.node)):
            self._build_node(node, op_name)
        graph = OperatorGraph(self.name, self.operators, self.tensors, inputs,
                              [o.name for o in g.output if o.name in self.tensors])
        graph.build_edges()
        if not nx.is_directed_acyclic_graph(graph.graph):
            cycle = nx.find_cycle(graph.graph)
            raise ModelImportError(
                "the graph has a cycle (" + " -> ".join(u for u, _ in cycle) + f" -> {cycle[0][0]}); "
                "an ONNX graph must be acyclic: re-export the model"
            )
        self._mark_requires_grad(graph)
        refine_factors(graph)
        if self.opaque_types:
            graph.unsupported_op_types = sorted(self.opaque_types)
            self.warnings.append(
                "unsupported op types (planned as replicated, opaque operators): " + ", ".join(graph.unsupported_op_types)
            )
        graph.warnings = self.warnings
        return graph

    def _mark_requires_grad(self, graph: OperatorGraph) -> None:
        for t in self.tensors.values():
            t.requires_grad = t.role is TensorRole.PARAMETER and not t.frozen
        for name in graph.topological_order():
            op = self.operators[name]
            if op.kind is OpKind.STATIC:
                continue
            grad = any(self.tensors[u.tensor].requires_grad for u in op.inputs)
            for u in op.outputs:
                t = self.tensors[u.tensor]
                t.requires_grad = grad and t.is_float

    # -- nodes --
    def _build_node(self, node: onnx.NodeProto, op_name: str) -> None:
        label = f"'{op_name}' ({node.op_type})"
        ins = [i for i in node.input if i]
        outs = [o for o in node.output if o]
        missing = [i for i in ins if i not in self.tensors]
        if missing:
            raise ModelImportError(
                f"node {label} reads tensor '{missing[0]}' that no earlier node produces and that is not "
                "a graph input or initializer: the graph is not in topological order or is incomplete"
            )
        if REGISTRY.static_policy(node.op_type) is Static.CONSTANT:
            self._constant_node(node, op_name, outs, label)
        elif _is_static(node.op_type, ins, self.static):
            self._static_node(node, op_name, ins, outs, label)
        else:
            for o in outs:
                self._add_tensor(o, TensorRole.ACTIVATION, op_name, f"produced by node {label}")
            spec = self._spec(node, ins, outs, label)
            self.operators[op_name] = _operator(op_name, node.op_type, ins, outs, spec)

    def _constant_node(self, node: onnx.NodeProto, op_name: str, outs: list[str], label: str) -> None:
        for o in outs:
            self.table.shapes.setdefault(o, constant_shape(node))
            self._add_tensor(o, TensorRole.CONSTANT, op_name, f"produced by node {label}")
            self.static.add(o)
            value = constant_value(node)
            if value is not None:
                self.const_values[o] = value
        self.operators[op_name] = Operator(op_name, node.op_type, OpKind.STATIC, {}, [],
                                           [TensorUse(o, ()) for o in outs], 0.0)

    def _static_node(self, node: onnx.NodeProto, op_name: str, ins: list[str], outs: list[str], label: str) -> None:
        for o in outs:
            if self.table.shapes.get(o) is None:
                self.table.shapes[o] = ()  # a value we never need the shape of
            self._add_tensor(o, TensorRole.CONSTANT, op_name, f"produced by node {label}")
            self.static.add(o)
        self.operators[op_name] = Operator(op_name, node.op_type, OpKind.STATIC, {},
                                           [TensorUse(i, ()) for i in ins], [TensorUse(o, ()) for o in outs], 0.0)

    def _spec(self, node: onnx.NodeProto, ins: list[str], outs: list[str], label: str) -> OpSpec:
        """The rule's spec for the node; an opaque spec (and a warning) when there is none."""
        in_shapes = [self.tensors[i].shape for i in ins]
        out_shapes = [self.tensors[o].shape for o in outs]
        entry = REGISTRY.get(node.op_type)
        spec = None
        try:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if entry is not None and entry.fn is not None:
                ctx = NodeContext(node, ins, outs, in_shapes, out_shapes, attrs, self.opset, self.const_values,
                                  self.parameters)
                spec = entry.fn(ctx)
        except RuleError as exc:
            self.warnings.append(f"node {label}: {exc}; planned as opaque (replicated)")
        except Exception as exc:  # noqa: BLE001 - a malformed node (wrong input count, bad attribute)
            self.warnings.append(
                f"node {label} does not match its op type's definition ({type(exc).__name__}: {exc}); "
                "planned as opaque (replicated)"
            )
        if spec is None:
            if entry is None:
                self.opaque_types.add(node.op_type if not node.domain or node.domain == "ai.onnx"
                                      else f"{node.domain}.{node.op_type}")
            spec = opaque_spec(in_shapes, out_shapes)
        return spec


def _operator(op_name: str, op_type: str, ins: list[str], outs: list[str], spec: OpSpec) -> Operator:
    """The Operator a rule's spec describes; dims of size 1 are never split."""
    return Operator(
        op_name, op_type, spec.kind, spec.dims,
        [TensorUse(i, tuple(a), frozenset(spec.loose_in.get(k, ()))) for k, (i, a) in enumerate(zip(ins, spec.in_axes))],
        [TensorUse(o, tuple(a), frozenset(spec.loose_out.get(k, ()))) for k, (o, a) in enumerate(zip(outs, spec.out_axes))],
        float(spec.flops),
        frozenset(spec.reduction),
        frozenset(spec.fixed) | frozenset(d for d, s in spec.dims.items() if s <= 1),
        dict(spec.halo),
    )
