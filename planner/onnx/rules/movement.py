"""Rules for shape and data movement: Reshape/Flatten/Squeeze/Unsqueeze, Transpose, Concat,
Split, Slice/Pad/Tile, and the value sources (ConstantOfShape, Range, EyeLike, random tensors).

None of them computes (0 FLOPs; a copy is priced by the bytes it moves). A reshape expresses both
sides over shared atomic factors so a split flows through it; an axis whose size changes
(concatenated, sliced, padded) gets unsplittable dims.
"""

from __future__ import annotations

import math
from dataclasses import replace

from planner.model.graph import OpKind, common_refinement
from planner.onnx.rules.base import NodeContext, OpSpec, RuleError, Static, axis_names, opaque_spec, rule, unused

SOURCE_OPS = ("ConstantOfShape", "Range", "RandomNormal", "RandomUniform", "EyeLike")


def _distribute(names, refined, group_axes, shape, axes_out):
    """Hand the atomic factors of one reshape group to the axes of one side, in order."""
    pos = 0
    for a in group_axes:
        size, acc = shape[a], 1
        while acc < size:
            acc *= refined[pos]
            axes_out[a].append(names[pos])
            pos += 1


def _groups(x, y):
    """The non-1 axes of both sides matched into groups of equal product, in order."""
    xi = [a for a, s in enumerate(x) if s != 1]
    yj = [b for b, s in enumerate(y) if s != 1]
    i = j = 0
    while i < len(xi) and j < len(yj):
        gi, gj = [xi[i]], [yj[j]]
        pi, pj = x[xi[i]], y[yj[j]]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                gi.append(xi[i]); pi *= x[xi[i]]; i += 1
            else:
                gj.append(yj[j]); pj *= y[yj[j]]; j += 1
        yield gi, gj


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(ctx: NodeContext) -> OpSpec:
    """Match axes into groups of equal product.

    Within a group both sides are expressed over shared atomic factors (so [b*s, h] ->
    [b, s, h] gives dims b, s, h with the input's first axis indexed by (b, s)). A group
    with no common refinement ((6, 4) -> (4, 6)) gets separate, unsplittable dims.
    """
    x, y = ctx.in_shapes[0], ctx.out_shapes[0]
    if 0 in x or math.prod(x) != math.prod(y):
        raise RuleError(f"cannot match reshape {x} -> {y}")
    dims, fixed = {}, set()
    x_axes: list[list[str]] = [[] for _ in x]
    y_axes: list[list[str]] = [[] for _ in y]
    for group, (gi, gj) in enumerate(_groups(x, y)):
        refined = common_refinement(tuple(x[a] for a in gi), tuple(y[b] for b in gj))
        if refined is None:
            for a in gi:
                dims[f"x{a}"] = x[a]; fixed.add(f"x{a}"); x_axes[a] = [f"x{a}"]
            for b in gj:
                dims[f"y{b}"] = y[b]; fixed.add(f"y{b}"); y_axes[b] = [f"y{b}"]
        else:
            names = [f"f{group}_{k}" for k in range(len(refined))]
            dims.update(zip(names, refined))
            _distribute(names, refined, gi, x, x_axes)
            _distribute(names, refined, gj, y, y_axes)
    in_axes = [[tuple(a) for a in x_axes]] + unused(ctx.in_shapes[1:])
    return OpSpec(dims, in_axes, [[tuple(a) for a in y_axes]], 0, fixed=frozenset(fixed))


@rule("Transpose")
def transpose(ctx: NodeContext) -> OpSpec:
    x = ctx.in_shapes[0]
    perm = list(ctx.attrs.get("perm", list(range(len(x)))[::-1]))
    names = axis_names(len(x))
    return OpSpec(dict(zip(names, x)), [[(n,) for n in names]], [[(names[p],) for p in perm]], 0)


@rule("Concat")
def concat(ctx: NodeContext) -> OpSpec:
    y = ctx.out_shapes[0]
    axis = ctx.attrs["axis"] % len(y)
    names = axis_names(len(y))
    dims = {n: s for i, (n, s) in enumerate(zip(names, y)) if i != axis}
    dims["cat"] = y[axis]
    in_axes = []
    for k, s in enumerate(ctx.in_shapes):
        dims[f"cat{k}"] = s[axis]
        in_axes.append([(f"cat{k}",) if i == axis else (names[i],) for i in range(len(s))])
    y_axes = [("cat",) if i == axis else (n,) for i, n in enumerate(names)]
    fixed = {"cat"} | {f"cat{k}" for k in range(len(ctx.in_shapes))}
    return OpSpec(dims, in_axes, [y_axes], 0, fixed=frozenset(fixed))


@rule("Split")
def split(ctx: NodeContext) -> OpSpec:
    """Equal parts make the axis (parts, part), so a split of the part flows through (a fused QKV)."""
    x = ctx.in_shapes[0]
    axis = ctx.attrs.get("axis", 0) % len(x)
    names = axis_names(len(x))
    dims = {n: s for i, (n, s) in enumerate(zip(names, x)) if i != axis}
    sizes = [s[axis] for s in ctx.out_shapes]
    extra_in = [[] for _ in ctx.in_shapes[1:]]
    if len(set(sizes)) == 1 and sizes[0] > 1 and len(sizes) > 1:
        dims["parts"] = len(sizes)
        dims["part"] = sizes[0]
        x_axes = [("parts", "part") if i == axis else (n,) for i, n in enumerate(names)]
        y_axes = [("part",) if i == axis else (n,) for i, n in enumerate(names)]
        return OpSpec(dims, [x_axes] + extra_in, [y_axes for _ in ctx.out_shapes], 0, fixed=frozenset({"parts"}))
    dims["whole"] = x[axis]
    x_axes = [("whole",) if i == axis else (n,) for i, n in enumerate(names)]
    out_axes = []
    for k, s in enumerate(sizes):
        dims[f"part{k}"] = s
        out_axes.append([(f"part{k}",) if i == axis else (n,) for i, n in enumerate(names)])
    fixed = {"whole"} | {f"part{k}" for k in range(len(sizes))}
    return OpSpec(dims, [x_axes] + extra_in, out_axes, 0, fixed=frozenset(fixed))


@rule("Slice", "Pad", "Tile")
def axis_slice(ctx: NodeContext) -> OpSpec:
    """Axes whose size changes get separate, unsplittable dims."""
    x, y = ctx.in_shapes[0], ctx.out_shapes[0]
    dims, x_axes, y_axes, fixed = {}, [], [], set()
    for i, (a, b) in enumerate(zip(x, y)):
        if a == b:
            dims[f"d{i}"] = a
            x_axes.append((f"d{i}",)); y_axes.append((f"d{i}",))
        else:
            dims[f"x{i}"] = a; dims[f"y{i}"] = b
            fixed |= {f"x{i}", f"y{i}"}
            x_axes.append((f"x{i}",)); y_axes.append((f"y{i}",))
    return OpSpec(dims, [x_axes] + unused(ctx.in_shapes[1:]), [y_axes], 0, fixed=frozenset(fixed))


@rule(*SOURCE_OPS, static=Static.SOURCE)
def source(ctx: NodeContext) -> OpSpec:
    """A tensor made from a shape (static unless the shape depends on data): replicated, following."""
    spec = opaque_spec([], ctx.out_shapes, OpKind.FOLLOW)
    return replace(spec, in_axes=unused(ctx.in_shapes))
