"""Plans as artefacts: ``plan_json`` (read a plan file, bounded and checked, its recorded options
merged once), ``report`` (write the plan JSON), ``parallelism`` (a plan named in the engineers'
terms: DP / TP / SP / CP / EP / PP), ``override`` (price a plan edited by hand) and ``export`` (a
plan as DTensor, JAX or MindSpore layouts)."""
