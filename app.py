"""The explorer: ``streamlit run app.py``.

This file holds the navigation and the shared sidebar (what is in use: model, bound dimensions,
machine, mode, precision, optimizer, algorithm, and the pipeline and memory options: stages,
micro-batches, recomputation, ZeRO, interleaving, gradient-sync overlap), keeps that state in the URL, and plans once per
run through a cache keyed by the model's sha256, the machine and the options. Each page in
``pages/`` calls :func:`page_context` for the result and draws; the helpers live in
``explorer/core.py``.

Why pages call :func:`page_context` rather than read the session state: because the repository
has a ``pages/`` directory, Streamlit runs a page *without* this entry script when a fresh server's
first request asks for that page by its URL (and ``AppTest.switch_page`` always does). The page
then builds the navigation and the context itself, so every page works however it is reached.
"""

from __future__ import annotations

import os

import streamlit as st
from streamlit import config as st_config

from planner import __version__
from explorer import core as ex
from planner.options import ALGORITHMS, OPTIMIZERS, PRECISION_BYTES, RECOMPUTE, ZERO_STAGES, OptionsError, PlanOptions
from planner.machine.tree import Machine, MachineError, load_preset
from planner.onnx.importer import ModelImportError
from explorer.plan_pool import PlanPool
from explorer.safe_markdown import md_code, md_text
from explorer.url_state import unknown_bindings_message

@st.cache_resource(show_spinner=False)
def plan_cache() -> ex.PlanCache:
    """One cache per server process, shared by every session (results are read-only), with the
    pool of planning processes (one per core; explorer/plan_pool.py). Under AppTest, or with
    PLANNER_APP_POOL=0, plans are made on the script thread."""
    cache = ex.PlanCache()
    if not st_config.get_option("global.appTest") and os.environ.get("PLANNER_APP_POOL", "1") != "0":
        cache.pool = PlanPool()
    return cache


def _init_state() -> None:
    """First run of a session: the URL's model, machine and options, or the defaults."""
    ss = st.session_state
    if ss.get("_init"):
        return
    url, problems = ex.decode_url_state(dict(st.query_params.to_dict()))
    try:
        ss.source = ex.sample_source(url.model)
    except ModelImportError as exc:
        problems.append(str(exc))
        ss.source = ex.sample_source(ex.DEFAULT_SAMPLE)
    ss.upload_bytes = None
    ss.bindings = dict(url.bindings)
    ss.url_link_bindings = dict(url.bindings) if "bind" in st.query_params else None
    try:
        if url.machine is not None:
            ss.machine, ss.machine_label = Machine.from_dict(url.machine), "custom"
        else:
            ss.machine, ss.machine_label = load_preset(url.machine_preset), url.machine_preset
    except MachineError as exc:
        problems.append(str(exc))
        ss.machine, ss.machine_label = load_preset(ex.DEFAULT_MACHINE), ex.DEFAULT_MACHINE
    ss.options = url.options
    ss.url_problems = problems
    ss.machine_version = 0
    ss._init = True


def apply_level_edits() -> None:
    """Apply the Machine page's levels table, whose edits are in the session state at the start
    of a run (the editor's key carries the machine version, so each edit is applied once: the
    new machine gets a fresh editor). An invalid table keeps the machine and leaves a message."""
    ss = st.session_state
    version = ss.get("machine_version", 0)
    state = ss.get(f"mc_levels_{version}")
    errors = {k: v for k, v in ss.get("machine_errors", {}).items() if k != "levels"}
    ss.machine_errors = errors
    if not state:
        return
    edited = ex.apply_editor_state(ex.levels_frame(ss.machine), state)
    if ex.same_levels(edited, ss.machine):
        return
    try:
        new = ex.machine_from_levels(ss.machine, edited)
    except MachineError as exc:
        ss.machine_errors = {**errors, "levels": f"Levels not applied: {exc}. The other pages keep using the last "
                                                 "valid machine."}
    else:
        ss.machine, ss.machine_label, ss.machine_version = new, "custom", version + 1


def _sync_binding(dim: str, key: str) -> None:
    value = st.session_state.get(key)
    if isinstance(value, (int, float)) and value >= 1:
        st.session_state.bindings = {**st.session_state.bindings, dim: int(value)}


def _sync_option(field: str, key: str) -> None:
    """Apply a sidebar option; options that do not go together (pipeline stages in inference)
    keep the options in use and leave a message for the sidebar."""
    value = st.session_state.get(key)
    if value is None and field == "mode":  # a segmented control can be deselected: keep the option
        return
    changes = {field: ex.option_from_widget(field, value)}
    if changes == {"mode": "infer"}:  # an inference pass is planned as one stage and one micro-batch
        changes.update(pipeline_stages=None, micro_batches=None, interleave=1)
    try:
        st.session_state.options = ex.options_with(st.session_state.options, **changes)
    except OptionsError as exc:
        st.session_state.option_error = f"Not changed: {exc}."


def _sidebar(cache: ex.PlanCache) -> tuple[list[str], str | None]:
    ss = st.session_state
    sb = st.sidebar
    source: ex.ModelSource = ss.source
    dims, model_error = [], None
    try:
        dims = cache.symbolic_dims(source, ss.upload_bytes)
    except ModelImportError as exc:
        model_error = str(exc)
    link_bindings = ss.pop("url_link_bindings", None)
    if link_bindings and dims and (unknown := unknown_bindings_message(link_bindings, dims)):
        ss.url_problems = [*ss.get("url_problems", []), unknown]
    ss.bindings = ex.bindings_for(dims, ss.bindings)
    sb.markdown(f"**Model** {md_code(source.label)}" + (" (uploaded)" if source.kind == "upload" else ""),
                help=f"sha256 {source.sha256}")
    if dims:
        cols = sb.columns(min(len(dims), 3))
        for i, dim in enumerate(dims):
            key = f"sb_bind_{dim}"
            ss[key] = ss.bindings[dim]
            cols[i % len(cols)].number_input(
                f"{md_text(dim)} (global)" if dim == "batch" else md_text(dim), min_value=1, step=1, key=key,
                on_change=_sync_binding, args=(dim, key),
                help="the global batch: split across devices by the plan" if dim == "batch" else "symbolic dimension")
    else:
        sb.caption("no symbolic dimensions: every input shape is fixed")
    sb.markdown(f"**Machine** {md_code(ss.machine_label)}  \n{ss.machine.num_devices:,} devices: "
                + " x ".join(f"{lv.arity} {md_text(lv.name)}" for lv in ss.machine.levels))
    options: PlanOptions = ss.options
    for key, value in (("sb_mode", options.mode), ("sb_algorithm", options.algorithm),
                       ("sb_precision", options.precision or "model"), ("sb_optimizer", options.optimizer)):
        ss[key] = value
    sb.segmented_control("Mode", list(ex.MODES), key="sb_mode", on_change=_sync_option, args=("mode", "sb_mode"),
                         help="train: forward + backward, gradients and optimizer state; infer: forward only")
    sb.selectbox("Algorithm", list(ALGORITHMS), key="sb_algorithm", on_change=_sync_option,
                 args=("algorithm", "sb_algorithm"), help="\n\n".join(f"**{k}**: {v}" for k, v in ALGORITHMS.items()))
    c1, c2 = sb.columns(2)
    c1.selectbox("Precision", ["model", *PRECISION_BYTES], key="sb_precision", on_change=_sync_option,
                 args=("precision", "sb_precision"), format_func=lambda p: "onnx" if p == "model" else p,
                 help="bytes of float tensors; onnx keeps the types of the ONNX file")
    c2.selectbox("Optimizer", list(OPTIMIZERS), key="sb_optimizer", on_change=_sync_option,
                 args=("optimizer", "sb_optimizer"), help="sets the optimizer state in memory (train mode)")
    _pipeline_options(options)
    if ss.get("option_error"):
        sb.error(md_text(ss.pop("option_error")))
    return dims, model_error


def _or_auto(value):
    """A selectbox's value for an option the search may choose (None)."""
    return ex.AUTO if value is None else value


def _pipeline_options(options: PlanOptions) -> None:
    """Stages, micro-batches, recomputation, ZeRO, interleaving and overlap: ``auto`` leaves one to
    the configuration search (drec and drec+; the other algorithms take 1 stage, no recomputation
    and ZeRO 0). A combination that does not fit the model or the machine is reported by the
    planner, on the page."""
    ss = st.session_state
    for key, value in (("sb_stages", _or_auto(options.pipeline_stages)), ("sb_micro_batches", options.micro_batches),
                       ("sb_recompute", _or_auto(options.recompute)), ("sb_zero", _or_auto(options.zero)),
                       ("sb_interleave", options.interleave), ("sb_overlap", options.overlap_gradient_sync),
                       ("sb_bucket_mb", options.bucket_mb)):
        ss[key] = value
    infer = options.mode == "infer"
    box = st.sidebar.expander("Pipeline and memory", icon=":material/view_timeline:")
    if infer:
        box.caption("for training: an inference pass is planned as one stage and one micro-batch")
    (stages, micro), (recompute, zero), (interleave, _) = (box.columns(2) for _ in range(3))
    stages.selectbox("Pipeline stages", ex.stage_choices(ss.machine, options.pipeline_stages), key="sb_stages",
                     format_func=str, on_change=_sync_option, args=("pipeline_stages", "sb_stages"), disabled=infer,
                     help="consecutive layers on disjoint groups of devices along the outermost machine levels; "
                          "auto: drec and drec+ try the counts the machine allows and keep the fastest that fits "
                          "in memory")
    micro.number_input("Micro-batches", min_value=1, step=1, value=None, placeholder=ex.AUTO, key="sb_micro_batches",
                       on_change=_sync_option, args=("micro_batches", "sb_micro_batches"), disabled=infer,
                       help="per iteration, in the 1F1B schedule; must divide the batch. Empty: auto (1 without "
                            "stages, else enough to fill the pipeline)")
    recompute.selectbox("Recompute", [ex.AUTO, *RECOMPUTE], key="sb_recompute", on_change=_sync_option,
                        args=("recompute", "sb_recompute"), disabled=infer,
                        help="\n\n".join([f"**{ex.AUTO}**: the least that fits in memory"]
                                          + [f"**{k}**: {v}" for k, v in RECOMPUTE.items()]))
    zero.selectbox("ZeRO", [ex.AUTO, *ZERO_STAGES], key="sb_zero", format_func=str, on_change=_sync_option,
                   args=("zero", "sb_zero"), disabled=infer,
                   help="\n\n".join([f"**{ex.AUTO}**: the lowest stage that fits in memory"]
                                     + [f"**{k}**: {v}" for k, v in ZERO_STAGES.items()]))
    interleave.number_input("Interleave", min_value=1, step=1, key="sb_interleave", on_change=_sync_option,
                            args=("interleave", "sb_interleave"), disabled=infer,
                            help="model chunks per device (interleaved 1F1B: a smaller bubble, more sends); needs "
                                 "stages > 1 (on auto, the search tries only those), and micro-batches in multiples "
                                 "of the stages")
    box.toggle("Overlap the gradient sync", key="sb_overlap", on_change=_sync_option,
               args=("overlap_gradient_sync", "sb_overlap"), disabled=infer,
               help="hide the gradient all-reduce behind the last backward pass, as far as that pass lasts")
    box.number_input("Gradient bucket (MB)", min_value=0.0, step=5.0, key="sb_bucket_mb", on_change=_sync_option,
                     args=("bucket_mb", "sb_bucket_mb"), disabled=infer,
                     help="gradients are all-reduced in buckets of this many MB (10^6 bytes), latency paid per "
                          "bucket, as PyTorch DDP's bucket_cap_mb (default 25); 0: one all-reduce per tensor")


def _context(cache: ex.PlanCache, dims: list[str], model_error: str | None) -> ex.Context:
    ss = st.session_state
    options: PlanOptions = ss.options
    ctx = ex.Context(cache, ss.source, ss.upload_bytes, dims, dict(ss.bindings), ss.machine, ss.machine_label, options,
                     model_error=model_error)
    if model_error:
        return ctx
    try:
        ctx.graph = cache.graph(ctx.source, ctx.bindings, ctx.data)
    except ModelImportError as exc:
        ctx.model_error = str(exc)
        return ctx
    if cache.has_result(ctx.source, ctx.bindings, ctx.machine, options):
        ctx.result = ctx.plan()
        return ctx
    if not ctx.graph.planned_operators():
        ctx.plan_error = "the model has no operator to plan (only constants and shape arithmetic)"
        return ctx
    label = f"Planning {md_text(ctx.source.label)} on {ctx.machine.num_devices:,} devices with {options.algorithm}" + (
        " (stages, micro-batches, recomputation, ZeRO)..." if ex.searches_configurations(options) else "...")
    with st.spinner(label):
        bar = st.progress(0.0, text=label)
        try:
            ctx.result = ctx.plan(progress=lambda f, msg: bar.progress(min(max(float(f), 0.0), 1.0), text=md_text(msg)))
        except Exception as exc:  # noqa: BLE001 - PlanError, NotATransformerError, ConfigError, ... and planner bugs
            ctx.plan_error = ex.error_text(options.algorithm, exc)
            ctx.plan_fix = ex.what_to_change(exc)
        finally:
            bar.empty()
    return ctx


def _sync_url(ctx: ex.Context) -> None:
    params = ex.encode_url_state(ctx.source, ctx.bindings, ctx.machine,
                                 None if ctx.machine_label == "custom" else ctx.machine_label, ctx.options)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


PAGES = [
    ("pages/overview.py", "Overview", ":material/dashboard:"),
    ("pages/model.py", "Model", ":material/schema:"),
    ("pages/machine.py", "Machine", ":material/dns:"),
    ("pages/strategy.py", "Strategy", ":material/grid_view:"),
    ("pages/cost.py", "Cost", ":material/functions:"),
    ("pages/compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/report.py", "Report", ":material/description:"),
]


def navigation():
    """Register the pages (the first one is the default) and return the page asked for."""
    return st.navigation([st.Page(path, title=title, icon=icon, default=(i == 0))
                          for i, (path, title, icon) in enumerate(PAGES)])


def prepare() -> ex.Context:
    """The shared part of every run: session state, sidebar, the plan (cached), the URL."""
    st.set_page_config(page_title="Hybrid-parallel planner", page_icon=":material/account_tree:", layout="wide")
    _init_state()
    apply_level_edits()
    cache = plan_cache()
    dims, model_error = _sidebar(cache)
    for problem in st.session_state.get("url_problems", []):
        st.sidebar.warning(md_text(problem))
    ctx = _context(cache, dims, model_error)
    st.session_state["_ctx"] = ctx
    _sync_url(ctx)
    st.sidebar.caption(f"planner {__version__} · results cached by model sha256, machine and options")
    return ctx


def page_context() -> ex.Context:
    """What a page calls first: the context of this run, prepared here if the page runs alone."""
    ss = st.session_state
    if not ss.pop("_app_ran", False):
        if not st_config.get_option("global.appTest"):  # AppTest patches streamlit.config.get_option
            # Register our navigation, which takes Streamlit out of its pages/-directory mode for
            # every later run, and start again through main(): widget ids depend on the mode, so
            # a page drawn in this run would lose its widgets' values at the next interaction.
            # (AppTest runs every page alone, always in that mode: nothing to switch there.)
            navigation()
            st.rerun()
        prepare()
    return ss["_ctx"]


def planned_page(title: str) -> ex.Context:
    """The start of a page that draws the current plan: its title, then either the context or,
    when there is no plan, the reason and nothing else."""
    ctx = page_context()
    st.title(title)
    if ctx.model_error or ctx.plan_error:
        st.error(md_text(ctx.model_error or ctx.no_plan))
        st.stop()
    return ctx


def main() -> None:
    page = navigation()
    prepare()
    st.session_state["_app_ran"] = True  # read by page_context() in the page that runs next
    page.run()


if __name__ == "__main__":
    import app  # the pages import this module too: one copy of its functions and its cache

    app.main()
