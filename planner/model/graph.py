"""The operator graph: every operator as an iteration space (a loop nest / einsum).

An operator has named dimensions with sizes. Each tensor it reads or writes is indexed, axis by
axis, by a tuple of those dimensions (major to minor; a tuple of two or more means the axis is a
flattened product, as on either side of a Reshape; an empty tuple means a broadcast axis of size
1). That single description is what lets one generic rule price every split (see
``planner.cost.model``): splitting dimension ``d`` makes every tensor lacking ``d`` a partial sum or a
replica across the devices that split it.

Layouts are expressed over *atomic factors*: each tensor axis is a product of atomic sizes
(``Tensor.axis_factors``), the same for its producer and all its consumers, and each operator
dimension owns a contiguous run of them (``Operator.dim_factors``). A Reshape that turns ``3h`` into
``3 x heads x head_dim`` therefore lets a split of the heads factor chosen on the QKV MatMul flow
through Split, Reshape and Transpose with no data movement, as Megatron's tensor parallelism does.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import networkx as nx


class OpKind(str, Enum):
    """How the planner treats an operator."""

    COMPUTE = "compute"  # critical: heavy, has weights or large FLOPs; decides layouts in D-Rec
    FOLLOW = "follow"  # layout-following (element-wise, norms, reshapes, ...): folded in D-Rec
    OPAQUE = "opaque"  # unsupported op type: can only be replicated
    STATIC = "static"  # shape arithmetic and constants: no data dependence, never planned


class TensorRole(str, Enum):
    ACTIVATION = "activation"  # produced by an operator
    INPUT = "input"  # graph input (data): no gradient
    PARAMETER = "parameter"  # float initializer: trained, has a gradient and optimizer state
    CONSTANT = "constant"  # integer initializer or Constant output


@dataclass
class Tensor:
    """A tensor of the graph with its static shape."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy-style name, e.g. "float32"
    itemsize: float  # bytes per element (a fraction for sub-byte types: 0.5 for INT4)
    role: TensorRole
    producer: str | None = None  # operator name, None for inputs/initializers
    requires_grad: bool = False  # float and depends on a parameter
    axis_factors: tuple[tuple[int, ...], ...] = ()  # atomic factorisation of each axis
    frozen: bool = False  # a quantised weight: a parameter with no gradient (planner.model.quantised)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> float:
        return self.numel * self.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith(("float", "bfloat"))


@dataclass
class TensorUse:
    """One operator's view of one tensor: which operator dimensions index each axis."""

    tensor: str
    axes: tuple[tuple[str, ...], ...]
    loose: frozenset[int] = frozenset()  # axes whose size differs from their dim (conv spatial)

    def dims(self) -> frozenset[str]:
        return frozenset(d for axis in self.axes for d in axis)


@dataclass
class Operator:
    """An operator as an iteration space.

    ``reduction_dims`` index no output (splitting one makes the outputs partial sums);
    ``fixed_dims`` may not be split at all (a Softmax axis, a convolution kernel, ...);
    ``halo`` maps spatial dims to the input rows a device must fetch from its neighbours (both
    sides together) when the dim is split: ``(k-1)*dilation + 1 - stride`` for a convolution.
    """

    name: str
    op_type: str
    kind: OpKind
    dims: dict[str, int]
    inputs: list[TensorUse]
    outputs: list[TensorUse]
    flops: float
    reduction_dims: frozenset[str] = frozenset()
    fixed_dims: frozenset[str] = frozenset()
    halo: dict[str, int] = field(default_factory=dict)
    dim_factors: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_signature", None)  # it holds the graph's tensor table: not pickled with the operator
        return state

    def uses(self) -> list[TensorUse]:
        return [*self.inputs, *self.outputs]

    def splittable_dims(self) -> list[str]:
        return [d for d, size in self.dims.items() if size > 1 and d not in self.fixed_dims]

    def factors_of(self, dim: str) -> tuple[int, ...]:
        return self.dim_factors.get(dim) or ((self.dims[dim],) if self.dims[dim] > 1 else ())

    def signature(self, tensors: dict[str, Tensor]) -> str:
        """A structural fingerprint: equal for the operators of identical repeated layers.

        The search memoises candidate costs by it, which is what keeps a 96-layer model fast.
        Computed once per operator and tensor table (a padded vocabulary is a new table).
        """
        cached = self.__dict__.get("_signature")
        if cached is not None and cached[0] is tensors:
            return cached[1]
        parts = [
            self.op_type,
            self.kind.value,
            repr(sorted(self.dims.items())),
            repr(sorted(self.dim_factors.items())),
            repr(sorted(self.reduction_dims)),
            repr(sorted(self.fixed_dims)),
            repr(sorted(self.halo.items())),
            repr(self.flops),
        ]
        for group, uses in (("in", self.inputs), ("out", self.outputs)):
            for use in uses:
                t = tensors[use.tensor]
                parts.append(f"{group}:{use.axes}:{sorted(use.loose)}:{t.shape}:{t.axis_factors}:{t.itemsize}:"
                             f"{t.role.value}:{t.requires_grad}")
        signature = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
        self.__dict__["_signature"] = (tensors, signature)
        return signature


@dataclass
class OperatorGraph:
    """Operators as nodes of a networkx DiGraph; an edge u->v carries the tensors u produces for v."""

    name: str
    operators: dict[str, Operator]
    tensors: dict[str, Tensor]
    inputs: list[str]  # graph data inputs (tensor names)
    outputs: list[str]
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    unbound_dims: list[str] = field(default_factory=list)
    unsupported_op_types: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bindings: dict[str, int] = field(default_factory=dict)  # symbolic dim -> value it was imported with
    batch_symbol: str | None = None  # the symbolic dim that is the batch (see onnx_import.batch_symbol)
    batch_axes: dict[str, int] = field(default_factory=dict)  # data input -> its batch axis (default 0)

    @property
    def batch_size(self) -> int | None:
        """The value the batch dimension is bound to (None without a symbolic batch)."""
        return self.bindings.get(self.batch_symbol) if self.batch_symbol else None

    def build_edges(self) -> None:
        g = nx.DiGraph()
        for name in self.operators:
            g.add_node(name)
        for name, op in self.operators.items():
            for use in op.inputs:
                producer = self.tensors[use.tensor].producer
                if producer is None or producer == name:
                    continue
                if g.has_edge(producer, name):
                    g.edges[producer, name]["tensors"].append(use.tensor)
                else:
                    g.add_edge(producer, name, tensors=[use.tensor])
        self.graph = g

    def _derived(self, key: str, compute):
        """A value derived from the operators and their wiring, computed once per graph: kept
        with the networkx graph it was computed from (and its size), so that a graph re-wired by
        :meth:`build_edges` or a copy that shares its wiring (a padded vocabulary) stays right."""
        stamp = (self.graph, self.graph.number_of_nodes(), self.graph.number_of_edges(), tuple(self.inputs))
        cache = self.__dict__.setdefault("_derived_cache", {})
        hit = cache.get(key)
        if hit is None or hit[0][0] is not stamp[0] or hit[0][1:] != stamp[1:]:
            hit = cache[key] = (stamp, compute())
        return hit[1]

    def memo(self, tag: str, key, compute):
        """The value ``compute()`` gave for ``key`` on this graph's operators and tensors (the
        latest ``key`` per ``tag`` is kept): the cost model's per-operator tables, shared by the
        cost models of one graph on several machines. Not pickled with the graph; a copy with
        other operators or tensors (a padded vocabulary) computes its own."""
        memo = self.__dict__.setdefault("_memo", {})
        hit = memo.get(tag)
        if hit is not None and hit[0] is self.operators and hit[1] is self.tensors and hit[2] == key \
                and hit[3] is self.graph:
            return hit[4]
        value = compute()
        memo[tag] = (self.operators, self.tensors, key, self.graph, value)
        return value

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_memo", None)  # tables of the planner's own, made again where needed
        return state

    def topological_order(self) -> list[str]:
        return list(self._derived("topological_order", lambda: tuple(nx.topological_sort(self.graph))))

    def data_dependent_operators(self) -> frozenset[str]:
        """Operators whose outputs depend on the data inputs (everything but weight arithmetic)."""
        def compute() -> frozenset[str]:
            reached = set(self.inputs)
            found = set()
            for name in self.topological_order():
                op = self.operators[name]
                if any(u.tensor in reached for u in op.inputs):
                    found.add(name)
                    reached.update(u.tensor for u in op.outputs)
            return frozenset(found)
        return self._derived("data_dependent", compute)

    def planned_operators(self) -> list[str]:
        """Operators whose layout the planner chooses (everything but static shape arithmetic)."""
        return [n for n in self.topological_order() if self.operators[n].kind is not OpKind.STATIC]

    # ---- totals -------------------------------------------------------------------------
    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors.values() if t.role is TensorRole.PARAMETER)

    @property
    def parameter_bytes(self) -> float:
        return sum(t.nbytes for t in self.tensors.values() if t.role is TensorRole.PARAMETER)

    @property
    def flops_forward(self) -> float:
        return float(sum(op.flops for op in self.operators.values()))

    @property
    def activation_bytes(self) -> int:
        """Bytes of every activation a forward pass produces (each tensor once)."""
        return sum(t.nbytes for t in self.tensors.values() if t.role is TensorRole.ACTIVATION)

    def op_type_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for op in self.operators.values():
            hist[op.op_type] = hist.get(op.op_type, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> dict:
        """The figures ``python -m planner inspect`` prints and writes."""
        return {
            "model": self.name,
            "operators": len(self.operators),
            "op_types": self.op_type_histogram(),
            "parameters": self.parameter_count,
            "parameter_bytes": self.parameter_bytes,
            "frozen_parameters": sum(t.numel for t in self.tensors.values()
                                     if t.role is TensorRole.PARAMETER and t.frozen),
            "input_shapes": {n: list(self.tensors[n].shape) for n in self.inputs},
            "flops_forward": self.flops_forward,
            "activation_bytes": self.activation_bytes,
            "unbound_dims": list(self.unbound_dims),
            "unsupported_op_types": list(self.unsupported_op_types),
        }

    def batch_dims(self) -> dict[str, str | None]:
        """For each operator, the dimension that carries the batch (see ``planner.model.batch_trace``).

        Traced through the graph by following atomic factors from the batch axis of each data
        input (``batch_axes``, axis 0 by default) through transposes, flattened axes and gathers.
        """
        from planner.model.batch_trace import broadcast_batch, trace  # the tracer builds on this module

        return broadcast_batch(self, trace(self))


# ---- atomic factors ----------------------------------------------------------------------

def common_refinement(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The coarsest factor list refining both ``a`` and ``b`` (equal products), or None.

    Works on the cumulative products from the major side: (3, 768) and (3, 12, 64) share the
    boundaries 3 and 2304 and refine to (3, 12, 64). Two lists whose merged boundaries do not
    divide one another, such as (6, 4) and (4, 6), have no common refinement.
    """
    if math.prod(a) != math.prod(b):
        return None
    bounds = sorted(set(_boundaries(a)) | set(_boundaries(b)))
    factors = []
    prev = 1
    for x in bounds:
        if x % prev:
            return None
        factors.append(x // prev)
        prev = x
    return tuple(factors)


def _boundaries(factors: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for f in factors:
        acc *= f
        out.append(acc)
    return out


def refine_factors(graph: OperatorGraph) -> None:
    """Give every tensor axis and operator dimension one shared atomic factorisation.

    Iterates to a fixed point: for each operator and each (non-loose) axis it indexes, the
    tensor's factors and the concatenation of the dims' factors are replaced by their common
    refinement. Factors only ever get finer, so this terminates. Where no refinement exists the
    axis is marked loose for that operator (its split then maps to the axis's first factor).
    """
    for t in graph.tensors.values():
        t.axis_factors = tuple((s,) if s > 1 else () for s in t.shape)
    for op in graph.operators.values():
        op.dim_factors = {d: ((s,) if s > 1 else ()) for d, s in op.dims.items()}
    users: dict[str, list[Operator]] = {}
    for op in graph.operators.values():
        for use in op.uses():
            users.setdefault(use.tensor, []).append(op)
    # a worklist: an operator is revisited when one of its tensors' factors or its own dims change
    pending = deque(graph.operators.values())
    queued = {id(op) for op in pending}
    while pending:
        op = pending.popleft()
        queued.discard(id(op))
        revisit: list[Operator] = []
        for use in op.uses():
            t = graph.tensors[use.tensor]
            if t.role is TensorRole.CONSTANT:
                continue  # shape arithmetic: never laid out
            axes = list(t.axis_factors)
            tensor_changed = False
            for i, dims in enumerate(use.axes):
                if i in use.loose or i >= len(axes):
                    continue
                concat = tuple(f for d in dims for f in op.dim_factors[d])
                if concat == axes[i]:
                    continue
                refined = common_refinement(concat, axes[i])
                if refined is None:
                    use.loose = use.loose | {i}
                    continue
                if refined != axes[i]:
                    axes[i] = refined
                    tensor_changed = True
                if refined != concat:
                    _assign_to_dims(op, dims, refined)
                    revisit.append(op)
            t.axis_factors = tuple(axes)
            if tensor_changed:
                revisit.extend(users[use.tensor])
        for other in revisit:
            if id(other) not in queued:
                queued.add(id(other))
                pending.append(other)


def _assign_to_dims(op: Operator, dims: tuple[str, ...], refined: tuple[int, ...]) -> None:
    """Split a refined factor list of one axis back onto the dims that index it, in order."""
    pos = 0
    for d in dims:
        size, acc, part = op.dims[d], 1, []
        while acc < size:
            acc *= refined[pos]
            part.append(refined[pos])
            pos += 1
        op.dim_factors[d] = tuple(part)
