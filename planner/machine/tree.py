"""The symmetric hierarchical abstract machine (BSP / Multi-BSP style) and its YAML presets.

A cluster is described as a tree whose every level is uniform: e.g. 16 nodes x 8 GPUs. Level
``l`` has an arity ``p_l``, a per-device, per-direction link bandwidth ``B_l`` (so a per-byte gap
``g_l = 1 / B_l``) and a superstep latency ``L_l``; every leaf is the same device with a peak rate
``F`` and a memory ``M``. The cost model only ever needs these few symbols, which is what lets a
plan be priced on any machine (or any what-if variant of one) without profiling.

Why the validation is so strict: a machine usually arrives as a hand-written YAML file, and a
typo there (a bandwidth in Gb/s instead of B/s, ``8.5`` GPUs, a misspelt key that silently falls
back to a default) would not crash anything; it would just produce a confidently wrong plan.
So every field is checked when the object is built (``__post_init__``) and again, with the exact
path of the field, when a description is parsed (``from_dict``). ``MachineError`` is the only
exception that parsing lets escape, so callers (the UI, the command line) can show its message
to the user as is.

All numbers are in SI base units: FLOP/s, bytes, bytes per second, seconds.
"""

from __future__ import annotations

import json
import math
import numbers
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_DEVICES",
    "Cut",
    "Device",
    "Level",
    "Machine",
    "MachineError",
    "load_machine",
    "load_preset",
    "preset_paths",
]

#: Upper bounds on devices and levels (planner/limits.py). Far beyond any real cluster, they
#: exist so that a typo or a hostile file is refused before anything is built from it.
from planner.limits import MAX_DEVICES, MAX_MACHINE_LEVELS  # noqa: E402
from planner.errors import PlannerError

#: Where the preset YAML files live: ``<repo>/machines``, found relative to this file so that it
#: works from any working directory.
PRESETS_DIR = Path(__file__).resolve().parents[2] / "machines"


class MachineError(PlannerError, ValueError):
    """Invalid machine description; message names the field and what is expected.

    A ``ValueError`` subclass so that generic callers that already catch ``ValueError`` keep
    working, and a distinct type so that the UI can tell "the user's file is wrong" apart from a
    bug in the planner.
    """


# ----------------------------------------------------------------------------------------------
# Field rules. One table drives both the constructor checks and the parser's messages, so the
# two can never disagree about what a field means or what an example value looks like.
# ----------------------------------------------------------------------------------------------

_EXPECTED = {
    "machine": "a mapping with keys name, device, levels, e.g. machines/dgx_a100.yaml",
    "name": "a non-empty string naming the machine, e.g. 'dgx_a100'",
    "device": "a mapping with keys name, peak_flops, memory_bytes[, compute_efficiency, "
    "memory_bandwidth_Bps, peak_flops_fp8, tile_rows, tile_cols, multiprocessors], "
    "e.g. {name: A100, peak_flops: 312e12, memory_bytes: 80e9}",
    "levels": "a non-empty list of levels, outermost first, "
    "e.g. [{name: node, arity: 2, bandwidth_Bps: 25e9, latency_s: 1e-5}]",
    "level": "a mapping with keys name, arity, bandwidth_Bps, latency_s, "
    "e.g. {name: gpu, arity: 8, bandwidth_Bps: 300e9, latency_s: 5e-6}",
    "device.name": "a non-empty string naming the device, e.g. 'A100'",
    "peak_flops": "a positive number of FLOP/s, e.g. 312e12",
    "memory_bytes": "a positive number of bytes, e.g. 80e9",
    "compute_efficiency": "a number in (0, 1), the fraction of peak FLOP/s that large kernels "
    "reach (the ceiling; 1 is allowed for what-ifs), e.g. 0.75",
    "memory_bandwidth_Bps": "a positive number of bytes per second between the device and its "
    "memory (HBM), e.g. 2.039e12 for an A100 80GB; leave it out to price every operator by its FLOPs",
    "peak_flops_fp8": "a positive number of FLOP/s of dense FP8 matrix multiplies (the datasheet's "
    "figure without sparsity), e.g. 1979e12 for an H100 SXM; leave it out on a device without FP8",
    "tile_rows": "a whole number from 1 to 1024, the rows of a matrix multiply's output tile "
    "(the tensor-core tile a kernel pads to), e.g. 128; give tile_rows, tile_cols and multiprocessors together",
    "tile_cols": "a whole number from 1 to 1024, the columns of a matrix multiply's output tile, e.g. 128",
    "multiprocessors": "a whole number from 1 to 100000, the streaming multiprocessors (or AI cores) "
    "one wave of tiles runs on, e.g. 108 for an A100 SXM, 132 for an H100 SXM",
    "level.name": "a non-empty string naming the level, e.g. 'node' or 'gpu'",
    "arity": f"a whole number of children per parent, from 1 to {MAX_DEVICES}, e.g. 8",
    "bandwidth_Bps": "a positive number of bytes per second (per device, per direction), "
    "e.g. 25e9",
    "latency_s": "a non-negative number of seconds, e.g. 5e-6",
}

_MACHINE_KEYS = ("name", "device", "levels")
_DEVICE_OPTIONAL = ("compute_efficiency", "memory_bandwidth_Bps", "peak_flops_fp8", "tile_rows", "tile_cols",
                    "multiprocessors")
_DEVICE_KEYS = ("name", "peak_flops", "memory_bytes") + _DEVICE_OPTIONAL
_QUANTISATION = ("tile_rows", "tile_cols", "multiprocessors")  # planner.cost.efficiency; all or none
_WHOLE_LIMITS = {"arity": MAX_DEVICES, "tile_rows": 1024, "tile_cols": 1024, "multiprocessors": 100000}
_DEVICE_REQUIRED = ("name", "peak_flops", "memory_bytes")
_LEVEL_KEYS = ("name", "arity", "bandwidth_Bps", "latency_s")


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60


def _show(value: Any) -> str:
    """A short repr for error messages: random or huge input must not produce a huge message.

    ``reprlib`` bounds the work too, not just the output: a YAML "billion laughs" document
    (aliases nesting aliases) is small as text but enormous when fully repr'd.
    """
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - e.g. RecursionError on absurdly nested input
        text = f"<{_type_name(value)}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _a(value: Any) -> str:
    """'an int', 'a list': the value's type with its article, for messages."""
    name = _type_name(value)
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _fail(path: str, rule: str, value: Any, why: str = "") -> MachineError:
    suffix = f" ({why})" if why else ""
    return MachineError(f"{path} must be {_EXPECTED[rule]}; got {_show(value)}{suffix}")


def _real(value: Any, path: str, rule: str) -> float:
    """Read a finite real number, accepting the spellings YAML files actually contain.

    PyYAML follows YAML 1.1, where ``3.12e14`` (no dot or no exponent sign) is *not* a float but
    a string; people write numbers that way all the time, so numeric strings are converted with
    ``float``. Booleans are refused although Python treats them as ints: ``true`` for a bandwidth
    is always a mistake.
    """
    if isinstance(value, bool):
        raise _fail(path, rule, value, "a boolean is not a number")
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except (OverflowError, ValueError, TypeError) as exc:
            raise _fail(path, rule, value, str(exc)) from None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _fail(path, rule, value, "not a number") from None
    else:
        raise _fail(path, rule, value, f"{_a(value)} is not a number")
    if not math.isfinite(number):
        raise _fail(path, rule, value, "must be finite")
    return number


def _positive(value: Any, path: str, rule: str) -> float:
    number = _real(value, path, rule)
    if number <= 0:
        raise _fail(path, rule, value, "must be > 0")
    return number


def _positive_invertible(value: Any, path: str, rule: str) -> float:
    """A positive number whose reciprocal is finite: the cost model uses ``1/F`` and ``1/B``."""
    number = _positive(value, path, rule)
    if not math.isfinite(1.0 / number):
        raise _fail(path, rule, value, "too small: its reciprocal overflows")
    return number


def _whole(value: Any, path: str, rule: str) -> int:
    """Read a whole number (an arity, a tile side, a count of multiprocessors), written as an int,
    an integral float (8.0) or a string, from 1 to its rule's limit."""
    if isinstance(value, bool):
        raise _fail(path, rule, value, "a boolean is not a number")
    if isinstance(value, numbers.Integral):
        arity = int(value)
    else:
        if isinstance(value, str):
            try:
                # Exact for integer strings of any size; falls back to float for "8.0", "1e3".
                arity = int(value.strip())
            except ValueError:
                arity = None
        else:
            arity = None
        if arity is None:
            number = _real(value, path, rule)
            if not number.is_integer():
                raise _fail(path, rule, value, "not a whole number")
            arity = int(number)
    if arity < 1:
        raise _fail(path, rule, value, "must be >= 1")
    if arity > _WHOLE_LIMITS[rule]:
        raise _fail(path, rule, value, f"more than {_WHOLE_LIMITS[rule]}")
    return arity


def _name(value: Any, path: str, rule: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, rule, value, f"{_a(value)} is not a string")
    if not value.strip():
        raise _fail(path, rule, value, "empty")
    if not value.isprintable():
        # Names end up in tables, plots and symbol names: no newlines or control characters.
        raise _fail(path, rule, value, "contains non-printable characters")
    return value


def _check_keys(data: Any, path: str, rule: str, allowed: tuple, required: tuple) -> Mapping:
    """Check that ``data`` is a mapping holding exactly the allowed keys and all required ones.

    Unknown keys are errors rather than ignored: a misspelt optional key (``compute_eficiency``)
    would otherwise silently keep its default.
    """
    if not isinstance(data, Mapping):
        where = path or "the machine description"
        raise _fail(where, rule, data, f"{_a(data)} is not a mapping")
    where = f"{path}." if path else ""
    for key in data:
        if key not in allowed:
            raise MachineError(
                f"{where}{key if isinstance(key, str) else _show(key)}: unknown key "
                f"{_show(key)} in {path or 'the machine description'}; "
                f"allowed keys are {', '.join(allowed)}"
            )
    for key in required:
        if key not in data:
            sub = f"{rule}.{key}" if f"{rule}.{key}" in _EXPECTED else key
            raise MachineError(f"{where}{key} is missing: expected {_EXPECTED[sub]}")
    return data


def _check_level_count(count: int) -> None:
    if count > MAX_MACHINE_LEVELS:
        raise MachineError(f"levels: {count:,} levels, more than the {MAX_MACHINE_LEVELS} allowed; describe the "
                           "machine's real hierarchy (e.g. node and gpu), merging levels of arity 1")


def _prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in ascending order, with multiplicity (n <= MAX_DEVICES)."""
    factors = []
    p = 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    if n > 1:
        factors.append(n)
    return factors


def _is_prime(n: int) -> bool:
    return n >= 2 and _prime_factors(n) == [n]


def _set(obj: Any, name: str, value: Any) -> None:
    # Frozen dataclasses forbid assignment; normalising a field in __post_init__ needs this.
    object.__setattr__(obj, name, value)


# ----------------------------------------------------------------------------------------------
# The dataclasses.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One leaf of the machine tree: every device is identical (the machine is symmetric).

    ``compute_efficiency`` derates the datasheet peak to what large kernels actually reach, so
    that compute and communication are compared on a realistic footing; 1.0 means "use peak".
    ``memory_bandwidth_Bps`` (optional) lets operators that move more bytes than they compute
    (norms, softmax, element-wise) be priced by their memory traffic: the roofline takes the
    larger of the two times. Without it every operator is priced by its FLOPs alone.
    ``peak_flops_fp8`` (optional) is the dense FP8 matrix-multiply peak that ``--precision fp8``
    prices the linear layers at (:mod:`planner.cost.fp8`); derated by the same efficiency.
    ``tile_rows``, ``tile_cols`` and ``multiprocessors`` (optional, together) give each matrix
    multiply its own efficiency below the ceiling: tile and wave quantisation
    (:mod:`planner.cost.efficiency`).
    """

    name: str
    peak_flops: float  # FLOP/s
    memory_bytes: float
    compute_efficiency: float = 1.0  # in (0, 1]: fraction of peak large kernels reach
    memory_bandwidth_Bps: float | None = None  # device memory (HBM) bytes per second
    peak_flops_fp8: float | None = None  # FLOP/s of dense FP8 matrix multiplies
    tile_rows: int | None = None  # rows of a matrix multiply's output tile
    tile_cols: int | None = None  # its columns
    multiprocessors: int | None = None  # SMs: tiles run in waves of this many

    def __post_init__(self) -> None:
        self._validate("Device")

    def _validate(self, path: str) -> None:
        _name(self.name, f"{path}.name", "device.name")
        _set(self, "peak_flops", _positive(self.peak_flops, f"{path}.peak_flops", "peak_flops"))
        _set(
            self,
            "memory_bytes",
            _positive(self.memory_bytes, f"{path}.memory_bytes", "memory_bytes"),
        )
        eff = _positive(self.compute_efficiency, f"{path}.compute_efficiency", "compute_efficiency")
        if eff > 1:
            raise _fail(f"{path}.compute_efficiency", "compute_efficiency", eff, "must be <= 1")
        _set(self, "compute_efficiency", eff)
        if self.memory_bandwidth_Bps is not None:
            _set(self, "memory_bandwidth_Bps", _positive_invertible(
                self.memory_bandwidth_Bps, f"{path}.memory_bandwidth_Bps", "memory_bandwidth_Bps"))
        if self.peak_flops_fp8 is not None:
            _set(self, "peak_flops_fp8", _positive_invertible(
                self.peak_flops_fp8, f"{path}.peak_flops_fp8", "peak_flops_fp8"))
        given = [f for f in _QUANTISATION if getattr(self, f) is not None]
        for f in given:
            _set(self, f, _whole(getattr(self, f), f"{path}.{f}", f))
        if given and len(given) < len(_QUANTISATION):
            missing = next(f for f in _QUANTISATION if f not in given)
            raise _fail(f"{path}.{missing}", missing, None, "tile_rows, tile_cols and multiprocessors go together")
        if not math.isfinite(1.0 / self.effective_flops):
            raise _fail(
                f"{path}.peak_flops", "peak_flops", self.peak_flops, "too small: 1/F overflows"
            )

    @property
    def effective_flops(self) -> float:
        """FLOP/s the cost model divides work by: peak derated by the compute efficiency."""
        return self.peak_flops * self.compute_efficiency


@dataclass(frozen=True)
class Level:
    """One level of the tree: ``arity`` children per parent, linked at a uniform speed.

    ``bandwidth_Bps`` is per device and per direction, because that is what bounds how fast one
    device can send (or receive) its ``h`` bytes in a BSP superstep: ``h * g + L``.
    """

    name: str
    arity: int  # >= 1 integer
    bandwidth_Bps: float  # per device per direction, > 0
    latency_s: float  # >= 0

    def __post_init__(self) -> None:
        self._validate(f"Level({self.name!r})" if isinstance(self.name, str) else "Level")

    def _validate(self, path: str) -> None:
        _name(self.name, f"{path}.name", "level.name")
        _set(self, "arity", _whole(self.arity, f"{path}.arity", "arity"))
        _set(
            self,
            "bandwidth_Bps",
            _positive_invertible(self.bandwidth_Bps, f"{path}.bandwidth_Bps", "bandwidth_Bps"),
        )
        latency = _real(self.latency_s, f"{path}.latency_s", "latency_s")
        if latency < 0:
            raise _fail(f"{path}.latency_s", "latency_s", self.latency_s, "must be >= 0")
        _set(self, "latency_s", latency + 0.0)  # + 0.0 turns -0.0 into 0.0

    @property
    def gap_s_per_byte(self) -> float:
        """BSP's ``g``: seconds per byte sent by one device at this level (``1 / bandwidth``)."""
        return 1.0 / self.bandwidth_Bps


@dataclass(frozen=True)
class Cut:
    """One prime step of the bisection schedule.

    D-Rec splits the machine one prime factor at a time (a 2-way cut, then another, ...), so that
    every decision is a small choice among an operator's dimensions; the schedule walks the
    levels outermost (slowest) first, because the most expensive links should carry the least.
    """

    index: int  # position in the schedule
    level: int  # index into Machine.levels
    level_name: str
    factor: int  # a prime

    def __post_init__(self) -> None:
        for attr in ("index", "level"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MachineError(f"Cut.{attr} must be a non-negative int, e.g. 0; got {value!r}")
        if not isinstance(self.level_name, str):
            raise MachineError(f"Cut.level_name must be a string; got {self.level_name!r}")
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or not _is_prime(
            self.factor
        ):
            raise MachineError(f"Cut.factor must be a prime, e.g. 2; got {self.factor!r}")


@dataclass(frozen=True)
class Machine:
    """A symmetric hierarchical machine: ``levels`` (outermost first) over identical devices."""

    name: str
    device: Device
    levels: tuple[Level, ...]  # outermost first

    def __post_init__(self) -> None:
        _name(self.name, "Machine.name", "name")
        if not isinstance(self.device, Device):
            raise _fail("Machine.device", "device", self.device, "expected a Device")
        if isinstance(self.levels, (list, tuple)):
            # Accept a list for convenience; store a tuple so the machine stays hashable.
            _set(self, "levels", tuple(self.levels))
        else:
            raise _fail("Machine.levels", "levels", self.levels, "expected a tuple of Level")
        if not self.levels:
            raise _fail("Machine.levels", "levels", self.levels, "empty")
        _check_level_count(len(self.levels))
        seen: dict[str, int] = {}
        for i, level in enumerate(self.levels):
            if not isinstance(level, Level):
                raise _fail(f"Machine.levels[{i}]", "level", level, "expected a Level")
            if level.name in seen:
                raise MachineError(
                    f"levels[{i}].name: duplicate level name {level.name!r} (also levels"
                    f"[{seen[level.name]}]); each level needs its own name, e.g. 'node' and 'gpu'"
                )
            seen[level.name] = i
        total = math.prod(level.arity for level in self.levels)
        if total > MAX_DEVICES:
            raise MachineError(
                f"levels: the product of the arities is {total} devices, more than the "
                f"{MAX_DEVICES} supported; check levels[*].arity (e.g. 64 nodes x 8 gpus = 512)"
            )
        # Computed once here: the machine is immutable and the search asks for it repeatedly.
        _set(self, "_cuts", self._compute_cuts())

    # -- structure ------------------------------------------------------------------------------

    @property
    def num_devices(self) -> int:
        """``P``: the product of the arities."""
        return math.prod(level.arity for level in self.levels)

    def _compute_cuts(self) -> tuple[Cut, ...]:
        cuts = []
        for level_index, level in enumerate(self.levels):
            for factor in _prime_factors(level.arity):
                cuts.append(Cut(len(cuts), level_index, level.name, factor))
        return tuple(cuts)

    def cuts(self) -> tuple[Cut, ...]:
        """The bisection schedule: each level's arity factored into primes, outermost first.

        Within a level the primes ascend (arity 12 gives 2, 2, 3); a level of arity 1 adds no
        cut. The product of all factors is ``num_devices``.
        """
        return self._cuts  # type: ignore[attr-defined]

    # -- what-if copies -------------------------------------------------------------------------

    def _level_index(self, index: int | str) -> int:
        names = [level.name for level in self.levels]
        if isinstance(index, str):
            if index in names:
                return names.index(index)
            raise MachineError(f"no level named {index!r}; levels are {', '.join(names)}")
        if isinstance(index, bool) or not isinstance(index, int) or not (
            -len(names) <= index < len(names)
        ):
            raise MachineError(
                f"level index must be an int in [0, {len(names) - 1}] or a level name "
                f"({', '.join(names)}); got {index!r}"
            )
        return index % len(names)

    def with_level(self, index: int | str, **changes: Any) -> Machine:
        """A copy with one level's fields changed (e.g. a slower network), fully validated.

        ``index`` is a position in ``levels`` or a level name. Goes through ``from_dict`` so a
        bad value is reported with its path (``levels[0].bandwidth_Bps``) and a misspelt field
        name is an error, not a silent no-op.
        """
        i = self._level_index(index)
        data = self.to_dict()
        data["levels"][i].update(changes)
        return Machine.from_dict(data)

    def with_device(self, **changes: Any) -> Machine:
        """A copy with device fields changed (e.g. another efficiency), fully validated.

        ``memory_bandwidth_Bps=None`` removes the memory bandwidth (FLOPs-only pricing),
        ``peak_flops_fp8=None`` the FP8 peak, ``multiprocessors=None`` (with the tiles) the
        quantisation."""
        data = self.to_dict()
        data["device"].update(changes)
        for optional in _DEVICE_OPTIONAL[1:]:
            if data["device"].get(optional, 0) is None:
                del data["device"][optional]
        return Machine.from_dict(data)

    # -- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain data in the YAML shape (fresh containers: the caller may mutate them)."""
        return {
            "name": self.name,
            "device": {
                "name": self.device.name,
                "peak_flops": self.device.peak_flops,
                "memory_bytes": self.device.memory_bytes,
                **{f: getattr(self.device, f) for f in _DEVICE_OPTIONAL if getattr(self.device, f) is not None},
            },
            "levels": [
                {
                    "name": level.name,
                    "arity": level.arity,
                    "bandwidth_Bps": level.bandwidth_Bps,
                    "latency_s": level.latency_s,
                }
                for level in self.levels
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Machine:
        """Validate plain data (as read from YAML or JSON) and build a Machine.

        Every error is a ``MachineError`` whose message starts with the field's path.
        """
        _check_keys(data, "", "machine", _MACHINE_KEYS, _MACHINE_KEYS)
        name = _name(data["name"], "name", "name")

        dev = _check_keys(data["device"], "device", "device", _DEVICE_KEYS, _DEVICE_REQUIRED)
        device_fields = {
            "name": _name(dev["name"], "device.name", "device.name"),
            "peak_flops": _positive(dev["peak_flops"], "device.peak_flops", "peak_flops"),
            "memory_bytes": _positive(dev["memory_bytes"], "device.memory_bytes", "memory_bytes"),
        }
        for optional in _DEVICE_OPTIONAL:
            if optional in dev:
                device_fields[optional] = dev[optional]
        try:
            device = Device(**device_fields)
        except MachineError as exc:
            # Re-point the constructor's "Device." prefix at the field's path in the file.
            raise MachineError(str(exc).replace("Device.", "device.", 1)) from None

        raw_levels = data["levels"]
        if not isinstance(raw_levels, (list, tuple)):
            raise _fail("levels", "levels", raw_levels, f"{_a(raw_levels)} is not a list")
        if not raw_levels:
            raise _fail("levels", "levels", raw_levels, "empty")
        _check_level_count(len(raw_levels))
        levels = []
        seen: dict[str, int] = {}
        total = 1
        for i, raw in enumerate(raw_levels):
            path = f"levels[{i}]"
            lvl = _check_keys(raw, path, "level", _LEVEL_KEYS, _LEVEL_KEYS)
            level_name = _name(lvl["name"], f"{path}.name", "level.name")
            if level_name in seen:
                raise MachineError(
                    f"{path}.name: duplicate level name {level_name!r} (also levels"
                    f"[{seen[level_name]}]); each level needs its own name, e.g. 'node' and 'gpu'"
                )
            seen[level_name] = i
            arity = _whole(lvl["arity"], f"{path}.arity", "arity")
            total *= arity
            if total > MAX_DEVICES:
                raise MachineError(
                    f"{path}.arity: the levels so far multiply to {total} devices, more than the "
                    f"{MAX_DEVICES} supported (e.g. 64 nodes x 8 gpus = 512)"
                )
            bandwidth = _positive_invertible(
                lvl["bandwidth_Bps"], f"{path}.bandwidth_Bps", "bandwidth_Bps"
            )
            latency = _real(lvl["latency_s"], f"{path}.latency_s", "latency_s")
            if latency < 0:
                raise _fail(f"{path}.latency_s", "latency_s", lvl["latency_s"], "must be >= 0")
            levels.append(Level(level_name, arity, bandwidth, latency))
        return cls(name, device, tuple(levels))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Machine:
        if not isinstance(text, (str, bytes, bytearray)):
            raise MachineError(f"machine JSON must be text; got {_a(text)}")
        from planner.machine.text import parse_json

        return cls.from_dict(parse_json(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Machine:
        if not isinstance(text, (str, bytes)):
            raise MachineError(f"machine YAML must be text; got {_a(text)}")
        from planner.machine.text import parse_yaml

        return cls.from_dict(parse_yaml(text))

    # -- presentation ---------------------------------------------------------------------------

    def summary(self) -> str:
        """One line for people, e.g. '2 nodes x 8 gpus = 16 devices of A100 (312 TFLOP/s, 80 GiB)'."""
        parts = " x ".join(
            f"{level.arity} {level.name}{'' if level.arity == 1 else 's'}" for level in self.levels
        )
        n = self.num_devices
        specs = [_si(self.device.peak_flops, "FLOP/s")]
        if self.device.peak_flops_fp8 is not None:
            specs.append(f"FP8 {_si(self.device.peak_flops_fp8, 'FLOP/s')}")
        if self.device.compute_efficiency != 1.0:
            specs.append(f"{self.device.compute_efficiency:.0%} efficiency")
        specs.append(_binary(self.device.memory_bytes))
        if self.device.memory_bandwidth_Bps is not None:
            specs.append(_si(self.device.memory_bandwidth_Bps, "B/s"))
        return (
            f"{parts} = {n} device{'' if n == 1 else 's'} of {self.device.name} "
            f"({', '.join(specs)})"
        )


def _si(value: float, unit: str) -> str:
    """312e12 -> '312 TFLOP/s': decimal prefixes, as datasheets quote rates."""
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _binary(value: float) -> str:
    """80 * 2**30 -> '80 GiB': binary prefixes, as memory is allocated."""
    for scale, prefix in ((2**50, "Pi"), (2**40, "Ti"), (2**30, "Gi"), (2**20, "Mi"), (2**10, "Ki")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}B"
    return f"{value:.4g} B"


# ----------------------------------------------------------------------------------------------
# Files and presets.
# ----------------------------------------------------------------------------------------------


def load_machine(path: str | Path) -> Machine:
    """Read a machine from a ``.yaml``/``.yml`` (or ``.json``) file.

    Every failure, including a missing or unreadable file, is a ``MachineError`` whose message
    starts with the path, so the user knows which file to fix.
    """
    from planner.limits import MAX_MACHINE_FILE_BYTES, LimitError, read_bounded

    path = Path(path)
    try:
        text = read_bounded(path, MAX_MACHINE_FILE_BYTES, "machine file",
                            "a machine description is a few hundred bytes (see machines/dgx_a100.yaml)").decode("utf-8")
    except LimitError as exc:
        raise MachineError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise MachineError(f"{path}: cannot read machine file: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return Machine.from_json(text)
        return Machine.from_yaml(text)
    except MachineError as exc:
        raise MachineError(f"{path}: {exc}") from None


def preset_paths() -> dict[str, Path]:
    """Preset name (the file stem) -> path, for every ``machines/*.yaml`` in the repository."""
    if not PRESETS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(PRESETS_DIR.glob("*.yaml"))}


def load_preset(name: str) -> Machine:
    """Load a preset by name (``'dgx_a100'``; a trailing ``.yaml`` is tolerated)."""
    paths = preset_paths()
    key = name[: -len(".yaml")] if isinstance(name, str) and name.endswith(".yaml") else name
    if key not in paths:
        raise MachineError(
            f"unknown machine preset {name!r}; available presets are {', '.join(paths) or 'none'}"
        )
    return load_machine(paths[key])
