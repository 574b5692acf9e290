"""The sidebar's hand-made configuration (issue 12 item 6): the Compare page's row ``hand-made: DP
4 x TP 2 x PP 1 x EP 4 ...`` is priced as ``evaluate --tp --pp --dp --ep --cp`` prices it (its
iteration and memory equal the command line's JSON, a separate process of the same entry), EP is
offered only with experts and CP only with a sequence, bad degrees give evaluate's one-line message
and keep the page, and the configuration survives a link."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.url_state import decode_url_state, encode_hand_made
from moe_models import MIXTRAL, write
from planner.cli.main import main
from planner.search.hand_made import HandMade
from planner.units import gib

ROOT = Path(__file__).resolve().parents[2]
DGX = "machines/dgx_a100.yaml"  # 8 devices


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """A samples directory with a small Mixtral (2 layers, 4 heads, 8 experts) and GPT-2 small."""
    folder = tmp_path_factory.mktemp("samples")
    shutil.copy(write(tmp_path_factory.mktemp("moe"), "mixtral_8x7b", **MIXTRAL), folder / "mixtral_small.onnx")
    shutil.copy(ROOT / "sample_models" / "gpt2_small.onnx", folder / "gpt2_small.onnx")
    return folder


@pytest.fixture
def app(samples, monkeypatch):
    monkeypatch.setattr("explorer.sources.SAMPLES_DIR", samples)

    def run(model: str, bind: str, **params) -> AppTest:
        at = AppTest.from_file(str(ROOT / "pages" / "compare.py"), default_timeout=600)
        at.query_params.update(model=model, bind=bind, machine="dgx_a100", algorithm="data_parallel", **params)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return run


def cli_evaluate(path: Path, seq: int, tmp_path: Path, **degrees) -> dict:
    out = tmp_path / "hand.json"
    flags = [x for k, v in degrees.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    assert main(["evaluate", str(path), "--machine", str(ROOT / DGX), "--bind", f"seq={seq}", *flags,
                 "--json", str(out)]) == 0
    return json.loads(out.read_text())


def hand_row(at: AppTest):
    frame = at.dataframe[0].value
    rows = frame[frame["algorithm"].str.startswith("hand-made")]
    assert len(rows) == 1
    return rows.iloc[0]


def shown_and_priced(at: AppTest):
    """The hand-made row as the page shows it, and the result behind it (the cache's, which the page
    drew from: the same object every time it is asked for)."""
    from explorer.hand_made import price

    row = hand_row(at)
    result = price(at.session_state["_ctx"], at.session_state["hand_made"])
    assert math.isclose(float(row["iteration (ms)"]), result.total_seconds * 1e3, rel_tol=5e-3)  # shown rounded
    assert math.isclose(float(row["memory (GiB)"]), gib(result.memory.peak), rel_tol=5e-2, abs_tol=5e-3)
    return row, result


def number_inputs(at: AppTest) -> dict:
    return {w.label: w for w in at.sidebar.number_input}


def test_the_mixtral_row_is_evaluate_with_expert_parallelism(app, samples, tmp_path):
    at = app("mixtral_small", "batch:8,seq:16", hm_tp="2", hm_pp="1", hm_dp="4", hm_ep="4")
    row, result = shown_and_priced(at)
    assert row["algorithm"] == "hand-made: DP 4 x TP 2 x PP 1 x EP 4 (micro-batch 1)"
    cli = cli_evaluate(samples / "mixtral_small.onnx", 16, tmp_path, tp=2, pp=1, dp=4, ep=4, micro_batch_size=1,
                       global_batch=8)
    assert cli["parallelism"]["name"] == "DP 4 x TP 2 (column-row) x EP 4"
    assert math.isclose(result.total_seconds, cli["iteration_seconds"], rel_tol=1e-9)
    assert math.isclose(result.memory.peak, cli["memory_bytes_per_device"]["peak"], rel_tol=1e-9)
    assert row["fits"] == ("yes" if cli["fits_in_memory"] else "no")
    assert {"EP (--ep)", "CP (--cp)"} <= set(number_inputs(at))  # experts and a sequence: both offered


def test_the_gpt2_row_is_evaluate_with_context_parallelism(app, samples, tmp_path):
    at = app("gpt2_small", "batch:8,seq:32", hm_tp="2", hm_pp="1", hm_dp="2", hm_cp="2", hm_mbs="2")
    row, result = shown_and_priced(at)
    assert row["algorithm"] == "hand-made: DP 2 x TP 2 x PP 1 x CP 2 (micro-batch 2)"
    cli = cli_evaluate(samples / "gpt2_small.onnx", 32, tmp_path, tp=2, pp=1, dp=2, cp=2, micro_batch_size=2,
                       global_batch=8)
    assert math.isclose(result.total_seconds, cli["iteration_seconds"], rel_tol=1e-9)
    assert math.isclose(result.memory.peak, cli["memory_bytes_per_device"]["peak"], rel_tol=1e-9)
    labels = set(number_inputs(at))
    assert "CP (--cp)" in labels and "EP (--ep)" not in labels  # no experts: EP not offered


@pytest.mark.parametrize("model, bind, params, message", [
    # the product of the degrees is not the device count
    ("gpt2_small", "batch:8,seq:32", dict(hm_tp="2", hm_dp="2"),
     "--tp x --pp x --dp = 2 x 1 x 2 = 4, but the machine has 8 devices: the product must equal the device count"),
    # TP does not divide GPT-2's 12 heads
    ("gpt2_small", "batch:8,seq:32", dict(hm_tp="8", hm_dp="1"),
     "tensor parallelism of 8 does not divide the 12 attention heads"),
    # EP does not divide DP x CP = 2 x 2
    ("mixtral_small", "batch:8,seq:16", dict(hm_tp="2", hm_dp="2", hm_cp="2", hm_ep="8"),
     "--ep 8 does not divide --dp x --cp = 2 x 2 = 4"),
    # EP does not divide the data-parallel size 4 (the 8 experts it does divide)
    ("mixtral_small", "batch:8,seq:16", dict(hm_tp="2", hm_dp="4", hm_ep="8"),
     "--ep 8 does not divide the data-parallel size 4"),
])
def test_bad_degrees_say_what_is_wrong_and_keep_the_page(app, model, bind, params, message):
    at = app(model, bind, **params)
    row = hand_row(at)
    assert row["iteration (ms)"] == "–"  # no figures, the reason instead
    assert message in row["note"]
    assert any(message in w.value.replace("\\", "") for w in at.warning)  # shown beside the table
    if "tensor parallelism" not in message and "data-parallel size" not in message:  # known without the model
        assert any(message in e.value.replace("\\", "") for e in at.sidebar.error)  # and under the fields
    frame = at.dataframe[0].value
    assert float(frame[frame["algorithm"] == "data_parallel"]["iteration (ms)"].iloc[0]) > 0  # the page stays


def test_the_sidebar_sets_it_and_a_link_brings_it_back(app):
    at = app("mixtral_small", "batch:8,seq:16")
    assert "hm_tp" not in at.query_params and not any(r.startswith("hand-made") for r in at.dataframe[0].value["algorithm"])
    at.sidebar.toggle(key="sb_hm_on").set_value(True).run()
    assert at.session_state["hand_made"] == HandMade(dp=8)  # switched on: data parallel over the 8 devices
    at.sidebar.number_input(key="sb_hm_dp").set_value(4).run()
    at.sidebar.number_input(key="sb_hm_tp").set_value(2).run()
    at.sidebar.number_input(key="sb_hm_ep").set_value(2).run()
    assert not at.exception
    wanted = HandMade(tp=2, dp=4, ep=2)
    assert at.session_state["hand_made"] == wanted
    params = {k: at.query_params[k][-1] if isinstance(at.query_params[k], list) else at.query_params[k]
              for k in at.query_params}
    assert {k: v for k, v in params.items() if k.startswith("hm_")} == encode_hand_made(wanted) == {
        "hm_tp": "2", "hm_pp": "1", "hm_dp": "4", "hm_ep": "2"}
    again = app("mixtral_small", "batch:8,seq:16", **{k: v for k, v in params.items() if k.startswith("hm_")})
    assert again.session_state["hand_made"] == wanted
    assert hand_row(again)["algorithm"] == "hand-made: DP 4 x TP 2 x PP 1 x EP 2 (micro-batch 1)"
    at.sidebar.toggle(key="sb_hm_on").set_value(False).run()
    assert at.session_state["hand_made"] is None and "hm_tp" not in at.query_params


def test_a_bad_link_value_is_reported_and_not_used():
    state, problems = decode_url_state({"hm_tp": "two", "hm_dp": "4"})
    assert state.hand_made is None
    assert problems == ["hm_tp='two' is not a whole number >= 1; the link's hand-made configuration is not used"]
    state, problems = decode_url_state({"hm_dp": "8", "hm_cp": "2"})
    assert state.hand_made == HandMade(dp=8, cp=2) and problems == []
