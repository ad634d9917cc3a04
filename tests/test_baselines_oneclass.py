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


@pytest.mark.parametrize("method", ["DeepSVDD", "RCA", "SLAD"])
def test_deepod_wrappers_are_detectors(method):
    x_in, x_out = _blobs(256, 6)
    det = make_oneclass_baseline(f"{method} (deepOD)", deepod_epochs=3).fit(x_in)
    assert isinstance(det, DeepODDetector) and det.est.epochs == 3
    s_in, s_out = det.score(x_in), det.score(x_out)
    assert s_in.shape == (256,) and np.isfinite(s_in).all()
    assert ood_metrics(s_in, s_out)["auroc"] > 0.7


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
    import copy
    ref_est = copy.deepcopy(det.est)
    torch.manual_seed(0)
    fast = det.score(x_te)
    assert det.est._ccc_fast_inference
    torch.manual_seed(0)                                # same shuffle of the training rows' means
    ref = np.asarray(ref_est.decision_function(x_te), dtype=np.float64)     # deepOD's own inference_forward
    np.testing.assert_allclose(fast, ref, rtol=0, atol=2e-5)
    a = lambda s: ood_metrics(s[:30], s[30:])["auroc"]  # noqa: E731
    assert abs(a(fast) - a(ref)) < 0.01
