"""The symbolic BSP cost model: cost vectors over the machine basis and the plan evaluator.

A BSP superstep costs ``w/F + h*g_l + L_l``. Every cost here is therefore a vector of
coefficients over the basis ``(1/F, g_1..g_D, L_1..L_D)``: FLOPs of local work, bytes each
device sends at each level, and supersteps at each level. The coefficients depend only on the
model and the strategy; a machine (or a what-if change of its bandwidths) is a dot product away.

One generic rule prices every operator (README, "The cost model in one page"): splitting dimension ``d`` over ``f``
devices makes every tensor lacking ``d`` a partial sum (outputs: all-reduced in the forward
pass) or a replica (inputs that need a gradient: the gradient is all-reduced in the backward
pass). Compute is ``flops / prod(splits)``; in training it is 3x forward (forward, and the two
backward products). Spatial convolution splits add a halo exchange.

A strategy for one operator is a tuple with one entry per machine cut (``Machine.cuts()``):
the dimension split at that cut, or None. A dimension with several atomic factors (see
``planner.model.graph``) is split on its outermost factor that the cut's prime divides.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from planner.cost.tables import graph_tables
from planner.cost.basis import Basis, _larger  # the basis (1/F, g_l, L_l); Basis is re-exported here
from planner.cost.collectives import flat_collectives, halo_exchange, hierarchical_all_reduce, hierarchical_collectives
from planner.cost.gradients import consumer_counts, gradient_roots, sync_traffic, weight_only_ops
from planner.model.graph import Operator, OperatorGraph, OpKind, TensorRole, TensorUse
from planner.machine.tree import Machine
from planner.cost.redistribution import charged_edges
from planner.cost import efficiency, fp8, overlap, sequence_parallel
from planner.errors import PlannerError
from planner.options import (DEFAULT_BUCKET_MB, PRECISION_BYTES, check_bucket_mb, check_memory_options,
                             check_mode_and_precision)

if TYPE_CHECKING:
    import sympy

Strategy = tuple  # tuple[str | None, ...], one entry per machine cut
GATHERS = ("Gather", "GatherElements", "GatherND")  # read only the rows they output
SLICES = ("Slice",)  # read and write only the part they output (dynamo's unbind: Slice + Squeeze)


class PlanError(PlannerError, ValueError):
    """A plan that cannot be evaluated (unknown operator or dimension, indivisible split)."""


# ---- per-operator precomputation --------------------------------------------------------

@dataclass
class _Use:
    tensor: str
    is_output: bool
    dims: frozenset[str]
    flat: dict[tuple[str, int], int]  # (dim, factor index within dim) -> flat factor of tensor
    nbytes: float
    itemsize: int
    numel_over_dims: float  # tensor numel / product of the sizes of the dims indexing it
    grad_allreduce: bool  # an input whose gradient is all-reduced when it is replicated
    is_parameter: bool  # a parameter or a view of parameters (planner.cost.gradients)
    grad_root: str | None = None  # the parameter whose gradient it carries
    grad_share: float = 1.0  # this use's share of that gradient's all-reduce


@dataclass
class _OpInfo:
    op: Operator
    signature: str
    uses: list[_Use]
    splittable: frozenset[str]
    flops_per_point: float  # flops / prod(dim sizes), so that flops stay symbolic
    halo: dict[str, tuple[int, int]]  # spatial dim -> (halo rows, size of the input axis it indexes)
    has_parameters: bool


@dataclass
class OpCost:
    """``gradient_sync`` is the part of ``communication`` that happens once per iteration (the
    all-reduce of parameter gradients) rather than once per micro-batch."""

    compute: np.ndarray
    communication: np.ndarray
    gradient_sync: np.ndarray
    parameter_gathers: np.ndarray | None = None  # the part of communication that is ZeRO-3's gathers


@dataclass
class Edge:
    producer: str
    out_index: int  # index into the producer's _OpInfo.uses
    consumer: str
    in_index: int
    tensor: str
    nbytes: float
    requires_grad: bool


@dataclass
class PlanCost:
    """A plan's cost for one micro-batch: vectors per operator and term, and their times.

    ``communication`` includes each operator's share of the gradient all-reduce, which happens
    once per iteration: ``gradient_sync / micro_batches`` (all of it with one micro-batch), so
    that every figure here, per operator, per level or in total, is per micro-batch.
    ``gradient_sync`` holds the whole once-per-iteration all-reduce.
    """

    basis: Basis
    mode: str
    compute: dict[str, np.ndarray]
    communication: dict[str, np.ndarray]
    redistribution: dict[str, np.ndarray]
    gradient_sync: dict[str, np.ndarray] = field(default_factory=dict)
    micro_batches: int = 1
    parameter_gathers: dict[str, np.ndarray] = field(default_factory=dict)  # ZeRO-3's, within communication

    def term_seconds(self, term: str) -> float:
        return sum(self.basis.time(v) for v in getattr(self, term).values())

    @property
    def total_vector(self) -> np.ndarray:
        total = self.basis.zero()
        for term in ("compute", "communication", "redistribution"):
            for v in getattr(self, term).values():
                total = total + v
        return total

    @property
    def total_seconds(self) -> float:
        return self.basis.time(self.total_vector)

    def seconds(self) -> dict[str, float]:
        out = {t: self.term_seconds(t) for t in ("compute", "communication", "redistribution")}
        out["total"] = sum(out.values())
        return out

    def op_seconds(self, name: str) -> dict[str, float]:
        return {t: self.basis.time(getattr(self, t)[name]) for t in ("compute", "communication", "redistribution")}

    def by_level(self) -> dict[str, dict[str, float]]:
        """Seconds of communication and redistribution spent on each machine level."""
        levels = self.basis.machine.levels
        d = len(levels)
        vals = self.basis.values
        totals = {term: sum(getattr(self, term).values(), self.basis.zero())
                  for term in ("communication", "redistribution")}
        return {lv.name: {term: float(v[1 + i] * vals[1 + i] + v[1 + d + i] * vals[1 + d + i])
                          for term, v in totals.items()}
                for i, lv in enumerate(levels)}


# ---- the cost model ---------------------------------------------------------------------

class CostModel:
    """Prices strategies of one graph on one machine; shared by every search algorithm.

    ``mode`` is ``train`` (forward + backward) or ``infer``; ``precision`` overrides the bytes of
    float tensors (``fp32``, ``bf16``, ``fp16``), otherwise the ONNX element type counts.
    ``recompute`` (:data:`RECOMPUTE`) adds the recomputed forward passes to compute and to the
    forward collectives; ``zero`` (:data:`ZERO_STAGES`) at stage 3 replaces the gradient
    all-reduce by per-micro-batch parameter all-gathers and a gradient reduce-scatter; with
    ``micro_batches`` > 1 the graph is one micro-batch and the search weighs the once-per-iteration
    gradient all-reduce by ``1/micro_batches``. ``precision="fp8"``: :mod:`planner.cost.fp8`.
    ``sequence_parallel``: :mod:`planner.cost.sequence_parallel`.
    """

    def __init__(self, graph: OperatorGraph, machine: Machine, mode: str = "train", precision: str | None = None,
                 recompute: str = "none", zero: int = 0, micro_batches: int = 1, bucket_mb: float = DEFAULT_BUCKET_MB):
        check_mode_and_precision(mode, precision)
        self.fp8_ratio = fp8.compute_ratio(machine) if precision == "fp8" else 1.0  # FP8 linear layers
        self.bucket_bytes = check_bucket_mb(bucket_mb) * 1e6
        self.sequence_parallel = False  # set by planner.cost.result.cost_model_for, as the overlaps are
        self.overlap = overlap.NO_OVERLAP
        self.grad_roots = gradient_roots(graph)
        self.weight_only = weight_only_ops(graph)
        self._grad_consumers = consumer_counts(graph, self.grad_roots)
        self.graph = graph
        self.machine = machine
        self.mode = mode
        self.precision = precision
        self._set_memory_options(recompute, zero, micro_batches)
        bandwidth = machine.device.memory_bandwidth_Bps
        # FLOP-equivalents of one byte of memory traffic: the roofline in the 1/F coordinate
        self.flops_per_memory_byte = machine.device.effective_flops / bandwidth if bandwidth else 0.0
        self.basis = Basis(machine)
        self.cuts = machine.cuts()
        self.cut_factor = [c.factor for c in self.cuts]
        self.cut_level = [c.level for c in self.cuts]
        self.num_levels = len(machine.levels)
        self.planned, self.info, self.edges, self.in_edges, self.selective_ops = graph.memo(  # not the machine's:
            "cost tables", (mode, precision, self.bucket_bytes), lambda: graph_tables(self))  # shared by machines
        self.fp8_ops = fp8.linear_layers(self) if precision == "fp8" else frozenset()
        self._assign_cache: dict = {}
        self._redist_cache: dict = {}
        self._redist_time_cache: dict = {}
        self._layout_cache: dict = {}
        self._local_bytes_cache: dict = {}
        self._candidates_cache: dict = {}
        self._gaps = [lv.gap_s_per_byte for lv in machine.levels]
        self._latencies = [lv.latency_s for lv in machine.levels]

    def _set_memory_options(self, recompute: str, zero: int, micro_batches: int) -> None:
        check_memory_options(recompute, zero, micro_batches)
        self.recompute = recompute if self.mode == "train" else "none"
        self.zero = zero if self.mode == "train" else 0
        self.micro_batches = micro_batches
        self._op_cache: dict = {}
        self._op_seconds_cache: dict = {}

    def variant(self, recompute: str, zero: int, micro_batches: int) -> CostModel:
        """The same graph and machine with other recomputation, ZeRO or micro-batch settings.

        Shares everything that does not depend on them (operator tables, layouts, redistribution
        prices), so re-pricing one plan under several memory options costs little."""
        other = copy.copy(self)
        other._set_memory_options(recompute, zero, micro_batches)
        return other

    # -- set-up --
    def tensor_itemsize(self, name: str) -> int:
        t = self.graph.tensors[name]
        if self.precision and t.is_float and not t.frozen:  # a quantised weight keeps its bits
            return PRECISION_BYTES[self.precision]
        return t.itemsize

    def _op_info(self, op: Operator) -> _OpInfo:
        uses = []
        for is_output, group in ((False, op.inputs), (True, op.outputs)):
            for use in group:
                t = self.graph.tensors[use.tensor]
                itemsize = self.tensor_itemsize(use.tensor)
                dims = use.dims()
                prod_dims = math.prod(op.dims[d] for d in dims) or 1
                grad = (not is_output and self.mode == "train" and t.requires_grad)
                root = None if is_output else self.grad_roots.get(use.tensor)
                share = 1.0 if root is None or op.name in self.weight_only else 1 / self._grad_consumers[root]
                uses.append(_Use(use.tensor, is_output, dims, self._flat_map(op, use, t),
                                 float(t.numel * itemsize), itemsize, t.numel / prod_dims, grad,
                                 root is not None, root, share))
        splittable = frozenset(op.splittable_dims()) if op.kind is not OpKind.OPAQUE else frozenset()
        points = math.prod(op.dims.values()) or 1
        sig = (op.signature(self.graph.tensors) + f"|{self.mode}|{self.precision}|{self.bucket_bytes}|"
               + ",".join(f"{u.is_parameter}:{u.grad_share}" for u in uses))
        halo = {}
        if op.halo and op.inputs:
            x = op.inputs[0]
            shape = self.graph.tensors[x.tensor].shape
            for dim, rows in op.halo.items():
                axis = next((a for a, dims in enumerate(x.axes) if dim in dims), None)
                if rows > 0 and axis is not None:
                    halo[dim] = (rows, shape[axis])
        has_parameters = any(u.is_parameter and not u.is_output for u in uses)
        return _OpInfo(op, sig, uses, splittable, op.flops / points, halo, has_parameters)

    def recomputed(self, name: str) -> bool:
        """Whether the backward pass recomputes this operator's forward (see :data:`RECOMPUTE`)."""
        return self._recomputes(self.info[name])

    def _recomputes(self, info: _OpInfo) -> bool:
        return self.recompute == "full" or (self.recompute == "selective" and info.op.name in self.selective_ops)

    @staticmethod
    def _flat_map(op: Operator, use: TensorUse, tensor) -> dict[tuple[str, int], int]:
        flat: dict[tuple[str, int], int] = {}
        base = 0
        for axis, dims in enumerate(use.axes):
            n_axis = len(tensor.axis_factors[axis]) if axis < len(tensor.axis_factors) else 0
            if axis in use.loose:
                for d in dims:
                    for k in range(len(op.factors_of(d))):
                        flat[(d, k)] = base
            else:
                offset = 0
                for d in dims:
                    for k in range(len(op.factors_of(d))):
                        if offset < n_axis:
                            flat[(d, k)] = base + offset
                        offset += 1
            base += n_axis
        return flat

    def _edges(self) -> list[Edge]:
        planned = set(self.planned)
        edges = []
        out_pos = {}
        for name in self.planned:
            for i, u in enumerate(self.info[name].uses):
                if u.is_output:
                    out_pos[u.tensor] = (name, i)
        for name in self.planned:
            for i, u in enumerate(self.info[name].uses):
                if u.is_output:
                    continue
                t = self.graph.tensors[u.tensor]
                if t.role is not TensorRole.ACTIVATION or u.tensor not in out_pos:
                    continue  # graph inputs, parameters and constants: boundaries are free
                producer, j = out_pos[u.tensor]
                if producer not in planned or producer == name:
                    continue
                edges.append(Edge(producer, j, name, i, u.tensor, u.nbytes, t.requires_grad))
        return edges

    # -- strategies --
    def assignment(self, name: str, strategy: Strategy) -> tuple | None:
        """Per cut, ``(dim, factor index)`` or None; None overall if a split does not divide."""
        info = self.info[name]
        key = (info.signature, strategy)
        hit = self._assign_cache.get(key, False)
        if hit is not False:
            return hit
        op = info.op
        remaining = {}
        out = []
        result = None
        for t, dim in enumerate(strategy):
            if dim is None:
                out.append(None)
                continue
            if dim not in info.splittable:
                break
            if dim not in remaining:
                remaining[dim] = list(op.factors_of(dim))
            p = self.cut_factor[t]
            for k, size in enumerate(remaining[dim]):
                if size % p == 0:
                    remaining[dim][k] = size // p
                    out.append((dim, k))
                    break
            else:
                break
        else:
            result = tuple(out)
        self._assign_cache[key] = result
        return result

    def candidates(self, name: str, prefix: Strategy) -> list[str | None]:
        """Choices at the next cut after ``prefix``: None, or any dim the cut's prime divides."""
        key = (self.info[name].signature, prefix)
        hit = self._candidates_cache.get(key)
        if hit is None:
            hit = [None] + [d for d in sorted(self.info[name].splittable)
                            if self.assignment(name, prefix + (d,)) is not None]
            self._candidates_cache[key] = hit
        return hit

    def layout(self, name: str, use_index: int, strategy: Strategy) -> tuple[int, ...]:
        """The tensor's layout as this operator holds it: per cut, the flat factor split or -1."""
        info = self.info[name]
        key = (info.signature, use_index, strategy)
        hit = self._layout_cache.get(key)
        if hit is None:
            assign = self.assignment(name, strategy)
            if assign is None:
                raise PlanError(f"operator {name}: strategy {strategy} does not divide its dimensions")
            flat = info.uses[use_index].flat
            hit = tuple(-1 if a is None else flat.get(a, -1) for a in assign)
            self._layout_cache[key] = hit
        return hit

    def local_bytes(self, name: str, use_index: int, strategy: Strategy) -> float:
        """Bytes of one of the operator's tensors that each device holds under ``strategy``."""
        info = self.info[name]
        key = (info.signature, use_index, strategy)
        hit = self._local_bytes_cache.get(key)
        if hit is None:
            use = info.uses[use_index]
            split = math.prod(self.cut_factor[t] for t, d in enumerate(strategy) if d is not None and d in use.dims)
            hit = self._local_bytes_cache[key] = use.nbytes / split
        return hit

    # -- operator cost --
    def op_cost(self, name: str, strategy: Strategy) -> OpCost:
        info = self.info[name]
        key = (info.signature, strategy)
        hit = self._op_cache.get(key)
        if hit is None:
            if self.assignment(name, strategy) is None:
                raise PlanError(f"operator {name}: strategy {strategy} does not divide its dimensions")
            hit = self._op_cost(info, strategy, lambda d: info.op.dims[d], info.op.flops)
            self._op_cache[key] = hit
        return hit

    def op_seconds(self, name: str, strategy: Strategy) -> float:
        key = (self.info[name].signature, strategy)
        hit = self._op_seconds_cache.get(key)
        if hit is None:
            c = self.op_cost(name, strategy)
            # per micro-batch, with the once-per-iteration gradient all-reduce spread over them, less
            # what the engines' overlap hides (planner.cost.overlap)
            amortised = c.compute + c.communication - (1 - 1 / self.micro_batches) * c.gradient_sync
            hit = self._op_seconds_cache[key] = self.basis.time(amortised) - overlap.hidden_seconds(self, name, c)
        return hit

    def _op_cost(self, info: _OpInfo, strategy: Strategy, size_of, flops, zero=None) -> OpCost:
        """Compute, collective and halo terms of one operator under one (prefix) strategy, each
        priced by its own method and composed here.

        Written against ``size_of`` so that the same code yields numbers or sympy formulas.
        """
        vector = (lambda: self.basis.zero()) if zero is None else zero
        compute, comm, grad_sync, gathers = vector(), vector(), vector(), vector()
        split = {}
        for t, dim in enumerate(strategy):
            if dim is not None:
                split[dim] = split.get(dim, 1) * self.cut_factor[t]
        recomputed = self._recomputes(info)  # never in inference: recompute is "none" there
        passes = 1 if self.mode != "train" else (4 if recomputed else 3)

        def local_bytes(use: _Use):
            size = use.itemsize * use.numel_over_dims
            for d in use.dims:
                size *= size_of(d)
            return size / math.prod(split.get(d, 1) for d in use.dims)

        compute[0] = passes * self._work(info, split, flops, local_bytes)
        self._collectives(info, strategy, recomputed, local_bytes, comm, grad_sync, gathers)
        self._halos(info, strategy, split, recomputed, local_bytes, comm)
        return OpCost(compute, comm, grad_sync, gathers)

    def quantisation(self, name: str, split: dict[str, int]) -> float:
        """The operator's tile x wave quantisation under ``split``: its efficiency over the ceiling."""
        return efficiency.operator_quantisation(self.machine.device, self.graph.operators[name], split)

    def _add_traffic(self, vec, traffic: dict) -> None:
        """Add ``{level: (bytes, supersteps)}`` to a cost vector's ``g_l`` and ``L_l`` entries."""
        for level, (nbytes, steps) in traffic.items():
            vec[1 + level] += nbytes
            vec[1 + self.num_levels + level] += steps

    def _work(self, info: _OpInfo, split: dict[str, int], flops, local_bytes):
        """One pass's local work: the roofline, the larger of the FLOPs over the shape's
        quantisation (planner.cost.efficiency) and the memory traffic (in FLOP-equivalents, when the
        device has a memory bandwidth)."""
        work = flops / (math.prod(split.values()) if split else 1)
        q = self.quantisation(info.op.name, split)
        if q != 1:
            work = work / q
        in_fp8 = info.op.name in self.fp8_ops  # at the FP8 peak, its inputs 1 byte (planner.cost.fp8)
        if in_fp8:
            work = work * self.fp8_ratio
        if self.flops_per_memory_byte:
            # a gather reads only the rows it outputs, not its whole table (input 0)
            moved = info.uses[1:] if info.op.op_type in GATHERS else info.uses
            traffic = sum(local_bytes(u) * (fp8.input_scale(u) if in_fp8 and u.dims & info.op.reduction_dims
                                            and not u.is_output else 1) for u in moved)
            if info.op.op_type in SLICES:  # reads only the part it outputs: as a Split's share
                traffic = 2 * sum(local_bytes(u) for u in info.uses if u.is_output)
            traffic *= self.flops_per_memory_byte
            work = _larger(work, traffic)
        return work

    def _collectives(self, info: _OpInfo, strategy: Strategy, recomputed: bool, local_bytes, comm, grad_sync,
                     gathers) -> None:
        """The collectives of each tensor that lacks a split dimension: partial sums all-reduced,
        replicated inputs' gradients all-reduced (parameters' once per iteration, bucketed), and
        ZeRO-3's parameter gathers."""
        for use in info.uses:
            groups: dict[int, int] = {}
            for t in self._partial_cuts(info, use, strategy):
                groups[self.cut_level[t]] = groups.get(self.cut_level[t], 1) * self.cut_factor[t]
            if not groups:
                continue
            if use.is_output:  # partial sums, all-reduced again when the forward is recomputed
                self._add_traffic(comm, hierarchical_collectives(local_bytes(use), groups, 4 if recomputed else 2))
            elif use.is_parameter and self.zero == 3:
                # all-gather the parameter for the forward pass and again for the backward pass
                # (whose recomputed forward runs just before it and uses the same gather), and
                # reduce-scatter its gradient: three flat collectives over the data-parallel group
                traffic = {lv: (use.grad_share * b, use.grad_share * n)
                           for lv, (b, n) in flat_collectives(local_bytes(use), groups, 3).items()}
                self._add_traffic(comm, traffic)
                self._add_traffic(gathers, traffic)
            elif use.is_parameter:  # once per iteration, this use's share, latency per bucket
                traffic = sync_traffic(local_bytes(use), groups, use.grad_share, self.bucket_bytes)
                self._add_traffic(comm, traffic)
                self._add_traffic(grad_sync, traffic)
            else:
                self._add_traffic(comm, hierarchical_all_reduce(local_bytes(use), groups))

    def _halos(self, info: _OpInfo, strategy: Strategy, split: dict[str, int], recomputed: bool, local_bytes,
               comm) -> None:
        """Spatial splits of a convolution: the input rows a device fetches from its neighbours, at
        the slowest level that splits the dim; again for the input's gradient in the backward pass
        when it has one, and for the recomputed forward."""
        for dim, (rows, axis_size) in info.halo.items():
            if dim not in split:
                continue
            x = info.uses[0]
            level = min(self.cut_level[t] for t, d in enumerate(strategy) if d == dim)
            row_bytes = local_bytes(x) / (axis_size / split[dim])
            nbytes, steps = halo_exchange(row_bytes, rows)
            exchanges = (2 if x.grad_allreduce else 1) + (1 if recomputed else 0)
            self._add_traffic(comm, {level: (exchanges * nbytes, exchanges * steps)})

    def partial_cuts(self, name: str, use_index: int, strategy: Strategy) -> list[int]:
        """The cuts whose split leaves this tensor a partial sum to all-reduce: for an output,
        cuts splitting a dimension it lacks (forward); for an input that needs a gradient, cuts
        splitting a non-reduction dimension it lacks (backward: each device saw only part of the
        uses of the replica). An input lacking a *reduction* dimension, such as a Gemm's bias
        when k is split, is applied after the reduction and gets a complete gradient."""
        info = self.info[name]
        return self._partial_cuts(info, info.uses[use_index], strategy)

    @staticmethod
    def _partial_cuts(info: _OpInfo, use: _Use, strategy: Strategy) -> list[int]:
        if use.is_output:
            return [t for t, d in enumerate(strategy) if d is not None and d not in use.dims]
        if not use.grad_allreduce:
            return []
        reduction = info.op.reduction_dims
        return [t for t, d in enumerate(strategy) if d is not None and d not in use.dims and d not in reduction]

    # -- redistribution --
    def redistribution_fractions(self, la: tuple[int, ...], lb: tuple[int, ...]) -> tuple[float, ...]:
        """Per level, the fraction of the tensor's bytes a device fetches to go from layout
        ``la`` (as produced) to ``lb`` (as consumed).

        Derivation (per machine level; README, "The cost model in one page"): the consumer needs ``S/prod(b)``. For each
        atomic factor compare the ordered cuts that split it: if the producer's cuts are a
        prefix of the consumer's, the consumer just slices what it holds; if the consumer's are
        a prefix of the producer's, it holds ``1/prod(extra)`` of what it needs; otherwise the
        blocks are numbered differently and the worst device (the one a BSP superstep waits
        for) holds none of it. Doing this with only the producer cuts at levels ``< k`` gives
        what the device's depth-``k`` subtree already holds; the bytes that cross level ``l``
        links are the growth of the missing part from depth ``l`` to depth ``l+1``.
        """
        key = (la, lb)
        hit = self._redist_cache.get(key)
        if hit is not None:
            return hit
        n = len(lb)
        p = self.cut_factor
        need = 1.0
        for t in range(n):
            if lb[t] >= 0:
                need /= p[t]
        factors = {x for x in la if x >= 0} | {x for x in lb if x >= 0}
        seq_b = {f: [t for t in range(n) if lb[t] == f] for f in factors}
        fractions = []
        prev_missing = 0.0
        for level in range(self.num_levels):
            owned = 1.0
            for f in factors:
                sa = [t for t in range(n) if la[t] == f and self.cut_level[t] <= level]
                sb = seq_b[f]
                if sa == sb[:len(sa)]:
                    continue
                if sb == sa[:len(sb)]:
                    owned /= math.prod(p[t] for t in sa[len(sb):])
                else:
                    owned = 0.0
                    break
            missing = need * (1.0 - owned)
            fractions.append(max(0.0, missing - prev_missing))
            prev_missing = max(prev_missing, missing)
        result = tuple(fractions)
        self._redist_cache[key] = result
        return result

    def edge_cost(self, edge: Edge, producer_strategy: Strategy, consumer_strategy: Strategy) -> np.ndarray:
        la = self.layout(edge.producer, edge.out_index, producer_strategy)
        lb = self.layout(edge.consumer, edge.in_index, consumer_strategy)
        return self._layouts_cost(edge, la, lb)

    def _layouts_cost(self, edge: Edge, la: tuple, lb: tuple) -> np.ndarray:
        vec = self.basis.zero()
        self._add_redistribution(vec, edge.nbytes, la, lb)
        if self.mode == "train" and edge.requires_grad:
            self._add_redistribution(vec, edge.nbytes, lb, la)  # the gradient travels back
        return vec

    def edge_seconds(self, edge: Edge, producer_strategy: Strategy, consumer_strategy: Strategy) -> float:
        """The same as ``basis.time(edge_cost(...))`` on plain floats: the search's hot path."""
        la = self.layout(edge.producer, edge.out_index, producer_strategy)
        lb = self.layout(edge.consumer, edge.in_index, consumer_strategy)
        return self.redistribution_seconds(edge.nbytes, la, lb, edge.requires_grad)

    def redistribution_seconds(self, nbytes: float, la: tuple, lb: tuple, requires_grad: bool) -> float:
        per_byte, fixed = self._redistribution_time(la, lb)
        total = per_byte * nbytes + fixed
        if self.mode == "train" and requires_grad:
            per_byte, fixed = self._redistribution_time(lb, la)
            total += per_byte * nbytes + fixed
        return total

    def _redistribution_time(self, la: tuple, lb: tuple) -> tuple[float, float]:
        """(seconds per byte of the tensor, latency seconds) of one redistribution, cached."""
        key = (la, lb)
        hit = self._redist_time_cache.get(key)
        if hit is None:
            per_byte = fixed = 0.0
            for level, frac in enumerate(self.redistribution_fractions(la, lb)):
                if frac > 0:
                    per_byte += frac * self._gaps[level]
                    fixed += self._latencies[level]
            hit = self._redist_time_cache[key] = (per_byte, fixed)
        return hit

    def _add_redistribution(self, vec, nbytes, la, lb) -> None:
        d = self.num_levels
        for level, frac in enumerate(self.redistribution_fractions(la, lb)):
            if frac > 0:
                vec[1 + level] += frac * nbytes
                vec[1 + d + level] += 1

    # -- whole plans --
    def replicated(self) -> Strategy:
        return (None,) * len(self.cuts)

    def complete(self, plan: dict[str, Strategy]) -> dict[str, Strategy]:
        """Every planned operator gets a strategy (replicated where the plan is silent)."""
        full = {}
        for name in self.planned:
            s = tuple(plan.get(name, self.replicated()))
            if len(s) != len(self.cuts):
                raise PlanError(f"operator {name}: strategy has {len(s)} cuts, the machine has {len(self.cuts)}")
            full[name] = s
        return full

    def evaluate(self, plan: dict[str, Strategy]) -> PlanCost:
        """Cost of a plan: per operator compute and communication, redistribution per consumer
        (the first consumer of each tensor and layout pays it: planner.cost.redistribution)."""
        full = self.complete(plan)
        compute, comm, redist, grad_sync, gathers = {}, {}, {}, {}, {}
        spread = 1 - 1 / self.micro_batches  # the gradient sync's share a micro-batch does not pay
        for name in self.planned:
            c = self.op_cost(name, full[name])
            compute[name] = c.compute
            comm[name] = c.communication - spread * c.gradient_sync if spread else c.communication
            grad_sync[name] = c.gradient_sync
            gathers[name] = c.parameter_gathers
            redist[name] = self.basis.zero()
        sequence_parallel.apply_reduce_scatters(self, full, comm)  # under sequence parallelism, into comm
        for e, la, lb in charged_edges(self, full):  # once per (tensor, target layout)
            redist[e.consumer] = redist[e.consumer] + self._layouts_cost(e, la, lb)
        return PlanCost(self.basis, self.mode, compute, comm, redist, grad_sync, self.micro_batches, gathers)

    def total_seconds(self, plan: dict[str, Strategy]) -> float:
        """Seconds per micro-batch, the gradient all-reduce spread over the micro-batches, less what
        the engines' overlap hides operator by operator (the search objective; with one micro-batch
        and no overlap, the plan's whole cost)."""
        full = self.complete(plan)
        hidden = sum(overlap.hidden_seconds(self, n, self.op_cost(n, full[n])) for n in self.planned)
        return self.evaluate(full).total_seconds - hidden

    def evaluate_prefix(self, strategies: dict[str, Strategy]) -> float:
        """Seconds of a partial plan whose strategies all cover the same first cuts (search only)."""
        total = sum(self.op_seconds(n, strategies[n]) for n in self.planned)
        for e, la, lb in charged_edges(self, strategies):
            total += self.redistribution_seconds(e.nbytes, la, lb, e.requires_grad)
        return total

    # -- formulas --
    def op_formula(self, name: str, strategy: Strategy, symbolic_dims: bool = False) -> sympy.Expr:
        """The operator's cost (compute + communication) as a sympy formula in machine symbols,
        optionally with its dimensions kept as symbols too (``6*b*s*h**2/(8*F) + ...``)."""
        import sympy

        from planner.cost.formula_text import exact  # floats as exact rationals (fast nsimplify)

        info = self.info[name]
        if self.assignment(name, strategy) is None:
            raise PlanError(f"operator {name}: strategy {strategy} does not divide its dimensions")
        if symbolic_dims:
            taken = {s.name for s in self.basis.symbols}  # a dim named F must not become the machine's F
            symbols = {d: sympy.Symbol(d if d not in taken else d + "'", positive=True) for d in info.op.dims}
            size_of = symbols.__getitem__
            flops = exact(info.flops_per_point) * sympy.Mul(*symbols.values())
        else:
            size_of = lambda d: sympy.Integer(info.op.dims[d])  # noqa: E731
            flops = exact(info.op.flops)
        zero = lambda: [sympy.Integer(0)] * self.basis.size  # noqa: E731
        c = self._op_cost(info, strategy, size_of, flops, zero=zero)
        vec = [exact(a) + exact(b) for a, b in zip(c.compute, c.communication)]
        return self.basis.symbolic(vec)


@dataclass
class Plan:
    """A strategy per operator, with where it came from."""

    strategies: dict[str, Strategy]
    algorithm: str
    search_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    trace: list[dict] = field(default_factory=list)
