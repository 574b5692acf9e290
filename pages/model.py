"""Model: pick a sample or upload ONNX, bind symbolic dimensions, the operator table and the graph."""

import streamlit as st

import app
from explorer import upload as app_upload
from explorer import core as ex
from explorer.safe_markdown import md_code, md_text
from planner.onnx.importer import ModelImportError

ctx: ex.Context = app.page_context()
ss = st.session_state
st.title("Model")


def _choose_sample() -> None:
    name = ss.get("mp_sample")
    if name:
        ss.source = ex.sample_source(name)
        ss.upload_bytes = None
        ss.upload_error = None


def _sync_binding(dim: str, key: str) -> None:
    value = ss.get(key)
    if isinstance(value, (int, float)) and value >= 1:
        ss.bindings = {**ss.bindings, dim: int(value)}


def _upload_key() -> str:
    """The uploader's key: a new one after every upload, so that the uploader is empty again and
    the next file is an addition. (Replacing the file a single-file uploader holds takes two
    runs, one without a file and one with the new file; when the new file arrives during the
    first run, Streamlit can drop it as orphaned and the upload is silently lost.)"""
    n = ss.get("upload_nonce", 0)
    return "mp_upload" if n == 0 else f"mp_upload_{n}"


def _on_upload(key: str) -> None:
    """Import the uploaded file before the run (so the sidebar and the plan use it at once);
    a file that is not a model leaves the model in use unchanged and says why. The weights are
    dropped on the way (explorer.upload): the session keeps the model's shapes only."""
    upload = ss.get(key)
    if upload is None:
        return
    name = upload.name
    try:
        source, data, bindings = app_upload.accept_upload(name, upload.getvalue(), ctx.cache, ss.bindings)
    except ModelImportError as exc:
        ss.upload_error = f"{name}: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever a malformed file triggers, the user sees a message
        ss.upload_error = (f"{name} could not be read as an ONNX model ({type(exc).__name__}: {exc}); "
                           "export it again with torch.onnx.export or check the file")
    else:
        ss.source, ss.upload_bytes, ss.bindings, ss.upload_error = source, data, bindings, None
    ss.upload_nonce = ss.get("upload_nonce", 0) + 1  # an empty uploader for the next file


left, right = st.columns(2)
with left:
    samples = list(ex.sample_paths())
    current = ctx.source.label if ctx.source.kind == "sample" and ctx.source.label in samples else None
    ss["mp_sample"] = current
    st.selectbox("Sample model", samples, key="mp_sample", on_change=_choose_sample, placeholder="uploaded model in use",
                 help="ONNX files in sample_models/ (weights stripped: shapes only)")
with right:
    key = _upload_key()
    st.file_uploader("Or upload an ONNX model", type=["onnx"], key=key, on_change=_on_upload, args=(key,),
                     help="Up to 2 GB (server.maxUploadSize). For bigger models run "
                          "`python -m planner strip-weights model.onnx small.onnx` first.")

if ss.get("upload_error"):
    st.error(md_text(ss.upload_error) + " — the model in use is unchanged.")

st.markdown(f"**In use:** {md_code(ctx.source.label)} ({'sample' if ctx.source.kind == 'sample' else 'uploaded'}), "
            f"sha256 `{ctx.source.short_sha}…`")

if ctx.dims:
    cols = st.columns(max(len(ctx.dims), 4))
    for i, dim in enumerate(ctx.dims):
        key = f"mp_bind_{dim}"
        ss[key] = ctx.bindings[dim]
        cols[i].number_input(f"bind {md_text(dim)}", min_value=1, step=1, key=key, on_change=_sync_binding, args=(dim, key),
                             help="value of the symbolic input dimension (batch: the global batch)")

if ctx.model_error:
    st.error(md_text(ctx.model_error))
    st.stop()

g = ctx.graph
s = g.summary()
c = st.columns(5)
c[0].metric("Operators", f"{s['operators']:,}")
c[1].metric("Planned operators", f"{len(g.planned_operators()):,}")
c[2].metric("Parameters", ex.format_count(s["parameters"]))
c[3].metric("Forward FLOPs", ex.format_flop_count(s["flops_forward"]))
layers = ex.layers_of(g)
c[4].metric("Repeated layers", f"{layers.count}" if layers.count >= 2 else "none found")

if g.unsupported_op_types:
    st.warning("Unsupported operator types (planned as replicated, costs approximate): "
               + md_text(", ".join(g.unsupported_op_types)))
if g.warnings:
    with st.expander(f"{len(g.warnings)} import warning(s)"):
        for w in g.warnings:
            st.markdown("- " + md_text(w))

# ---- operator table ----
st.subheader("Operators")
table = ex.operator_table(g)
f1, f2, f3, f4 = st.columns([2, 2, 2, 2])
types = f1.multiselect("Type", sorted(table["type"].unique()), key="mp_types")
kinds = f2.multiselect("Kind", sorted(table["kind"].unique()), key="mp_kinds",
                       help="compute: decides layouts; follow: takes its neighbours' layout; opaque: unsupported")
text = f3.text_input("Name contains", key="mp_text")
layer_range = None
if layers.count >= 2:
    lo, hi = layers.indices[0], layers.indices[-1]
    layer_range = f4.slider(f"Layers ({md_text(layers.family)}N)", lo, hi, (lo, hi), key="mp_layers")
shown = ex.filter_table(table, types, kinds, text, layer_range)
st.caption(f"{len(shown):,} of {len(table):,} operators (shape arithmetic hidden)")
st.dataframe(shown, hide_index=True, height=320, column_config={
    "GFLOP": st.column_config.NumberColumn(format="%.4g"),
    "parameters": st.column_config.NumberColumn(format="localized"),
})

# ---- graph ----
st.subheader("Graph")
default = ex.default_view(g)
g1, g2, g3, g4 = st.columns([3, 3, 2, 2])
modes = list(ex.VIEW_MODES)
mode = g1.selectbox("View", modes, index=modes.index(default.mode), format_func=ex.VIEW_MODES.get, key="mp_view")
view = ex.GraphView(mode)
if mode in ("blocks", "layers"):
    if layers.count >= 2:
        lo, hi = layers.indices[0], layers.indices[-1]
        view.layer_range = g2.slider("Expanded layers" if mode == "blocks" else "Layers", lo, hi,
                                     default.layer_range if default.mode in ("blocks", "layers") else (lo, lo), key="mp_view_layers")
    else:
        g2.info("No repeated layers in the names: the heaviest operators are shown.")
elif mode == "heaviest":
    view.top_n = g2.slider("N heaviest", 5, 200, default.top_n, key="mp_view_top")
elif mode == "range":
    n = len(g.operators)
    view.position_range = g2.slider("Topological positions", 0, max(n - 1, 1), (0, min(n - 1, 200)), key="mp_view_pos")
color_by = g3.selectbox("Colour by", ["kind", "type", "strategy"], key="mp_color")
orientation = g4.selectbox("Layout", ["left-right", "top-down"], key="mp_orient")
vg = ex.build_view(g, view)
if vg.note:
    st.info(vg.note)
st.caption(f"{len(vg.nodes):,} nodes, {len(vg.edges):,} edges; marker size grows with FLOPs; hover for details")
st.plotly_chart(ex.graph_figure(g, vg, color_by, ctx.result, orientation), key="mp_graph")
