"""Rules for reductions and normalisations: Reduce*, ArgMax/ArgMin, TopK, CumSum, the
normalisations (LayerNorm and its contrib forms, BatchNorm, InstanceNorm, GroupNorm), Softmax and
LogSoftmax, and pooling.

A reduced or normalised axis is a reduction dim (its split leaves partial results) or an
unsplittable one (a Softmax axis, a normalised group). FLOPs per input element: 8 for a layer or
group norm, 2 for a batch norm (8 for an instance norm), 5 for a softmax, 1 for a reduction.
"""

from __future__ import annotations

import math

from planner.onnx.rules.base import NodeContext, OpSpec, RuleError, axis_names, broadcast_axes, rule, unused

REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum")
ARG_REDUCE_OPS = ("ArgMax", "ArgMin")
NORM_OPS = ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization")
POOL_OPS = ("MaxPool", "AveragePool", "LpPool")
GLOBAL_POOL_OPS = ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")


def _reduced_axes(ctx: NodeContext, rank: int) -> list[int]:
    """The axes a reduction reduces: attribute ``axis``/``axes``, else the axes input, else all."""
    attrs = ctx.attrs
    if ctx.op_type in ARG_REDUCE_OPS:
        axes = [attrs.get("axis", 0)]
    elif "axes" in attrs:
        axes = list(attrs["axes"])
    elif len(ctx.ins) > 1:
        axes = [int(v) for v in ctx.const(ctx.ins[1]).reshape(-1)]
    else:
        axes = [] if attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({a % rank for a in axes}) if rank else []


@rule(*REDUCE_OPS, *ARG_REDUCE_OPS)
def reduce(ctx: NodeContext) -> OpSpec:
    x, y = ctx.in_shapes[0], ctx.out_shapes[0]
    keep = ctx.attrs.get("keepdims", 1)
    axes = _reduced_axes(ctx, len(x))
    names = axis_names(len(x))
    if not axes and ctx.attrs.get("noop_with_empty_axes", 0):
        a = [(n,) for n in names]
        return OpSpec(dict(zip(names, x)), [a] + [[]] * (len(ctx.in_shapes) - 1), [a], 0)
    dims = dict(zip(names, x))
    if keep:
        y_axes = [() if i in axes else (n,) for i, n in enumerate(names)]
    else:
        y_axes = [(n,) for i, n in enumerate(names) if i not in axes]
    if len(y_axes) != len(y):
        raise RuleError("reduced axes do not match the output shape")
    reduced = frozenset(names[i] for i in axes)
    fixed = reduced if ctx.op_type in ARG_REDUCE_OPS else frozenset()
    in_axes = [[(n,) for n in names]] + unused(ctx.in_shapes[1:])
    return OpSpec(dims, in_axes, [y_axes], math.prod(x), reduction=reduced, fixed=fixed)


@rule("TopK")
def top_k(ctx: NodeContext) -> OpSpec:
    """The k largest along an axis (an MoE router): a sort's n log n comparisons per row."""
    x = ctx.in_shapes[0]
    axis = ctx.attrs.get("axis", -1) % len(x)
    names = axis_names(len(x))
    dims = {n: s for i, (n, s) in enumerate(zip(names, x)) if i != axis}
    dims["v"] = x[axis]
    dims["topk"] = ctx.out_shapes[0][axis]
    x_axes = [("v",) if i == axis else (n,) for i, n in enumerate(names)]
    y_axes = [("topk",) if i == axis else (n,) for i, n in enumerate(names)]
    flops = math.prod(x) * max(1, math.ceil(math.log2(max(x[axis], 2))))
    return OpSpec(dims, [x_axes, []], [y_axes, y_axes], flops, fixed=frozenset({"v", "topk"}))


@rule("CumSum")
def cum_sum(ctx: NodeContext) -> OpSpec:
    x = ctx.in_shapes[0]
    axis = int(ctx.const(ctx.ins[1]).reshape(-1)[0]) % len(x)
    names = axis_names(len(x))
    axes = [(n,) for n in names]
    return OpSpec(dict(zip(names, x)), [axes, []], [axes], math.prod(x), fixed=frozenset({names[axis]}))


@rule(*NORM_OPS)
def layer_norm(ctx: NodeContext) -> OpSpec:
    """Normalised over the axes from ``axis`` on: those are unsplittable reductions."""
    x = ctx.in_shapes[0]
    axis = ctx.attrs.get("axis", -1) % len(x)
    names = axis_names(len(x))
    in_axes = [[(n,) for n in names]] + [broadcast_axes(s, names, x) for s in ctx.in_shapes[1:]]
    out_axes = [broadcast_axes(s, names, x) for s in ctx.out_shapes]
    normalised = frozenset(names[axis:])
    return OpSpec(dict(zip(names, x)), in_axes, out_axes, 8 * math.prod(x), fixed=normalised, reduction=normalised)


def _channel_spec(ctx: NodeContext, flops_per_element: int) -> OpSpec:
    """N, C, spatial...: the scale, bias and statistics are indexed by the channel."""
    x = ctx.in_shapes[0]
    names = ["n", "c"] + [f"s{i}" for i in range(len(x) - 2)]
    in_axes = [[(n,) for n in names]] + [[("c",)] for _ in ctx.in_shapes[1:]]
    out_axes = [[(n,) for n in names]] + [[("c",)] for _ in ctx.out_shapes[1:]]
    return OpSpec(dict(zip(names, x)), in_axes, out_axes, flops_per_element * math.prod(x))


@rule("BatchNormalization")
def batch_norm(ctx: NodeContext) -> OpSpec:
    return _channel_spec(ctx, 2)


@rule("InstanceNormalization")
def instance_norm(ctx: NodeContext) -> OpSpec:
    """Normalised over each sample's spatial axes: those may not be split."""
    spec = _channel_spec(ctx, 8)
    spatial = frozenset(d for d in spec.dims if d.startswith("s"))
    return OpSpec(spec.dims, spec.in_axes, spec.out_axes, spec.flops, fixed=spatial)


@rule("GroupNormalization")
def group_norm(ctx: NodeContext) -> OpSpec:
    x = ctx.in_shapes[0]
    names = ["n", "c"] + [f"s{i}" for i in range(len(x) - 2)]
    in_axes = [[(n,) for n in names]] + [[("c",)] for _ in ctx.in_shapes[1:]]
    return OpSpec(dict(zip(names, x)), in_axes, [[(n,) for n in names]], 8 * math.prod(x),
                  fixed=frozenset(names[1:]))


@rule("Softmax", "LogSoftmax")
def softmax(ctx: NodeContext) -> OpSpec:
    """Opset 13 on: one axis (default -1); before: the axes from ``axis`` (default 1) on."""
    x = ctx.in_shapes[0]
    opset = ctx.opset
    axis = ctx.attrs.get("axis", -1 if opset >= 13 else 1) % max(len(x), 1)
    names = axis_names(len(x))
    fixed = frozenset({names[axis]}) if opset >= 13 else frozenset(names[axis:])
    axes = [(n,) for n in names]
    return OpSpec(dict(zip(names, x)), [axes], [axes], 5 * math.prod(x), fixed=fixed)


@rule(*POOL_OPS)
def pool(ctx: NodeContext) -> OpSpec:
    """A window over the spatial axes: one dim per output position, a halo when split."""
    x, y = ctx.in_shapes[0], ctx.out_shapes[0]
    nsp = len(x) - 2
    ks = list(ctx.attrs.get("kernel_shape", [1] * nsp))
    strides = list(ctx.attrs.get("strides", [1] * nsp))
    sp = [f"o{i}" for i in range(nsp)]
    dims = {"n": x[0], "c": x[1], **{s: y[2 + i] for i, s in enumerate(sp)}}
    axes = [("n",), ("c",)] + [(s,) for s in sp]
    halo = {s: max(0, ks[i] - strides[i]) for i, s in enumerate(sp)}
    return OpSpec(dims, [axes], [axes for _ in ctx.out_shapes], math.prod(y) * math.prod(ks), halo=halo,
                  loose_in={0: frozenset(range(2, 2 + nsp))})


@rule(*GLOBAL_POOL_OPS)
def global_pool(ctx: NodeContext) -> OpSpec:
    x = ctx.in_shapes[0]
    sp = [f"s{i}" for i in range(len(x) - 2)]
    dims = {"n": x[0], "c": x[1], **{s: x[2 + i] for i, s in enumerate(sp)}}
    x_axes = [("n",), ("c",)] + [(s,) for s in sp]
    y_axes = [("n",), ("c",)] + [() for _ in sp]
    return OpSpec(dims, [x_axes], [y_axes], math.prod(x), reduction=frozenset(sp))
