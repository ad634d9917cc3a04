"""Step 2 of the test command: the dry run of ``full`` (profile ``full_dry``) — every chapter through the
runner on generated files in the real formats, tiny sizes; a failure names the chapter and the cell.

It runs inside the test command's one ``pytest -n 2`` session (``scripts/test.sh`` sets ``CCC_TEST_STEPS=1``)
so that it shares the two cores with the unit tests and the notebooks instead of waiting for them; a plain
``pytest tests`` skips it, saying so. ``CCC_TEST_SKIP_DRY=1`` skips it in the test command (also said)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# skipped unless CCC_TEST_STEPS=1 (conftest.pytest_collection_modifyitems)
pytestmark = [pytest.mark.step(skip_env="CCC_TEST_SKIP_DRY", what="the dry run of full")]


def test_dry_run_of_full_runs_every_chapter(tmp_path):
    env = {**os.environ, "CCC_PROGRESS": "off", "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-m", "ccc_lib", "run", "all", "--profile", "full_dry",
                        "--out", str(tmp_path / "out"), "--root", str(REPO)],
                       capture_output=True, text=True, timeout=1800, cwd=REPO, env=env)
    print(r.stdout[-4000:])
    assert r.returncode == 0, f"the dry run of full failed:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    for stem in ("00_classifiers", "01_counterfeits", "02_neuralfp", "03_iocn", "04_drift", "05_report"):
        assert f"=== {stem} (full_dry) ===" in r.stdout, f"{stem} did not run in the dry run"
