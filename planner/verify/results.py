"""The verification's report: one row per run from every rank's results, the printed table, the
summary and the ``--json`` form.

A row compares, operator by operator, the bytes per device the cost model predicts (the
operator's communication vector plus the redistribution of its incoming edges, forward and
backward, summed over levels) with what was measured (the busiest process, as a BSP superstep
waits for it), within :data:`~planner.verify.base.BYTES_TOLERANCE`; and the loss, the output
and every parameter gradient with the single-process step (``torch.allclose`` with
:data:`~planner.verify.base.RTOL` and :data:`~planner.verify.base.ATOL`, fp32). Bytes measured
outside any operator are reported as unattributed. Plain data only: nothing here needs PyTorch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from planner.verify.base import ATOL, BYTES_TOLERANCE, RTOL

if TYPE_CHECKING:
    from planner.verify.program import RunContext


def report_row(ctx: RunContext, ref: dict, results: list[dict]) -> dict:
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
    """Counts over all rows: runs, runs whose numerics match, operators, operators within the
    bytes tolerance, operators that communicate."""
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

