"""Step 3 of the test command: the browser test of the whole smoke book (``scripts/browser_test.py``): every
chapter run on ``smoke`` by the runner, the book and its PDF built, every page checked in headless Chromium,
offline (what it checks: the script's docstring).

It runs inside the test command's one ``pytest -n 2`` session (``scripts/test.sh`` sets ``CCC_TEST_STEPS=1``);
a plain ``pytest tests`` skips it, saying so. ``CCC_TEST_SKIP_BROWSER=1`` skips it in the test command (also
said). Its report (per page, the PDF's size and pages, the screenshots) is printed by ``scripts/test.sh``
from the file ``CCC_TEST_STEP_LOG`` names."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# skipped unless CCC_TEST_STEPS=1 (conftest.pytest_collection_modifyitems)
pytestmark = [pytest.mark.step(skip_env="CCC_TEST_SKIP_BROWSER", what="the browser test")]


def test_browser_test_of_the_smoke_book_passes(tmp_path):
    pytest.importorskip("playwright", reason="pip install playwright (the browser test drives Chromium with it)")
    assert shutil.which("chromium"), "Debian's chromium is not installed (apt-get install chromium)"
    env = {**os.environ, "CCC_PROGRESS": "off", "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "browser_test.py")],
                       capture_output=True, text=True, timeout=1800, cwd=REPO, env=env)
    log = os.environ.get("CCC_TEST_STEP_LOG")
    if log:
        Path(log).write_text(r.stdout + r.stderr)
    assert r.returncode == 0, f"the browser test failed:\n{r.stdout[-8000:]}\n{r.stderr[-3000:]}"
    assert "all pages pass" in r.stdout
