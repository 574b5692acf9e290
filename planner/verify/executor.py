"""Executing one program on this rank's shards (worker side).

:class:`Executor` runs one training step (forward, MSE loss, backward) operator by operator in
ONNX order, on each process's shards, every tensor in the layout the plan gives it.
Communication happens only where the plan has it, each time as explicit
``DTensor.redistribute`` calls between placements the plan dictates (the moves of
:mod:`planner.verify.moves`): where a consumer reads a tensor in another layout than its
producer left it (forward, and the gradient's way back); where an output is a partial sum
(``Partial()`` on the cuts splitting a reduction dimension), all-reduced hierarchically as
``planner.cost.collectives.hierarchical_all_reduce`` prices it; and where an input's gradient
is partial because the operator splits a dimension the input lacks. Local arithmetic runs on
the shards; DTensor never propagates shardings on its own, so it cannot add collectives of its
own choosing. Each move runs inside :func:`planner.verify.recorder.labelled`, so the recorder
attributes its collectives to the operator.

Gloo has no all-to-all in DTensor's ``Shard(i) -> Shard(j)`` path (it all-gathers instead,
``f`` times the bytes); during the step that path is routed to ``all_to_all_single``
(:func:`gloo_all_to_all`). A block renumbering (an ``"exchange"`` move) and a hierarchical
all-reduce whose scatter axis cannot nest run as c10d collectives on the local shards
(:meth:`Executor.exchange`, :meth:`Executor.hierarchical_all_reduce`).
"""

from __future__ import annotations

import contextlib
import math

from planner.plans.export import PARTIAL, REPLICATE, parse_placement
from planner.verify.base import VerificationError, torch
from planner.verify.moves import blocks, overlap
from planner.verify.recorder import labelled

if torch is not None:
    import torch.nn.functional as F


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


if torch is not None:
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
            with labelled(op, fwd_phase):
                return runner.redistribute(x, shape, fwd)

        @staticmethod
        def backward(ctx, g):
            if ctx.bwd:
                with labelled(ctx.op, ctx.bwd_phase):
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


class Executor:
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
            box = overlap(mine, b[c]) if sends(me, c) else None
            if box is None:
                send.append(0)
                continue
            piece = local[tuple(slice(lo - m0, hi - m0) for (lo, hi), (m0, _) in zip(box, mine))]
            pieces.append(piece.reshape(-1))
            send.append(piece.numel())
        recv_boxes = [overlap(a[c], want) if sends(c, me) else None for c in coords]
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

