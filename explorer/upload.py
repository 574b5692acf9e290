"""What the explorer does with an uploaded ONNX file, without Streamlit.

The file's weights are dropped at once (:func:`weight_free`): the planner needs shapes, never
weight values, and an uploaded model stays in the session (to re-import it with other bound
dimensions) and in the shared cache (the graph keeps its ``ModelProto`` for re-binding the batch).
Only the skeleton is kept: initializers keep their names, dims and types, as in
``python -m planner strip-weights``. The model's identity (sha256, shown in the reports and used
as the cache key) stays that of the file as uploaded.
"""

from __future__ import annotations

from planner.onnx.importer import ModelImportError, load_model_proto, model_sha256
from planner.onnx.strip_weights import _strip_graph
from planner.model.tied_weights import fold_transposed_copies

#: Where the dropped weights of an upload "live" (an external-data file that never exists).
WEIGHTS_LOCATION = "uploaded.weights.bin"


def weight_free(data: bytes) -> bytes:
    """The uploaded model with its weights turned into references to an absent file (shapes kept)."""
    model = load_model_proto(data)  # ModelImportError for what is not an ONNX model
    try:
        # a tied embedding's constant-folded transposed copy becomes Transpose(original) while the
        # values are still here to compare (as strip-weights does): one parameter, not two
        fold_transposed_copies(model)
        _strip_graph(model.graph, WEIGHTS_LOCATION, 0)  # in place: no second copy of the weights
    except Exception as exc:  # noqa: BLE001 - a tensor of a type without a fixed size, ...
        raise ModelImportError(f"the weights of the uploaded file could not be dropped ({type(exc).__name__}: "
                               f"{exc}); run `python -m planner strip-weights` on it and upload the result") from None
    out = model.SerializeToString()
    del model
    return out


def accept_upload(filename: str, data: bytes, cache, previous_bindings: dict[str, int]) -> tuple:
    """``(source, weight-free bytes, bindings)`` for an uploaded file: its weights dropped, its
    symbolic dimensions bound (the previous values of the same names kept) and the model imported
    once through ``cache`` (an explorer ``PlanCache``), so that a file that cannot be imported is
    refused (ModelImportError, the importer's message) before it becomes the model in use."""
    from explorer.sources import ModelSource, bindings_for

    source = ModelSource("upload", filename, model_sha256(data))
    small = weight_free(data)
    del data
    dims = cache.symbolic_dims(source, small)
    bindings = bindings_for(dims, previous_bindings)
    cache.graph(source, bindings, small)
    return source, small, bindings
