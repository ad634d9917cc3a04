"""The workflow that publishes the book (``.github/workflows/book.yml``, #37): its timeout is sized from the
measured cold build (at least 1.5 times the latest cold run in ``benchmarks/results/``), the site it publishes
is checked against GitHub Pages' size limit before the upload, and it passes the GitHub Actions security audit
``zizmor --offline`` (actions pinned to commits, Pages' write and the OIDC token only in the deploy job, no
checkout credentials kept). ``scripts/pages_size.py`` is tested on a small folder."""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ccc_lib.build_times import latest_runs

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
BOOK = WORKFLOWS / "book.yml"


def _workflow() -> dict:
    return yaml.safe_load(BOOK.read_text())


def _default_timeout_minutes(job: dict) -> int:
    """The build job's timeout at the `default` profile: a number, or the ``|| N`` branch of its expression."""
    value = job["timeout-minutes"]
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\$\{\{.*'full'\s*&&\s*\d+\s*\|\|\s*(\d+)\s*\}\}", str(value).strip())
    assert m, f"timeout-minutes {value!r}: a number, or `${{{{ ... == 'full' && F || D }}}}`"
    return int(m.group(1))


def test_the_build_timeout_is_at_least_one_and_a_half_times_the_measured_cold_build():
    cold = latest_runs(REPO / "benchmarks" / "results").get("cold")
    assert cold, "no cold run of the default book in benchmarks/results/rebuild_times_default*.json: measure one " \
                 "(python benchmarks/rebuild_times.py) before sizing the workflow's timeout"
    minutes = _default_timeout_minutes(_workflow()["jobs"]["build"])
    need = math.ceil(1.5 * cold["wall_s"] / 60)
    assert minutes >= need, (f"the build job's timeout ({minutes} min) is under 1.5 x the measured cold build "
                             f"({cold['wall_s']:.0f} s in {cold['file']}, {cold['when']}): give it at least {need} min "
                             f"plus the test command and the set-up")
    assert "benchmarks/results/rebuild_times_default" in BOOK.read_text(), "the timeout's comment cites the file"


def test_permissions_only_where_needed_and_no_persisted_credentials():
    wf = _workflow()
    assert wf.get("permissions") == {}, "nothing granted at the workflow level"
    jobs = wf["jobs"]
    writers = {name for name, job in jobs.items()
               if {"pages", "id-token"} & {k for k, v in (job.get("permissions") or {}).items() if v == "write"}}
    assert writers == {"deploy"}, f"pages: write / id-token: write belong to the deploy job only, not {writers}"
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    steps = [s for job in jobs.values() for s in job["steps"]]
    checkouts = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts and all((s.get("with") or {}).get("persist-credentials") is False for s in checkouts)


def test_every_action_is_pinned_to_a_commit():
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", BOOK.read_text(), re.M)
    assert len(uses) >= 7
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{ref} is not pinned to a commit SHA"
        assert re.search(r"#\s*v\d+(\.\d+)*", comment), f"{ref}: say which tag the commit is (# vX.Y.Z)"


def test_the_site_size_is_checked_before_it_is_uploaded():
    steps = _workflow()["jobs"]["build"]["steps"]
    text = [f"{s.get('run', '')} {s.get('uses', '')}" for s in steps]
    size = next(i for i, t in enumerate(text) if "scripts/pages_size.py _build/html" in t)
    bundle = next(i for i, t in enumerate(text) if "cache export" in t)
    upload = next(i for i, t in enumerate(text) if "upload-pages-artifact" in t)
    assert bundle < size < upload


def test_pages_size_script(tmp_path):
    site = tmp_path / "html"
    site.mkdir()
    (site / "index.html").write_bytes(b"x" * 400_000)
    (site / "ccc-cache-default.tar.gz").write_bytes(b"y" * 700_000)
    cmd = [sys.executable, str(REPO / "scripts" / "pages_size.py"), str(site)]
    ok = subprocess.run(cmd + ["--limit-mb", "2"], capture_output=True, text=True)
    assert ok.returncode == 0 and "1.1 MB" in ok.stdout
    over = subprocess.run(cmd + ["--limit-mb", "1"], capture_output=True, text=True)
    assert over.returncode == 1 and "over the 1 MB limit" in over.stderr
    assert over.stdout.index("ccc-cache-default.tar.gz") < over.stdout.index("index.html")     # largest first
    assert subprocess.run(cmd[:2] + [str(tmp_path / "none")], capture_output=True, text=True).returncode == 2


def _zizmor() -> str | None:
    return shutil.which("zizmor") or (str(Path(sys.executable).with_name("zizmor"))
                                      if Path(sys.executable).with_name("zizmor").exists() else None)


def test_zizmor_offline_finds_nothing():
    exe = _zizmor()
    if exe is None:
        pytest.skip("zizmor is not installed (PyPI `zizmor`, in the dev extras: pip install -e '.[dev]')")
    r = subprocess.run([exe, "--offline", "--no-progress", str(WORKFLOWS)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"zizmor --offline found problems in the workflow:\n{r.stdout}\n{r.stderr}"
    assert "No findings" in r.stdout + r.stderr


def test_zizmor_would_catch_the_old_workflow(tmp_path):
    """The audit is not a formality: the workflow as it was (unpinned actions, Pages' permissions for every
    job, credentials kept) fails it."""
    exe = _zizmor()
    if exe is None:
        pytest.skip("zizmor is not installed (PyPI `zizmor`, in the dev extras: pip install -e '.[dev]')")
    old = tmp_path / ".github" / "workflows"
    old.mkdir(parents=True)
    text = BOOK.read_text()
    text = re.sub(r"@[0-9a-f]{40} # (v\d+)[\d.]*", r"@\1", text)
    text = text.replace("permissions: {}\n", "permissions:\n  contents: read\n  pages: write\n  id-token: write\n", 1)
    text = re.sub(r"\n    permissions:\n      contents: read[^\n]*", "", text)        # the build job inherits them
    text = text.replace("          persist-credentials: false\n", "          fetch-depth: 1\n")
    (old / "book.yml").write_text(text)
    r = subprocess.run([exe, "--offline", "--no-progress", str(old)], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    for audit in ("unpinned-uses", "excessive-permissions", "artipacked"):
        assert audit in out, f"{audit} not reported:\n{out}"
