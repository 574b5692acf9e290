"""Cost: one operator's cost formula for each candidate split, D-Rec's decisions for it, where
the plan's time and memory go (the iteration's schedule and each pipeline stage), and the
configurations the search tried."""

import streamlit as st

from explorer.run import planned_page
from explorer.safe_markdown import md_code, md_text
from explorer.views import cost as view
from explorer.views.formulas import candidate_strategies, formula_rows
from explorer.views.memory import memory_figure, memory_table
from explorer.views.overview import headline
from explorer.views.pipeline import iteration_figure, stage_table, stage_time_figure, tried_table

ctx = planned_page("Cost")

r = ctx.result
ops = view.costliest_operators(r)
op = st.selectbox("Operator (costliest first)", ops, key="co_op")
st.caption(view.operator_caption(r, op))

st.subheader("Cost formula per candidate split")
st.markdown(
    "A BSP superstep costs $w/F + h\\,g_l + L_l$: local work over the device rate $F$, bytes sent at level $l$ "
    "times its gap $g_l = 1/B_l$, and one latency $L_l$ per step. Below, the operator's compute and "
    "communication for each candidate: with its dimensions as symbols, with their sizes, then each term with "
    "this machine's $F$, $g_l$ and $L_l$ (redistribution with neighbours is not included: it depends on them)."
)
candidates = candidate_strategies(r, op)
rows = formula_rows(r, op, candidates)
best = min(rows, key=lambda x: x["seconds"])
for start in range(0, len(rows), 3):
    cols = st.columns(3)
    for col, row in zip(cols, rows[start:start + 3]):
        with col.container(border=True):
            tag = " (cheapest alone)" if row is best else ""
            st.markdown(f"**{md_text(row['label'])}**{tag}")
            st.caption("per cut: " + md_text(", ".join(d or "–" for d in row["strategy"])))
            st.latex(row["latex_symbolic"])
            st.latex(row["latex_sized"])
            st.latex(row["latex_terms"])
            st.metric("on this machine", row["seconds_text"], label_visibility="collapsed")

st.subheader("D-Rec's decisions for this operator")
trace = view.trace_table(r, op)
if trace is None:
    st.info(f"The {r.plan.algorithm} plan records no decision trace; choose drec or drec+ in the sidebar to see one.")
elif trace.empty:
    traced = view.traced_operators(r)
    st.info("This operator was not decided by the search itself: it follows its neighbours' layouts (folded "
            f"operators get propagated layouts). {len(traced)} operators have a trace, e.g. "
            + ", ".join(md_code(n) for n in traced[:5]))
else:
    st.caption("At each recorded step (one machine cut) the candidates, their own cost, the redistribution "
               "with neighbours already decided, and the winner (✓).")
    st.dataframe(trace, hide_index=True, height=300,
                 column_config={c: st.column_config.NumberColumn(format="%.4g") for c in trace.columns if "(µs)" in c}
                 | {"chosen": st.column_config.CheckboxColumn("chosen")})

st.subheader("Where the time goes")
sched = r.schedule
if r.pipelined:
    st.markdown(f"**One iteration**: {headline(r)['breakdown']}")
    st.plotly_chart(iteration_figure(r), key="co_iteration")
    st.caption("Every slot of the 1F1B schedule takes the slowest stage's time; the bubble is the pipeline filling "
               f"and draining ((P-1)/v = {sched.stages - 1}/{sched.interleave} slots); the gradient all-reduce runs "
               "once per iteration, after the last backward pass. Below, the operators' costs are per micro-batch, "
               "each on its stage's devices.")
if sched.stages > 1:
    st.markdown("**Each stage, per micro-batch**")
    st.plotly_chart(stage_time_figure(r), key="co_stages")
    stages = stage_table(r)
    st.dataframe(stages, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.4g") for c in stages.columns if "(µs)" in c or "(GiB)" in c})
if r.options.mode == "train":
    st.markdown("**Communication hidden behind compute, and exposed** (per iteration; the overlaps are in the sidebar)")
    overlap = view.overlap_table(r)
    st.dataframe(overlap, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.4g") for c in overlap.columns if "(µs)" in c})
left, right = st.columns([3, 2])
with left:
    top = st.slider("Operators shown", 5, min(100, len(ops)) if len(ops) > 5 else 5, min(25, len(ops)), key="co_top",
                    disabled=len(ops) <= 5)
    st.plotly_chart(view.op_cost_figure(r, top), key="co_ops")
with right:
    st.markdown("**Per machine level**")
    st.plotly_chart(view.level_cost_figure(r), key="co_levels")
    st.markdown("**Memory per device**" + (" (the fullest stage)" if sched.stages > 1 else ""))
    st.plotly_chart(memory_figure(r), key="co_mem")
    st.dataframe(memory_table(r), hide_index=True, column_config={"GiB": st.column_config.NumberColumn(format="%.4g")})

if r.tried:
    st.subheader("Configurations tried")
    st.caption("Each configuration the search priced (stages x micro-batches x recomputation x ZeRO); it keeps the "
               "fastest that fits in memory. Leave options on auto in the sidebar to let it choose them.")
    tried = tried_table(r)
    st.dataframe(tried, hide_index=True, column_config={
        "iteration (ms)": st.column_config.NumberColumn(format="%.4g"),
        "memory per device (GiB)": st.column_config.NumberColumn(format="%.3g"),
        "in use": st.column_config.CheckboxColumn("in use")})
