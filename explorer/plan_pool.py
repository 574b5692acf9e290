"""Planning off the Streamlit script thread: a small pool of worker processes, one per core,
shared by every session of the explorer's server (it lives in the server's ``PlanCache``).

Planning is CPU-bound Python: on threads, one session's long plan holds the interpreter and every
other session's redraw waits for it. With the pool, a session's script thread only waits for its
own plan, the server keeps answering, and plans of different sessions run on different cores.

A task carries the model (a sample's path, or an upload's weight-free bytes), its bound
dimensions, the machine, the options and drec+'s hints (the plans of what-if variants the main
cache has seen), so the worker plans exactly what the script thread would have planned. The
worker keeps its last few graphs (re-planning one model on another machine does not re-import
it). The result comes back pickled; the graph's re-binding function (a closure over the model)
does not cross processes and is set again from the main process's graph.

Under AppTest the pool is not used (planning stays on the script thread, deterministic and
simple to test): see ``explorer.run.plan_cache``.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import threading
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from planner.cost.model import PlanError

#: The worker's own cache (graphs by model and bindings; one result at a time).
_WORKER_CACHE = None


def _worker_cache():
    global _WORKER_CACHE
    if _WORKER_CACHE is None:
        from explorer.cache import PlanCache

        _WORKER_CACHE = PlanCache(graph_bytes=128 * 2**20, result_bytes=1)
    return _WORKER_CACHE


def _no_function():
    return None


class _ResultPickler(pickle.Pickler):
    """Pickles a plan result, leaving out closures (a graph's ``reimport``): they hold the
    ModelProto and cannot be pickled; the main process sets them again."""

    def reducer_override(self, obj):
        if isinstance(obj, types.FunctionType) and "<locals>" in obj.__qualname__:
            return _no_function, ()
        return NotImplemented


def _plan_in_worker(source, data, bindings: dict, machine, options, hints) -> bytes:
    from explorer.cache import PlanRequest

    cache = _worker_cache()
    try:
        graph = cache.graph(source, bindings, data)
        result = cache.result(PlanRequest(source, bindings, machine, options), graph, hints=hints)
    except Exception as exc:  # noqa: BLE001 - sent back as it is when it can be
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001
            raise PlanError(f"{type(exc).__name__}: {exc}") from None
        raise
    buf = io.BytesIO()
    _ResultPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(result)
    return buf.getvalue()


def default_workers() -> int:
    """One worker per core the server may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class PlanPool:
    """Plans in worker processes (spawned, so that no lock of the server's threads is copied)."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or default_workers()
        self._lock = threading.Lock()
        self._executor = None

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            return self._executor

    def plan(self, source, data: bytes | None, bindings: dict, graph, machine, options, hints):
        """The plan the script thread would make, made in a worker; ``graph`` is the main
        process's graph of the same model and bindings (its re-binding function is reused)."""
        try:
            payload = self._pool().submit(_plan_in_worker, source, data, dict(bindings), machine, options,
                                          list(hints)).result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): start a new pool next time
            with self._lock:
                self._executor = None
            raise PlanError("the planning worker stopped (out of memory or killed); try again, or a smaller "
                            "model or machine") from None
        result = pickle.loads(payload)
        for g in {id(x): x for x in (result.graph, getattr(result.cost_model, "graph", None)) if x is not None}.values():
            if g.reimport is None:
                g.reimport = graph.reimport
        return result

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
