"""One run of the app: the navigation, the shared part of every run (session, sidebar, the plan
through the cache, the URL) and what a page calls first (:func:`page_context`).

Why pages call :func:`page_context` rather than read the session: because the repository has a
``pages/`` directory, Streamlit runs a page *without* the entry script when a fresh server's first
request asks for that page by its URL (and ``AppTest.switch_page`` always does). The page then
builds the navigation and the context itself, so every page works however it is reached.
"""

from __future__ import annotations

import os

import streamlit as st
from streamlit import config as st_config

from explorer import sidebar, state
from explorer.cache import PlanCache
from explorer.context import Context
from explorer.options import error_text, searches_configurations, what_to_change
from explorer.plan_pool import PlanPool
from explorer.safe_markdown import md_text
from explorer.url_state import encode_url_state
from explorer.views import machine as machine_view
from planner import __version__
from planner.onnx.importer import ModelImportError

PAGES = [
    ("pages/overview.py", "Overview", ":material/dashboard:"),
    ("pages/model.py", "Model", ":material/schema:"),
    ("pages/machine.py", "Machine", ":material/dns:"),
    ("pages/strategy.py", "Strategy", ":material/grid_view:"),
    ("pages/cost.py", "Cost", ":material/functions:"),
    ("pages/compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/report.py", "Report", ":material/description:"),
]


@st.cache_resource(show_spinner=False)
def plan_cache() -> PlanCache:
    """One cache per server process, shared by every session (results are read-only), with the
    pool of planning processes (one per core; explorer/plan_pool.py). Under AppTest, or with
    PLANNER_APP_POOL=0, plans are made on the script thread."""
    cache = PlanCache()
    if not st_config.get_option("global.appTest") and os.environ.get("PLANNER_APP_POOL", "1") != "0":
        cache.pool = PlanPool()
    return cache


def _plan(ctx: Context) -> None:
    """Plan the context's request with a progress bar (a cached plan is taken at once)."""
    options = ctx.options
    if ctx.has_plan():
        ctx.result = ctx.plan()
        return
    if not ctx.graph.planned_operators():
        ctx.plan_error = "the model has no operator to plan (only constants and shape arithmetic)"
        return
    label = f"Planning {md_text(ctx.source.label)} on {ctx.machine.num_devices:,} devices with {options.algorithm}" + (
        " (stages, micro-batches, recomputation, ZeRO)..." if searches_configurations(options) else "...")
    with st.spinner(label):
        # after a link or device edit: the plan in use before it, re-priced on the new machine, at once
        repriced = machine_view.repriced_edit(ctx, state.machine_before())
        note = st.info(md_text(machine_view.repriced_text(repriced, state.machine_before()))) if repriced else None
        bar = st.progress(0.0, text=label)
        try:
            ctx.result = ctx.plan(progress=lambda f, msg: bar.progress(min(max(float(f), 0.0), 1.0), text=md_text(msg)))
        except Exception as exc:  # noqa: BLE001 - PlanError, NotATransformerError, ConfigError, ... and planner bugs
            ctx.plan_error = error_text(options.algorithm, exc)
            ctx.plan_fix = what_to_change(exc)
        finally:
            bar.empty()
            if note is not None:
                note.empty()


def _context(cache: PlanCache, dims: list[str], model_error: str | None) -> Context:
    ctx = Context(cache, state.source(), state.upload_bytes(), dims, state.bindings(), state.machine(),
                  state.machine_label(), state.options(), model_error=model_error)
    if model_error:
        return ctx
    try:
        with st.spinner(f"Reading {md_text(ctx.source.label)}..."):  # shown only if it takes a while
            ctx.graph = cache.graph(ctx.source, ctx.bindings, ctx.data)
    except ModelImportError as exc:
        ctx.model_error = str(exc)
        return ctx
    _plan(ctx)
    return ctx


def _sync_url(ctx: Context) -> None:
    params = encode_url_state(ctx.source, ctx.bindings, ctx.machine,
                              None if ctx.machine_label == "custom" else ctx.machine_label, ctx.options,
                              state.hand_made())
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def navigation():
    """Register the pages (the first one is the default) and return the page asked for."""
    return st.navigation([st.Page(path, title=title, icon=icon, default=(i == 0))
                          for i, (path, title, icon) in enumerate(PAGES)])


def prepare() -> Context:
    """The shared part of every run: session state, sidebar, the plan (cached), the URL."""
    st.set_page_config(page_title="Hybrid-parallel planner", page_icon=":material/account_tree:", layout="wide")
    state.init(st.query_params.to_dict())
    state.apply_level_edits()
    cache = plan_cache()
    dims, model_error = sidebar.draw(cache)
    for problem in state.url_problems():
        st.sidebar.warning(md_text(problem))
    ctx = _context(cache, dims, model_error)
    state.set_context(ctx)
    _sync_url(ctx)
    st.sidebar.caption(f"planner {__version__} · results cached by model sha256, machine and options")
    return ctx


def page_context() -> Context:
    """What a page calls first: the context of this run, prepared here if the page runs alone."""
    if not state.pop_app_ran():
        if not st_config.get_option("global.appTest"):  # AppTest patches streamlit.config.get_option
            # Register our navigation, which takes Streamlit out of its pages/-directory mode for
            # every later run, and start again through main(): widget ids depend on the mode, so
            # a page drawn in this run would lose its widgets' values at the next interaction.
            # (AppTest runs every page alone, always in that mode: nothing to switch there.)
            navigation()
            st.rerun()
        prepare()
    return state.context()


def planned_page(title: str) -> Context:
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
    state.mark_app_ran()  # read by page_context() in the page that runs next
    page.run()
