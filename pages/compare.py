"""Compare: the algorithms side by side, a what-if panel for the machine, and a sweep over device counts."""

import pandas as pd
import streamlit as st

import app
from explorer import core as ex
from explorer.safe_markdown import md_code, md_text
from planner.machine.tree import MachineError

ctx: ex.Context = app.page_context()
ss = st.session_state
st.title("Compare")
if ctx.model_error:
    st.error(md_text(ctx.model_error))
    st.stop()

# ---- algorithms ----
st.subheader("Algorithms on this model and machine")
rows, results = [], {}
pending = [a for a in ex.COMPARE_ALGORITHMS
           if not ctx.cache.has_result(ctx.source, ctx.bindings, ctx.machine, ex.options_with(ctx.options, algorithm=a))]
bar = st.progress(0.0, text="Planning with every algorithm...") if pending else None
for i, algo in enumerate(ex.COMPARE_ALGORITHMS):
    if bar is not None:
        bar.progress(i / len(ex.COMPARE_ALGORITHMS), text=f"{algo} ({i + 1}/{len(ex.COMPARE_ALGORITHMS)})")
    try:
        res = ctx.plan(options=ex.options_with(ctx.options, algorithm=algo))
    except Exception as exc:  # noqa: BLE001 - exact too large, megatron on a CNN, ... or a planner bug
        rows.append(ex.compare_row(algo, None, ex.error_text(algo, exc)))
    else:
        results[algo] = res
        rows.append(ex.compare_row(algo, res))
if bar is not None:
    bar.empty()
frame = pd.DataFrame(rows)
st.dataframe(frame, hide_index=True, column_config={
    "iteration (ms)": st.column_config.NumberColumn(format="%.4g"),
    "speed-up over data parallel": st.column_config.NumberColumn(format="%.2fx"),
    "memory per device (GiB)": st.column_config.NumberColumn(format="%.3g"),
    "search (s)": st.column_config.NumberColumn(format="%.3g"),
    "note": st.column_config.TextColumn(width="large"),
})
left, right = st.columns([3, 2])
left.plotly_chart(ex.compare_figure(frame), key="cmp_bar")
with right:
    st.caption("Bars: green fits in device memory, red does not. Every algorithm is scored by the same evaluator.")
    for row in rows:
        if row["iteration (ms)"] is None:
            st.warning(md_text(row["note"]))

# ---- what-if ----
st.subheader("What if the machine were different?")
st.caption(f"Sliders change a copy of {md_code(ctx.machine_label)}; the model is re-planned with {ctx.options.algorithm} "
           "on it (results are cached, so going back is instant).")
m = ctx.machine
bandwidths, latencies = {}, {}
cols = st.columns(len(m.levels) + 1)
for i, lv in enumerate(m.levels):
    with cols[i]:
        st.markdown(f"**{md_text(lv.name)} level** (x{lv.arity})")
        bw_now = ex.gbps(lv.bandwidth_Bps)
        bandwidths[i] = st.select_slider("bandwidth (GB/s)", ex.bandwidth_choices(bw_now), value=round(bw_now, 6),
                                         key=f"wi_bw_{i}_{ss.get('machine_version', 0)}",
                                         format_func=lambda v: f"{v:g}")
        lat_now = ex.microseconds(lv.latency_s)
        latencies[i] = st.select_slider("latency (µs)", ex.latency_choices(lat_now), value=round(lat_now, 6),
                                        key=f"wi_lat_{i}_{ss.get('machine_version', 0)}", format_func=lambda v: f"{v:g}")
with cols[-1]:
    inner = m.num_devices // m.levels[0].arity
    arities = sorted({a for a in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if a * inner <= 2**20} | {m.levels[0].arity})
    st.markdown("**devices**")
    outer = st.select_slider(f"{md_text(m.levels[0].name)} count", arities, value=m.levels[0].arity,
                             key=f"wi_outer_{ss.get('machine_version', 0)}",
                             format_func=lambda a: f"{a} ({a * inner:,} devices)")
try:
    what_if = ex.what_if_machine(m, bandwidths, latencies, outer)
except MachineError as exc:
    st.error(f"What-if machine is invalid: {md_text(exc)}")
    st.stop()

if ctx.plan_error:
    st.error(md_text(ctx.no_plan))
    st.stop()
r = ctx.result
try:
    with st.spinner("Re-planning on the what-if machine..."):
        alt = ctx.plan(machine=what_if)
except Exception as exc:  # noqa: BLE001
    st.error(f"No plan on the what-if machine: {md_text(ex.error_text(ctx.options.algorithm, exc))}")
    st.stop()
w = st.columns(4)
delta = alt.total_seconds - r.total_seconds
w[0].metric("Devices", f"{what_if.num_devices:,}", delta=f"{what_if.num_devices - m.num_devices:+,}" if what_if.num_devices != m.num_devices else None)
w[1].metric("Predicted iteration time", ex.format_seconds(alt.total_seconds),
            delta=None if abs(delta) < 1e-15 else f"{'+' if delta > 0 else '-'}{ex.format_seconds(abs(delta))}",
            delta_color="inverse")
w[2].metric("Speed-up over pure data parallel", ex.format_speedup(alt.speedup_over_data_parallel))
changed = sum(1 for n in alt.cost_model.planned if alt.plan.strategies.get(n) != r.plan.strategies.get(n)) \
    if alt.cost_model.machine.cuts() == r.cost_model.machine.cuts() else None  # the cuts of one stage
w[3].metric("Operators whose split changed", "n/a (other cuts)" if changed is None else f"{changed:,}")
st.caption(f"Strategy by level: {md_text(ex.strategy_shape(alt))} (current: {md_text(ex.strategy_shape(r))}) · search "
           f"{ex.format_seconds(alt.plan.search_seconds)}")


def _use_what_if(new) -> None:
    ss.machine, ss.machine_label = new, "custom"
    ss.machine_version = ss.get("machine_version", 0) + 1


if what_if != m:
    st.button("Use this machine", key="wi_use", on_click=_use_what_if, args=(what_if,),
              help="make the what-if machine the machine in use (every page)")

# ---- sweep ----
st.subheader("Across device counts")
counts = ex.SWEEP_DEVICE_COUNTS
st.caption(f"The what-if machine scaled from {counts[0]} to {counts[-1]:,} devices by its outermost level "
           f"({md_text(m.levels[0].name)}); dashed lines mark where the kind of parallelism per level changes.")
sweep = ctx.cache.cached_sweep(ctx.source, ctx.bindings, what_if, ctx.options, counts)
if sweep is None:
    slot = st.empty()
    if slot.button(f"Sweep {len(counts)} device counts", key="wi_sweep", type="primary"):
        sbar = slot.progress(0.0, text="Sweeping...")
        sweep = ctx.cache.sweep(ctx.source, ctx.bindings, ctx.graph, what_if, ctx.options, counts,
                                progress=lambda f, msg: sbar.progress(min(max(f, 0.0), 1.0), text=msg))
        slot.empty()
if sweep is not None:
    st.plotly_chart(ex.sweep_figure(sweep), key="wi_sweep_fig")
    st.dataframe(sweep, hide_index=True, column_config={
        "iteration (ms)": st.column_config.NumberColumn(format="%.4g"),
        "speed-up over data parallel": st.column_config.NumberColumn(format="%.2fx"),
        "data parallel (ms)": st.column_config.NumberColumn(format="%.4g"),
    })
