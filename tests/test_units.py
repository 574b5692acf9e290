"""planner.units: the one number formatter, against numbers worked out by hand, and its
properties over all positive floats (hypothesis)."""

import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.units import (BYTE_UNITS, COUNT_UNITS, DASH, FLOP_UNITS, SECOND_UNITS, clean_float, common_scale,
                           decimals_for, format_bytes, format_bytes_like, format_count, format_delta_seconds, format_flop_count,
                           format_in, format_number, format_seconds, format_speedup, gbps, gib, microseconds,
                           plural, tflops, yes_no)


def test_seconds_pick_the_largest_unit_below_the_value():
    assert format_seconds(4.66e-3) == "4.66 ms"
    assert format_seconds(12.7e-3) == "12.7 ms"
    assert format_seconds(2.5) == "2.5 s"
    assert format_seconds(33.6e-6) == "33.6 µs"
    assert format_seconds(5e-10) == "0.5 ns"
    assert format_seconds(float("inf")) == format_seconds(None) == "n/a"


def test_a_value_that_rounds_up_to_the_next_unit_is_shown_in_it():
    # 0.9995 s is 999.5 ms, which has 3 significant digits only as 1000 ms: it reads 1 s
    assert format_seconds(0.9995) == "1 s"
    assert format_seconds(999.4e-6) == "999 µs"
    assert format_seconds(999.6e-6) == "1 ms"
    # binary units step at 1024: 1023 MiB has no shorter form than its 4 digits
    assert format_bytes(1023 * 2**20) == "1023 MiB"
    assert format_bytes(1023.7 * 2**20) == "1 GiB"  # 1023.7 rounds to 1024 MiB = 1 GiB
    assert format_flop_count(999.7e9) == "1 TFLOP"


def test_signed_time_changes():
    assert format_delta_seconds(1.2e-3) == "+1.2 ms"
    assert format_delta_seconds(-340e-6) == "-340 µs"


def test_bytes_are_binary():
    assert format_bytes(531 * 2**20) == "531 MiB"
    assert format_bytes(80 * 2**30) == "80 GiB"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(12) == "12 B"


def test_flop_counts_and_counts():
    assert format_flop_count(1.2e12) == "1.2 TFLOP"
    assert format_flop_count(340e9) == "340 GFLOP"
    assert format_flop_count(999) == "999 FLOP"
    assert format_count(110_000_000) == "110M"
    assert format_count(2_500) == "2.5k"
    assert format_count(175e9) == "175B"
    assert format_count(12) == "12"


def test_plain_numbers_keep_three_significant_digits_without_an_exponent():
    assert format_number(312.4) == "312"
    assert format_number(0.4567) == "0.457"
    assert format_number(1234.4) == "1234"
    assert format_number(999_999) == "999999"
    assert format_number(2.0) == "2"
    assert format_number(None) == format_number(float("nan")) == DASH


def test_speedups():
    assert format_speedup(2.5) == "2.50x"
    assert format_speedup(math.inf) == format_speedup(None) == "n/a"


def test_words_for_tables_and_sentences():
    assert yes_no(True) == "yes" and yes_no(False) == "no" and yes_no(None) == DASH
    assert plural(1, "micro-batch") == "1 micro-batch"
    assert plural(4, "micro-batch") == "4 micro-batches"
    assert plural(2, "stage") == "2 stages"
    assert plural(1024, "device") == "1,024 devices"


def test_one_unit_per_column():
    # 0.46 GiB and 75 GiB in one column: both in GiB (the largest value's unit)
    assert common_scale([0.46 * 2**30, 75 * 2**30]) == ("GiB", 2**30)
    assert common_scale([3e-6, 2e-3], SECOND_UNITS) == ("ms", 1e-3)
    assert common_scale([]) == ("B", 1.0)
    # the smallest non-zero value keeps 3 significant digits: 0.0123 needs 4 decimals, capped at 3
    assert decimals_for([0.0123, 45.6]) == 3
    assert decimals_for([1.5, 2.25]) == 2
    assert decimals_for([120.0, 3000.0]) == 0
    assert format_in(0.46 * 2**30, 2**30, 2) == "0.46"
    assert format_in(None, 2**30, 2) == DASH
    # a peak of 421 MiB beside a capacity of 74.5 GiB reads in its own magnitude's unit, as the
    # report writes it (issue 15: "0.321" GiB in the app, "329 MiB" in the report for one quantity)
    assert format_bytes_like(421 * 2**20, 74.5 * 2**30) == "421 MiB"
    assert format_bytes_like(74.5 * 2**30, 421 * 2**20) == "74.5 GiB"
    # 0.00774 GiB is 0.00774 x 1024 = 7.93 MiB
    assert format_bytes_like(0.00774 * 2**30, 80 * 2**30) == "7.93 MiB"


def test_conversions_to_the_explorers_units():
    assert gbps(25e9) == 25.0
    assert microseconds(3e-6) == 3.0
    assert tflops(312e12) == 312.0
    assert gib(80 * 2**30) == 80.0
    # an edited latency cell: 10 µs through seconds and back reads 10, not 10.000000000000002
    assert 10e-6 / 1e-6 != 10.0 and microseconds(10e-6) == 10.0
    assert clean_float(0.1 + 0.2) == 0.3


# ---- properties over all positive floats -----------------------------------------------------

FORMATTERS = [(format_seconds, SECOND_UNITS), (format_bytes, BYTE_UNITS), (format_flop_count, FLOP_UNITS),
              (format_count, COUNT_UNITS)]
_TEXT = re.compile(r"^(-?[0-9]+(?:\.([0-9]+))?) ?([A-Za-zµ]*)$")


def parse(text: str, units) -> tuple[float, float]:
    """The value a reader takes from ``text`` and half a unit of its last digit (its precision)."""
    match = _TEXT.match(text)
    assert match, text
    scale = dict(units)[match.group(3)]
    decimals = len(match.group(2) or "")
    return float(match.group(1)) * scale, 0.5 * 10.0**-decimals * scale


def below_scientific(x: float, units) -> bool:
    return x < 1e6 * units[0][1]


positive = st.floats(min_value=1e-30, max_value=1e30, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(positive)
def test_no_exponent_below_a_million_of_the_unit(x):
    for fmt, units in FORMATTERS:
        text = fmt(x)
        if below_scientific(x, units):
            assert "e+" not in text and "e-" not in text, (x, text)


@settings(max_examples=300, deadline=None)
@given(positive)
def test_round_trips_within_the_shown_precision(x):
    for fmt, units in FORMATTERS:
        if below_scientific(x, units):
            value, half_digit = parse(fmt(x), units)
            assert abs(value - x) <= half_digit * (1 + 1e-9), (x, fmt(x))


@settings(max_examples=300, deadline=None)
@given(positive, positive)
def test_monotone(x, y):
    x, y = min(x, y), max(x, y)
    for fmt, units in FORMATTERS:
        if below_scientific(y, units):
            assert parse(fmt(x), units)[0] <= parse(fmt(y), units)[0], (x, y, fmt(x), fmt(y))


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-1e5, max_value=1e5, allow_nan=False))
def test_plain_numbers_have_no_exponent_and_three_digits(x):
    text = format_number(x)
    assert "e" not in text
    if abs(x) >= 1e-3:
        assert abs(float(text) - x) <= 0.005 * abs(x) + 1e-12, (x, text)
