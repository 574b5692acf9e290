"""Strategy: the per-operator plan, a heatmap by machine cut, the graph coloured by split, the
pipeline stages and their 1F1B schedule, overriding one operator, and comparing with an uploaded plan."""

import streamlit as st

from explorer import tables, timeline
from explorer.run import planned_page
from explorer.safe_markdown import md_text
from explorer.views import graph as graph_view
from explorer.views import strategy as view
from explorer.views.cost import costliest_operators, cost_unit
from explorer.views.layers import layer_column_text, layers_of
from explorer.views.model import filter_table
from explorer.views.overview import headline
from explorer.views.pipeline import stage_layer_figure
from explorer.views.splits import cut_labels, strategy_label

ctx = planned_page("Strategy")

r = ctx.result
g = ctx.graph
h = headline(r)
st.caption(view.header_caption(r, h))
st.markdown("**In engineers' terms:** " + md_text(" · ".join(h["parallelism_lines"])))

table = view.strategy_table(r)
layers = layers_of(g)
f1, f2, f3, f4 = st.columns(4)
types = f1.multiselect("Type", sorted(table["type"].unique()), key="st_types")
kinds = f2.multiselect("Kind", sorted(table["kind"].unique()), default=["compute"] if "compute" in set(table["kind"]) else [],
                       key="st_kinds", help="compute operators decide layouts; clear to see every planned operator")
text = f3.text_input("Name contains", key="st_text")
layer_range = None
if layers.count >= 2:
    lo, hi = layers.indices[0], layers.indices[-1]
    layer_range = f4.slider(f"Layers ({md_text(layers.family)}N)", lo, hi, (lo, min(hi, lo + 1)), key="st_layers")
shown = filter_table(table, types, kinds, text, layer_range)

tab_table, tab_heat, tab_graph = st.tabs(["Table", "Heatmap by machine cut", "Graph coloured by split"])
with tab_table:
    st.caption(f"{len(shown):,} of {len(table):,} planned operators; cost columns in µs {cost_unit(r)}"
               + (", each operator on its stage's devices" if r.schedule.stages > 1 else ""))
    st.dataframe(**tables.table(layer_column_text(shown)), hide_index=True, height=380)
with tab_heat:
    names = list(shown["operator"])
    if not names:
        st.info("No operator matches the filters.")
    else:
        if len(names) > 400:
            st.info(f"{len(names):,} operators match: the heatmap shows the first 400; narrow the filters to see others.")
        st.plotly_chart(view.strategy_heatmap(r, names), key="st_heat")
with tab_graph:
    shown_graph = graph_view.default_view(g)
    vg = graph_view.build_view(g, shown_graph)
    st.caption(f"{graph_view.VIEW_MODES[shown_graph.mode]} ({len(vg.nodes)} nodes; a collapsed layer takes the split of "
               "its heaviest operator). Colours name what is split (batch, sequence, hidden, heads, vocabulary, "
               "experts) and over which machine level; hover a node for its time and its dimensions' own letters. "
               "Expand layers on the Model page.")
    st.plotly_chart(graph_view.graph_figure(g, vg, "strategy", r), key="st_graph")

# ---- pipeline stages ----
st.subheader("Pipeline stages")
sched = r.schedule
if sched.stages == 1:
    st.info("The plan has one stage: every device holds the whole model"
            + (f", and each iteration runs {sched.micro_batches} micro-batches"
               + (", accumulating the gradients." if r.options.mode == "train" else ".")
               if sched.micro_batches > 1 else ".")
            + " Set the pipeline stages in the sidebar to see a pipelined plan.")
else:
    st.caption(f"{sched.stages} stages of {md_text(r.split.stage_machine.summary())}; stage boundaries cross the "
               f"{md_text(', '.join(dict.fromkeys(sched.boundary_levels)))} level"
               + (f"; with {sched.interleave} chunks per device a device holds several runs of layers"
                  if sched.interleave > 1 else ""))
    st.markdown("**The stage of each layer**")
    st.plotly_chart(stage_layer_figure(r), key="st_stage_layers")
    st.markdown("**The 1F1B schedule**")
    tl = timeline.plan_timeline(r)
    st.plotly_chart(timeline.timeline_figure(tl), key="st_timeline")
    st.caption(timeline.timeline_caption(tl))

# ---- override one operator ----
st.subheader("Override one operator's split")
cm = r.cost_model
ops = costliest_operators(r)
op = st.selectbox("Operator (costliest first)", ops, key="st_ov_op")
chosen = tuple(r.plan.strategies[op])
labels = cut_labels(cm)
strategy: tuple = ()
cols = st.columns(min(len(cm.cuts), 6) or 1)
for t, cut in enumerate(cm.cuts):
    cands = ["not split" if d is None else d for d in cm.candidates(op, strategy)]  # "not split": None
    default = chosen[t] if chosen[t] in cands and strategy == chosen[:t] else "not split"
    choice = cols[t % len(cols)].selectbox(md_text(labels[t]), cands, index=cands.index(default), key=f"st_ov_{op}_{t}")
    strategy = strategy + (None if choice in (None, "not split") else choice,)
if strategy == chosen:
    st.caption(f"This is the plan's choice ({md_text(strategy_label(r, op))}). Change a cut above to see the cost move.")
else:
    rows, explained, problem = view.override_outcome(r, op, strategy)
    if problem:
        st.error(md_text(problem))
    for row in rows:
        o1, o2, o3 = st.columns(3)
        o1.metric(row["label"], row["iteration"], delta=row["delta"], delta_color="inverse")
        o2.metric("Speed-up vs data parallel", row["speedup"])
        o3.metric("Memory per device", row["memory"], delta="fits" if row["fits"] else "does not fit",
                  delta_color="green" if row["fits"] else "red", delta_arrow="off")
    if rows:
        st.caption(md_text(explained))

# ---- compare with a plan file ----
st.subheader("Compare with a plan file")
up = st.file_uploader("Plan JSON (from `python -m planner plan --json` or the Report page)", type=["json"], key="st_plan")
if up is not None:
    scored, problem = view.score_plan_file(ctx, up.name, up.getvalue())
    if problem:
        st.error(md_text(problem))
    else:
        p1, p2, p3 = st.columns(3)
        p1.metric("Current plan", scored["current"])
        p2.metric(md_text(up.name), scored["other"], delta=scored["delta"], delta_color="inverse")
        p3.metric("Operators that differ", scored["differ"])
        for note in scored["notes"]:
            st.info(md_text(note))
        if scored["other_model"]:
            st.warning("The file was made for another model file (its model_sha256 differs); operators are matched by name.")
        diff = scored["diff"]
        st.dataframe(**tables.table(diff), hide_index=True, height=320)
