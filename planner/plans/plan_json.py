"""Plan files (the JSON ``plan --json`` writes): read with bounds, their fields checked by name, their
recorded options merged with the caller's (:func:`merge_recorded_options`, for the CLI and the app
alike), and their operators' layouts read into strategies (:func:`strategies_from_json`).

A plan file is user input like a model: it may be huge, nested 100,000 deep, a FIFO, or carry
``interleave: 0`` or ``bindings: {"batch": -1}``. Everything here is refused with one line that
names the file and the field, before the model is imported or a plan is priced.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import replace

from planner.bindings import MAX_BINDING
from planner.cost.model import CostModel, PlanError, Strategy
from planner.machine.split import MachineSplit, split_machine
from planner.machine.tree import Machine
from planner.limits import (MAX_PLAN_FILE_BYTES, MAX_PLAN_NESTING, LimitError, check_binding_product, check_json_nesting,
                     check_text_size, quote, read_bounded)
from planner.model.graph import OpKind
from planner.options import OptionsError, PlanOptions
from planner.search.drec import DRecSearch

_FIX = "give the JSON that `python -m planner plan --json` writes"

#: Top-level fields whose JSON type is checked (the others are outputs, ignored when read).
_FIELD_TYPES = {"ops": (list, "a list of operators"), "options": (dict, "an object of plan options"),
                "bindings": (dict, 'an object {"name": value}'), "model": (str, "a file name"),
                "model_sha256": (str, "a hex string"), "algorithm": (str, "a string")}


class PlanFileError(LimitError):
    """A plan file is unreadable, too large, too deep or has a bad field; one line says which."""


def check_plan_bounds(text: str | bytes, what: str) -> None:
    """Refuse a plan file's text that is too large or nested too deep (without parsing it)."""
    try:
        check_text_size(text, MAX_PLAN_FILE_BYTES, what, _FIX)
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "replace")
        check_json_nesting(text, MAX_PLAN_NESTING, what)
    except LimitError as exc:
        raise PlanFileError(str(exc)) from None


def parse_plan_text(text: str | bytes, what: str) -> dict:
    """The object in a plan file's text, bounded in size and nesting, with its fields checked.

    ``what`` names the file in messages, e.g. ``"plan file p.json"``.
    """
    try:
        check_text_size(text, MAX_PLAN_FILE_BYTES, what, _FIX)
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        check_json_nesting(text, MAX_PLAN_NESTING, what)
    except UnicodeDecodeError:
        raise PlanFileError(f"{what} is not UTF-8 text; {_FIX}") from None
    except LimitError as exc:
        raise PlanFileError(str(exc)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                            f"{_FIX}") from None
    except RecursionError:  # not reached after the nesting check; kept so that no traceback can escape
        raise PlanFileError(f"{what} nests too deep; {_FIX}") from None
    if not isinstance(data, dict):
        raise PlanFileError(f"{what} must hold a JSON object, like the one plan --json writes")
    return check_plan_fields(data, what)


def read_plan_file(path: str | os.PathLike) -> dict:
    """Read a plan file from disk: a regular file (never a FIFO or a device) of bounded size."""
    try:
        raw = read_bounded(path, MAX_PLAN_FILE_BYTES, "plan file", _FIX)
    except LimitError as exc:
        raise PlanFileError(str(exc)) from None
    return parse_plan_text(raw, f"plan file {path}")


def check_plan_fields(data: dict, what: str) -> dict:
    """Refuse, by field name, the fields a plan file may carry in a wrong form."""
    for key, (kind, expected) in _FIELD_TYPES.items():
        if key in data and data[key] is not None and not isinstance(data[key], kind):
            raise PlanFileError(f"{what}: {key} must be {expected}; got {quote(data[key])}")
    if isinstance(data.get("options"), dict):
        _check_options(data["options"], what)
    if isinstance(data.get("bindings"), dict):
        plan_bindings(data, what)
    return data


def _check_options(options: dict, what: str) -> None:
    """Each recorded option alone must be one PlanOptions accepts (``interleave: 0`` is not)."""
    known = PlanOptions.__dataclass_fields__
    for key, value in options.items():
        if key not in known:
            raise PlanFileError(f"{what}: options.{quote(key)[1:-1]} is not a plan option; the options are "
                                f"{', '.join(known)}")
        if value is None and key in ("precision", "pipeline_stages", "micro_batches", "recompute", "zero"):
            continue  # None: left to the search or the model
        if key in ("pipeline_stages", "micro_batches", "interleave") and (isinstance(value, bool)
                                                                          or not isinstance(value, int)):
            raise PlanFileError(f"{what}: options.{key} must be a whole number >= 1; got {quote(value)}")
        try:
            PlanOptions(**{key: value})
        except (OptionsError, TypeError, ValueError) as exc:
            raise PlanFileError(f"{what}: options.{key} = {quote(value)} is refused: {exc}") from None


def plan_bindings(data: dict, what: str) -> dict[str, int]:
    """The plan file's ``bindings`` as {name: value >= 1}, refused by name when one is not."""
    out = {}
    for name, value in (data.get("bindings") or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BINDING:
            raise PlanFileError(f"{what}: bindings.{quote(name)[1:-1]} must be a whole number from 1 to "
                                f"{MAX_BINDING:,}; got {quote(value)}")
        out[name] = value
    try:
        check_binding_product(out, f"{what}: bindings")
    except LimitError as exc:
        raise PlanFileError(str(exc)) from None
    return out


#: Options a plan file records that the caller may override (the CLI's flags); the pipeline's
#: stages and micro-batches are the plan's own and are kept as recorded.
OVERRIDABLE = ("mode", "precision", "optimizer", "recompute", "zero", "interleave", "bucket_mb",
               "overlap_gradient_sync", "prefetch_parameters", "overlap_pipeline_sends")
RECORDED = OVERRIDABLE + ("pipeline_stages", "micro_batches", "sequence_parallel")  # kept as planned


def merge_recorded_options(data: dict, base: PlanOptions,
                           given: dict | None = None) -> tuple[PlanOptions, list[str]]:
    """The options to score a plan file with, and a note per override: ``base`` (the caller's
    options), then the options the file records (a plan made for one stage, or recorded without
    stages, stays one stage and one micro-batch), then ``given`` (options the user set
    explicitly; None values are not given)."""
    recorded = data.get("options") if isinstance(data.get("options"), dict) else {}
    changes = {k: recorded[k] for k in RECORDED if k in recorded}
    changes["pipeline_stages"] = changes.get("pipeline_stages") or 1
    changes["micro_batches"] = changes.get("micro_batches") or 1
    changes["interleave"] = changes.get("interleave") or 1
    for key in ("overlap_gradient_sync", "prefetch_parameters", "overlap_pipeline_sends"):
        if key in changes:
            changes[key] = bool(changes[key])
    changes["sequence_parallel"] = bool(changes.get("sequence_parallel", False))
    notes = []
    for key, value in (given or {}).items():
        if key not in OVERRIDABLE or value is None:
            continue
        if key in recorded and recorded[key] != value:
            notes.append(f"--{key.replace('_', '-')} {value} overrides the plan file's {recorded[key]}")
        changes[key] = value
    return replace(base, **changes), notes


def strategies_from_json(cm: CostModel, data: dict) -> tuple[dict[str, Strategy], list[str]]:
    """Read ``{"ops": [{"name": ..., "cuts": [[level, dim, factor], ...]} | {"name", "splits": {dim: f}}]}``.

    Operators the file leaves out: layout-following ones get layouts propagated from their
    neighbours, the others are replicated; the notes list both. With only ``splits``, each
    operator's factors are placed on the machine's cuts in the cheapest way for it.
    """
    if not isinstance(data, dict) or not isinstance(data.get("ops"), list):
        raise PlanError('a plan file must be a JSON object with a list "ops": [{"name": ..., "cuts": ... or "splits": ...}]')
    graph = cm.graph
    planned = set(cm.planned)
    strategies: dict[str, Strategy] = {}
    placed_by_splits = []
    seen: dict[str, int] = {}
    mismatched_cuts: list[str] = []
    for i, entry in enumerate(data["ops"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PlanError(f'ops[{i}] must be an object with a "name" (the ONNX node name, a string)')
        name = entry["name"]
        if name in seen:
            raise PlanError(f"ops[{i}]: operator {name!r} appears twice (also ops[{seen[name]}]); keep one entry")
        seen[name] = i
        if name not in graph.operators:
            raise PlanError(f"ops[{i}]: the model has no operator named {name!r}")
        if name not in planned:
            continue  # shape arithmetic: never planned
        if entry.get("cuts") is not None and (entry.get("splits") is None or _cuts_fit(cm, entry["cuts"])):
            strategies[name] = _strategy_from_cuts(cm, name, entry["cuts"], i)
        elif entry.get("splits") is not None:
            if entry.get("cuts") is not None:
                mismatched_cuts.append(name)
            strategies[name] = _strategy_from_splits(cm, name, entry["splits"], i)
            placed_by_splits.append(name)
        else:
            raise PlanError(f'ops[{i}] ({name}) needs "cuts" or "splits"')
    notes = []
    if mismatched_cuts:
        notes.append(f"{len(mismatched_cuts)} operator(s) have cuts for another machine; their splits were used")
    if placed_by_splits:
        notes.append(f"{len(placed_by_splits)} operator(s) gave only splits; their factors were placed on the "
                     "machine levels in the cheapest way for each")
    missing = [n for n in cm.planned if n not in strategies]
    follow = [n for n in missing if graph.operators[n].kind is OpKind.FOLLOW]
    replicated = [n for n in missing if graph.operators[n].kind is not OpKind.FOLLOW]
    for n in replicated:
        strategies[n] = cm.replicated()
    if follow:
        searcher = DRecSearch(cm)
        for n in follow:
            strategies[n] = ()
        given = set(cm.planned) - set(follow)
        for t in range(len(cm.cuts)):
            searcher.propagate(strategies, t, set(given), followers=follow)
        notes.append(f"{len(follow)} layout-following operator(s) not in the file got propagated layouts: "
                     + ", ".join(follow[:10]) + (" ..." if len(follow) > 10 else ""))
    if replicated:
        notes.append(f"{len(replicated)} other operator(s) not in the file are replicated: " + ", ".join(replicated[:10])
                     + (" ..." if len(replicated) > 10 else ""))
    return strategies, notes


def _cuts_fit(cm: CostModel, cuts) -> bool:
    """Whether a ``cuts`` list follows this machine's schedule (level names and factors)."""
    return isinstance(cuts, list) and len(cuts) == len(cm.cuts) and all(
        isinstance(e, (list, tuple)) and len(e) == 3 and e[0] == c.level_name and e[2] == c.factor
        for c, e in zip(cm.cuts, cuts))


def _strategy_from_cuts(cm: CostModel, name: str, cuts, index: int) -> Strategy:
    if not isinstance(cuts, list) or len(cuts) != len(cm.cuts):
        raise PlanError(f"ops[{index}] ({name}): \"cuts\" must list {len(cm.cuts)} entries [level, dim or null, factor], "
                        f"one per prime cut of this machine ({_schedule(cm)})")
    strategy = []
    for t, (cut, entry) in enumerate(zip(cm.cuts, cuts)):
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise PlanError(f"ops[{index}] ({name}): cuts[{t}] must be [level, dim or null, factor]")
        level, dim, factor = entry
        if dim is not None and not isinstance(dim, str):
            raise PlanError(f"ops[{index}] ({name}): cuts[{t}] names dimension {dim!r}: write a dimension name "
                            "(a string) or null")
        if level != cut.level_name or factor != cut.factor:
            raise PlanError(f"ops[{index}] ({name}): cuts[{t}] is [{level}, {dim}, {factor}] but this machine's cut {t} "
                            f"is on level {cut.level_name!r} with factor {cut.factor} (schedule: {_schedule(cm)})")
        if dim is not None and dim not in cm.graph.operators[name].dims:
            raise PlanError(f"ops[{index}] ({name}): cuts[{t}] names dimension {dim!r}; the operator's dimensions are "
                            + ", ".join(cm.graph.operators[name].dims))
        strategy.append(dim)
    s = tuple(strategy)
    if cm.assignment(name, s) is None:
        raise PlanError(f"ops[{index}] ({name}): the cuts {list(s)} split a dimension that is not splittable "
                        "or not divisible by the cut's factor")
    return s


def _strategy_from_splits(cm: CostModel, name: str, splits, index: int, limit: int = 5000) -> Strategy:
    op = cm.graph.operators[name]
    if not isinstance(splits, dict):
        raise PlanError(f'ops[{index}] ({name}): "splits" must be an object {{dim: factor}}')
    wanted = {}
    for dim, f in splits.items():
        if dim not in op.dims:
            raise PlanError(f"ops[{index}] ({name}): splits names dimension {dim!r}; the operator's dimensions are "
                            + ", ".join(op.dims))
        if not isinstance(f, int) or isinstance(f, bool) or f < 1:
            raise PlanError(f"ops[{index}] ({name}): splits[{dim!r}] must be a positive integer, not {f!r}")
        if f > 1:
            wanted[dim] = f
    if math.prod(wanted.values()) > cm.machine.num_devices or cm.machine.num_devices % math.prod(wanted.values() or [1]):
        raise PlanError(f"ops[{index}] ({name}): the splits multiply to {math.prod(wanted.values())}, which does not "
                        f"divide the {cm.machine.num_devices} devices")
    best, best_cost = None, math.inf
    for s in itertools.islice(_placements(cm, wanted), limit):
        if cm.assignment(name, s) is None:
            continue
        cost = cm.op_seconds(name, s)
        if cost < best_cost:
            best, best_cost = s, cost
    if best is None:
        raise PlanError(f"ops[{index}] ({name}): the splits {wanted} cannot be placed on this machine's cuts "
                        f"({_schedule(cm)}): each factor must be a product of the cuts' primes and divide its dimension")
    return best


def _placements(cm: CostModel, wanted: dict[str, int]):
    """Every way to give each cut one of the wanted dims (or none) so that the products match."""
    def rec(t, remaining, prefix):
        if t == len(cm.cuts):
            if all(v == 1 for v in remaining.values()):
                yield tuple(prefix)
            return
        p = cm.cut_factor[t]
        left = math.prod(cm.cut_factor[t:])
        need = math.prod(remaining.values())
        for dim, r in remaining.items():
            if r % p == 0:
                remaining[dim] = r // p
                yield from rec(t + 1, remaining, prefix + [dim])
                remaining[dim] = r
        if need * p <= left:
            yield from rec(t + 1, remaining, prefix + [None])
    yield from rec(0, dict(wanted), [])


def _schedule(cm: CostModel) -> str:
    return ", ".join(f"{c.level_name} x{c.factor}" for c in cm.cuts) or "no cuts (1 device)"


def recorded_split(machine: Machine, stages: int, data: dict) -> MachineSplit:
    """The machine split as the plan file's ``stage_machine`` records it: a hand-made configuration
    (``evaluate --tp``) whose tensor and data parallelism share a level records that level as
    ``name (data)`` outside ``name (tensor)``, which the plain split of ``stages`` does not make.
    The split is rebuilt from ``machine`` (its bandwidths, not the file's); a record that no
    split of ``machine`` reproduces leaves the plain split."""
    plain = split_machine(machine, stages)
    record = data.get("stage_machine")
    levels = record.get("levels") if isinstance(record, dict) else None
    if not isinstance(levels, list) or not all(isinstance(lv, dict) for lv in levels):
        return plain
    tensor = math.prod(lv["arity"] for lv in levels if isinstance(lv.get("arity"), int)
                       and str(lv.get("name", "")).endswith(" (tensor)"))
    if tensor <= 1 or machine.num_devices % (tensor * stages):
        return plain
    try:
        split = split_machine(machine, stages, tensor=tensor)
    except OptionsError:
        return plain
    same = [(lv.name, lv.arity) for lv in split.stage_machine.levels] == [(lv.get("name"), lv.get("arity")) for lv in levels]
    return split if same else plain


__all__ = ["PlanFileError", "check_plan_bounds", "parse_plan_text", "read_plan_file", "check_plan_fields", "plan_bindings",
           "merge_recorded_options", "recorded_split", "strategies_from_json"]
