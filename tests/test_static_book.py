"""The static book's rules applied when staging (ccc_lib.static_book): a `live-only` cell's widgets are
replaced by one line saying how to make them live, the widget models only it used are dropped, and the
intro receives the findings table."""
import json

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
    (staging / "book" / "intro.md").write_text(f"# Intro\n\n{MARKER}\n")
    (executed / "metrics" / "01_counterfeits.json").write_text(json.dumps(
        {"profile": "smoke", "status": "ok", "claims": [{"key": "confidence_x", "claim": "x", "ours": 0.99,
                                                         "holds": True}]}))
    assert finish_staging(staging, executed) == {"live_only_cells": 1, "findings": True}
    assert "tbl-findings" in (staging / "book" / "intro.md").read_text()
    staged = json.loads((staging / "notebooks" / "01_counterfeits.ipynb").read_text())
    assert staged["cells"][1]["outputs"][0]["data"]["text/plain"][0] == LIVE_NOTE
