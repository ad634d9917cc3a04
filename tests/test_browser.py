"""The browser test's own checks, on a tiny hand-made book (the whole smoke book is checked by
``scripts/browser_test.py`` without arguments): a precomputed slider panel whose slider is linked to
its stack passes (image and numbers change, no request leaves the machine, fonts found, Binder, Colab and
Thebe launch controls point at the page's notebook, the live-only slider is replaced by its note, the
wide table in the book's style scrolls in its box, one search field, a PDF with the page's title, a
dark-mode screenshot); the same page with every fault at once (the link missing, no Colab and Thebe
buttons, the live-only slider left in, a clipped table of unrounded numbers) fails with each one named.
Two builds in all: each takes ~25 s on 2 cores.
Needs Playwright (PyPI) and Debian's Chromium."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytest.importorskip("playwright", reason="pip install playwright (the browser test drives Chromium with it)")
if not shutil.which("chromium"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def short_tmp():
    """A temporary folder with a short path: Chromium puts a Unix socket (at most 107 bytes) under TMPDIR, and
    pytest's own folders under pytest-xdist (…/pytest-N/popen-gwK/<test name>/) are too long for it."""
    d = Path(tempfile.mkdtemp(prefix="ccc-bt-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _run(tmp, *extra):
    """The self-test, building in a temporary folder of its own under ``tmp`` (TMPDIR), as CI runs it."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "browser_test.py"), "--selftest", *extra],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=env)


def test_browser_checks_pass_on_a_good_page_and_remove_their_scratch_build(short_tmp):
    """One passing run, as CI runs it (no --keep): every check passes, the PDF and the screenshots (light and
    dark) are made, and the scratch build (~150 MB at smoke) is removed afterwards."""
    r = _run(short_tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "panel 1:" in r.stdout and "all pages pass" in r.stdout and "browser test time" in r.stdout
    assert "launch: Binder, Colab, Thebe -> " in r.stdout and "notebooks/01_counterfeits.ipynb" in r.stdout
    assert "precomputed panel(s), widget state" in r.stdout and "notebooks__01_counterfeits.png" in r.stdout
    assert "notebooks__01_counterfeits-dark.png" in r.stdout
    pdf = re.search(r"PDF(?: of the book)?: \S+ \((\d+) pages", r.stdout)
    assert pdf and int(pdf.group(1)) >= 1, r.stdout[-3000:]
    assert "removed the scratch build" in r.stdout and not list(short_tmp.glob("ccc-book-*"))


def test_browser_checks_fail_on_every_broken_page_feature_and_keep_the_build(short_tmp):
    """One page with every fault at once — the slider unlinked from its stack, no Colab and Thebe buttons, the
    live-only slider left in the static page, a clipped table of unrounded numbers, a visible code cell of over
    20 lines — fails with each problem
    named, and the failing run keeps its scratch build (screenshots included) and says where."""
    r = _run(short_tmp, "--unlinked", "--no-launch", "--dead-widget", "--raw-table", "--long-cell")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "did not change the image" in r.stdout and "did not change the numbers" in r.stdout
    assert "no Colab launch link to notebooks/01_counterfeits.ipynb" in r.stdout
    assert "no Thebe (Live Code) launch button" in r.stdout
    assert "no Binder launch link" not in r.stdout
    assert "outside a precomputed panel, which change nothing without a kernel" in r.stdout
    assert "more than 6 significant digits" in r.stdout and "0.123456789" in r.stdout
    assert "cut by a box that hides what does not fit" in r.stdout
    assert "1 visible code cell(s) over 20 lines" in r.stdout
    kept = list(short_tmp.glob("ccc-book-*"))
    assert len(kept) == 1 and f"kept for a look: {kept[0]}" in r.stdout
    assert list((kept[0] / "_build" / "screenshots").glob("*.png"))


def test_overlong_numbers():
    sys.path.insert(0, str(REPO / "scripts"))
    from browser_checks import overlong_numbers
    assert overlong_numbers("0.9935 [0.991, 0.996] 1,234,567 60,000 mnist5k 12345678 0.0001234567") == \
        ["1,234,567", "12345678", "0.0001234567"]
