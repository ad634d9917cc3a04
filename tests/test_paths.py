"""One rule for every path the project accepts or passes on (``ccc_lib.utils.absolute_path``): resolved
once, against the caller's working directory, before it reaches a kernel (papermill starts each one in
``notebooks/``), a subprocess or the environment. The end-to-end tests run the runner and
``scripts/build_book.sh`` the way the README does — relative paths, from the project root and from a
sub-folder — on a copy of the project holding one small chapter."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ccc_lib import cli, report
from ccc_lib.utils import absolute_path, absolutize_env

REPO = Path(__file__).resolve().parent.parent


def test_absolute_path_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_path("a/b") == tmp_path / "a" / "b"
    assert absolute_path("../x") == tmp_path.parent / "x"
    assert absolute_path("a", base="/srv") == Path("/srv/a")
    assert absolute_path("/abs/./p") == Path("/abs/p")
    assert absolute_path("~/c") == Path.home() / "c"


def test_absolutize_env_covers_every_path_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"CCC_CACHE": "c", "CCC_DATA": "~/d", "CCC_DRY_DATA": "dry", "CCC_METRICS_DIR": "book/m",
           "CCC_ROOT": ".", "CCC_PROFILE": "smoke", "OTHER": "rel"}
    changed = absolutize_env(env)
    assert set(changed) == {"CCC_CACHE", "CCC_DATA", "CCC_DRY_DATA", "CCC_METRICS_DIR", "CCC_ROOT"}
    assert env["CCC_CACHE"] == str(tmp_path / "c") and env["CCC_METRICS_DIR"] == str(tmp_path / "book" / "m")
    assert env["CCC_DATA"] == str(Path.home() / "d") and env["CCC_ROOT"] == str(tmp_path)
    assert env["CCC_PROFILE"] == "smoke" and env["OTHER"] == "rel"       # not paths: untouched
    assert absolutize_env(env) == {}                                      # idempotent


def test_library_dirs_are_absolute_from_relative_variables(tmp_path, monkeypatch):
    from ccc_lib import dryrun
    from ccc_lib.utils import cache_dir, data_root
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CCC_CACHE", "cache")
    monkeypatch.setenv("CCC_DATA", "data")
    monkeypatch.setenv("CCC_DRY_DATA", "dry")
    monkeypatch.setenv("CCC_METRICS_DIR", "m")
    assert cache_dir() == tmp_path / "cache" and data_root() == tmp_path / "data"
    assert dryrun.dry_data_root() == tmp_path / "dry" and report.metrics_dir() == tmp_path / "m"


def test_path_options_are_made_absolute(tmp_path, monkeypatch):
    import argparse
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CCC_CACHE", "rel-cache")
    args = argparse.Namespace(out="book/executed", root=".", notebooks="nb", executed="../ex", parameters=None)
    cli.absolute_paths(args)
    assert args.out == tmp_path / "book" / "executed" and args.root == tmp_path
    assert args.notebooks == tmp_path / "nb" and args.executed == tmp_path.parent / "ex" and args.parameters is None
    assert os.environ["CCC_CACHE"] == str(tmp_path / "rel-cache")
    bundle = argparse.Namespace(file="b.tar.gz", source="https://host/b.tar.gz")      # cache export / import
    cli.absolute_paths(bundle)
    assert bundle.file == tmp_path / "b.tar.gz" and bundle.source == "https://host/b.tar.gz"
    local = argparse.Namespace(source="sub/b.tar.gz")
    cli.absolute_paths(local)
    assert local.source == tmp_path / "sub" / "b.tar.gz"


# --------------------------------------------------------------------------- end to end, as the README does

_CLAIMS = '''from ccc_lib import get_profile
from ccc_lib.claims import Claims
from ccc_lib.utils import cache_dir, data_root
print(cache_dir(), data_root())                         # where the kernel thinks the cache and the data are
C = Claims("00_classifiers", get_profile(profile))
for i in range(6):
    C.check(f"c{i}", f"claim {i}", 1.0, ">=", 0.5, assert_at=("smoke",))
C.finish()'''


def _write_chapter(project: Path, crash: bool) -> None:
    cells = [new_markdown_cell("# Classifiers"),
             new_code_cell("profile = None", metadata={"tags": ["parameters"]})]
    if crash:
        cells.append(new_code_cell("raise RuntimeError('crash before the first claim')"))
    cells.append(new_code_cell(_CLAIMS))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, project / "notebooks" / "00_classifiers.ipynb")


@pytest.fixture
def project(tmp_path):
    """A copy of the project's layout with one small chapter: _config.yml, notebooks/, scripts/build_book.sh."""
    root = tmp_path / "book-clone"
    (root / "notebooks").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "sub").mkdir()
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copy(REPO / "scripts" / "build_book.sh", root / "scripts" / "build_book.sh")
    _write_chapter(root, crash=False)
    return root


def _env(**extra) -> dict:
    env = {**os.environ, "CCC_SKIP_SETUP": "1", "CCC_NO_HTML": "1", "CCC_PYTHON": sys.executable,
           "PYTHONPATH": str(REPO), "CCC_PROGRESS": "off", **extra}
    for name in ("CCC_METRICS_DIR", "CCC_EXECUTED", "CCC_NOTEBOOKS", "CCC_ROOT", "CCC_DATA", "CCC_DRY_DATA"):
        if name not in extra:
            env.pop(name, None)
    return env


def _untracked_in_notebooks(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in (project / "notebooks").rglob("*")
                  if p.name != "00_classifiers.ipynb")


def _metrics(project: Path) -> dict:
    return json.loads((project / "book" / "executed" / "metrics" / "00_classifiers.json").read_text())


def test_build_book_and_runner_with_relative_paths(project):
    """The issue's reproduction: an ok run with the README's relative ``book/executed``, then a run whose
    first code cell raises before any claim — from the root and from a sub-folder — must leave ONE metrics
    file, under book/executed/metrics, saying failed with no claims; nothing is written in notebooks/."""
    # 1. scripts/build_book.sh from the root, a relative CCC_CACHE: ok, 6 claims, where the README says
    proc = subprocess.run(["bash", "scripts/build_book.sh", "smoke"], cwd=project, capture_output=True,
                          text=True, timeout=600, env=_env(CCC_CACHE="cache"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = _metrics(project)
    assert m["status"] == "ok" and len(m["claims"]) == 6 and m["claims_status"] == "claims_ok"
    assert (project / "cache" / "data").is_dir()            # the relative cache is the caller's, not the kernel's
    assert _untracked_in_notebooks(project) == []

    # 2. the chapter now crashes before its first claim; `python -m ccc_lib run` from a sub-folder with a
    #    relative --out: the same file says failed, with none of the earlier run's claims
    _write_chapter(project, crash=True)
    proc = subprocess.run([sys.executable, "-m", "ccc_lib", "run", "0", "--profile", "smoke", "--out",
                           "../book/executed"], cwd=project / "sub", capture_output=True, text=True, timeout=600,
                          env=_env(CCC_CACHE="../cache"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    m = _metrics(project)
    assert m["status"] == "failed" and m["claims"] == [] and "crash before the first claim" in m["error"]
    assert m["failed_cell"]["index"] == 2
    metrics = report.load_metrics(project / "book" / "executed" / "metrics")
    problems = report.run_problems(metrics, "smoke", ["00_classifiers"])
    assert list(problems["chapter"]) == ["00_classifiers"]
    assert _untracked_in_notebooks(project) == [] and not (project / "sub" / "book").exists()

    # 3. scripts/build_book.sh from the sub-folder with a relative CCC_EXECUTED: failed, exit non-zero,
    #    the file it checks is the file the kernel wrote
    (project / "book" / "executed" / "metrics" / "00_classifiers.json").unlink()
    proc = subprocess.run(["bash", "../scripts/build_book.sh", "smoke"], cwd=project / "sub", capture_output=True,
                          text=True, timeout=600, env=_env(CCC_CACHE="../cache", CCC_EXECUTED="../book/executed"))
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "status 'failed'" in log, log
    m = _metrics(project)
    assert m["status"] == "failed" and m["claims"] == []
    assert _untracked_in_notebooks(project) == [] and not (project / "sub" / "book").exists()
    assert not (project / "sub" / "cache").exists() and not (project / "notebooks" / "cache").exists()
