"""Human units for display, the one number formatter of the command line and the explorer.

Files and APIs stay in SI base units (bytes, seconds, FLOP/s); what a person reads is formatted
here: times (``format_seconds``), memory in binary units (``format_bytes``), FLOP counts,
parameter counts and speed-ups, and the conversions the explorer's fields and tables use (GB/s,
µs, TFLOP/s, GiB).
"""

from __future__ import annotations

import math

GB = 1e9  #: bytes per GB (link bandwidths are quoted in decimal GB/s)
US = 1e-6  #: seconds per µs
TFLOPS = 1e12  #: FLOP/s per TFLOP/s
GIB = 2**30  #: bytes per GiB (device memory is quoted in binary units)


def format_seconds(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_bytes(nbytes: float) -> str:
    """Binary units (GiB), as device memory is quoted."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


def format_flop_count(flops: float) -> str:
    """A FLOP count (not a rate): 1.2 TFLOP, 340 GFLOP."""
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if abs(flops) >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.0f} FLOP"


def format_count(n: float) -> str:
    """A count of things (parameters): 110M, 2.5k, 12."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def format_speedup(x: float | None) -> str:
    """``2.50x``; ``n/a`` when there is no finite ratio."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def format_delta_seconds(seconds: float) -> str:
    """A signed change of time: ``+1.2 ms``, ``-340 µs`` (``+0 ns`` counts as an increase)."""
    return f"{'+' if seconds >= 0 else '-'}{format_seconds(abs(seconds))}"


def gbps(bandwidth_Bps: float) -> float:
    return bandwidth_Bps / GB


def microseconds(seconds: float) -> float:
    return seconds / US


def tflops(flops_per_s: float) -> float:
    return flops_per_s / TFLOPS


def gib(nbytes: float) -> float:
    return nbytes / GIB
