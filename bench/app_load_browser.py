"""``bench/app_load.py --browser``: the same sessions in Chromium tabs (Playwright, Debian's
Chromium, as tests/explorer/test_browser.py), timed until the headline metrics and a plotly chart
are on screen. This measures the browsers' drawing as well as the server: on a 2-core machine the
5 tabs' rendering takes most of the CPU.

1. one fresh server, the samples one after another (each alone);
2. another fresh server, the 5 samples in 5 tabs opened at the same moment.

Each server is warmed up first on the ``mlp`` sample.
"""

from __future__ import annotations

import os
import time

from ws_client import streamlit_server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WARM_UP = ("mlp", "batch:64")
READY = ("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
         " return m && m.innerText.includes('Predicted iteration time')"
         " && document.querySelector('.js-plotly-plot .main-svg') !== null; }")


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


def browser_main(samples: dict[str, str], machine: str, pool: bool) -> None:
    import playwright.sync_api as pw

    env = {"PLANNER_APP_POOL": "1" if pool else "0"}
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            alone = {}
            with streamlit_server(env) as (base, _):
                open_many(browser, base, dict([WARM_UP]), machine)
                for model, bind in samples.items():
                    alone.update(open_many(browser, base, {model: bind}, machine))
            with streamlit_server(env) as (base, _):
                open_many(browser, base, dict([WARM_UP]), machine)
                together = open_many(browser, base, samples, machine)
        finally:
            browser.close()
    print(f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}; machine {machine}, planning "
          f"{'in the pool' if pool else 'on the script threads'}; Chromium tabs (rendering included)")
    print(f"{'sample':12s} {'alone (s)':>10s} {'5 at once (s)':>14s} {'ratio':>6s}")
    for model in samples:
        print(f"{model:12s} {alone[model]:10.1f} {together[model]:14.1f} {together[model] / alone[model]:6.2f}")
    worst = max(together[m] / alone[m] for m in samples)
    slowest = max(together.values()) / max(alone.values())
    print(f"worst ratio {worst:.2f}x; last of the 5 against the slowest alone: {slowest:.2f}x (target: <= 2x)")
