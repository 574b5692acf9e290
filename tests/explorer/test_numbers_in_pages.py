"""What a reader sees of the numbers on every page (issue 15), through AppTest: no table cell
reads None, nan, <NA>, True or False, every number column has a fixed-decimal format (never
``%g``, which turns 12345 into 1.234e+04), no text or metric shows a number in scientific
notation, and in inference mode no text speaks of gradients. On the default view and on a real
export (GPT-2 through the dynamo exporter, from tests/real_exports.py) uploaded on the Model page."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from real_exports import Corpus

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 120
PAGES = ["overview", "model", "machine", "strategy", "cost", "compare", "report"]
RAW = {"None", "nan", "NaN", "<NA>", "NA", "True", "False", "inf", "-inf"}
SCIENTIFIC = re.compile(r"(?<![0-9A-Za-z_])\d+(?:\.\d+)?[eE][+-]\d")  # 1.02e+03 (Python's %g), not a sha256
RAW_WORD = re.compile(r"\b(?:None|nan|NaN|True|False)\b|<NA>")


def texts(at: AppTest) -> list[str]:
    """Every text element's body, and every metric's label and value."""
    out = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "latex", "info", "success", "warning"):
        out += [str(e.value) for e in getattr(at, kind)]
    for m in at.metric:
        out += [m.label, m.value]
    return out


def check_tables(at: AppTest, where: str) -> None:
    for frame in at.dataframe:
        for col in frame.value.columns:
            for v in frame.value[col]:
                assert not isinstance(v, (bool, np.bool_)), f"{where}: {col!r} holds {v!r}"
                assert v is not None and not (isinstance(v, float) and math.isnan(v)), f"{where}: {col!r} holds {v!r}"
                assert not (isinstance(v, str) and v.strip() in RAW), f"{where}: {col!r} reads {v!r}"
        for col, config in json.loads(frame.proto.columns or "{}").items():
            fmt = config.get("type_config", {}).get("format", "")
            assert not re.search(r"%[-+ #0-9.]*[gGeE]", fmt), f"{where}: column {col!r} is formatted {fmt!r}"


FENCED = re.compile(r"```.*?```", re.S)  # a file shown as it is (the machine YAML, in SI units)


def check_texts(at: AppTest, where: str) -> None:
    for text in map(lambda t: FENCED.sub("", t), texts(at)):
        assert not SCIENTIFIC.search(text), f"{where}: scientific notation in {text[:200]!r}"
        assert not RAW_WORD.search(text), f"{where}: a raw value in {text[:200]!r}"


def check_every_page(at: AppTest, label: str) -> None:
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        check_tables(at, f"{label} {page}")
        check_texts(at, f"{label} {page}")


def test_numbers_on_every_page_of_the_default_view():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    check_every_page(at, "default")


def test_the_cost_page_formulas_hold_no_raw_rational_and_have_a_legend():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/cost.py").run()
    formulas = [str(e.value) for e in at.latex]
    assert formulas
    for latex in formulas:
        # no integer of 7 digits or more (raw sympy rationals), no float that is an integer (2.0 L)
        assert not re.search(r"\d{7,}", latex), latex
        assert not re.search(r"\b\d+\.0\b(?!\d)", latex), latex
    legend = next(m for m in at.markdown if str(m.value).startswith("**Reading the cards.**"))
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", legend.value)  # as rendered: without Markdown's escapes
    # the default view (explorer/sources.py) is Llama-3-8B at 1,024 sequences of 1,024 tokens
    assert "= Σ_k x[" in text and "batch (1,024)" in text and "sequence (1,024)" in text, text
    assert legend.help  # the letters' tooltip


def test_inference_mode_texts_do_not_speak_of_gradients():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"mode": "infer"})  # one stage, one micro-batch (planner.options)
    at.run()
    for page in ("overview", "strategy", "cost"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
        for text in texts(at):
            assert "gradient" not in text.lower(), f"{page}: {text[:200]!r}"


@pytest.fixture(scope="module")
def gpt2_export(tmp_path_factory) -> bytes:
    return Corpus(tmp_path_factory.mktemp("numbers_exports")).get("gpt2", "dynamo").path.read_bytes()


def test_numbers_on_every_page_of_a_real_export(gpt2_export):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/model.py").run()
    at.file_uploader(key="mp_upload").upload("gpt2_dynamo.onnx", gpt2_export).run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    assert at.session_state["_ctx"].result is not None
    check_every_page(at, "gpt2/dynamo")
