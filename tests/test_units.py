"""planner.units: the one number formatter, against numbers worked out by hand."""

import math

from planner.units import (format_bytes, format_count, format_delta_seconds, format_flop_count, format_seconds,
                           format_speedup, gbps, gib, microseconds, tflops)


def test_seconds_pick_the_largest_unit_below_the_value():
    assert format_seconds(4.66e-3) == "4.66 ms"
    assert format_seconds(12.7e-3) == "12.7 ms"
    assert format_seconds(2.5) == "2.5 s"
    assert format_seconds(33.6e-6) == "33.6 µs"
    assert format_seconds(5e-10) == "0.5 ns"
    assert format_seconds(float("inf")) == format_seconds(None) == "n/a"


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


def test_speedups():
    assert format_speedup(2.5) == "2.50x"
    assert format_speedup(math.inf) == format_speedup(None) == "n/a"


def test_conversions_to_the_explorers_units():
    assert gbps(25e9) == 25.0
    assert microseconds(3e-6) == 3.0
    assert tflops(312e12) == 312.0
    assert gib(80 * 2**30) == 80.0
