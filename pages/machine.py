"""Machine: presets, device fields, the levels table, YAML in and out, and a picture of the tree."""

import streamlit as st

import app
from explorer import core as ex
from explorer.safe_markdown import md_code, md_text
from planner.machine.tree import Machine, MachineError, load_preset

ctx: ex.Context = app.page_context()
ss = st.session_state
st.title("Machine")

# Every change is applied before the next script run (by a callback, or for the levels table by
# app.apply_level_edits), so the sidebar and the plan use the new machine in that same run. A
# change that is not a valid machine keeps the machine in use and leaves a message here.


def _use(new: Machine, label: str) -> None:
    ss.machine, ss.machine_label = new, label
    ss.machine_version = ss.get("machine_version", 0) + 1  # fresh editors for the new machine
    ss.machine_errors = {}


def _fail(where: str, message: str) -> None:
    ss.machine_errors = {**ss.get("machine_errors", {}), where: message}


def _choose_preset() -> None:
    name = ss.get("mc_preset")
    if name:
        try:
            _use(load_preset(name), name)
        except MachineError as exc:
            _fail("preset", str(exc))


def _edit_device(version: int) -> None:
    m = ss.machine
    try:
        new = ex.machine_with_device(m, ss[f"mc_dev_name_{version}"], ss[f"mc_dev_peak_{version}"],
                                     ss[f"mc_dev_mem_{version}"], ss[f"mc_dev_eff_{version}"])
    except MachineError as exc:
        _fail("device", f"Device not changed: {exc}")
    else:
        _use(new, "custom")


def _upload_yaml() -> None:
    up = ss.get("mc_upload")
    if up is None:
        return
    text = up.getvalue()
    try:
        new = Machine.from_json(text) if up.name.endswith(".json") else Machine.from_yaml(text)
    except MachineError as exc:
        _fail("yaml", f"{up.name}: {exc} — the machine in use is unchanged.")
    else:
        _use(new, "custom")


machine: Machine = ctx.machine
ver = ss.get("machine_version", 0)
errors = dict(ss.get("machine_errors", {}))
# messages about a field the user has since left (another page, a cleared upload) are stale
if f"mc_dev_eff_{ver}" not in ss:
    errors.pop("device", None)
if ss.get("mc_upload") is None:
    errors.pop("yaml", None)
ss.machine_errors = errors
presets = ex.preset_names()
ss["mc_preset"] = ctx.machine_label if ctx.machine_label in presets else None
top = st.columns([2, 3])
top[0].selectbox("Preset", presets, key="mc_preset", on_change=_choose_preset, placeholder="custom machine",
                 help="machines/*.yaml")
top[1].markdown(f"**In use:** {md_code(ctx.machine_label)} — {md_text(machine.summary())}")
if errors.get("preset"):
    st.error(md_text(errors["preset"]))

# ---- device ----
st.subheader("Device")
d = machine.device
c = st.columns(4)
c[0].text_input("Device name", d.name, key=f"mc_dev_name_{ver}", on_change=_edit_device, args=(ver,))
c[1].number_input("Peak (TFLOP/s)", value=ex.tflops(d.peak_flops), format="%.4g", key=f"mc_dev_peak_{ver}",
                  on_change=_edit_device, args=(ver,), help="datasheet peak for the precision used")
c[2].number_input("Memory (GiB)", value=ex.gib(d.memory_bytes), format="%.4g", key=f"mc_dev_mem_{ver}",
                  on_change=_edit_device, args=(ver,))
c[3].number_input("Compute efficiency", value=float(d.compute_efficiency), step=0.05, format="%.3g",
                  key=f"mc_dev_eff_{ver}", on_change=_edit_device, args=(ver,),
                  help="fraction of peak that large kernels reach, in (0, 1]")
if errors.get("device"):
    st.error(md_text(errors["device"]))

# ---- levels ----
st.subheader("Levels (outermost first)")
st.caption("Each level: how many children per parent (arity), the per-device link bandwidth in GB/s and the "
           "superstep latency in µs. Add or delete rows to change the tree; changes apply at once.")
st.data_editor(
    ex.levels_frame(machine), key=f"mc_levels_{ver}", num_rows="dynamic", hide_index=True,
    column_config={
        "name": st.column_config.TextColumn("name", help="e.g. node, gpu"),
        "arity": st.column_config.NumberColumn("arity", help="children per parent, a whole number >= 1", step=1),
        "bandwidth (GB/s)": st.column_config.NumberColumn("bandwidth (GB/s)", format="%.4g",
                                                          help="per device, per direction"),
        "latency (µs)": st.column_config.NumberColumn("latency (µs)", format="%.4g"),
    },
)
if errors.get("levels"):
    st.error(md_text(errors["levels"]))

m1, m2, m3 = st.columns(3)
m1.metric("Devices", f"{machine.num_devices:,}")
m2.metric("Device peak", f"{ex.tflops(machine.device.peak_flops):.4g} TFLOP/s")
m3.metric("Device memory", f"{ex.gib(machine.device.memory_bytes):.3g} GiB")
st.plotly_chart(ex.machine_tree_figure(machine), key="mc_tree")
st.caption("Cut schedule (D-Rec splits the machine one prime at a time, outermost level first): "
           + (", ".join(f"{md_text(c.level_name)} x{c.factor}" for c in machine.cuts()) or "none (one device)"))

# ---- YAML ----
st.subheader("YAML")
y1, y2 = st.columns(2)
y1.download_button("Download machine YAML", machine.to_yaml(), file_name=f"{machine.name}.yaml",
                   mime="application/x-yaml", on_click="ignore")
y2.file_uploader("Upload machine YAML", type=["yaml", "yml", "json"], key="mc_upload", on_change=_upload_yaml)
if errors.get("yaml"):
    st.error(md_text(errors["yaml"]))
with st.expander("YAML of the machine in use (SI units)"):
    st.code(machine.to_yaml(), language="yaml")
