"""A binding above the limit (2^40 = 1,099,511,627,776, planner/bindings.py) in the sidebar: the
message leads with the limit, with thousands separators, the binding in use is kept (so the
message goes when the next value is valid), and the importer and the command line word it alike."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from planner.bindings import MAX_BINDING, binding_problem

APP = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "app.py")
HUGE = 10**15
EXPECTED = "batch 1,000,000,000,000,000 is above the limit 1,099,511,627,776: give a smaller value, e.g. batch=32"


def _visible(at: AppTest) -> list[str]:
    return [re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", e.value) for e in at.error]


def test_the_message_leads_with_the_limit():
    assert MAX_BINDING == 1_099_511_627_776
    assert binding_problem("batch", HUGE) == EXPECTED
    assert binding_problem("batch", MAX_BINDING) is None and binding_problem("batch", 1) is None
    assert binding_problem("batch", 0).startswith("batch 0 is not a positive integer")
    assert binding_problem("batch", "3").startswith("batch='3' is not a positive integer")


def test_the_importer_says_the_same():
    from planner.onnx.importer import ModelImportError, import_model

    with pytest.raises(ModelImportError) as err:
        import_model("sample_models/mlp.onnx", {"batch": HUGE})
    assert str(err.value) == f"binding {EXPECTED}"


def test_the_command_line_leads_with_the_limit_too(capsys):
    from models import run_cli

    code, _, err = run_cli(["inspect", "sample_models/mlp.onnx", "--bind", f"batch={HUGE}"], capsys)
    assert code == 2 and "1,000,000,000,000,000 is above the limit 1,099,511,627,776" in err


def test_the_sidebar_keeps_the_binding_in_use_and_the_message_goes_with_a_valid_value():
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update(model="mlp", machine="dgx_a100", bind="batch:64")
    at.run()
    assert not at.exception and not at.error
    # the precision kept from the file: a label short enough for the sidebar, the help says it in full
    assert at.selectbox(key="sb_precision").options[0] == "model's"
    assert "as in the model" in at.selectbox(key="sb_precision").help
    at.number_input(key="sb_bind_batch").set_value(HUGE).run()
    assert _visible(at) == [f"Not changed: {EXPECTED}."]
    assert at.session_state["_ctx"].bindings == {"batch": 64}  # still planned with the value in use
    assert at.number_input(key="sb_bind_batch").value == 64  # the field shows it again
    at.number_input(key="sb_bind_batch").set_value(3).run()
    assert not at.error and at.session_state["_ctx"].bindings == {"batch": 3}
