"""A Streamlit client that does not render: it speaks the app's websocket protocol from Python,
so a load test measures the server, not a browser drawing plotly.

What a browser tab does, reduced to what the server sees (Streamlit 1.67, checked in its source:
``streamlit/web/server/starlette/starlette_websocket.py`` and ``runtime/app_session.py``):

1. open ``ws://HOST:PORT/_stcore/stream`` with the subprotocol ``streamlit`` (the second and third
   entries of that header, an XSRF token and a session id to resume, are left out: a client that
   sends no ``Origin`` header is accepted and gets a new session);
2. send a ``BackMsg`` whose ``rerun_script`` is a ``ClientState`` with the page's query string
   (``model=bert_base&bind=...``), an empty ``page_script_hash`` and ``page_name`` (the default
   page, the Overview) and no widget state: the first run of a fresh tab;
3. read ``ForwardMsg`` protobufs (one per binary frame) until ``script_finished``.

:func:`first_figures` times that run: from sending the rerun request until the run has finished
with at least one plotly figure in the main area (the Overview's figures come after the plan).
Nothing here imports the explorer or the planner; :func:`streamlit_server` starts ``streamlit run
app.py`` on a free port for a bench or a test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]

#: Streamlit's enum: the run ended because another run was asked for (keep reading).
_EARLY_FOR_RERUN = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_EARLY_FOR_RERUN")

#: The first index of a delta path: 0 is the main area, 1 the sidebar.
_MAIN = 0


@dataclass
class Run:
    """What one scripted session saw in its first run."""

    query: str
    seconds: float = 0.0          # from the rerun request to script_finished
    figure_seconds: float | None = None  # from the rerun request to the first plotly figure in the main area
    figures: int = 0              # plotly figures in the main area
    exceptions: list[str] = field(default_factory=list)  # texts of exception deltas
    errors: list[str] = field(default_factory=list)      # texts of error alerts (st.error)
    warnings: list[str] = field(default_factory=list)    # texts of warning alerts (st.warning)
    metrics: dict[str, str] = field(default_factory=dict)  # st.metric label -> value, as shown
    messages: int = 0
    status: str = ""              # the script_finished status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(env: dict | None = None, flags: tuple[str, ...] = (), cwd: Path = ROOT, log=subprocess.DEVNULL,
                     timeout_s: float = 120):
    """``streamlit run app.py`` on a free port of 127.0.0.1 (``flags``: more ``--section.option value``
    pairs), until the block ends; yields its base URL (``http://127.0.0.1:PORT``) once
    ``/_stcore/health`` answers, and the process."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *flags],
                            cwd=cwd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start on port {port} (exit code {proc.poll()})") from None
                time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rerun_request(query: str) -> bytes:
    """The ``BackMsg`` a fresh tab sends first: run the default page with this query string."""
    msg = BackMsg()
    msg.rerun_script.query_string = query
    msg.rerun_script.page_script_hash = ""
    msg.rerun_script.page_name = ""
    return msg.SerializeToString()


def _read(run: Run, msg: ForwardMsg, start: float) -> bool:
    """Note what ``msg`` says about the run; True once the run has finished."""
    run.messages += 1
    kind = msg.WhichOneof("type")
    if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
        element = msg.delta.new_element
        which = element.WhichOneof("type")
        if which == "plotly_chart" and msg.metadata.delta_path[:1] == [_MAIN]:
            run.figures += 1
            if run.figure_seconds is None:
                run.figure_seconds = time.monotonic() - start
        elif which == "exception":
            run.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        elif which == "alert" and element.alert.format in (element.alert.ERROR, element.alert.WARNING):
            (run.errors if element.alert.format == element.alert.ERROR else run.warnings).append(element.alert.body)
        elif which == "metric":
            run.metrics[element.metric.label] = element.metric.body
    elif kind == "script_finished" and msg.script_finished != _EARLY_FOR_RERUN:
        run.status = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
        return True
    return False


def first_figures(base: str, query: str, timeout_s: float = 600, ready=None) -> Run:
    """Open one session on ``base`` (``http://host:port``), ask for the default page with ``query``
    and read until its first run finishes. ``ready``, a ``threading.Barrier`` when given, is waited
    on between connecting and sending the request, so that several sessions start together."""
    run = Run(query)
    with connect(base.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"],
                 max_size=None, open_timeout=timeout_s) as ws:
        if ready is not None:
            ready.wait()
        start = time.monotonic()
        ws.send(rerun_request(query))
        deadline = start + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{query}: the run did not finish in {timeout_s} s")
            msg = ForwardMsg()
            msg.ParseFromString(ws.recv(timeout=remaining))
            if _read(run, msg, start):
                break
        run.seconds = time.monotonic() - start
    return run
