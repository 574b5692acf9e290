"""Everything the Streamlit explorer (``app.py`` and ``pages/``) needs that is not UI.

No Streamlit here: caches keyed by explicit keys, state encoding for the URL, tables (pandas),
figures (plotly), the layered layout of the model graph, what-if machines and sweeps, and the
downloadable reports. The pages only call these and draw what comes back; the numbers all come
from :mod:`planner.api` (DESIGN.md: "the UI never computes a cost itself").

Caching: a :class:`PlanCache` holds imported graphs (keyed by the model's sha256 and the bound
dimensions), cost models (plus the machine and the options the cost model depends on) and plan
results (plus the algorithm). A ``PlanResult`` holds numpy vectors, sympy-capable cost models
and a networkx graph; pickling one (what ``st.cache_data`` does on every hit) costs about as much
as a tenth of a re-plan of BERT-large, so the app keeps one ``PlanCache`` per server process in
``st.cache_resource`` and looks results up by these keys instead.
"""

from __future__ import annotations

import html
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from planner import __version__
from planner.api import ALGORITHMS, PlanOptions, PlanResult, cost_model_for, evaluate_plan, result_for, search
from planner.search.configurations import plan_configurations
from planner.cost.model import PRECISION_BYTES, RECOMPUTE, ZERO_STAGES, CostModel, OptionsError, Plan, PlanError, check_bucket_mb
from planner.model.graph import OperatorGraph, OpKind, TensorRole
from planner.limits import check_binding_product, quote
from planner.machine.tree import Machine, MachineError, load_preset, preset_paths
from planner.cost.memory import OPTIMIZERS
from planner.onnx.importer import ModelImportError, binding_value, import_model, load_model_proto, model_sha256
from planner.plans.plan_json import check_plan_bounds, check_plan_fields
from planner.model.rebatch import planning_dims
from planner.plans.report import op_cuts, op_splits, plan_to_json
from explorer.cache_budget import Sized, deep_size
from explorer.safe_markdown import md_code, md_fence, md_text, plain
from planner.search.pipeline import split_machine, stage_counts
from planner.units import format_bytes, format_seconds
from explorer.url_state import bounded_url_params

ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = ROOT / "sample_models"

DEFAULT_SAMPLE = "bert_base"
DEFAULT_BINDINGS = {"batch": 256, "seq": 128}
DEFAULT_MACHINE = "dgx_a100_64nodes"
DEFAULT_OPTIONS = PlanOptions()

MODES = ("train", "infer")
#: What the sidebar and the URL show for an option left to the configuration search (None).
AUTO = "auto"
PRECISIONS = (None, "fp32", "bf16", "fp16")
COMPARE_ALGORITHMS = ("drec+", "drec", "data_parallel", "megatron", "exact")

#: The exact search is an integer program over every strategy of every operator; the app only
#: starts it when the operators have at most this many strategies in total (a few seconds).
EXACT_UI_MAX_STRATEGIES = 20_000
EXACT_UI_TIME_LIMIT_S = 20.0

#: The sweep of device counts on the Compare page.
SWEEP_DEVICE_COUNTS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

#: The model graph view draws at most this many nodes; bigger selections are cut.
MAX_GRAPH_NODES = 600

Progress = Callable[[float, str], None] | None


# ---- units (the UI's: GB/s, µs, TFLOP/s, GiB; files stay SI) ------------------------------

GB = 1e9
US = 1e-6
TFLOPS = 1e12
GIB = 2**30


def gbps(bandwidth_Bps: float) -> float:
    return bandwidth_Bps / GB


def microseconds(seconds: float) -> float:
    return seconds / US


def tflops(flops_per_s: float) -> float:
    return flops_per_s / TFLOPS


def gib(nbytes: float) -> float:
    return nbytes / GIB


def format_flop_count(flops: float) -> str:
    """A FLOP count (not a rate): 1.2 TFLOP, 340 GFLOP."""
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if abs(flops) >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.0f} FLOP"


def format_count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def format_speedup(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}x"


# ---- models and presets ----------------------------------------------------------------------

def sample_paths() -> dict[str, Path]:
    """Sample name (file stem) -> path of every ``sample_models/*.onnx``."""
    return {p.stem: p for p in sorted(SAMPLES_DIR.glob("*.onnx"))}


def preset_names() -> list[str]:
    return list(preset_paths())


@dataclass(frozen=True)
class ModelSource:
    """Where the model in use comes from. Uploaded bytes are kept by the session, not here."""

    kind: str  # "sample" or "upload"
    label: str  # sample name or uploaded file name
    sha256: str
    path: str | None = None  # samples only

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


def sample_source(name: str) -> ModelSource:
    paths = sample_paths()
    if name not in paths:
        raise ModelImportError(f"unknown sample model {name!r}; samples are {', '.join(paths)}")
    path = paths[name]
    return ModelSource("sample", name, _file_sha256(path), str(path))


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = model_sha256(path)
    return _SHA_CACHE[key]


def upload_source(filename: str, data: bytes) -> ModelSource:
    return ModelSource("upload", filename, model_sha256(data))


def guess_binding(dim: str) -> int:
    """A starting value for a symbolic dimension: its default when known by name, else 1."""
    low = dim.lower()
    if low in DEFAULT_BINDINGS:
        return DEFAULT_BINDINGS[low]
    if "batch" in low:
        return DEFAULT_BINDINGS["batch"]
    if "seq" in low or "len" in low or "token" in low:
        return DEFAULT_BINDINGS["seq"]
    return 1


def bindings_for(dims: Iterable[str], previous: dict[str, int] | None = None) -> dict[str, int]:
    """Values for a model's symbolic dims: the previous value of a dim of the same name, else a guess."""
    previous = previous or {}
    return {d: int(previous.get(d, guess_binding(d))) for d in dims}


# ---- the cache -------------------------------------------------------------------------------

def machine_key(machine: Machine) -> str:
    return json.dumps(machine.to_dict(), sort_keys=True)


def bindings_key(bindings: dict[str, int]) -> tuple:
    return tuple(sorted((str(k), int(v)) for k, v in bindings.items()))


def options_key(options: PlanOptions) -> tuple:
    """Every option, so that a new field of PlanOptions can never make two plans share a key."""
    return tuple(sorted(options.to_dict().items()))


def searches_configurations(options: PlanOptions) -> bool:
    """Whether a plan goes through the configuration search (stages x micro-batches x
    recomputation x ZeRO): when the options leave one of them open, or fix a pipeline or
    several micro-batches (which only that search knows how to plan)."""
    return options.searches_configuration or (options.pipeline_stages or 1) > 1 or (options.micro_batches or 1) > 1


class _LRU:
    """Least recently used entries go first once there are more than ``size`` of them or, with a
    ``weight`` function, once their total weight passes ``max_weight`` (the newest always stays)."""

    def __init__(self, size: int, weight: Callable | None = None, max_weight: float = math.inf):
        self.size = size
        self.weight = weight
        self.max_weight = max_weight
        self.total = 0.0
        self.items: OrderedDict = OrderedDict()

    def get(self, key):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key][0]
        return None

    def put(self, key, value, weight: float | None = None) -> None:
        """Store ``value``; ``weight`` when already measured (outside the caller's lock)."""
        if key in self.items:
            self.total -= self.items.pop(key)[1]
        w = float(weight) if weight is not None else float(self.weight(value)) if self.weight else 0.0
        self.items[key] = (value, w)
        self.total += w
        while len(self.items) > 1 and (len(self.items) > self.size or self.total > self.max_weight):
            _, (_, old) = self.items.popitem(last=False)
            self.total -= old

    def __len__(self) -> int:
        return len(self.items)


#: The byte budget of each table of the explorer's :class:`PlanCache` (one per server process).
CACHE_BYTES = {"graphs": 64 * 2**20, "cost_models": 32 * 2**20, "results": 128 * 2**20, "sweeps": 16 * 2**20,
               "dims": 2**20}


class PlanCache:
    """Graphs, cost models and plan results by explicit keys (sha256, bindings, machine, options).

    Thread-safe: Streamlit runs each session in its own thread. One lock per key makes two
    sessions asking for the same plan wait for one computation instead of doing it twice.
    """

    def __init__(self, graph_bytes: int = CACHE_BYTES["graphs"], cost_model_bytes: int = CACHE_BYTES["cost_models"],
                 result_bytes: int = CACHE_BYTES["results"], sweep_bytes: int = CACHE_BYTES["sweeps"],
                 dims_bytes: int = CACHE_BYTES["dims"], result_entries: int | None = None):
        # Each table is bounded by the bytes its entries keep alive (explorer.cache_budget: measured
        # once, when an entry is made), not by their number: one GPT-3 result keeps tens of MB, one
        # MLP's a hundred KB. The newest entry always stays. ``result_entries`` bounds the results
        # by number instead, unmeasured (a planning worker keeps only its last result).
        self._graphs = _LRU(math.inf, weight=deep_size, max_weight=graph_bytes)
        self._dims = _LRU(math.inf, weight=deep_size, max_weight=dims_bytes)
        self._cms = _LRU(math.inf, weight=deep_size, max_weight=cost_model_bytes)
        self._results = (_LRU(math.inf, weight=deep_size, max_weight=result_bytes) if result_entries is None
                         else _LRU(result_entries))
        self._sweeps = _LRU(math.inf, weight=deep_size, max_weight=sweep_bytes)
        self._models = _LRU(math.inf, weight=len, max_weight=graph_bytes)  # uploads' weight-free bytes, for the pool
        self.pool = None  # a explorer.plan_pool.PlanPool: plans are made in its worker processes
        self._lock = threading.Lock()
        self._key_locks: dict = {}
        self.stats = {"graph_hits": 0, "graph_misses": 0, "result_hits": 0, "result_misses": 0}

    def _key_lock(self, key) -> threading.Lock:
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.Lock()
            return lock

    def _memo(self, table: _LRU, key, compute: Callable, stat: str | None = None):
        with self._lock:
            hit = table.get(key)
        if hit is not None:
            if stat:
                self.stats[stat + "_hits"] += 1
            return hit
        with self._key_lock(key):
            with self._lock:
                hit = table.get(key)
            if hit is not None:
                return hit
            if stat:
                self.stats[stat + "_misses"] += 1
            value, weight = compute(), None
            if isinstance(value, Sized):  # sized where it was made (a planning worker)
                value, weight = value
            elif table.weight:
                weight = table.weight(value)  # a walk of the value: not under the lock
            with self._lock:
                table.put(key, value, weight)
            return value

    def bytes_held(self) -> dict[str, int]:
        """The bytes each table holds, as measured when its entries were stored."""
        with self._lock:
            return {name: int(t.total) for name, t in (("graphs", self._graphs), ("dims", self._dims),
                                                       ("cost_models", self._cms), ("results", self._results),
                                                       ("sweeps", self._sweeps))}

    def has_result(self, source: ModelSource, bindings, machine: Machine, options: PlanOptions) -> bool:
        key = self._result_key(source, bindings, machine, options)
        with self._lock:
            return key in self._results.items

    # -- models --
    def symbolic_dims(self, source: ModelSource, data: bytes | None = None) -> list[str]:
        def compute():
            return planning_dims(load_model_proto(source.path if data is None else data))  # + a static batch
        return list(self._memo(self._dims, ("dims", source.sha256), compute))

    def graph(self, source: ModelSource, bindings: dict[str, int], data: bytes | None = None) -> OperatorGraph:
        key = ("graph", source.sha256, bindings_key(bindings))

        def compute():
            src = source.path if data is None else data
            if src is None:
                raise ModelImportError(f"the bytes of {source.label} are no longer available: upload it again")
            if data is not None:
                with self._lock:
                    self._models.put(source.sha256, data)
            if self.pool is not None:  # imported in a worker, off the script thread: a Sized graph
                return self.pool.graph(source, data, bindings)
            return import_model(src, dict(bindings), name=source.label)
        return self._memo(self._graphs, key, compute, "graph")

    # -- plans --
    def cost_model(self, source: ModelSource, bindings, graph: OperatorGraph, machine: Machine,
                   options: PlanOptions) -> CostModel:
        key = ("cm", source.sha256, bindings_key(bindings), machine_key(machine), options.mode, options.precision,
               options.recompute, options.zero, options.bucket_mb)
        return self._memo(self._cms, key, lambda: cost_model_for(graph, machine, options))

    @staticmethod
    def _result_key(source, bindings, machine, options) -> tuple:
        return ("result", source.sha256, bindings_key(bindings), machine_key(machine), options_key(options))

    def result(self, source: ModelSource, bindings, graph: OperatorGraph, machine: Machine, options: PlanOptions,
               progress: Progress = None, hints: list[dict] | None = None) -> PlanResult:
        """The plan of one algorithm (raises the planner's ValueError subclasses unchanged).

        Through the configuration search when :func:`searches_configurations`; otherwise the one
        configuration the options fix is planned here. Either way drec+ also starts from the plans
        of what-if variants of the machine (:meth:`_hints`, or ``hints`` when given). With a
        :attr:`pool`, the plan is made in one of its worker processes.
        """
        key = self._result_key(source, bindings, machine, options)

        def compute():
            start = self._hints(key, machine) if hints is None else hints
            if self.pool is not None:
                with self._lock:
                    data = None if source.path else self._models.get(source.sha256)
                if source.path or data is not None:
                    return self.pool.plan(source, data, bindings, graph, machine, options, start)
            if searches_configurations(options):
                if options.algorithm == "exact":  # the search runs it unguarded, on one stage machine
                    stage_machine = split_machine(machine, options.pipeline_stages or 1).stage_machine
                    require_exact_feasible(self.cost_model(source, bindings, graph, stage_machine, options))
                return plan_configurations(graph, machine, options, progress, hints=start)
            cm = self.cost_model(source, bindings, graph, machine, options)
            if options.algorithm == "exact":
                plan = plan_exact_guarded(cm)
            else:
                plan = search(cm, options.algorithm, progress, hints=start)
            return result_for(cm, plan, options)
        return self._memo(self._results, key, compute, "result")

    def _hints(self, key, machine: Machine, most: int = 3) -> list[dict]:
        """Plans already made for the same model and options on machines with the same cut
        schedule (what-if variants of this one): drec+ starts from them too, so that a faster
        machine never shows a slower plan than one it has already seen."""
        schedule = [(c.level, c.factor) for c in machine.cuts()]
        with self._lock:
            found = [value.plan.strategies for k, (value, _) in reversed(self._results.items.items())
                     if k[:3] == key[:3] and k[4:] == key[4:] and k != key
                     and [(c.level, c.factor) for c in value.machine.cuts()] == schedule]
        return found[:most]

    def evaluate(self, source: ModelSource, bindings, graph: OperatorGraph, machine: Machine, options: PlanOptions,
                 plan_json: dict, plan_sha: str) -> PlanResult:
        key = ("evaluate", plan_sha) + self._result_key(source, bindings, machine, options)[1:]
        return self._memo(self._results, key, lambda: evaluate_plan(graph, machine, plan_json, options))

    def sweep(self, source: ModelSource, bindings, graph: OperatorGraph, machine: Machine, options: PlanOptions,
              counts: Iterable[int] = SWEEP_DEVICE_COUNTS, progress: Progress = None) -> pd.DataFrame:
        counts = tuple(counts)
        key = ("sweep", counts) + self._result_key(source, bindings, machine, options)[1:]

        def compute():
            def plan_at(m: Machine) -> PlanResult:
                return self.result(source, bindings, graph, m, options)
            return device_sweep(machine, counts, plan_at, progress)
        return self._memo(self._sweeps, key, compute)

    def cached_sweep(self, source, bindings, machine, options, counts=SWEEP_DEVICE_COUNTS) -> pd.DataFrame | None:
        key = ("sweep", tuple(counts)) + self._result_key(source, bindings, machine, options)[1:]
        with self._lock:
            return self._sweeps.get(key)


CONFIGURATION_OPTIONS = ("pipeline_stages", "micro_batches", "interleave", "recompute", "zero", "overlap_gradient_sync",
                         "bucket_mb")


def plan_file_options(current: PlanOptions, data: dict) -> PlanOptions:
    """The options to score an uploaded plan with: its own configuration (stages, micro-batches,
    recomputation, ZeRO), as the plan JSON records it, else the current plan's. A plan made for
    one stage stays one stage whatever the current plan uses."""
    recorded = data.get("options") if isinstance(data.get("options"), dict) else {}
    if not recorded:
        return current
    changes = {k: recorded.get(k) for k in CONFIGURATION_OPTIONS if k in recorded}
    changes.setdefault("pipeline_stages", 1)
    changes.setdefault("micro_batches", 1)
    changes["interleave"] = changes.get("interleave") or 1
    changes["overlap_gradient_sync"] = bool(changes.get("overlap_gradient_sync", False))
    try:
        return replace(current, **changes)
    except ValueError as exc:
        raise ValueError(f"the plan file's options are not valid: {exc}") from None


# ---- the exact search, guarded -------------------------------------------------------------

class ExactTooLargeForUI(ValueError):
    """The exact search would take too long for an interactive page."""


def count_strategies(cm: CostModel, name: str, cap: int) -> int:
    """How many full strategies an operator has (stops counting above ``cap``).

    Counts without listing them: after a prefix, which dimensions can still be split depends only
    on the primes each dimension has taken so far, in order, so prefixes are merged by that.
    """
    states: dict[tuple, tuple[tuple, int]] = {(): ((), 1)}
    for t, cut in enumerate(cm.cuts):
        nxt: dict[tuple, tuple[tuple, int]] = {}
        for rep, count in states.values():
            for c in cm.candidates(name, rep):
                prefix = rep + (c,)
                key = tuple(sorted(
                    (d, tuple(cm.cuts[i].factor for i, x in enumerate(prefix) if x == d))
                    for d in set(x for x in prefix if x is not None)
                ))
                old = nxt.get(key)
                nxt[key] = (prefix, count + (old[1] if old else 0))
        states = nxt
        if sum(c for _, c in states.values()) > cap:
            return cap + 1
    return sum(c for _, c in states.values())


def exact_feasible(cm: CostModel, limit: int = EXACT_UI_MAX_STRATEGIES) -> bool:
    total = 0
    for n in cm.planned:
        total += count_strategies(cm, n, limit - total)
        if total > limit:
            return False
    return True


def require_exact_feasible(cm: CostModel) -> None:
    """Raise ExactTooLargeForUI unless the graph is small enough for the exact search on a page.

    ``planner.search.exact.plan_exact`` lists every strategy of every operator before it checks
    its bound; on a CNN over 512 devices that list alone exhausts memory. Counting first is cheap.
    """
    if not exact_feasible(cm):
        raise ExactTooLargeForUI(
            f"too large for this graph: more than {EXACT_UI_MAX_STRATEGIES:,} strategies (the page's bound) over "
            f"{len(cm.planned)} operators on {cm.machine.num_devices} devices; the exact search is for small "
            "graphs and machines (e.g. the mlp sample on dgx_a100)")


def plan_exact_guarded(cm: CostModel) -> Plan:
    """The exact optimum when the graph is small enough for a page, else ExactTooLargeForUI."""
    from planner.search.exact import plan_exact

    require_exact_feasible(cm)
    return plan_exact(cm, time_limit_s=EXACT_UI_TIME_LIMIT_S)


# ---- URL state -------------------------------------------------------------------------------

def encode_bindings(bindings: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in bindings.items())


def decode_bindings(text: str) -> dict[str, int]:
    """``"batch:32,seq:128"`` -> dict; raises ValueError with a fix-it message."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition(":")
        if not sep or not name:
            raise ValueError(f"bind={quote(text)}: write NAME:VALUE pairs separated by commas, e.g. batch:32,seq:128")
        try:
            out[name] = binding_value(value)
        except ValueError as exc:
            raise ValueError(f"bind={quote(text)}: {quote(name, 40)[1:-1]} {exc}, e.g. batch:32") from None
    check_binding_product(out, "bind=")
    return out


@dataclass
class UrlState:
    """What the URL can carry: enough to rebuild a view on another browser."""

    model: str = DEFAULT_SAMPLE  # sample name, or "upload:<file name>"
    bindings: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BINDINGS))
    machine_preset: str | None = DEFAULT_MACHINE
    machine: dict | None = None  # a custom machine (to_dict form) when not a preset
    options: PlanOptions = field(default_factory=PlanOptions)


def encode_url_state(model: ModelSource, bindings: dict[str, int], machine: Machine, machine_preset: str | None,
                     options: PlanOptions) -> dict[str, str]:
    params = {
        "model": model.label if model.kind == "sample" else f"upload:{model.label}",
        "bind": encode_bindings(bindings),
        "mode": options.mode,
        "algorithm": options.algorithm,
        "precision": options.precision or "model",
        "optimizer": options.optimizer,
    }
    for param, name in PIPELINE_URL_PARAMS.items():
        value = getattr(options, name)
        if value != getattr(DEFAULT_OPTIONS, name):
            params[param] = option_text(value)
    if machine_preset is not None:
        params["machine"] = machine_preset
    else:
        params["machine_json"] = json.dumps(machine.to_dict(), separators=(",", ":"))
    return params


#: The pipeline and memory options in the URL (written only when they differ from the
#: defaults): parameter -> PlanOptions field.
PIPELINE_URL_PARAMS = {"stages": "pipeline_stages", "micro_batches": "micro_batches", "interleave": "interleave",
                       "recompute": "recompute", "zero": "zero", "overlap": "overlap_gradient_sync",
                       "bucket_mb": "bucket_mb"}


def option_text(value) -> str:
    """An option as the URL and the sidebar write it: ``auto`` for None, ``true``/``false``."""
    if value is None:
        return AUTO
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_pipeline_option(param: str, text: str):
    """A pipeline or memory option from the URL; ValueError says what it may be."""
    name = PIPELINE_URL_PARAMS[param]
    default = getattr(DEFAULT_OPTIONS, name)
    if text == AUTO and default is None:
        return None
    if name == "recompute":
        if text in RECOMPUTE:
            return text
        allowed = f"one of {AUTO}, {', '.join(RECOMPUTE)}"
    elif name == "zero":
        if text in {str(z) for z in ZERO_STAGES}:
            return int(text)
        allowed = f"one of {AUTO}, {', '.join(map(str, ZERO_STAGES))}"
    elif name == "overlap_gradient_sync":
        if text in ("true", "false"):
            return text == "true"
        allowed = "true or false"
    elif name == "bucket_mb":
        try:
            return check_bucket_mb(float(text))
        except (ValueError, OptionsError):
            allowed = "a number of megabytes >= 0 (0: one all-reduce per gradient tensor)"
    else:
        try:
            return binding_value(text)
        except ValueError:
            allowed = ("auto or " if default is None else "") + "a whole number >= 1"
    raise ValueError(f"{param}={quote(text)} is not {allowed}; using {option_text(default)}")


def decode_url_state(params: dict[str, str]) -> tuple[UrlState, list[str]]:
    """Read the query parameters; every bad one is reported and replaced by the default."""
    state = UrlState()
    params, problems = bounded_url_params(params)
    get = lambda k: params.get(k) if isinstance(params.get(k), str) else (params.get(k) or [None])[-1]  # noqa: E731
    model = get("model")
    if model:
        if model.startswith("upload:"):
            problems.append(f"the link was made with an uploaded model ({quote(model[7:])}); uploads are not part of a "
                            f"link: upload it again on the Model page. Showing the sample {DEFAULT_SAMPLE} meanwhile")
        elif model in sample_paths():
            state.model = model
        else:
            problems.append(f"model={quote(model)} is not a sample ({', '.join(sample_paths())}); showing {DEFAULT_SAMPLE}")
    bind = get("bind")
    if bind:
        try:
            state.bindings = decode_bindings(bind)
        except ValueError as exc:
            problems.append(str(exc))
    preset = get("machine")
    machine_json = get("machine_json")
    if machine_json:
        try:
            state.machine = Machine.from_json(machine_json).to_dict()
            state.machine_preset = None
        except MachineError as exc:
            problems.append(f"machine_json in the link is not a valid machine: {exc}")
    elif preset:
        if preset in preset_paths():
            state.machine_preset = preset
        else:
            problems.append(f"machine={quote(preset)} is not a preset ({', '.join(preset_paths())}); showing {DEFAULT_MACHINE}")
    opts = {}
    for key, allowed in (("mode", MODES), ("algorithm", tuple(ALGORITHMS)), ("optimizer", tuple(OPTIMIZERS))):
        value = get(key)
        if value is None:
            continue
        if value in allowed:
            opts[key] = value
        else:
            problems.append(f"{key}={quote(value)} is not one of {', '.join(allowed)}; using the default")
    precision = get("precision")
    if precision and precision != "model":
        if precision in PRECISION_BYTES:
            opts["precision"] = precision
        else:
            problems.append(f"precision={quote(precision)} is not one of model, {', '.join(PRECISION_BYTES)}; using the model's")
    pipeline = {}
    for param, name in PIPELINE_URL_PARAMS.items():
        value = get(param)
        if value is not None:
            try:
                pipeline[name] = parse_pipeline_option(param, value)
            except ValueError as exc:
                problems.append(str(exc))
    try:
        state.options = PlanOptions(**opts, **pipeline)
    except OptionsError as exc:  # each is valid alone, not together (stages with mode=infer)
        problems.append(f"{exc}: the link's pipeline and memory options are not used")
        state.options = PlanOptions(**opts)
    return state, problems


# ---- machines as tables ----------------------------------------------------------------------

LEVEL_COLUMNS = ("name", "arity", "bandwidth (GB/s)", "latency (µs)")


def levels_frame(machine: Machine) -> pd.DataFrame:
    return pd.DataFrame(
        [{"name": lv.name, "arity": int(lv.arity), "bandwidth (GB/s)": gbps(lv.bandwidth_Bps),
          "latency (µs)": microseconds(lv.latency_s)} for lv in machine.levels],
        columns=list(LEVEL_COLUMNS),
    )


def _cell_number(value, row: int, column: str, example: str) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip()):
        raise MachineError(f"level {row + 1}: '{column}' is empty; enter a number, e.g. {example}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MachineError(f"level {row + 1}: '{column}' must be a number, e.g. {example}; got {value!r}") from None


def machine_from_levels(machine: Machine, frame: pd.DataFrame) -> Machine:
    """The machine with its levels replaced by an edited table (UI units); MachineError says what to fix."""
    if frame is None or len(frame) == 0:
        raise MachineError("the machine needs at least one level: add a row (name, arity, bandwidth, latency)")
    levels = []
    for i, row in enumerate(frame.to_dict("records")):
        name = row.get("name")
        if name is None or (isinstance(name, float) and math.isnan(name)) or not str(name).strip():
            raise MachineError(f"level {i + 1}: the name is empty; name the level, e.g. 'node' or 'gpu'")
        arity = _cell_number(row.get("arity"), i, "arity", "8")
        if not float(arity).is_integer() or arity < 1:
            raise MachineError(f"level {i + 1} ({name}): arity must be a whole number of at least 1, e.g. 8; got {arity:g}")
        bw = _cell_number(row.get("bandwidth (GB/s)"), i, "bandwidth (GB/s)", "25")
        if bw <= 0:
            raise MachineError(f"level {i + 1} ({name}): bandwidth must be more than 0 GB/s, e.g. 25; got {bw:g}")
        lat = _cell_number(row.get("latency (µs)"), i, "latency (µs)", "10")
        if lat < 0:
            raise MachineError(f"level {i + 1} ({name}): latency must be 0 µs or more, e.g. 10; got {lat:g}")
        levels.append({"name": str(name).strip(), "arity": int(arity), "bandwidth_Bps": bw * GB, "latency_s": lat * US})
    data = machine.to_dict()
    data["levels"] = levels
    return Machine.from_dict(data)


def apply_editor_state(frame: pd.DataFrame, state: dict | None) -> pd.DataFrame:
    """The table an ``st.data_editor`` shows after its edits (its session-state value:
    ``edited_rows``, ``added_rows``, ``deleted_rows``), so that a callback can validate it."""
    rows = frame.to_dict("records")
    state = state or {}
    for index, changes in (state.get("edited_rows") or {}).items():
        i = int(index)
        if 0 <= i < len(rows):
            rows[i].update(changes)
    deleted = {int(i) for i in state.get("deleted_rows") or []}
    rows = [r for i, r in enumerate(rows) if i not in deleted]
    for added in state.get("added_rows") or []:
        rows.append({c: added.get(c) for c in frame.columns})
    return pd.DataFrame(rows, columns=list(frame.columns))


def machine_with_device(machine: Machine, name: str, peak_tflops: float, memory_gib: float, efficiency: float) -> Machine:
    """The machine with new device fields given in UI units (TFLOP/s, GiB)."""
    if not name or not str(name).strip():
        raise MachineError("device name is empty; name the device, e.g. A100")
    if peak_tflops is None or peak_tflops <= 0:
        raise MachineError("device peak must be more than 0 TFLOP/s, e.g. 312")
    if memory_gib is None or memory_gib <= 0:
        raise MachineError("device memory must be more than 0 GiB, e.g. 80")
    if efficiency is None or not 0 < efficiency <= 1:
        raise MachineError("compute efficiency must be in (0, 1], e.g. 0.6 for 60% of peak")
    return machine.with_device(name=str(name).strip(), peak_flops=peak_tflops * TFLOPS,
                               memory_bytes=memory_gib * GIB, compute_efficiency=efficiency)


def same_levels(frame: pd.DataFrame, machine: Machine) -> bool:
    """True when an edited levels table still describes ``machine`` (rounding aside)."""
    base = levels_frame(machine)
    if frame is None or list(frame.columns) != list(base.columns) or len(frame) != len(base):
        return False
    for a, b in zip(frame.to_dict("records"), base.to_dict("records")):
        if str(a["name"]) != b["name"]:
            return False
        for col in LEVEL_COLUMNS[1:]:
            try:
                if not math.isclose(float(a[col]), float(b[col]), rel_tol=1e-9, abs_tol=1e-12):
                    return False
            except (TypeError, ValueError):
                return False
    return True


def machine_with_devices(machine: Machine, devices: int) -> Machine | None:
    """The machine scaled to ``devices`` by changing the outermost level's arity (None if it cannot)."""
    inner = math.prod(lv.arity for lv in machine.levels[1:])
    if devices % inner or devices < inner:
        if len(machine.levels) > 1 and devices < inner:
            # fewer devices than one outer group: drop outer levels and shrink the innermost one
            innermost = machine.levels[-1]
            if innermost.arity % devices == 0 or devices % innermost.arity == 0:
                data = machine.to_dict()
                data["levels"] = [dict(data["levels"][-1], arity=devices)]
                return Machine.from_dict(data)
        return None
    return machine.with_level(0, arity=devices // inner)


def machine_tree_figure(machine: Machine, expand_up_to: int = 8, max_nodes: int = 300) -> go.Figure:
    """An icicle of the machine tree, one colour per level, every drawn node the same width.

    A level with more than ``expand_up_to`` children per parent draws its first two, one block
    standing for the others ("... 61 more nodes") and its last, so a 4096-device machine draws
    as quickly and as legibly as an 8-device one; hover a block for its level's link figures.
    """
    level_colors = ["#4C78A8", "#72B7B2", "#54A24B", "#EECA3B", "#F58518", "#B279A2"]
    ids, labels, parents, colors, hovers = ["root"], [f"{machine.name}: {machine.num_devices:,} devices"], [""], \
        ["#555555"], [machine.summary()]
    frontier = ["root"]
    for depth, lv in enumerate(machine.levels):
        below = math.prod(x.arity for x in machine.levels[depth + 1:])
        what = f"level {lv.name}: {lv.arity} per parent, {gbps(lv.bandwidth_Bps):.4g} GB/s, " \
               f"{microseconds(lv.latency_s):.3g} µs" + (f"; {below:,} devices each" if below > 1 else "")
        if lv.arity <= expand_up_to:
            picks = [(k, 1) for k in range(lv.arity)]
        else:
            picks = [(0, 1), (1, 1), (None, lv.arity - 3), (lv.arity - 1, 1)]
        if len(ids) + len(frontier) * len(picks) > max_nodes:
            picks = [(None, lv.arity)]
        nxt = []
        for pid in frontier:
            for k, count in picks:
                nid = f"{pid}/{lv.name}{'*' if k is None else k}"
                ids.append(nid)
                labels.append(f"... {count} more" if k is None and count < lv.arity else
                              f"{count} x {lv.name}" if k is None else f"{lv.name} {k}")
                parents.append(pid)
                colors.append(level_colors[depth % len(level_colors)])
                hovers.append(what)
                nxt.append(nid)
        frontier = nxt
    # equal widths: each drawn leaf counts 1, each parent the sum of its drawn children
    values = {i: 0 for i in ids}
    for i in frontier:
        values[i] = 1
    for i, parent in zip(reversed(ids), reversed(parents)):
        if parent:
            values[parent] += values[i]
    fig = go.Figure(go.Icicle(ids=ids, labels=labels, parents=parents, values=[values[i] for i in ids],
                              branchvalues="total", marker=dict(colors=colors), customdata=hovers,
                              hovertemplate="%{label}<br>%{customdata}<extra></extra>", tiling=dict(orientation="v"),
                              textfont=dict(size=12), sort=False))
    fig.update_layout(margin=dict(t=10, l=10, r=10, b=10), height=110 + 70 * len(machine.levels))
    return fig


# ---- layers and the operator table ----------------------------------------------------------

_LAYER_RE = re.compile(r"^(?P<family>.*?\D)(?P<index>\d+)(?P<rest>[./_:/\-].+)$")


@dataclass
class Layers:
    """Repeated blocks found from operator names (``layer12.attn.qkv`` -> family 'layer', index 12)."""

    family: str | None
    index: dict[str, int]  # operator -> layer index (operators of the family only)

    @property
    def count(self) -> int:
        return len(set(self.index.values()))

    @property
    def indices(self) -> list[int]:
        return sorted(set(self.index.values()))

    def block(self, name: str) -> str | None:
        i = self.index.get(name)
        return None if i is None else f"{self.family}{i}"


def find_layers(names: Iterable[str]) -> Layers:
    """The family of names with the most distinct indices (at least two layers of two operators
    on average); uploaded models with other naming simply have no layers."""
    families: dict[str, dict[str, int]] = {}
    for n in names:
        m = _LAYER_RE.match(n)
        if m:
            families.setdefault(m.group("family"), {})[n] = int(m.group("index"))
    best, best_count = None, 1
    for fam, members in families.items():
        distinct = len(set(members.values()))
        if distinct >= 2 and len(members) >= 2 * distinct and distinct > best_count:
            best, best_count = fam, distinct
    return Layers(best, dict(families[best]) if best else {})


_LAYERS_CACHE: dict[int, tuple[OperatorGraph, Layers]] = {}


def layers_of(graph: OperatorGraph) -> Layers:
    hit = _LAYERS_CACHE.get(id(graph))
    if hit is None or hit[0] is not graph:
        hit = (graph, find_layers(graph.operators))
        if len(_LAYERS_CACHE) > 16:
            _LAYERS_CACHE.clear()
        _LAYERS_CACHE[id(graph)] = hit
    return hit[1]


def op_parameters(graph: OperatorGraph, name: str) -> int:
    return sum(graph.tensors[u.tensor].numel for u in graph.operators[name].inputs
               if graph.tensors[u.tensor].role is TensorRole.PARAMETER)


def dims_text(dims: dict[str, int]) -> str:
    return " ".join(f"{d}={s}" for d, s in dims.items())


def operator_table(graph: OperatorGraph, include_static: bool = False) -> pd.DataFrame:
    """One row per operator in topological order: type, kind, layer, dims, FLOPs, parameters."""
    layers = layers_of(graph)
    rows = []
    for pos, name in enumerate(graph.topological_order()):
        op = graph.operators[name]
        if op.kind is OpKind.STATIC and not include_static:
            continue
        rows.append({
            "position": pos,
            "operator": name,
            "type": op.op_type,
            "kind": op.kind.value,
            "layer": layers.index.get(name),
            "dimensions": dims_text(op.dims),
            "GFLOP": op.flops / 1e9,
            "parameters": op_parameters(graph, name),
        })
    frame = pd.DataFrame(rows, columns=["position", "operator", "type", "kind", "layer", "dimensions", "GFLOP", "parameters"])
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def filter_table(frame: pd.DataFrame, types: Iterable[str] = (), kinds: Iterable[str] = (), text: str = "",
                 layer_range: tuple[int, int] | None = None, outside_layers: bool = True) -> pd.DataFrame:
    out = frame
    types, kinds = list(types), list(kinds)
    if types:
        out = out[out["type"].isin(types)]
    if kinds and "kind" in out:
        out = out[out["kind"].isin(kinds)]
    if text:
        out = out[out["operator"].str.contains(text, case=False, regex=False)]
    if layer_range is not None and "layer" in out:
        lo, hi = layer_range
        in_range = out["layer"].between(lo, hi).fillna(False).astype(bool)
        outside = out["layer"].isna() if outside_layers else pd.Series(False, index=out.index)
        out = out[in_range | outside]
    return out


# ---- the model graph view -------------------------------------------------------------------

VIEW_MODES = {
    "blocks": "collapse repeated layers (expand a range)",
    "layers": "only a range of layers",
    "heaviest": "the N heaviest operators and their neighbours",
    "range": "a range of topological positions",
    "all": "every operator",
}


@dataclass
class GraphView:
    mode: str = "blocks"
    layer_range: tuple[int, int] = (0, 0)  # expanded layers (blocks) or shown layers (layers)
    top_n: int = 30
    position_range: tuple[int, int] = (0, 200)
    include_static: bool = False


def default_view(graph: OperatorGraph) -> GraphView:
    layers = layers_of(graph)
    n = sum(1 for op in graph.operators.values() if op.kind is not OpKind.STATIC)
    if n <= 150:
        return GraphView("all")
    if layers.count >= 2:
        first = layers.indices[0]
        return GraphView("blocks", (first, first))
    return GraphView("heaviest", top_n=40)


@dataclass
class ViewGraph:
    """What the figure draws: nodes (one operator, or a collapsed block) and edges between them."""

    nodes: dict[str, dict]  # id -> {label, members, kind, type}
    edges: set[tuple[str, str]]
    note: str = ""


def build_view(graph: OperatorGraph, view: GraphView) -> ViewGraph:
    layers = layers_of(graph)
    order = graph.topological_order()
    pos = {n: i for i, n in enumerate(order)}
    ops = graph.operators
    shown = [n for n in order if view.include_static or ops[n].kind is not OpKind.STATIC]
    node_of: dict[str, str] = {}
    note = ""
    mode = view.mode
    if mode in ("blocks", "layers") and layers.count < 2:
        mode, note = "heaviest", "no repeated layers found in the operator names: showing the heaviest operators"
    if mode == "all":
        node_of = {n: n for n in shown}
    elif mode == "blocks":
        # layers outside the expanded range collapse into one node per run of consecutive layers
        lo, hi = view.layer_range
        idx = layers.indices
        before = [i for i in idx if i < lo]
        after = [i for i in idx if i > hi]

        def run_id(run: list[int]) -> str:
            return f"[{layers.family}{run[0]}]" if len(run) == 1 else f"[{layers.family}{run[0]}–{run[-1]}]"
        for n in shown:
            i = layers.index.get(n)
            if i is None or lo <= i <= hi:
                node_of[n] = n
            else:
                node_of[n] = run_id(before if i < lo else after)
    elif mode == "layers":
        lo, hi = view.layer_range
        node_of = {n: n for n in shown if layers.index.get(n) is not None and lo <= layers.index[n] <= hi}
    elif mode == "heaviest":
        heavy = sorted(shown, key=lambda n: -ops[n].flops)[:max(1, view.top_n)]
        keep = set(heavy)
        allowed = set(shown)
        for n in heavy:
            keep.update(m for m in graph.graph.predecessors(n) if m in allowed)
            keep.update(m for m in graph.graph.successors(n) if m in allowed)
        node_of = {n: n for n in shown if n in keep}
    elif mode == "range":
        a, b = view.position_range
        node_of = {n: n for n in shown if a <= pos[n] <= b}
    else:
        raise ValueError(f"unknown graph view {view.mode!r}; choose one of {', '.join(VIEW_MODES)}")
    nodes: dict[str, dict] = {}
    for n, nid in node_of.items():
        entry = nodes.get(nid)
        if entry is None:
            entry = nodes[nid] = {"members": [], "block": nid != n}
        entry["members"].append(n)
    if len(nodes) > MAX_GRAPH_NODES:
        keep_ids = sorted(nodes, key=lambda k: min(pos[m] for m in nodes[k]["members"]))[:MAX_GRAPH_NODES]
        nodes = {k: nodes[k] for k in keep_ids}
        node_of = {n: k for n, k in node_of.items() if k in nodes}
        note = (f"the selection has more than {MAX_GRAPH_NODES} nodes: showing the first {MAX_GRAPH_NODES} "
                "in topological order; narrow the range to see the rest")
    for nid, entry in nodes.items():
        members = entry["members"]
        heaviest = max(members, key=lambda m: ops[m].flops)
        entry["heaviest"] = heaviest
        entry["flops"] = entry["size_flops"] = float(sum(ops[m].flops for m in members))
        if entry["block"]:
            count = len({layers.index[m] for m in members if m in layers.index})
            entry["label"] = f"{nid[1:-1]} ({count} layer{'s' if count > 1 else ''}, {len(members)} ops)"
            entry["type"] = "layers"
            entry["kind"] = "collapsed layers"
            entry["size_flops"] = entry["flops"] / max(count, 1)  # drawn as big as one of its layers
        else:
            entry["label"] = nid
            entry["type"] = ops[nid].op_type
            entry["kind"] = ops[nid].kind.value
    edges = set()
    for u, v in graph.graph.edges:
        a, b = node_of.get(u), node_of.get(v)
        if a is not None and b is not None and a != b:
            edges.add((a, b))
    return ViewGraph(nodes, edges, note)


def layered_positions(view: ViewGraph) -> dict[str, tuple[float, float]]:
    """Longest-path layers (x) and an order within each layer (y), cycles condensed first."""
    g = nx.DiGraph()
    g.add_nodes_from(view.nodes)
    g.add_edges_from(view.edges)
    if not nx.is_directed_acyclic_graph(g):
        cond = nx.condensation(g)
        mapping = cond.graph["mapping"]
        depth_c = _depths(cond)
        depth = {n: depth_c[mapping[n]] for n in g}
    else:
        depth = _depths(g)
    by_layer: dict[int, list[str]] = {}
    for n in g.nodes:  # insertion order follows topological order of the source graph
        by_layer.setdefault(depth[n], []).append(n)
    pos = {}
    for x, members in by_layer.items():
        k = len(members)
        for i, n in enumerate(members):
            pos[n] = (float(x), (k - 1) / 2.0 - i)
    return pos


def _depths(g: nx.DiGraph) -> dict:
    depth = {}
    for n in nx.topological_sort(g):
        depth[n] = max((depth[p] + 1 for p in g.predecessors(n)), default=0)
    return depth


_PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
            "#9D755D", "#BAB0AC", "#1F77B4", "#17BECF", "#BCBD22", "#8C564B"]


def strategy_label(result: PlanResult, name: str) -> str:
    """``b0 x64 · n x8`` (total split of each dimension), or ``replicated``."""
    if name not in result.plan.strategies:
        return "not planned"
    splits = {d: f for d, f in op_splits(result, name).items() if f > 1}
    return " · ".join(f"{d} x{f}" for d, f in splits.items()) or "replicated"


def graph_figure(graph: OperatorGraph, view: ViewGraph, color_by: str = "kind", result: PlanResult | None = None,
                 orientation: str = "left-right", height: int = 560) -> go.Figure:
    """The layered model graph; ``color_by`` is 'kind', 'type' or 'strategy' (needs ``result``)."""
    pos = layered_positions(view)
    flip = orientation == "top-down"

    def xy(n):
        x, y = pos[n]
        return (y, -x) if flip else (x, y)

    ex, ey = [], []
    for a, b in view.edges:
        (x0, y0), (x1, y1) = xy(a), xy(b)
        ex += [x0, x1, None]
        ey += [y0, y1, None]
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=ex, y=ey, mode="lines", line=dict(color="#B0B0B0", width=1), hoverinfo="skip",
                               showlegend=False))
    groups: dict[str, list[str]] = {}
    for nid, entry in view.nodes.items():
        if color_by == "strategy" and result is not None:
            key = strategy_label(result, entry["heaviest"])
        elif color_by == "type":
            key = entry["type"]
        else:
            key = entry["kind"]
        groups.setdefault(key, []).append(nid)
    ranked = sorted(groups, key=lambda k: -len(groups[k]))
    if len(ranked) > 12:
        other = [n for k in ranked[11:] for n in groups[k]]
        groups = {k: groups[k] for k in ranked[:11]}
        groups["other"] = other
        ranked = ranked[:11] + ["other"]
    maxf = max((e["size_flops"] for e in view.nodes.values()), default=1.0) or 1.0
    columns = len({pos[n][0] for n in view.nodes}) or 1
    biggest = max(8.0, min(26.0, 1400.0 / columns))
    for i, key in enumerate(ranked):
        members = groups[key]
        xs, ys, texts, sizes = [], [], [], []
        for nid in members:
            e = view.nodes[nid]
            x, y = xy(nid)
            xs.append(x)
            ys.append(y)
            sizes.append(5 + (biggest - 5) * math.sqrt(e["size_flops"] / maxf))
            head = graph.operators[e["heaviest"]]
            lines = [f"<b>{html.escape(e['label'])}</b>", f"{e['type']} ({e['kind']})",
                     f"FLOPs {format_flop_count(e['flops'])}"]
            if not e["block"]:
                lines.append("dims " + html.escape(dims_text(head.dims)))
            else:
                lines.append(f"heaviest: {html.escape(e['heaviest'])}")
            if result is not None:
                lines.append("split " + html.escape(strategy_label(result, e["heaviest"])))
            texts.append("<br>".join(lines))
        fig.add_trace(go.Scattergl(
            x=xs, y=ys, mode="markers", name=str(key), text=texts, hovertemplate="%{text}<extra></extra>",
            marker=dict(size=sizes, color=_PALETTE[i % len(_PALETTE)], line=dict(width=0.5, color="#333")),
        ))
    fig.update_layout(height=height, margin=dict(t=10, l=10, r=10, b=10), hovermode="closest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
                      xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white")
    return fig


# ---- the plan as tables ----------------------------------------------------------------------

def headline(result: PlanResult) -> dict:
    """The Overview's figures, as numbers and as text. The iteration is the whole batch; compute,
    communication and redistribution are one micro-batch's (the whole iteration without a
    pipeline or micro-batches)."""
    s = result.cost.seconds()
    mem = result.memory
    sched = result.schedule
    flops = sched.tflops_per_device()
    if result.pipelined:
        breakdown = (f"{sched.micro_batches} micro-batches x slowest stage {format_seconds(max(sched.stage_seconds))} "
                     f"+ bubble {format_seconds(sched.bubble_seconds)} + gradient sync "
                     f"{format_seconds(max(sched.gradient_sync_seconds))}")
    else:
        breakdown = (f"compute {format_seconds(s['compute'])} + communication {format_seconds(s['communication'])} "
                     f"+ redistribution {format_seconds(s['redistribution'])}")
    return {
        "devices": result.machine.num_devices,
        "iteration_seconds": result.total_seconds,
        "iteration": format_seconds(result.total_seconds),
        "breakdown": breakdown,
        "configuration": configuration_label(result),
        "tflops_model": flops["model"],
        "tflops_hardware": flops["hardware"],
        "fullest_stage": fullest_stage(result),
        "speedup": format_speedup(result.speedup_over_data_parallel),
        "data_parallel": format_seconds(result.data_parallel_seconds) + (
            f" (does not fit: {format_bytes(result.data_parallel_memory.peak)} per device)"
            if result.data_parallel_memory is not None and not result.data_parallel_memory.fits else ""),
        "memory": f"{format_bytes(mem.peak)} / {format_bytes(mem.capacity)}",
        "fits": mem.fits,
        "shortfall": format_bytes(mem.shortfall_bytes),
        "search": format_seconds(result.plan.search_seconds),
        "compute": format_seconds(s["compute"]),
        "communication": format_seconds(s["communication"]),
        "redistribution": format_seconds(s["redistribution"]),
    }


def explanation(result: PlanResult, model_label: str, markdown: bool = True) -> str:
    """The Overview's paragraph (Markdown; with ``markdown=False`` the names are left unescaped)."""
    esc = md_text if markdown else plain
    h = headline(result)
    s = result.cost.seconds()
    total = s["total"] or 1.0
    mode = "one training iteration (forward, backward and the gradient all-reduces)" if result.options.mode == "train" \
        else "one inference pass (forward only)"
    fixed = [name for name, value in (("pipeline stages", result.options.pipeline_stages),
                                      ("recomputation", result.options.recompute), ("ZeRO", result.options.zero))
             if value is not None]
    advice = "lower the batch" + (", use a 16-bit precision" if result.options.precision in (None, "fp32") else "") \
        + (f" or set {', '.join(fixed)} back to auto in the sidebar so that the search can trade time for memory"
           if fixed else " or use a machine with more devices or memory: the search found nothing that fits")
    fit = ("fits in each device's memory" if h["fits"] else
           f"does **not** fit in each device's memory: {h['shortfall']} short ({advice})")
    who = f"the fullest stage (stage {h['fullest_stage']})" if result.schedule.stages > 1 else "the plan"
    used = distinct_workers(result)
    replicas = ("" if used == h["devices"] else
                f" Only {used:,} of the {h['devices']:,} devices do distinct work: at the other cuts of the machine "
                "every operator is replicated, because splitting there would cost more in communication than it "
                "saves (a larger batch or faster links change that; try the Compare page's what-if).")
    split = (f"{s['compute'] / total:.0%} compute, {s['communication'] / total:.0%} communication inside operators "
             f"(all-reduces of partial sums and gradients) and {s['redistribution'] / total:.0%} redistribution between "
             "operators whose layouts differ")
    time_text = f"**{h['iteration']}** is the predicted time of {mode}: {split}. "
    if result.pipelined:
        time_text = pipeline_explanation(result, split, esc)
    return (
        f"The planner chose, for every operator of **{esc(model_label)}**, how to split it across the "
        f"**{h['devices']:,} devices** of {esc(result.machine.name)} with **{result.plan.algorithm}** in {h['search']}, "
        "without running anything: "
        f"each choice is scored by a symbolic BSP cost model of the machine. {time_text}"
        f"Pure data parallelism (every device holds the whole model and takes a slice of the batch) would take "
        f"{h['data_parallel']}, so the speed-up over pure data parallel is **{h['speedup']}**"
        + (f" (but pure data parallelism does not fit: it needs {format_bytes(result.data_parallel_memory.peak)} per "
           "device). " if result.data_parallel_memory is not None and not result.data_parallel_memory.fits else ". ")
        + 
        f"Per device {who} needs {format_bytes(result.memory.peak)} of {format_bytes(result.memory.capacity)}: it {fit}. "
        "Predictions are model estimates for comparing strategies, not measurements."
        + (" Here no operator is split: with this batch and machine, every split would cost more in communication "
           "than it saves in compute, so each device runs the whole iteration (the others hold replicas)."
           if used == 1 else replicas)
    )


def pipeline_explanation(result: PlanResult, operator_split: str, esc: Callable = md_text) -> str:
    """The explanation's sentences on the time of a plan with stages or micro-batches."""
    sched = result.schedule
    slowest = max(range(sched.stages), key=lambda i: sched.stage_seconds[i])
    t = sched.stage_seconds[slowest]
    size = f" of {sched.micro_batch_size}" if sched.micro_batch_size else ""
    if sched.stages > 1:
        levels = esc(", ".join(dict.fromkeys(sched.boundary_levels))) or "no"
        shape = (f"The model is cut into **{sched.stages} pipeline stages** (consecutive layers, each on "
                 f"{result.split.stage_machine.num_devices:,} devices; activations and their gradients are sent "
                 f"between stages over the {levels} level) and the batch into **{sched.micro_batches} micro-batches**"
                 f"{size}, run in the 1F1B schedule"
                 + (f" with {sched.interleave} model chunks per device" if sched.interleave > 1 else "") + ". ")
        slots = (f"{sched.micro_batches} x the slowest stage's {format_seconds(t)} per micro-batch (stage {slowest}: "
                 f"{format_seconds(stage_work_seconds(result)[slowest])} of operators, "
                 f"{format_seconds(sched.send_seconds[slowest])} of sends), plus the fill-and-drain bubble of "
                 f"{format_seconds(sched.bubble_seconds)}")
    else:
        shape = (f"The batch is processed as **{sched.micro_batches} micro-batches**{size}, accumulating the "
                 "gradients, so that the gradient all-reduce happens once per iteration. ")
        slots = f"{sched.micro_batches} x {format_seconds(t)} per micro-batch"
    return (shape + f"**{format_seconds(result.total_seconds)}** is the predicted time of one training iteration: "
            f"{slots}, plus the gradient all-reduce of {format_seconds(max(sched.gradient_sync_seconds))}"
            + (" (the part the last backward pass does not hide)" if result.options.overlap_gradient_sync else "")
            + f". Over the whole model, one micro-batch is {operator_split}. ")


def distinct_workers(result: PlanResult) -> int:
    """How many devices do distinct work: the stages times the product of the cuts of a stage
    machine at which some operator splits."""
    cm = result.cost_model
    return result.schedule.stages * math.prod(c.factor for t, c in enumerate(cm.cuts)
                                              if any(s[t] is not None for s in result.plan.strategies.values()))


def cut_labels(cm: CostModel) -> list[str]:
    """One label per prime cut: ``node x2 (1/6)``."""
    per_level: dict[str, int] = {}
    for c in cm.cuts:
        per_level[c.level_name] = per_level.get(c.level_name, 0) + 1
    seen: dict[str, int] = {}
    labels = []
    for c in cm.cuts:
        seen[c.level_name] = seen.get(c.level_name, 0) + 1
        n = per_level[c.level_name]
        labels.append(f"{c.level_name} x{c.factor}" + (f" ({seen[c.level_name]}/{n})" if n > 1 else ""))
    return labels


def level_splits(result: PlanResult, name: str) -> dict[str, str]:
    """Per machine level, what the operator splits there: ``b0 x8 · n x8`` or ``—``."""
    out: dict[str, dict[str, int]] = {lv.name: {} for lv in result.cost_model.machine.levels}  # a stage's levels
    for level, dim, factor in op_cuts(result, name):
        if dim is not None:
            out[level][dim] = out[level].get(dim, 1) * factor
    return {lv: " · ".join(f"{d} x{f}" for d, f in splits.items()) or "—" for lv, splits in out.items()}


def strategy_table(result: PlanResult) -> pd.DataFrame:
    """Every planned operator: its pipeline stage (when there are several), its splits, its cuts
    per machine level and its cost (µs, :func:`cost_unit`)."""
    graph = result.graph
    layers = layers_of(graph)
    cost = result.cost
    stage_of_op = result.schedule.stage_of_op if result.schedule.stages > 1 else None
    pos = {n: i for i, n in enumerate(graph.topological_order())}
    rows = []
    for name in result.cost_model.planned:
        op = graph.operators[name]
        secs = cost.op_seconds(name)
        row = {
            "position": pos[name], "operator": name, "type": op.op_type, "kind": op.kind.value,
            "layer": layers.index.get(name),
            **({"stage": stage_of_op[name]} if stage_of_op else {}),
            "dimensions": dims_text(op.dims), "split": strategy_label(result, name),
        }
        for lv, text in level_splits(result, name).items():
            row[f"{lv} level"] = text
        row.update({"compute (µs)": microseconds(secs["compute"]), "communication (µs)": microseconds(secs["communication"]),
                    "redistribution (µs)": microseconds(secs["redistribution"]),
                    "total (µs)": microseconds(sum(secs.values()))})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "layer" in frame:
        frame["layer"] = frame["layer"].astype("Int64")
    return frame


def strategy_heatmap(result: PlanResult, names: list[str], max_rows: int = 400) -> go.Figure:
    """Operators (rows) by machine cut (columns), coloured by the dimension split at that cut."""
    cm = result.cost_model
    names = names[:max_rows]
    labels = cut_labels(cm)
    dims = sorted({d for n in names for d in result.plan.strategies[n] if d is not None})
    categories = ["none"] + dims
    code = {c: i for i, c in enumerate(categories)}
    z, text = [], []
    for n in names:
        s = result.plan.strategies[n]
        z.append([code[d if d is not None else "none"] for d in s])
        text.append([f"{n}<br>{lab}: {d or 'not split'}" for lab, d in zip(labels, s)])
    k = len(categories)
    colors = ["#EEEEEE"] + [_PALETTE[i % len(_PALETTE)] for i in range(k - 1)]
    scale = []
    for i, c in enumerate(colors):
        scale += [[i / k, c], [(i + 1) / k, c]]
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=names, text=text, hovertemplate="%{text}<extra></extra>", colorscale=scale,
        zmin=-0.5, zmax=k - 0.5, xgap=1, ygap=0.5,
        colorbar=dict(title="dimension", tickvals=list(range(k)), ticktext=categories),
    ))
    fig.update_layout(height=max(300, min(1200, 14 * len(names) + 120)), margin=dict(t=10, l=10, r=10, b=10),
                      yaxis=dict(autorange="reversed", tickfont=dict(size=9)), xaxis=dict(side="top"))
    return fig


# ---- pipelined plans -------------------------------------------------------------------------

def configuration_label(result: PlanResult) -> str:
    """``4 pipeline stages x 32 micro-batches of 48 · recomputation selective · ZeRO 1``."""
    sched = result.schedule
    o = result.options
    stages = f"{sched.stages} pipeline stages" if sched.stages > 1 else "1 stage"
    if sched.interleave > 1:
        stages += f" ({sched.interleave} chunks per device)"
    size = f" of {sched.micro_batch_size}" if sched.micro_batch_size else ""
    parts = [f"{stages} x {sched.micro_batches} micro-batch{'es' if sched.micro_batches > 1 else ''}{size}"]
    if o.mode == "train":
        parts += [f"recomputation {sched.recompute}", f"ZeRO {sched.zero}"]
        if o.overlap_gradient_sync:
            parts.append("gradient sync overlapped")
    return " · ".join(parts)


def fullest_stage(result: PlanResult) -> int:
    """The stage whose devices need the most memory (the one ``result.memory`` reports)."""
    peaks = [m.peak for m in result.schedule.memory]
    return peaks.index(max(peaks))


def slowest_stage(result: PlanResult) -> int:
    """The stage whose per-micro-batch time sets the pace of the pipeline."""
    times = result.schedule.stage_seconds
    return times.index(max(times))


def stage_work_seconds(result: PlanResult) -> list[float]:
    """Each stage's time per micro-batch without its sends: its operators' compute, collectives
    and redistribution (the schedule's stage time is this plus the sends)."""
    sched = result.schedule
    return [t - s for t, s in zip(sched.stage_seconds, sched.send_seconds)]


def _ranges(indices: Iterable[int]) -> str:
    """``0–3, 8, 10–11``."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def stage_blocks(result: PlanResult) -> pd.DataFrame:
    """The stage of each layer: one row per (block, stage it has operators on), blocks in
    topological order. A block is a repeated layer (:func:`layers_of`) or a run of the operators
    between layers; a model without repeated layers has one block per operator. A stage
    boundary inside a layer shows as the layer on two stages."""
    graph = result.graph
    layers = layers_of(graph)
    by_layer = layers.count >= 2
    stage_of_op = result.schedule.stage_of_op
    blocks: dict[tuple, dict[int, list[str]]] = {}  # ("layer", index) or ("run", n) -> {stage: operators}
    runs, in_run = 0, False
    for name in result.cost_model.planned:  # topological order
        layer = layers.index.get(name) if by_layer else None
        if layer is None and not (by_layer and in_run):
            runs += 1  # a new run: after a layer, or every operator when there are no layers
        in_run = layer is None
        key = ("layer", layer) if layer is not None else ("run", runs)
        blocks.setdefault(key, {}).setdefault(stage_of_op[name], []).append(name)
    rows = []
    for order, ((kind, index), stages) in enumerate(blocks.items()):
        members = [n for names in stages.values() for n in names]
        label = f"{layers.family}{index}" if kind == "layer" else \
            members[0] + (f" (+{len(members) - 1} ops)" if len(members) > 1 else "")
        for stage, names in sorted(stages.items()):
            rows.append({"order": order, "block": label, "stage": stage, "operators": len(names),
                         "GFLOP": sum(graph.operators[n].flops for n in names) / 1e9})
    return pd.DataFrame(rows, columns=["order", "block", "stage", "operators", "GFLOP"])


def stage_layer_figure(result: PlanResult, max_ticks: int = 24) -> go.Figure:
    """Blocks (layers) in order on x, their pipeline stage on y: a staircase, one step per stage
    (with interleaving, the device stages repeat)."""
    frame = stage_blocks(result)
    stages = result.schedule.stages
    fig = go.Figure(go.Scatter(
        x=frame["order"], y=frame["stage"], mode="lines+markers", line=dict(color="#BBBBBB", width=1),
        marker=dict(color=frame["stage"], colorscale="Viridis", cmin=0, cmax=max(stages - 1, 1), size=9,
                    symbol="square", line=dict(width=0.5, color="#333")),
        customdata=frame[["block", "operators", "GFLOP"]].to_numpy(),
        hovertemplate="%{customdata[0]}: stage %{y}<br>%{customdata[1]} operators, %{customdata[2]:.4g} GFLOP "
                      "forward<extra></extra>",
    ))
    firsts = frame.drop_duplicates("order")
    step = max(1, math.ceil(len(firsts) / max_ticks))
    ticks = firsts.iloc[::step]
    fig.update_layout(height=max(240, min(700, 14 * stages + 200)), margin=dict(t=10, l=10, r=10, b=10),
                      xaxis=dict(title="layer (blocks in topological order)", tickvals=list(ticks["order"]),
                                 ticktext=[str(b) for b in ticks["block"]], tickangle=-45, tickfont=dict(size=9)),
                      yaxis=dict(title="pipeline stage", range=[stages - 0.5, -0.5], dtick=1 if stages <= 16 else None,
                                 zeroline=False))
    return fig


def stage_table(result: PlanResult) -> pd.DataFrame:
    """Per pipeline stage: what it holds, its time per micro-batch (operators and sends), its
    exposed gradient sync per iteration and its memory per device."""
    sched = result.schedule
    layers = layers_of(result.graph)
    on_stage: dict[int, list[str]] = {s: [] for s in range(sched.stages)}
    for name, stage in sched.stage_of_op.items():
        on_stage[stage].append(name)
    slowest = slowest_stage(result)
    work = stage_work_seconds(result)
    rows = []
    for s in range(sched.stages):
        held = [layers.index[n] for n in on_stage[s] if n in layers.index]
        rows.append({
            "stage": s, "operators": len(on_stage[s]),
            "layers": f"{layers.family}{_ranges(held)}" if held and layers.count >= 2 else "",
            "operators (µs)": microseconds(work[s]), "sends (µs)": microseconds(sched.send_seconds[s]),
            "per micro-batch (µs)": microseconds(sched.stage_seconds[s]),
            "gradient sync (µs)": microseconds(sched.gradient_sync_seconds[s]),
            "memory per device (GiB)": gib(sched.memory[s].peak), "fits": sched.memory[s].fits,
            "slowest": s == slowest,
        })
    return pd.DataFrame(rows)


_SCHEDULE_COLORS = {"operators": "#4C78A8", "sends": "#72B7B2", "bubble": "#BAB0AC", "gradient sync": "#F58518"}


def stage_time_figure(result: PlanResult) -> go.Figure:
    """Each stage's time per micro-batch, operators and sends stacked; the slowest is marked
    (every slot of the pipeline takes its time)."""
    sched = result.schedule
    names = [f"stage {s}" for s in range(sched.stages)]
    fig = go.Figure()
    for label, values in (("operators", stage_work_seconds(result)), ("sends", sched.send_seconds)):
        fig.add_trace(go.Bar(x=names, y=[microseconds(v) for v in values], name=label,
                             marker_color=_SCHEDULE_COLORS[label]))
    slowest = slowest_stage(result)
    fig.add_annotation(x=names[slowest], y=microseconds(sched.stage_seconds[slowest]), text="slowest",
                       showarrow=True, arrowhead=2, ay=-30)
    fig.update_layout(barmode="stack", height=320, yaxis_title="µs per micro-batch", margin=dict(t=40, l=10, r=10, b=10),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", traceorder="normal"))
    return fig


def iteration_figure(result: PlanResult) -> go.Figure:
    """One iteration as one bar: micro-batches x the slowest stage (its operators and its sends),
    the fill-and-drain bubble and the gradient sync left exposed; the parts add up to the
    predicted iteration."""
    sched = result.schedule
    s = slowest_stage(result)
    m = sched.micro_batches
    parts = [(f"{m} x slowest stage: operators", m * stage_work_seconds(result)[s], _SCHEDULE_COLORS["operators"]),
             (f"{m} x slowest stage: sends", m * sched.send_seconds[s], _SCHEDULE_COLORS["sends"]),
             ("bubble", sched.bubble_seconds, _SCHEDULE_COLORS["bubble"]),
             ("gradient sync", max(sched.gradient_sync_seconds), _SCHEDULE_COLORS["gradient sync"])]
    fig = go.Figure()
    for label, seconds, color in parts:
        fig.add_trace(go.Bar(y=["iteration"], x=[seconds * 1e3], name=label, orientation="h", marker_color=color,
                             hovertemplate=f"{label}: %{{x:.4g}} ms<extra></extra>"))
    fig.update_layout(barmode="stack", height=200, xaxis_title="ms per iteration", margin=dict(t=10, l=10, r=10, b=10),
                      legend=dict(orientation="h", y=-0.6, traceorder="normal"))
    return fig


def tried_table(result: PlanResult) -> pd.DataFrame:
    """The configurations the search priced, the one in use marked."""
    s = result.schedule
    rows, marked = [], False
    for row in result.tried:
        chosen = (not marked and (row["stages"], row["micro_batches"], row["recompute"], row["zero"], row["algorithm"])
                  == (s.stages, s.micro_batches, s.recompute, s.zero, result.plan.algorithm)
                  and math.isclose(row["iteration_seconds"], result.total_seconds, rel_tol=1e-9))
        marked = marked or chosen
        rows.append({"stages": row["stages"], "micro-batches": row["micro_batches"],
                     "recomputation": row["recompute"], "ZeRO": row["zero"], "algorithm": row["algorithm"],
                     "iteration (ms)": row["iteration_seconds"] * 1e3,
                     "memory per device (GiB)": gib(row["memory_bytes"]), "fits": row["fits"], "in use": chosen})
    return pd.DataFrame(rows, columns=["stages", "micro-batches", "recomputation", "ZeRO", "algorithm",
                                       "iteration (ms)", "memory per device (GiB)", "fits", "in use"])


# ---- cost page -------------------------------------------------------------------------------

def heaviest_operator(result: PlanResult) -> str:
    cost = result.cost
    return max(result.cost_model.planned, key=lambda n: sum(cost.op_seconds(n).values()))


def candidate_strategies(result: PlanResult, name: str) -> list[tuple[str, tuple]]:
    """Side-by-side candidates for one operator: the plan's choice, replicated, and for each
    splittable dimension that dimension split at every cut it divides (outermost first)."""
    cm = result.cost_model
    chosen = tuple(result.plan.strategies[name])
    out = [("chosen: " + strategy_label(result, name), chosen)]
    seen = {chosen}
    rep = cm.replicated()
    if rep not in seen:
        out.append(("replicated", rep))
        seen.add(rep)
    for d in sorted(cm.info[name].splittable):
        s: tuple = ()
        for _ in cm.cuts:
            s = s + ((d,) if d in cm.candidates(name, s) else (None,))
        if s not in seen and any(x is not None for x in s):
            f = math.prod(c.factor for c, x in zip(cm.cuts, s) if x is not None)
            out.append((f"all on {d}: {d} x{f}", s))
            seen.add(s)
    return out


def formula_rows(result: PlanResult, name: str, candidates: list[tuple[str, tuple]]) -> list[dict]:
    """For each candidate: the sympy formula with symbols, with the machine's numbers, and seconds."""
    import sympy

    cm = result.cost_model
    rows = []
    subs = cm.basis.substitutions()
    for label, s in candidates:
        symbolic = cm.op_formula(name, s, symbolic_dims=True)
        sized = cm.op_formula(name, s)
        numeric = sized.subs(subs)
        rows.append({
            "label": label,
            "strategy": s,
            "latex_symbolic": latex_lines(symbolic),
            "latex_sized": latex_lines(sympy.N(sized, 4)),
            "latex_numeric": sympy.latex(sympy.N(numeric, 4)),
            "latex_terms": latex_terms(cm, name, s),
            "seconds": cm.op_seconds(name, s),
        })
    return rows


def term_seconds(cm: CostModel, name: str, strategy: tuple) -> list[tuple[str, float]]:
    """The operator's cost on this machine term by term: compute, then bytes and latencies per level."""
    c = cm.op_cost(name, strategy)
    vec = c.compute + c.communication
    vals = cm.basis.values
    d = len(cm.machine.levels)
    out = [("compute", float(vec[0] * vals[0]))]
    for i, lv in enumerate(cm.machine.levels):
        out.append((f"{lv.name} bytes", float(vec[1 + i] * vals[1 + i])))
        out.append((f"{lv.name} latency", float(vec[1 + d + i] * vals[1 + d + i])))
    return [(label, v) for label, v in out if v > 0] or [("compute", 0.0)]


def latex_terms(cm: CostModel, name: str, strategy: tuple) -> str:
    """``= 23.2 µs (compute) + 34.1 µs (gpu bytes) + ...``, one term per line, in LaTeX."""
    parts = []
    for label, v in term_seconds(cm, name, strategy):
        text = format_seconds(v).replace("µs", "\\mu s")
        number, unit = text.split(" ", 1) if " " in text else (text, "")
        parts.append(f"\\underbrace{{{number}\\,\\mathrm{{{unit}}}}}_{{\\text{{{label}}}}}")
    return "\\begin{aligned}&= " + "\\\\&+ ".join(parts) + "\\end{aligned}"


def latex_lines(expr) -> str:
    """A cost formula one term per line (compute first, then each level's bytes and latencies),
    so that it fits a narrow column."""
    import sympy

    terms = list(sympy.Add.make_args(expr))
    if len(terms) <= 1:
        return sympy.latex(expr)

    def rank(term):
        names = sorted(str(s) for s in term.free_symbols)
        return (0 if "F" in names else 1 if any(n.startswith("g") for n in names) else 2, names)
    terms.sort(key=rank)
    lines = [sympy.latex(t) for t in terms]
    return "\\begin{aligned}&" + "\\\\&+ ".join(lines) + "\\end{aligned}"


def trace_table(result: PlanResult, name: str) -> pd.DataFrame | None:
    """D-Rec's decisions for one operator: at each recorded step the candidates and the winner."""
    trace = getattr(result.plan, "trace", None) or []
    rows = []
    step = 0
    for entry in trace:
        if entry.get("operator") != name:
            continue
        step += 1
        for cand in entry.get("candidates", []):
            rows.append({
                "step": step, "cut": entry.get("cut"), "level": entry.get("level"), "factor": entry.get("factor"),
                "candidate": cand.get("dim") or "not split",
                "operator (µs)": microseconds(cand.get("op_seconds", float("nan"))),
                "redistribution (µs)": microseconds(cand.get("redistribution_seconds", float("nan"))),
                "total (µs)": microseconds(cand.get("total_seconds", float("nan"))),
                "chosen": (cand.get("dim") == entry.get("chosen")),
            })
    if not trace:
        return None
    return pd.DataFrame(rows, columns=["step", "cut", "level", "factor", "candidate", "operator (µs)",
                                       "redistribution (µs)", "total (µs)", "chosen"])


def traced_operators(result: PlanResult) -> list[str]:
    seen = []
    for entry in getattr(result.plan, "trace", None) or []:
        if entry.get("operator") not in seen:
            seen.append(entry.get("operator"))
    return seen


_TERM_COLORS = {"compute": "#4C78A8", "communication": "#F58518", "redistribution": "#E45756"}


def op_cost_figure(result: PlanResult, top: int = 30) -> go.Figure:
    """Stacked bars of compute, communication and redistribution for the costliest operators."""
    cost = result.cost
    names = sorted(result.cost_model.planned, key=lambda n: -sum(cost.op_seconds(n).values()))[:top]
    fig = go.Figure()
    for term in ("compute", "communication", "redistribution"):
        fig.add_trace(go.Bar(y=names, x=[microseconds(cost.op_seconds(n)[term]) for n in names], name=term,
                             orientation="h", marker_color=_TERM_COLORS[term]))
    fig.update_layout(barmode="stack", height=max(320, 18 * len(names) + 100), xaxis_title=f"µs {cost_unit(result)}",
                      yaxis=dict(autorange="reversed", tickfont=dict(size=10)), margin=dict(t=30, l=10, r=10, b=10),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig


def cost_unit(result: PlanResult) -> str:
    """What an operator's cost covers: the iteration, or one micro-batch on the operator's stage
    (the operator costs of a plan with stages or micro-batches; the schedule adds the rest)."""
    return "per micro-batch" if result.pipelined else "per iteration"


def level_cost_figure(result: PlanResult) -> go.Figure:
    """Communication and redistribution per machine level (of a stage), with compute on the devices."""
    s = result.cost.seconds()
    by_level = result.cost.by_level()
    cats = ["devices (compute)"] + [f"{lv} level" for lv in by_level]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=cats, y=[microseconds(s["compute"])] + [0.0] * len(by_level), name="compute",
                         marker_color=_TERM_COLORS["compute"]))
    for term in ("communication", "redistribution"):
        fig.add_trace(go.Bar(x=cats, y=[0.0] + [microseconds(v[term]) for v in by_level.values()], name=term,
                             marker_color=_TERM_COLORS[term]))
    fig.update_layout(barmode="stack", height=320, yaxis_title=f"µs {cost_unit(result)}", margin=dict(t=30, l=10, r=10, b=10),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig


def memory_figure(result: PlanResult) -> go.Figure:
    """Memory per device (of the fullest stage), stacked, against the device's capacity."""
    mem = result.memory
    parts = [("parameters", mem.parameters, "#4C78A8"), ("gradients", mem.gradients, "#72B7B2"),
             ("optimizer state", mem.optimizer_state, "#EECA3B"), ("activations", mem.activations, "#F58518")]
    row = f"stage {fullest_stage(result)}" if result.schedule.stages > 1 else "per device"
    fig = go.Figure()
    for label, value, color in parts:
        fig.add_trace(go.Bar(y=[row], x=[gib(value)], name=label, orientation="h", marker_color=color,
                             hovertemplate=f"{label}: %{{x:.3g}} GiB<extra></extra>"))
    fig.add_vline(x=gib(mem.capacity), line=dict(color="#E45756" if not mem.fits else "#333", dash="dash"),
                  annotation_text=f"capacity {gib(mem.capacity):.3g} GiB", annotation_position="top")
    fig.update_layout(barmode="stack", height=220, xaxis_title="GiB", margin=dict(t=40, l=10, r=10, b=10),
                      xaxis=dict(range=[0, max(gib(mem.peak), gib(mem.capacity)) * 1.1]),
                      legend=dict(orientation="h", y=-0.5))
    return fig


def memory_table(result: PlanResult) -> pd.DataFrame:
    mem = result.memory
    return pd.DataFrame([
        {"part": "parameters", "GiB": gib(mem.parameters)},
        {"part": "gradients", "GiB": gib(mem.gradients)},
        {"part": "optimizer state", "GiB": gib(mem.optimizer_state)},
        {"part": "activations", "GiB": gib(mem.activations)},
        {"part": "total (peak)", "GiB": gib(mem.peak)},
        {"part": "capacity", "GiB": gib(mem.capacity)},
    ])


# ---- overriding one operator, and comparing plans --------------------------------------------

def with_override(result: PlanResult, name: str, strategy: tuple) -> PlanResult:
    """The same plan with one operator's strategy replaced, scored by the shared evaluator in the
    same configuration (the stages are balanced again for the changed plan)."""
    cm = result.cost_model
    if cm.assignment(name, tuple(strategy)) is None:
        raise PlanError(f"{name}: the split {list(strategy)} does not divide the operator's dimensions; "
                        "choose a dimension the cut's factor divides")
    strategies = dict(result.plan.strategies)
    strategies[name] = tuple(strategy)
    plan = Plan(strategies, f"{result.plan.algorithm} with {name} overridden", 0.0)
    return result_for(cm, plan, result.options, split=result.split, data_parallel_seconds=result.data_parallel_seconds)


def plan_diff(a: PlanResult, b: PlanResult, label_a: str = "current", label_b: str = "other") -> pd.DataFrame:
    """Operators whose strategies differ between two plans of the same model and machine."""
    rows = []
    for name in a.cost_model.planned:
        sa, sb = a.plan.strategies.get(name), b.plan.strategies.get(name)
        if sa == sb:
            continue
        ta, tb = sum(a.cost.op_seconds(name).values()), sum(b.cost.op_seconds(name).values())
        rows.append({"operator": name, "type": a.graph.operators[name].op_type,
                     f"{label_a} split": strategy_label(a, name), f"{label_b} split": strategy_label(b, name),
                     f"{label_a} (µs)": microseconds(ta), f"{label_b} (µs)": microseconds(tb),
                     "difference (µs)": microseconds(tb - ta)})
    frame = pd.DataFrame(rows, columns=["operator", "type", f"{label_a} split", f"{label_b} split", f"{label_a} (µs)",
                                        f"{label_b} (µs)", "difference (µs)"])
    return frame.sort_values("difference (µs)", key=lambda s: -s.abs()) if len(frame) else frame


def read_plan_json(data: bytes) -> dict:
    """Parse an uploaded plan file; ValueError with a fix-it message."""
    check_plan_bounds(data, "the plan file")
    try:
        plan = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("the plan file is not UTF-8 text: upload the .json written by `python -m planner plan --json`") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the plan file is not valid JSON ({exc.msg} at line {exc.lineno}): upload the .json written "
                         "by `python -m planner plan --json` or the Report page") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("ops"), list):
        raise ValueError('the plan file must be a JSON object with a list "ops" (the schema of '
                         "`python -m planner plan --json`)")
    return check_plan_fields(plan, "the plan file")


# ---- comparisons, what-if and sweeps --------------------------------------------------------

def compare_row(algorithm: str, result: PlanResult | None, error: str | None = None) -> dict:
    if result is None:
        return {"algorithm": algorithm, "iteration (ms)": None, "speed-up over data parallel": None,
                "configuration": None, "memory per device (GiB)": None, "fits": None, "search (s)": None,
                "note": error or ""}
    return {"algorithm": algorithm, "iteration (ms)": result.total_seconds * 1e3,
            "speed-up over data parallel": result.speedup_over_data_parallel,
            "configuration": configuration_label(result),
            "memory per device (GiB)": gib(result.memory.peak), "fits": result.memory.fits,
            "search (s)": result.plan.search_seconds, "note": "; ".join(result.notes)[:200]}


def error_text(algorithm: str, exc: Exception) -> str:
    """What to show when an algorithm gives no plan: the planner's message for the errors it
    raises on purpose (ValueError and its subclasses), and an honest bug report otherwise."""
    if isinstance(exc, ValueError):
        return f"{algorithm}: {exc}"
    return (f"{algorithm}: the planner failed ({type(exc).__name__}: {exc}); this is a bug in the planner, not in "
            "your input: please report it with the model and the machine (YAML on the Machine page)")


def compare_figure(frame: pd.DataFrame) -> go.Figure:
    ok = frame[frame["iteration (ms)"].notna()]
    colors = ["#54A24B" if f else "#E45756" for f in ok["fits"]]
    fig = go.Figure(go.Bar(x=ok["algorithm"], y=ok["iteration (ms)"], marker_color=colors,
                           text=[format_seconds(v / 1e3) for v in ok["iteration (ms)"]], textposition="outside",
                           hovertemplate="%{x}: %{y:.4g} ms<extra></extra>"))
    fig.update_layout(height=320, yaxis_title="predicted iteration (ms)", margin=dict(t=30, l=10, r=10, b=10),
                      yaxis_type="log" if len(ok) and ok["iteration (ms)"].max() > 30 * ok["iteration (ms)"].min() else "linear")
    return fig


def bandwidth_choices(current_GBps: float) -> list[float]:
    """Log-spaced GB/s values for a what-if slider, with the current value included."""
    base = [0.5, 1, 2, 5, 10, 12.5, 25, 50, 100, 200, 300, 450, 600, 900, 1800]
    values = sorted(set(base) | {round(current_GBps, 6)})
    return values


def latency_choices(current_us: float) -> list[float]:
    base = [0.0, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500]
    return sorted(set(base) | {round(current_us, 6)})


def what_if_machine(machine: Machine, bandwidths_GBps: dict[int, float], latencies_us: dict[int, float],
                    outer_arity: int | None = None) -> Machine:
    m = machine
    for i, bw in bandwidths_GBps.items():
        if not math.isclose(bw * GB, m.levels[i].bandwidth_Bps, rel_tol=1e-9):
            m = m.with_level(i, bandwidth_Bps=bw * GB)
    for i, lat in latencies_us.items():
        if not math.isclose(lat * US, m.levels[i].latency_s, rel_tol=1e-9, abs_tol=1e-15):
            m = m.with_level(i, latency_s=lat * US)
    if outer_arity is not None and outer_arity != m.levels[0].arity:
        m = m.with_level(0, arity=int(outer_arity))
    return m


def strategy_shape(result: PlanResult) -> str:
    """What kind of parallelism the plan uses: the pipeline stages, then per level of a stage:
    data, model, data+model, or none.

    A cut counts as data parallel when an operator splits its batch dimension there; weighted by
    the operators' FLOPs so that a cheap bias add does not name a level.
    """
    graph = result.graph
    batch = graph.batch_dims()
    cm = result.cost_model
    heavy = sorted((n for n in cm.planned if graph.operators[n].kind is OpKind.COMPUTE),
                   key=lambda n: -graph.operators[n].flops)
    total = sum(graph.operators[n].flops for n in heavy) or 1.0
    parts = [f"pipeline: {result.schedule.stages} stages"] if result.schedule.stages > 1 else []
    for li, lv in enumerate(cm.machine.levels):
        cuts = [t for t, c in enumerate(cm.cuts) if c.level == li]
        if not cuts:
            continue
        data = model = 0.0
        for n in heavy:
            w = graph.operators[n].flops / total
            dims = {result.plan.strategies[n][t] for t in cuts} - {None}
            if batch.get(n) in dims:
                data += w
            if dims - {batch.get(n)}:
                model += w
        kinds = [k for k, v in (("data", data), ("model", model)) if v >= 0.1]
        parts.append(f"{lv.name}: {'+'.join(kinds) or 'replicated'}")
    return " | ".join(parts) or "one device"


def device_sweep(machine: Machine, counts: Iterable[int], plan_at: Callable[[Machine], PlanResult],
                 progress: Progress = None) -> pd.DataFrame:
    """Predicted time and speed-up over data parallel across device counts (outermost level scaled)."""
    counts = list(counts)
    rows = []
    previous = None
    for i, n in enumerate(counts):
        if progress:
            progress(i / len(counts), f"{n} devices ({i + 1}/{len(counts)})")
        m = machine_with_devices(machine, n)
        if m is None:
            continue
        try:
            r = plan_at(m)
        except Exception as exc:  # noqa: BLE001 - one failing point must not hide the others
            rows.append({"devices": n, "iteration (ms)": None, "speed-up over data parallel": None,
                         "data parallel (ms)": None, "fits": None, "strategy": error_text("plan", exc),
                         "changed": False})
            continue
        shape = strategy_shape(r)
        # a level that only replicates (or only exists at some device counts) is not a change
        kinds = tuple(part for part in shape.split(" | ") if not part.endswith(": replicated"))
        rows.append({"devices": n, "iteration (ms)": r.total_seconds * 1e3,
                     "speed-up over data parallel": r.speedup_over_data_parallel,
                     "data parallel (ms)": r.data_parallel_seconds * 1e3, "fits": r.memory.fits,
                     "strategy": shape, "changed": previous is not None and kinds != previous})
        previous = kinds
    if progress:
        progress(1.0, "done")
    return pd.DataFrame(rows, columns=["devices", "iteration (ms)", "speed-up over data parallel",
                                       "data parallel (ms)", "fits", "strategy", "changed"])


def sweep_figure(frame: pd.DataFrame) -> go.Figure:
    from plotly.subplots import make_subplots

    ok = frame[frame["iteration (ms)"].notna()]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=ok["devices"], y=ok["iteration (ms)"], name="plan (ms)", mode="lines+markers",
                             text=ok["strategy"], hovertemplate="%{x} devices: %{y:.4g} ms<br>%{text}<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=ok["devices"], y=ok["data parallel (ms)"], name="data parallel (ms)",
                             mode="lines", line=dict(dash="dot")), secondary_y=False)
    fig.add_trace(go.Scatter(x=ok["devices"], y=ok["speed-up over data parallel"], name="speed-up over data parallel",
                             mode="lines+markers", line=dict(color="#54A24B")), secondary_y=True)
    for _, row in ok[ok["changed"]].iterrows():
        fig.add_vline(x=row["devices"], line=dict(color="#999", dash="dash"))
        fig.add_annotation(x=math.log10(row["devices"]), y=1.0, yref="paper", text=row["strategy"], showarrow=False,
                           textangle=-90, xanchor="right", yanchor="top", font=dict(size=10))
    fig.update_xaxes(type="log", title="devices")
    fig.update_yaxes(type="log", title_text="predicted iteration (ms)", secondary_y=False)
    fig.update_yaxes(title_text="speed-up over data parallel (x)", secondary_y=True, tickmode="auto", showgrid=False,
                     rangemode="tozero")
    fig.update_layout(height=380, margin=dict(t=30, l=10, r=10, b=10), legend=dict(orientation="h", y=1.08))
    return fig


# ---- reports ---------------------------------------------------------------------------------

@dataclass
class ReportMeta:
    model: ModelSource
    bindings: dict[str, int]
    machine_label: str


def report_json(result: PlanResult, meta: ReportMeta) -> dict:
    """The command line's plan JSON, stamped with the model's sha256 and the bound dimensions."""
    data = plan_to_json(result, meta.model.label, meta.model.sha256, meta.bindings)
    data.setdefault("model_sha256", meta.model.sha256)
    return data


def report_stamp(result: PlanResult, meta: ReportMeta) -> list[tuple[str, str]]:
    o = result.options
    return [
        ("tool version", __version__),
        ("model", meta.model.label + (" (sample)" if meta.model.kind == "sample" else " (uploaded)")),
        ("model sha256", meta.model.sha256),
        ("bound dimensions", encode_bindings(meta.bindings) or "none"),
        ("machine", f"{meta.machine_label}: {result.machine.summary()}"),
        ("mode", o.mode), ("algorithm", o.algorithm), ("precision", o.precision or "as in the model"),
        ("optimizer", o.optimizer), ("configuration", configuration_label(result)),
        ("command", reproduce_command(result, meta)),
    ]


def reproduce_command(result: PlanResult, meta: ReportMeta) -> str:
    o = result.options
    model = f"sample_models/{meta.model.label}.onnx" if meta.model.kind == "sample" else meta.model.label
    preset = meta.machine_label in preset_paths() and load_preset(meta.machine_label) == result.machine
    machine_file = f"machines/{meta.machine_label}.yaml" if preset else f"{result.machine.name}.yaml"
    parts = ["python -m planner plan", model, f"--machine {machine_file}"]
    parts += [f"--bind {k}={v}" for k, v in meta.bindings.items()]
    parts += [f"--mode {o.mode}", f"--algorithm {o.algorithm}", f"--optimizer {o.optimizer}"]
    if o.precision:
        parts.append(f"--precision {o.precision}")
    # the configuration the result has (the search's choice, when the options left it open)
    for flag, value in (("--pipeline-stages", o.pipeline_stages), ("--micro-batches", o.micro_batches),
                        ("--recompute", o.recompute), ("--zero", o.zero)):
        if value is not None:
            parts.append(f"{flag} {value}")
    if o.interleave > 1:
        parts.append(f"--interleave {o.interleave}")
    if o.overlap_gradient_sync:
        parts.append("--overlap-gradient-sync")
    return " ".join(parts)


def _md_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(md_text(c) for c in cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("" if math.isnan(v) else format(v, floatfmt))
            elif v is None or v is pd.NA:
                cells.append("")
            else:
                cells.append(md_text(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_tables(result: PlanResult) -> dict[str, pd.DataFrame]:
    h = headline(result)
    stage = f" (stage {h['fullest_stage']}, the fullest)" if result.schedule.stages > 1 else ""
    summary = pd.DataFrame([
        {"figure": "devices", "value": f"{result.machine.num_devices:,}"},
        {"figure": "configuration", "value": h["configuration"]},
        {"figure": "predicted iteration", "value": f"{h['iteration']} = {h['breakdown']}"},
        {"figure": "compute / communication / redistribution" + (" (one micro-batch)" if result.pipelined else ""),
         "value": f"{h['compute']} / {h['communication']} / {h['redistribution']}"},
        {"figure": "TFLOP/s per device (model / hardware)", "value": f"{h['tflops_model']:.4g} / {h['tflops_hardware']:.4g}"},
        {"figure": "pure data parallel", "value": h["data_parallel"]},
        {"figure": "speed-up over pure data parallel", "value": h["speedup"]},
        {"figure": "memory per device" + stage, "value": f"{format_bytes(result.memory.peak)} of {format_bytes(result.memory.capacity)}"
                                                         + ("" if h["fits"] else f" (does NOT fit: {h['shortfall']} short)")},
        {"figure": "search time", "value": h["search"]},
    ])
    levels = pd.DataFrame([{"level": lv, "communication (µs)": microseconds(v["communication"]),
                            "redistribution (µs)": microseconds(v["redistribution"])}
                           for lv, v in result.cost.by_level().items()])
    ops = strategy_table(result)
    ops = ops[ops["kind"] == OpKind.COMPUTE.value].drop(columns=["position", "kind"])
    tables = {"summary": summary, "levels": levels, "memory": memory_table(result), "operators": ops}
    if result.schedule.stages > 1:
        tables["stages"] = stage_table(result)
    return tables


def report_markdown(result: PlanResult, meta: ReportMeta) -> str:
    t = report_tables(result)
    out = [f"# Parallel plan: {md_text(meta.model.label)} on {md_text(result.machine.name)}", ""]
    out += [f"- **{k}**: {md_code(v)}" for k, v in report_stamp(result, meta)]
    out += ["", "## Headline", "", _md_table(t["summary"]), "", explanation(result, meta.model.label), "",
            *(["## Pipeline stages", "", _md_table(t["stages"]), ""] if "stages" in t else []),
            "## Communication per machine level", "", _md_table(t["levels"]), "",
            "## Memory per device", "", _md_table(t["memory"]), "",
            "## Machine (YAML, SI units)", "", md_fence(result.machine.to_yaml().rstrip(), "yaml"), "",
            f"## Compute operators ({len(t['operators'])}; the JSON lists every planned operator)", "",
            _md_table(t["operators"]), ""]
    if result.notes:
        out += ["## Notes", ""] + [f"- {md_text(n)}" for n in result.notes] + [""]
    return "\n".join(out)


def report_html(result: PlanResult, meta: ReportMeta) -> str:
    """A self-contained HTML report: tables, the figures (plotly.js inlined once) and the stamp."""
    t = report_tables(result)
    figs = [("Cost per operator", op_cost_figure(result, top=25)), ("Cost per machine level", level_cost_figure(result)),
            ("Memory per device", memory_figure(result))]
    parts = []
    for i, (title, fig) in enumerate(figs):
        parts.append(f"<h2>{html.escape(title)}</h2>" + fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    stamp = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>"
                    for k, v in report_stamp(result, meta))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ddd;padding:3px 6px;"
             "text-align:left}th{background:#f4f4f4}pre{background:#f6f6f6;padding:1em;overflow:auto}")
    body = [
        f"<h1>Parallel plan: {html.escape(meta.model.label)} on {html.escape(result.machine.name)}</h1>",
        f"<table>{stamp}</table>",
        "<h2>Headline</h2>", t["summary"].to_html(index=False, escape=True),
        f"<p>{html.escape(explanation(result, meta.model.label, markdown=False)).replace('**', '')}</p>",
        *(["<h2>Pipeline stages</h2>", t["stages"].to_html(index=False, float_format="%.4g")] if "stages" in t else []),
        "<h2>Communication per machine level</h2>", t["levels"].to_html(index=False, float_format="%.4g"),
        "<h2>Memory per device</h2>", t["memory"].to_html(index=False, float_format="%.4g"),
        *parts,
        "<h2>Machine (YAML, SI units)</h2>", f"<pre>{html.escape(result.machine.to_yaml())}</pre>",
        f"<h2>Compute operators ({len(t['operators'])}; the JSON lists every planned operator)</h2>",
        t["operators"].to_html(index=False, float_format="%.4g", na_rep=""),
    ]
    if notes:
        body += ["<h2>Notes</h2>", f"<ul>{notes}</ul>"]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Plan: {html.escape(meta.model.label)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}"
            f"<p><small>planner {__version__}, generated {time.strftime('%Y-%m-%d %H:%M:%S')}</small></p></body></html>")


# ---- the explorer's context ----------------------------------------------------------------

@dataclass
class Context:
    """What every page reads: the model, machine and options in use, and their plan (if any)."""

    cache: PlanCache
    source: ModelSource
    data: bytes | None  # uploaded bytes (None for samples)
    dims: list[str]
    bindings: dict[str, int]
    machine: Machine
    machine_label: str  # preset name or "custom"
    options: PlanOptions
    graph: OperatorGraph | None = None
    result: PlanResult | None = None
    model_error: str | None = None
    plan_error: str | None = None
    plan_fix: str = ""  # where to change something when there is no plan (see what_to_change)

    @property
    def meta(self) -> ReportMeta:
        return ReportMeta(self.source, self.bindings, self.machine_label)

    @property
    def no_plan(self) -> str:
        """What a page shows instead of the plan: the planner's message and what to change."""
        return f"No plan: {self.plan_error}. {self.plan_fix}"

    def plan(self, machine: Machine | None = None, options: PlanOptions | None = None,
             progress: Progress = None) -> PlanResult:
        """Another plan of the same model (another machine or options), through the cache."""
        if self.graph is None:
            raise ModelImportError(self.model_error or "no model loaded")
        return self.cache.result(self.source, self.bindings, self.graph, machine or self.machine,
                                 options or self.options, progress)


def options_with(options: PlanOptions, **changes) -> PlanOptions:
    """The options with some fields changed (OptionsError if they do not go together)."""
    data = options.to_dict()
    data.update(changes)
    return PlanOptions(**data)


def option_from_widget(name: str, value):
    """A sidebar widget's value as the PlanOptions field ``name``: ``auto`` (and the precision's
    ``model``) is None, which leaves it to the search (or to the model's element types)."""
    return None if value == AUTO or (name == "precision" and value == "model") else value


def stage_choices(machine: Machine, current: int | None) -> list:
    """The sidebar's pipeline stages: auto, every count the machine splits into, and the count in
    use if the machine does not allow it (a link or an earlier machine: planning says why)."""
    counts = stage_counts(machine)
    return [AUTO, *counts, *([current] if current is not None and current not in counts else [])]


def what_to_change(exc: Exception) -> str:
    """Where a failed plan can be fixed: a configuration the options fix that does not fit the
    model or the machine (an OptionsError) is changed in the pipeline options, anything else by
    choosing another algorithm."""
    if isinstance(exc, OptionsError):
        return "Change the pipeline and memory options in the sidebar."
    return "Pick another algorithm in the sidebar."



# ---- "Run it": the verification on a CPU process group (planner.verify) --------------------------

def verification_frames(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The verification's rows as two tables: one line per run, and predicted against measured
    bytes per operator (operators with no communication either way are left out)."""
    runs = pd.DataFrame([{
        "model": r["model"], "plan": r["plan"], "processes": r["processes"],
        "numerics match": r["numerics_match"],
        "max |gradient error|": r["max_abs_gradient_error"],
        "operators within 10%": f"{sum(o['within_tolerance'] for o in r['ops'])} / {len(r['ops'])}",
    } for r in rows])
    ops = pd.DataFrame([{
        "model": r["model"], "plan": r["plan"], "processes": r["processes"], "operator": o["op"],
        "predicted bytes": o["predicted_bytes"], "measured bytes": o["measured_bytes"],
        "ratio": o["measured_bytes"] / o["predicted_bytes"] if o["predicted_bytes"] else float("nan"),
        "within 10%": o["within_tolerance"],
    } for r in rows for o in r["ops"] if o["predicted_bytes"] or o["measured_bytes"]])
    return runs, ops
