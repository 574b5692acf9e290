"""Model: pick a sample or upload ONNX, bind symbolic dimensions, the operator table and the graph."""

import streamlit as st

from explorer import state, tables
from explorer.run import page_context
from explorer.safe_markdown import md_code, md_text
from explorer.sources import sample_paths
from explorer.views import graph as graph_view
from explorer.views.layers import layer_column_text, layers_of
from explorer.views.model import filter_table, model_metrics, operator_table

ctx = page_context()
st.title("Model")

left, right = st.columns(2)
with left:
    samples = list(sample_paths())
    state.seed("mp_sample", ctx.source.label if ctx.source.kind == "sample" and ctx.source.label in samples else None)
    st.selectbox("Sample model", samples, key="mp_sample", on_change=state.on_sample, args=("mp_sample",),
                 placeholder="uploaded model in use",
                 help="ONNX files in sample_models/ (weights stripped: shapes only)")
with right:
    key = state.upload_key()
    st.file_uploader("Or upload an ONNX model", type=["onnx"], key=key, on_change=state.on_model_upload,
                     args=(key, ctx.cache),
                     help="Up to 2 GB (server.maxUploadSize). For bigger models run "
                          "`python -m planner strip-weights model.onnx small.onnx` first.")

if state.upload_error():
    st.error(md_text(state.upload_error()) + " — the model in use is unchanged.")

st.markdown(f"**In use:** {md_code(ctx.source.label)} ({'sample' if ctx.source.kind == 'sample' else 'uploaded'}), "
            f"sha256 `{ctx.source.short_sha}…`")

if ctx.dims:
    cols = st.columns(max(len(ctx.dims), 4))
    for i, dim in enumerate(ctx.dims):
        key = f"mp_bind_{dim}"
        state.seed(key, ctx.bindings[dim])
        cols[i].number_input(f"bind {md_text(dim)}", min_value=1, step=1, key=key, on_change=state.on_binding,
                             args=(dim, key),
                             help="value of the symbolic input dimension (batch: the global batch)")

if ctx.model_error:
    st.error(md_text(ctx.model_error))
    st.stop()

g = ctx.graph
for col, (label, value) in zip([*st.columns(3), *st.columns(3)], model_metrics(g)):  # two rows: nothing cut at 1024 px
    col.metric(label, value)
layers = layers_of(g)

if g.unsupported_op_types:
    st.warning("Unsupported operator types (planned as replicated, costs approximate): "
               + md_text(", ".join(g.unsupported_op_types)))
if g.warnings:
    with st.expander(tables.plural(len(g.warnings), "import warning")):
        for w in g.warnings:
            st.markdown("- " + md_text(w))

# ---- operator table ----
st.subheader("Operators")
table = operator_table(g)
f1, f2, f3, f4 = st.columns([2, 2, 2, 2])
types = f1.multiselect("Type", sorted(table["type"].unique()), key="mp_types")
kinds = f2.multiselect("Kind", sorted(table["kind"].unique()), key="mp_kinds",
                       help="compute: decides layouts; follow: takes its neighbours' layout; opaque: unsupported")
text = f3.text_input("Name contains", key="mp_text")
layer_range = None
if layers.count >= 2:
    lo, hi = layers.indices[0], layers.indices[-1]
    layer_range = f4.slider(f"Layers ({md_text(layers.family)}N)", lo, hi, (lo, hi), key="mp_layers")
shown = filter_table(table, types, kinds, text, layer_range)
st.caption(f"{len(shown):,} of {len(table):,} operators (shape arithmetic hidden)")
st.dataframe(**tables.table(layer_column_text(shown), {"parameters": st.column_config.NumberColumn(format="localized")}),
             hide_index=True, height=320)

# ---- graph ----
st.subheader("Graph")
default = graph_view.default_view(g)
g1, g2, g3, g4 = st.columns([3, 3, 2, 2])
modes = list(graph_view.VIEW_MODES)
mode = g1.selectbox("View", modes, index=modes.index(default.mode), format_func=graph_view.VIEW_MODES.get, key="mp_view")
view = graph_view.GraphView(mode)
if mode in ("blocks", "layers") and layers.count >= 2:
    lo, hi = layers.indices[0], layers.indices[-1]
    view.expand = mode == "layers" or g2.toggle("Expand layers", key="mp_view_expand",
                                                help="draw a range of layers operator by operator")
    if view.expand:
        view.layer_range = g2.slider("Expanded layers" if mode == "blocks" else "Layers", lo, hi,
                                     default.layer_range if default.mode in ("blocks", "layers") else (lo, lo), key="mp_view_layers")
elif mode == "heaviest":
    view.top_n = g2.slider("N heaviest", 5, 200, default.top_n, key="mp_view_top")
elif mode == "range":
    n = len(g.operators)
    view.position_range = g2.slider("Topological positions", 0, max(n - 1, 1), (0, min(n - 1, 200)), key="mp_view_pos")
color_by = g3.selectbox("Colour by", ["kind", "type", "strategy"], key="mp_color")
orientation = g4.selectbox("Layout", ["left-right", "top-down"], key="mp_orient")
vg = graph_view.build_view(g, view)
if vg.note:
    st.info(vg.note)
st.caption(f"{len(vg.nodes):,} nodes, {len(vg.edges):,} edges; marker size grows with FLOPs; hover for details")
st.plotly_chart(graph_view.graph_figure(g, vg, color_by, ctx.result, orientation), key="mp_graph")
