"""The report as PDF: the HTML page (``report_html``) printed by headless Chromium, the browser the
explorer's browser test drives (``chromium --headless --print-to-pdf``), in a subprocess on a
temporary file, A4, without the browser's header and footer. A missing Chromium, a crash or a
timeout is a :class:`ReportError` that says what to install or what to use instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from planner.errors import PlannerError

#: Where Chromium is looked for: ``$PLANNER_CHROMIUM``, then these names on the PATH and paths.
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium")
PDF_TIMEOUT_S = 120
INSTALL_HINT = ("the PDF report needs Chromium (Debian/Ubuntu: apt-get install chromium; or set PLANNER_CHROMIUM "
                "to a Chrome or Chromium executable); --format html gives the same report as a web page")


class ReportError(PlannerError):
    """A report cannot be written (the PDF renderer is missing or failed)."""


def find_chromium() -> str | None:
    """The Chromium executable, or None."""
    given = os.environ.get("PLANNER_CHROMIUM")
    if given:
        return given if Path(given).is_file() and os.access(given, os.X_OK) else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(page: str, chromium: str | None = None, timeout_s: float = PDF_TIMEOUT_S) -> bytes:
    """The HTML ``page`` printed to PDF by headless Chromium."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise ReportError(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="planner-report-") as tmp:
        source, target = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        source.write_text(page, encoding="utf-8")
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-first-run", "--no-pdf-header-footer", f"--user-data-dir={Path(tmp) / 'profile'}",
                   f"--print-to-pdf={target}", source.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise ReportError(f"Chromium did not print the PDF within {timeout_s:.0f} s; "
                              "try again, or use --format html") from None
        except OSError as exc:
            raise ReportError(f"Chromium ({chromium}) could not start: {exc.strerror or exc}; {INSTALL_HINT}") from None
        data = target.read_bytes() if target.is_file() else b""
    if not data.startswith(b"%PDF"):
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1][:200]
        raise ReportError(f"Chromium (exit code {done.returncode}) wrote no PDF: {last}; use --format html instead")
    return data
