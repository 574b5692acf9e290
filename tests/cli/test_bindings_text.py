"""One parser and one formatter for bindings as text: ``NAME=VALUE`` (CLI) and ``NAME:VALUE`` (links)."""

from __future__ import annotations

import pytest

from planner.bindings import (CLI_SEPARATOR, MAX_BINDING, URL_SEPARATOR, BindingTextError, format_bindings,
                              parse_binding)


@pytest.mark.parametrize("separator", [CLI_SEPARATOR, URL_SEPARATOR])
def test_format_then_parse_gives_the_bindings_back(separator):
    bindings = {"batch": 32, "seq": 2048, "n": 1}
    texts = format_bindings(bindings, separator)
    assert texts == [f"batch{separator}32", f"seq{separator}2048", f"n{separator}1"]
    assert dict(parse_binding(t, separator) for t in texts) == bindings


def test_the_two_forms_differ_only_in_the_separator():
    assert parse_binding("batch=32", "=") == parse_binding("batch:32", ":") == ("batch", 32)
    assert parse_binding(" seq =128", "=") == ("seq", 128)  # the name is stripped, as the CLI always did


@pytest.mark.parametrize("text, name", [("batch", None), ("=32", None), ("batch:32", None), ("batch=0", "batch"),
                                        ("batch=x", "batch"), (f"batch={MAX_BINDING + 1}", "batch")])
def test_bad_text_names_what_is_wrong(text, name):
    with pytest.raises(BindingTextError) as info:
        parse_binding(text, "=")
    assert info.value.name == name
    if name is not None:  # above the limit: the message leads with it (1,099,511,627,776 = 2^40)
        above = text.endswith(str(MAX_BINDING + 1))
        assert ("above the limit 1,099,511,627,776" if above else "positive integer") in str(info.value)


def test_the_largest_binding_is_accepted():
    assert parse_binding(f"batch={2**40}", "=") == ("batch", 2**40)
