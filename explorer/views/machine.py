"""The Machine page: the levels as an editable table (GB/s, µs) and back, the device fields,
scaling a machine to a device count, the tree as an icicle, and what the last edit did to the
plan (iteration time and speed-up before and after)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from explorer.figures import fit
from explorer.views.pipeline import configuration_label
from planner.api import PlanResult
from planner.machine.tree import Machine, MachineError
from planner.units import (GB, GIB, TFLOPS, US, clean_float, format_delta_seconds, format_number, format_seconds,
                           format_speedup, gbps, gib, microseconds, tflops)


LEVEL_COLUMNS = ("name", "arity", "bandwidth (GB/s)", "latency (µs)")


def levels_frame(machine: Machine) -> pd.DataFrame:
    return pd.DataFrame(
        [{"name": lv.name, "arity": int(lv.arity), "bandwidth (GB/s)": gbps(lv.bandwidth_Bps),
          "latency (µs)": microseconds(lv.latency_s)} for lv in machine.levels],
        columns=list(LEVEL_COLUMNS),
    )


def _cell_number(value, row: int, column: str, example: str) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip()):
        raise MachineError(f"level {row + 1}: '{column}' is empty; enter a number, e.g. {example}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MachineError(f"level {row + 1}: '{column}' must be a number, e.g. {example}; got {value!r}") from None


def machine_from_levels(machine: Machine, frame: pd.DataFrame) -> Machine:
    """The machine with its levels replaced by an edited table (UI units); MachineError says what to fix."""
    if frame is None or len(frame) == 0:
        raise MachineError("the machine needs at least one level: add a row (name, arity, bandwidth, latency)")
    levels = []
    for i, row in enumerate(frame.to_dict("records")):
        name = row.get("name")
        if name is None or (isinstance(name, float) and math.isnan(name)) or not str(name).strip():
            raise MachineError(f"level {i + 1}: the name is empty; name the level, e.g. 'node' or 'gpu'")
        arity = _cell_number(row.get("arity"), i, "arity", "8")
        if not float(arity).is_integer() or arity < 1:
            raise MachineError(f"level {i + 1} ({name}): arity must be a whole number of at least 1, e.g. 8; got {arity:g}")
        bw = _cell_number(row.get("bandwidth (GB/s)"), i, "bandwidth (GB/s)", "25")
        if bw <= 0:
            raise MachineError(f"level {i + 1} ({name}): bandwidth must be more than 0 GB/s, e.g. 25; got {bw:g}")
        lat = _cell_number(row.get("latency (µs)"), i, "latency (µs)", "10")
        if lat < 0:
            raise MachineError(f"level {i + 1} ({name}): latency must be 0 µs or more, e.g. 10; got {lat:g}")
        levels.append({"name": str(name).strip(), "arity": int(arity), "bandwidth_Bps": clean_float(bw * GB),
                       "latency_s": clean_float(lat * US)})
    data = machine.to_dict()
    data["levels"] = levels
    return Machine.from_dict(data)


def apply_editor_state(frame: pd.DataFrame, state: dict | None) -> pd.DataFrame:
    """The table an ``st.data_editor`` shows after its edits (its session-state value:
    ``edited_rows``, ``added_rows``, ``deleted_rows``), so that a callback can validate it."""
    rows = frame.to_dict("records")
    state = state or {}
    for index, changes in (state.get("edited_rows") or {}).items():
        i = int(index)
        if 0 <= i < len(rows):
            rows[i].update(changes)
    deleted = {int(i) for i in state.get("deleted_rows") or []}
    rows = [r for i, r in enumerate(rows) if i not in deleted]
    for added in state.get("added_rows") or []:
        rows.append({c: added.get(c) for c in frame.columns})
    return pd.DataFrame(rows, columns=list(frame.columns))


def machine_with_device(machine: Machine, name: str, peak_tflops: float, memory_gib: float, efficiency: float) -> Machine:
    """The machine with new device fields given in UI units (TFLOP/s, GiB)."""
    if not name or not str(name).strip():
        raise MachineError("device name is empty; name the device, e.g. A100")
    if peak_tflops is None or peak_tflops <= 0:
        raise MachineError("device peak must be more than 0 TFLOP/s, e.g. 312")
    if memory_gib is None or memory_gib <= 0:
        raise MachineError("device memory must be more than 0 GiB, e.g. 80")
    if efficiency is None or not 0 < efficiency <= 1:
        raise MachineError("compute efficiency must be in (0, 1], e.g. 0.6 for 60% of peak")
    return machine.with_device(name=str(name).strip(), peak_flops=peak_tflops * TFLOPS,
                               memory_bytes=memory_gib * GIB, compute_efficiency=efficiency)


def same_levels(frame: pd.DataFrame, machine: Machine) -> bool:
    """True when an edited levels table still describes ``machine`` (rounding aside)."""
    base = levels_frame(machine)
    if frame is None or list(frame.columns) != list(base.columns) or len(frame) != len(base):
        return False
    for a, b in zip(frame.to_dict("records"), base.to_dict("records")):
        if str(a["name"]) != b["name"]:
            return False
        for col in LEVEL_COLUMNS[1:]:
            try:
                if not math.isclose(float(a[col]), float(b[col]), rel_tol=1e-9, abs_tol=1e-12):
                    return False
            except (TypeError, ValueError):
                return False
    return True


def machine_with_devices(machine: Machine, devices: int) -> Machine | None:
    """The machine scaled to ``devices`` by changing the outermost level's arity (None if it cannot)."""
    inner = math.prod(lv.arity for lv in machine.levels[1:])
    if devices % inner or devices < inner:
        if len(machine.levels) > 1 and devices < inner:
            # fewer devices than one outer group: drop outer levels and shrink the innermost one
            innermost = machine.levels[-1]
            if innermost.arity % devices == 0 or devices % innermost.arity == 0:
                data = machine.to_dict()
                data["levels"] = [dict(data["levels"][-1], arity=devices)]
                return Machine.from_dict(data)
        return None
    return machine.with_level(0, arity=devices // inner)


def machine_label_text(machine: Machine, label: str) -> str:
    """The machine in use named for people: the preset's name, or ``<name> (edited)`` once edited."""
    return f"{machine.name} (edited)" if label == "custom" else label


def machine_tree_figure(machine: Machine, expand_up_to: int = 8, max_nodes: int = 300,
                        label: str | None = None) -> go.Figure:
    """An icicle of the machine tree, one colour per level, every drawn node the same width.

    A level with more than ``expand_up_to`` children per parent draws its first two, one block
    standing for the others ("... 61 more nodes") and its last, so a 4096-device machine draws
    as quickly and as legibly as an 8-device one; hover a block for its level's link figures.
    """
    level_colors = ["#4C78A8", "#72B7B2", "#54A24B", "#EECA3B", "#F58518", "#B279A2"]
    root = machine.name if label is None else machine_label_text(machine, label)
    ids, labels, parents, colors, hovers = ["root"], [f"{root}: {machine.num_devices:,} devices"], [""], \
        ["#555555"], [machine.summary()]
    frontier = ["root"]
    for depth, lv in enumerate(machine.levels):
        below = math.prod(x.arity for x in machine.levels[depth + 1:])
        what = f"level {lv.name}: {lv.arity} per parent, {format_number(gbps(lv.bandwidth_Bps))} GB/s, " \
               f"{format_number(microseconds(lv.latency_s))} µs" + (f"; {below:,} devices each" if below > 1 else "")
        if lv.arity <= expand_up_to:
            picks = [(k, 1) for k in range(lv.arity)]
        else:
            picks = [(0, 1), (1, 1), (None, lv.arity - 3), (lv.arity - 1, 1)]
        if len(ids) + len(frontier) * len(picks) > max_nodes:
            picks = [(None, lv.arity)]
        nxt = []
        for pid in frontier:
            for k, count in picks:
                nid = f"{pid}/{lv.name}{'*' if k is None else k}"
                ids.append(nid)
                labels.append(f"... {count} more" if k is None and count < lv.arity else
                              f"{count} x {lv.name}" if k is None else f"{lv.name} {k}")
                parents.append(pid)
                colors.append(level_colors[depth % len(level_colors)])
                hovers.append(what)
                nxt.append(nid)
        frontier = nxt
    # equal widths: each drawn leaf counts 1, each parent the sum of its drawn children
    values = {i: 0 for i in ids}
    for i in frontier:
        values[i] = 1
    for i, parent in zip(reversed(ids), reversed(parents)):
        if parent:
            values[parent] += values[i]
    fig = go.Figure(go.Icicle(ids=ids, labels=labels, parents=parents, values=[values[i] for i in ids],
                              branchvalues="total", marker=dict(colors=colors), customdata=hovers,
                              hovertemplate="%{label}<br>%{customdata}<extra></extra>", tiling=dict(orientation="v"),
                              textfont=dict(size=12), sort=False))
    fig.update_layout(height=110 + 70 * len(machine.levels))
    return fit(fig, legend=False, top=10)


def device_fields(machine: Machine) -> dict[str, float]:
    """The device as its fields show it: peak in TFLOP/s, memory in GiB."""
    return {"peak_tflops": tflops(machine.device.peak_flops), "memory_gib": gib(machine.device.memory_bytes)}


def cut_schedule(machine: Machine) -> list[str]:
    """D-Rec's cuts of the machine, outermost first: ``node x2``."""
    return [f"{c.level_name} x{c.factor}" for c in machine.cuts()]


def repriced_edit(ctx, before: dict | None) -> PlanResult | None:
    """The plan in use before the last machine change re-priced on the machine in use now (an
    :class:`explorer.context.Context`), through the cache and at once: None when the change was
    not to links or the device (another device count or tree shape), or there is nothing to re-price."""
    if before is None or ctx.graph is None or before.get("result") is None:
        return None
    current = ctx.request(machine=before["machine"])
    if not ctx.cache.has_result(current) or ctx.cache.result(current, ctx.graph) is not before["result"]:
        return None  # the options changed since (the plan before is not this request's): nothing to re-price
    return ctx.cache.repriced_if_possible(ctx.request(), ctx.graph, current)


def repriced_text(repriced: PlanResult, before: dict) -> str:
    """One line for the re-priced figures while the re-plan runs."""
    return (f"Current plan on the edited machine (re-priced at once, nothing searched): "
            f"{format_seconds(repriced.total_seconds)} per iteration (was "
            f"{format_seconds(before['result'].total_seconds)}), {format_speedup(repriced.speedup_over_data_parallel)} "
            "over data parallelism. Re-planning...")


def replan_gain(repriced: PlanResult, replanned: PlanResult) -> str:
    """What the re-plan found against the current plan re-priced on the same machine: the same
    plan, or a different one and by how much it is faster (or why it was kept when not faster)."""
    same = (repriced.plan.strategies == replanned.plan.strategies
            and configuration_label(repriced) == configuration_label(replanned))
    if same:
        return ("The re-plan keeps the current plan (the same splits, stages and micro-batches): the re-priced "
                "figures are the final ones.")
    gain = repriced.total_seconds - replanned.total_seconds
    if gain > 0:
        return (f"The re-plan finds a different plan: {format_seconds(replanned.total_seconds)} per iteration "
                f"against {format_seconds(repriced.total_seconds)} for the current plan on the edited machine, "
                f"{format_seconds(gain)} ({gain / repriced.total_seconds:.1%}) faster.")
    return (f"The re-plan finds a different plan, {format_seconds(replanned.total_seconds)} per iteration against "
            f"{format_seconds(repriced.total_seconds)} for the current plan on the edited machine (the search "
            "weighs memory and the configuration too, so it is not faster here).")


def edit_effect(before: dict | None, result: PlanResult | None, label: str,
                repriced: PlanResult | None = None) -> dict | None:
    """What the last machine change did to the plan: the iteration time and the speed-up over pure
    data parallelism before and after, as text (``iteration_delta`` reads ``+1.2 ms`` when slower),
    and a caption naming both machines; with ``repriced`` (the plan in use before, re-priced on the
    new machine) its figures too and what the re-plan gained over it; None when there is nothing
    to compare."""
    if before is None or result is None or before["result"] is result:
        return None
    old = before["result"]
    faster = result.total_seconds < old.total_seconds
    quick = {} if repriced is None else {
        "iteration_repriced": format_seconds(repriced.total_seconds),
        "repriced_delta": format_delta_seconds(repriced.total_seconds - old.total_seconds),
        "speedup_repriced": format_speedup(repriced.speedup_over_data_parallel),
        "gain": replan_gain(repriced, result)}
    return {**quick,
        "iteration_before": format_seconds(old.total_seconds),
        "iteration_after": format_seconds(result.total_seconds),
        "iteration_delta": format_delta_seconds(result.total_seconds - old.total_seconds),
        "faster": faster,
        "speedup_before": format_speedup(old.speedup_over_data_parallel),
        "speedup_after": format_speedup(result.speedup_over_data_parallel),
        "caption": (f"Before: {machine_label_text(before['machine'], before['label'])} ({before['machine'].summary()}). "
                    f"After: {machine_label_text(result.machine, label)} "
                    f"({result.machine.summary()}), re-planned with {result.plan.algorithm}."),
    }
