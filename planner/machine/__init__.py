"""The abstract machine: ``tree`` (the symmetric hierarchical machine, its validation and the
presets in machines/), ``text`` (its YAML and JSON text) and ``split`` (a machine divided among
pipeline stages, data and tensor parallelism)."""
