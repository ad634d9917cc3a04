"""Benchmarks that cannot rot: every script in benchmarks/ runs at its smoke size (``--smoke``: seconds,
numbers meaningless) in a subprocess, and a crash fails the test suite. Each script gets its own
``CCC_CACHE`` under one shared temporary folder, so the smoke classifier is trained once and the real
cache is never touched."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")


def run(script: str, *args, cache: Path, timeout: int = 600):
    env = dict(os.environ, CCC_CACHE=str(cache), CCC_PROGRESS="off", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("CCC_PROFILE", None)             # each script picks its own profile at --smoke
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_every_script_has_a_smoke_size():
    for name in SCRIPTS:
        assert "--smoke" in (BENCH / name).read_text(), f"benchmarks/{name} has no --smoke size"


def _pyspy() -> bool:
    import shutil
    return bool(shutil.which("py-spy")) or Path(sys.executable).with_name("py-spy").exists()


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s != "rebuild_times.py"])
def test_benchmark_runs_at_smoke_size(script, bench_cache, tmp_path):
    args = ["--smoke"]
    if script == "profile_chapters.py":
        if not _pyspy():
            pytest.skip("py-spy is not installed (pip install py-spy): benchmarks/profile_chapters.py is untested")
        args += ["--json", str(tmp_path / "profile.json")]
    r = run(script, *args, cache=bench_cache)
    assert r.returncode == 0, f"benchmarks/{script} --smoke failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert r.stdout.strip(), f"benchmarks/{script} --smoke printed nothing"


def test_rebuild_times_smoke_and_compare(bench_cache, tmp_path):
    out = tmp_path / "rt.json"
    r = run("rebuild_times.py", "--smoke", "--threads", "1", "--json", str(out), cache=bench_cache)
    assert r.returncode == 0, f"rebuild_times --smoke failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    res = json.loads(out.read_text())
    assert res["runs"]["cold"]["chapters"]["05_report"]["status"] == "ok"
    assert res["runs"]["cold"]["chapters"]["05_report"]["cells"], "no per-cell times read from the executed notebook"
    assert "heaviest cells" in r.stdout
    r = run("rebuild_times.py", "--compare", str(ROOT / "benchmarks/results/rebuild_times_default.json"), str(out),
            cache=bench_cache)
    assert r.returncode == 0 and "05_report" in r.stdout and "before" in r.stdout, r.stdout + r.stderr


def test_rebuild_times_prints_the_parallel_speed_up(capsys):
    spec = importlib.util.spec_from_file_location("rebuild_times", BENCH / "rebuild_times.py")
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)

    def fake(seconds):
        return {"wall_s": sum(seconds), "cpu_s": 1.0, "chapters": {"03_iocn": {
            "seconds": sum(seconds), "cells": [{"index": i, "first_line": f"cell{i}", "seconds": s}
                                               for i, s in enumerate(seconds)]}}}
    rt.print_jobs({"CCC_JOBS=1": fake([100.0, 10.0]), "CCC_JOBS=2": fake([50.0, 10.0])}, top=2)
    out = capsys.readouterr().out
    assert "2.00×" in out and "1.00×" in out and out.index("cell0") < out.index("cell1")


def test_rebuild_times_book_build_and_the_bundle_total(capsys, tmp_path):
    """``--book``: the HTML book's build is run by the book's own command (here on a folder missing
    chapters, which it must refuse, naming the fix), and the bundle's time against the goal is import +
    chapters + book."""
    spec = importlib.util.spec_from_file_location("rebuild_times", BENCH / "rebuild_times.py")
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)
    (tmp_path / "executed").mkdir()
    b = rt.build_book(tmp_path / "executed", tmp_path / "cache", tmp_path / "book")
    assert b["returncode"] != 0 and "no executed notebook" in b["tail"] and "ccc_lib run" in b["tail"], b["tail"]
    run = {"wall_s": 60.0, "cpu_s": 1.0, "import_s": 20.0, "book": {"seconds": 90.0, "returncode": 0},
           "chapters": {"00_classifiers": {"seconds": 50.0, "status": "ok"}, "01_counterfeits": {"seconds": 40.0, "status": "ok"}}}
    tot = rt.print_chapters({"bundle": run}, "default", 2)
    out = capsys.readouterr().out
    assert tot["bundle_with_import_and_book"] == 170.0
    assert tot["bundle"] == 90.0 and tot["bundle_wall"] == 60.0          # two chapters side by side: the wall counts
    assert "60.0 s (wall) + import 20.0 s + book 90.0 s = 170.0 s from the bundle to a built book" in out
    assert "goal bundle (import + chapters + book): ≤ 120 s — NOT met (170 s)" in out
