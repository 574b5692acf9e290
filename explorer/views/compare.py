"""The Compare page: every algorithm in one table and chart, the what-if machine, and the sweep
over device counts."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pandas as pd
import plotly.graph_objects as go

from explorer.options import error_text
from explorer.views.machine import machine_with_devices
from explorer.views.pipeline import configuration_label
from explorer.views.splits import strategy_shape
from planner.api import PlanResult
from planner.machine.tree import Machine, MachineError
from planner.units import GB, US, format_delta_seconds, format_seconds, format_speedup, gbps, gib, microseconds

Progress = Callable[[float, str], None] | None


#: The sweep of device counts on the Compare page.
SWEEP_DEVICE_COUNTS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def compare_row(algorithm: str, result: PlanResult | None, error: str | None = None) -> dict:
    if result is None:
        return {"algorithm": algorithm, "iteration (ms)": None, "speed-up over data parallel": None,
                "configuration": None, "memory per device (GiB)": None, "fits": None, "search (s)": None,
                "note": error or ""}
    return {"algorithm": algorithm, "iteration (ms)": result.total_seconds * 1e3,
            "speed-up over data parallel": result.speedup_over_data_parallel,
            "configuration": configuration_label(result),
            "memory per device (GiB)": gib(result.memory.peak), "fits": result.memory.fits,
            "search (s)": result.plan.search_seconds, "note": "; ".join(result.notes)[:200]}


def compare_figure(frame: pd.DataFrame) -> go.Figure:
    ok = frame[frame["iteration (ms)"].notna()]
    colors = ["#54A24B" if f else "#E45756" for f in ok["fits"]]
    fig = go.Figure(go.Bar(x=ok["algorithm"], y=ok["iteration (ms)"], marker_color=colors,
                           text=[format_seconds(v / 1e3) for v in ok["iteration (ms)"]], textposition="outside",
                           hovertemplate="%{x}: %{y:.4g} ms<extra></extra>"))
    fig.update_layout(height=320, yaxis_title="predicted iteration (ms)", margin=dict(t=30, l=10, r=10, b=10),
                      yaxis_type="log" if len(ok) and ok["iteration (ms)"].max() > 30 * ok["iteration (ms)"].min() else "linear")
    return fig


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


def sweep_figure(frame: pd.DataFrame) -> go.Figure:
    from plotly.subplots import make_subplots

    ok = frame[frame["iteration (ms)"].notna()]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=ok["devices"], y=ok["iteration (ms)"], name="plan (ms)", mode="lines+markers",
                             text=ok["strategy"], hovertemplate="%{x} devices: %{y:.4g} ms<br>%{text}<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=ok["devices"], y=ok["data parallel (ms)"], name="data parallel (ms)",
                             mode="lines", line=dict(dash="dot")), secondary_y=False)
    fig.add_trace(go.Scatter(x=ok["devices"], y=ok["speed-up over data parallel"], name="speed-up over data parallel",
                             mode="lines+markers", line=dict(color="#54A24B")), secondary_y=True)
    for _, row in ok[ok["changed"]].iterrows():
        fig.add_vline(x=row["devices"], line=dict(color="#999", dash="dash"))
        fig.add_annotation(x=math.log10(row["devices"]), y=1.0, yref="paper", text=row["strategy"], showarrow=False,
                           textangle=-90, xanchor="right", yanchor="top", font=dict(size=10))
    fig.update_xaxes(type="log", title="devices")
    fig.update_yaxes(type="log", title_text="predicted iteration (ms)", secondary_y=False)
    fig.update_yaxes(title_text="speed-up over data parallel (x)", secondary_y=True, tickmode="auto", showgrid=False,
                     rangemode="tozero")
    fig.update_layout(height=380, margin=dict(t=30, l=10, r=10, b=10), legend=dict(orientation="h", y=1.08))
    return fig


def compare_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def level_now(level) -> tuple[float, float]:
    """A machine level's bandwidth (GB/s) and latency (µs), as the what-if sliders show them."""
    return gbps(level.bandwidth_Bps), microseconds(level.latency_s)


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
        "changed": "n/a (other cuts)" if changed is None else f"{changed:,}",
        "shape": strategy_shape(alt), "current_shape": strategy_shape(current),
        "search": format_seconds(alt.plan.search_seconds),
    }


def sweep(cache, request, graph, counts: Iterable[int] = SWEEP_DEVICE_COUNTS, progress: Progress = None) -> pd.DataFrame:
    """:func:`device_sweep` of ``request`` (an :class:`explorer.cache.PlanRequest`) through the
    cache: each device count is planned as the app plans, and the sweep is kept."""
    counts = tuple(counts)

    def plan_at(m: Machine) -> PlanResult:
        return cache.result(request.on(machine=m), graph)
    return cache.sweep(request, counts, lambda: device_sweep(request.machine, counts, plan_at, progress))
