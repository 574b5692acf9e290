"""The model's repeated layers as the views use them (found once per graph by
:func:`planner.model.layers.find_layers`: by names, else by structure), and the per-operator facts
every table shows (parameters, dimensions)."""

from __future__ import annotations

import pandas as pd

from planner.model.graph import OperatorGraph, TensorRole
from planner.model.layers import Layers, find_layers

__all__ = ["Layers", "dims_text", "layer_column_text", "layers_of", "op_parameters"]


def layers_of(graph: OperatorGraph) -> Layers:
    """:func:`planner.model.layers.find_layers` of a graph, computed once per graph (its memo)."""
    return graph.memo("layers", None, lambda: find_layers(graph))


def op_parameters(graph: OperatorGraph, name: str) -> int:
    return sum(graph.tensors[u.tensor].numel for u in graph.operators[name].inputs
               if graph.tensors[u.tensor].role is TensorRole.PARAMETER)


def dims_text(dims: dict[str, int]) -> str:
    return " ".join(f"{d}={s}" for d, s in dims.items())


def layer_column_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A table's ``layer`` column as a person reads it: the index, or a dash for an operator in no
    layer (a missing number would be drawn "None"). Filter on the numbers first, then show this."""
    if "layer" not in frame:
        return frame
    return frame.assign(layer=["—" if pd.isna(value) else str(int(value)) for value in frame["layer"]])
