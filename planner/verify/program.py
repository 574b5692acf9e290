"""The program the workers execute, built in the parent as plain data, and what the cost model
predicts for it.

:func:`prepare` does everything the parent does for one (model, plan, processes) run: it
exports the model to ONNX, imports and plans it on
:func:`~planner.verify.models.verification_machine` (or reads a plan written by hand), exports
the plan to DTensor placements (:mod:`planner.plans.export`), builds the program
(:func:`build_program`: per planned operator in ONNX order, its type, attributes, and for each
input and output the placements and the redistribution moves of :mod:`planner.verify.moves`,
forward and backward), the bytes per device the cost model predicts per operator
(:func:`predicted_bytes`) and the single-process reference step.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.model.graph import TensorRole
from planner.plans.export import PARTIAL, REPLICATE, OpLayout, export_strategies, mesh_dims, op_layouts, shard
from planner.verify.base import VerificationError
from planner.verify.models import build_model, export_onnx, reference_step, verification_machine
from planner.verify.moves import local_shape, plan_moves, reduce_moves


@dataclass
class RunContext:
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


def build_program(cm, strategies, model_proto, layouts: dict[str, OpLayout] | None = None) -> dict:
    """The step the workers execute: per planned operator (ONNX order), its ONNX type and
    attributes, and for each input and output the placements and the redistributions."""
    from planner.onnx.load import operator_names

    layouts = layouts or op_layouts(cm, strategies)
    dims = mesh_dims(cm, "cuts")
    sizes = [d.size for d in dims]
    levels = [d.level for d in dims]
    nodes = {name: node for node, name in zip(model_proto.graph.node, operator_names(model_proto.graph.node))}
    constants = static_constants(cm, model_proto)
    post_of: dict[str, list[str]] = {}
    steps = [_step(name, layouts[name], nodes[name], post_of, sizes, levels) for name in cm.planned]
    graph_out = cm.graph.outputs[0]
    return {"mesh_shape": sizes, "mesh_dim_names": [d.name for d in dims], "mesh_levels": levels,
            "constants": constants, "steps": steps, "output": graph_out, "output_placements": post_of[graph_out],
            "input": cm.graph.inputs[0]}


def static_constants(cm, model_proto) -> dict:
    """The value of every tensor that does not depend on the input: the graph's constant
    initializers and every node the plan does not run, evaluated in ONNX order under the
    importer's guard (:data:`~planner.onnx.guard.VERIFY_MAX_ELEMENTS`)."""
    import numpy as np

    from planner.onnx.guard import VERIFY_MAX_ELEMENTS, evaluation_allowed
    from planner.onnx.load import operator_names
    from planner.onnx.shapes import _evaluate, opset_of

    constants: dict[str, np.ndarray] = {}
    for init in model_proto.graph.initializer:
        if cm.graph.tensors.get(init.name) is not None and cm.graph.tensors[init.name].role is TensorRole.CONSTANT:
            constants[init.name] = _gated(init, init.name)
    planned = set(cm.planned)
    opset = opset_of(model_proto)
    for node, name in zip(model_proto.graph.node, operator_names(model_proto.graph.node)):
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
    return constants


def _gated(tensor, where):
    """A constant's values, if the file stores them and they are small enough to evaluate."""
    from planner.onnx.guard import VERIFY_MAX_ELEMENTS, tensor_values

    value = tensor_values(tensor, VERIFY_MAX_ELEMENTS)
    if value is None:
        raise VerificationError(f"the constant of {where} is not stored in the file or has more than "
                                f"{VERIFY_MAX_ELEMENTS:,} elements: it cannot be evaluated")
    return value


def _placements(ul, partial: bool, n_dims: int) -> list[str]:
    """A tensor's placements per mesh dim; ``partial``: as computed (before partial sums are reduced)."""
    return [shard(ul.cut_axes[t]) if ul.cut_axes[t] is not None
            else PARTIAL if partial and t in ul.partial_cuts else REPLICATE for t in range(n_dims)]


def _step(name: str, lay: OpLayout, node, post_of: dict[str, list[str]], sizes: list[int], levels: list[int]) -> dict:
    """One operator of the program; records where its outputs are left in ``post_of``."""
    import onnx

    for ul in lay.inputs + lay.outputs:
        if ul.view_shape:
            raise VerificationError(f"operator {name}: {ul.tensor} is split on an inner factor of an axis "
                                    "(strided blocks); the verification executor does not run such layouts")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()
             if isinstance(v, (int, float, bytes, str, list))}
    ins = [_input(ul, post_of, sizes, levels) for ul in lay.inputs]
    outs = []
    for ul in lay.outputs:
        computed, post = _placements(ul, True, len(sizes)), _placements(ul, False, len(sizes))
        post_of[ul.tensor] = post
        outs.append({"tensor": ul.tensor, "computed": computed, "post": post, "shape": list(ul.shape),
                     "local_shape": local_shape(ul.shape, computed, sizes),
                     "fwd": reduce_moves(computed, post, ul.shape, sizes, levels)})
    return {"op": name, "op_type": lay.op_type, "attrs": attrs, "inputs": ins, "outputs": outs,
            "reduction_dims": lay.reduction_cuts}


def _input(ul, post_of: dict[str, list[str]], sizes: list[int], levels: list[int]) -> dict:
    """One input of an operator: where it is read, and the moves that bring it there (``fwd``)
    and its gradient back (``bwd``: partial sums reduced, then the layout its producer left)."""
    dst = _placements(ul, False, len(sizes))
    entry = {"tensor": ul.tensor, "role": ul.role, "dst": dst, "shape": list(ul.shape)}
    grad = _placements(ul, True, len(sizes)) if ul.partial_cuts and ul.requires_grad else None
    if ul.role == TensorRole.ACTIVATION.value:
        src = post_of[ul.tensor]
        entry["fwd"] = plan_moves(src, dst, ul.shape, sizes)
        entry["bwd"] = ((reduce_moves(grad, dst, ul.shape, sizes, levels) if grad else [])
                        + (plan_moves(dst, src, ul.shape, sizes) if ul.requires_grad else []))
    elif ul.role == TensorRole.PARAMETER.value:
        entry["fwd"] = []
        entry["bwd"] = reduce_moves(grad, dst, ul.shape, sizes, levels) if grad else []
    return entry


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
            onnx_bytes: bytes | None = None) -> tuple[RunContext, dict]:
    """Everything the parent does for one run: module, ONNX, plan, export, program, reference.

    ``plan``, when given, is a plan written by hand (``{"ops": [{"name", "cuts" or "splits"}]}``,
    as ``evaluate`` reads it) used instead of a search, and ``algorithm`` is its label.
    """
    import onnx

    from planner.cost.result import cost_model_for
    from planner.options import PlanOptions
    from planner.plans.plan_json import strategies_from_json
    from planner.search.registry import search
    from planner.cost.model import Plan
    from planner.onnx.importer import import_model

    module = build_model(model)
    onnx_bytes = onnx_bytes or export_onnx(module)
    graph = import_model(onnx_bytes, {}, name=model)
    # the executor all-reduces the gradients after the backward pass: priced so (no overlap)
    cm = cost_model_for(graph, verification_machine(processes), PlanOptions(mode="train", overlap_gradient_sync=False))
    if plan is None:
        plan = search(cm, algorithm)
    else:
        strategies, notes = strategies_from_json(cm, plan)
        plan = Plan(strategies, algorithm, 0.0, notes)
    layouts = op_layouts(cm, plan.strategies)
    export = export_strategies(cm, plan.strategies, "dtensor", "cuts", {"model": model, "algorithm": plan.algorithm})
    program = build_program(cm, plan.strategies, onnx.load_from_string(onnx_bytes), layouts)
    full = cm.complete(plan.strategies)
    ctx = RunContext(model, algorithm, processes, export, program, predicted_bytes(cm, plan.strategies),
                     plan.algorithm, list(plan.notes), {n: list(full[n]) for n in cm.planned},
                     [[c.level_name, c.factor] for c in cm.cuts])
    ref = reference_step(module)
    ref["state"] = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return ctx, ref

