"""Plans as artefacts: plan_json.py (read a plan file back), report.py (the JSON schema),
override.py (price a plan edited by hand), export.py (apply a plan to a PyTorch model)."""
