"""The papermill runner: chapter names, a failing notebook reported with its cell, metrics JSON."""
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ccc_lib import runner


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
    assert runner.repository_url("https://github.com/a/b") == "https://github.com/a/b"
    monkeypatch.setenv("GITHUB_REPOSITORY", "owner/book")
    assert runner.repository_url() == "https://github.com/owner/book"
    monkeypatch.setenv("CCC_REPO_URL", "https://github.com/x/y")
    assert runner.repository_url() == "https://github.com/x/y"


def test_stage_book_sets_the_repository_url(tmp_path):
    import yaml
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "00_classifiers.ipynb").write_text("{}")
    staged = runner.stage_book(tmp_path / "ex", tmp_path / "src", "https://github.com/o/r")
    cfg = yaml.safe_load((staged / "_config.yml").read_text())
    assert cfg["repository"]["url"] == "https://github.com/o/r"
    assert cfg["launch_buttons"]["colab_url"] and cfg["execute"]["execute_notebooks"] == "off"
    assert (staged / "notebooks" / "00_classifiers.ipynb").exists() and (staged / "book").is_dir()


def test_parameters_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("profile: full\nseed: 3\n")
    assert runner.load_parameters(f) == {"profile": "full", "seed": 3}
    f.write_text("- a list\n")
    with pytest.raises(SystemExit, match="mapping"):
        runner.load_parameters(f)
    with pytest.raises(SystemExit, match="not found"):
        runner.load_parameters(tmp_path / "missing.yaml")
