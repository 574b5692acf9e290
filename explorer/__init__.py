"""The explorer's logic: everything the Streamlit app (``app.py`` and ``pages/``, which only draw)
does besides drawing. It imports :mod:`planner`, never the reverse; pages import only from here.

* :mod:`explorer.state`: the ONLY owner of ``st.session_state`` (typed transitions ``use_model``,
  ``use_machine``, ``set_binding``, ``set_option``, and the widgets' callbacks).
* :mod:`explorer.run`: one run of the app (session, sidebar, the plan, the URL), the navigation,
  and ``page_context``/``planned_page`` that every page calls first.
* :mod:`explorer.sidebar`: the sidebar's widgets. :mod:`explorer.context`: the ``Context`` a page reads.
* :mod:`explorer.url_state`: the URL (encode, decode, bounds on a link's parameters).
* :mod:`explorer.sources`: sample models, machine presets, uploads' identities and default bindings.
  :mod:`explorer.upload`: an upload's weights dropped.
* :mod:`explorer.options`: the plan options as the sidebar shows them, and error texts.
* :mod:`explorer.cache`: a memo over one frozen ``PlanRequest`` (no planning logic: a miss calls
  :func:`planner.api.plan_model`); :mod:`explorer.cache_budget` bounds it by bytes;
  :mod:`explorer.plan_pool` plans in worker processes.
* :mod:`explorer.views`: what each page draws (figures, tables, texts), one module per page plus
  shared ones; :mod:`explorer.timeline` the 1F1B Gantt chart; :mod:`explorer.safe_markdown`
  escapes names for Markdown.
"""
