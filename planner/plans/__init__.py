"""Plans as artefacts: ``plan_json`` (read a plan file, bounded and checked, its recorded options
merged once), ``report`` (write the plan JSON), ``override`` (price a plan edited by hand) and
``export`` (a plan as DTensor, JAX or MindSpore layouts)."""
