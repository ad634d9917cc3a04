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
    config.addinivalue_line("markers", "step: a whole step of the test command (the dry run of full, the browser "
                                       "test); runs only with CCC_TEST_STEPS=1, as scripts/test.sh sets it")


@_pytest.fixture(scope="session")
def chapter0_reference(tmp_path_factory):
    """Chapter 0 on ``smoke``, run once from a cold private cache: (metrics dict, cache dir, out dir). Under
    pytest-xdist every worker has its own session, so the run is shared through a folder all workers see
    (the parent of the workers' temporary folders) and a file lock: the first worker to ask runs it, the
    others wait and read it."""
    import fcntl
    from _chapter_runs import read_metrics, run_chapter
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "ch0-reference"
    with open(base / "ch0-reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            r = run_chapter("0", root / "out", root / "cache")
            assert r.returncode == 0, f"chapter 0 failed on smoke:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            (root / "done").write_text("ok")
    return read_metrics(root / "out"), root / "cache", root / "out"


# ---------------------------------------------------------------- the test command's order on 2 workers
#: files that take longest on 2 cores (seconds measured in the test command, 3 Dec 2026), started first so
#: that ``pytest -n 2 --dist loadfile --no-loadscope-reorder`` (scripts/test.sh) does not end on one of them
#: alone; every other file keeps pytest's order after these. A notebook's cells stay in their order (a
#: stable sort by file).
HEAVY_FIRST = (
    "tests/test_step_full_dry.py",        # ~320 s: the dry run of full, every chapter
    "tests/test_step_browser.py",         # ~230 s: every chapter on smoke, the book, its PDF, Chromium
    "notebooks/04_drift.ipynb",           # ~210 s
    "notebooks/01_counterfeits.ipynb",    # ~145 s
    "notebooks/02_neuralfp.ipynb",        # ~130 s
    "tests/test_determinism.py",          # ~105 s
    "tests/test_benchmarks.py",           # ~100 s
    "tests/test_browser.py",              # ~60 s
    "tests/test_interrupt.py",            # ~55 s
    "notebooks/00_classifiers.ipynb",
    "notebooks/03_iocn.ipynb",
)


def pytest_collection_modifyitems(config, items):
    for item in items:        # a step of the test command runs only when scripts/test.sh asks for it
        step = item.get_closest_marker("step")
        if step is None:
            continue
        what = step.kwargs.get("what", "this step")
        if os.environ.get("CCC_TEST_STEPS") != "1":
            item.add_marker(_pytest.mark.skip(reason=f"{what}: a step of the test command (scripts/test.sh); "
                                                      f"set CCC_TEST_STEPS=1 to run it here"))
        elif os.environ.get(step.kwargs.get("skip_env", "")):
            item.add_marker(_pytest.mark.skip(reason=f"{step.kwargs['skip_env']} is set: {what} did not run"))
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}

    def key(item):
        path = _Path(str(item.fspath)).resolve()
        try:
            rel = path.relative_to(_Path(__file__).resolve().parent).as_posix()
        except ValueError:
            rel = path.as_posix()
        return rank.get(rel, len(rank))
    items.sort(key=key)
