"""What the pages draw, one module per page (``overview``, ``model``, ``machine``, ``strategy``,
``cost``, ``compare``, ``report``: their figures, tables and texts) and the shared ones: ``layers``
(repeated layers found from names), ``graph`` (the model graph's views, layout and figure),
``splits`` (a plan's splits in words), ``pipeline`` (stages and the iteration), ``formulas`` (cost
formulas in LaTeX) and ``memory`` (memory per device). No Streamlit here: pages call these and
draw what comes back; every number comes from :mod:`planner`."""
