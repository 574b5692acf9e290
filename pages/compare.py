"""Compare: the algorithms side by side, a what-if panel for the machine, and a sweep over device counts."""

import streamlit as st

from explorer import hand_made, state
from explorer.options import COMPARE_ALGORITHMS, error_text, options_with
from explorer.run import page_context
from explorer.safe_markdown import md_code, md_text
from explorer.tables import SPEEDUP, format_number, table
from explorer.views import compare as view

ctx = page_context()
st.title("Compare")
if ctx.model_error:
    st.error(md_text(ctx.model_error))
    st.stop()

# ---- algorithms ----
st.subheader("Algorithms on this model and machine")
rows, results = [], {}
pending = [a for a in COMPARE_ALGORITHMS if not ctx.has_plan(options=options_with(ctx.options, algorithm=a))]
bar = st.progress(0.0, text="Planning with every algorithm...") if pending else None
for i, algo in enumerate(COMPARE_ALGORITHMS):
    if bar is not None:
        bar.progress(i / len(COMPARE_ALGORITHMS), text=f"{algo} ({i + 1}/{len(COMPARE_ALGORITHMS)})")
    try:
        res = ctx.plan(options=options_with(ctx.options, algorithm=algo))
    except Exception as exc:  # noqa: BLE001 - exact too large, megatron on a CNN, ... or a planner bug
        rows.append(view.compare_row(algo, None, error_text(algo, exc)))
    else:
        results[algo] = res
        rows.append(view.compare_row(algo, res))
if bar is not None:
    bar.empty()
if (config := state.hand_made()) is not None:  # the sidebar's, priced as evaluate prices it
    rows.append(hand_made.compare_row(ctx, config)[0])
frame = view.compare_table(rows)
shown = table(frame, {"note": st.column_config.TextColumn(width="medium")}, SPEEDUP)
for column, text in view.COMPARE_HELP.items():  # short headers, the long names on hover
    shown["column_config"].setdefault(column, {})["help"] = text
st.dataframe(**shown, hide_index=True)
left, right = st.columns([3, 2])
left.plotly_chart(view.compare_figure(frame), key="cmp_bar")
with right:
    st.caption("Bars: green fits in device memory, red does not. Every algorithm is scored by the same evaluator"
               + ("; the hand-made row is the sidebar's configuration priced as `evaluate --tp --pp --dp --ep --cp` "
                  "prices it (nothing searched)." if config is not None else "."))
    for row in rows:
        if row["iteration (ms)"] is None:
            st.warning(md_text(row["note"]))

# ---- what-if ----
st.subheader("What if the machine were different?")
st.caption(f"Sliders change a copy of {md_code(ctx.machine_label)}. A bandwidth or latency change shows the current "
           f"plan re-priced on it at once, then the plan {ctx.options.algorithm} finds for it; a device count change "
           "re-plans (results are cached, so going back is instant).")
m = ctx.machine
version = state.machine_version()
bandwidths, latencies = {}, {}
cols = st.columns(len(m.levels) + 1)
for i, lv in enumerate(m.levels):
    with cols[i]:
        st.markdown(f"**{md_text(lv.name)} level** (x{lv.arity})")
        bw_now, lat_now = view.level_now(lv)
        bandwidths[i] = st.select_slider("bandwidth (GB/s)", view.bandwidth_choices(bw_now), value=round(bw_now, 6),
                                         key=f"wi_bw_{i}_{version}", format_func=lambda v: format_number(v, 4))
        latencies[i] = st.select_slider("latency (µs)", view.latency_choices(lat_now), value=round(lat_now, 6),
                                        key=f"wi_lat_{i}_{version}", format_func=lambda v: format_number(v, 4))
with cols[-1]:
    inner, arities = view.outer_arities(m)
    st.markdown("**devices**")
    outer = st.select_slider(f"{md_text(m.levels[0].name)} count", arities, value=m.levels[0].arity,
                             key=f"wi_outer_{version}", format_func=lambda a: f"{a} ({a * inner:,} devices)")
what_if, problem = view.what_if_or_error(m, bandwidths, latencies, outer)
if problem:
    st.error(f"What-if machine is invalid: {md_text(problem)}")
    st.stop()

if ctx.plan_error:
    st.error(md_text(ctx.no_plan))
    st.stop()


def draw_metrics(fig: dict, prefix: str = "") -> None:
    w = [*st.columns(2), *st.columns(2)]  # two rows of two: no label is cut at 1024 px
    w[0].metric(f"{prefix}Devices", fig["devices"], delta=fig["devices_delta"])
    w[1].metric(f"{prefix}Predicted iteration time", fig["iteration"], delta=fig["iteration_delta"],
                delta_color="inverse")
    w[2].metric(f"{prefix}Speed-up vs data parallel", fig["speedup"])
    w[3].metric(f"{prefix}Operators whose split changed", fig["changed"])


# the current plan re-priced on the edited links at once; the re-plan follows (a device count or
# a tree shape edit cannot be re-priced: re-planned only)
quick = ctx.cache.repriced_if_possible(ctx.request(machine=what_if), ctx.graph, ctx.request())
if quick is not None:
    st.markdown("**Current plan on the edited machine** (re-priced at once: the same splits, nothing searched)")
    draw_metrics(view.what_if_metrics(ctx.result, quick), "Current plan: ")
try:
    if ctx.has_plan(machine=what_if):
        alt = ctx.plan(machine=what_if)
    else:
        with st.status("Re-planning on the what-if machine...", expanded=True) as status:
            wbar = st.progress(0.0, text="Re-planning...")
            alt = ctx.plan(machine=what_if,
                           progress=lambda f, msg: wbar.progress(min(max(float(f), 0.0), 1.0), text=md_text(msg)))
            status.update(label="Re-planned on the what-if machine", state="complete", expanded=False)
except Exception as exc:  # noqa: BLE001
    st.error(f"No plan on the what-if machine: {md_text(error_text(ctx.options.algorithm, exc))}")
    st.stop()
if quick is not None:
    st.markdown("**Re-planned on the edited machine**")
fig = view.what_if_metrics(ctx.result, alt)
draw_metrics(fig)
st.caption(f"Strategy by level: {md_text(fig['shape'])} (current: {md_text(fig['current_shape'])}) · search "
           f"{fig['search']}")
if quick is not None:
    st.info(md_text(view.replan_gain(quick, alt)))

if what_if != m:
    st.button("Use this machine", key="wi_use", on_click=state.use_machine, args=(what_if, "custom"),
              help="make the what-if machine the machine in use (every page)")

# ---- sweep ----
st.subheader("Across device counts")
counts = view.SWEEP_DEVICE_COUNTS
st.caption(view.sweep_caption(m, counts, md_text(m.levels[0].name)))
request = ctx.request(machine=what_if)
sweep = ctx.cache.cached_sweep(request, counts)
if sweep is None:
    slot = st.empty()
    if slot.button(f"Sweep {len(counts)} device counts", key="wi_sweep", type="primary"):
        sbar = slot.progress(0.0, text="Sweeping...")
        sweep = view.sweep(ctx.cache, request, ctx.graph, counts,
                           progress=lambda f, msg: sbar.progress(min(max(f, 0.0), 1.0), text=msg))
        slot.empty()
if sweep is not None:
    st.plotly_chart(view.sweep_figure(sweep), key="wi_sweep_fig")
    st.dataframe(**table(view.sweep_table(sweep), formats=SPEEDUP), hide_index=True)
