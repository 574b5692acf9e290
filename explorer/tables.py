"""Every table the explorer shows, made readable in one place: ``st.dataframe(**table(frame))``.

Owns how a table's cells read: truth values as ``yes``/``no``, missing values (None, NaN, pandas'
NA) as a dash, never ``None``/``nan``/``<NA>``/``True``; each number column with one fixed
number of decimals chosen from its values (:func:`planner.units.decimals_for`: its smallest
non-zero value keeps 3 significant digits), printed without an exponent (``%.2f``, never
``%g``). A number column with missing cells becomes text formatted the same way, so that the dash
can show. The unit of a column is in its header (``iteration (ms)``), one per column. The pages,
which import only ``explorer``, also take :mod:`planner.units`' plain-number formatter from here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from planner.units import DASH, decimals_for, format_number, missing, plural, yes_no

__all__ = ["table", "clean_frame", "text_frame", "format_number", "plural", "yes_no", "SPEEDUP"]  # pages' formatters too

#: the speed-up columns' format, as format_speedup writes it
SPEEDUP = {"speed-up over data parallel": "%.2fx", "speed-up": "%.2fx"}


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_bool_column(values: pd.Series) -> bool:
    present = [v for v in values if not missing(v)]
    return bool(present) and all(_is_bool(v) for v in present)


def _is_number_column(values: pd.Series) -> bool:
    present = [v for v in values if not missing(v)]
    return bool(present) and all(isinstance(v, numbers.Real) and not _is_bool(v) for v in present)


def _text(value) -> str:
    if missing(value):
        return DASH
    if _is_bool(value):
        return yes_no(value)
    return str(value)


def _number_format(values) -> str:
    """The printf format of a number column: whole numbers as such, others with the decimals
    that keep the smallest non-zero value's 3 significant digits."""
    finite = [float(v) for v in values if not missing(v) and math.isfinite(float(v))]
    if all(float(v).is_integer() for v in finite):
        return "%d"
    return f"%.{decimals_for(finite)}f"


def _as_text(value, fmt: str) -> str:
    if missing(value):
        return DASH
    return fmt % (int(value) if fmt == "%d" else float(value))


def clean_frame(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The frame as it is shown and the printf format of each number column it keeps as numbers;
    ``formats`` gives a column its own (``%.2fx`` for a speed-up)."""
    out = {}
    kept = {}
    for col in frame.columns:
        values = frame[col]
        if _is_bool_column(values):
            out[col] = [yes_no(v) for v in values]
        elif _is_number_column(values):
            fmt = (formats or {}).get(col) or _number_format(values)
            if any(missing(v) for v in values):  # a dash must show: text, formatted alike
                out[col] = [_as_text(v, fmt) for v in values]
            else:
                out[col] = list(values)
                kept[col] = fmt
        else:
            out[col] = [_text(v) for v in values]
    shown = pd.DataFrame(out, columns=list(frame.columns), index=frame.index)
    return shown, kept


def text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every cell as the text a reader sees (for the Markdown and HTML reports):
    number columns with their fixed decimals, ``yes``/``no``, a dash for missing cells."""
    shown, formats = clean_frame(frame)
    for col, fmt in formats.items():
        shown[col] = [_as_text(v, fmt) for v in shown[col]]
    return shown


def table(frame: pd.DataFrame, config: dict | None = None, formats: dict[str, str] | None = None) -> dict:
    """Keyword arguments for ``st.dataframe``: the cleaned ``data`` and a ``column_config`` with
    a fixed-decimal format for each number column; ``formats`` gives columns their own printf
    format (a speed-up's ``%.2fx``), ``config`` adds or replaces columns' configs (a width)."""
    import streamlit as st  # only here: the views build reports through text_frame without streamlit

    shown, formats = clean_frame(frame, formats)
    column_config = {c: st.column_config.NumberColumn(format=f) for c, f in formats.items()}
    column_config.update(config or {})
    return {"data": shown, "column_config": column_config}
