"""Reading an ONNX model into an operator graph, never its weights.

* ``guard``: a hostile file is refused before any parsing; the one gate for tensor data, the bounds.
* ``load``: a file or bytes through the guard into a checked ``ModelProto`` (``load_model_proto``,
  ``ModelImportError``, operator names, symbolic dimensions, the model's SHA-256).
* ``shapes``: shape inference with the dimensions bound, small shape arithmetic folded, element types.
* ``validate``: names a malformed node (unknown op type, a node ONNX's own checker refuses).
* ``rules``: the registry of per-operator rules (``@rule("MatMul")`` -> a frozen ``OpSpec``), one
  module per family of operators.
* ``importer``: ``import_model``: binds the dimensions and builds the graph from the registry; an op
  type without a rule becomes an opaque, replicated operator.
* ``strip_weights``: skeletons without weights.
"""
