"""Concurrent sessions: the time to first figures of 5 browser sessions opened at once on 5
different samples, against each sample opened alone (issue 16 item 9).

Starts ``streamlit run app.py`` (Debian's Chromium through Playwright, as tests/explorer/test_browser.py)
and opens the Overview at ``/?model=<sample>&machine=<machine>``. "First figures": the headline
metrics and a plotly chart are on screen. Each server is warmed up first on a sample not in the
list (imports, the planning pool's workers), so that the figures compare planning and drawing.

1. one fresh server, the samples one after another (each alone: the single-session time);
2. another fresh server, the 5 samples in 5 tabs opened at the same moment.

Prints, per sample, both times and their ratio (target: <= 2x). ``--no-pool`` runs the server
with PLANNER_APP_POOL=0 (planning on the script threads, as before the pool) for comparison.

    python bench/app_load.py [--machine dgx_a100] [--no-pool]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import playwright.sync_api as pw

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SAMPLES = {"bert_base": "batch:64,seq:128", "gpt2_small": "batch:16,seq:256", "resnet50": "batch:128",
           "vgg16": "batch:128", "bert_large": "batch:32,seq:128"}
WARM_UP = ("mlp", "batch:64")
READY = ("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
         " return m && m.innerText.includes('Predicted iteration time')"
         " && document.querySelector('.js-plotly-plot .main-svg') !== null; }")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(pool: bool):
    port = free_port()
    env = {**os.environ, "PLANNER_APP_POOL": "1" if pool else "0"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def url(base: str, model: str, bind: str, machine: str) -> str:
    return f"{base}/?model={model}&bind={bind}&machine={machine}"


def open_many(browser, base: str, targets: dict[str, str], machine: str, timeout_s: float = 600) -> dict[str, float]:
    """Open every target at once; the seconds until each shows its first figures."""
    pages = {}
    start = time.monotonic()
    for model, bind in targets.items():
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url(base, model, bind, machine), wait_until="commit")
        pages[model] = page
    done: dict[str, float] = {}
    while len(done) < len(pages):
        for model, page in pages.items():
            if model not in done and page.evaluate(READY):
                done[model] = time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"not ready after {timeout_s} s: {sorted(set(pages) - set(done))}")
        time.sleep(0.1)
    for page in pages.values():
        page.close()
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="dgx_a100")
    parser.add_argument("--no-pool", action="store_true")
    args = parser.parse_args()
    pool = not args.no_pool
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            alone = {}
            with server(pool) as base:
                open_many(browser, base, dict([WARM_UP]), args.machine)
                for model, bind in SAMPLES.items():
                    alone.update(open_many(browser, base, {model: bind}, args.machine))
            with server(pool) as base:
                open_many(browser, base, dict([WARM_UP]), args.machine)
                together = open_many(browser, base, SAMPLES, args.machine)
        finally:
            browser.close()
    print(f"{os.cpu_count()} cores, machine {args.machine}, planning {'in the pool' if pool else 'on the script threads'}")
    print(f"{'sample':12s} {'alone (s)':>10s} {'5 at once (s)':>14s} {'ratio':>6s}")
    for model in SAMPLES:
        print(f"{model:12s} {alone[model]:10.1f} {together[model]:14.1f} {together[model] / alone[model]:6.2f}")
    worst = max(together[m] / alone[m] for m in SAMPLES)
    slowest = max(together.values()) / max(alone.values())
    print(f"worst ratio {worst:.2f}x; last of the 5 against the slowest alone: {slowest:.2f}x (target: <= 2x)")


if __name__ == "__main__":
    main()
