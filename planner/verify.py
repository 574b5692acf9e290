"""Run a plan for real on a CPU process group and check it against the cost model.

For each model the project builds both in PyTorch and as ONNX (an MLP; a transformer encoder
block with attention and MLP), each plan (D-Rec ``drec+`` and ``data_parallel``) and each
process count (4 = 2 x 2 and 8 = 2 x 4, a two-level machine), :func:`run_verification`

1. exports the module to ONNX (``torch.onnx.export(..., dynamo=False, opset_version=17)``; the
   modules use their parameters as is, so every ONNX initializer is named after its
   parameter), imports it and plans it on :func:`verification_machine`;
2. exports the plan to DTensor placements (:mod:`planner.plans.export`) and starts that many
   worker processes (fresh interpreters, one thread each, gloo on 127.0.0.1 with a free port,
   a timeout per launch; one launch per process count runs all its model/plan pairs), which
   build the device mesh (one dimension per prime cut), distribute the module's parameters
   with :func:`planner.plans.export.apply_dtensor_plan` and the input as its consumers read it;
3. runs one training step (forward, MSE loss, backward) operator by operator in ONNX order, on
   each process's shards, every tensor in the layout the plan gives it. Communication happens
   only where the plan has it, each time as explicit ``DTensor.redistribute`` calls between
   placements the plan dictates: where a consumer reads a tensor in another layout than its
   producer left it (forward, and the gradient's way back); where an output is a partial sum
   (``Partial()`` on the cuts splitting a reduction dimension), all-reduced hierarchically as
   ``planner.cost.collectives.hierarchical_all_reduce`` prices it (reduce-scatter inside a level,
   all-reduce across the outer one, all-gather back); and where an input's gradient is
   partial because the operator splits a dimension the input lacks. Local arithmetic runs on
   the shards; DTensor never propagates shardings on its own, so it cannot add collectives of
   its own choosing (any collective outside these steps would be reported as unattributed);
4. records every collective (a dispatch mode on the c10d functional ops), turns it into bytes
   per device with the cost model's formulas (all-reduce of S over f devices
   ``2(f-1)/f*S``; all-gather into S and reduce-scatter from S ``(f-1)/f*S``; all-to-all of a
   local S ``(f-1)/f*S``), and compares, operator by operator, with what the cost model
   predicts (the operator's communication vector plus the redistribution of its incoming
   edges, forward and backward, summed over levels; measured: the busiest process);
5. compares the loss, the output and every parameter gradient with a single-process run of
   the same module (``torch.allclose`` with :data:`RTOL` and :data:`ATOL`, fp32).

**The planning machine.** On these small models and a real CPU the search would replicate
everything, so the plans are made for :func:`verification_machine`, a *fast machine
description* (1 GFLOP/s devices, 1 GB/s between the two nodes, 10 GB/s inside a node, no
latency): splitting is then worth it and D-Rec picks tensor-parallel splits of the weights
(rows, columns and contracted dimensions, with partial sums and redistributions) that differ
from data parallelism. The execution itself is the same whatever the machine.

**Driving DTensor.** Given a redistribution spanning several mesh dimensions, DTensor's own
planner may take a costlier route than the plan prices (it never picks an all-to-all, and
may all-reduce a dimension it cannot reduce-scatter in nesting order), so each is spelt out
as one-dimension steps: the cheapest path under the cost model's formulas
(:func:`plan_moves`, :func:`reduce_moves`). Gloo has no all-to-all in DTensor's
``Shard(i) -> Shard(j)`` path (it all-gathers instead, ``f`` times the bytes); during the step
that path is routed to ``all_to_all_single``, which gloo supports. Two layout changes have
no DTensor path at the plan's volume and use one c10d collective on the local shards
instead: a renumbering of blocks across mesh dimensions (one ``all_to_all_single`` over all
processes, each sending exactly what others lack: the cost model's "fetch what you lack"),
and a hierarchical all-reduce whose scatter axis cannot nest (run on the flattened buffer).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from planner.plans.export import PARTIAL, REPLICATE, OpLayout, export_strategies, mesh_dims, op_layouts, parse_placement, shard
from planner.model.graph import TensorRole

try:  # PyTorch is optional for the planner; only this module and the DTensor helpers need it
    import torch
except ImportError:  # pragma: no cover - exercised only where torch is absent
    torch = None

MODELS = ("mlp", "transformer")
ALGORITHMS = ("drec+", "data_parallel")
PROCESSES = (4, 8)
RTOL = 1e-4  # torch.allclose tolerances for loss, outputs and gradients (fp32)
ATOL = 1e-5
BYTES_TOLERANCE = 0.10  # predicted vs measured bytes per operator
DEFAULT_TIMEOUT_S = 240.0  # per launch of a process group (all configurations of one size)

INSTALL_HINT = "PyTorch is needed to verify plans: pip install -r requirements-verify.txt"


class VerificationError(RuntimeError):
    """The verification could not run (missing torch, a worker failed or timed out)."""


def torch_available() -> bool:
    return torch is not None


# ---- the machine the plans are made for ---------------------------------------------------------

def verification_machine(processes: int):
    """Two levels, ``2 x processes/2``: a fast machine description (see the module docstring)."""
    from planner.machine.tree import Machine

    if processes < 2 or processes % 2:
        raise ValueError(f"processes must be an even number >= 2, not {processes}")
    return Machine.from_dict({
        "name": f"fast-cpu-2x{processes // 2}",
        "device": {"name": "cpu-process", "peak_flops": 1e9, "memory_bytes": 1e9},
        "levels": [
            {"name": "node", "arity": 2, "bandwidth_Bps": 1e9, "latency_s": 0.0},
            {"name": "cpu", "arity": processes // 2, "bandwidth_Bps": 1e10, "latency_s": 0.0},
        ],
    })


# ---- the models, in PyTorch --------------------------------------------------------------------

MODEL_SPECS = {
    # batch 16, widths 64 -> 256 -> 256 -> 64 (Gemm with transB=1 in ONNX, weights "fc.{i}.weight")
    "mlp": {"batch": 16, "widths": (64, 256, 256, 64)},
    # batch 8, sequence 8, hidden 64, 4 heads, MLP 256; pre-norm block with residuals
    "transformer": {"batch": 8, "seq": 8, "hidden": 64, "heads": 4, "ffn": 256},
}

if torch is not None:
    import torch.nn as nn
    import torch.nn.functional as F

    class VerifyMLP(nn.Module):
        """``Linear -> ReLU -> Linear -> ReLU -> Linear`` (ONNX: Gemm, Relu, Gemm, Relu, Gemm)."""

        def __init__(self, batch: int = 16, widths=(64, 256, 256, 64)):
            super().__init__()
            self.input_shape = (batch, widths[0])
            self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
            with torch.no_grad():
                for layer in self.fc:  # distinct values: the exporter merges equal initializers
                    layer.bias.normal_(0, 0.1)

        def forward(self, x):
            for i, layer in enumerate(self.fc):
                x = layer(x)
                if i < len(self.fc) - 1:
                    x = torch.relu(x)
            return x

    class VerifyTransformerBlock(nn.Module):
        """A pre-norm transformer encoder block: multi-head self-attention and a GELU MLP.

        Weights are ``[in, out]`` parameters used directly (``x @ w + b``), so that the ONNX
        export reads each one as an initializer with the parameter's name (nn.Linear on a 3-D
        input would be exported through a folded, renamed transpose).
        """

        def __init__(self, batch: int = 8, seq: int = 8, hidden: int = 64, heads: int = 4, ffn: int = 256):
            super().__init__()
            self.input_shape = (batch, seq, hidden)
            self.heads, self.head_dim = heads, hidden // heads
            self.ln1 = nn.LayerNorm(hidden)
            self.ln2 = nn.LayerNorm(hidden)

            def weight(a, b):
                return nn.Parameter(torch.randn(a, b) / math.sqrt(a))

            def bias(n):
                return nn.Parameter(torch.randn(n) * 0.1)

            self.wq, self.bq = weight(hidden, hidden), bias(hidden)
            self.wk, self.bk = weight(hidden, hidden), bias(hidden)
            self.wv, self.bv = weight(hidden, hidden), bias(hidden)
            self.wo, self.bo = weight(hidden, hidden), bias(hidden)
            self.w1, self.b1 = weight(hidden, ffn), bias(ffn)
            self.w2, self.b2 = weight(ffn, hidden), bias(hidden)
            with torch.no_grad():
                for ln in (self.ln1, self.ln2):
                    ln.weight.normal_(1.0, 0.1)
                    ln.bias.normal_(0.0, 0.1)

        def _split_heads(self, t):
            b, s, _ = self.input_shape
            return t.reshape(b, s, self.heads, self.head_dim).transpose(1, 2)

        def forward(self, x):
            b, s, d = self.input_shape
            h = self.ln1(x)
            q = self._split_heads(h @ self.wq + self.bq)
            k = self._split_heads(h @ self.wk + self.bk)
            v = self._split_heads(h @ self.wv + self.bv)
            att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(self.head_dim)), dim=-1)
            ctx = (att @ v).transpose(1, 2).reshape(b, s, d)
            x = x + (ctx @ self.wo + self.bo)
            m = F.gelu(self.ln2(x) @ self.w1 + self.b1) @ self.w2 + self.b2
            return x + m


def build_model(name: str, seed: int = 0):
    """The PyTorch module of one verification model, with deterministic weights."""
    _require_torch()
    if name not in MODEL_SPECS:
        raise ValueError(f"model must be one of {', '.join(MODEL_SPECS)}, not {name!r}")
    torch.manual_seed(seed)
    spec = MODEL_SPECS[name]
    return VerifyMLP(**spec) if name == "mlp" else VerifyTransformerBlock(**spec)


def export_onnx(module) -> bytes:
    """The module as ONNX bytes (TorchScript exporter, opset 17, fixed shapes, input ``x``)."""
    _require_torch()
    buf = io.BytesIO()
    x = torch.zeros(module.input_shape)
    with warnings_silenced():
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    return buf.getvalue()


@contextlib.contextmanager
def warnings_silenced():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _require_torch() -> None:
    if torch is None:
        raise VerificationError(INSTALL_HINT)


# ---- the execution program (plain data, built in the parent) -----------------------------------

@dataclass
class _Context:
    """What the parent prepares for one (model, plan, processes) run."""

    model: str
    algorithm: str
    processes: int
    export: dict
    program: dict
    predicted: dict  # op -> {"bytes": float, "by_level": [...], "op": float, "edges": float}
    plan_algorithm: str
    notes: list
    strategies: dict  # op -> [dim or None per cut]
    cuts: list  # [[level name, factor], ...]


def reduce_moves(computed: list[str], post: list[str], shape: tuple[int, ...], sizes: list[int],
                 levels: list[int]) -> list[tuple[list[str], list[str], str]]:
    """Redistribution steps that all-reduce the ``Partial()`` mesh dims of ``computed`` into
    ``post`` the way ``hierarchical_all_reduce`` prices it: per machine level, innermost first,
    reduce-scatter over that level's partial dims, then all-reduce on the outermost level (a
    reduce-scatter and an all-gather when it has several cuts), then all-gather back, outer
    level to inner. Every step changes one mesh dimension (DTensor's own planner, given several
    at once, may all-reduce one of them instead). Each level scatters onto a tensor axis that
    divides evenly and whose existing shards are all on outer mesh dims (DTensor nests an axis's
    shards in mesh order); where there is none, the same collectives run on the flattened local
    buffer (a ``"hierarchical"`` step).
    """
    pdims = [i for i, p in enumerate(computed) if p == PARTIAL]
    if not pdims:
        return plan_moves(computed, post, shape, sizes)
    by_level: dict[int, list[int]] = {}
    for i in pdims:
        by_level.setdefault(levels[i], []).append(i)
    order = sorted(by_level, reverse=True)  # innermost level first
    inner, outer = order[:-1], order[-1]
    moves: list = []
    cur = list(computed)
    axes: dict[int, int] = {}
    for lv in inner + ([outer] if len(by_level[outer]) > 1 else []):
        dims = sorted(by_level[lv])
        axis = _scatter_axis(cur, shape, sizes, math.prod(sizes[i] for i in dims), dims)
        if axis is None:  # the same collectives on the flattened local buffer instead
            reduced = [REPLICATE if p == PARTIAL else p for p in computed]
            return [(list(computed), reduced, "hierarchical")] + plan_moves(reduced, post, shape, sizes)
        axes[lv] = axis
        for i in dims:  # outer mesh dim first: the shards nest in mesh order
            nxt = list(cur)
            nxt[i] = shard(axis)
            moves.append((cur, nxt, "redistribute"))
            cur = nxt
    if len(by_level[outer]) == 1:
        nxt = list(cur)
        nxt[by_level[outer][0]] = REPLICATE
        moves.append((cur, nxt, "redistribute"))
        cur = nxt
    for lv in ([outer] if len(by_level[outer]) > 1 else []) + list(reversed(inner)):
        for i in sorted(by_level[lv], reverse=True):  # innermost shard first
            nxt = list(cur)
            nxt[i] = REPLICATE
            moves.append((cur, nxt, "redistribute"))
            cur = nxt
    if cur != list(post):
        moves += plan_moves(cur, post, shape, sizes)
    return moves


def _scatter_axis(placements: list[str], shape, sizes, factor: int, dims: list[int]) -> int | None:
    """The tensor axis to reduce-scatter on over mesh ``dims``: its local size divisible by
    ``factor`` and any shards it already has on mesh dims before ``dims`` (DTensor nests a tensor
    axis's shards in mesh order); unsharded axes first, then the largest."""
    local = list(shape)
    last: dict[int, int] = {}
    for i, (p, n) in enumerate(zip(placements, sizes)):
        kind, a = parse_placement(p)
        if kind == "shard":
            local[a] //= n
            last[a] = max(last.get(a, -1), i)
    best = None
    for a, size in enumerate(local):
        if size % factor or last.get(a, -1) > min(dims):
            continue
        key = (a not in last, size)
        if best is None or key > best[0]:
            best = (key, a)
    return None if best is None else best[1]


def plan_moves(src: list[str], dst: list[str], shape, sizes: list[int]) -> list[tuple[list[str], list[str], str]]:
    """The cheapest sequence of one-mesh-dimension redistributions from ``src`` to ``dst``.

    DTensor's own planner never picks an all-to-all (it charges ``Shard(i) -> Shard(j)`` a
    penalty and all-gathers instead), so the plan's redistributions are spelt out step by step:
    a Dijkstra search over placements, each step changing one mesh dimension, priced per device
    with the cost model's formulas as a fraction of the tensor (all-gather ``(f-1)`` local
    shards, all-to-all ``(f-1)/f`` of the local shard, a slice of a replica free, reduce-scatter
    ``(f-1)/f`` and all-reduce ``2(f-1)/f`` of the local partial sum). Steps keep every tensor
    axis's shards nested in mesh order, the only order a plain ``Shard`` expresses, and every
    shard even.
    """
    import heapq

    src, dst = tuple(src), tuple(dst)
    if src == dst:
        return []
    parsed = {}

    def parse(p):
        if p not in parsed:
            parsed[p] = parse_placement(p)
        return parsed[p]

    def info(state):
        local = 1.0
        by_axis: dict[int, list[int]] = {}
        for i, p in enumerate(state):
            kind, a = parse(p)
            if kind == "shard":
                local /= sizes[i]
                by_axis.setdefault(a, []).append(i)
        return local, by_axis

    def divisible(state) -> bool:
        _, by_axis = info(state)
        return all(shape[a] % math.prod(sizes[i] for i in ds) == 0 for a, ds in by_axis.items())

    axes = range(len(shape))
    best = {src: 0.0}
    heap = [(0.0, 0, 0, src, None)]
    back: dict[tuple, tuple] = {}
    counter = 1
    while heap:
        cost, steps, _, state, prev = heapq.heappop(heap)
        if cost > best.get(state, math.inf) + 1e-15 or state in back:
            continue
        back[state] = prev
        if state == dst:
            break
        local, by_axis = info(state)
        for i, p in enumerate(state):
            f = sizes[i]
            kind, a = parse(p)
            if kind == "shard" and by_axis[a][-1] != i:
                continue  # only the innermost shard of an axis can change
            options = []
            if kind == "partial":
                options.append((REPLICATE, 2 * (f - 1) / f * local))
            elif kind == "shard":
                options.append((REPLICATE, (f - 1) * local))
            for b in axes:
                if kind == "shard" and b == a:
                    continue
                holders = [j for j in by_axis.get(b, []) if j != i]
                if holders and holders[-1] > i:
                    continue  # would not be the innermost shard of axis b
                price = 0.0 if kind == "replicate" else (f - 1) / f * local
                options.append((shard(b), price))
            for placement, price in options:
                nxt = state[:i] + (placement,) + state[i + 1:]
                if placement != REPLICATE and not divisible(nxt):
                    continue
                c = cost + price
                if c < best.get(nxt, math.inf) - 1e-15:
                    best[nxt] = c
                    heapq.heappush(heap, (c, steps + 1, counter, nxt, state))
                    counter += 1
    direct = exchange_fraction(src, dst, shape, sizes)
    if dst not in back or direct < best[dst] * (1 - 1e-9):
        return [(list(src), list(dst), "exchange")]
    path = [dst]
    while back[path[-1]] is not None:
        path.append(back[path[-1]])
    path.reverse()
    return [(list(a), list(b), "redistribute") for a, b in zip(path, path[1:])]


def blocks(shape, placements: list[str], sizes: list[int]) -> dict[tuple, list[tuple[int, int]]]:
    """Per mesh coordinate, the block of the tensor it holds: ``[(start, stop)]`` per axis
    (shards of an axis nested in mesh order, as DTensor lays them out)."""
    import itertools

    by_axis: dict[int, list[int]] = {}
    for i, p in enumerate(placements):
        kind, a = parse_placement(p)
        if kind == "shard":
            by_axis.setdefault(a, []).append(i)
    out = {}
    for coord in itertools.product(*(range(n) for n in sizes)):
        box = []
        for a, size in enumerate(shape):
            ds = by_axis.get(a, [])
            index, count = 0, 1
            for d in ds:
                index = index * sizes[d] + coord[d]
                count *= sizes[d]
            block = size // count
            box.append((index * block, (index + 1) * block))
        out[coord] = box
    return out


def _overlap(a, b) -> list[tuple[int, int]] | None:
    box = [(max(x0, y0), min(x1, y1)) for (x0, x1), (y0, y1) in zip(a, b)]
    return None if any(lo >= hi for lo, hi in box) else box


def exchange_fraction(src: list[str], dst: list[str], shape, sizes: list[int]) -> float:
    """Per-device bytes (as a fraction of the tensor) of a direct exchange from ``src`` to
    ``dst`` (one all-to-all over all devices): the worst device's part of its new block that it
    does not hold already. This is the volume the cost model's redistribution prices."""
    if any(parse_placement(p)[0] == "partial" for p in list(src) + list(dst)):
        return math.inf
    a, b = blocks(shape, src, sizes), blocks(shape, dst, sizes)
    total = math.prod(shape)
    worst = 0.0
    for coord, want in b.items():
        need = math.prod(hi - lo for lo, hi in want)
        own = _overlap(a[coord], want)
        have = math.prod(hi - lo for lo, hi in own) if own else 0
        worst = max(worst, (need - have) / total)
    return worst


def local_shape(shape, placements: list[str], sizes: list[int]) -> list[int]:
    out = list(shape)
    for p, n in zip(placements, sizes):
        kind, a = parse_placement(p)
        if kind == "shard":
            if out[a] % n:
                raise VerificationError(f"axis {a} of shape {tuple(shape)} does not split evenly in {n}")
            out[a] //= n
    return out


def build_program(cm, strategies, model_proto, layouts: dict[str, OpLayout] | None = None) -> dict:
    """The step the workers execute: per planned operator (ONNX order), its ONNX type and
    attributes, and for each input and output the placements and the redistributions."""
    import numpy as np
    import onnx

    from planner.onnx.guard import VERIFY_MAX_ELEMENTS, evaluation_allowed, tensor_values
    from planner.onnx.importer import _evaluate, _operator_names, _opset

    def _gated(tensor, where):
        value = tensor_values(tensor, VERIFY_MAX_ELEMENTS)
        if value is None:
            raise VerificationError(f"the constant of {where} is not stored in the file or has more than "
                                    f"{VERIFY_MAX_ELEMENTS:,} elements: it cannot be evaluated")
        return value

    layouts = layouts or op_layouts(cm, strategies)
    dims = mesh_dims(cm, "cuts")
    sizes = [d.size for d in dims]
    levels = [d.level for d in dims]

    def pl(ul, partial):
        return [shard(ul.cut_axes[t]) if ul.cut_axes[t] is not None
                else PARTIAL if partial and t in ul.partial_cuts else REPLICATE for t in range(len(dims))]

    nodes = {name: node for node, name in zip(model_proto.graph.node, _operator_names(model_proto.graph.node))}
    constants: dict[str, np.ndarray] = {}
    for init in model_proto.graph.initializer:
        if cm.graph.tensors.get(init.name) is not None and cm.graph.tensors[init.name].role is TensorRole.CONSTANT:
            constants[init.name] = _gated(init, init.name)
    planned = set(cm.planned)
    opset = _opset(model_proto)
    for node, name in zip(model_proto.graph.node, _operator_names(model_proto.graph.node)):
        if name in planned:
            continue
        args = [constants.get(i) if i else None for i in node.input]
        if any(a is None for a, i in zip(args, node.input) if i):
            raise VerificationError(f"static node {name} ({node.op_type}) depends on a value computed at run time")
        if node.op_type == "Constant":
            values = [_gated(next(a.t for a in node.attribute if a.name == "value"), name)]
        else:
            if not evaluation_allowed(node, args, {"": opset}, VERIFY_MAX_ELEMENTS):
                raise VerificationError(f"static node {name} ({node.op_type}) cannot be evaluated safely: a tensor "
                                        f"attribute is not stored in the file, or an output may exceed "
                                        f"{VERIFY_MAX_ELEMENTS:,} elements")
            values = _evaluate(node, args, opset)
        for o, v in zip(node.output, values):
            constants[o] = np.asarray(v)

    post_of: dict[str, list[str]] = {}
    steps = []
    for name in cm.planned:
        lay = layouts[name]
        for ul in lay.inputs + lay.outputs:
            if ul.view_shape:
                raise VerificationError(f"operator {name}: {ul.tensor} is split on an inner factor of an axis "
                                        "(strided blocks); the verification executor does not run such layouts")
        node = nodes[name]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()
                 if isinstance(v, (int, float, bytes, str, list))}
        ins = []
        for ul in lay.inputs:
            dst = pl(ul, False)
            entry = {"tensor": ul.tensor, "role": ul.role, "dst": dst, "shape": list(ul.shape)}
            grad = pl(ul, True) if ul.partial_cuts and ul.requires_grad else None
            if ul.role == TensorRole.ACTIVATION.value:
                src = post_of[ul.tensor]
                entry["fwd"] = plan_moves(src, dst, ul.shape, sizes)
                entry["bwd"] = ((reduce_moves(grad, dst, ul.shape, sizes, levels) if grad else [])
                                + (plan_moves(dst, src, ul.shape, sizes) if ul.requires_grad else []))
            elif ul.role == TensorRole.PARAMETER.value:
                entry["fwd"] = []
                entry["bwd"] = reduce_moves(grad, dst, ul.shape, sizes, levels) if grad else []
            ins.append(entry)
        outs = []
        for ul in lay.outputs:
            computed, post = pl(ul, True), pl(ul, False)
            post_of[ul.tensor] = post
            outs.append({"tensor": ul.tensor, "computed": computed, "post": post, "shape": list(ul.shape),
                         "local_shape": local_shape(ul.shape, computed, sizes),
                         "fwd": reduce_moves(computed, post, ul.shape, sizes, levels)})
        steps.append({"op": name, "op_type": lay.op_type, "attrs": attrs, "inputs": ins, "outputs": outs,
                      "reduction_dims": lay.reduction_cuts})
    graph_out = cm.graph.outputs[0]
    return {"mesh_shape": sizes, "mesh_dim_names": [d.name for d in dims], "mesh_levels": levels,
            "constants": constants, "steps": steps, "output": graph_out, "output_placements": post_of[graph_out],
            "input": cm.graph.inputs[0]}


def predicted_bytes(cm, strategies) -> dict[str, dict]:
    """Per planned operator: bytes per device the cost model predicts, its own collectives plus
    the redistribution of its incoming edges (forward and, in training, backward), per level."""
    full = cm.complete(strategies)
    d = cm.num_levels
    out = {}
    for name in cm.planned:
        comm = cm.op_cost(name, full[name]).communication[1:1 + d]
        edges = sum((cm.edge_cost(e, full[e.producer], full[name])[1:1 + d] for e in cm.in_edges[name]),
                    start=0 * comm)
        out[name] = {"op": float(comm.sum()), "edges": float(edges.sum()),
                     "bytes": float(comm.sum() + edges.sum()), "by_level": [float(x) for x in comm + edges]}
    return out


def prepare(model: str, algorithm: str, processes: int, plan: dict | None = None,
            onnx_bytes: bytes | None = None) -> tuple[_Context, dict]:
    """Everything the parent does for one run: module, ONNX, plan, export, program, reference.

    ``plan``, when given, is a plan written by hand (``{"ops": [{"name", "cuts" or "splits"}]}``,
    as ``evaluate`` reads it) used instead of a search, and ``algorithm`` is its label.
    """
    import onnx

    from planner.options import PlanOptions
    from planner.cost.result import cost_model_for
    from planner.search.registry import search
    from planner.plans.plan_json import strategies_from_json
    from planner.cost.model import Plan
    from planner.onnx.importer import import_model

    module = build_model(model)
    onnx_bytes = onnx_bytes or export_onnx(module)
    graph = import_model(onnx_bytes, {}, name=model)
    cm = cost_model_for(graph, verification_machine(processes), PlanOptions(mode="train"))
    if plan is None:
        plan = search(cm, algorithm)
    else:
        strategies, notes = strategies_from_json(cm, plan)
        plan = Plan(strategies, algorithm, 0.0, notes)
    layouts = op_layouts(cm, plan.strategies)
    export = export_strategies(cm, plan.strategies, "dtensor", "cuts", {"model": model, "algorithm": plan.algorithm})
    program = build_program(cm, plan.strategies, onnx.load_from_string(onnx_bytes), layouts)
    full = cm.complete(plan.strategies)
    ctx = _Context(model, algorithm, processes, export, program, predicted_bytes(cm, plan.strategies),
                   plan.algorithm, list(plan.notes), {n: list(full[n]) for n in cm.planned},
                   [[c.level_name, c.factor] for c in cm.cuts])
    ref = reference_step(module)
    ref["state"] = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return ctx, ref


def reference_step(module, seed: int = 1) -> dict:
    """One single-process training step: input, target, loss, output and every gradient."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(module.input_shape, generator=g)
    module.zero_grad()
    y = module(x)
    target = torch.randn(y.shape, generator=g)
    loss = ((y - target) ** 2).mean()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in module.named_parameters()}
    module.zero_grad()
    return {"x": x, "target": target, "loss": float(loss.detach()), "y": y.detach().clone(), "grads": grads}


# ---- the workers -------------------------------------------------------------------------------

_LABEL: list = [None]


@contextlib.contextmanager
def _labelled(op: str, kind: str):
    old = _LABEL[0]
    _LABEL[0] = (op, kind)
    try:
        yield
    finally:
        _LABEL[0] = old


def collective_bytes(kind: str, nbytes: float, f: int) -> float:
    """Per-device bytes of one collective, with the cost model's formulas (``nbytes`` is the
    local input's size)."""
    if f <= 1:
        return 0.0
    if kind == "all_reduce":
        return 2 * (f - 1) / f * nbytes
    if kind == "all_gather":  # gathers f shards of nbytes into f * nbytes
        return (f - 1) * nbytes
    if kind in ("reduce_scatter", "all_to_all"):
        return (f - 1) / f * nbytes
    return float(nbytes)  # broadcast, scatter and other c10d calls: the payload, flagged


if torch is not None:
    from torch.utils._python_dispatch import TorchDispatchMode

    _FUNCOL = torch.ops._c10d_functional
    _C10D = torch.ops.c10d
    _COLLECTIVES = {
        _FUNCOL.all_reduce: ("all_reduce", 2), _FUNCOL.all_reduce_: ("all_reduce", 2),
        _FUNCOL.all_gather_into_tensor: ("all_gather", 2),
        _FUNCOL.reduce_scatter_tensor: ("reduce_scatter", 3),
        _FUNCOL.all_to_all_single: ("all_to_all", 3),
        _FUNCOL.broadcast: ("broadcast", 2),
    }
    _OTHER_C10D = {getattr(_C10D, n) for n in (
        "allreduce_", "allgather_", "_allgather_base_", "_reduce_scatter_base_", "reduce_scatter_",
        "alltoall_", "alltoall_base_", "broadcast_", "scatter_", "gather_", "reduce_") if hasattr(_C10D, n)}

    class CollectiveRecorder(TorchDispatchMode):
        """Records every collective this process takes part in, with the label of the plan
        step running it and its bytes per device (the cost model's formulas), per machine level.

        ``dim_levels`` maps a mesh dimension's group name to its machine level; a collective on
        the whole group (a direct exchange) is split by level per peer, with ``peer_levels``
        (per rank: the level of the outermost mesh dimension where its coordinate differs).
        """

        def __init__(self, dim_levels: dict[str, tuple[int, int]], peer_levels: list[int | None], n_levels: int):
            super().__init__()
            self.dim_levels = dim_levels
            self.peer_levels = peer_levels
            self.n_levels = n_levels
            self.records: list[dict] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            from torch.distributed.tensor import DTensor

            kwargs = kwargs or {}
            if any(issubclass(t, DTensor) for t in types):
                return NotImplemented
            out = func(*args, **kwargs)
            packet = getattr(func, "_overloadpacket", None)
            if packet in _COLLECTIVES:
                kind, gpos = _COLLECTIVES[packet]
                group = args[gpos] if len(args) > gpos else kwargs.get("group_name")
                splits = args[1] if kind == "all_to_all" else None
                self._record(kind, args[0], group, splits)
            elif packet in _OTHER_C10D:
                tensor = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
                self._record(packet.__name__, tensor, None, None)
            return out

        def _record(self, kind, tensor, group_name, splits):
            import torch.distributed as dist
            from torch.distributed.distributed_c10d import _resolve_process_group

            pg = _resolve_process_group(group_name) if isinstance(group_name, str) else None
            f = pg.size() if pg is not None else 0
            nbytes = tensor.numel() * tensor.element_size() if isinstance(tensor, torch.Tensor) else 0
            by_level = [0.0] * self.n_levels
            dim, level = self.dim_levels.get(group_name, (-1, None))
            if kind == "all_to_all" and splits is not None and f == len(self.peer_levels):
                row = tensor.element_size() * math.prod(tensor.shape[1:])  # uneven exchange over all
                me = dist.get_rank()
                for peer, count in enumerate(splits):
                    if peer != me and count:
                        by_level[self.peer_levels[peer]] += count * row
                total = sum(by_level)
            else:
                total = collective_bytes(kind, nbytes, f)
                by_level[level if level is not None else 0] += total
            label = _LABEL[0] or ("(unattributed)", "")
            self.records.append({"op": label[0], "phase": label[1], "collective": kind, "group_size": f,
                                 "mesh_dim": dim, "local_bytes": nbytes, "bytes": total, "by_level": by_level})

    @contextlib.contextmanager
    def gloo_all_to_all():
        """Route DTensor's ``Shard(i) -> Shard(j)`` on a CPU mesh to ``all_to_all_single``
        (gloo supports it; DTensor's CPU path all-gathers instead)."""
        import torch.distributed._functional_collectives as funcol
        import torch.distributed.tensor.placement_types as pt

        original = pt.shard_dim_alltoall

        def alltoall(input, gather_dim, shard_dim, mesh, mesh_dim):
            f = mesh.size(mesh_dim)
            if input.size(shard_dim) % f:
                return original(input, gather_dim, shard_dim, mesh, mesh_dim)
            chunks = torch.stack(list(torch.chunk(input, f, dim=shard_dim)), dim=0).contiguous()
            received = funcol.all_to_all_single(chunks, None, None, (mesh, mesh_dim))
            if isinstance(received, funcol.AsyncCollectiveTensor):
                received = received.wait()
            return torch.cat(list(received.unbind(0)), dim=gather_dim).contiguous()

        pt.shard_dim_alltoall = alltoall
        try:
            yield
        finally:
            pt.shard_dim_alltoall = original

    class _Move(torch.autograd.Function):
        """Identity on values; communication only where the plan has it, forward and backward.

        ``fwd``/``bwd`` are lists of (source placements, target placements) of the tensor
        (of global ``shape``); each is one explicit ``DTensor.redistribute``.
        """

        @staticmethod
        def forward(ctx, x, runner, op, shape, fwd, bwd, fwd_phase, bwd_phase):
            ctx.runner, ctx.op, ctx.shape, ctx.bwd, ctx.bwd_phase = runner, op, shape, bwd, bwd_phase
            if not fwd:
                return x.view_as(x)
            with _labelled(op, fwd_phase):
                return runner.redistribute(x, shape, fwd)

        @staticmethod
        def backward(ctx, g):
            if ctx.bwd:
                with _labelled(ctx.op, ctx.bwd_phase):
                    g = ctx.runner.redistribute(g.contiguous(), ctx.shape, ctx.bwd)
            return g, None, None, None, None, None, None, None

    class _LocalMSE(torch.autograd.Function):
        """This rank's share of ``mean((y - t)^2)``; its gradient is the full local gradient
        (a replicated output's every copy receives the whole gradient, as the plan assumes)."""

        @staticmethod
        def forward(ctx, y, t, numel, replicas):
            ctx.save_for_backward(y, t)
            ctx.numel = numel
            return ((y - t) ** 2).sum() / (numel * replicas)

        @staticmethod
        def backward(ctx, g):
            y, t = ctx.saved_tensors
            return 2 * (y - t) / ctx.numel * g, None, None, None


class _Runner:
    """Executes one program on this rank's shards (worker side)."""

    def __init__(self, mesh, program: dict):
        from planner.plans.export import to_placements

        self.mesh = mesh
        self.program = program
        self.to_placements = to_placements
        self.coordinate = mesh.get_coordinate()

    def redistribute(self, local, shape, moves):
        from torch.distributed.tensor import DTensor
        import torch.distributed._functional_collectives as funcol

        stride = _contiguous_stride(shape)
        for src, dst, kind in moves:
            if kind == "exchange":
                local = self.exchange(local, shape, src, dst)
                continue
            if kind == "hierarchical":
                local = self.hierarchical_all_reduce(local, src)
                continue
            dt = DTensor.from_local(local, self.mesh, self.to_placements(src), run_check=False,
                                    shape=torch.Size(shape), stride=stride)
            local = dt.redistribute(self.mesh, self.to_placements(dst)).to_local()
            if isinstance(local, funcol.AsyncCollectiveTensor):
                local = local.wait()
        return local

    def hierarchical_all_reduce(self, local, placements):
        """Sum the ``Partial()`` mesh dims of ``placements`` as ``hierarchical_all_reduce``
        prices it, on the flattened local buffer: reduce-scatter per inner level (innermost
        first), all-reduce on the outermost, all-gather back."""
        import torch.distributed._functional_collectives as funcol

        levels, sizes = self.program["mesh_levels"], self.program["mesh_shape"]
        by_level: dict[int, list[int]] = {}
        for i, p in enumerate(placements):
            if p == PARTIAL:
                by_level.setdefault(levels[i], []).append(i)
        order = sorted(by_level, reverse=True)
        scatter = [d for lv in order[:-1] for d in sorted(by_level[lv])]
        outer = sorted(by_level[order[-1]])
        if len(outer) > 1:
            scatter, outer = scatter + outer, []
        flat = local.reshape(-1)
        n = flat.numel()
        pad = (-n) % math.prod(sizes[d] for d in scatter) if scatter else 0
        if pad:
            flat = torch.cat([flat, flat.new_zeros(pad)])

        def done(t):
            return t.wait() if isinstance(t, funcol.AsyncCollectiveTensor) else t

        for d in scatter:
            flat = done(funcol.reduce_scatter_tensor(flat, "sum", 0, (self.mesh, d)))
        for d in outer:
            flat = done(funcol.all_reduce(flat, "sum", (self.mesh, d)))
        for d in reversed(scatter):
            flat = done(funcol.all_gather_tensor(flat, 0, (self.mesh, d)))
        return flat[:n].reshape(local.shape)

    def exchange(self, local, shape, src, dst):
        """One all-to-all over every process: each sends exactly the parts of its block that
        others' new blocks need (a renumbering of blocks across mesh dimensions, which no
        sequence of per-dimension DTensor redistributions does at this volume)."""
        import torch.distributed as dist
        import torch.distributed._functional_collectives as funcol

        sizes = self.program["mesh_shape"]
        a, b = blocks(shape, src, sizes), blocks(shape, dst, sizes)
        coords = list(a)  # row-major: the index is the rank (init_device_mesh's layout)
        me = coords[dist.get_rank()]
        mine, want = a[me], b[me]
        # replicas of a block differ only on the mesh dims where ``src`` replicates: each part
        # is sent once, by the replica that agrees with the receiver on those dims
        rep = [d for d, p in enumerate(src) if parse_placement(p)[0] != "shard"]

        def sends(s, c):
            return all(s[d] == c[d] for d in rep)

        pieces, send = [], []
        for c in coords:
            box = _overlap(mine, b[c]) if sends(me, c) else None
            if box is None:
                send.append(0)
                continue
            piece = local[tuple(slice(lo - m0, hi - m0) for (lo, hi), (m0, _) in zip(box, mine))]
            pieces.append(piece.reshape(-1))
            send.append(piece.numel())
        recv_boxes = [_overlap(a[c], want) if sends(c, me) else None for c in coords]
        recv = [0 if box is None else math.prod(hi - lo for lo, hi in box) for box in recv_boxes]
        flat = torch.cat(pieces) if pieces else local.new_zeros(0)
        got = funcol.all_to_all_single(flat, recv, send, dist.group.WORLD)
        if isinstance(got, funcol.AsyncCollectiveTensor):
            got = got.wait()
        out = local.new_empty([hi - lo for lo, hi in want])
        offset = 0
        for box, n in zip(recv_boxes, recv):
            if n:
                region = tuple(slice(lo - w0, hi - w0) for (lo, hi), (w0, _) in zip(box, want))
                out[region] = got[offset:offset + n].reshape([hi - lo for lo, hi in box])
                offset += n
        return out

    def slice_of(self, full, placements):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full, self.mesh, self.to_placements(placements), src_data_rank=None).to_local()

    def run(self, params: dict, x, target) -> tuple:
        """Forward through every step, then the loss; returns (loss share, output shard)."""
        env = {}
        consts = {k: torch.as_tensor(v) for k, v in self.program["constants"].items()}
        for step in self.program["steps"]:
            op = step["op"]
            ins = []
            for u in step["inputs"]:
                role = u["role"]
                if role == "constant":
                    ins.append(consts[u["tensor"]])
                elif role == "input":
                    ins.append(self.slice_of(x, u["dst"]))
                elif role == "parameter":
                    p = params[u["tensor"]]
                    local = p.to_local(grad_placements=self.to_placements(u["dst"]))
                    ins.append(_Move.apply(local, self, op, tuple(u["shape"]), [], u["bwd"], "", "gradient all-reduce"))
                else:
                    ins.append(_Move.apply(env[u["tensor"]], self, op, tuple(u["shape"]), u["fwd"], u["bwd"],
                                           "redistribution", "gradient all-reduce + redistribution"))
            outs = self.compute(step, ins)
            for o, y in zip(step["outputs"], outs):
                env[o["tensor"]] = _Move.apply(y, self, op, tuple(o["shape"]), o["fwd"], [], "partial-sum all-reduce", "")
        y = env[self.program["output"]]
        placements = self.program["output_placements"]
        t = self.slice_of(target, placements)
        replicas = math.prod(n for p, n in zip(placements, self.program["mesh_shape"]) if p == REPLICATE)
        loss = _LocalMSE.apply(y, t, target.numel(), replicas)
        return loss, y

    def compute(self, step, ins) -> list:
        t, a = step["op_type"], step["attrs"]
        outs = step["outputs"]
        if t == "MatMul":
            return [torch.matmul(ins[0], ins[1])]
        if t == "Gemm":
            A = ins[0].t() if a.get("transA", 0) else ins[0]
            B = ins[1].t() if a.get("transB", 0) else ins[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(ins) > 2:
                # The bias is added once per reduction group (partial sums are all-reduced next),
                # but it acts after the reduction: every device's gradient of it is the whole
                # sum of dY, as the cost model counts it (no all-reduce). The other devices add
                # C - C.detach(): zero in value, identity in gradient.
                first = all(self.coordinate[i] == 0 for i in step["reduction_dims"])
                bias = ins[2] if first else ins[2] - ins[2].detach()
                y = y + a.get("beta", 1.0) * bias
            return [y]
        binary = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Pow": torch.pow}
        if t in binary:
            return [binary[t](ins[0], ins[1])]
        unary = {"Relu": torch.relu, "Erf": torch.erf, "Tanh": torch.tanh, "Sigmoid": torch.sigmoid,
                 "Sqrt": torch.sqrt, "Exp": torch.exp, "Neg": torch.neg, "Reciprocal": torch.reciprocal,
                 "Identity": lambda v: v}
        if t in unary:
            return [unary[t](ins[0])]
        if t == "Softmax":
            return [torch.softmax(ins[0], dim=a.get("axis", -1))]
        if t == "LayerNormalization":
            axis = a.get("axis", -1) % ins[0].dim()
            return [F.layer_norm(ins[0], ins[0].shape[axis:], ins[1] if len(ins) > 1 else None,
                                 ins[2] if len(ins) > 2 else None, a.get("epsilon", 1e-5))][:len(outs)]
        if t in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
            return [ins[0].reshape(outs[0]["local_shape"])]
        if t == "Transpose":
            perm = a.get("perm", list(range(ins[0].dim()))[::-1])
            return [ins[0].permute(perm)]
        raise VerificationError(f"the verification executor has no rule for {t} (operator {step['op']})")


def _contiguous_stride(shape) -> tuple[int, ...]:
    stride, acc = [], 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= s
    return tuple(reversed(stride))


def _worker(rank: int, world: int, port: int, jobs: list[dict], put: Callable[[str, dict], None],
            timeout_s: float) -> None:
    """One process of the group: runs every job (model, plan) of this size in turn."""
    import datetime

    import torch.distributed as dist

    from planner.plans.export import apply_dtensor_plan, build_device_mesh

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        mesh = None
        for index, job in enumerate(jobs):
            start = time.perf_counter()
            export, program, ref = job["export"], job["program"], job["reference"]
            if mesh is None:
                mesh = build_device_mesh(export, "cpu")
            levels = program["mesh_levels"]
            dim_levels = {mesh.get_group(i).group_name: (i, levels[i]) for i in range(mesh.ndim)}
            coords = [tuple(int(v) for v in (mesh.mesh == r).nonzero()[0]) for r in range(world)]
            mine = coords[rank]
            peer_levels = [None if r == rank else levels[next(i for i in range(mesh.ndim) if coords[r][i] != mine[i])]
                           for r in range(world)]
            module = build_model(job["model"])
            module.load_state_dict(ref["state"])
            placed = apply_dtensor_plan(module, export, mesh, src_data_rank=None)
            params = dict(module.named_parameters())
            runner = _Runner(mesh, program)
            recorder = CollectiveRecorder(dim_levels, peer_levels, max(levels) + 1)
            with gloo_all_to_all(), recorder:
                loss, y = runner.run(params, ref["x"], ref["target"])
                loss.backward()
            out = {"rank": rank, "job": index, "loss_share": float(loss.detach()), "records": recorder.records,
                   "seconds": time.perf_counter() - start, "not_distributed": placed["replicated"]}
            out["output"] = _compare(y.detach(), runner.slice_of(ref["y"], program["output_placements"]))
            grads = {}
            for name, p in params.items():
                if p.grad is None:
                    grads[name] = {"match": False, "max_abs_error": None, "error": "no gradient"}
                    continue
                placements = _placement_texts(p.grad.placements)
                if placements != _placement_texts(p.placements):  # e.g. a partial sum never reduced
                    grads[name] = {"match": False, "max_abs_error": None,
                                   "error": f"gradient left in {placements}, the parameter is {_placement_texts(p.placements)}"}
                    continue
                grads[name] = _compare(p.grad.to_local(), runner.slice_of(ref["grads"][name], placements))
            out["grads"] = grads
            put("result", out)
            dist.barrier()
        dist.destroy_process_group()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the rank
        import traceback

        put("error", {"rank": rank, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


def _worker_main() -> None:
    """Entry point of a worker interpreter: ``python -c ... DIR RANK`` (see :func:`_launch`)."""
    from pathlib import Path

    folder, rank = Path(sys.argv[1]), int(sys.argv[2])
    spec = torch.load(folder / "jobs.pt", weights_only=False)
    counter = [0]

    def put(kind: str, payload: dict) -> None:
        name = f"{kind}-rank{rank}-{counter[0]}.pt"
        counter[0] += 1
        torch.save(payload, folder / (name + ".tmp"))
        os.replace(folder / (name + ".tmp"), folder / name)  # atomic: the parent never reads half a file

    _worker(rank, spec["world"], spec["port"], spec["jobs"], put, spec["timeout_s"])


def _placement_texts(placements) -> list[str]:
    out = []
    for p in placements:
        if p.is_shard():
            out.append(shard(p.dim))
        elif p.is_partial():
            out.append(PARTIAL)
        else:
            out.append(REPLICATE)
    return out


def _compare(got, expected) -> dict:
    ok = got.shape == expected.shape and torch.allclose(got, expected, rtol=RTOL, atol=ATOL)
    err = float((got - expected).abs().max()) if got.shape == expected.shape and got.numel() else None
    return {"match": bool(ok), "max_abs_error": err}


# ---- the parent --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_environment() -> dict:
    """The workers' environment: one thread each, loopback only, this package importable."""
    from pathlib import Path

    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"})
    if os.path.exists("/sys/class/net/lo"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _launch(processes: int, jobs: list[dict], timeout_s: float, on_result: Callable[[int], None]) -> list[dict]:
    """Start ``processes`` worker interpreters and collect their results; kill them (by their own
    process handles) on timeout or failure.

    Workers are fresh ``python`` processes (like a ``spawn`` start) rather than
    ``multiprocessing`` children, so that nothing depends on how the caller's main module is
    written (a page, a notebook, a script without a ``__main__`` guard).
    """
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="planner-verify-") as tmp:
        folder = Path(tmp)
        torch.save({"jobs": jobs, "world": processes, "port": free_port(), "timeout_s": timeout_s},
                   folder / "jobs.pt")
        env = _child_environment()
        procs = []
        logs = []
        for rank in range(processes):
            log = open(folder / f"log-rank{rank}.txt", "w")
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "from planner.verify import _worker_main; _worker_main()", tmp, str(rank)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        expected = processes * len(jobs)
        got: list[dict] = []
        seen: set[str] = set()
        per_job: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        error = None
        try:
            while len(got) < expected and error is None:
                if time.monotonic() > deadline:
                    error = f"timed out after {timeout_s:.0f} s ({len(got)} of {expected} results)"
                    break
                fresh = sorted(p.name for p in folder.glob("*.pt") if p.name != "jobs.pt" and p.name not in seen)
                for name in fresh:
                    seen.add(name)
                    payload = torch.load(folder / name, weights_only=False)
                    if name.startswith("error"):
                        error = f"rank {payload['rank']}: {payload['error']}\n{payload['traceback']}"
                        break
                    got.append(payload)
                    per_job[payload["job"]] = per_job.get(payload["job"], 0) + 1
                    if per_job[payload["job"]] == processes:
                        on_result(payload["job"])
                if error is None and not fresh:
                    dead = [(r, p.returncode) for r, p in enumerate(procs) if p.poll() not in (None, 0)]
                    if dead:
                        error = f"rank {dead[0][0]} exited with code {dead[0][1]}"
                    else:
                        time.sleep(0.05)
        finally:
            for p in procs:
                try:
                    p.wait(timeout=10 if error is None else 0.1)
                except subprocess.TimeoutExpired:
                    pass
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
            for log in logs:
                log.close()
            if error is not None:
                tail = (folder / "log-rank0.txt").read_text()[-3000:]
                error += ("\nrank 0 output:\n" + tail) if tail.strip() else ""
        if error:
            raise VerificationError(f"{processes} processes: {error}")
        return got


def _row(ctx: _Context, ref: dict, results: list[dict]) -> dict:
    """One row of the report from every rank's results."""
    ranks = sorted(results, key=lambda r: r["rank"])
    loss = sum(r["loss_share"] for r in ranks)
    loss_ok = math.isclose(loss, ref["loss"], rel_tol=RTOL, abs_tol=ATOL)
    out_ok = all(r["output"]["match"] for r in ranks)
    grad_ok = {n: all(r["grads"][n]["match"] for r in ranks) for n in ranks[0]["grads"]}
    max_grad_err = max((r["grads"][n]["max_abs_error"] or 0.0) for r in ranks for n in r["grads"])
    measured: dict[str, list[float]] = {}
    n_levels = max(ctx.program["mesh_levels"]) + 1
    detail: dict[str, list[dict]] = {}
    for r in ranks:
        per_op: dict[str, list[float]] = {}
        for rec in r["records"]:
            by_level = per_op.setdefault(rec["op"], [0.0] * n_levels)
            for lv, b in enumerate(rec["by_level"]):
                by_level[lv] += b
            if r["rank"] == 0:
                detail.setdefault(rec["op"], []).append(
                    {k: rec[k] for k in ("phase", "collective", "group_size", "mesh_dim", "local_bytes", "bytes")})
        for op, by_level in per_op.items():  # the busiest device, as a BSP superstep waits for it
            if op not in measured or sum(by_level) > sum(measured[op]):
                measured[op] = by_level
    ops = []
    for op, pred in ctx.predicted.items():
        m = measured.pop(op, [0.0] * n_levels)
        ops.append({"op": op, "op_type": next(s["op_type"] for s in ctx.program["steps"] if s["op"] == op),
                    "predicted_bytes": pred["bytes"], "measured_bytes": sum(m),
                    "predicted_by_level": pred["by_level"], "measured_by_level": m,
                    "within_tolerance": _within(pred["bytes"], sum(m)),
                    "collectives": detail.get(op, [])})
    unattributed = {op: sum(v) for op, v in measured.items()}
    return {
        "model": ctx.model, "plan": ctx.algorithm, "plan_algorithm": ctx.plan_algorithm,
        "processes": ctx.processes, "mesh": ctx.program["mesh_shape"],
        "numerics_match": bool(loss_ok and out_ok and all(grad_ok.values())),
        "loss": loss, "loss_reference": ref["loss"], "output_match": out_ok, "gradients_match": grad_ok,
        "max_abs_gradient_error": max_grad_err, "tolerance": {"rtol": RTOL, "atol": ATOL},
        "bytes_match": all(o["within_tolerance"] for o in ops) and not any(unattributed.values()),
        "unattributed_bytes": unattributed,
        "step_seconds": max(r["seconds"] for r in ranks),
        "not_distributed": ranks[0]["not_distributed"], "notes": ctx.notes,
        "cuts": ctx.cuts, "strategies": ctx.strategies,
        "parameters": {n: t["placements"] for n, t in ctx.export["tensors"].items() if t["role"] == "parameter"},
        "ops": ops,
    }


def _within(predicted: float, measured: float) -> bool:
    if predicted == 0:
        return measured == 0
    return abs(measured - predicted) <= BYTES_TOLERANCE * predicted


def run_verification(models=MODELS, processes=PROCESSES, algorithms=ALGORITHMS,
                     progress: Callable[[float, str], None] | None = None,
                     timeout_s: float = DEFAULT_TIMEOUT_S, plans: dict[str, dict] | None = None) -> list[dict]:
    """Run the verification matrix; one row per (model, plan, processes), in that order.

    ``progress(fraction, message)`` is called as work completes (fraction in [0, 1]), from the
    calling thread. Each process count is one launch of a process group running all its
    (model, plan) pairs, killed after ``timeout_s`` seconds. ``plans`` adds plans written by
    hand, ``{label: {"model": ..., "processes": N, "ops": [{"name", "cuts"|"splits"}]}}``
    (``model`` and ``processes`` restrict where a plan runs), after the searched ones.
    Rows: ``model``, ``plan``, ``processes``, ``numerics_match``, ``bytes_match``, ``ops``
    [{``op``, ``predicted_bytes``, ``measured_bytes``, ...}], and details. Raises
    :class:`VerificationError` when torch is missing or a launch fails.
    """
    _require_torch()
    models, processes, algorithms = list(models), list(processes), list(algorithms)
    plans = dict(plans or {})
    for m in models:
        if m not in MODEL_SPECS:
            raise ValueError(f"model must be one of {', '.join(MODEL_SPECS)}, not {m!r}")
    for a in algorithms:
        if a not in ("drec+", "drec", "data_parallel", "megatron", "exact"):
            raise ValueError(f"unknown algorithm {a!r}")
    for p in processes:
        verification_machine(p)
    configs = {p: [(m, a, None) for m in models for a in algorithms]
               + [(m, label, plan) for m in models for label, plan in plans.items()
                  if plan.get("model", m) == m and plan.get("processes", p) == p]
               for p in processes}
    report = progress or (lambda f, msg: None)
    total = sum(len(c) for c in configs.values())
    done = 0
    rows: list[dict] = []
    onnx_cache: dict[str, bytes] = {}
    for p in processes:
        if not configs[p]:
            continue
        prepared = []
        for m, a, plan in configs[p]:
            report(done / max(total, 1), f"planning {m} with {a} for {p} processes")
            if m not in onnx_cache:
                onnx_cache[m] = export_onnx(build_model(m))
            prepared.append(prepare(m, a, p, plan, onnx_cache[m]))
        jobs = [{"model": c.model, "export": c.export, "program": c.program, "reference": r} for c, r in prepared]
        report(done / max(total, 1), f"launching {p} processes")

        def finished(job, p=p):
            nonlocal done
            done += 1
            c = prepared[job][0]
            report(done / max(total, 1), f"{c.model} {c.algorithm} on {p} processes done")

        before = done
        try:
            results = _launch(p, jobs, timeout_s, finished)
        except VerificationError as exc:  # the free port was taken meanwhile: once more, on another
            if "address already in use" not in str(exc).lower() or done != before:
                raise
            results = _launch(p, jobs, timeout_s, finished)
        for index, (c, r) in enumerate(prepared):
            rows.append(_row(c, r, [x for x in results if x["job"] == index]))
    report(1.0, "done")
    order = {(m, a): i for i, (m, a) in enumerate((m, a) for m in models for a in list(algorithms) + list(plans))}
    return sorted(rows, key=lambda r: (order[(r["model"], r["plan"])], processes.index(r["processes"])))


# ---- reporting ---------------------------------------------------------------------------------

def format_table(rows: list[dict]) -> str:
    """The printed report: per run a header, then operator / predicted / measured / ratio."""
    lines = []
    for row in rows:
        verdict = "numerics match" if row["numerics_match"] else "NUMERICS DIFFER"
        ok = sum(o["within_tolerance"] for o in row["ops"])
        lines.append(f"{row['model']} / {row['plan']} / {row['processes']} processes (mesh {row['mesh']}): "
                     f"{verdict} (loss {row['loss']:.6g} vs {row['loss_reference']:.6g}, max |grad error| "
                     f"{row['max_abs_gradient_error']:.2g}); bytes within {BYTES_TOLERANCE:.0%} on {ok} of "
                     f"{len(row['ops'])} operators; step {row['step_seconds']:.2f} s")
        width = max([len(o["op"]) for o in row["ops"]] + [8])
        lines.append(f"  {'operator':<{width}}  {'predicted B':>12}  {'measured B':>12}  {'ratio':>6}")
        for o in row["ops"]:
            if o["predicted_bytes"] == 0 and o["measured_bytes"] == 0:
                continue
            ratio = o["measured_bytes"] / o["predicted_bytes"] if o["predicted_bytes"] else math.inf
            mark = "" if o["within_tolerance"] else "  <-- miss"
            lines.append(f"  {o['op']:<{width}}  {o['predicted_bytes']:>12,.0f}  {o['measured_bytes']:>12,.0f}  "
                         f"{ratio:>6.3f}{mark}")
        silent = sum(1 for o in row["ops"] if o["predicted_bytes"] == 0 and o["measured_bytes"] == 0)
        if silent:
            lines.append(f"  ({silent} operators with no communication predicted or measured)")
        for op, b in row["unattributed_bytes"].items():
            lines.append(f"  {op}: {b:,.0f} B measured outside any operator  <-- miss")
        lines.append("")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    ops = [o for r in rows for o in r["ops"]]
    return {"runs": len(rows), "numerics_match": sum(r["numerics_match"] for r in rows),
            "operators": len(ops), "within_tolerance": sum(o["within_tolerance"] for o in ops),
            "with_communication": sum(1 for o in ops if o["predicted_bytes"] or o["measured_bytes"])}


def json_rows(rows: list[dict]) -> list[dict]:
    """The ``--json`` form: {model, plan, processes, numerics_match, ops: [{op, predicted_bytes,
    measured_bytes}], ...} per run (collective details dropped)."""
    out = []
    for r in rows:
        slim = {k: v for k, v in r.items() if k != "ops"}
        slim["ops"] = [{k: v for k, v in o.items() if k != "collectives"} for o in r["ops"]]
        out.append(slim)
    return out

