"""Report: the plan as JSON (the command line's schema) and the report as HTML, PDF or Markdown."""

import streamlit as st

from explorer import state
from explorer.run import planned_page
from explorer.safe_markdown import md_text
from explorer.tables import table
from explorer.views import report as view

ctx = planned_page("Report")

r = ctx.result
meta = ctx.meta
stem = view.file_stem(r, meta)
st.markdown("Everything needed to reproduce this plan: the tool version, the model's sha256, the bound "
            "dimensions, the machine (YAML, SI units) and every option.")
st.dataframe(**table(view.stamp_table(r, meta)), hide_index=True)

plan_json = view.plan_json_text(r, meta)
markdown = view.report_markdown(r, meta)
st.markdown("**Report** (the tables and charts of every page)")
c = st.columns(3)  # two short rows: no label is cut at 1024 px
c[0].download_button("HTML", lambda: view.report_html(r, meta), file_name=f"{stem}.html", mime="text/html",
                     on_click="ignore", icon=":material/html:",
                     help="the report as one self-contained page: tables and static SVG charts, no script")
make_pdf = c[1].button("PDF", icon=":material/picture_as_pdf:", disabled=not view.pdf_available(),
                       help="the HTML report printed by headless Chromium (a few seconds)" if view.pdf_available()
                       else "needs Chromium on the server (apt-get install chromium); the HTML report prints to PDF "
                            "from any browser")
c[2].download_button("Markdown", markdown, file_name=f"{stem}.md", mime="text/markdown", on_click="ignore",
                     icon=":material/article:", help="the report as Markdown (the preview below)")
st.markdown("**Data** (read back by the command line and the app)")
d = st.columns(3)
d[0].download_button("Plan JSON", plan_json, file_name=f"{stem}.json", mime="application/json", on_click="ignore",
                     icon=":material/data_object:", help="the schema of `python -m planner plan --json`; "
                     "`python -m planner evaluate` and the Strategy page read it back")
d[1].download_button("Machine YAML", ctx.machine.to_yaml(), file_name=f"{ctx.machine.name}.yaml",
                     mime="application/x-yaml", on_click="ignore", icon=":material/dns:",
                     help="the machine in use; the Machine page and `--machine` read it back")
if make_pdf:
    with st.spinner("Printing the report to PDF with headless Chromium"):
        pdf, problem = view.report_pdf(r, meta)
    if problem:
        st.error(f"The PDF could not be made: {md_text(problem)}")
    else:
        st.download_button("Download the PDF", pdf, file_name=f"{stem}.pdf", mime="application/pdf",
                           on_click="ignore", icon=":material/download:", type="primary")
st.caption("The same report from the command line: `python -m planner report PLAN.json --format html|pdf|md`.")

st.subheader("Preview")
with st.container(border=True, height=600):
    st.markdown(markdown)

st.subheader("Run it")
st.markdown("Check that plans are real: the small MLP and transformer block are planned with D-Rec and with "
            "data parallelism for 4 and 8 CPU processes, run for one training step with PyTorch DTensor "
            "(each process a device, gloo over loopback), and compared with a single-process step and with "
            "the cost model's predicted bytes per operator. About a minute on two cores.")
hint = view.verification_hint()
if hint:
    st.info(hint)
elif st.button("Run the verification", icon=":material/play_arrow:"):
    bar = st.progress(0.0, text="starting")
    rows, problem = view.run_verification(lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg))
    if problem:
        st.error(f"The verification could not run: {md_text(problem)}")
    else:
        state.set_verification_rows(rows)
if state.verification_rows():
    runs, ops = view.verification_frames(state.verification_rows())
    st.success(view.verification_summary(state.verification_rows()))
    st.dataframe(**table(runs), hide_index=True)
    st.dataframe(**table(ops), hide_index=True)
