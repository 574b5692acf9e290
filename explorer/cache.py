"""The explorer's memo: imported graphs, plan results, scored plan files and sweeps, one server
process's worth, keyed by one frozen :class:`PlanRequest` (the model's sha256, the bound
dimensions, the machine and every option). No planning logic: a miss calls
:func:`planner.api.plan_model` (or :func:`planner.api.evaluate_plan`), the entry the command line
uses too, so the app and the CLI cannot disagree.

A ``PlanResult`` holds numpy vectors, sympy-capable cost models and a networkx graph; pickling one
(what ``st.cache_data`` does on every hit) costs about as much as a tenth of a re-plan of
BERT-large, so the app keeps one ``PlanCache`` per server process in ``st.cache_resource`` and
looks results up by request instead. Each table is bounded by the bytes its entries keep alive
(:func:`explorer.cache_budget.deep_size`, measured once when an entry is stored), not by their
number: one GPT-3 result keeps tens of MB, one MLP's a hundred KB. The newest entry always stays.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from explorer.cache_budget import Sized, deep_size
from explorer.default_plan import answers_model, shipped_sized
from explorer.sources import ModelSource
from planner.api import PlanOptions, PlanResult, evaluate_plan, plan_model, reprice_plan
from planner.machine.tree import Machine
from planner.limits import LimitError
from planner.options import ConfigError, OptionsError
from planner.search.exact import SearchTooLargeError
from planner.search.hand_made import offered, price_hand_made
from planner.search.megatron import NotATransformerError
from planner.model.graph import OperatorGraph
from planner.model.rebatch import planning_dims
from planner.model.rebind import Rebinder
from planner.onnx.importer import ModelImportError, import_model, load_model_proto
from planner.onnx.rebinder import rebinder_for

Progress = Callable[[float, str], None] | None

#: A plan the planner refuses for what was asked (too large for the exact search, not a
#: transformer, options that contradict each other): the same request is refused again, so the
#: refusal is kept (the Compare page's table asks for every algorithm on every run).
REFUSALS = (SearchTooLargeError, NotATransformerError, OptionsError, LimitError)


def bindings_key(bindings: dict[str, int]) -> tuple:
    return tuple(sorted((str(k), int(v)) for k, v in bindings.items()))


@dataclass(frozen=True)
class PlanRequest:
    """One plan asked for: the model, its bound dimensions, the machine and the options.

    Equal requests are the same plan: the key is the model's sha256, the sorted bindings, the
    machine as JSON and every option (so that a new field of PlanOptions can never make two plans
    share a key); the objects themselves ride along for the planner.
    """

    source: ModelSource = field(compare=False)
    bindings: dict[str, int] = field(compare=False)
    machine: Machine = field(compare=False)
    options: PlanOptions = field(compare=False)
    key: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bindings", dict(self.bindings))
        object.__setattr__(self, "key", (
            self.source.sha256, bindings_key(self.bindings), json.dumps(self.machine.to_dict(), sort_keys=True),
            tuple(sorted(self.options.to_dict().items()))))

    def on(self, machine: Machine | None = None, options: PlanOptions | None = None) -> PlanRequest:
        """The same model planned on another machine or with other options."""
        return PlanRequest(self.source, self.bindings, machine or self.machine, options or self.options)

    def is_what_if(self, key: tuple) -> bool:
        """Whether another request's ``key`` asks for this model, bindings and options on another
        machine (a what-if variant)."""
        model, bindings, machine, options = key
        return machine != self.key[2] and (model, bindings, options) == (self.key[0], self.key[1], self.key[3])


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
CACHE_BYTES = {"graphs": 64 * 2**20, "results": 128 * 2**20, "sweeps": 16 * 2**20, "dims": 2**20}


class PlanCache:
    """Graphs, plan results and sweeps by :class:`PlanRequest`.

    Thread-safe: Streamlit runs each session in its own thread. One lock per key makes two
    sessions asking for the same plan wait for one computation instead of doing it twice.
    """

    def __init__(self, graph_bytes: int = CACHE_BYTES["graphs"], result_bytes: int = CACHE_BYTES["results"],
                 sweep_bytes: int = CACHE_BYTES["sweeps"], dims_bytes: int = CACHE_BYTES["dims"],
                 result_entries: int | None = None):
        # ``result_entries`` bounds the results by number instead, unmeasured (a planning worker
        # keeps only its last result); entries made in a worker come Sized (explorer.cache_budget)
        self._graphs = _LRU(math.inf, weight=deep_size, max_weight=graph_bytes)
        self._dims = _LRU(math.inf, weight=deep_size, max_weight=dims_bytes)
        self._results = (_LRU(math.inf, weight=deep_size, max_weight=result_bytes) if result_entries is None
                         else _LRU(result_entries))
        self._sweeps = _LRU(math.inf, weight=deep_size, max_weight=sweep_bytes)
        self._models = _LRU(math.inf, weight=len, max_weight=graph_bytes)  # uploads' weight-free bytes, for the pool
        self._refusals = _LRU(256)  # request key -> the planner's refusal of it (REFUSALS)
        self._rebinders = _LRU(2)  # the last models' Rebinders: each keeps its micro-batch graphs for the next plan
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
                                                       ("results", self._results), ("sweeps", self._sweeps))}

    # -- models --
    def symbolic_dims(self, source: ModelSource, data: bytes | None = None) -> list[str]:
        def compute():
            return planning_dims(load_model_proto(source.path if data is None else data))  # + a static batch
        return list(self._memo(self._dims, ("dims", source.sha256), compute))

    def offers(self, source: ModelSource, bindings: dict[str, int], data: bytes | None = None) -> tuple[bool, bool]:
        """Whether the model offers expert and context parallelism to a hand-made configuration
        (:func:`planner.search.hand_made.offered`; a third of a second on Llama-3-8B, so kept)."""
        return self._memo(self._dims, ("offers", source.sha256, bindings_key(bindings)),
                          lambda: offered(self.graph(source, bindings, data)))

    def graph(self, source: ModelSource, bindings: dict[str, int], data: bytes | None = None) -> OperatorGraph:
        key = ("graph", source.sha256, bindings_key(bindings))

        def compute():
            src = source.path if data is None else data
            if src is None:
                raise ModelImportError(f"the bytes of {source.label} are no longer available: upload it again")
            if data is not None:
                with self._lock:
                    self._models.put(source.sha256, data)
            if self.pool is not None and not answers_model(source.sha256, bindings_key(bindings)):
                return self.pool.graph(source, data, bindings)  # in a worker, off the script thread: Sized
            # (the default view's model is read here: its plan is shipped, no worker need start for it)
            return import_model(src, dict(bindings), name=source.label)
        return self._memo(self._graphs, key, compute, "graph")

    def rebinder(self, source: ModelSource) -> Rebinder:
        """Re-binds the model's batch (micro-batches), from its file or the upload's bytes; kept
        for the model's next plans (a what-if change or a sweep re-binds to the same sizes)."""
        with self._lock:
            kept = self._rebinders.get((source.sha256, source.label))
            data = None if source.path else self._models.get(source.sha256)
        if kept is not None:
            return kept
        src = source.path if data is None else data
        if src is None:
            raise ModelImportError(f"the bytes of {source.label} are no longer available: upload it again")
        made = rebinder_for(src, name=source.label)
        with self._lock:
            self._rebinders.put((source.sha256, source.label), made)
        return made

    # -- plans --
    def has_result(self, request: PlanRequest) -> bool:
        with self._lock:
            return ("result",) + request.key in self._results.items

    def result(self, request: PlanRequest, graph: OperatorGraph, progress: Progress = None,
               hints: list[dict] | None = None) -> PlanResult:
        """The plan of ``request`` (raises the planner's ValueError subclasses unchanged), made by
        :func:`planner.api.plan_model` in one of the :attr:`pool`'s worker processes when there is
        a pool, else here. drec+ also starts from ``hints``, by default the plans already made
        for what-if variants of the machine (:meth:`_hints`)."""
        def compute():
            shipped = shipped_sized(request.key, graph, request.machine, request.options,
                                    lambda: self.rebinder(request.source))  # the default view's, made ahead
            if shipped is not None:
                return shipped
            start = self._hints(request) if hints is None else hints
            if self.pool is not None:
                with self._lock:
                    data = None if request.source.path else self._models.get(request.source.sha256)
                if request.source.path or data is not None:
                    return self.pool.plan(request.source, data, request.bindings, graph, request.machine,
                                          request.options, start)
            return plan_model(graph, request.machine, request.options, progress, hints=start,
                              rebinder=self.rebinder(request.source))
        key = ("result",) + request.key
        with self._lock:
            refused = self._refusals.get(key)
        if refused is not None:
            raise refused.with_traceback(None)
        try:
            return self._memo(self._results, key, compute, "result")
        except REFUSALS as exc:
            with self._lock:
                self._refusals.put(key, exc)
            raise

    def _hints(self, request: PlanRequest, most: int = 3) -> list[dict]:
        """Plans already made for the same model and options on machines with the same cut
        schedule (what-if variants of this one): drec+ starts from them too, so that a faster
        machine never shows a slower plan than one it has already seen."""
        schedule = [(c.level, c.factor) for c in request.machine.cuts()]
        with self._lock:
            found = [value.plan.strategies for key, (value, _) in reversed(self._results.items.items())
                     if key[0] == "result" and request.is_what_if(key[1:])
                     and [(c.level, c.factor) for c in value.machine.cuts()] == schedule]
        return found[:most]

    def repriced(self, request: PlanRequest, graph: OperatorGraph, current: PlanRequest) -> PlanResult:
        """The plan of ``current`` (made first if it is not cached) priced on ``request``'s machine,
        a what-if variant with other links (:func:`planner.api.reprice_plan`, nothing searched):
        figures at once, while the re-planned one (:meth:`result`) is made."""
        return self._memo(self._results, ("repriced", current.key[2]) + request.key,
                          lambda: reprice_plan(graph, self.result(current, graph), request.machine))

    def repriced_if_possible(self, request: PlanRequest, graph: OperatorGraph,
                             current: PlanRequest) -> PlanResult | None:
        """:meth:`repriced` when it answers at once: None when ``request`` is ``current``, its
        machine has other levels (names, arities: another device count or tree shape), the plan of
        ``current`` is not cached (it would be planned first), or re-pricing does not cover the
        plan (a context-parallel one)."""
        shape = [[(lv.name, lv.arity) for lv in r.machine.levels] for r in (request, current)]
        if request.key == current.key or shape[0] != shape[1] or not self.has_result(current):
            return None
        try:
            return self.repriced(request, graph, current)
        except ConfigError:
            return None

    def evaluate(self, request: PlanRequest, graph: OperatorGraph, plan_json: dict, plan_sha: str) -> PlanResult:
        """An uploaded plan file scored on ``request``'s model, machine and options."""
        return self._memo(self._results, ("evaluate", plan_sha) + request.key,
                          lambda: evaluate_plan(graph, request.machine, plan_json, request.options,
                                                rebinder=self.rebinder(request.source)))

    def hand_made(self, request: PlanRequest, config, graph: OperatorGraph, global_batch: int) -> PlanResult:
        """A hand-made configuration (:class:`planner.search.hand_made.HandMade`) of ``request``'s
        model, machine and options, priced by :func:`planner.search.hand_made.price_hand_made`
        (``graph``: the model bound to its micro-batch size)."""
        return self._memo(self._results, ("hand_made", config, global_batch) + request.key,
                          lambda: price_hand_made(graph, request.machine, config, global_batch, request.options,
                                                  rebinder=self.rebinder(request.source)))

    def sweep(self, request: PlanRequest, counts: tuple[int, ...], compute: Callable):
        """The sweep of ``request`` over device ``counts``, made by ``compute()`` on a miss."""
        return self._memo(self._sweeps, ("sweep", tuple(counts)) + request.key, compute)

    def cached_sweep(self, request: PlanRequest, counts: tuple[int, ...]):
        with self._lock:
            return self._sweeps.get(("sweep", tuple(counts)) + request.key)

