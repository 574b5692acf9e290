"""The abstract machine: tree.py (the symmetric hierarchical machine, presets, splitting) and
text.py (reading and writing its YAML)."""
