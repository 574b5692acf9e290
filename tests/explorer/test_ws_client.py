"""The scripted client of bench/app_load.py against a real server: ``streamlit run app.py`` on a
free port, one session that speaks Streamlit's websocket protocol (no browser), asked for the
Overview of the small ``mlp`` sample. It must receive the Overview's figures and headline and no
exception; an unknown sample in the link must come back as the app's warning, not an exception.
No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from ws_client import first_figures, rerun_request, streamlit_server  # noqa: E402 - bench/ is not a package


@pytest.fixture(scope="module")
def base():
    with streamlit_server() as (url, _):
        yield url


def test_the_request_is_a_rerun_of_the_default_page_with_the_query():
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    msg.ParseFromString(rerun_request("model=mlp&bind=batch:64"))
    assert msg.WhichOneof("type") == "rerun_script"
    assert msg.rerun_script.query_string == "model=mlp&bind=batch:64"
    assert (msg.rerun_script.page_script_hash, msg.rerun_script.page_name) == ("", "")


def test_one_session_receives_the_overview_figures(base):
    run = first_figures(base, "model=mlp&bind=batch:64&machine=dgx_a100", timeout_s=300)
    assert run.status == "FINISHED_SUCCESSFULLY"
    assert run.exceptions == [] and run.errors == []
    assert run.figures == 2  # the Overview's "Where the time goes" and "Memory per device"
    assert run.figure_seconds is not None and run.figure_seconds <= run.seconds
    # dgx_a100 is one node of 8 GPUs; the sample is the one asked for, not the default one
    assert run.metrics["Devices"] == "8"
    assert {"Predicted iteration time", "Memory per device", "Search time"} <= set(run.metrics)


def test_a_bad_link_is_a_warning_not_an_exception(base):
    run = first_figures(base, "model=no_such_sample&machine=dgx_a100", timeout_s=300)
    assert run.status == "FINISHED_SUCCESSFULLY"
    assert run.exceptions == [] and run.errors == []
    # the name is Markdown-escaped (explorer/safe_markdown.py)
    assert len(run.warnings) == 1 and r"no\_such\_sample' is not a sample" in run.warnings[0]
    assert run.figures == 2  # the default sample is planned instead
