"""The default view's plan, made ahead and shipped with its sample: what lets a fresh server draw
the Overview in a second instead of searching for it (issue 13's cold first load <= 3 s).

The file (:data:`SHIPPED`, gzip-compressed plan JSON, about 40 KB) is what ``plan --json`` writes,
its operators cut down to their names and cuts, plus the request it answers (``request_key``: the
model's sha256, the bindings, the machine and the options asked for, as
:class:`explorer.cache.PlanRequest` keys it), the search's notes, the configurations it
priced (``tried``) and D-Rec's decision trace (the Cost page's table). It is read through the
planner's plan-file path (:func:`planner.plans.plan_json.parse_plan_text`,
:func:`planner.api.evaluate_plan`): only an identical request gets it (another model file,
binding, machine or option plans as usual; a missing or unreadable file too), and the result is
the plan the search makes, priced by the same evaluator (``tests/explorer/test_default_view.py``
re-plans and compares to 1e-9, so a change of the cost model or the search that moves the
default's plan fails there until the file is written again: ``python -m explorer.default_plan``).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from explorer.cache_budget import Sized, deep_size
from explorer.sources import DEFAULT_BINDINGS, DEFAULT_MACHINE, DEFAULT_SAMPLE, SAMPLES_DIR, sample_source
from planner.api import PlanOptions, PlanResult, evaluate_plan, plan_model
from planner.machine.tree import Machine, load_preset
from planner.model.graph import OperatorGraph
from planner.model.rebind import Rebinder
from planner.plans.plan_json import PlanFileError, merge_recorded_options, parse_plan_text
from planner.plans.report import plan_to_json
from planner.units import format_seconds

#: The default view's plan (``python -m explorer.default_plan`` writes it again).
SHIPPED = SAMPLES_DIR / f"{DEFAULT_SAMPLE}.default_plan.json.gz"

#: What a note on the page says about a shipped plan.
NOTE = ("this default view's plan was made ahead of time and ships with the sample (the test suite re-plans it and "
        "checks it is the same); change anything in the sidebar and the planner searches again")


def normal_key(key: tuple) -> list:
    """A request key as JSON reads it back (tuples become lists)."""
    return json.loads(json.dumps(key))


@lru_cache(maxsize=2)
def _read(path: Path, mtime: float) -> dict | None:
    try:
        return parse_plan_text(gzip.decompress(path.read_bytes()), f"shipped plan {path.name}")
    except (OSError, EOFError, gzip.BadGzipFile, PlanFileError):  # then the default is planned as usual
        return None


def shipped_data(key: tuple, path: Path = SHIPPED) -> dict | None:
    """The shipped plan file's contents when it answers the request ``key``, else None."""
    try:
        data = _read(path, path.stat().st_mtime)
    except OSError:
        return None
    return data if data is not None and data.get("request_key") == normal_key(key) else None


def answers_model(sha256: str, bindings_key: tuple, path: Path = SHIPPED) -> bool:
    """Whether the shipped plan is for this model file (sha256) and bindings (sorted pairs): its
    graph is then imported in the server process, with no planning worker to start for it."""
    try:
        data = _read(path, path.stat().st_mtime)
    except OSError:
        return False
    return data is not None and data.get("request_key", [None, None])[:2] == normal_key((sha256, bindings_key))


def shipped_result(key: tuple, graph: OperatorGraph, machine: Machine, options: PlanOptions,
                   rebinder: Callable[[], Rebinder] | None = None, path: Path = SHIPPED) -> PlanResult | None:
    """The plan of the request ``key`` (its ``graph``, ``machine`` and ``options``) read from the
    shipped file and priced by :func:`planner.api.evaluate_plan`, with the search's time, notes,
    configurations and decision trace as recorded; None when the file does not answer this request.
    ``rebinder()`` gives the model's re-binder, asked for only then."""
    data = shipped_data(key, path)
    if data is None:
        return None
    recorded, _ = merge_recorded_options(data, options)
    result = evaluate_plan(graph, machine, data, recorded, rebinder=rebinder() if rebinder else None)
    plan = replace(result.plan, search_seconds=float(data.get("search_seconds") or 0.0),
                   trace=list(data.get("trace", [])))
    return replace(result, plan=plan, notes=[*data.get("notes", []), NOTE], tried=list(data.get("tried", [])))


def shipped_sized(key: tuple, graph: OperatorGraph, machine: Machine, options: PlanOptions,
                  rebinder: Callable[[], Rebinder] | None = None, path: Path = SHIPPED) -> Sized | None:
    """:func:`shipped_result` with the bytes it keeps alive as measured when the file was written
    (``result_bytes``), so that the cache need not walk it (:mod:`explorer.cache_budget`)."""
    result = shipped_result(key, graph, machine, options, rebinder, path)
    if result is None:
        return None
    return Sized(result, int(shipped_data(key, path).get("result_bytes") or deep_size(result)))


def default_request():
    """The request the app opens on (its default model, bindings, machine and options)."""
    from explorer.cache import PlanRequest  # the cache reads this module: imported when asked

    return PlanRequest(sample_source(DEFAULT_SAMPLE), dict(DEFAULT_BINDINGS), load_preset(DEFAULT_MACHINE),
                       PlanOptions())


def fresh_default_plan() -> PlanResult:
    """The default request planned now, as the app plans it (no shipped file)."""
    from planner.onnx.importer import import_model
    from planner.onnx.rebinder import rebinder_for

    request = default_request()
    rebinder = rebinder_for(request.source.path, name=request.source.label)
    graph = import_model(rebinder.model, dict(request.bindings), name=request.source.label)
    return plan_model(graph, request.machine, request.options, rebinder=rebinder)


def shipped_json(result: PlanResult, request) -> dict:
    """What :data:`SHIPPED` holds for ``result``, the plan of ``request``."""
    data = plan_to_json(result, Path(request.source.path).name, request.source.sha256, request.bindings)
    keep = ("tool_version", "model", "model_sha256", "machine", "algorithm", "mode", "options", "bindings",
            "devices", "search_seconds", "iteration_seconds", "notes")
    out = {k: data[k] for k in keep if k in data}
    out["request_key"] = normal_key(request.key)
    out["tried"] = list(result.tried)
    out["trace"] = list(result.plan.trace)  # the Cost page's decision trace (drec, drec+)
    out["ops"] = [{"name": op["name"], "cuts": op["cuts"]} for op in data["ops"]]
    out["result_bytes"] = deep_size(result)  # what the explorer's cache charges it (explorer/cache_budget.py)
    return out


def write_shipped(path: Path = SHIPPED) -> PlanResult:
    """Plan the default request and write :data:`SHIPPED`; the fresh plan is returned."""
    result = fresh_default_plan()
    text = json.dumps(shipped_json(result, default_request()), separators=(",", ":"), sort_keys=True)
    path.write_bytes(gzip.compress(text.encode(), mtime=0))
    return result


if __name__ == "__main__":
    made = write_shipped()
    print(f"wrote {SHIPPED.relative_to(SAMPLES_DIR.parent)} ({SHIPPED.stat().st_size:,} bytes): "
          f"{format_seconds(made.total_seconds)} per iteration, searched in {format_seconds(made.plan.search_seconds)}")
