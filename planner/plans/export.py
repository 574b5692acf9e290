"""Export a plan to the layouts of real engines: PyTorch DTensor, JAX and MindSpore.

A plan gives each operator a strategy: per prime cut of the machine (``Machine.cuts()``,
outermost level first), the dimension it splits there or none. Through the operator's
iteration space (``planner.model.graph``) that fixes, for every tensor the operator reads or writes,
which tensor axis each cut splits. This module turns that into:

* **DTensor** (``format="dtensor"``): a device mesh whose dimensions are the machine's prime cuts
  (``mesh="cuts"``, the default, always expressible) or its levels (``mesh="levels"``, when every
  tensor treats all cuts of a level alike), and for each tensor use its placements, one per
  mesh dimension: ``Shard(axis)``, ``Replicate()`` or, for an operator output that is a partial
  sum before the all-reduce the plan prices, ``Partial()``. A tensor axis split by several cuts
  is ``Shard(axis)`` on each of those mesh dimensions, in cut order (DTensor nests them in mesh
  order, outermost first, as the cost model does). :func:`build_device_mesh` and
  :func:`apply_dtensor_plan` apply the JSON to an ``nn.Module`` (torch is imported only there).
* **JAX** (``format="jax"``): the mesh shape with named axes and a ``PartitionSpec`` per tensor,
  as JSON: one entry per tensor axis, ``null``, an axis name, or a list of names (a tuple in
  the PartitionSpec) when several mesh axes split it. Partial sums are listed as the mesh axes
  to ``psum`` over (``shard_map`` style).
* **MindSpore** (``format="mindspore"``): per operator, the ``shard()`` strategy: for each tensor
  input (constants excluded), the number of slices of each axis, e.g. ``((4, 2), (1, 2))`` for
  a Gemm with ``transB=1`` on 8 devices split 4 on rows and 2 on the contracted dimension.

What the export cannot express it refuses with :class:`ExportError` rather than guess: a split
of a tensor axis that does not fall on contiguous blocks (a cut splitting an inner atomic
factor of an axis before its outer factors are split), or a level-wide mesh where one level's
cuts treat a tensor differently.

Units and names follow the plan JSON (README, "Plan JSON"). No torch import at module level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from planner.cost.model import DEFAULT_BUCKET_MB, CostModel, Strategy
from planner.model.graph import TensorRole
from planner.errors import PlannerError

FORMATS = ("dtensor", "jax", "mindspore")
MESH_MODES = ("cuts", "levels")

REPLICATE = "Replicate()"
PARTIAL = "Partial()"


class ExportError(PlannerError, ValueError):
    """The plan cannot be exported as asked; the message says why and what to do."""


def shard(axis: int) -> str:
    return f"Shard({axis})"


def parse_placement(text: str) -> tuple[str, int | None]:
    """``"Shard(1)"`` -> ``("shard", 1)``; ``"Replicate()"`` -> ``("replicate", None)``; ``"Partial()"``."""
    t = text.strip()
    if t == REPLICATE:
        return "replicate", None
    if t == PARTIAL:
        return "partial", None
    if t.startswith("Shard(") and t.endswith(")"):
        return "shard", int(t[6:-1])
    raise ExportError(f"unknown placement {text!r}: expected Shard(axis), Replicate() or Partial()")


# ---- the mesh -------------------------------------------------------------------------------

@dataclass
class MeshDim:
    name: str
    size: int
    level: int
    level_name: str
    cuts: list[int]  # the prime cuts this mesh dimension covers, in schedule order


def mesh_dims(cm: CostModel, mode: str = "cuts") -> list[MeshDim]:
    """Mesh dimensions, outermost first: one per prime cut, or one per machine level.

    Cut names: the level's name, suffixed with the cut's rank within the level when the level
    has several cuts (``node``, ``gpu0``, ``gpu1`` for 2 x 4).
    """
    if mode not in MESH_MODES:
        raise ExportError(f"mesh must be one of {', '.join(MESH_MODES)}, not {mode!r}")
    per_level: dict[int, list[int]] = {}
    for c in cm.cuts:
        per_level.setdefault(c.level, []).append(c.index)
    if mode == "levels":
        return [MeshDim(_ident(lv.name), lv.arity, i, lv.name, per_level.get(i, []))
                for i, lv in enumerate(cm.machine.levels) if lv.arity > 1]
    dims = []
    for c in cm.cuts:
        siblings = per_level[c.level]
        name = _ident(c.level_name) + (str(siblings.index(c.index)) if len(siblings) > 1 else "")
        dims.append(MeshDim(name, c.factor, c.level, c.level_name, [c.index]))
    names = [d.name for d in dims]
    if len(set(names)) != len(names):  # two levels whose names sanitise alike
        for i, d in enumerate(dims):
            d.name = f"{d.name}_{i}"
    return dims


def _ident(name: str) -> str:
    out = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return out if out and not out[0].isdigit() else f"l_{out}"


# ---- layouts of one operator ------------------------------------------------------------------

@dataclass
class UseLayout:
    """One tensor as one operator holds it, per prime cut.

    ``view_shape`` is set when a split falls on an inner atomic factor of an axis whose outer
    factors stay whole (a fused QKV weight split by heads): the blocks are then strided in the
    tensor's own shape but contiguous once such axes are reshaped into their atomic factors,
    and ``cut_axes`` refer to the axes of that view.
    """

    tensor: str
    is_output: bool
    shape: tuple[int, ...]
    role: str
    requires_grad: bool
    cut_axes: list[int | None]  # per cut: the tensor axis (of the view, if any) it splits, or None
    partial_cuts: list[int]  # outputs: cuts whose split leaves a partial sum; inputs: cuts
    #                          where the op splits a dim this tensor lacks (its gradient is partial)
    view_shape: tuple[int, ...] | None = None

    @property
    def layout_shape(self) -> tuple[int, ...]:
        return self.view_shape or self.shape

    def axis_splits(self, cut_factor: list[int]) -> list[int]:
        out = [1] * len(self.layout_shape)
        for t, a in enumerate(self.cut_axes):
            if a is not None:
                out[a] *= cut_factor[t]
        return out


@dataclass
class OpLayout:
    name: str
    op_type: str
    strategy: Strategy
    inputs: list[UseLayout] = field(default_factory=list)
    outputs: list[UseLayout] = field(default_factory=list)
    reduction_cuts: list[int] = field(default_factory=list)  # cuts splitting a reduction dim


def op_layouts(cm: CostModel, strategies: dict[str, Strategy]) -> dict[str, OpLayout]:
    """Per planned operator (topological order), the layout of each tensor it reads and writes."""
    full = cm.complete(strategies)
    out = {}
    for name in cm.planned:
        info = cm.info[name]
        op = info.op
        s = full[name]
        if cm.assignment(name, s) is None:
            raise ExportError(f"operator {name}: strategy {list(s)} does not divide its dimensions")
        lay = OpLayout(name, op.op_type, s)
        lay.reduction_cuts = [t for t, d in enumerate(s) if d is not None and d in op.reduction_dims]
        for i, use in enumerate(info.uses):
            tensor = cm.graph.tensors[use.tensor]
            flat_axis = _flat_to_axis(tensor.axis_factors)
            layout = cm.layout(name, i, s)
            partial = cm.partial_cuts(name, i, s)
            for t, (dim, f) in enumerate(zip(s, layout)):
                if f >= 0 or dim is None or dim not in use.dims:
                    continue
                if tensor.role is not TensorRole.CONSTANT:
                    raise ExportError(
                        f"operator {name}: cut {t} splits dimension {dim!r}, which indexes tensor "
                        f"{use.tensor!r}, but no axis factor of that tensor carries it; this layout has no "
                        "Shard/Replicate/Partial form")
            strided = _strided_axes(tensor.axis_factors, flat_axis, layout, cm.cut_factor)
            view_shape = None
            if strided:
                view_axis, view_shape = _view(tensor.shape, tensor.axis_factors, strided)
                cut_axes = [None if f < 0 else view_axis[flat_axis[f]] for f in layout]
            else:
                cut_axes = [None if f < 0 else flat_axis[f][0] for f in layout]
            ul = UseLayout(use.tensor, use.is_output, tuple(tensor.shape), tensor.role.value,
                           bool(tensor.requires_grad), cut_axes,
                           partial, view_shape)
            (lay.outputs if use.is_output else lay.inputs).append(ul)
        out[name] = lay
    return out


def _flat_to_axis(axis_factors) -> list[tuple[int, int]]:
    """Flat atomic-factor index -> (tensor axis, index of the factor within that axis)."""
    out = []
    for a, factors in enumerate(axis_factors):
        for k in range(len(factors)):
            out.append((a, k))
    return out


def _strided_axes(axis_factors, flat_axis, layout, cut_factor) -> set[int]:
    """Axes whose split blocks are not contiguous in the tensor's own shape.

    A ``Shard`` / PartitionSpec / MindSpore strategy cuts an axis into contiguous blocks,
    nested in mesh order. The plan's layout matches that iff, in cut order, the cuts consume
    the axis's atomic factors from the outermost one inwards (each factor's own cuts always
    nest in cut order, so splitting the axis into its factors makes any layout contiguous).
    """
    per_axis: dict[int, list[tuple[int, int]]] = {}
    for t, f in enumerate(layout):
        if f >= 0:
            a, k = flat_axis[f]
            per_axis.setdefault(a, []).append((k, cut_factor[t]))
    strided = set()
    for a, seq in per_axis.items():
        factors = list(axis_factors[a])
        j, left = 0, factors[0]
        for k, p in seq:
            while left == 1 and j + 1 < len(factors):
                j += 1
                left = factors[j]
            if k != j or left % p:
                strided.add(a)
                break
            left //= p
    return strided


def _view(shape, axis_factors, strided: set[int]) -> tuple[dict[tuple[int, int], int], tuple[int, ...]]:
    """The view with each strided axis reshaped into its atomic factors: (axis, factor) -> view
    axis, and the view's shape."""
    index: dict[tuple[int, int], int] = {}
    view: list[int] = []
    for a, size in enumerate(shape):
        factors = axis_factors[a] if a < len(axis_factors) else ()
        if a in strided:
            for k, f in enumerate(factors):
                index[(a, k)] = len(view)
                view.append(f)
        else:
            for k in range(len(factors)):
                index[(a, k)] = len(view)
            view.append(size)
    return index, tuple(view)


# ---- the formats -------------------------------------------------------------------------

def _placements(ul: UseLayout, dims: list[MeshDim], *, partial: bool, where: str) -> list[str]:
    """Per mesh dimension: Shard(axis), Replicate() or (outputs as computed) Partial()."""
    out = []
    for md in dims:
        kinds = []
        for t in md.cuts:
            if ul.cut_axes[t] is not None:
                kinds.append(shard(ul.cut_axes[t]))
            elif partial and t in ul.partial_cuts:
                kinds.append(PARTIAL)
            else:
                kinds.append(REPLICATE)
        if len(set(kinds)) > 1:
            raise ExportError(
                f"{where}: tensor {ul.tensor!r} is laid out differently by the cuts of level {md.level_name!r} "
                f"({', '.join(kinds)}); a mesh with one dimension per level cannot express it: export with "
                "mesh='cuts' (--mesh cuts)")
        out.append(kinds[0] if kinds else REPLICATE)
    return out


def _grad_placements(ul: UseLayout, dims: list[MeshDim]) -> list[str] | None:
    if not ul.partial_cuts:
        return None
    out = []
    for md in dims:
        kinds = {shard(ul.cut_axes[t]) if ul.cut_axes[t] is not None
                 else PARTIAL if t in ul.partial_cuts else REPLICATE for t in md.cuts}
        out.append(kinds.pop() if len(kinds) == 1 else PARTIAL)
    return out


def _spec(ul: UseLayout, dims: list[MeshDim]) -> list:
    """JAX PartitionSpec entries: per tensor axis None, an axis name, or a list of names."""
    names: list[list[str]] = [[] for _ in ul.layout_shape]
    for md in dims:
        axes = {ul.cut_axes[t] for t in md.cuts}
        for a in axes:
            if a is not None and md.name not in names[a]:
                names[a].append(md.name)
    return [None if not n else n[0] if len(n) == 1 else list(n) for n in names]


def _psum_axes(ul: UseLayout, dims: list[MeshDim]) -> list[str]:
    return [md.name for md in dims if any(t in ul.partial_cuts for t in md.cuts)]


def _strategy_tuple(ul: UseLayout, cut_factor: list[int]) -> list[int]:
    return ul.axis_splits(cut_factor)


def tuple_literal(strategy: list[list[int]]) -> str:
    """``[[4, 2], [1, 2]]`` -> ``"((4, 2), (1, 2))"`` (Python tuples, as MindSpore's shard() takes)."""
    def one(t):
        return "(" + ", ".join(str(x) for x in t) + ("," if len(t) == 1 else "") + ")"
    return "(" + ", ".join(one(t) for t in strategy) + ("," if len(strategy) == 1 else "") + ")"


def export_strategies(cm: CostModel, strategies: dict[str, Strategy], fmt: str = "dtensor",
                      mesh: str = "cuts", meta: dict | None = None) -> dict:
    """Export a plan given as strategies on a cost model (the library entry point)."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    layouts = op_layouts(cm, strategies)
    dims = mesh_dims(cm, mesh if fmt != "mindspore" else "cuts")
    head = {
        "format": fmt,
        **(meta or {}),
        "mode": cm.mode,
        "devices": cm.machine.num_devices,
        "cuts": [[c.level_name, c.factor] for c in cm.cuts],
    }
    notes: list[str] = []
    if fmt == "mindspore":
        return {**head, **_mindspore(cm, layouts, notes), "notes": notes}
    head["mesh"] = {
        "dims_are": mesh,
        "shape": [d.size for d in dims],
        ("axis_names" if fmt == "jax" else "dim_names"): [d.name for d in dims],
        "levels": [d.level_name for d in dims],
        "cuts": [d.cuts for d in dims],
    }
    body = _dtensor(cm, layouts, dims, notes) if fmt == "dtensor" else _jax(cm, layouts, dims, notes)
    return {**head, **body, "notes": notes}


def _tensor_table(cm: CostModel, layouts: dict[str, OpLayout], dims, render, notes) -> dict:
    """Parameters and graph inputs as their (first) consumer reads them; activations as their
    producer leaves them, after the all-reduce of any partial sum."""
    table: dict[str, dict] = {}
    seen_by: dict[str, dict[str, object]] = {}
    for lay in layouts.values():
        for ul in lay.outputs:
            if ul.role == TensorRole.ACTIVATION.value:
                table[ul.tensor] = {"shape": list(ul.shape), "role": ul.role, "producer": lay.name,
                                    **_view_entry(ul), **render(ul, f"operator {lay.name}")}
        for ul in lay.inputs:
            if ul.role not in (TensorRole.PARAMETER.value, TensorRole.INPUT.value):
                continue
            r = {**_view_entry(ul), **render(ul, f"operator {lay.name}")}
            seen_by.setdefault(ul.tensor, {})[lay.name] = r
            if ul.tensor not in table:
                table[ul.tensor] = {"shape": list(ul.shape), "role": ul.role, "consumer": lay.name, **r}
    for tensor, views in seen_by.items():
        if len({repr(v) for v in views.values()}) > 1:
            table[tensor]["consumers"] = views
            notes.append(f"{tensor} is read in {len(set(repr(v) for v in views.values()))} different layouts "
                         f"(by {', '.join(views)}); the table gives the first, 'consumers' lists all")
    return table


def _view_entry(ul: UseLayout) -> dict:
    return {"view_shape": list(ul.view_shape)} if ul.view_shape else {}


def _views(ins: list[UseLayout], outs: list[UseLayout]) -> dict:
    """``in_view_shapes`` / ``out_view_shapes`` when any tensor of the operator needs a view."""
    out = {}
    if any(ul.view_shape for ul in ins):
        out["in_view_shapes"] = [list(ul.view_shape) if ul.view_shape else None for ul in ins]
    if any(ul.view_shape for ul in outs):
        out["out_view_shapes"] = [list(ul.view_shape) if ul.view_shape else None for ul in outs]
    return out


def _dtensor(cm, layouts, dims, notes) -> dict:
    def render(ul, where):
        return {"placements": _placements(ul, dims, partial=False, where=where)}

    ops = []
    for lay in layouts.values():
        where = f"operator {lay.name}"
        ins = []
        for ul in lay.inputs:
            if ul.role == TensorRole.CONSTANT.value:
                continue
            entry = {"tensor": ul.tensor, **_view_entry(ul),
                     "placements": _placements(ul, dims, partial=False, where=where)}
            g = _grad_placements(ul, dims)
            if g is not None:
                entry["grad_placements"] = g  # the local gradient before the plan's all-reduce
            ins.append(entry)
        outs = [{"tensor": ul.tensor, **_view_entry(ul),
                 "placements": _placements(ul, dims, partial=True, where=where),
                 "placements_after_reduce": _placements(ul, dims, partial=False, where=where)}
                for ul in lay.outputs]
        ops.append({"name": lay.name, "op_type": lay.op_type, "strategy": list(lay.strategy),
                    "inputs": ins, "outputs": outs})
    return {"tensors": _tensor_table(cm, layouts, dims, render, notes), "ops": ops}


def _jax(cm, layouts, dims, notes) -> dict:
    def render(ul, where):
        return {"partition_spec": _spec(ul, dims)}

    ops = []
    for lay in layouts.values():
        ins = [ul for ul in lay.inputs if ul.role != TensorRole.CONSTANT.value]
        ops.append({
            "name": lay.name, "op_type": lay.op_type, "strategy": list(lay.strategy),
            "inputs": [ul.tensor for ul in ins],
            "in_specs": [_spec(ul, dims) for ul in ins],
            "outputs": [ul.tensor for ul in lay.outputs],
            "out_specs": [_spec(ul, dims) for ul in lay.outputs],
            "psum_axes": [_psum_axes(ul, dims) for ul in lay.outputs],
            **_views(ins, lay.outputs),
        })
    return {"tensors": _tensor_table(cm, layouts, dims, render, notes), "ops": ops}


def _mindspore(cm, layouts, notes) -> dict:
    ops = []
    for lay in layouts.values():
        ins = [ul for ul in lay.inputs if ul.role != TensorRole.CONSTANT.value]
        strategy = [_strategy_tuple(ul, cm.cut_factor) for ul in ins]
        for ul, st in zip(ins, strategy):
            if cm.machine.num_devices % math.prod(st or [1]):
                raise ExportError(f"operator {lay.name}: strategy {st} for {ul.tensor} does not divide the devices")
        entry = {"name": lay.name, "op_type": lay.op_type, "strategy": list(lay.strategy),
                 "inputs": [ul.tensor for ul in ins], "in_strategy": strategy,
                 "shard": tuple_literal(strategy), **_views(ins, [])}
        partial = sorted({t for ul in lay.outputs for t in ul.partial_cuts})
        if partial:
            entry["output_all_reduce_devices"] = math.prod(cm.cut_factor[t] for t in partial)
        ops.append(entry)
    if any("in_view_shapes" in op for op in ops):
        notes.append("where an operator lists in_view_shapes, a split falls on an inner factor of an axis (a "
                     "fused weight split by heads): reshape that input to its view shape first; the strategy "
                     "is given on the view")
    notes.append("in_strategy lists tensor inputs only (constants such as a Reshape's shape are "
                 "attributes in MindSpore); it gives slice counts, not which machine level each split uses "
                 "(see 'cuts' and each op's 'strategy')")
    return {"device_num": cm.machine.num_devices, "ops": ops}


# ---- from a plan file --------------------------------------------------------------------

def cost_model_from_plan(plan: dict, graph, bucket_mb: float | None = None
                         ) -> tuple[CostModel, dict[str, Strategy], list[str]]:
    """The cost model and strategies a plan JSON (``plan --json``) describes, on its model's graph."""
    from planner.api import PlanOptions, cost_model_for, strategies_from_json
    from planner.machine.tree import Machine
    from planner.search.vocab import pad_as_recorded

    if not isinstance(plan, dict) or "machine" not in plan or not isinstance(plan.get("ops"), list):
        raise ExportError('a plan file must be the JSON of "python -m planner plan --json": it needs '
                          '"machine" and "ops"')
    # a pipelined plan's layouts are for one stage's devices and one micro-batch
    machine = Machine.from_dict(plan.get("stage_machine") or plan["machine"])
    pipeline = plan.get("pipeline") if isinstance(plan.get("pipeline"), dict) else {}
    if (pipeline.get("micro_batches") or 1) > 1 and isinstance(pipeline.get("micro_batch_size"), int):
        graph = graph.with_batch(pipeline["micro_batch_size"])
    graph = pad_as_recorded(graph, plan)  # Megatron's padded vocabulary, as the plan was priced
    opts = plan.get("options") or {}
    bucket = opts.get("bucket_mb", DEFAULT_BUCKET_MB) if bucket_mb is None else bucket_mb
    options = PlanOptions(mode=plan.get("mode", opts.get("mode", "train")), precision=opts.get("precision"),
                          bucket_mb=bucket)
    cm = cost_model_for(graph, machine, options)
    strategies, notes = strategies_from_json(cm, plan)
    if (pipeline.get("stages") or 1) > 1:
        notes.insert(0, f"a {pipeline['stages']}-stage pipeline: the layouts are for the devices of one stage "
                        f"({machine.num_devices}) and one micro-batch; stage_of_op says which stage runs each operator")
    return cm, strategies, notes


def export_plan(plan: dict, graph, fmt: str = "dtensor", mesh: str = "cuts", bucket_mb: float | None = None) -> dict:
    """Export a plan JSON (as written by ``plan --json``) for the model it was made for;
    ``gradient_bucket_mb`` is the bucket the plan was priced with (``bucket_mb`` overrides it):
    PyTorch DDP's ``bucket_cap_mb``."""
    cm, strategies, notes = cost_model_from_plan(plan, graph, bucket_mb)
    meta = {"model": plan.get("model", graph.name), "algorithm": plan.get("algorithm")}
    out = export_strategies(cm, strategies, fmt, mesh, meta)
    out["notes"] = notes + out["notes"]
    out["gradient_bucket_mb"] = cm.bucket_bytes / 1e6
    pipeline = plan.get("pipeline") if isinstance(plan.get("pipeline"), dict) else {}
    if (pipeline.get("stages") or 1) > 1:
        out["stage_of_op"] = pipeline.get("stage_of_op", {})
    return out


def find_model(plan: dict, plan_path: str | Path | None = None) -> Path | None:
    """The ONNX file a plan names: as given, next to the plan file, or in sample_models/."""
    name = plan.get("model") if isinstance(plan, dict) else None
    if not isinstance(name, str) or not name:
        return None
    candidates = [Path(name)]
    if plan_path is not None:
        candidates.append(Path(plan_path).resolve().parent / name)
    candidates.append(Path(__file__).resolve().parents[2] / "sample_models" / Path(name).name)
    for c in candidates:
        if c.is_file():
            return c
    return None


# ---- applying a DTensor export (torch imported here only) -----------------------------------

def to_placements(texts: list[str]):
    """JSON placement strings -> ``torch.distributed.tensor`` placement objects."""
    from torch.distributed.tensor import Partial, Replicate, Shard

    out = []
    for t in texts:
        kind, axis = parse_placement(t)
        out.append(Shard(axis) if kind == "shard" else Replicate() if kind == "replicate" else Partial())
    return out


def build_device_mesh(plan_export: dict, device_type: str = "cpu"):
    """``init_device_mesh`` with the export's mesh shape and dimension names (the world size must
    equal the number of devices the plan was made for)."""
    from torch.distributed.device_mesh import init_device_mesh

    m = plan_export["mesh"]
    return init_device_mesh(device_type, tuple(m["shape"]), mesh_dim_names=tuple(m["dim_names"]))


def apply_dtensor_plan(module, plan_export: dict, mesh, *, name_map: dict[str, str] | None = None,
                       src_data_rank: int | None = 0) -> dict[str, list[str]]:
    """Distribute ``module``'s parameters with the placements of a DTensor export, in place.

    A parameter is matched to an ONNX initializer by its ``named_parameters()`` name (what
    ``torch.onnx.export`` names the initializer of a parameter it uses as is) or through
    ``name_map`` {parameter name: initializer name}. Each match becomes an ``nn.Parameter``
    holding a ``DTensor`` with the export's placements (``distribute_tensor``; with
    ``src_data_rank=None`` every rank keeps its own copy's shard, with no communication).
    Returns ``{"distributed": [...], "replicated": [...]}``: parameters the plan lays out, and the
    others (left as they were: the plan does not know them).
    """
    import torch
    from torch.distributed.tensor import distribute_tensor

    if plan_export.get("format") != "dtensor":
        raise ExportError("apply_dtensor_plan needs a DTensor export (format 'dtensor')")
    if tuple(mesh.shape) != tuple(plan_export["mesh"]["shape"]):
        raise ExportError(f"the mesh has shape {tuple(mesh.shape)} but the plan's mesh is "
                          f"{tuple(plan_export['mesh']['shape'])}")
    tensors = plan_export["tensors"]
    done, other = [], []
    for pname, param in list(module.named_parameters()):
        key = (name_map or {}).get(pname, pname)
        entry = tensors.get(key)
        if entry is None or entry.get("role") != TensorRole.PARAMETER.value:
            other.append(pname)
            continue
        if entry.get("view_shape"):
            raise ExportError(f"parameter {pname}: the plan splits an inner factor of one of its axes (blocks "
                              f"strided in its shape, contiguous in the view {entry['view_shape']}); a DTensor "
                              "parameter cannot hold that layout: split the fused weight into separate parameters")
        if list(param.shape) != list(entry["shape"]):
            raise ExportError(f"parameter {pname} has shape {list(param.shape)} but initializer {key} has "
                              f"{entry['shape']}")
        dt = distribute_tensor(param.detach(), mesh, to_placements(entry["placements"]), src_data_rank=src_data_rank)
        owner = module
        *path, leaf = pname.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, leaf, torch.nn.Parameter(dt, requires_grad=param.requires_grad))
        done.append(pname)
    return {"distributed": done, "replicated": other}

