"""The headless Chromium that the browser test (``scripts/browser_test.py``) and the book's PDF
(``scripts/book_pdf.py``) share: Debian's ``chromium`` (installed with apt where missing and allowed),
launched by Playwright the same way for both, and the wait until a page has rendered (MathJax typeset,
saved widgets drawn). Playwright's own browser download is not needed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ["chromium", "launch", "wait_rendered", "LAUNCH_ARGS"]

#: Chromium's flags in a container or CI runner: no sandbox, no GPU, no /dev/shm for its shared memory
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium() -> str:
    """The path of the system's Chromium; installs Debian's package where apt-get runs as root, else exits
    naming the fix."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    sys.exit("Chromium is needed: apt-get install chromium (Debian) — Playwright drives the system's browser")


def launch(pw):
    """A headless browser from a ``sync_playwright()`` context: the system's Chromium with :data:`LAUNCH_ARGS`."""
    return pw.chromium.launch(executable_path=chromium(), headless=True, args=LAUNCH_ARGS)


def wait_rendered(page, timeout_ms: int = 20000) -> None:
    """Until MathJax has typeset and saved widgets are rendered (or the page has neither)."""
    page.wait_for_function("""() => {
        const math = document.querySelectorAll('.math').length;
        const mj = !math || document.querySelectorAll('mjx-container').length > 0;
        const states = document.querySelectorAll('script[type^="application/vnd.jupyter.widget-view"]').length;
        const w = !states || document.querySelectorAll('.jupyter-widgets, .widget-box, .widget-slider').length > 0;
        return mj && w;
    }""", timeout=timeout_ms)
