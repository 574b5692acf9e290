"""Names from a shared link (machine_json) and from an uploaded model (its file name, operator,
tensor and dimension names) carry Markdown payloads through every page of the explorer (AppTest):
whatever is rendered as Markdown (markdown, captions, alerts, titles, widget labels and help, the
Markdown report) parses, with markdown-it-py, to no image, link or raw HTML, and its ``$`` math
and ``:directives:`` are escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from explorer.views.report import report_markdown
from planner.machine.tree import load_preset

from models import gemm_mlp

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
PAGES = ["overview", "model", "machine", "strategy", "cost", "compare", "report"]
MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
FORBIDDEN = {"image", "link_open", "html_inline", "html_block"}


def evil(tag: str) -> str:
    return f"{tag}![i](http://evil/{tag}.png)<img src=x>`c`$m$:red[r]<b>"


def evil_model() -> bytes:
    model = gemm_mlp([32, 64, 16], batch=evil("dim"), relu=True)
    renames = {}
    for i, node in enumerate(model.graph.node):
        node.name = f"layers.{i}.{evil('op')}"
    for t in list(model.graph.initializer):
        renames[t.name] = evil("w") + t.name
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = renames.get(name, name)
    for t in model.graph.initializer:
        t.name = renames[t.name]
    return model.SerializeToString()


def evil_machine() -> dict:
    m = load_preset("dgx_a100").to_dict()
    m["name"] = evil("machine")
    m["device"]["name"] = evil("device")
    for i, level in enumerate(m["levels"]):
        level["name"] = evil(f"level{i}")
    return m


def markdown_sources(node) -> list[str]:
    """Every string of the page that Streamlit renders as Markdown."""
    out = []
    kind = getattr(node, "type", "")
    if kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader") \
            and isinstance(getattr(node, "value", None), str):
        out.append(node.value)
    for attr in ("label", "help"):
        value = getattr(node, attr, None)
        if isinstance(value, str):
            out.append(value)
    for child in getattr(node, "children", {}).values() if isinstance(getattr(node, "children", None), dict) else []:
        out += markdown_sources(child)
    return out


def check(src: str) -> None:
    tokens = MD.parse(src)
    kinds = {t.type for tok in tokens for t in [tok, *(tok.children or [])]}
    assert not kinds & FORBIDDEN, (src, kinds & FORBIDDEN)
    src = re.sub(r"^(`{3,})[^\n]*\n.*?\n\1$", "", src, flags=re.S | re.M)  # fenced code blocks
    outside_code = re.sub(r"(?<![\\`])(`+)(?!`).*?(?<!`)\1(?!`)", "", src)  # code spans
    assert not re.search(r"(?<!\\)\$m\$|(?<!\\):red", outside_code), src


@pytest.fixture(scope="module")
def at():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(model="mlp", bind="batch:64", machine_json=json.dumps(evil_machine()))
    at.run()
    at.switch_page("pages/model.py").run()
    at.file_uploader(key="mp_upload").upload(evil("file") + ".onnx", evil_model()).run()
    return at


@pytest.mark.parametrize("page", PAGES)
def test_no_page_renders_a_name_as_markdown(at, page):
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    c = at.session_state["_ctx"]
    assert c.source.label.startswith("file![i]") and c.result is not None, c.model_error or c.plan_error
    assert c.machine.name.startswith("machine![i]")
    sources = markdown_sources(at.main) + markdown_sources(at.sidebar)
    joined = "\n".join(sources)
    assert "evil" in joined  # the names are shown, escaped
    for src in sources:
        check(src)


def test_the_markdown_report_renders_no_name(at):
    at.switch_page("pages/report.py").run()
    c = at.session_state["_ctx"]
    report = report_markdown(c.result, c.meta)
    for tag in ("file", "machine", "op", "level0"):
        assert f"{tag}!" in report.replace("\\", "")  # each name is in it
    check(report)
    # the machine YAML stays a code block and nothing follows it out of its fence
    tokens = MD.parse(report)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and "machine![i]" in fences[0].content


def test_a_pipelined_plan_renders_no_name():
    """The pipeline's captions (stage machine, boundary levels) with a link's level names."""
    machine = evil_machine()
    machine["levels"] = [{**machine["levels"][0], "name": evil("node"), "arity": 2}, *machine["levels"]]
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(model="gpt2_small", bind="batch:8,seq:64", machine_json=json.dumps(machine),
                           stages="2", micro_batches="4", algorithm="drec")
    at.run()
    for page in ("overview", "strategy", "cost"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        c = at.session_state["_ctx"]
        assert c.result is not None and c.result.schedule.stages == 2, c.plan_error
        sources = markdown_sources(at.main) + markdown_sources(at.sidebar)
        assert any("node!" in s.replace("\\", "") for s in sources)  # the level's name is shown
        for src in sources:
            check(src)
