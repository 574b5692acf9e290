"""Strategy: the per-operator plan, a heatmap by machine cut, the graph coloured by split, the
pipeline stages and their 1F1B schedule, overriding one operator, and comparing with an uploaded plan."""

import hashlib

import streamlit as st

import app
from explorer import core as ex
from explorer.safe_markdown import md_code, md_text
from explorer import timeline
from planner.cost.model import PlanError
from planner.plans.override import price_override

ctx: ex.Context = app.planned_page("Strategy")

r = ctx.result
g = ctx.graph
h = ex.headline(r)
st.caption(f"{r.plan.algorithm} on {h['devices']:,} devices: {h['iteration']} per iteration, "
           f"{h['speedup']} over pure data parallel · strategy by level: {md_text(ex.strategy_shape(r))} · {h['configuration']}")

table = ex.strategy_table(r)
layers = ex.layers_of(g)
f1, f2, f3, f4 = st.columns(4)
types = f1.multiselect("Type", sorted(table["type"].unique()), key="st_types")
kinds = f2.multiselect("Kind", sorted(table["kind"].unique()), default=["compute"] if "compute" in set(table["kind"]) else [],
                       key="st_kinds", help="compute operators decide layouts; clear to see every planned operator")
text = f3.text_input("Name contains", key="st_text")
layer_range = None
if layers.count >= 2:
    lo, hi = layers.indices[0], layers.indices[-1]
    layer_range = f4.slider(f"Layers ({md_text(layers.family)}N)", lo, hi, (lo, min(hi, lo + 1)), key="st_layers")
shown = ex.filter_table(table, types, kinds, text, layer_range)

tab_table, tab_heat, tab_graph = st.tabs(["Table", "Heatmap by machine cut", "Graph coloured by split"])
with tab_table:
    st.caption(f"{len(shown):,} of {len(table):,} planned operators; cost columns in µs {ex.cost_unit(r)}"
               + (", each operator on its stage's devices" if r.schedule.stages > 1 else ""))
    fmt = {c: st.column_config.NumberColumn(format="%.4g") for c in table.columns if c.endswith("(µs)")}
    st.dataframe(shown, hide_index=True, height=380, column_config=fmt)
with tab_heat:
    names = list(shown["operator"])
    if not names:
        st.info("No operator matches the filters.")
    else:
        if len(names) > 400:
            st.info(f"{len(names):,} operators match: the heatmap shows the first 400; narrow the filters to see others.")
        st.plotly_chart(ex.strategy_heatmap(r, names), key="st_heat")
with tab_graph:
    view = ex.default_view(g)
    if layer_range is not None and view.mode == "blocks":
        view.layer_range = layer_range
    vg = ex.build_view(g, view)
    st.caption(f"{ex.VIEW_MODES[view.mode]} ({len(vg.nodes)} nodes; collapsed layers take the split of their "
               "heaviest operator); change the view on the Model page")
    st.plotly_chart(ex.graph_figure(g, vg, "strategy", r), key="st_graph")

# ---- pipeline stages ----
st.subheader("Pipeline stages")
sched = r.schedule
if sched.stages == 1:
    st.info("The plan has one stage: every device holds the whole model"
            + (f", and each iteration runs {sched.micro_batches} micro-batches, accumulating the gradients."
               if sched.micro_batches > 1 else ".")
            + " Set the pipeline stages in the sidebar to see a pipelined plan.")
else:
    st.caption(f"{sched.stages} stages of {md_text(r.split.stage_machine.summary())}; stage boundaries cross the "
               f"{md_text(', '.join(dict.fromkeys(sched.boundary_levels)))} level"
               + (f"; with {sched.interleave} chunks per device a device holds several runs of layers"
                  if sched.interleave > 1 else ""))
    st.markdown("**The stage of each layer**")
    st.plotly_chart(ex.stage_layer_figure(r), key="st_stage_layers")
    st.markdown("**The 1F1B schedule**")
    tl = timeline.plan_timeline(r)
    st.plotly_chart(timeline.timeline_figure(tl), key="st_timeline")
    st.caption(timeline.timeline_caption(tl))

# ---- override one operator ----
st.subheader("Override one operator's split")
cm = r.cost_model
ops = sorted(cm.planned, key=lambda n: -sum(r.cost.op_seconds(n).values()))
op = st.selectbox("Operator (costliest first)", ops, key="st_ov_op")
chosen = tuple(r.plan.strategies[op])
labels = ex.cut_labels(cm)
strategy: tuple = ()
cols = st.columns(min(len(cm.cuts), 6) or 1)
for t, cut in enumerate(cm.cuts):
    cands = ["not split" if d is None else d for d in cm.candidates(op, strategy)]  # "not split": None
    default = chosen[t] if chosen[t] in cands and strategy == chosen[:t] else "not split"
    choice = cols[t % len(cols)].selectbox(md_text(labels[t]), cands, index=cands.index(default), key=f"st_ov_{op}_{t}")
    strategy = strategy + (None if choice in (None, "not split") else choice,)
if strategy == chosen:
    st.caption(f"This is the plan's choice ({md_text(ex.strategy_label(r, op))}). Change a cut above to see the cost move.")
else:
    try:
        priced = price_override(r, op, strategy)
    except PlanError as exc:
        st.error(md_text(exc))
    else:
        shown = [("stages fixed", priced.fixed), ("re-balanced", priced.rebalanced)] if priced.pipelined \
            else [("", priced.fixed)]
        for label, alt in shown:
            o1, o2, o3 = st.columns(3)
            delta = alt.total_seconds - r.total_seconds
            o1.metric(f"Iteration with the override{f' ({label})' if label else ''}", ex.format_seconds(alt.total_seconds),
                      delta=f"{'+' if delta >= 0 else '-'}{ex.format_seconds(abs(delta))}", delta_color="inverse")
            o2.metric("Speed-up over pure data parallel", ex.format_speedup(alt.speedup_over_data_parallel))
            o3.metric("Memory per device", ex.format_bytes(alt.memory.peak),
                      delta="fits" if alt.memory.fits else "does not fit",
                      delta_color="green" if alt.memory.fits else "red", delta_arrow="off")
        st.caption(md_text(" ".join(priced.lines())))

# ---- compare with a plan file ----
st.subheader("Compare with a plan file")
up = st.file_uploader("Plan JSON (from `python -m planner plan --json` or the Report page)", type=["json"], key="st_plan")
if up is not None:
    raw = up.getvalue()
    try:
        data = ex.read_plan_json(raw)
        other = ctx.cache.evaluate(ctx.source, ctx.bindings, g, ctx.machine, ex.plan_file_options(r.options, data),
                                   data, hashlib.sha256(raw).hexdigest())
    except Exception as exc:  # noqa: BLE001 - ValueError (the file's fault) or a planner bug
        st.error(md_text(f"{up.name}: {exc}" if isinstance(exc, ValueError) else f"{up.name}: {ex.error_text('evaluate', exc)}"))
    else:
        p1, p2, p3 = st.columns(3)
        p1.metric("Current plan", ex.format_seconds(r.total_seconds))
        delta = other.total_seconds - r.total_seconds
        p2.metric(md_text(up.name), ex.format_seconds(other.total_seconds),
                  delta=f"{'+' if delta >= 0 else '-'}{ex.format_seconds(abs(delta))}", delta_color="inverse")
        diff = ex.plan_diff(r, other, "current", "file")
        p3.metric("Operators that differ", f"{len(diff):,} of {len(cm.planned):,}")
        for note in other.notes:
            st.info(md_text(note))
        if data.get("model_sha256") and data["model_sha256"] != ctx.source.sha256:
            st.warning("The file was made for another model file (its model_sha256 differs); operators are matched by name.")
        st.dataframe(diff, hide_index=True, height=320,
                     column_config={c: st.column_config.NumberColumn(format="%.4g") for c in diff.columns if "(µs)" in c})
