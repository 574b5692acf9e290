"""Rules for gathers and scatters: Gather, GatherElements, GatherND, ScatterElements, ScatterND.

They are data movement: 0 FLOPs, priced by the bytes they move (``planner.cost.model``'s
roofline). The gathered or scattered axis is unsplittable, except the vocabulary of an embedding
(a Gather from a weight), which is a COMPUTE operator: a split vocabulary is a masked gather and
an all-reduce.
"""

from __future__ import annotations

from planner.model.graph import OpKind
from planner.onnx.rules.base import NodeContext, OpSpec, RuleError, rule


def axiswise(data, other, axis, prefix):
    """GatherElements / ScatterElements: axes where ``data`` and ``other`` (indices, updates)
    agree, except ``axis``, share a dim; the others get separate unsplittable dims."""
    dims, d_axes, o_axes, fixed = {}, [], [], set()
    for a, (s, t) in enumerate(zip(data, other)):
        if a == axis or s != t:
            dims[f"x{a}"], dims[f"{prefix}{a}"] = s, t
            fixed |= {f"x{a}", f"{prefix}{a}"}
            d_axes.append((f"x{a}",))
            o_axes.append((f"{prefix}{a}",))
        else:
            dims[f"d{a}"] = s
            d_axes.append((f"d{a}",))
            o_axes.append((f"d{a}",))
    return dims, d_axes, o_axes, frozenset(fixed)


@rule("Gather")
def gather(ctx: NodeContext) -> OpSpec:
    """Rows ``v`` of the data picked by the indices, whose axes replace ``v`` in the output."""
    data, idx = ctx.in_shapes
    axis = ctx.attrs.get("axis", 0) % len(data)
    dims = {}
    data_axes, idx_axes, y_axes = [], [], []
    for i, s in enumerate(data):
        name = "v" if i == axis else f"d{i}"
        dims[name] = s
        data_axes.append((name,))
    for j, s in enumerate(idx):
        dims[f"i{j}"] = s
        idx_axes.append((f"i{j}",))
    for i in range(len(data)):
        if i == axis:
            y_axes.extend(idx_axes)
        else:
            y_axes.append((f"d{i}",))
    if ctx.ins[0] in ctx.parameters:  # an embedding: a split vocabulary is a masked gather + all-reduce
        return OpSpec(dims, [data_axes, idx_axes], [y_axes], 0, OpKind.COMPUTE, reduction=frozenset({"v"}))
    return OpSpec(dims, [data_axes, idx_axes], [y_axes], 0, reduction=frozenset({"v"}), fixed=frozenset({"v"}))


@rule("GatherElements")
def gather_elements(ctx: NodeContext) -> OpSpec:
    data, idx = ctx.in_shapes
    dims, d_axes, i_axes, fixed = axiswise(data, idx, ctx.attrs.get("axis", 0) % len(data), "y")
    return OpSpec(dims, [d_axes, i_axes], [i_axes], 0, fixed=fixed)


@rule("ScatterElements")
def scatter_elements(ctx: NodeContext) -> OpSpec:
    """Output = data with updates written along ``axis`` at the indices (MoE gate scatter)."""
    y, idx, upd = ctx.out_shapes[0], ctx.in_shapes[1], ctx.in_shapes[2]
    if not (len(y) == len(idx) == len(upd)):
        raise RuleError("data, indices and updates must have the same rank")
    dims, y_axes, u_axes, fixed = axiswise(y, idx, ctx.attrs.get("axis", 0) % len(y), "u")
    return OpSpec(dims, [y_axes, u_axes, u_axes], [y_axes], 0, fixed=fixed)


@rule("ScatterND")
def scatter_nd(ctx: NodeContext) -> OpSpec:
    """Updates written at the index tuples of the ``k`` leading data axes (those are unsplittable)."""
    y, idx, upd = ctx.out_shapes[0], ctx.in_shapes[1], ctx.in_shapes[2]
    k = idx[-1] if idx else 0
    if not idx or k > len(y) or len(upd) != len(idx) - 1 + len(y) - k:
        raise RuleError("indices and updates do not match the data's rank")
    dims, fixed, y_axes = {}, set(), []
    for a, s in enumerate(y):
        name = f"x{a}" if a < k else f"t{a}"
        dims[name] = s
        y_axes.append((name,))
        if a < k:
            fixed.add(name)
    lead = [f"i{j}" for j in range(len(idx) - 1)]
    dims.update(zip(lead, idx[:-1]))
    dims["last"] = k
    fixed |= set(lead) | {"last"}
    i_axes = [(n,) for n in lead] + [("last",)]
    u_axes = [(n,) for n in lead] + [(f"t{a}",) for a in range(k, len(y))]
    return OpSpec(dims, [y_axes, i_axes, u_axes], [y_axes], 0, fixed=frozenset(fixed))


@rule("GatherND")
def gather_nd(ctx: NodeContext) -> OpSpec:
    """``batch_dims`` shared leading axes, index rows, gathered axes (unsplittable), trailing axes."""
    data, idx = ctx.in_shapes
    bd = ctx.attrs.get("batch_dims", 0)
    k = idx[-1]
    dims = {}
    batch = [f"b{i}" for i in range(bd)]
    dims.update(zip(batch, data[:bd]))
    mid = [f"i{j}" for j in range(len(idx) - 1 - bd)]
    dims.update(zip(mid, idx[bd:-1]))
    gathered = [f"v{j}" for j in range(k)]
    dims.update(zip(gathered, data[bd:bd + k]))
    trailing = [f"t{j}" for j in range(len(data) - bd - k)]
    dims.update(zip(trailing, data[bd + k:]))
    dims["last"] = k
    d_axes = [(n,) for n in batch + gathered + trailing]
    i_axes = [(n,) for n in batch + mid + ["last"]]
    y_axes = [(n,) for n in batch + mid + trailing]
    return OpSpec(dims, [d_axes, i_axes], [y_axes], 0, fixed=frozenset(gathered) | {"last"})
