"""The explorer in a real browser: `streamlit run app.py` driven through Debian's Chromium.

Starts the server on a free port, waits for /_stcore/health, opens every page by its URL path,
checks that no exception block is shown and that the page's headline figures appear, draws a
pipelined plan's Strategy and Cost pages (the 1F1B chart's bars), uploads a sample model through
the real file uploader, and saves a screenshot of each page (into a temporary directory, and into
$SCREENSHOT_DIR when that is set).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); the browser test needs Debian's Chromium",
                allow_module_level=True)

import playwright.sync_api as playwright_api  # noqa: E402 - pinned in requirements-test.txt

# URL path -> (page title, texts that must appear once the page has run)
PAGES = {
    "": ("Overview", ["Devices", "Predicted iteration time", "Speed-up vs data parallel", "Memory per device",
                      "Search time"]),
    "model": ("Model", ["Operators", "Parameters", "Forward FLOPs", "Graph"]),
    "machine": ("Machine", ["Levels (outermost first)", "Devices", "Download machine YAML"]),
    "strategy": ("Strategy", ["Pipeline stages", "Override one operator's split",
                              "Compare with a plan file"]),
    "cost": ("Cost", ["Cost formula per candidate split", "D-Rec's decisions for this operator", "Where the time goes"]),
    "compare": ("Compare", ["Algorithms on this model and machine", "What if the machine were different?",
                            "exact: too large for this graph"]),
    "report": ("Report", ["Plan JSON", "HTML", "Markdown", "model sha256"]),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    log = open(ROOT / ".pytest_cache" / f"streamlit_{port}.log", "w") if (ROOT / ".pytest_cache").is_dir() \
        else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy on port {port} (exit code {proc.poll()})")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if log is not subprocess.DEVNULL:
            log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    dirs = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("SCREENSHOT_DIR"):
        extra = Path(os.environ["SCREENSHOT_DIR"])
        extra.mkdir(parents=True, exist_ok=True)
        dirs.append(extra)
    return dirs


def wait_until_idle(page, timeout_s: float = 90) -> None:
    """Wait for the script run to finish: the app is rendered and the 'running' status is gone."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0 or \
            page.locator('[data-testid="stSpinner"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return
        time.sleep(0.2)
    raise AssertionError("the page kept running")


def check_page(page, title: str, texts: list[str], timeout_s: float = 90) -> None:
    """The page's title and every headline text appear, the run finishes, and no exception is shown."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_s * 1000)
    for text in texts:
        try:
            page.wait_for_function(
                "t => { const m = document.querySelector('[data-testid=\"stMain\"]'); return m && m.innerText.includes(t); }",
                arg=text, timeout=timeout_s * 1000)
        except playwright_api.TimeoutError:
            body = page.locator('[data-testid="stMain"]').inner_text()
            raise AssertionError(f"{title}: {text!r} not shown; the page reads:\n{body[:3000]}") from None
    wait_until_idle(page)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def save(page, name: str, dirs: list[Path]) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main block, so the viewport is
    made as tall as that block's content first."""
    size = page.viewport_size
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]')]"
        ".map(e => e.scrollHeight), 800)")
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(1200)  # let plotly re-layout
    first = dirs[0] / f"{name}.png"
    page.screenshot(path=str(first), full_page=True)
    page.set_viewport_size(size)
    for d in dirs[1:]:
        shutil.copy(first, d / first.name)


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders(server, browser, shots, path):
    title, texts = PAGES[path]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/{path}", wait_until="domcontentloaded")
        check_page(page, title, texts)
        if path == "":
            metrics = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
            assert len(metrics) >= 5 and metrics[0].strip() == "512", metrics
            assert any(m.strip().endswith("ms") for m in metrics), metrics
            # the shared view is in the URL
            assert "model=llama3_8b" in page.url and "machine=dgx_a100_64nodes" in page.url, page.url
        save(page, path or "overview", shots)
    finally:
        page.close()


#: A plan with 2 pipeline stages and 4 micro-batches, small enough to plan in a second.
PIPELINED = "model=gpt2_small&bind=batch:8,seq:64&machine=dgx_a100&stages=2&micro_batches=4"


@pytest.mark.parametrize("path,texts", [
    ("strategy", ["The stage of each layer", "The 1F1B schedule", "Each stage's forward and backward passes"]),
    ("cost", ["One iteration", "Each stage, per micro-batch", "Configurations tried"]),
])
def test_a_pipelined_plan_renders(server, browser, shots, path, texts):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/{path}?{PIPELINED}", wait_until="domcontentloaded")
        check_page(page, path.capitalize(), texts)
        if path == "strategy":  # the Gantt chart: a forward and a backward bar per stage and micro-batch
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .barlayer .point').length >= 16",
                                   timeout=30_000)
            assert page.locator(".js-plotly-plot .barlayer .point").count() == 2 * 2 * 4
        save(page, f"{path}_pipelined", shots)
    finally:
        page.close()


def test_upload_a_model_and_see_it_planned(server, browser, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/model", wait_until="domcontentloaded")
        check_page(page, "Model", ["Operators"])
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
            str(ROOT / "sample_models" / "mlp.onnx"))
        page.get_by_text("mlp.onnx", exact=False).first.wait_for(timeout=60_000)
        page.wait_for_function("() => document.querySelector('[data-testid=\"stMain\"]').innerText.includes('(uploaded)')",
                               timeout=60_000)
        wait_until_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        save(page, "model_uploaded", shots)
        # the sidebar navigation keeps the session (and the upload); go to the overview
        page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Overview").first.click()
        check_page(page, "Overview", ["Predicted iteration time", "mlp.onnx"])
        save(page, "overview_uploaded", shots)
    finally:
        page.close()


def test_garbage_upload_shows_an_error(server, browser, shots, tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\x01\x02" * 10)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/model", wait_until="domcontentloaded")
        check_page(page, "Model", ["Operators"])
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(bad))
        page.locator('[data-testid="stAlert"]').filter(has_text="garbage.onnx").first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "not a valid ONNX model" in page.locator('[data-testid="stMain"]').inner_text()
        save(page, "model_garbage", shots)
    finally:
        page.close()
