"""Rules for the operators that decide layouts: MatMul, Gemm, Conv, ConvTranspose, Einsum.

Each is a COMPUTE operator: a contraction whose reduced dims (``k``, input channels, kernel
taps, Einsum's summed letters) make the outputs partial sums when split. FLOPs are 2 per
multiply-add (a one-operand Einsum counts 1 per element of its iteration space).
"""

from __future__ import annotations

import math
import string

from planner.model.graph import OpKind
from planner.onnx.rules.base import NodeContext, OpSpec, RuleError, broadcast_axes, rule


@rule("MatMul")
def matmul(ctx: NodeContext) -> OpSpec:
    """Batched matrix product with numpy broadcasting; a rank-1 operand has no m (or n)."""
    a, b = ctx.in_shapes
    if len(a) == 0 or len(b) == 0:
        raise RuleError("MatMul of a scalar")
    m_present, n_present = len(a) >= 2, len(b) >= 2
    k = a[-1]
    if (b[-2] if n_present else b[0]) != k:
        raise RuleError(f"inner dimensions differ: {a} x {b}")
    m = a[-2] if m_present else 1
    n = b[-1] if n_present else 1
    a_batch = a[:-2] if m_present else ()
    b_batch = b[:-2] if n_present else ()
    out = ctx.out_shapes[0]
    rank_batch = max(len(a_batch), len(b_batch))
    batch_names = [f"b{i}" for i in range(rank_batch)]
    batch_sizes = list(out[:rank_batch])
    dims = dict(zip(batch_names, batch_sizes))
    if m_present:
        dims["m"] = m
    if n_present:
        dims["n"] = n
    dims["k"] = k
    m_axis = [("m",)] if m_present else []
    n_axis = [("n",)] if n_present else []
    a_axes = broadcast_axes(a_batch, batch_names, batch_sizes) + m_axis + [("k",)]
    b_axes = broadcast_axes(b_batch, batch_names, batch_sizes) + [("k",)] + n_axis
    y_axes = [(b,) for b in batch_names] + m_axis + n_axis
    flops = 2 * math.prod(batch_sizes) * m * n * k
    return OpSpec(dims, [a_axes, b_axes], [y_axes], flops, OpKind.COMPUTE, reduction=frozenset({"k"}))


@rule("Gemm")
def gemm(ctx: NodeContext) -> OpSpec:
    """``alpha * op(A) @ op(B) + beta * C`` with op a transpose when transA/transB is set."""
    a, b = ctx.in_shapes[0], ctx.in_shapes[1]
    ta, tb = ctx.attrs.get("transA", 0), ctx.attrs.get("transB", 0)
    m, k = (a[1], a[0]) if ta else (a[0], a[1])
    n = b[0] if tb else b[1]
    dims = {"m": m, "n": n, "k": k}
    a_axes = [("k",), ("m",)] if ta else [("m",), ("k",)]
    b_axes = [("n",), ("k",)] if tb else [("k",), ("n",)]
    in_axes = [a_axes, b_axes]
    if len(ctx.in_shapes) > 2:
        in_axes.append(broadcast_axes(ctx.in_shapes[2], ["m", "n"], (m, n)))
    return OpSpec(dims, in_axes, [[("m",), ("n",)]], 2 * m * n * k, OpKind.COMPUTE, reduction=frozenset({"k"}))


def conv_dims(batch, group, ic, oc, spatial_prefix, spatial, kernel):
    """The iteration space shared by Conv and ConvTranspose: n, (g,) channels per group, one dim
    per spatial axis (``o*`` for a convolution's output, ``i*`` for a transposed one's input) and
    one per kernel axis. Returns dims and the axis tuples of the input and output channels."""
    dims = {"n": batch}
    ch_in, ch_out = ("ic",), ("oc",)
    if group > 1:
        dims["g"] = group
        ch_in, ch_out = ("g", "ic"), ("g", "oc")
    sp = [f"{spatial_prefix}{i}" for i in range(len(spatial))]
    kr = [f"r{i}" for i in range(len(kernel))]
    dims.update(oc=oc, ic=ic)
    dims.update(zip(sp, spatial))
    dims.update(zip(kr, kernel))
    return dims, ch_in, ch_out, sp, kr


@rule("Conv")
def conv(ctx: NodeContext) -> OpSpec:
    """A grouped, strided, dilated convolution; a split spatial dim fetches a halo of input rows."""
    x, w = ctx.in_shapes[0], ctx.in_shapes[1]
    y = ctx.out_shapes[0]
    group = int(ctx.attrs.get("group", 1))
    nsp = len(x) - 2
    strides = list(ctx.attrs.get("strides", [1] * nsp))
    dilations = list(ctx.attrs.get("dilations", [1] * nsp))
    ks = list(w[2:])
    c_per_group = w[1]
    dims, ch_in, ch_out, sp, kr = conv_dims(x[0], group, c_per_group, w[0] // group, "o", y[2:], ks)
    halo = {sp[i]: max(0, (ks[i] - 1) * dilations[i] + 1 - strides[i]) for i in range(nsp)}
    x_axes = [("n",), ch_in] + [(s,) for s in sp]
    w_axes = [ch_out, ("ic",)] + [(r,) for r in kr]
    y_axes = [("n",), ch_out] + [(s,) for s in sp]
    in_axes = [x_axes, w_axes] + ([[ch_out]] if len(ctx.in_shapes) > 2 else [])
    flops = 2 * x[0] * w[0] * math.prod(y[2:]) * c_per_group * math.prod(ks)
    return OpSpec(dims, in_axes, [y_axes], flops, OpKind.COMPUTE, reduction=frozenset({"ic", *kr}),
                  fixed=frozenset(kr), halo=halo, loose_in={0: frozenset(range(2, 2 + nsp))})


@rule("ConvTranspose")
def conv_transpose(ctx: NodeContext) -> OpSpec:
    """A transposed convolution over its input's spatial positions (the output's are loose)."""
    x, w = ctx.in_shapes[0], ctx.in_shapes[1]
    group = int(ctx.attrs.get("group", 1))
    nsp = len(x) - 2
    ks = list(w[2:])
    dims, ch_in, ch_out, sp, kr = conv_dims(x[0], group, x[1] // group, w[1], "i", x[2:], ks)
    x_axes = [("n",), ch_in] + [(s,) for s in sp]
    w_axes = [ch_in, ("oc",)] + [(r,) for r in kr]
    y_axes = [("n",), ch_out] + [(s,) for s in sp]
    in_axes = [x_axes, w_axes] + ([[ch_out]] if len(ctx.in_shapes) > 2 else [])
    flops = 2 * x[0] * x[1] * math.prod(x[2:]) * w[1] * math.prod(ks)
    halo = {s: max(0, k - 1) for s, k in zip(sp, ks)}
    return OpSpec(dims, in_axes, [y_axes], flops, OpKind.COMPUTE, reduction=frozenset({"ic", *kr}),
                  fixed=frozenset(kr), halo=halo, loose_out={0: frozenset(range(2, 2 + nsp))})


def _einsum_terms(equation: str, in_shapes) -> tuple[list[str], str]:
    """The equation's input terms and output with ``...`` replaced by spare capital letters."""
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(in_shapes):
        raise RuleError("equation does not match the number of inputs")
    spare = [c for c in string.ascii_uppercase if c not in equation]
    ell_rank = max((len(s) - (len(t) - 3) for t, s in zip(terms, in_shapes) if "..." in t), default=0)
    ell = "".join(spare[:ell_rank])
    expanded = []
    for t, s in zip(terms, in_shapes):
        if "..." in t:
            n = len(s) - (len(t) - 3)
            t = t.replace("...", ell[ell_rank - n:])
        expanded.append(t)
    if "->" in equation:
        out = rhs.replace("...", ell)
    else:
        letters = "".join(expanded)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
    return expanded, out


@rule("Einsum")
def einsum(ctx: NodeContext) -> OpSpec:
    """One dim per letter; letters absent from the output are reductions."""
    equation = ctx.attrs["equation"]
    if isinstance(equation, bytes):
        equation = equation.decode()
    expanded, out = _einsum_terms(equation.replace(" ", ""), ctx.in_shapes)
    dims: dict[str, int] = {}
    for t, s in zip(expanded, ctx.in_shapes):
        for c, size in zip(t, s):
            dims[c] = max(dims.get(c, 1), size)
    in_axes = [[(c,) if size == dims[c] else () for c, size in zip(t, s)] for t, s in zip(expanded, ctx.in_shapes)]
    reduction = frozenset(c for c in dims if c not in out)
    flops = (2 if len(ctx.in_shapes) > 1 else 1) * math.prod(dims.values())
    return OpSpec(dims, in_axes, [[(c,) for c in out]], flops, OpKind.COMPUTE, reduction=reduction)
