"""The static book's rules applied when staging (ccc_lib.static_book): a `live-only` cell's widgets are
replaced by one line saying how to make them live, the widget models only it used are dropped, and the
intro receives the findings table and the measured build times (ccc_lib.build_times), which the README's
marked section must equal (scripts/readme_build_times.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccc_lib import build_times as BT
from ccc_lib.findings import MARKER
from ccc_lib.static_book import LIVE_NOTE, finish_staging, static_notebook

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


def _nb():
    def cell(tags, model):
        return {"cell_type": "code", "metadata": {"tags": tags}, "source": "", "execution_count": 1,
                "outputs": [{"output_type": "display_data", "metadata": {},
                             "data": {VIEW: {"model_id": model, "version_major": 2}, "text/plain": ["w"]}}]}
    state = {"panel": {"state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_stack"]}}, "slider": {"state": {}},
             "stack": {"state": {}}, "link": {"state": {"source": ["IPY_MODEL_slider", "index"],
                                                       "target": ["IPY_MODEL_stack", "selected_index"]}},
             "live": {"state": {"children": ["IPY_MODEL_liveslider"]}}, "liveslider": {"state": {}},
             "livelink": {"state": {"source": ["IPY_MODEL_liveslider", "value"]}}}
    return {"cells": [cell(["remove-input"], "panel"), cell(["hide-input", "live-only"], "live")],
            "metadata": {"widgets": {STATE: {"state": state}}}}


def test_live_only_outputs_replaced_and_state_pruned():
    nb = _nb()
    assert static_notebook(nb) == 1
    live = nb["cells"][1]["outputs"]
    assert len(live) == 1 and VIEW not in live[0]["data"] and LIVE_NOTE in live[0]["data"]["text/plain"][0]
    assert "ccc-live-only-note" in live[0]["data"]["text/html"][0]
    # the panel's models stay, its jslink (referenced by no view) included; the live slider's link goes
    assert set(nb["metadata"]["widgets"][STATE]["state"]) == {"panel", "slider", "stack", "link"}
    assert VIEW in nb["cells"][0]["outputs"][0]["data"]


def test_notebook_without_live_cells_is_unchanged():
    nb = _nb()
    nb["cells"][1]["metadata"]["tags"] = ["hide-input"]
    before = json.dumps(nb)
    assert static_notebook(nb) == 0 and json.dumps(nb) == before


def test_finish_staging(tmp_path):
    staging, executed = tmp_path / "src", tmp_path / "executed"
    (staging / "notebooks").mkdir(parents=True)
    (staging / "book").mkdir()
    (executed / "metrics").mkdir(parents=True)
    (staging / "notebooks" / "01_counterfeits.ipynb").write_text(json.dumps(_nb()))
    (staging / "book" / "intro.md").write_text(f"# Intro\n\n{MARKER}\n\n{BT.MARKER}\n")
    (executed / "metrics" / "01_counterfeits.json").write_text(json.dumps(
        {"profile": "smoke", "status": "ok", "claims": [{"key": "confidence_x", "claim": "x", "ours": 0.99,
                                                         "holds": True}]}))
    results = tmp_path / "results"
    _result(results / "rebuild_times_default.json", "2026-01-02 03:04:05 UTC", cold=1500.4)
    assert finish_staging(staging, executed, results=results) == {"live_only_cells": 1, "findings": True,
                                                                  "build_times": True}
    intro = (staging / "book" / "intro.md").read_text()
    assert "tbl-findings" in intro and BT.MARKER not in intro
    assert "| from an empty cache (cold) | 1,500 s ≈ 25 min |" in intro and "2026-01-02" in intro
    assert "| on the cache a run filled (warm) | not measured |" in intro
    staged = json.loads((staging / "notebooks" / "01_counterfeits.ipynb").read_text())
    assert staged["cells"][1]["outputs"][0]["data"]["text/plain"][0] == LIVE_NOTE


REPO = Path(__file__).resolve().parent.parent


def _result(path, when, profile="default", threads=2, chapter_jobs=None, **runs):
    """A result file of benchmarks/rebuild_times.py with a run per keyword (its wall clock), every chapter ok."""
    doc = {"profile": profile, "threads": threads, "when": when, "runs": {
        kind: {"wall_s": wall, "returncode": 0, "chapters": {"00_classifiers": {"seconds": wall / 3, "status": "ok"},
                                                            "03_iocn": {"seconds": wall / 2, "status": "ok"}}}
        for kind, wall in runs.items()}}
    if chapter_jobs:
        doc["chapter_jobs"] = chapter_jobs
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return doc


def test_build_times_take_the_latest_complete_run_of_each_kind(tmp_path):
    _result(tmp_path / "rebuild_times_default.json", "2026-11-24 10:00:00 UTC", cold=2400.0, warm=100.0)
    _result(tmp_path / "rebuild_times_default_new.json", "2026-12-07 10:00:00 UTC", chapter_jobs=2, cold=1700.0)
    _result(tmp_path / "rebuild_times_default_before_x.json", "2026-12-08 10:00:00 UTC", cold=9000.0)   # old code
    _result(tmp_path / "rebuild_times_smoke.json", "2026-12-09 10:00:00 UTC", profile="smoke", cold=60.0)
    failed = _result(tmp_path / "rebuild_times_default_failed.json", "2026-12-09 10:00:00 UTC", warm=50.0)
    failed["runs"]["warm"]["chapters"]["03_iocn"]["status"] = "failed"
    (tmp_path / "rebuild_times_default_failed.json").write_text(json.dumps(failed))
    runs = BT.latest_runs(tmp_path)
    assert runs["cold"]["wall_s"] == 1700.0 and runs["cold"]["chapter_jobs"] == 2
    assert runs["cold"]["file"] == "rebuild_times_default_new.json"
    assert runs["warm"]["wall_s"] == 100.0 and "bundle" not in runs
    table = BT.build_times_markdown(tmp_path)
    assert "| from an empty cache (cold) | 1,700 s ≈ 28 min | 0: 567 · 3: 850 | 2026-12-07, 2 threads, 2 chapters " \
           "side by side |" in table
    assert "from an empty cache (cold): `rebuild_times_default_new.json`" in table   # files below, not in a cell
    assert "| from the shipped bundle to a built book | not measured | not measured | not measured |" in table
    assert "heaviest cells" not in table                  # the files hold no cell times: no such line
    doc = json.loads((tmp_path / "rebuild_times_default_new.json").read_text())
    doc["runs"]["cold"]["chapters"]["03_iocn"]["cells"] = [
        {"index": 18, "section": "Table 1", "first_line": "results = X.run_table1(S, P)", "seconds": 480.4},
        {"index": 5, "first_line": "import time", "seconds": 5.0}]          # an older file: no section
    doc["runs"]["cold"]["chapters"]["00_classifiers"]["cells"] = [
        {"index": 8, "section": "Training", "first_line": "models = {}", "seconds": 90.0}]
    (tmp_path / "rebuild_times_default_new.json").write_text(json.dumps(doc))
    table = BT.build_times_markdown(tmp_path)
    assert ("heaviest cells (papermill's seconds, chapters side by side where the row says so): chapter 3 (“Table 1”, "
            "cell 18: `results = X.run_table1(S, P)`) 480 s; chapter 0 (“Training”, cell 8: `models = {}`) 90 s; "
            "chapter 3 (cell 5: `import time`) 5 s.") in table
    assert BT.latest_runs(tmp_path / "missing") == {} and BT.latest_runs(None) == {}
    assert BT.build_times_markdown(None).count("not measured") == 9


def test_marked_section_is_replaced_and_missing_markers_are_an_error():
    text = f"a\n{BT.README_BEGIN}\nold\n{BT.README_END}\nb\n"
    assert BT.replace_marked(text, "new") == f"a\n{BT.README_BEGIN}\nnew\n{BT.README_END}\nb\n"
    with pytest.raises(ValueError, match="one section"):
        BT.replace_marked("no markers", "new")
    with pytest.raises(ValueError, match="one section"):
        BT.replace_marked(text + text, "new")


def test_readme_build_times_are_what_the_result_files_say():
    """The README's build-times section equals the table generated from benchmarks/results (no typed times)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from readme_build_times import expected_readme
    readme = REPO / "README.md"
    assert readme.read_text() == expected_readme(readme, REPO / "benchmarks" / "results"), \
        "README.md's build times differ from benchmarks/results: run python scripts/readme_build_times.py"


def test_readme_build_times_script_check_fails_on_a_stale_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BT.README_BEGIN}\n| typed | 30 min |\n{BT.README_END}\n")
    results = tmp_path / "results"
    _result(results / "rebuild_times_default.json", "2026-12-07 10:00:00 UTC", cold=1200.0)
    cmd = [sys.executable, str(REPO / "scripts" / "readme_build_times.py"), "--readme", str(readme),
           "--results", str(results)]
    r = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
    assert r.returncode == 1 and "out of date" in r.stderr
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    assert "1,200 s ≈ 20 min" in readme.read_text() and "typed" not in readme.read_text()
    assert subprocess.run(cmd + ["--check"], capture_output=True, text=True).returncode == 0


def test_intro_has_no_typed_build_time_and_the_marker():
    """The intro carries the build-times marker and no typed duration for the default book."""
    import re
    intro = (REPO / "book" / "intro.md").read_text()
    assert intro.count(BT.MARKER) == 1
    row = next(line for line in intro.splitlines() if line.startswith("| `default`"))
    assert not re.search(r"\d+\s*(min|s|h|hours?)\b", row), row
