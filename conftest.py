"""pytest set-up for the whole repository: notebooks run by nbval use the ``smoke`` profile
(unless CCC_PROFILE is already set) and draw no progress bars."""
import os

os.environ.setdefault("CCC_PROFILE", "smoke")
os.environ.setdefault("CCC_PROGRESS", "off")
os.environ.setdefault("MPLBACKEND", "Agg")



# ---------------------------------------------------------------- shared by the determinism/interrupt tests
import sys as _sys
from pathlib import Path as _Path

import pytest as _pytest

_sys.path.insert(0, str(_Path(__file__).resolve().parent / "tests"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs a chapter notebook in a subprocess (minutes on 2 cores); "
                                       "still part of the test command — deselect with -m 'not slow' locally")


@_pytest.fixture(scope="session")
def chapter0_reference(tmp_path_factory):
    """Chapter 0 on ``smoke``, run once from a cold private cache: (metrics dict, cache dir, out dir)."""
    from _chapter_runs import read_metrics, run_chapter
    root = tmp_path_factory.mktemp("ch0-reference")
    r = run_chapter("0", root / "out", root / "cache")
    assert r.returncode == 0, f"chapter 0 failed on smoke:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return read_metrics(root / "out"), root / "cache", root / "out"
