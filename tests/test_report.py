"""The reproduction report's plumbing: metrics files in, tables out."""
import math

import numpy as np
import pytest
import torch

from ccc_lib import NotCached, load_or_train, report


def _write(tmp_path, monkeypatch, chapters: dict):
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    for stem, metrics in chapters.items():
        report.save_metrics(stem, "smoke", metrics)
    return report.load_metrics()


def _claims_file(tmp_path, monkeypatch, stem, profile, checks, status_fail=False):
    """A chapter's metrics file written by Claims itself (the mechanism every chapter uses)."""
    from ccc_lib.claims import Claims
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    C = Claims(stem, profile)
    for key, ours, op, bound, at in checks:
        if op is None:
            C.report(key, key, ours)
        else:
            C.check(key, key, ours, op, bound, assert_at=at)
    try:
        C.finish(counterfeit_rows=[])
    except AssertionError:
        assert status_fail
    return C


def test_reproduction_summary_reads_claims_records(tmp_path, monkeypatch):
    _claims_file(tmp_path, monkeypatch, "01_a", "smoke", [
        ("x", 1.0, ">=", 0.5, ("smoke",)), ("y", 0.1, ">=", 0.5, ("default",)), ("z", 89.2, None, None, ())])
    _claims_file(tmp_path, monkeypatch, "02_b", "smoke", [("w", 0.1, ">=", 0.5, ("smoke",))], status_fail=True)
    chapters, claims = report.reproduction_summary(report.load_metrics())
    assert chapters.loc["01_a", ["claims judged", "hold", "do not hold", "due here", "failed here"]].tolist() == [2, 1, 1, 1, 0]
    assert chapters.loc["01_a", "status"] == "claims_ok" and chapters.loc["02_b", "status"] == "claims_failed"
    assert chapters.loc["02_b", "failed here"] == 1
    assert len(claims) == 4 and claims["holds"].isna().sum() == 1
    row = claims.set_index("key").loc["y"]
    assert row["bound"] == "≥ 0.5 (ours)" and row["asserted at"] == "default" and not row["due"]


def test_reproduction_summary_reads_pre_claims_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    report.save_metrics("01_old", "smoke", {"paper_vs_ours": [{"claim": "x", "paper": 1, "ours": 1, "holds": True}]})
    chapters, claims = report.reproduction_summary(report.load_metrics())
    assert chapters.loc["01_old", "claims judged"] == 1 and claims.loc[0, "claim"] == "x"


def test_run_problems_names_missing_failed_and_other_profile(tmp_path, monkeypatch):
    _claims_file(tmp_path, monkeypatch, "00_ok", "default", [("x", 1.0, ">=", 0.5, ("default",))])
    _claims_file(tmp_path, monkeypatch, "01_smoke", "smoke", [("x", 1.0, ">=", 0.5, ("default",))])
    _claims_file(tmp_path, monkeypatch, "02_bad", "default", [("q", 0.1, ">=", 0.5, ("default",))], status_fail=True)
    m = report.load_metrics()
    p = report.run_problems(m, "default", ["00_ok", "01_smoke", "02_bad", "03_gone"])
    got = {(r.chapter, r.problem) for r in p.itertuples()}
    assert got == {("01_smoke", "other profile"), ("02_bad", "failed"), ("02_bad", "claims failed"),
                   ("03_gone", "missing")}
    assert "q" in p.set_index("problem").loc["claims failed", "detail"]
    assert report.run_problems(m, "default", ["00_ok"]).empty


def test_verdict_figure_one_row_per_chapter(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    _claims_file(tmp_path, monkeypatch, "00_a", "smoke", [("x", 1.0, ">=", 0.5, ("smoke",)), ("z", 3, None, None, ())])
    _claims_file(tmp_path, monkeypatch, "01_b", "smoke", [("y", 0.1, ">=", 0.5, ("default",))])
    _, claims = report.reproduction_summary(report.load_metrics())
    fig = report.verdict_figure(claims)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["00_a", "01_b"]
    assert len(ax.patches) == 3
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "held, asserted here", "shown, not judged", "failed, recorded only"}


def _row(**kw):
    base = dict(classifier="fashion_mnist", chapter=2, detector="MSP", looks_at="confidence", auroc=0.2,
                flagged_share=0.0, n_counterfeits=100, alpha=0.05)
    return {**base, **kw}


def test_counterfeit_detection_reads_structured_rows(tmp_path, monkeypatch):
    m = _write(tmp_path, monkeypatch, {
        "02_neuralfp": {"counterfeit_rows": [
            _row(detector="NeuralFP (one-out)", looks_at="layers", auroc=0.99, flagged_share=1.0),
            _row(), _row(detector="Mahalanobis", looks_at="features", auroc=0.97, flagged_share=0.9)]},
        "03_iocn": {"counterfeit_rows": [_row(chapter=3, detector="IOCN (pixels)", looks_at="one-class model",
                                              auroc=0.95, flagged_share=0.75, n_counterfeits=98)]}})
    t = report.counterfeit_detection(m)
    assert t["detector"].tolist() == ["MSP", "Mahalanobis", "NeuralFP (one-out)", "IOCN (pixels)"]
    t = t.set_index("detector")
    assert t.loc["MSP", "looks at"] == "the classifier's confidence" and t.loc["MSP", "AUROC"] == 0.2
    assert t.loc["IOCN (pixels)", "flagged"] == 0.75 and t.loc["IOCN (pixels)", "counterfeits"] == 98
    assert math.isclose(t.loc["MSP", "false-alarm budget"], 0.05)
    assert report.counterfeit_detection({}).empty                        # no chapter ran: an empty table


@pytest.mark.parametrize("bad, match", [
    ({"looks_at": "pixels"}, "looks_at"), ({"auroc": 1.5}, "auroc"), ({"flagged_share": "high"}, "flagged_share"),
    ({"extra": 1}, "CounterfeitRow"), ({"chapter": None, "classifier": None, "auroc": -0.1}, "auroc")])
def test_counterfeit_rows_are_validated(bad, match):
    row = _row(**bad)
    with pytest.raises(ValueError, match=match):
        report.counterfeit_rows({"02_x": {"metrics": {"counterfeit_rows": [row]}}})


def test_cache_only_never_trains(tmp_path):
    calls = []
    with pytest.raises(NotCached, match="no usable"):
        load_or_train(torch.nn.Linear(2, 2), "t", {"k": 1}, lambda m: calls.append(1), root=tmp_path, cache_only=True)
    assert not calls and not list(tmp_path.iterdir())
    load_or_train(torch.nn.Linear(2, 2), "t", {"k": 1}, lambda m: {}, root=tmp_path)
    assert load_or_train(torch.nn.Linear(2, 2), "t", {"k": 1}, None, root=tmp_path, cache_only=True)["from_cache"]


def test_glue_range_returns_the_range_and_skips_nan():
    assert report.glue_range("x", [0.5, float("nan"), 0.25]) == (0.25, 0.5)
    lo, hi = report.glue_range("y", [])
    assert math.isnan(lo) and math.isnan(hi)


def test_report_shows_verdicts_with_intervals(tmp_path, monkeypatch):
    from ccc_lib.claims import Claims
    from ccc_lib.stats import Interval
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    C = Claims("02_new", "smoke")
    C.check("clear", "clears", Interval(0.97, 0.96, 0.98), ">=", 0.95, assert_at=("smoke",))
    C.check("open", "straddles", Interval(0.96, 0.94, 0.98), ">=", 0.95, assert_at=("smoke",))
    C.compare("tie", "A − B", Interval(0.001, -0.002, 0.004))
    C.compare("win", "C − D", Interval(0.01, 0.005, 0.015))
    C.check("point", "no interval", 0.9, ">=", 0.5)
    C.finish()
    report.save_metrics("01_old", "smoke", {"paper_vs_ours": [{"claim": "x", "paper": 1, "ours": 1, "holds": True}]})
    chapters, claims = report.reproduction_summary(report.load_metrics())
    assert chapters.loc["02_new", ["claims judged", "hold", "not resolved"]].tolist() == [5, 5, 2]
    assert chapters.loc["01_old", "not resolved"] == 0
    c = claims.set_index("key")
    assert c.loc["clear", "verdict"] == "holds" and c.loc["clear", "interval"] == "[0.96, 0.98]"
    assert c.loc["open", "verdict"] == "not resolved" and c.loc["open", "holds"]
    assert c.loc["tie", "verdict"] == "tie within uncertainty" and c.loc["tie", "kind"] == "compare"
    assert c.loc["win", "verdict"] == "wins" and c.loc["point", "interval"] == ""
    assert c.loc["x", "verdict"] == "holds" and c.loc["x", "interval"] == ""           # a file from before intervals
    import matplotlib
    matplotlib.use("Agg")
    fig = report.verdict_figure(claims)
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert legend == {"held, asserted here", "held, recorded only", "not resolved (interval straddles the bound)"}


def test_report_reads_an_interval_without_its_text(tmp_path, monkeypatch):
    import json
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    (tmp_path / "03_x.json").write_text(json.dumps({"chapter": "03_x", "profile": "smoke", "claims": [
        {"key": "k", "claim": "k", "paper": "not reported", "ours": 0.5, "bound": "≥ 0.4 (ours)", "holds": True,
         "asserted at": "", "due": False, "interval": [0.45, 0.55], "level": 0.9}]}))
    _, claims = report.reproduction_summary(report.load_metrics())
    assert claims.loc[0, "interval"] == "[0.4, 0.6]" and claims.loc[0, "verdict"] == "holds"


def test_verdicts_glued_without_an_interval_are_listed(tmp_path, monkeypatch):
    from ccc_lib.claims import Claims
    from ccc_lib.stats import Interval
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    C = Claims("02_g", "smoke")
    C.check("a", "point only", 0.9, ">=", 0.5)
    C.compare("b", "A − B", Interval(0.01, 0.005, 0.02))
    C.glue_verdict("ch_a", "a")
    C.glue_verdict("ch_b", "b")
    t = report.verdicts_without_interval(report.load_metrics())
    assert t.to_dict("records") == [{"chapter": "02_g", "name": "ch_a", "key": "a", "words": "reproduced"}]


def test_comparisons_table_lists_every_chapters_differences(tmp_path, monkeypatch):
    from ccc_lib.claims import Claims
    from ccc_lib.stats import Interval
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    C = Claims("03_c", "smoke")
    C.compare("iocn_flow", "IOCN − FLOW (AUROC)", Interval(-0.0088, -0.02, 0.003, method="paired DeLong"),
              a=Interval(0.95, 0.94, 0.96), b=Interval(0.96, 0.95, 0.97))
    C.check("x", "not a comparison", 0.9, ">=", 0.5)
    report.save_metrics("01_old", "smoke", {})
    t = report.comparisons(report.load_metrics())
    assert t.to_dict("records") == [{"chapter": "03_c", "key": "iocn_flow", "comparison": "IOCN − FLOW (AUROC)",
                                     "difference": "-0.009 [-0.02, 0.01]", "verdict": "tie within uncertainty",
                                     "A": "0.950 [0.94, 0.96]", "B": "0.960 [0.95, 0.97]", "level": 0.95,
                                     "method": "paired DeLong", "margin": None, "baselines": None}]
    # equivalence claims and comparisons against every baseline are listed too
    from ccc_lib.stats import versus_every
    C.matches("iocn_match", "IOCN matches KNN", Interval(0.001, -0.004, 0.006, 0.90), settings={"m": 0.01},
              margin_key="m")
    C.compare_every("iocn_every", "IOCN − each baseline", versus_every({"KNN": Interval(0.02, 0.01, 0.03),
                                                                       "LOF": Interval(0.01, -0.01, 0.03)}))
    t = report.comparisons(report.load_metrics()).set_index("key")
    assert t.loc["iocn_match", "verdict"] == "holds" and t.loc["iocn_match", "margin"] == 0.01
    assert t.loc["iocn_every", "verdict"] == "tie within uncertainty" and t.loc["iocn_every", "baselines"] == 2


def test_cross_chapter_margin_has_a_simultaneous_interval(tmp_path, monkeypatch):
    """Chapter 5's verdict (every detector beyond confidence above every confidence score) as a margin with
    a Bonferroni interval over the rows' AUROC intervals; without intervals, the number alone and who lacks one."""
    from ccc_lib.stats import auroc_ci
    rng = np.random.default_rng(0)
    ivs = {name: auroc_ci(rng.normal(size=200), rng.normal(d, 1, size=150))
           for name, d in (("MSP", 0.3), ("NFP", 2.5), ("IOCN", 2.0))}
    rows = [_row(detector="MSP", auroc=ivs["MSP"].estimate, auroc_lo=ivs["MSP"].lo, auroc_hi=ivs["MSP"].hi),
            _row(detector="NFP", looks_at="layers", auroc=ivs["NFP"].estimate, auroc_lo=ivs["NFP"].lo,
                 auroc_hi=ivs["NFP"].hi),
            _row(chapter=3, detector="IOCN", looks_at="one-class model", auroc=ivs["IOCN"].estimate,
                 auroc_lo=ivs["IOCN"].lo, auroc_hi=ivs["IOCN"].hi)]
    m = _write(tmp_path, monkeypatch, {"02_neuralfp": {"counterfeit_rows": rows[:2]}, "03_iocn": {"counterfeit_rows": rows[2:]}})
    out = report.counterfeit_margin(m)
    iv = out["interval"]
    assert math.isclose(out["estimate"], ivs["IOCN"].estimate - ivs["MSP"].estimate)
    assert iv.lo < ivs["IOCN"].lo - ivs["MSP"].hi and iv.hi > ivs["IOCN"].hi - ivs["MSP"].lo   # wider: simultaneous
    assert iv.lo > 0 and "Bonferroni over 3" in iv.method and out["without_interval"] == []
    assert report.counterfeit_detection(m).set_index("detector").loc["MSP", "AUROC interval"].startswith("[")
    rows[1].pop("auroc_lo"), rows[1].pop("auroc_hi")
    m = _write(tmp_path, monkeypatch, {"02_neuralfp": {"counterfeit_rows": rows[:2]}, "03_iocn": {"counterfeit_rows": rows[2:]}})
    out = report.counterfeit_margin(m)
    assert out["interval"] is None and out["estimate"] is not None and out["without_interval"] == ["fashion_mnist: NFP"]
    assert report.counterfeit_margin({})["estimate"] is None
    with pytest.raises(ValueError, match="both"):
        report.CounterfeitRow(**_row(auroc_lo=0.1))
