"""Unit tests of ccc_lib.neuralfp (tiny CNN, synthetic data, CPU, a few seconds)."""
import numpy as np
import pytest
import torch

from ccc_lib import Detector, build_classifier, ood_metrics, set_seed
from ccc_lib import neuralfp as nfp
from ccc_lib.data import TensorData

TAPS = ("act1", "pool1", "act2", "pool3", "act_fc", "logits")


def _blobs(n, seed):
    """In-distribution images: a bright square at one of 4 places (class = place), little noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.05 * torch.rand(n, 1, 28, 28, generator=g)
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, 4 + 12 * r:12 + 12 * r, 4 + 12 * col:12 + 12 * col] += 0.9
    return TensorData(x.clamp(0, 1), y, ["a", "b", "c", "d"], "blobs", "train")


@pytest.fixture(scope="module")
def fitted(tiny_classifier):
    model = tiny_classifier(4)
    det = nfp.NeuralFP(model, TAPS, pool_to=2, epochs=4, batch_size=64, alpha=0.1)
    det.fit(_blobs(600, 0), calib_frac=0.3)
    return model, det


def test_settings_every_profile():
    for prof in ("smoke", "default", "full"):
        s = nfp.settings(prof)
        assert set(s["taps"]) <= set(build_classifier().layer_names)
        assert 0 < s["alpha"] < 1
    assert nfp.settings("smoke", epochs=1)["epochs"] == 1
    with pytest.raises(ValueError):
        nfp.settings("smoke", no_such_setting=1)


def test_reduce_and_collect_shapes():
    a = torch.randn(3, 8, 14, 14)
    assert nfp.reduce_activation(a, 2).shape == (3, 32)
    assert nfp.reduce_activation(torch.randn(3, 8, 3, 3), 4).shape == (3, 72)   # not pooled up
    assert nfp.reduce_activation(torch.randn(3, 10), 2).shape == (3, 10)
    model = build_classifier(num_classes=4, widths=(4, 8, 8), fc=16).eval()
    acts = nfp.collect_activations(model, torch.rand(5, 1, 28, 28), TAPS, pool_to=2, batch_size=2)
    assert acts["act1"].shape == (5, 16) and acts["pool3"].shape == (5, 32)
    assert acts["_logits"].shape == (5, 4) and acts["_features"].shape == (5, 16)


def test_is_a_detector_and_scores(fitted):
    model, det = fitted
    assert isinstance(det, Detector)
    x_in = _blobs(200, 1).x
    x_out = torch.rand(200, 1, 28, 28)
    s_in, s_out = det.score(x_in), det.score(x_out)
    assert s_in.shape == (200,) and np.isfinite(s_in).all() and (s_in >= 0).all()
    assert ood_metrics(s_in, s_out)["auroc"] > 0.9
    # score(x) equals the score from one shared pass of the classifier
    e = det.errors_from_activations(nfp.collect_activations(model, x_in, TAPS, 2))
    np.testing.assert_allclose(det.score_errors(e), s_in, rtol=1e-5, atol=1e-6)
    assert det.errors(x_in).shape == (200, len(TAPS))


def test_joint_rule_is_the_max_score_and_holds_budget(fitted):
    _, det = fitted
    det.set_rule("joint", 0.1)
    x = torch.cat([_blobs(100, 2).x, torch.rand(50, 1, 28, 28)])
    e = det.errors(x)
    # the one-out rule with tau/mu = exp(m ± t s) is exactly "max |z| > t"
    np.testing.assert_array_equal(det.is_outlier(errors=e), det.score_errors(e) > det.threshold)
    cal = np.exp(det.cal_log_errors)
    assert det.is_outlier(errors=cal).mean() <= 0.1 + 1.0 / len(cal)
    th = det.thresholds
    assert all(lo < hi for lo, hi in th.values()) and list(th) == list(TAPS)


def test_literal_rule_compounds_and_fixes(fitted):
    _, det = fitted
    cal = np.exp(det.cal_log_errors)
    rows = {r["rule"]: r for r in nfp.false_alarm_table(det, cal, {"noise": det.errors(torch.rand(50, 1, 28, 28))}, alpha=0.1)}
    assert rows["literal"]["false alarms (ID test)"] > rows["joint"]["false alarms (ID test)"]
    assert rows["literal"]["false alarms (ID test)"] > 0.1 + 0.05      # per-layer 10 % adds up
    assert rows["bonferroni"]["false alarms (ID test)"] <= 0.1 + 0.05
    assert det.rule == "joint" and det.combine == "max"                  # restored


def test_upper_and_mahalanobis_variants(fitted):
    _, det = fitted
    e = det.errors(_blobs(50, 3).x)
    for c in nfp.COMBINES:
        s = det.score_errors(e, c)
        assert s.shape == (50,) and np.isfinite(s).all()
    det.combine = "upper"
    det.set_rule("joint", 0.1)
    assert np.isneginf(det.log_mu).all()
    det.combine = "mahalanobis"
    det.set_rule("joint", 0.1)
    np.testing.assert_array_equal(det.is_outlier(errors=e), det.score_errors(e) > det.threshold)
    det.combine = "max"
    det.set_rule("joint", 0.1)


def test_errors_can_flag_low_side(fitted):
    _, det = fitted
    det.set_rule("literal", 0.1)
    lo = np.exp(det.log_mu - 1.0)[None, :].repeat(3, 0)    # every layer abnormally well reconstructed
    assert det.is_outlier(errors=lo).all()
    mid = np.exp((det.log_mu + det.log_tau) / 2)[None, :]
    assert not det.is_outlier(errors=mid).any()
    det.set_rule("joint", 0.1)


def test_bad_arguments():
    model = build_classifier(num_classes=4, widths=(4, 8, 8), fc=16)
    with pytest.raises(ValueError):
        nfp.NeuralFP(model, combine="sum")
    with pytest.raises(RuntimeError):
        nfp.NeuralFP(model).errors(torch.rand(2, 1, 28, 28))


def test_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    set_seed(0)
    model = build_classifier(num_classes=4, widths=(4, 8, 8), fc=16).eval()
    data = _blobs(200, 5)
    key = {"classifier": "unit-test", "dataset": "blobs"}
    a = nfp.NeuralFP(model, TAPS, epochs=1).fit(data, cache_key=key)
    b = nfp.NeuralFP(model, TAPS, epochs=1).fit(data, cache_key=key)
    assert not a.fit_info["from_cache"] and b.fit_info["from_cache"]
    x = _blobs(20, 6).x
    np.testing.assert_allclose(a.score(x), b.score(x), rtol=1e-5)
    assert list(tmp_path.glob("checkpoints/neuralfp-*.pt"))


def test_counterfeit_generator_is_never_trained_here(tmp_path, monkeypatch):
    from ccc_lib import NotCached
    from ccc_lib import counterfeits as cf
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    model = build_classifier(num_classes=4, widths=(4, 8, 8), fc=16).eval()
    with pytest.raises(NotCached):
        cf.get_generator(model, "blobs", "smoke", cache_only=True)
    assert not list(tmp_path.glob("checkpoints/generator-*.pt"))
