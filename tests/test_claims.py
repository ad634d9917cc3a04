"""The Claims API: bounds stated and judged, due per profile, recorded before asserted."""
import json
import math

import numpy as np
import pytest
import torch

from ccc_lib.checks import InputError
from ccc_lib.claims import COMPARE_VERDICTS, VERDICTS, Claims, ClaimsFailed
from ccc_lib.stats import Interval


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
    assert _file(mdir)["status"] == "claims_ok" and table.loc["fails at default only", "verdict"] == "does not hold"


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
    assert list(t.columns) == ["paper", "ours", "interval", "bound", "verdict", "asserted at"]
    assert C.table(full=True).loc["paper's number is the bound", "holds"] == "yes"


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


# --------------------------------------------------------------------------- intervals (issue 24)

@pytest.mark.parametrize("op, lo, hi, verdict", [
    (">=", 0.95, 0.99, "holds"), (">=", 0.90, 0.96, "not resolved"), (">=", 0.80, 0.94, "does not hold"),
    (">=", 0.95, 0.95, "holds"), (">", 0.95, 0.99, "not resolved"), ("<=", 0.90, 0.95, "holds"),
    ("<=", 0.96, 0.99, "does not hold"), ("<", 0.90, 0.95, "not resolved"), ("<", 0.95, 0.99, "does not hold"),
    ("==", 0.95, 0.95, "holds"), ("==", 0.90, 0.96, "not resolved"), ("==", 0.96, 0.99, "does not hold")])
def test_interval_verdict_is_three_valued(mdir, op, lo, hi, verdict):
    C = Claims("00_t", "smoke")
    est = (lo + hi) / 2
    holds = C.check("k", "t", est, op, 0.95, interval=(lo, hi))
    assert holds is C.holds("k")                                  # the point estimate's judgement, unchanged
    assert C.verdict("k") == verdict
    row = _file(mdir)["claims"][0]
    assert row["verdict"] == verdict and row["interval"] == [lo, hi] and row["level"] == 0.95


def test_verdict_from_interval_while_finish_asserts_the_estimate(mdir):
    C = Claims("00_t", "default")
    C.check("a", "estimate clears, interval straddles", Interval(0.97, 0.94, 0.99, method="DeLong"), ">=", 0.95,
            assert_at=("default",))
    C.check("b", "no interval", 0.97, ">=", 0.95, assert_at=("default",))
    t = C.finish()                                                 # nothing fails: both hold on the estimate
    assert t.loc["estimate clears, interval straddles", "verdict"] == "not resolved"
    assert t.loc["estimate clears, interval straddles", "interval"] == "[0.94, 0.99]"
    assert t.loc["no interval", "verdict"] == "holds" and t.loc["no interval", "interval"] == ""
    assert C.verdict("a", "yes", "no", "open") == "open" and C.glue_verdict("g", "a") == "not resolved"
    assert C.glue_verdict("g2", "b") == "reproduced" and C.verdict("b", "reproduced", "not reproduced") == "reproduced"
    rec = _file(mdir)
    assert rec["status"] == "claims_ok" and rec["claims"][0]["method"] == "DeLong"
    assert [(g["name"], g["interval"]) for g in rec["glued_verdicts"]] == [("g", True), ("g2", False)]


@pytest.mark.parametrize("diff, verdict", [
    (Interval(0.02, 0.005, 0.035), "wins"), (Interval(-0.02, -0.035, -0.005), "loses"),
    (Interval(0.0016, -0.0021, 0.0053), "tie within uncertainty"), (Interval(0.01, 0.0, 0.02), "tie within uncertainty")])
def test_compare_wins_only_when_the_difference_excludes_zero(mdir, diff, verdict):
    C = Claims("00_t", "smoke")
    a, b = Interval(0.95, 0.93, 0.97), Interval(0.94, 0.92, 0.96)
    assert C.compare("nfp_vs_best", "NeuralFP − best baseline", diff, a=a, b=b) == verdict
    assert C.verdict("nfp_vs_best") == verdict and C.glue_verdict("v", "nfp_vs_best") == verdict
    i = COMPARE_VERDICTS.index(verdict)
    assert C.verdict("nfp_vs_best", "reproduced", "not reproduced", "not resolved") == \
        ["reproduced", "not reproduced", "not resolved"][i]
    row = _file(mdir)["claims"][0]
    assert row["kind"] == "compare" and row["verdict"] == verdict and row["interval"] == [diff.lo, diff.hi]
    assert row["a"]["estimate"] == 0.95 and row["b"]["hi"] == 0.96 and row["bound"] == "difference > 0"
    assert C.glue_interval("d", "nfp_vs_best") == str(diff) and C.glue_interval("a", a) == "0.950 [0.93, 0.97]"


def test_compare_is_asserted_only_where_asked(mdir):
    C = Claims("00_t", "default")
    C.compare("x", "A − B", Interval(-0.01, -0.02, 0.0))           # recorded only
    C.finish()
    C2 = Claims("01_t", "default")
    C2.compare("x", "A − B", Interval(-0.01, -0.02, 0.0), assert_at=("default",))
    with pytest.raises(ClaimsFailed, match="x: A − B"):
        C2.finish()


def test_shown_numbers_may_carry_an_interval(mdir):
    C = Claims("00_t", "smoke")
    C.report("share", "share ≥ 0.99", Interval(0.98, 0.95, 0.99, method="Wilson"))
    assert C.table().loc["share ≥ 0.99", "interval"] == "[0.95, 0.99]" and C.holds("share") is None
    assert C.interval_text("share") == "0.980 [0.95, 0.99]"
    with pytest.raises(ValueError, match="not a judged claim"):
        C.verdict("share")


@pytest.mark.parametrize("kw, match", [
    (dict(ours=0.5, interval=(0.6, 0.7)), "outside its interval"),
    (dict(ours=0.5, interval=(0.4,)), "interval must be"),
    (dict(ours=0.5, interval=(0.4, float("inf"))), "not finite"),
    (dict(ours=Interval(0.5, 0.4, 0.6), interval=(0.4, 0.6)), "already an Interval"),
])
def test_bad_intervals_are_refused(mdir, kw, match):
    C = Claims("00_t", "smoke")
    with pytest.raises(ValueError, match=match):
        C.check("k", "t", op=">=", bound=0.5, **kw)


def test_compare_needs_an_interval(mdir):
    C = Claims("00_t", "smoke")
    with pytest.raises(TypeError, match="Interval of A − B"):
        C.compare("k", "t", 0.01)
    assert VERDICTS == ("holds", "does not hold", "not resolved")


def test_tally_counts_the_comparisons_own_verdicts(mdir):
    C = Claims("00_t", "smoke")
    for i, d in enumerate([Interval(0.02, 0.01, 0.03), Interval(0.0, -0.01, 0.01), Interval(0.01, -0.001, 0.02),
                           Interval(-0.02, -0.03, -0.01)]):
        C.compare(f"p{i}", f"pair {i}", d)
    C.check("c", "a claim", 0.9, ">=", 0.5)
    keys = [f"p{i}" for i in range(4)]
    assert C.tally(keys) == {"wins": 1, "loses": 1, "tie within uncertainty": 2}
    assert C.tally_text(keys, "pairs") == "wins on 1, ties within uncertainty on 2 and loses on 1 of 4 pairs"
    with pytest.raises(ValueError, match="mix of comparisons"):
        C.tally(["p0", "c"])
    C.check("c2", "straddles", Interval(0.5, 0.4, 0.6), ">=", 0.45)
    C.check("c3", "fails", 0.1, ">=", 0.45)
    assert C.tally(["c", "c2", "c3"]) == {"holds": 1, "does not hold": 1, "not resolved": 1}
    assert C.tally_text(["c", "c2", "c3"], "pairs") == "reproduced in 1, not resolved in 1 and not reproduced in 1 of 3 pairs"
    assert C.tally_text(["c"], yes="holds", no="fails") == "holds in 1, not resolved in 0 and fails in 0 of 1"
    C.report("n", "shown", 3)
    with pytest.raises(ValueError, match="shown numbers"):
        C.tally(["n"])


def test_verdicts_handed_to_the_prose_are_recorded(mdir):
    C = Claims("00_t", "smoke")
    C.check("p", "point", 0.9, ">=", 0.5)
    C.compare("d", "A − B", Interval(0.01, 0.005, 0.02))
    C.verdict("p", "reproduced", "not reproduced")
    C.verdict("p")                                                   # recorded once
    C.glue_verdict("ch_d", "d")
    assert _file(mdir)["glued_verdicts"] == [
        {"name": None, "key": "p", "verdict": "holds", "words": "reproduced", "interval": False},
        {"name": "ch_d", "key": "d", "verdict": "wins", "words": "wins", "interval": True}]


def test_matches_is_equivalence_with_a_margin_from_the_settings(mdir):
    """Issue 38: "A matches B" holds only when the 90 % interval of A − B lies inside ±δ, δ read from the
    chapter's settings and recorded; a tie within uncertainty is never a match."""
    C = Claims("03_t", "default")
    S = {"match_margin": 0.01}
    assert C.matches("eq_in", "IOCN matches KNN", Interval(0.002, -0.004, 0.006, 0.90), settings=S,
                     margin_key="match_margin") == "holds"
    assert C.matches("eq_tie", "IOCN matches LOF", Interval(0.0, -0.02, 0.02, 0.90), settings=S,
                     margin_key="match_margin") == "not resolved"
    assert C.matches("eq_out", "IOCN matches OCSVM", Interval(-0.03, -0.045, -0.015, 0.90), settings=S,
                     margin_key="match_margin") == "does not hold"
    assert [C.verdict(k) for k in ("eq_in", "eq_tie", "eq_out")] == ["matches", "not resolved", "does not match"]
    assert C.glue_verdict("g", "eq_tie") == "not resolved"
    rows = {r["key"]: r for r in _file(mdir, "03_t")["claims"]}
    assert rows["eq_in"]["kind"] == "equivalence" and rows["eq_in"]["margin"] == 0.01
    assert rows["eq_in"]["margin_setting"] == "match_margin" and rows["eq_in"]["level"] == 0.90
    assert "δ = 0.01 (setting match_margin" in C.table().loc["IOCN matches KNN", "bound"]
    assert C.tally(["eq_in", "eq_tie", "eq_out"]) == {"holds": 1, "does not hold": 1, "not resolved": 1}
    with pytest.raises(InputError, match="SETTINGS"):
        C.matches("eq_x", "no margin", Interval(0.0, -0.01, 0.01, 0.9), settings={}, margin_key="match_margin")


def test_compare_every_records_each_baseline(mdir):
    from ccc_lib.stats import versus_every
    C = Claims("02_t", "smoke")
    r = versus_every({"MSP": Interval(0.02, 0.01, 0.03), "Energy": Interval(-0.05, -0.07, -0.03)})
    assert C.compare_every("nfp_vs_baselines", "NeuralFP − each baseline", r) == "loses"
    row = _file(mdir, "02_t")["claims"][0]
    assert row["kind"] == "compare" and row["verdict"] == "loses" and len(row["baselines"]) == 2
    assert row["baselines"][1]["baseline"] == "Energy" and row["baselines"][1]["p_holm"] < 0.05
    assert C.table().loc["NeuralFP − each baseline", "bound"] == "difference > 0 vs each of 2 baselines"
    with pytest.raises(TypeError, match="versus_every"):
        C.compare_every("x", "x", Interval(0.0, -0.1, 0.1))


def test_one_model_intervals_are_labelled(mdir):
    from ccc_lib.stats import over_seeds
    C = Claims("03_t", "smoke")
    C.compare("pix", "IOCN − FLOW (pixels)", over_seeds([Interval(0.01, -0.01, 0.03)]))
    C.compare("cnn", "IOCN − FLOW (features)", over_seeds([0.01, 0.02], [-0.01, 0.0], [0.03, 0.04]))
    t = C.table()
    assert t.loc["IOCN − FLOW (pixels)", "interval"].endswith("(one model)")
    assert "one model" not in t.loc["IOCN − FLOW (features)", "interval"]
    rows = {r["key"]: r for r in _file(mdir, "03_t")["claims"]}
    assert rows["pix"]["one_model"] and rows["pix"]["seeds"] == 1 and not rows["cnn"]["one_model"]
