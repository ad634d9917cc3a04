"""Unit tests for the one-class baselines of chapter 3 (the PyOD and deepOD section of
ccc_lib.baselines): the book's interface, higher = more outlying, and input validation."""
import numpy as np
import pytest
import torch

from ccc_lib import Detector, InputError, NotFittedError
from ccc_lib.baselines import (DEEPOD_METHODS, ONECLASS_BASELINES, PYOD_METHODS, DeepODDetector, PyODDetector,
                               make_oneclass_baseline)
from ccc_lib.metrics import ood_metrics


def _blobs(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), (rng.standard_normal((n, d)) + 4.0).astype(np.float32)


@pytest.mark.parametrize("method", ["KNN", "KDE", "PCA", "COPOD", "IForest"])
def test_pyod_wrappers_are_detectors(method):
    x_in, x_out = _blobs()
    det = make_oneclass_baseline(method).fit(x_in)
    assert isinstance(det, Detector) and isinstance(det, PyODDetector)
    s_in, s_out = det.score(x_in), det.score(torch.as_tensor(x_out))
    assert s_in.dtype == np.float64 and s_in.shape == (300,)
    assert ood_metrics(s_in, s_out)["auroc"] > 0.9            # higher = more outlying


def test_copod_scores_in_chunks_so_the_test_set_does_not_define_normal():
    """PyOD's COPOD refits its CDFs on train ∪ scored rows: we score ≤ 1 % of the training size at once."""
    x_in, x_out = _blobs(500)
    det = make_oneclass_baseline("COPOD").fit(x_in)
    seen, orig = [], det.est.decision_function
    det.est.decision_function = lambda x: (seen.append(len(x)), orig(x))[1]
    s = det.score(np.concatenate([x_in[:50], x_out]))
    assert max(seen) == 5 and sum(seen) == 550
    assert ood_metrics(s[:50], s[50:])["auroc"] > 0.9


pytest.importorskip("deepod")


def _planted(n=256, d=6, n_out=64, seed=0):
    """Inliers near a 2-d curved manifold in d dimensions, standardised (z-scored on themselves, as the
    chapter's inputs), and planted outliers off it: Gaussian noise of comparable size in all d features."""
    rng = np.random.default_rng(seed)
    x = np.tanh(rng.standard_normal((n, 2)) @ rng.standard_normal((2, d))) + 0.05 * rng.standard_normal((n, d))
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), (1.5 * rng.standard_normal((n_out, d))).astype(np.float32)


#: a small budget per row (GOAD with 64 transformations instead of 256 to keep the test quick)
_SMALL = {"DeepSVDD": ({}, 3), "RCA": ({}, 3), "ICL": ({}, 3), "GOAD": ({"n_trans": 64}, 3), "SLAD": ({}, 3)}


@pytest.mark.parametrize("method", list(DEEPOD_METHODS))
def test_every_deepod_row_scores_planted_outliers_above_inliers(method):
    """Every deepOD row of the chapter (ICL and GOAD included), on standardised data at a small budget,
    ranks planted outliers above held-out inliers, and records its training-loss curve per epoch."""
    kw, epochs = _SMALL[method]
    x_in, x_out = _planted()
    det = make_oneclass_baseline(f"{method} (deepOD)", deepod_epochs=epochs, **kw).fit(x_in[:192])
    assert isinstance(det, DeepODDetector) and det.est.epochs == epochs
    s_in, s_out = det.score(x_in[192:]), det.score(x_out)
    assert s_in.shape == (64,) and np.isfinite(s_in).all()
    assert ood_metrics(s_in, s_out)["auroc"] > 0.75
    h = det.history
    assert h["epochs"] == epochs == len(h["loss"]) == len(h["epoch_seconds"]) and h["steps"] >= epochs
    assert np.isfinite(h["loss"]).all()


def test_goad_initialisation_fix_changes_the_weights():
    """deepOD 0.4.1 calls weights_init(net) on the whole GoadNet, which matches none of its cases: the
    initialisation never runs. Ours applies it to every module, so the initial weights differ from
    PyTorch's default initialisation (same seed), and are xavier-normal with gain √2."""
    x_in, _ = _planted(64, 4)
    nets = {}
    for fixes in (False, True):
        det = DeepODDetector("GOAD", epochs=1, fixes=fixes, n_trans=8)
        captured = []
        import deepod.models.tabular.goad as goad
        orig = goad.GOAD._training
        det_est_training = lambda self: captured.append({k: v.clone() for k, v in self.net.state_dict().items()})  # noqa: E731
        goad.GOAD._training = det_est_training
        try:
            det.fit(x_in)
        finally:
            goad.GOAD._training = orig
        nets[fixes] = captured[0]
        assert ("GOAD weights_init applied to every module" in det.fixes) == fixes
    conv = [k for k in nets[True] if k.endswith("weight")]
    assert conv and all(not torch.equal(nets[True][k], nets[False][k]) for k in conv)
    w = nets[True][conv[0]]
    fan_in, fan_out = w.shape[1] * w.shape[2], w.shape[0] * w.shape[2]
    expected = np.sqrt(2.0) * np.sqrt(2.0 / (fan_in + fan_out))          # xavier_normal_, gain √2
    assert 0.5 * expected < float(w.std()) < 1.5 * expected


def test_icl_ensemble_is_one_net_and_slad_weights_are_ones_on_uncorrelated_features():
    """deepOD's ensemble retrains self.net and keeps the last: ICL gets n_ensemble=1. SLAD's |Pearson r|
    weights are degenerate on uncorrelated features (PCA components): all ones instead."""
    x_in, _ = _planted(128, 5)
    icl = make_oneclass_baseline("ICL (deepOD)", deepod_epochs=1).fit(x_in)
    assert icl.est.n_ensemble == 1 and "ICL n_ensemble=1" in icl.fixes
    raw = make_oneclass_baseline("ICL (deepOD)", deepod_epochs=1, deepod_fixes=False).fit(x_in)
    assert raw.est.n_ensemble > 1                                  # deepOD's 'auto'
    from sklearn.decomposition import PCA
    z = PCA(5).fit_transform(x_in).astype(np.float32)             # uncorrelated by construction
    slad = make_oneclass_baseline("SLAD (deepOD)", deepod_epochs=1).fit(z)
    assert np.array_equal(slad.est.f_weight, np.ones(5)) and any(f.startswith("SLAD feature weights") for f in slad.fixes)
    slad_raw = make_oneclass_baseline("SLAD (deepOD)", deepod_epochs=1, deepod_fixes=False).fit(z)
    assert slad_raw.est.f_weight.min() == 0 and slad_raw.est.f_weight.max() == 1     # rounding stretched to [0, 1]
    corr = x_in @ np.array([[1.0, 0.9, 0, 0, 0]] * 5).T             # correlated features keep deepOD's weights
    slad_c = make_oneclass_baseline("SLAD (deepOD)", deepod_epochs=1).fit(corr.astype(np.float32) + 0.1 * x_in)
    assert not slad_c.fixes


def test_plateau_test():
    from ccc_lib.baselines import plateau
    assert plateau(np.r_[np.linspace(2, 1, 80), np.full(20, 1.0)])["plateaued"] is True
    p = plateau(np.linspace(2, 1, 100))
    assert p["plateaued"] is False and p["improvement"] > 0.01
    assert plateau([1.0])["plateaued"] is None


def test_row_names():
    assert ONECLASS_BASELINES[:len(PYOD_METHODS)] == tuple(PYOD_METHODS)
    assert {n[:-len(" (deepOD)")] for n in ONECLASS_BASELINES if n.endswith("(deepOD)")} == set(DEEPOD_METHODS)


_NAN = np.ones((5, 4), np.float32); _NAN[1, 1] = np.nan


@pytest.mark.parametrize("name", ["KNN", "COPOD", "DeepSVDD (deepOD)"])
@pytest.mark.parametrize("bad,match", [(_NAN, "non-finite"), (np.ones((0, 4), np.float32), "no rows"),
                                       (np.ones((5, 3), np.float32), "3 features per row but the model was fitted on 4"),
                                       (np.ones((5, 2, 2), np.float32), "expected N×D")])
def test_score_rejects_bad_input(name, bad, match):
    x_in, _ = _blobs(64)
    det = make_oneclass_baseline(name, deepod_epochs=1).fit(x_in)
    with pytest.raises(InputError, match=match):
        det.score(bad)


@pytest.mark.parametrize("name", ["KNN", "IForest", "SLAD (deepOD)"])
@pytest.mark.parametrize("bad,match", [(_NAN, "non-finite"), (np.ones((1, 4), np.float32), "at least 2"),
                                       (np.ones(8, np.float32), "expected N×D")])
def test_fit_rejects_bad_input(name, bad, match):
    with pytest.raises(InputError, match=match):
        make_oneclass_baseline(name, deepod_epochs=1).fit(bad)


@pytest.mark.parametrize("name", ["KNN", "RCA (deepOD)"])
def test_score_before_fit(name):
    with pytest.raises(NotFittedError, match="fit"):
        make_oneclass_baseline(name).score(np.ones((3, 4), np.float32))


@pytest.mark.parametrize("name", ["LOF", "GOAD", "foo (deepOD)"])
def test_unknown_baseline(name):
    with pytest.raises(InputError, match="unknown"):
        make_oneclass_baseline(name)


def test_goad_fast_scores_match_deepods_own():
    """GOAD's test scores through the book's faster distance computation equal deepOD's own."""
    rng = np.random.default_rng(0)
    x_in = rng.standard_normal((80, 4)).astype(np.float32)
    x_te = np.r_[rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) + 3].astype(np.float32)
    det = make_oneclass_baseline("GOAD (deepOD)", deepod_epochs=1, n_trans=16).fit(x_in)
    assert det.fixes == ["GOAD weights_init applied to every module"]
    import copy
    ref_est = copy.deepcopy(det.est)
    torch.manual_seed(0)
    fast = det.score(x_te)
    assert det.est._ccc_fast_inference
    torch.manual_seed(0)                                # same shuffle of the training rows' means
    ref = np.asarray(ref_est.decision_function(x_te), dtype=np.float64)     # deepOD's own inference_forward
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=2e-5)
    a = lambda s: ood_metrics(s[:30], s[30:])["auroc"]  # noqa: E731
    assert abs(a(fast) - a(ref)) < 0.01


def test_goad_fast_training_loss_equals_deepods():
    """GOAD's training loss through the book's matrix-product distances equals deepOD's GoadLoss."""
    from deepod.models.tabular.goad import GoadLoss
    from ccc_lib.baselines import _goad_loss
    torch.manual_seed(0)
    rep, pred = torch.randn(16, 32, 8), torch.randn(16, 32, 32)
    labels = torch.arange(32).unsqueeze(0).expand(16, 32)
    ref = GoadLoss(alpha=0.1, margin=1.0, device="cpu")(rep, pred, labels)
    assert torch.allclose(_goad_loss(rep, pred, labels, alpha=0.1, margin=1.0), ref, rtol=1e-5, atol=1e-5)
