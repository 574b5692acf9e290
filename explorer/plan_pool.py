"""Planning off the Streamlit script thread: a small pool of worker processes, one per core,
shared by every session of the explorer's server (it lives in the server's ``PlanCache``).

Planning is CPU-bound Python: on threads, one session's long plan holds the interpreter and every
other session's redraw waits for it. With the pool, a session's script thread only waits for its
own plan, the server keeps answering, and plans of different sessions run on different cores.

Models are imported in the workers too (:meth:`PlanPool.graph`): the server process never runs
the importer, and each worker keeps its last few graphs (re-planning one model on another machine
does not re-import it). A graph comes back pickled (charged by its pickle's length, as a result
is); a graph holds no function (re-binding the batch is the caller's ``Rebinder``), so it crosses
processes as it is.

A plan task carries the model, its bound dimensions, the machine, the options and drec+'s hints
(the plans of what-if variants the main cache has seen), so the worker plans exactly what the
script thread would have planned. The result comes back pickled without its graph, which the
main process already holds (a pickle *persistent id*): one graph per model and bindings in the
server, not one per result, and no graph to unpickle. The result is charged by its pickle's length
(:func:`explorer.cache_budget.pickled_size`): nothing walks it, in the worker or the server.

Under AppTest the pool is not used (planning stays on the script thread, deterministic and
simple to test): see ``explorer.run.plan_cache``.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from explorer.cache_budget import Sized, pickled_size
from planner.cost.model import PlanError
from planner.onnx.importer import ModelImportError

#: The worker's own cache (graphs by model and bindings; one result at a time).
_WORKER_CACHE = None

#: The persistent id of the graph a result was planned on (the main process holds that graph).
_GRAPH_ID = "graph"


def _worker_cache():
    global _WORKER_CACHE
    if _WORKER_CACHE is None:
        from explorer.cache import PlanCache

        _WORKER_CACHE = PlanCache(graph_bytes=128 * 2**20, result_entries=1)
    return _WORKER_CACHE


class _ResultPickler(pickle.Pickler):
    """Pickles a graph or a plan result; ``graph``, when given, is left out (as a persistent id):
    the main process has its own copy."""

    def __init__(self, file, graph=None):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._graph = graph

    def persistent_id(self, obj):
        return _GRAPH_ID if self._graph is not None and obj is self._graph else None


class _ResultUnpickler(pickle.Unpickler):
    def __init__(self, file, graph):
        super().__init__(file)
        self._graph = graph

    def persistent_load(self, pid):
        if pid != _GRAPH_ID:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._graph


def _dumps(value, graph=None) -> bytes:
    buf = io.BytesIO()
    _ResultPickler(buf, graph).dump(value)
    return buf.getvalue()


def _sendable(exc: Exception, kind: type = PlanError) -> Exception:
    """``exc`` itself when it crosses processes, else a ``kind`` error with its text."""
    try:
        pickle.dumps(exc)
    except Exception:  # noqa: BLE001
        return kind(f"{type(exc).__name__}: {exc}")
    return exc


def _import_in_worker(source, data, bindings: dict) -> bytes:
    """The pickled graph of the model with ``bindings`` (kept in this worker's cache)."""
    try:
        graph = _worker_cache().graph(source, bindings, data)
    except Exception as exc:  # noqa: BLE001 - sent back as it is when it can be
        raise _sendable(exc, ModelImportError) from None
    return _dumps(graph)


def _plan_in_worker(source, data, bindings: dict, machine, options, hints) -> bytes:
    from explorer.cache import PlanRequest

    cache = _worker_cache()
    try:
        graph = cache.graph(source, bindings, data)
        result = cache.result(PlanRequest(source, bindings, machine, options), graph, hints=hints)
    except Exception as exc:  # noqa: BLE001 - sent back as it is when it can be
        raise _sendable(exc) from None
    return _dumps(result, graph)


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

    def _run(self, fn, *args):
        try:
            return self._pool().submit(fn, *args).result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): start a new pool next time
            with self._lock:
                self._executor = None
            raise PlanError("the planning worker stopped (out of memory or killed); try again, or a smaller "
                            "model or machine") from None

    def graph(self, source, data: bytes | None, bindings: dict) -> Sized:
        """The graph of the model with ``bindings``, imported in a worker, with its size."""
        payload = self._run(_import_in_worker, source, data, dict(bindings))
        return Sized(pickle.loads(payload), pickled_size(payload))

    def plan(self, source, data: bytes | None, bindings: dict, graph, machine, options, hints) -> Sized:
        """The plan the script thread would make, made in a worker, with its size; ``graph`` is
        the main process's graph of the same model and bindings (the result's graph, when the
        worker planned on its copy of it)."""
        payload = self._run(_plan_in_worker, source, data, dict(bindings), machine, options, list(hints))
        result = _ResultUnpickler(io.BytesIO(payload), graph).load()
        return Sized(result, pickled_size(payload))

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
