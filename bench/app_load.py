"""Concurrent sessions: the time to first figures of 5 sessions opened at once on 5 different
samples, against each sample opened alone (issue 16 item 9; target: <= 2x).

By default the sessions are scripted clients that do not render (``bench/ws_client.py``: Streamlit's
websocket protocol from Python), so the figures measure the server: from a session's first rerun
request until its Overview run has finished with its plotly figures sent. ``--browser`` opens
Chromium tabs instead (Playwright, as tests/explorer/test_browser.py) and waits until the figures
are on screen: that measures the browsers' drawing too, which on a 2-core machine dominates.

Each round:

1. each sample alone, on a fresh server (cold caches);
2. the 5 samples at once, on another fresh server.

Every server is first warmed up with one session per core at once on the ``mlp`` sample (distinct
bindings), so that its imports are done and every planning worker has started. Prints the machine's
cores and load, per session the seconds alone and at once and their ratio (medians of the rounds),
the medians, the worst ratio, and where the CPU went (server process, planning workers) with the
floor that the cores set.

    python bench/app_load.py [--rounds 3] [--machine dgx_a100] [--no-pool] [--browser]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ws_client import first_figures, streamlit_server  # noqa: E402 - bench/ is not a package

SAMPLES = {"bert_base": "batch:64,seq:128", "gpt2_small": "batch:16,seq:256", "resnet50": "batch:128",
           "vgg16": "batch:128", "bert_large": "batch:32,seq:128"}
WARM_UP = "mlp"
TICK = os.sysconf("SC_CLK_TCK")


def cores() -> int:
    return len(os.sched_getaffinity(0))


def query(model: str, bind: str, machine: str) -> str:
    return f"model={model}&bind={bind}&machine={machine}"


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds so far of the server process and of its child processes (the planning workers)."""
    return _cpu(pid), sum(_cpu(c) + sum(_cpu(g) for g in _children(c)) for c in _children(pid))


def shown_seconds(text: str) -> float:
    """``712 ms`` -> 0.712 (a time as the explorer shows it; NaN when it reads otherwise)."""
    found = re.fullmatch(r"\s*([0-9.,]+)\s*(ns|µs|us|ms|s|min)\s*", text)
    if not found:
        return math.nan
    scale = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9, "min": 60.0}[found.group(2)]
    return float(found.group(1).replace(",", "")) * scale


@dataclass
class Phase:
    seconds: dict[str, float]      # per sample: time to first figures
    search: dict[str, float]       # per sample: the plan's search time (the Overview's "Search time")
    server_cpu: float              # CPU seconds of the server process during the phase
    worker_cpu: float              # ... of the planning workers


def at_once(base: str, queries: dict[str, str], timeout_s: float = 900) -> dict:
    """Open one scripted session per query, all connected before any asks for its run."""
    ready = threading.Barrier(len(queries))
    out: dict[str, object] = {}

    def one(name, q):
        try:
            out[name] = first_figures(base, q, timeout_s, ready)
        except Exception as exc:  # noqa: BLE001 - reported below
            out[name] = exc

    threads = [threading.Thread(target=one, args=item) for item in queries.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, run in out.items():
        if isinstance(run, Exception) or run.exceptions or run.errors or not run.figures:
            raise RuntimeError(f"{name}: no figures: {run}")
    return out


@dataclass(frozen=True)
class Setup:
    machine: str
    pool: bool
    flags: tuple[str, ...] = ()    # more options of ``streamlit run``


def measured(targets: dict[str, str], setup: Setup) -> Phase:
    """A fresh server, warmed up, then the targets at once."""
    machine = setup.machine
    warm = {f"warm{i}": query(WARM_UP, f"batch:{32 * (i + 1)}", machine) for i in range(cores())}
    with streamlit_server({"PLANNER_APP_POOL": "1" if setup.pool else "0"}, setup.flags) as (base, proc):
        at_once(base, warm)
        server0, workers0 = cpu_split(proc.pid)
        runs = at_once(base, {m: query(m, b, machine) for m, b in targets.items()})
        server1, workers1 = cpu_split(proc.pid)
    return Phase({m: r.seconds for m, r in runs.items()}, {m: shown_seconds(r.metrics["Search time"]) for m, r in runs.items()},
                 server1 - server0, workers1 - workers0)


def one_round(setup: Setup) -> tuple[list[Phase], Phase]:
    alone = [measured({m: b}, setup) for m, b in SAMPLES.items()]
    return alone, measured(SAMPLES, setup)


def _alone(rounds, field: str) -> dict[str, list[float]]:
    """Per sample, its ``field`` (seconds or search) alone in each round."""
    return {m: [getattr(ph, field)[m] for a, _ in rounds for ph in a if m in ph.seconds] for m in SAMPLES}


def report(rounds: list[tuple[list[Phase], Phase]], setup: Setup, load: tuple) -> None:
    med = statistics.median
    alone, search = _alone(rounds, "seconds"), _alone(rounds, "search")
    ratios = {m: [t.seconds[m] / a for (_, t), a in zip(rounds, alone[m])] for m in SAMPLES}
    print(f"{cores()} cores (os.cpu_count() {os.cpu_count()}), load average {load[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; machine {setup.machine}; planning "
          f"{'in the pool' if setup.pool else 'on the script threads'}; scripted clients (no rendering); "
          f"medians of {len(rounds)} rounds" + (f"; streamlit {' '.join(setup.flags)}" if setup.flags else ""))
    print(f"{'session':12s} {'alone (s)':>10s} {'search alone (s)':>17s} {'5 at once (s)':>14s} {'ratio':>6s}")
    for m in SAMPLES:
        print(f"{m:12s} {med(alone[m]):10.2f} {med(search[m]):17.2f} {med(t.seconds[m] for _, t in rounds):14.2f} "
              f"{med(ratios[m]):6.2f}")
    medians = [(med(t.seconds.values()), med(a)) for (_, t), a in zip(rounds, zip(*alone.values()))]
    overall = med(t / a for t, a in medians)
    print(f"{'median':12s} {med(a for _, a in medians):10.2f} {'':17s} {med(t for t, _ in medians):14.2f} "
          f"{overall:6.2f}   (overall: the median session at once / the median session alone)")
    share = med(sum(s[i] for s in search.values()) / sum(a[i] for a in alone.values()) for i in range(len(rounds)))
    print(f"worst session ratio {max(med(r) for r in ratios.values()):.2f}x (target: <= 2x); the plan's search is "
          f"{share:.0%} of a session's time alone")
    _report_cpu(rounds, med(a for _, a in medians))


def _report_cpu(rounds, median_alone: float) -> None:
    med, n = statistics.median, cores()
    a_server = med(sum(ph.server_cpu for ph in a) for a, _ in rounds)
    a_workers = med(sum(ph.worker_cpu for ph in a) for a, _ in rounds)
    t_server = med(t.server_cpu for _, t in rounds)
    t_workers = med(t.worker_cpu for _, t in rounds)
    total = a_server + a_workers
    print(f"CPU seconds of the 5 sessions, alone (summed): server process {a_server:.2f}, planning workers "
          f"{a_workers:.2f} ({a_workers / max(total, 1e-9):.0%}); at once: server {t_server:.2f}, workers "
          f"{t_workers:.2f}")
    print(f"floor set by the cores: the last of the 5 cannot finish before their CPU ({total:.2f} s) over {n} cores, "
          f"{total / n:.2f} s = {total / n / median_alone:.2f}x the median session alone; sharing {n} cores, "
          f"5 CPU-bound plans each run at {n}/5 of a core ({5 / n:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="dgx_a100")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-pool", action="store_true", help="plan on the script threads (PLANNER_APP_POOL=0)")
    parser.add_argument("--browser", action="store_true", help="Chromium tabs instead of scripted clients")
    parser.add_argument("--post-script-gc", action="store_true",
                        help="a full garbage collection after every script run (Streamlit's default, which the "
                             "explorer's .streamlit/config.toml turns off)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more")
    pool = not args.no_pool
    if args.browser:
        from app_load_browser import browser_main

        browser_main(SAMPLES, args.machine, pool)
        return
    setup = Setup(args.machine, pool, ("--runner.postScriptGC", "true") if args.post_script_gc else ())
    load = os.getloadavg()
    rounds = [one_round(setup) for _ in range(args.rounds)]
    report(rounds, setup, load)


if __name__ == "__main__":
    main()
