"""The papermill runner (``ccc_lib.runner``) and the commands on it (``ccc_lib.cli``): chapter names, a failing
notebook reported with its cell, metrics JSON."""
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ccc_lib import cli, runner, static_book
from ccc_lib.cli import run as cli_run


def _nb(path, cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_resolve_chapters():
    assert runner.resolve_chapters(["0"]) == ["00_classifiers"]
    assert runner.resolve_chapters(["classifiers", "00"]) == ["00_classifiers", "00_classifiers"]
    with pytest.raises(SystemExit, match="unknown chapter"):
        runner.resolve_chapters(["99"])


def test_failing_notebook_keeps_partial_output(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    params = new_code_cell("profile = None", metadata={"tags": ["parameters"]})
    _nb(src / "ok.ipynb", [params, new_code_cell(
        "from ccc_lib import save_metrics, get_profile\nsave_metrics('ok', get_profile(profile), {'x': 1})\nprint('done')")])
    _nb(src / "bad.ipynb", [params, new_code_cell("print('before')"), new_code_cell("raise ValueError('boom')"),
                            new_code_cell("print('never')")])
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path / "m"))
    out = tmp_path / "out"
    ok = runner.run_notebook("ok", "smoke", out, notebook_dir=src)
    assert ok["status"] == "ok"
    m = json.loads((out / "metrics" / "ok.json").read_text())
    assert m["profile"] == "smoke" and m["metrics"] == {"x": 1} and m["status"] == "ok" and "run_seconds" in m
    bad = runner.run_notebook("bad", "smoke", out, notebook_dir=src)
    assert bad["status"] == "failed" and "boom" in bad["error"]
    nb = nbformat.read(out / "bad.ipynb", as_version=4)
    assert any("before" in "".join(o.get("text", "")) for c in nb.cells for o in c.get("outputs", []))
    assert runner.run_notebook("missing", "smoke", out, notebook_dir=src)["status"] == "missing"


def test_repository_url_sources(monkeypatch, tmp_path):
    monkeypatch.delenv("CCC_REPO_URL", raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    assert static_book.repository_url("https://github.com/a/b") == "https://github.com/a/b"
    monkeypatch.setenv("GITHUB_REPOSITORY", "owner/book")
    assert static_book.repository_url() == "https://github.com/owner/book"
    monkeypatch.setenv("CCC_REPO_URL", "https://github.com/x/y")
    assert static_book.repository_url() == "https://github.com/x/y"


def test_stage_book_sets_the_repository_url(tmp_path):
    import yaml
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "00_classifiers.ipynb").write_text("{}")
    staged = static_book.stage_book(tmp_path / "ex", tmp_path / "src", "https://github.com/o/r")
    cfg = yaml.safe_load((staged / "_config.yml").read_text())
    assert cfg["repository"]["url"] == "https://github.com/o/r"
    assert cfg["launch_buttons"]["colab_url"] and cfg["execute"]["execute_notebooks"] == "off"
    assert (staged / "notebooks" / "00_classifiers.ipynb").exists() and (staged / "book").is_dir()


def test_parameters_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("profile: full\nseed: 3\n")
    assert cli_run.load_parameters(f) == {"profile": "full", "seed": 3}
    f.write_text("- a list\n")
    with pytest.raises(SystemExit, match="mapping"):
        cli_run.load_parameters(f)
    with pytest.raises(SystemExit, match="not found"):
        cli_run.load_parameters(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- a failing claim, end to end

_CHAPTER = '''from ccc_lib import get_profile
from ccc_lib.claims import Claims
P = get_profile(profile)
C = Claims("{stem}", P)
C.check("acc", "tiny: test accuracy", {ours}, ">=", 0.9, assert_at=("smoke",))
C.report("n", "images", 10)
C.finish(payload={{"x": 1}})
print("finished")'''


def _chapter_nb(path, stem, ours):
    from nbformat.v4 import new_markdown_cell
    params = new_code_cell("profile = None", metadata={"tags": ["parameters"]})
    _nb(path / f"{stem}.ipynb", [new_markdown_cell(f"# {stem}"), params,
                                 new_code_cell(_CHAPTER.format(stem=stem, ours=ours)),
                                 new_code_cell("print('after the claims')")])


def test_failing_claim_end_to_end(tmp_path, monkeypatch):
    """A chapter whose asserted claim fails: the notebook fails, its metrics file records the failed claim
    with its numbers, the report shows it, and build_book.sh's logic exits non-zero; a passing chapter
    beside it stays ok."""
    import os
    import subprocess
    import sys

    from ccc_lib import report
    src = tmp_path / "nb"
    src.mkdir()
    _chapter_nb(src, "00_classifiers", ours=0.5)        # fails: 0.5 < 0.9, asserted at smoke
    _chapter_nb(src, "01_counterfeits", ours=0.95)      # holds
    out = tmp_path / "executed"
    (out / "metrics").mkdir(parents=True)
    stale = {"chapter": "00_classifiers", "profile": "smoke", "status": "claims_ok", "claims": [
        {"key": "acc", "claim": "old", "holds": True, "due": True}], "failed_claims": []}
    (out / "metrics" / "00_classifiers.json").write_text(json.dumps(stale))     # an older run's file
    repo = runner.REPO
    env = {**os.environ, "CCC_SKIP_SETUP": "1", "CCC_NO_HTML": "1", "CCC_NOTEBOOKS": str(src),
           "CCC_EXECUTED": str(out), "CCC_PYTHON": sys.executable, "PYTHONPATH": str(repo)}
    env.pop("CCC_METRICS_DIR", None)
    proc = subprocess.run(["bash", str(repo / "scripts" / "build_book.sh"), "smoke"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert "FAILED: chapter 00_classifiers at cell 2 of notebooks/00_classifiers.ipynb" in log, log
    # the notebook failed at the claims cell: the cell after it never ran
    nb = nbformat.read(out / "00_classifiers.ipynb", as_version=4)
    assert not any("after the claims" in "".join(o.get("text", "")) for c in nb.cells for o in c.get("outputs", []))
    # its metrics file is this run's, records the failed claim with its numbers, and says failed
    m = json.loads((out / "metrics" / "00_classifiers.json").read_text())
    assert m["status"] == "failed" and m["failed_claims"] == ["acc"] and m["claims_status"] == "claims_failed"
    acc = {c["key"]: c for c in m["claims"]}["acc"]
    assert acc["ours"] == 0.5 and acc["holds"] is False and acc["due"] and acc["bound"] == "≥ 0.9 (ours)"
    assert m["failed_cell"]["index"] == 2 and "ClaimsFailed" in m["error"] and m["metrics"] == {"payload": {"x": 1}}
    ok = json.loads((out / "metrics" / "01_counterfeits.json").read_text())
    assert ok["status"] == "ok" and ok["failed_claims"] == []
    # the report shows the failure
    metrics = report.load_metrics(out / "metrics")
    chapters, claims = report.reproduction_summary(metrics)
    assert chapters.loc["00_classifiers", "failed here"] == 1 and chapters.loc["01_counterfeits", "failed here"] == 0
    problems = report.run_problems(metrics, "smoke", ["00_classifiers", "01_counterfeits"])
    assert set(problems["chapter"]) == {"00_classifiers"}
    assert set(problems["problem"]) == {"failed", "claims failed"}
    # the check alone: non-zero for the failed chapter, zero for the passing one
    errors, _ = runner.check_executed(out, ["00_classifiers", "01_counterfeits"])
    assert len(errors) == 1 and errors[0].startswith("00_classifiers: status 'failed'")
    assert cli.main(["check", "01_counterfeits", "--executed", str(out), "--root", str(repo)]) == 0
    assert cli.main(["check", "--executed", str(out), "--root", str(repo), "--notebooks", str(src)]) == 1


def test_dry_run_banner_and_book_refusal(tmp_path, monkeypatch, capsys):
    """A dry-run page carries the banner under its title, its metadata says dry run, and `book` refuses."""
    from nbformat.v4 import new_markdown_cell
    nb = tmp_path / "00_classifiers.ipynb"
    _nb(nb.parent / "x.ipynb", [])
    _nb(nb, [new_markdown_cell("# Title\ntext"), new_code_cell("profile = 'full_dry'", metadata={"tags": ["parameters"]})])
    runner.mark_executed(nb, "full_dry")
    runner.mark_executed(nb, "full_dry")                   # idempotent: one banner
    cells = nbformat.read(nb, as_version=4).cells
    assert cells[0].source.startswith("# Title") and "DRY RUN on generated files — not results" in cells[1].source
    assert sum("DRY RUN" in c.source for c in cells) == 1 and "remove-cell" in cells[2].metadata["tags"]
    assert runner.executed_profile(nb) == {"profile": "full_dry", "scale": "full", "dry_run": True}
    errors, _ = runner.check_executed(tmp_path, ["00_classifiers"])
    assert any("DRY RUN" in e for e in errors)
    assert cli.main(["book", "--executed", str(tmp_path), "--root", str(runner.REPO)]) == 2
    assert "refuses" in capsys.readouterr().err


def test_project_root_from_cwd_or_option(tmp_path, monkeypatch):
    (tmp_path / "proj" / "notebooks" / "sub").mkdir(parents=True)
    (tmp_path / "proj" / "_config.yml").write_text("title: x\n")
    monkeypatch.delenv("CCC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path / "proj" / "notebooks" / "sub")
    assert runner.find_root() == (tmp_path / "proj").resolve()
    assert runner.find_root(tmp_path / "proj") == (tmp_path / "proj").resolve()
    with pytest.raises(SystemExit, match="not the book's project root"):
        runner.find_root(tmp_path)


def test_dry_run_flag_is_full_only(tmp_path):
    with pytest.raises(SystemExit, match="dry run of 'full'"):
        cli.main(["run", "0", "--profile", "smoke", "--dry-run", "--root", str(runner.REPO),
                     "--out", str(tmp_path)])


def test_every_full_classifier_has_ood_sets():
    from ccc_lib.profiles import get_profile
    for name in ("full", "full_dry", "default", "smoke"):
        P = get_profile(name)
        for ds in P.classifier_datasets:
            sets = P.ood_for(ds)
            assert sets and ds not in sets
    full = get_profile("full")
    assert full.ood_for("mnist") == ("fashion_mnist", "cifar10", "svhn")          # NeuralFP's slides
    assert full.ood_for("svhn") == ("mnist", "fashion_mnist", "cifar10", "noise")


def test_figure_cells_must_show_one_output(tmp_path):
    """A captioned, labelled figure cell with two images would give two figures with one label."""
    import json as _json
    from ccc_lib.runner import figure_problems
    img = {"output_type": "display_data", "data": {"image/png": "", "text/plain": ""}, "metadata": {}}
    rec = {"output_type": "display_data", "data": {"application/papermill.record/text/plain": "1"}, "metadata": {}}
    cell = {"cell_type": "code", "metadata": {"mystnb": {"figure": {"name": "fig-x", "caption": "c"}}},
            "source": "", "outputs": [img, rec]}
    nb = tmp_path / "ch.ipynb"
    nb.write_text(_json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert figure_problems(nb) == []
    cell["outputs"] = [img, img, rec]
    nb.write_text(_json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert "shows 2 outputs" in figure_problems(nb)[0]


def test_stack_figures_makes_one_figure_of_several():
    import matplotlib.pyplot as plt
    from ccc_lib.plots import stack_figures
    a, _ = plt.subplots(figsize=(2, 1))
    b, _ = plt.subplots(figsize=(3, 1))
    fig = stack_figures([a, b])
    from matplotlib._pylab_helpers import Gcf
    open_now = [m.canvas.figure for m in Gcf.get_all_fig_managers()]   # other tests may leave figures open
    assert any(f is fig for f in open_now) and not any(f is a or f is b for f in open_now)
    w, h = fig.get_size_inches() * fig.dpi
    assert round(w) == 300 and round(h) == 200
    plt.close(fig)


def test_chapters_side_by_side(tmp_path, capsys):
    """``run --jobs 2``: two chapters at a time, each in its own kernel with half the threads, the report
    after the others, results and summary in the chapters' order, a failing chapter reported with its cell."""
    src, log = tmp_path / "nb", tmp_path / "log"
    src.mkdir()
    log.mkdir()
    params = new_code_cell("profile = None", metadata={"tags": ["parameters"]})
    for stem, fail in (("00_classifiers", False), ("01_counterfeits", False), ("02_neuralfp", True), ("05_report", False)):
        _nb(src / f"{stem}.ipynb", [params, new_code_cell(
            "import json, os, time\nt0 = time.time()\ntime.sleep(1.5)\n"
            f"json.dump({{'start': t0, 'end': time.time(), 'omp': os.environ.get('OMP_NUM_THREADS'),"
            f" 'jobs': os.environ.get('CCC_JOBS')}}, open({str(log / stem)!r}, 'w'))"),
            new_code_cell("raise ValueError('boom')" if fail else "print('fine')")])
    out = tmp_path / "out"
    import os
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "CCC_JOBS")}
    os.environ["OMP_NUM_THREADS"] = "2"
    os.environ.pop("CCC_JOBS", None)
    try:
        rc = cli.main(["run", "0", "1", "2", "5", "--profile", "smoke", "--jobs", "2", "--notebooks", str(src),
                          "--out", str(out), "--root", str(runner.REPO)])
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert rc == 1                                                     # chapter 2 failed
    t = {p.name: json.loads(p.read_text()) for p in log.iterdir()}
    # the heaviest first (cli.run.HEAVY_ORDER: 2, then 1), side by side; chapter 0 when a lane is free
    assert t["02_neuralfp"]["start"] < t["01_counterfeits"]["end"] and t["01_counterfeits"]["start"] < t["02_neuralfp"]["end"]
    assert t["00_classifiers"]["start"] >= min(t["01_counterfeits"]["end"], t["02_neuralfp"]["end"])
    assert t["05_report"]["start"] >= max(t[s]["end"] for s in ("00_classifiers", "01_counterfeits", "02_neuralfp"))
    assert {v["omp"] for v in t.values()} == {"1"}                     # 2 threads shared by 2 chapters
    summary = json.loads((out / "run_summary.json").read_text())
    assert [r["chapter"] for r in summary["results"]] == ["00_classifiers", "01_counterfeits", "02_neuralfp", "05_report"]
    bad = summary["results"][2]
    assert bad["status"] == "failed" and "boom" in bad["error"] and bad["source_cell"] == 2
    assert [r["status"] for r in summary["results"]] == ["ok", "ok", "failed", "ok"]
    assert cli.main(["run", "0", "--jobs", "0", "--notebooks", str(src), "--out", str(out), "--root", str(runner.REPO)]) != 0
    assert "how many chapters run side by side" in capsys.readouterr().err


def test_heaviest_chapters_start_first(tmp_path):
    """Side by side, chapter 1 starts first (chapters 2 and 3 read its generators), then the longest: by the
    previous run's seconds in the output folder where every chapter has them, else by the book's measured order."""
    chapters = ["00_classifiers", "01_counterfeits", "03_iocn", "04_drift"]
    assert cli_run.heaviest_first(chapters, tmp_path) == ["01_counterfeits", "03_iocn", "04_drift", "00_classifiers"]
    assert cli_run.heaviest_first(["00_classifiers", "02_neuralfp", "04_drift"], tmp_path) == \
        ["04_drift", "02_neuralfp", "00_classifiers"]
    (tmp_path / "metrics").mkdir()
    for stem, sec in (("00_classifiers", 50.0), ("01_counterfeits", 5.0), ("03_iocn", 20.0), ("04_drift", 30.0)):
        (tmp_path / "metrics" / f"{stem}.json").write_text(json.dumps({"run_seconds": sec}))
    assert cli_run.heaviest_first(chapters, tmp_path) == ["01_counterfeits", "00_classifiers", "04_drift", "03_iocn"]
    assert cli_run.heaviest_first(chapters[::2], tmp_path) == ["00_classifiers", "03_iocn"]
    (tmp_path / "metrics" / "03_iocn.json").write_text("{}")            # one without: the measured order
    assert cli_run.heaviest_first(chapters, tmp_path) == ["01_counterfeits", "03_iocn", "04_drift", "00_classifiers"]


def test_a_chapter_waits_for_chapter_1_running_beside_it(tmp_path, monkeypatch, capsys):
    """Run side by side, chapters 2 and 3 may reach chapter 1's generators before chapter 1 has cached them:
    they wait while chapter 1 runs (its end marker absent), and get NotCached (whose message names the fix)
    once it has ended or where nothing runs beside them."""
    from ccc_lib.cache import NotCached
    from ccc_lib.counterfeits import trained
    marker, calls = tmp_path / "chapter1.ended", []

    def not_yet():
        calls.append(1)
        if len(calls) < 3:
            raise NotCached("not yet")
        return "generator"
    monkeypatch.setenv(trained.AWAIT_ENV, str(marker))
    assert trained._await_chapter1(not_yet, "the generator", poll=0.01) == "generator" and len(calls) == 3
    assert "waiting for the generator" in capsys.readouterr().out

    def never():
        calls.append(1)
        if len(calls) > 6:
            marker.touch()                  # chapter 1 ended without caching it
        raise NotCached("never")
    with pytest.raises(NotCached):
        trained._await_chapter1(never, "the generator", poll=0.01)
    monkeypatch.delenv(trained.AWAIT_ENV)
    calls.clear()
    with pytest.raises(NotCached):
        trained._await_chapter1(never, "the generator", poll=0.01)
    assert len(calls) == 1                   # nothing runs beside: no wait
