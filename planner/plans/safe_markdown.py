"""Names from outside (an uploaded model's file and operator names, a shared link's or an uploaded
machine's level and device names, and the messages that quote them) made inert before they reach
Markdown: the explorer's (Streamlit's ``st.markdown``, ``st.caption``, alerts, widget labels and help texts, through
``explorer.safe_markdown``) and the Markdown report (:mod:`planner.plans.report_md`).

- :func:`md_text` backslash-escapes every character that can start a Markdown construct inline
  (links, images, raw HTML, entities, emphasis, code, ``$`` math, Streamlit's ``:color[...]`` and
  ``:icon:`` directives, table pipes, GFM autolinks ``www.``/``x@y``), the markers that would open
  a block at the start (``#``, ``-``, ``+``, ``1.``, ``>``), and puts everything on one line.
  CommonMark renders ``\\x`` as ``x`` for any ASCII punctuation ``x``: the text shows as written.
- :func:`md_code` puts the name in a code span whose backtick fence is longer than any run of
  backticks in it: its content is shown literally, whatever it holds.

Plain ``.``, ``,``, ``-``, ``+``, ``/``, ``=`` inside a name are left alone (they start nothing
there), so messages keep their look in the app's source and in tests.
"""

from __future__ import annotations

import re

#: Characters escaped wherever they are.
SPECIAL = frozenset("\\`*_{}[]()<>#!|~$:&@^")
_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
_WWW = re.compile(r"(?i)(www)\.")
#: A block marker at the start of the text: a list item (``- x``, ``+ x``, ``1. x``, ``1) x``: the
#: marker followed by a blank or the end), a thematic break or setext underline (a line of ``-``
#: or ``=`` only), a heading, a quote (escaped anyway). ``7.44 ms``, ``0.1.0``, ``-340 µs`` and
#: ``+1.2 ms`` start none, and are left as written.
_LEADING = re.compile(r"^([-+=](?=\s|$)|[-=]+\s*$|\d{1,9}(?=[.)](?:\s|$)))")


def _one_line(value) -> str:
    return _BREAKS.sub(" ", str(value)).strip()


def md_text(value) -> str:
    """``value`` as Markdown that renders as exactly its text (on one line, without the blanks
    at its ends)."""
    text = _one_line(value)
    out = "".join("\\" + ch if ch in SPECIAL else ch for ch in text)
    out = _WWW.sub(r"\1\\.", out)
    m = _LEADING.match(out)
    if m:  # "- x" becomes "\- x", "---" "\---"; "12. x" becomes "12\. x"
        out = "\\" + out if not m.group(1).isdigit() else out[:m.end()] + "\\" + out[m.end():]
    return out


def md_code(value, in_table: bool = False) -> str:
    """``value`` as an inline code span that shows it literally (on one line); in a table cell its
    pipes are escaped too (GFM splits the cells before it reads code spans)."""
    text = _one_line(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    span = f"{fence} {text} {fence}"
    return span.replace("|", "\\|") if in_table else span


def md_fence(text: str, info: str = "") -> str:
    """``text`` as a fenced code block whose fence is longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def plain(value) -> str:
    """``value`` unchanged: the identity that stands for :func:`md_text` where the text is not Markdown."""
    return str(value)
