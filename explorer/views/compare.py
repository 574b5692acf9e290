"""The Compare page: every algorithm in one table and chart, the what-if machine, and the sweep
over device counts."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable

import pandas as pd
import plotly.graph_objects as go

from explorer.figures import abbreviate, devices_axis, fit, time_log_axis
from explorer.options import error_text
from explorer.views.machine import machine_with_devices, replan_gain  # noqa: F401 - the what-if panel says it too
from explorer.views.pipeline import configuration_label
from explorer.views.splits import strategy_shape
from planner.api import PlanResult
from planner.machine.tree import Machine, MachineError
from planner.units import (GB, SECOND_UNITS, US, common_scale, format_delta_seconds, format_seconds, format_speedup,
                           gbps, gib, microseconds, missing)

Progress = Callable[[float, str], None] | None


#: The sweep of device counts on the Compare page.
SWEEP_DEVICE_COUNTS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


#: The Compare table's columns, short enough for 1024 px (the unit in the header); their help.
COMPARE_HELP = {"speed-up": "predicted speed-up over pure data parallelism on the same devices",
                "memory (GiB)": "peak memory per device (GiB, 2^30 bytes)",
                "search (s)": "wall-clock time of the search"}


def compare_row(algorithm: str, result: PlanResult | None, error: str | None = None) -> dict:
    """One algorithm's row of the Compare table (memory before the long configuration text, so
    that it stays on screen at 1024 px)."""
    if result is None:
        return {"algorithm": algorithm, "iteration (ms)": None, "speed-up": None, "memory (GiB)": None,
                "fits": None, "configuration": None, "search (s)": None, "note": error or ""}
    return {"algorithm": algorithm, "iteration (ms)": result.total_seconds * 1e3,
            "speed-up": result.speedup_over_data_parallel, "memory (GiB)": gib(result.memory.peak),
            "fits": result.memory.fits, "configuration": configuration_label(result),
            "search (s)": result.plan.search_seconds, "note": "; ".join(result.notes)[:200]}


def compare_figure(frame: pd.DataFrame) -> go.Figure:
    """Each algorithm's predicted iteration, green when it fits in memory, red when not; a log
    axis labelled in the unit when the times span more than 30x."""
    ok = frame[frame["iteration (ms)"].notna()]
    colors = ["#54A24B" if f else "#E45756" for f in ok["fits"]]
    seconds = [v / 1e3 for v in ok["iteration (ms)"]]
    log = len(ok) > 0 and max(seconds) > 30 * min(seconds)
    fig = go.Figure(go.Bar(x=ok["algorithm"], y=seconds if log else list(ok["iteration (ms)"]), marker_color=colors,
                           text=[format_seconds(v) for v in seconds], textposition="outside", cliponaxis=False,
                           customdata=[format_seconds(v) for v in seconds],
                           hovertemplate="%{x}: %{customdata}<extra></extra>"))
    yaxis = time_log_axis(seconds) if log else dict(rangemode="tozero")
    fig.update_layout(height=320, yaxis=dict(yaxis, title="predicted iteration" + ("" if log else " (ms)")))
    return fit(fig, legend=False)


def bandwidth_choices(current_GBps: float) -> list[float]:
    """Log-spaced GB/s values for a what-if slider, with the current value included."""
    base = [0.5, 1, 2, 5, 10, 12.5, 25, 50, 100, 200, 300, 450, 600, 900, 1800]
    values = sorted(set(base) | {round(current_GBps, 6)})
    return values


def latency_choices(current_us: float) -> list[float]:
    base = [0.0, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500]
    return sorted(set(base) | {round(current_us, 6)})


def what_if_machine(machine: Machine, bandwidths_GBps: dict[int, float], latencies_us: dict[int, float],
                    outer_arity: int | None = None) -> Machine:
    m = machine
    for i, bw in bandwidths_GBps.items():
        if not math.isclose(bw * GB, m.levels[i].bandwidth_Bps, rel_tol=1e-9):
            m = m.with_level(i, bandwidth_Bps=bw * GB)
    for i, lat in latencies_us.items():
        if not math.isclose(lat * US, m.levels[i].latency_s, rel_tol=1e-9, abs_tol=1e-15):
            m = m.with_level(i, latency_s=lat * US)
    if outer_arity is not None and outer_arity != m.levels[0].arity:
        m = m.with_level(0, arity=int(outer_arity))
    return m


def device_sweep(machine: Machine, counts: Iterable[int], plan_at: Callable[[Machine], PlanResult],
                 progress: Progress = None) -> pd.DataFrame:
    """Predicted time and speed-up over data parallel across device counts (outermost level scaled)."""
    counts = list(counts)
    rows = []
    previous = None
    for i, n in enumerate(counts):
        if progress:
            progress(i / len(counts), f"{n} devices ({i + 1}/{len(counts)})")
        m = machine_with_devices(machine, n)
        if m is None:
            continue
        try:
            r = plan_at(m)
        except Exception as exc:  # noqa: BLE001 - one failing point must not hide the others
            rows.append({"devices": n, "iteration (ms)": None, "speed-up over data parallel": None,
                         "data parallel (ms)": None, "fits": None, "strategy": error_text("plan", exc),
                         "changed": False})
            continue
        shape = strategy_shape(r)
        # a level that only replicates (or only exists at some device counts) is not a change
        kinds = tuple(part for part in shape.split(" | ") if not part.endswith(": replicated"))
        rows.append({"devices": n, "iteration (ms)": r.total_seconds * 1e3,
                     "speed-up over data parallel": r.speedup_over_data_parallel,
                     "data parallel (ms)": r.data_parallel_seconds * 1e3, "fits": r.memory.fits,
                     "strategy": shape, "changed": previous is not None and kinds != previous})
        previous = kinds
    if progress:
        progress(1.0, "done")
    return pd.DataFrame(rows, columns=["devices", "iteration (ms)", "speed-up over data parallel",
                                       "data parallel (ms)", "fits", "strategy", "changed"])


#: The markers of the sweep's strategy changes, one per change (cycled).
CHANGE_SYMBOLS = ("diamond", "star", "triangle-up", "square", "pentagon", "hexagon")
CHANGE_COLORS = ("#B279A2", "#E45756", "#9D755D", "#4C78A8", "#EECA3B", "#72B7B2")


def change_marker(i: int) -> tuple[str, str]:
    """The ``i``-th strategy change's marker symbol and colour: no two changes of one sweep
    (at most 36) share both, the colour shifting by one each time the symbols wrap around."""
    n = len(CHANGE_SYMBOLS)
    return CHANGE_SYMBOLS[i % n], CHANGE_COLORS[(i + i // n) % len(CHANGE_COLORS)]


def sweep_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The sweep as its table shows it: each time column in the one unit its largest value
    reaches (:func:`planner.units.common_scale`, ``iteration (s)`` rather than ``49840`` ms),
    the unit in the header; the speed-up under the Compare table's short name."""
    out = pd.DataFrame({"devices": frame["devices"]})
    for col, name in (("iteration (ms)", "iteration"), ("speed-up over data parallel", None),
                      ("data parallel (ms)", "data parallel")):
        if name is None:
            out["speed-up"] = frame[col]
            continue
        seconds = [None if missing(v) else v / 1e3 for v in frame[col]]
        unit, scale = common_scale(seconds, SECOND_UNITS)
        out[f"{name} ({unit})"] = [None if v is None else v / scale for v in seconds]
    return out.assign(fits=frame["fits"], strategy=frame["strategy"])


def sweep_caption(machine: Machine, counts: tuple[int, ...], level_name: str) -> str:
    """What the sweep covers, in the same terms as the what-if device slider above it (which may
    reach further: one machine at a time, not swept)."""
    inner, arities = outer_arities(machine)
    top = arities[-1] * inner
    reach = "" if top == counts[-1] else f" (the devices slider above goes to {top:,}, one machine at a time)"
    return (f"The what-if machine planned at {counts[0]:,} to {counts[-1]:,} devices{reach}, scaled by its outermost "
            f"level ({level_name}); a marker, one symbol and colour each, shows each count where the kind of "
            "parallelism per level changes.")


def sweep_figure(frame: pd.DataFrame) -> go.Figure:
    """The sweep: the plan's and pure data parallelism's iteration (log axis in the unit) and the
    speed-up (right axis) over the device counts (powers of two); each device count where the
    strategy changes is a marker with its strategy in the legend (in full on hover)."""
    from plotly.subplots import make_subplots

    ok = frame[frame["iteration (ms)"].notna()]
    plan_s, dp_s = [v / 1e3 for v in ok["iteration (ms)"]], [v / 1e3 for v in ok["data parallel (ms)"]]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=ok["devices"], y=plan_s, name="plan", mode="lines+markers",
                             customdata=list(zip([format_seconds(v) for v in plan_s], map(html.escape, ok["strategy"]))),
                             hovertemplate="%{x} devices: %{customdata[0]}<br>%{customdata[1]}<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=ok["devices"], y=dp_s, name="data parallel", mode="lines", line=dict(dash="dot"),
                             customdata=[format_seconds(v) for v in dp_s],
                             hovertemplate="%{x} devices: %{customdata}<extra>data parallel</extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=ok["devices"], y=ok["speed-up over data parallel"], name="speed-up (right axis)",
                             mode="lines+markers", line=dict(color="#54A24B"),
                             customdata=[format_speedup(v) for v in ok["speed-up over data parallel"]],
                             hovertemplate="%{x} devices: %{customdata}<extra></extra>"), secondary_y=True)
    for i, (_, row) in enumerate(ok[ok["changed"]].iterrows()):
        symbol, color = change_marker(i)
        strategy = str(row["strategy"])  # level names come from the user: plotly reads its text as HTML
        fig.add_trace(go.Scatter(
            x=[row["devices"]], y=[row["iteration (ms)"] / 1e3], mode="markers", legendgroup="changes",
            name=html.escape(f"from {row['devices']:,}: {abbreviate(strategy, 48)}"),
            customdata=[html.escape(strategy)],
            marker=dict(symbol=symbol, size=15, color=color,
                        line=dict(width=1, color="#333")),
            hovertemplate=f"strategy changes at {row['devices']:,} devices:<br>%{{customdata}}<extra></extra>"),
            secondary_y=False)
    fig.update_xaxes(devices_axis(ok["devices"]), title_text="devices")
    fig.update_yaxes(time_log_axis(plan_s + dp_s), title_text="predicted iteration", secondary_y=False)
    fig.update_yaxes(title_text="speed-up over data parallel (x)", tickmode="auto", showgrid=False, rangemode="tozero",
                     secondary_y=True)
    fig.update_layout(height=420)
    return fit(fig)


def compare_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def level_now(level) -> tuple[float, float]:
    """A machine level's bandwidth (GB/s) and latency (µs), as the what-if sliders show them."""
    return gbps(level.bandwidth_Bps), microseconds(level.latency_s)


#: The what-if panel's choices of the outermost level's arity (the current one is added).
OUTER_ARITIES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: The most devices a what-if machine may have.
MOST_WHAT_IF_DEVICES = 2**20


def outer_arities(machine: Machine) -> tuple[int, list[int]]:
    """The devices under one outermost group and the what-if panel's choices of the outermost
    level's arity: powers of two up to :data:`MOST_WHAT_IF_DEVICES` devices, and the current arity."""
    inner = machine.num_devices // machine.levels[0].arity
    choices = {a for a in OUTER_ARITIES if a * inner <= MOST_WHAT_IF_DEVICES} | {machine.levels[0].arity}
    return inner, sorted(choices)


def what_if_or_error(machine: Machine, bandwidths_GBps: dict[int, float], latencies_us: dict[int, float],
                     outer_arity: int | None) -> tuple[Machine | None, str | None]:
    """:func:`what_if_machine`, or the reason the sliders do not make a valid machine."""
    try:
        return what_if_machine(machine, bandwidths_GBps, latencies_us, outer_arity), None
    except MachineError as exc:
        return None, str(exc)


def what_if_metrics(current: PlanResult, alt: PlanResult) -> dict:
    """The what-if panel's figures: the what-if plan against the plan in use."""
    devices, before = alt.machine.num_devices, current.machine.num_devices
    delta = alt.total_seconds - current.total_seconds
    same_cuts = alt.cost_model.machine.cuts() == current.cost_model.machine.cuts()  # the cuts of one stage
    changed = sum(1 for n in alt.cost_model.planned if alt.plan.strategies.get(n) != current.plan.strategies.get(n)) \
        if same_cuts else None
    return {
        "devices": f"{devices:,}", "devices_delta": f"{devices - before:+,}" if devices != before else None,
        "iteration": format_seconds(alt.total_seconds),
        "iteration_delta": None if abs(delta) < 1e-15 else format_delta_seconds(delta),
        "speedup": format_speedup(alt.speedup_over_data_parallel),
        "changed": "all (other machine shape)" if changed is None else f"{changed:,}",
        "shape": strategy_shape(alt), "current_shape": strategy_shape(current),
        "search": format_seconds(alt.plan.search_seconds),
    }


def sweep(cache, request, graph, counts: Iterable[int] = SWEEP_DEVICE_COUNTS, progress: Progress = None) -> pd.DataFrame:
    """:func:`device_sweep` of ``request`` (an :class:`explorer.cache.PlanRequest`) through the
    cache: each device count is planned as the app plans, and the sweep is kept. With the
    cache's pool of planning processes, the counts are planned side by side, one per worker."""
    counts = tuple(counts)

    def plan_at(m: Machine) -> PlanResult:
        return cache.result(request.on(machine=m), graph)

    def compute() -> pd.DataFrame:
        if cache.pool is not None and cache.pool.workers > 1:
            _plan_side_by_side(cache.pool.workers, request.machine, counts, plan_at, progress)
            return device_sweep(request.machine, counts, plan_at)  # every count cached (or failing) by now
        return device_sweep(request.machine, counts, plan_at, progress)
    return cache.sweep(request, counts, compute)


def _plan_side_by_side(workers: int, machine: Machine, counts: tuple[int, ...],
                       plan_at: Callable[[Machine], PlanResult], progress: Progress) -> None:
    """Plan the sweep's machines ``workers`` at a time (each call waits on a worker process, so
    threads suffice); ``progress`` is called on this thread only. A failing count is left to
    :func:`device_sweep`, which reports it."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    machines = [m for m in (machine_with_devices(machine, n) for n in counts) if m is not None]
    with ThreadPoolExecutor(workers) as threads:
        futures = {threads.submit(plan_at, m): m for m in machines}
        for done, future in enumerate(as_completed(futures), 1):
            if future.exception() is None and progress:
                progress(done / len(machines), f"{futures[future].num_devices:,} devices planned "
                                               f"({done}/{len(machines)})")
