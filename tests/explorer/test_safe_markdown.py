"""explorer.safe_markdown: names from outside render as their own text, never as a link, an image,
raw HTML, code, emphasis, math or a Streamlit directive (parsed back with markdown-it-py)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from explorer.safe_markdown import md_code, md_text

MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
ACTIVE = {"image", "link_open", "html_inline", "html_block", "code_inline", "em_open", "strong_open", "s_open",
          "hardbreak", "softbreak"}
PAYLOADS = ["![x](http://evil/)", "[click](javascript:alert(1))", "<img src=http://evil/x.png>",
            "<script>alert(1)</script>", "`rm -rf`", "$E=mc^2$", "$$x$$", ":red[alert] :material/home:",
            "**bold** _it_ ~~s~~", "# heading", "- item", "1. item", "> quote", "a | b", "&amp; &#x41;",
            "www.evil.com", "me@evil.com", "https://evil.com/x", "<http://evil>", "line\nbreak\n\n# h2",
            "\\![x](y)", "    indented", "=", "---"]
#: what a Markdown name may hold: any printable text, with Markdown's own characters made likely
TEXT = st.text(st.one_of(st.sampled_from(list("\\`*_{}[]()<>#!|~$:&@^-+=.!0123456789 \n\tw")),
                         st.characters(blacklist_categories=("Cs", "Cc"))), max_size=40)


def inline_tokens(src: str):
    tokens = MD.parse(src)
    return [t for tok in tokens for t in ([tok] + list(tok.children or []))]


def rendered_text(src: str) -> str:
    """The text a reader sees, and no structure: one paragraph of plain text (or nothing)."""
    tokens = MD.parse(src)
    assert [t.type for t in tokens] in ([], ["paragraph_open", "inline", "paragraph_close"]), (src, tokens)
    if not tokens:
        return ""
    children = tokens[1].children
    assert {c.type for c in children} <= {"text"}, (src, [c.type for c in children])
    return "".join(c.content for c in children)


def one_line(text: str) -> str:
    return re.sub(r"[\r\n\u2028\u2029\x0b\x0c\x85]+", " ", text).strip()


def test_payloads_render_as_their_text():
    for p in PAYLOADS:
        src = md_text(p)
        assert rendered_text(src) == one_line(p), (p, src)
        assert not re.search(r"(?<!\\)[$:@]", src), src  # Streamlit's math and directives, GFM's e-mail links
        assert "www." not in src.lower()  # GFM's www. autolinks


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_any_text_renders_as_itself(text):
    src = md_text(text)
    assert rendered_text(src) == one_line(text)
    assert not re.search(r"(?<!\\)[$:@]", src)
    assert "www." not in src.lower()


@settings(max_examples=300, deadline=None)
@given(TEXT, st.sampled_from(["**Model** {} (uploaded)", "| {} | 3 |", "- {}", "{}: not valid", "# {}"]))
def test_embedded_names_add_no_structure(text, template):
    """Inside our own Markdown the name adds no link, image, HTML, code or emphasis of its own."""
    ours = {t.type for t in inline_tokens(template.format("x"))}
    theirs = {t.type for t in inline_tokens(template.format(md_text(text)))}
    assert theirs - ours <= {"text"}, (text, theirs - ours)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_code_spans_show_the_name_literally(text):
    src = md_code(text)
    tokens = MD.parse(src)
    children = tokens[1].children
    assert [c.type for c in children] == ["code_inline"], (text, src)
    assert children[0].content.strip() == one_line(text).strip()
