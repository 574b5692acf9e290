"""Machine: presets, device fields, the levels table, YAML in and out, and a picture of the tree."""

import streamlit as st

from explorer import state
from explorer.run import page_context
from explorer.safe_markdown import md_code, md_text
from explorer.sources import preset_names
from explorer.tables import format_number
from explorer.views import machine as view

ctx = page_context()
st.title("Machine")

# Every change is applied before the next script run (by a callback, or for the levels table by
# explorer.state.apply_level_edits), so the sidebar and the plan use the new machine in that same
# run. A change that is not a valid machine keeps the machine in use and leaves a message here.

machine = ctx.machine
ver = state.machine_version()
errors = state.machine_page_errors()
presets = preset_names()
state.seed("mc_preset", ctx.machine_label if ctx.machine_label in presets else None)
top = st.columns([2, 3])
top[0].selectbox("Preset", presets, key="mc_preset", on_change=state.on_preset, args=("mc_preset",),
                 placeholder=view.machine_label_text(machine, ctx.machine_label), help="machines/*.yaml")
top[1].markdown(f"**In use:** {md_code(view.machine_label_text(machine, ctx.machine_label))} — {md_text(machine.summary())}")
if errors.get("preset"):
    st.error(md_text(errors["preset"]))

# ---- what the last change did to the plan ----
before = state.machine_before()
effect = view.edit_effect(before, ctx.result, ctx.machine_label, view.repriced_edit(ctx, before))
if effect is not None:
    e1, e2, e3 = st.columns(3)
    if "iteration_repriced" in effect:  # a link or device edit: the plan in use re-priced first
        e1.metric("Current plan on the edited machine", effect["iteration_repriced"], delta=effect["repriced_delta"],
                  delta_color="inverse", help=f"re-priced at once, nothing searched; before: {effect['iteration_before']}")
        e2.metric("Re-planned iteration time", effect["iteration_after"], delta=effect["iteration_delta"],
                  delta_color="inverse", help=f"against before the edit: {effect['iteration_before']}")
    else:
        e1.metric("Iteration time", effect["iteration_after"], delta=effect["iteration_delta"],
                  delta_color="inverse", help=f"before: {effect['iteration_before']}")
    e3.metric("Speed-up", effect["speedup_after"], help="over pure data parallelism",
              delta=f"was {effect['speedup_before']}", delta_color="off", delta_arrow="off")
    st.caption(md_text(effect["caption"]) + " A link or device edit shows the plan in use re-priced at once, then "
               "re-plans (the bar above shows the progress); a device count or tree edit re-plans.")
    if "gain" in effect:
        st.info(md_text(effect["gain"]))
elif ctx.result is not None:
    st.caption(f"Plan on this machine: {md_text(ctx.result.plan.algorithm)}, {ctx.result.machine.num_devices:,} devices; "
               "edit a field below to see the iteration time and speed-up before and after.")

# ---- device ----
st.subheader("Device")
d = machine.device
fields = view.device_fields(machine)
c = st.columns(4)
c[0].text_input("Device name", d.name, key=f"mc_dev_name_{ver}", on_change=state.on_device_edit, args=(ver,))
c[1].number_input("Peak (TFLOP/s)", value=fields["peak_tflops"], format="%.4g", key=f"mc_dev_peak_{ver}",
                  on_change=state.on_device_edit, args=(ver,), help="datasheet peak for the precision used")
c[2].number_input("Memory (GiB)", value=fields["memory_gib"], format="%.4g", key=f"mc_dev_mem_{ver}",
                  on_change=state.on_device_edit, args=(ver,))
c[3].number_input("Compute efficiency", value=float(d.compute_efficiency), step=0.05, format="%.3g",
                  key=f"mc_dev_eff_{ver}", on_change=state.on_device_edit, args=(ver,),
                  help="fraction of peak that large kernels reach, in (0, 1]")
if errors.get("device"):
    st.error(md_text(errors["device"]))

# ---- levels ----
st.subheader("Levels (outermost first)")
st.caption("Each level: how many children per parent (arity), the per-device link bandwidth in GB/s and the "
           "superstep latency in µs. Add or delete rows to change the tree; changes apply at once.")
st.data_editor(
    view.levels_frame(machine), key=f"mc_levels_{ver}", num_rows="dynamic", hide_index=True,
    column_config={
        "name": st.column_config.TextColumn("name", help="e.g. node, gpu"),
        "arity": st.column_config.NumberColumn("arity", help="children per parent, a whole number >= 1", step=1),
        "bandwidth (GB/s)": st.column_config.NumberColumn("bandwidth (GB/s)", format="plain",
                                                          help="per device, per direction"),
        "latency (µs)": st.column_config.NumberColumn("latency (µs)", format="plain"),
    },
)
if errors.get("levels"):
    st.error(md_text(errors["levels"]))

m1, m2, m3 = st.columns(3)
m1.metric("Devices", f"{machine.num_devices:,}")
m2.metric("Device peak (TFLOP/s)", format_number(fields["peak_tflops"]))
m3.metric("Device memory (GiB)", format_number(fields["memory_gib"]))
st.plotly_chart(view.machine_tree_figure(machine, label=ctx.machine_label), key="mc_tree")
st.caption("Cut schedule (D-Rec splits the machine one prime at a time, outermost level first): "
           + (", ".join(md_text(cut) for cut in view.cut_schedule(machine)) or "none (one device)"))

# ---- YAML ----
st.subheader("YAML")
y1, y2 = st.columns(2)
y1.download_button("Download machine YAML", machine.to_yaml(), file_name=f"{machine.name}.yaml",
                   mime="application/x-yaml", on_click="ignore")
y2.file_uploader("Upload machine YAML", type=["yaml", "yml", "json"], key="mc_upload", on_change=state.on_machine_upload,
                   args=("mc_upload",))
if errors.get("yaml"):
    st.error(md_text(errors["yaml"]))
with st.expander("YAML of the machine in use (SI units)"):
    st.code(machine.to_yaml(), language="yaml")
