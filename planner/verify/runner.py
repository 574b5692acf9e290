"""Running the verification: the matrix, the launcher in the parent and the worker processes.

:func:`run_verification` prepares every (model, plan) run of one process count
(:func:`planner.verify.program.prepare`) and starts that many worker processes
(:func:`_launch`: fresh interpreters, one thread each, gloo on 127.0.0.1 with a free port, a
timeout per launch; one launch per process count runs all its model/plan pairs). Each worker
(:func:`_worker`) builds the device mesh (one dimension per prime cut), distributes the
module's parameters with :func:`planner.plans.export.apply_dtensor_plan`, runs the step with
:class:`planner.verify.executor.Executor` under a
:class:`planner.verify.recorder.CollectiveRecorder`, and compares its output and gradients
with the single-process step's slices. Workers hand their results to the parent as files in
the launch's temporary folder; the parent turns them into report rows
(:func:`planner.verify.results.report_row`).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable

from planner.plans.export import PARTIAL, REPLICATE, shard
from planner.verify.base import (
    ALGORITHMS, ATOL, DEFAULT_TIMEOUT_S, MODELS, PROCESSES, RTOL, VerificationError, require_torch, torch,
)
from planner.verify.executor import Executor, gloo_all_to_all
from planner.verify.models import MODEL_SPECS, build_model, export_onnx, verification_machine
from planner.verify.program import prepare
from planner.verify.results import report_row

WORKER_COMMAND = "from planner.verify.runner import _worker_main; _worker_main()"


def run_verification(models=MODELS, processes=PROCESSES, algorithms=ALGORITHMS,
                     progress: Callable[[float, str], None] | None = None,
                     timeout_s: float = DEFAULT_TIMEOUT_S, plans: dict[str, dict] | None = None) -> list[dict]:
    """Run the verification matrix; one row per (model, plan, processes), in that order.

    ``progress(fraction, message)`` is called as work completes (fraction in [0, 1]), from the
    calling thread. Each process count is one launch of a process group running all its
    (model, plan) pairs, killed after ``timeout_s`` seconds. ``plans`` adds plans written by
    hand, ``{label: {"model": ..., "processes": N, "ops": [{"name", "cuts"|"splits"}]}}``
    (``model`` and ``processes`` restrict where a plan runs), after the searched ones.
    Rows: ``model``, ``plan``, ``processes``, ``numerics_match``, ``bytes_match``, ``ops``
    [{``op``, ``predicted_bytes``, ``measured_bytes``, ...}], and details. Raises
    :class:`VerificationError` when torch is missing or a launch fails.
    """
    require_torch()
    models, processes, algorithms = list(models), list(processes), list(algorithms)
    plans = dict(plans or {})
    _check_matrix(models, processes, algorithms)
    configs = {p: [(m, a, None) for m in models for a in algorithms]
               + [(m, label, plan) for m in models for label, plan in plans.items()
                  if plan.get("model", m) == m and plan.get("processes", p) == p]
               for p in processes}
    tracker = _Progress(progress, sum(len(c) for c in configs.values()))
    rows: list[dict] = []
    onnx_cache: dict[str, bytes] = {}
    for p in processes:
        if configs[p]:
            rows += _run_size(p, configs[p], onnx_cache, tracker, timeout_s)
    tracker.report(1.0, "done")
    order = {(m, a): i for i, (m, a) in enumerate((m, a) for m in models for a in list(algorithms) + list(plans))}
    return sorted(rows, key=lambda r: (order[(r["model"], r["plan"])], processes.index(r["processes"])))


def _check_matrix(models: list[str], processes: list[int], algorithms: list[str]) -> None:
    """ValueError naming the first model, algorithm or process count the verification cannot run."""
    for m in models:
        if m not in MODEL_SPECS:
            raise ValueError(f"model must be one of {', '.join(MODEL_SPECS)}, not {m!r}")
    for a in algorithms:
        if a not in ("drec+", "drec", "data_parallel", "megatron", "exact"):
            raise ValueError(f"unknown algorithm {a!r}")
    for p in processes:
        verification_machine(p)


class _Progress:
    """``progress(fraction, message)`` with the fraction of runs done so far."""

    def __init__(self, progress: Callable[[float, str], None] | None, total: int):
        self.report = progress or (lambda f, msg: None)
        self.total = total
        self.done = 0

    def say(self, message: str) -> None:
        self.report(self.done / max(self.total, 1), message)

    def finished(self, message: str) -> None:
        self.done += 1
        self.say(message)


def _run_size(p: int, configs: list[tuple], onnx_cache: dict[str, bytes], tracker: _Progress,
              timeout_s: float) -> list[dict]:
    """Every (model, plan) of one process count: prepared here, run in one launch, one row each."""
    prepared = []
    for m, a, plan in configs:
        tracker.say(f"planning {m} with {a} for {p} processes")
        if m not in onnx_cache:
            onnx_cache[m] = export_onnx(build_model(m))
        prepared.append(prepare(m, a, p, plan, onnx_cache[m]))
    jobs = [{"model": c.model, "export": c.export, "program": c.program, "reference": r} for c, r in prepared]
    tracker.say(f"launching {p} processes")

    def finished(job):
        c = prepared[job][0]
        tracker.finished(f"{c.model} {c.algorithm} on {p} processes done")

    before = tracker.done
    try:
        results = _launch(p, jobs, timeout_s, finished)
    except VerificationError as exc:  # the free port was taken meanwhile: once more, on another
        if "address already in use" not in str(exc).lower() or tracker.done != before:
            raise
        results = _launch(p, jobs, timeout_s, finished)
    return [report_row(c, r, [x for x in results if x["job"] == index]) for index, (c, r) in enumerate(prepared)]


# ---- the workers ---------------------------------------------------------------------------------

def _worker(rank: int, world: int, port: int, jobs: list[dict], put: Callable[[str, dict], None],
            timeout_s: float) -> None:
    """One process of the group: runs every job (model, plan) of this size in turn."""
    import datetime

    import torch.distributed as dist

    from planner.plans.export import build_device_mesh

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        mesh = None
        for index, job in enumerate(jobs):
            start = time.perf_counter()
            if mesh is None:
                mesh = build_device_mesh(job["export"], "cpu")
            put("result", _run_job(rank, world, mesh, index, job, start))
            dist.barrier()
        dist.destroy_process_group()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the rank
        import traceback

        put("error", {"rank": rank, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


def _run_job(rank: int, world: int, mesh, index: int, job: dict, start: float) -> dict:
    """One (model, plan) step on this rank: its loss share, collectives, output and gradient checks."""
    from planner.plans.export import apply_dtensor_plan
    from planner.verify.recorder import CollectiveRecorder  # defined only where torch is installed

    export, program, ref = job["export"], job["program"], job["reference"]
    levels = program["mesh_levels"]
    dim_levels = {mesh.get_group(i).group_name: (i, levels[i]) for i in range(mesh.ndim)}
    coords = [tuple(int(v) for v in (mesh.mesh == r).nonzero()[0]) for r in range(world)]
    mine = coords[rank]
    peer_levels = [None if r == rank else levels[next(i for i in range(mesh.ndim) if coords[r][i] != mine[i])]
                   for r in range(world)]
    module = build_model(job["model"])
    module.load_state_dict(ref["state"])
    placed = apply_dtensor_plan(module, export, mesh, src_data_rank=None)
    params = dict(module.named_parameters())
    executor = Executor(mesh, program)
    recorder = CollectiveRecorder(dim_levels, peer_levels, max(levels) + 1)
    with gloo_all_to_all(), recorder:
        loss, y = executor.run(params, ref["x"], ref["target"])
        loss.backward()
    out = {"rank": rank, "job": index, "loss_share": float(loss.detach()), "records": recorder.records,
           "seconds": time.perf_counter() - start, "not_distributed": placed["replicated"]}
    out["output"] = _compare(y.detach(), executor.slice_of(ref["y"], program["output_placements"]))
    out["grads"] = {name: _gradient_check(p, executor, ref["grads"], name) for name, p in params.items()}
    return out


def _gradient_check(p, executor: Executor, reference: dict, name: str) -> dict:
    """A parameter's gradient against the single-process one, sliced as the parameter is laid out."""
    if p.grad is None:
        return {"match": False, "max_abs_error": None, "error": "no gradient"}
    placements = _placement_texts(p.grad.placements)
    if placements != _placement_texts(p.placements):  # e.g. a partial sum never reduced
        return {"match": False, "max_abs_error": None,
                "error": f"gradient left in {placements}, the parameter is {_placement_texts(p.placements)}"}
    return _compare(p.grad.to_local(), executor.slice_of(reference[name], placements))


def _worker_main() -> None:
    """Entry point of a worker interpreter: ``python -c ... DIR RANK`` (see :func:`_launch`)."""
    from pathlib import Path

    folder, rank = Path(sys.argv[1]), int(sys.argv[2])
    spec = torch.load(folder / "jobs.pt", weights_only=False)
    counter = [0]

    def put(kind: str, payload: dict) -> None:
        name = f"{kind}-rank{rank}-{counter[0]}.pt"
        counter[0] += 1
        torch.save(payload, folder / (name + ".tmp"))
        os.replace(folder / (name + ".tmp"), folder / name)  # atomic: the parent never reads half a file

    _worker(rank, spec["world"], spec["port"], spec["jobs"], put, spec["timeout_s"])


def _placement_texts(placements) -> list[str]:
    out = []
    for p in placements:
        if p.is_shard():
            out.append(shard(p.dim))
        elif p.is_partial():
            out.append(PARTIAL)
        else:
            out.append(REPLICATE)
    return out


def _compare(got, expected) -> dict:
    ok = got.shape == expected.shape and torch.allclose(got, expected, rtol=RTOL, atol=ATOL)
    err = float((got - expected).abs().max()) if got.shape == expected.shape and got.numel() else None
    return {"match": bool(ok), "max_abs_error": err}


# ---- the parent --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_environment() -> dict:
    """The workers' environment: one thread each, loopback only, this package importable."""
    from pathlib import Path

    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"})
    if os.path.exists("/sys/class/net/lo"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    root = str(Path(__file__).resolve().parents[2])  # the folder holding planner/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env




def _launch(processes: int, jobs: list[dict], timeout_s: float, on_result: Callable[[int], None]) -> list[dict]:
    """Start ``processes`` worker interpreters and collect their results; kill them (by their own
    process handles) on timeout or failure.

    Workers are fresh ``python`` processes (like a ``spawn`` start) rather than
    ``multiprocessing`` children, so that nothing depends on how the caller's main module is
    written (a page, a notebook, a script without a ``__main__`` guard).
    """
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="planner-verify-") as tmp:
        folder = Path(tmp)
        torch.save({"jobs": jobs, "world": processes, "port": free_port(), "timeout_s": timeout_s},
                   folder / "jobs.pt")
        procs, logs = _start_workers(folder, processes)
        got: list[dict] = []
        error = None
        try:
            error = _collect(folder, procs, processes * len(jobs), timeout_s, on_result, got)
        finally:
            _stop(procs, logs, error)
            if error is not None:
                tail = (folder / "log-rank0.txt").read_text()[-3000:]
                error += ("\nrank 0 output:\n" + tail) if tail.strip() else ""
        if error:
            raise VerificationError(f"{processes} processes: {error}")
        return got


def _start_workers(folder, processes: int) -> tuple[list, list]:
    """One worker interpreter per rank, its output in ``log-rank{N}.txt``: (processes, logs)."""
    import subprocess

    env = _child_environment()
    procs = []
    logs = []
    for rank in range(processes):
        log = open(folder / f"log-rank{rank}.txt", "w")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER_COMMAND, str(folder), str(rank)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    return procs, logs


def _collect(folder, procs: list, expected: int, timeout_s: float, on_result: Callable[[int], None],
             got: list[dict]) -> str | None:
    """Read the workers' result files into ``got`` until ``expected`` arrive; call ``on_result(job)``
    when every rank has finished a job. Returns what went wrong (``None`` when nothing did)."""
    processes = len(procs)
    seen: set[str] = set()
    per_job: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < expected:
        if time.monotonic() > deadline:
            return f"timed out after {timeout_s:.0f} s ({len(got)} of {expected} results)"
        fresh = sorted(p.name for p in folder.glob("*.pt") if p.name != "jobs.pt" and p.name not in seen)
        for name in fresh:
            seen.add(name)
            payload = torch.load(folder / name, weights_only=False)
            if name.startswith("error"):
                return f"rank {payload['rank']}: {payload['error']}\n{payload['traceback']}"
            got.append(payload)
            per_job[payload["job"]] = per_job.get(payload["job"], 0) + 1
            if per_job[payload["job"]] == processes:
                on_result(payload["job"])
        if not fresh:
            dead = [(r, p.returncode) for r, p in enumerate(procs) if p.poll() not in (None, 0)]
            if dead:
                return f"rank {dead[0][0]} exited with code {dead[0][1]}"
            time.sleep(0.05)
    return None


def _stop(procs: list, logs: list, error: str | None) -> None:
    """Let the workers exit (briefly when something failed), kill those still running, close the logs."""
    import subprocess

    for p in procs:
        try:
            p.wait(timeout=10 if error is None else 0.1)
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    for log in logs:
        log.close()
