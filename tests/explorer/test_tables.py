"""explorer.tables: how a table's cells read, on frames written by hand."""

import numpy as np
import pandas as pd

from explorer.tables import clean_frame, table, text_frame


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "stage": [0, 1, 2],
        "time (µs)": [0.0123, 45.6, 1234.5],
        "fits": [True, False, np.True_],
        "note": ["a", None, np.nan],
        "speed-up": [1.0, None, 2.5],
        "count": pd.array([1, None, 3], dtype="Int64"),
    })


def test_cells_read_yes_no_and_a_dash_never_none_or_nan():
    shown, formats = clean_frame(frame())
    assert list(shown["fits"]) == ["yes", "no", "yes"]
    assert list(shown["note"]) == ["a", "–", "–"]
    assert list(shown["count"]) == ["1", "–", "3"]  # whole numbers, with a dash: text
    # 0.0123 keeps 3 significant digits with 4 decimals, capped at 3: every cell with 3 decimals
    assert formats == {"stage": "%d", "time (µs)": "%.3f"}
    assert list(shown["time (µs)"]) == [0.0123, 45.6, 1234.5]  # numbers stay numbers (sortable)


def test_a_column_with_missing_cells_is_text_in_its_own_format():
    shown, _ = clean_frame(frame(), {"speed-up": "%.2fx"})
    assert list(shown["speed-up"]) == ["1.00x", "–", "2.50x"]


def test_the_streamlit_arguments_carry_fixed_decimal_formats():
    args = table(frame())
    assert args["column_config"]["time (µs)"]["type_config"]["format"] == "%.3f"
    assert args["column_config"]["stage"]["type_config"]["format"] == "%d"


def test_reports_get_every_cell_as_text():
    shown = text_frame(frame())
    assert list(shown["time (µs)"]) == ["0.012", "45.600", "1234.500"]
    assert list(shown["stage"]) == ["0", "1", "2"]
    big = text_frame(pd.DataFrame({"bytes": [12345678.0, 2.5]}))
    assert list(big["bytes"]) == ["12345678.00", "2.50"]  # 2.5 keeps 3 digits with 2 decimals; %f: never 1.235e+07
