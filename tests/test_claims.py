"""The Claims API: bounds stated and judged, due per profile, recorded before asserted."""
import json
import math

import numpy as np
import pytest
import torch

from ccc_lib.claims import Claims, ClaimsFailed


@pytest.fixture
def mdir(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    return tmp_path


def _file(mdir, stem="00_t"):
    return json.loads((mdir / f"{stem}.json").read_text())


@pytest.mark.parametrize("ours, op, bound, holds", [
    (0.97, ">=", 0.97, True), (0.969, ">=", 0.97, False), (0.5, ">", 0.5, False), (0.1, "<=", 0.1, True),
    (0.2, "<", 0.1, False), (3, "==", 3, True), (float("nan"), ">=", 0.0, False), (None, ">", 0.0, False),
    (np.float32(0.99), ">=", 0.98, True), (torch.tensor(0.5), "<", 0.6, True)])
def test_judgement(mdir, ours, op, bound, holds):
    C = Claims("00_t", "smoke")
    assert C.check("k", "text", ours, op, bound, assert_at=("default",)) is holds
    assert _file(mdir)["claims"][0]["holds"] is holds


def test_every_claim_is_recorded_as_soon_as_declared(mdir):
    C = Claims("00_t", "default")
    assert _file(mdir)["status"] == "running" and _file(mdir)["claims"] == []
    C.check("a", "first", 0.1, ">=", 0.5)                     # fails, due at default
    rec = _file(mdir)
    assert rec["claims"][0]["key"] == "a" and rec["failed_claims"] == ["a"] and rec["status"] == "running"
    C.report("n", "a number shown", 12)
    assert [c["key"] for c in _file(mdir)["claims"]] == ["a", "n"]


def test_finish_writes_then_asserts(mdir):
    C = Claims("00_t", "default")
    C.check("a", "fails", 0.1, ">=", 0.5, assert_at=("default",))
    C.check("b", "holds", 0.9, ">=", 0.5, assert_at=("default",))
    C.check("c", "fails, not due here", 0.1, ">=", 0.5, assert_at=("full",))
    with pytest.raises(ClaimsFailed, match=r"(?s)1 claim\(s\).*a: fails: ours 0.1, bound ≥ 0.5 \(ours\)"):
        C.finish(payload=[1, 2])
    rec = _file(mdir)
    assert rec["status"] == "claims_failed" and rec["failed_claims"] == ["a"] and rec["metrics"] == {"payload": [1, 2]}
    due = {c["key"]: c["due"] for c in rec["claims"]}
    assert due == {"a": True, "b": True, "c": False}


def test_finish_passes_when_due_claims_hold(mdir):
    C = Claims("00_t", "smoke")
    C.check("a", "fails at default only", 0.1, ">=", 0.5, assert_at=("default", "full"))
    table = C.finish()
    assert _file(mdir)["status"] == "claims_ok" and table.loc["fails at default only", "holds"] == "NO"


def test_dry_run_asserts_nothing_unless_listed(mdir):
    C = Claims("00_t", "full_dry")
    C.check("a", "x", 0.0, ">=", 0.5, assert_at=("default", "full"))
    C.finish()
    assert _file(mdir)["dry_run"] is True
    C2 = Claims("01_t", "full_dry")
    C2.check("a", "x", 0.0, ">=", 0.5, assert_at=("full_dry",))
    with pytest.raises(ClaimsFailed):
        C2.finish()


def test_bounds_are_stated_and_attributed(mdir):
    C = Claims("00_t", "smoke")
    C.check("p", "paper's number is the bound", 0.99, ">=", paper=0.9826)
    C.check("o", "our looser bound", 0.97, ">=", 0.95, paper=0.9826)
    rows = {c["key"]: c for c in _file(mdir)["claims"]}
    assert rows["p"]["bound"] == "≥ 0.9826 (paper)" and rows["p"]["holds"]
    assert rows["o"]["bound"] == "≥ 0.95 (ours)" and rows["o"]["paper"] == 0.9826
    t = C.table()
    assert list(t.columns) == ["paper", "ours", "bound", "holds", "asserted at"]


@pytest.mark.parametrize("kw, match", [
    (dict(op="~"), "op must be"),
    (dict(bound=None), "give a bound"),
    (dict(bound=0.5, paper=0.9, bound_from="paper"), "not the paper's"),
    (dict(bound=0.5, bound_from="them"), "bound_from"),
    (dict(bound=0.5, assert_at=("deafult",)), "unknown profiles"),
])
def test_bad_declarations_are_refused(mdir, kw, match):
    C = Claims("00_t", "smoke")
    args = {"op": ">=", **kw}
    with pytest.raises(ValueError, match=match):
        C.check("k", "t", 0.5, **args)


def test_keys_are_unique_and_verdicts_computed(mdir):
    C = Claims("00_t", "smoke")
    C.check("k", "t", 0.9, ">=", 0.5)
    with pytest.raises(ValueError, match="declared twice"):
        C.check("k", "t", 0.9, ">=", 0.5)
    C.report("n", "shown", 3)
    assert C.verdict("k") == "holds" and C.glue_verdict("v", "k") == "reproduced"
    with pytest.raises(ValueError, match="not a judged claim"):
        C.verdict("n")
    assert math.isclose(C["k"].ours, 0.9)
