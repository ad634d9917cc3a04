"""Unit tests for the one-class baselines of chapter 3 (ccc_lib.oneclass, re-exported by ccc_lib.baselines):
the book's interface, higher = more outlying, input validation, GOAD's faster training and scoring against
deepOD's own, the training hook, and the fixes."""
import numpy as np
import pytest
import torch

from ccc_lib import Detector, InputError, NotFittedError
from ccc_lib.baselines import (DEEPOD_FIXES, DEEPOD_METHODS, ONECLASS_BASELINES, PYOD_METHODS, DeepODDetector,
                               PyODDetector, make_oneclass_baseline, plateau)
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


def test_goad_initialisation_patch_is_off_by_default_and_changes_the_weights_when_asked():
    """deepOD 0.4.1 calls weights_init(net) on the whole GoadNet, which matches none of its cases (GOAD's original
    code makes the same call): PyTorch's default initialisation is used, and the book keeps it. With
    goad_init_patch=True (a labelled side row) weights_init is applied to every module: xavier-normal, gain √2."""
    x_in, _ = _planted(64, 4)
    nets = {}
    assert "GOAD" not in DEEPOD_FIXES
    for patch in (False, True):
        det = DeepODDetector("GOAD", epochs=1, goad_init_patch=patch, n_trans=8)
        captured = []
        import deepod.models.tabular.goad as goad
        orig = goad.GOAD._training
        goad.GOAD._training = lambda self: captured.append({k: v.clone() for k, v in self.net.state_dict().items()})
        try:
            det.fit(x_in)
        finally:
            goad.GOAD._training = orig
        nets[patch] = captured[0]
        assert ("GOAD weights_init applied to every module" in det.fixes) == patch
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
    """GOAD's test scores through the book's faster net and distances equal deepOD's own."""
    rng = np.random.default_rng(0)
    x_in = rng.standard_normal((80, 4)).astype(np.float32)
    x_te = np.r_[rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) + 3].astype(np.float32)
    det = make_oneclass_baseline("GOAD (deepOD)", deepod_epochs=2, n_trans=16).fit(x_in)
    assert det.fixes == []
    import copy
    from deepod.models.tabular.goad import GoadNet
    ref_est = copy.deepcopy(det.est)
    del ref_est.inference_forward                       # deepOD's own inference_forward and GoadNet.forward
    ref_est.net.__class__ = GoadNet
    assert type(det.est.net) is not GoadNet and isinstance(det.est.net, GoadNet)
    torch.manual_seed(0)
    fast = det.score(x_te)
    torch.manual_seed(0)                                # same shuffle of the training rows' means
    ref = np.asarray(ref_est.decision_function(x_te), dtype=np.float64)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=2e-5)
    a = lambda s: ood_metrics(s[:30], s[30:])["auroc"]  # noqa: E731
    assert abs(a(fast) - a(ref)) < 0.01


def test_goad_loss_and_gradients_equal_deepods_on_a_trained_net():
    """GOAD's training through the book's net (1×1 convolutions as matrix products) and loss (cross-entropy on
    the contiguous axis, the nearest other mean found without gradient) gives deepOD's GoadNet outputs and
    GoadLoss value, and the same gradients for every parameter, on a net trained for a while (not at init)."""
    import copy
    from deepod.models.tabular.goad import GoadLoss, GoadNet
    from ccc_lib.oneclass import _fast_goad_net_class, goad_loss
    torch.manual_seed(0)
    net = GoadNet(12, n_hidden=8, n_layers=5, n_output=24)
    x, labels = torch.randn(16, 12, 24), torch.arange(24).unsqueeze(0).expand(16, 24)
    ref_loss = GoadLoss(alpha=0.1, margin=1.0, device="cpu")
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(40):                                  # a trained net: the triplet term's margins are active
        rep, pred = net(x)
        loss = ref_loss(rep.permute(0, 2, 1), pred, labels)
        opt.zero_grad(); loss.backward(); opt.step()
    fast = copy.deepcopy(net)
    fast.__class__ = _fast_goad_net_class()
    (r1, p1), (r2, p2) = net(x), fast(x)
    assert torch.allclose(r1, r2, atol=1e-5) and torch.allclose(p1, p2, atol=1e-5)
    l1 = ref_loss(r1.permute(0, 2, 1), p1, labels)
    l2 = goad_loss(r2.permute(0, 2, 1), p2, labels, alpha=0.1, margin=1.0)
    assert torch.allclose(l1, l2, rtol=1e-5, atol=1e-6)
    g1 = torch.autograd.grad(l1, list(net.parameters()))
    g2 = torch.autograd.grad(l2, list(fast.parameters()))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max()) + 1e-9)
    assert any(float(g.abs().max()) > 0 for g in g1)
    tc = ref_loss(r1.permute(0, 2, 1), p1, labels) - torch.nn.functional.cross_entropy(p1, labels)
    assert float(tc.detach()) > 0                         # the triplet term is not zero on this net


def test_goad_separates_digits_where_it_is_known_to_work():
    """A sanity check that a future change cannot break GOAD silently: at deepOD's defaults (20 epochs),
    trained on one class of scikit-learn's 8×8 digits (pixel values / 16) it ranks the other classes' digits
    above held-out digits of that class (0.89-0.90 measured with 64 transformations)."""
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    inl = rng.permutation(np.flatnonzero(y == 6))
    tr, te = (X[inl[:120]] / 16).astype(np.float32), (X[inl[120:]] / 16).astype(np.float32)
    out = (X[y != 6][::4] / 16).astype(np.float32)
    det = make_oneclass_baseline("GOAD (deepOD)", deepod_epochs=20).fit(tr)
    assert ood_metrics(det.score(te), det.score(out))["auroc"] > 0.8


def test_monitor_sees_the_net_without_changing_its_training_and_can_stop_it():
    """The epoch hook: a monitored run trains exactly as an unmonitored one (random generators, train mode and
    deepOD's loss reduction restored after each check), what it returns is recorded, and {"stop": True} ends
    the training after that epoch, as if the cap were there."""
    x_in, x_out = _planted(128, 5)
    for method in ("DeepSVDD", "ICL", "GOAD", "SLAD"):
        kw = {"n_trans": 8} if method == "GOAD" else {}
        plain = DeepODDetector(method, epochs=4, **kw).fit(x_in)
        seen = DeepODDetector(method, epochs=4, monitor=lambda e, score: {"mean": float(score(x_out).mean())}, **kw).fit(x_in)
        assert plain.history["loss"] == seen.history["loss"]
        np.testing.assert_array_equal(plain.score(x_out), seen.score(x_out))
        assert [r["epoch"] for r in seen.history["monitor"]] == [1, 2, 3, 4] and not seen.history["stopped_early"]
        stop = DeepODDetector(method, epochs=4, monitor=lambda e, score: {"stop": e >= 2}, **kw).fit(x_in)
        two = DeepODDetector(method, epochs=2, **kw).fit(x_in)
        assert stop.history["epochs"] == 2 and stop.history["stopped_early"]
        assert stop.history["loss"] == two.history["loss"]


def test_relative_improvement_test_is_blind_to_goads_slow_fall():
    """Why the chapter does not judge GOAD by the loss's relative improvement: a loss near ln 256 that falls 3 %
    over 90 epochs passes it (a 'plateau') although the model keeps changing."""
    loss = np.log(256) * np.linspace(1.021, 0.990, 100)
    assert plateau(loss)["plateaued"]
