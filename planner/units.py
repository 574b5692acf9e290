"""Human units for display, the one number formatter of the command line, the reports and the
explorer.

Files and APIs stay in SI base units (bytes, seconds, FLOP/s); what a person reads is formatted
here: times (``format_seconds``), memory in binary units (``format_bytes``), FLOP counts,
parameter counts, speed-ups, shares (``format_percent``) and plain numbers (``format_number``), always with 3 significant
digits and never in scientific notation below 10^6 of the unit shown (``0.9995 s`` reads
``1 s``, not ``1e+03 ms``; 1023 MiB reads ``1023 MiB``). A column of a table shows one unit
for all its rows (``common_scale``, ``format_in``, ``decimals_for``); missing values read as a
dash (``DASH``), booleans as ``yes``/``no``, counts with their noun in the right number
(``plural``). Also the conversions the explorer's fields use (GB/s, µs, TFLOP/s, GiB).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

GB = 1e9  #: bytes per GB (link bandwidths are quoted in decimal GB/s)
US = 1e-6  #: seconds per µs
TFLOPS = 1e12  #: FLOP/s per TFLOP/s
GIB = 2**30  #: bytes per GiB (device memory is quoted in binary units)

DASH = "–"  #: what a missing value reads as (never None, NaN or <NA>)
DIGITS = 3  #: significant digits of every formatted number
SCIENTIFIC_FROM = 1e6  #: plain digits below this many of the unit shown

#: (unit, scale) from the largest; the last is the base unit.
SECOND_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))
BYTE_UNITS = (("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10), ("B", 1.0))
FLOP_UNITS = (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3), ("FLOP", 1.0))
COUNT_UNITS = (("B", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0))


def missing(value) -> bool:
    """None, NaN or pandas' NA (anything that is not equal to itself, or has no truth value)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):  # pandas.NA has no truth value
        return True


def _decimals(x: float, digits: int = DIGITS) -> int:
    """Decimals that show ``x`` with ``digits`` significant digits (0 for large numbers)."""
    if x == 0 or not math.isfinite(x):
        return 0
    return max(0, digits - 1 - math.floor(math.log10(abs(x))))


def _fixed(x: float, decimals: int) -> str:
    """``x`` with ``decimals`` decimals, trailing zeros dropped, never ``-0``."""
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_number(x: float | None, digits: int = DIGITS, max_decimals: int | None = None) -> str:
    """A plain number with ``digits`` significant digits and no exponent below 10^6:
    ``312``, ``0.46``, ``1234`` (large numbers keep all their integer digits), ``DASH`` when
    missing; ``max_decimals`` caps the decimals of tiny numbers (``0`` rather than ``0.0000001``)."""
    if missing(x):
        return DASH
    if not math.isfinite(x):
        return "∞" if x > 0 else "-∞"
    if abs(x) >= SCIENTIFIC_FROM:
        return f"{x:.{digits}g}"
    d = _decimals(x, digits)
    return _fixed(x, d if max_decimals is None else min(d, max_decimals))


def _scaled(x: float, units: tuple, step: float, base_decimals: int | None, sep: str = " ") -> str:
    """``x`` in the largest unit it reaches (after rounding: 999.6 µs is ``1 ms``)."""
    if missing(x):
        return DASH
    if not math.isfinite(x):
        return "n/a"
    i = next((k for k, (_, scale) in enumerate(units) if abs(x) >= scale), len(units) - 1)
    while True:
        unit, scale = units[i]
        last = i == len(units) - 1
        text = format_number(x / scale, max_decimals=base_decimals if last else None)
        if i > 0 and abs(float(text)) >= step:  # rounded up to the next unit
            i -= 1
            continue
        return f"{text}{sep}{unit}".rstrip()


def format_seconds(seconds: float | None) -> str:
    """``4.66 ms``, ``33.6 µs``, ``2.5 s``; ``n/a`` when there is no finite time."""
    if seconds is None or (isinstance(seconds, float) and not math.isfinite(seconds)):
        return "n/a"
    return _scaled(seconds, SECOND_UNITS, 1000, 3)


def seconds_unit(seconds: float) -> tuple[str, float]:
    """The unit :func:`format_seconds` shows ``seconds`` in, with its scale (``("µs", 1e-6)`` for
    168 µs, ``("ms", 1e-3)`` for 999.6 µs): the unit of a sum's total, in which its terms are written."""
    text = format_seconds(seconds)
    unit = text.rsplit(" ", 1)[-1] if " " in text else "s"
    return unit, dict(SECOND_UNITS).get(unit, 1.0)


def format_seconds_in(seconds: float, unit: tuple[str, float]) -> str:
    """``seconds`` in the given unit (:func:`seconds_unit`), 3 significant digits and at most 3
    decimals: the terms of one sum in one unit (``0.434 µs + 20 µs``, not ``434 ns + 20 µs``)."""
    if missing(seconds):
        return DASH
    name, scale = unit
    return f"{format_number(seconds / scale, max_decimals=3)} {name}"


def format_bytes(nbytes: float) -> str:
    """Binary units (GiB), as device memory is quoted: ``531 MiB``, ``1023 MiB``, ``1 GiB``."""
    return _scaled(nbytes, BYTE_UNITS, 1024, 0)


def format_flop_count(flops: float) -> str:
    """A FLOP count (not a rate): 1.2 TFLOP, 340 GFLOP."""
    return _scaled(flops, FLOP_UNITS, 1000, 0)


def format_count(n: float) -> str:
    """A count of things (parameters): 110M, 2.5k, 12."""
    return _scaled(n, COUNT_UNITS, 1000, 0, sep="")


def format_speedup(x: float | None) -> str:
    """``2.50x``; ``n/a`` when there is no finite ratio."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def format_percent(fraction: float | None, digits: int = DIGITS) -> str:
    """A share as a percentage with ``digits`` significant digits: ``2.2%``, ``0.046%``, ``60%``
    (a tiny share is never ``0.0%``); ``DASH`` when missing."""
    return DASH if missing(fraction) else f"{format_number(100 * fraction, digits)}%"


def format_delta_seconds(seconds: float) -> str:
    """A signed change of time: ``+1.2 ms``, ``-340 µs`` (``+0 ns`` counts as an increase)."""
    return f"{'+' if seconds >= 0 else '-'}{format_seconds(abs(seconds))}"


def yes_no(value) -> str:
    """``yes``/``no`` for a truth value, ``DASH`` when missing."""
    return DASH if missing(value) else ("yes" if value else "no")


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 micro-batch``, ``4 micro-batches``, ``2 stages``; ``nouns`` for irregular plurals."""
    many = nouns or (noun + "es" if noun.endswith(("s", "sh", "ch", "x")) else noun + "s")
    return f"{n:,} {noun if n == 1 else many}"


# ---- one unit per column -------------------------------------------------------------------

def common_scale(values: Iterable[float], units: tuple = BYTE_UNITS) -> tuple[str, float]:
    """The one unit a column of ``values`` is shown in: the largest unit its largest value
    reaches (a column of 0.4 GiB and 75 GiB reads in GiB)."""
    finite = [abs(v) for v in values if not missing(v) and math.isfinite(v)]
    top = max(finite, default=0.0)
    return next(((u, s) for u, s in units if top >= s), units[-1])


def format_bytes_like(nbytes: float, *others: float) -> str:
    """``nbytes`` in the unit its own magnitude reaches, as :func:`format_bytes` (``421 MiB`` of
    ``74.5 GiB``; ``12.7 MiB``, never ``0.0124 GiB``), so that one quantity reads the same in every
    view (the app, the command line and the report). ``others``, the quantities shown beside it,
    no longer change its unit; the parameter stays for the callers that pass them."""
    del others
    return format_bytes(nbytes)


def byte_unit(nbytes: float) -> tuple[str, float]:
    """The unit a view of memory draws in, from the magnitude of its largest quantity (the peak):
    MiB below 1 GiB, GiB from 1 GiB (``("MiB", 2**20)`` for a 13 MiB plan)."""
    return common_scale([nbytes])


def decimals_for(values: Iterable[float], digits: int = DIGITS, max_decimals: int = 3) -> int:
    """The decimals one column shows so that its smallest non-zero value keeps ``digits``
    significant digits (at most ``max_decimals``); a fixed count keeps the column aligned."""
    finite = [abs(v) for v in values if not missing(v) and math.isfinite(v) and v != 0]
    if not finite:
        return 0
    return min(max_decimals, _decimals(min(finite), digits))


def format_in(value: float | None, scale: float = 1.0, decimals: int = 2) -> str:
    """``value / scale`` with a fixed number of decimals (a table column's unit); ``DASH``
    when missing; plain digits below 10^6."""
    if missing(value):
        return DASH
    x = value / scale
    if not math.isfinite(x) or abs(x) >= SCIENTIFIC_FROM:
        return format_number(x)
    return f"{x:.{decimals}f}"


def clean_float(value: float, digits: int = 12) -> float:
    """A float as a person typed it: ``10.000000000000002`` (an edited cell's unit
    conversion) becomes ``10.0``; ``digits`` significant digits are kept."""
    if missing(value) or not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def gbps(bandwidth_Bps: float) -> float:
    return clean_float(bandwidth_Bps / GB)


def microseconds(seconds: float) -> float:
    return clean_float(seconds / US)


def tflops(flops_per_s: float) -> float:
    return clean_float(flops_per_s / TFLOPS)


def gib(nbytes: float) -> float:
    return clean_float(nbytes / GIB)
