"""A profiling-free hybrid-parallel planner: symbolic BSP costs over a hierarchical machine, D-Rec search.

The library's rooms, top to bottom (each imports only those below it; pyproject.toml declares it):
``cli``, ``api`` (``plan_model``, ``evaluate_plan``), ``verify``, ``plans``, ``search``, ``cost``,
``onnx``, ``machine`` and ``model``, then ``options``, ``bindings``, ``units``, ``limits`` and
``errors``. It never imports ``explorer`` (the app) nor streamlit, plotly or pandas.
"""

__version__ = "0.1.0"
