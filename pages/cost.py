"""Cost: one operator's cost formula for each candidate split, D-Rec's decisions for it, where
the plan's time and memory go (the iteration's schedule and each pipeline stage), and the
configurations the search tried."""

import streamlit as st

from explorer.run import planned_page
from explorer.safe_markdown import md_code, md_text
from explorer.tables import table
from explorer.views import cost as view
from explorer.views.formulas import CARDS_PER_ROW, FORMULA_CSS, candidate_strategies, formula_legend, formula_rows
from explorer.views.memory import capacity_text, memory_figure, memory_table
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
st.html(FORMULA_CSS)
for start in range(0, len(rows), CARDS_PER_ROW):
    cols = st.columns(CARDS_PER_ROW)
    for col, row in zip(cols, rows[start:start + CARDS_PER_ROW]):
        with col.container(border=True):
            tag = " (cheapest alone)" if row is best else ""
            st.markdown(f"**{md_text(row['label'])}**{tag}")
            st.caption("per cut: " + md_text(", ".join(d or "–" for d in row["strategy"])))
            st.latex(row["latex_symbolic"])
            st.latex(row["latex_sized"])
            st.latex(row["latex_terms"])
            st.metric("on this machine", row["seconds_text"], label_visibility="collapsed")
legend, legend_help = formula_legend(r, op)
st.markdown(legend, help=legend_help)

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
    st.caption(view.TRACE_CAPTION)
    st.dataframe(**table(trace), hide_index=True, height=300)

st.subheader("Where the time goes")
sched = r.schedule
if r.pipelined:
    st.markdown(f"**One iteration**: {headline(r)['breakdown']}")
    st.plotly_chart(iteration_figure(r), key="co_iteration")
    st.caption("Every slot of the " + ("1F1B schedule" if r.options.mode == "train" else "pipeline")
               + " takes the slowest stage's time; the bubble is the pipeline filling "
               f"and draining ((P-1)/v = {sched.stages - 1}/{sched.interleave} slots)"
               + ("; the gradient all-reduce runs once per iteration, after the last backward pass"
                  if r.options.mode == "train" else "")
               + ". Below, the operators' costs are per micro-batch, each on its stage's devices.")
if sched.stages > 1:
    st.markdown("**Each stage, per micro-batch**")
    st.plotly_chart(stage_time_figure(r), key="co_stages")
    stages = stage_table(r)
    st.dataframe(**table(stages), hide_index=True)
if r.options.mode == "train":
    st.markdown("**Communication hidden behind compute, and exposed** (per iteration; the overlaps are in the sidebar)")
    st.dataframe(**table(view.overlap_table(r)), hide_index=True)
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
    st.caption(capacity_text(r))
    st.dataframe(**table(memory_table(r)), hide_index=True)

if r.tried:
    st.subheader("Configurations tried")
    st.caption("Each configuration the search priced (stages x micro-batches x recomputation x ZeRO); it keeps the "
               "fastest that fits in memory. Leave options on auto in the sidebar to let it choose them.")
    tried = tried_table(r)
    st.dataframe(**table(tried), hide_index=True)
