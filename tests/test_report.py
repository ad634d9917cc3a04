"""The reproduction report's plumbing: metrics files in, tables out."""
import math

import pytest
import torch

from ccc_lib import NotCached, load_or_train, report


def _write(tmp_path, monkeypatch, chapters: dict):
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    for stem, metrics in chapters.items():
        report.save_metrics(stem, "smoke", metrics)
    return report.load_metrics()


def test_reproduction_summary_counts_only_checked_claims(tmp_path, monkeypatch):
    m = _write(tmp_path, monkeypatch, {
        "01_a": {"paper_vs_ours": [{"claim": "x", "paper": 1, "ours": 1, "holds": True},
                                   {"claim": "y", "paper": 1, "ours": 0, "holds": False},
                                   {"claim": "z", "paper": 96.5, "ours": 89.2, "holds": None}]},
        "02_b": {"paper_vs_ours": []}})
    chapters, claims = report.reproduction_summary(m)
    assert chapters.loc["01_a", ["claims", "hold", "do not hold"]].tolist() == [2, 1, 1]
    assert chapters.loc["01_a", "profile"] == "smoke" and chapters.loc["02_b", "claims"] == 0
    assert len(claims) == 3 and claims["holds"].isna().sum() == 1


def test_counterfeit_detection_merges_chapters_2_and_3(tmp_path, monkeypatch):
    m = _write(tmp_path, monkeypatch, {
        "02_neuralfp": {"counterfeits_alpha": 0.05, "counterfeits": [
            {"model": "fashion_mnist", "counterfeits": 100, "confidence ≥ 0.99": 98,
             "MSP: flagged": 0.0, "MSP: AUROC": 0.2, "Mahalanobis (ε=0): flagged": 0.9,
             "Mahalanobis (ε=0): AUROC": 0.97, "NeuralFP (one-out, max |z|): flagged": 1.0,
             "NeuralFP (one-out, max |z|): AUROC": 0.99}]},
        "03_iocn": {"counterfeits": {"dataset": "fashion_mnist", "alpha": 0.05, "n": 98, "per_method": [
            {"features": "pixels", "method": "IOCN", "counterfeits": 98, "mean AUROC over classes": 0.95,
             "flagged at 5% false alarms": 0.75}], "iocn_cube": {}}}})
    t = report.counterfeit_detection(m).set_index("detector")
    assert len(t) == 4 and set(t["chapter"]) == {2, 3}
    assert t.loc["MSP", "looks at"] == "the classifier's confidence" and t.loc["MSP", "AUROC"] == 0.2
    assert t.loc["Mahalanobis (ε=0)", "looks at"] == "the classifier's features"
    assert t.loc["NeuralFP (one-out, max |z|)", "looks at"].endswith("(fingerprints)")
    assert t.loc["IOCN (pixels)", "flagged"] == 0.75 and t.loc["IOCN (pixels)", "counterfeits"] == 98
    assert math.isclose(t.loc["MSP", "false-alarm budget"], 0.05)
    assert report.counterfeit_detection({}).empty                        # no chapter ran: an empty table


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
