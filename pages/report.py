"""Report: the plan as JSON (the command line's schema) and a self-contained HTML or Markdown report."""

import json

import pandas as pd
import streamlit as st

import app
from explorer import core as ex
from explorer.safe_markdown import md_code, md_text

ctx: ex.Context = app.planned_page("Report")

r = ctx.result
meta = ctx.meta
stem = f"plan_{ctx.source.label.rsplit('.', 1)[0]}_{ctx.machine.name}_{r.plan.algorithm}".replace("+", "plus")
st.markdown("Everything needed to reproduce this plan: the tool version, the model's sha256, the bound "
            "dimensions, the machine (YAML, SI units) and every option.")
st.dataframe(pd.DataFrame(ex.report_stamp(r, meta), columns=["field", "value"]), hide_index=True)

plan_json = json.dumps(ex.report_json(r, meta), indent=2)
markdown = ex.report_markdown(r, meta)
c = st.columns(4)
c[0].download_button("Plan JSON", plan_json, file_name=f"{stem}.json", mime="application/json", on_click="ignore",
                     icon=":material/data_object:", help="the schema of `python -m planner plan --json`; "
                     "`python -m planner evaluate` and the Strategy page read it back")
c[1].download_button("Report (HTML)", lambda: ex.report_html(r, meta), file_name=f"{stem}.html", mime="text/html",
                     on_click="ignore", icon=":material/html:", help="self-contained: tables, figures and plotly.js inlined")
c[2].download_button("Report (Markdown)", markdown, file_name=f"{stem}.md", mime="text/markdown", on_click="ignore",
                     icon=":material/article:")
c[3].download_button("Machine YAML", ctx.machine.to_yaml(), file_name=f"{ctx.machine.name}.yaml",
                     mime="application/x-yaml", on_click="ignore", icon=":material/dns:")

st.subheader("Preview")
with st.container(border=True, height=600):
    st.markdown(markdown)

st.subheader("Run it")
st.markdown("Check that plans are real: the small MLP and transformer block are planned with D-Rec and with "
            "data parallelism for 4 and 8 CPU processes, run for one training step with PyTorch DTensor "
            "(each process a device, gloo over loopback), and compared with a single-process step and with "
            "the cost model's predicted bytes per operator. About a minute on two cores.")
from planner import verify  # noqa: E402  (imports torch lazily)

if not verify.torch_available():
    st.info(verify.INSTALL_HINT)
elif st.button("Run the verification", icon=":material/play_arrow:"):
    bar = st.progress(0.0, text="starting")
    try:
        rows = verify.run_verification(progress=lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg))
    except (verify.VerificationError, ValueError) as exc:
        st.error(f"The verification could not run: {md_text(exc)}")
    else:
        st.session_state.verification_rows = rows
if st.session_state.get("verification_rows"):
    runs, ops = ex.verification_frames(st.session_state.verification_rows)
    s = verify.summary(st.session_state.verification_rows)
    st.success(f"Numerics match in {s['numerics_match']} of {s['runs']} runs; predicted and measured bytes agree "
               f"within 10% on {s['within_tolerance']} of {s['operators']} operators.")
    st.dataframe(runs, hide_index=True)
    st.dataframe(ops, hide_index=True)
