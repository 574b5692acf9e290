"""Overview: the headline of the current plan and what the numbers mean."""

import streamlit as st

from explorer.run import page_context
from explorer.safe_markdown import md_text
from explorer.tables import format_number
from explorer.views.cost import level_cost_figure
from explorer.views.memory import memory_figure
from explorer.views.overview import explanation, headline, split_by_level, story
from explorer.views.pipeline import iteration_figure

ctx = page_context()
st.title("Overview")
st.caption(f"{md_text(ctx.source.label)} · {md_text(ctx.machine.summary())} · {ctx.options.mode} · {ctx.options.algorithm}")

if ctx.model_error:
    st.error(f"The model cannot be planned: {md_text(ctx.model_error)}")
    st.page_link("pages/model.py", label="Choose another model or fix the bindings on the Model page", icon=":material/schema:")
    st.stop()
if ctx.plan_error:
    st.error(md_text(ctx.no_plan))
    st.stop()

r = ctx.result
h = headline(r)
staged = r.schedule.stages > 1
c = [*st.columns(3), *st.columns(3)]  # two rows of three: no label is cut at 1024 px
c[0].metric("Devices", f"{h['devices']:,}", help=md_text(ctx.machine.summary()))
c[1].metric("Predicted iteration time", h["iteration"], help=h["breakdown"])
c[2].metric("Speed-up vs data parallel", h["speedup"], help=f"over pure data parallelism, which takes {h['data_parallel']}")
c[3].metric("TFLOP/s per device", format_number(h["tflops_model"]),
            help=f"the model's FLOPs per iteration over the iteration time and the devices; counting recomputed "
                 f"FLOPs too (hardware): {format_number(h['tflops_hardware'])}")
c[4].metric("Memory per device", h["memory_peak"],
            delta=f"of {h['memory_capacity']}: " + ("fits" if h["fits"] else f"{h['shortfall']} short"),
            help=f"stage {h['fullest_stage']}, the fullest" if staged else None,  # the delta stays short: not cut
            delta_color="green" if h["fits"] else "red", delta_arrow="off")
c[5].metric("Search time", h["search"], help=f"{r.plan.algorithm}, {len(r.cost_model.planned)} operators planned")
st.caption(f"Configuration: {h['configuration']}")
st.caption(f"Parallelism: {md_text(h['parallelism_lines'][0])}")

st.markdown(story(r, ctx.machine_label))
with st.expander("What the numbers mean", expanded=False):
    st.markdown(explanation(r, ctx.source.label, machine_label=ctx.machine_label))
for note in r.notes:
    st.info(md_text(note))

left, right = st.columns(2)
with left:
    st.subheader("Where the time goes")
    if r.pipelined:
        st.plotly_chart(iteration_figure(r), key="ov_iteration")
        st.caption("One iteration: the micro-batches through the slowest stage, the pipeline's bubble"
                   + (" and the gradient sync" if r.options.mode == "train" else "")
                   + "; the Cost page has each stage, the Strategy page the schedule.")
    else:
        st.plotly_chart(level_cost_figure(r), key="ov_levels")
with right:
    st.subheader("Memory per device" + (" (fullest stage)" if staged else ""))
    st.plotly_chart(memory_figure(r), key="ov_memory")
    st.caption(f"Split by level: {md_text(split_by_level(r))}")

st.divider()
cols = st.columns(6)
for col, (path, label) in zip(cols, [("pages/model.py", "Model"), ("pages/machine.py", "Machine"),
                                     ("pages/strategy.py", "Strategy"), ("pages/cost.py", "Cost"),
                                     ("pages/compare.py", "Compare"), ("pages/report.py", "Report")]):
    col.page_link(path, label=label)
