"""Unit tests of ccc_lib.baselines: the pytorch-ood wrappers follow the Detector contract."""
import numpy as np
import pytest
import torch
from pytorch_ood import detector as pod

from ccc_lib import Detector, build_classifier, ood_metrics, set_seed
from ccc_lib import baselines as bl
from ccc_lib.data import TensorData


@pytest.fixture(scope="module")
def setup(tiny_classifier):
    model = tiny_classifier(3)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    x = 0.1 * torch.rand(90, 1, 28, 28, generator=g)
    for i, c in enumerate(y.tolist()):
        x[i, 0, 9 * c:9 * c + 9, :] += 0.8
    train = TensorData(x.clamp(0, 1), y, ["a", "b", "c"], "stripes", "train")
    return model, train, bl.make_baselines(model, train, eps=0.002)


def test_all_are_detectors(setup):
    _, _, dets = setup
    assert set(dets) == {"MSP", "Energy", "ODIN", "Mahalanobis", "Mahalanobis+perturbation"}
    x = torch.rand(7, 1, 28, 28)
    for name, d in dets.items():
        assert isinstance(d, Detector)
        s = d.score(x, batch_size=3)
        assert s.shape == (7,) and np.isfinite(s).all(), name


def test_logit_scores_match(setup):
    model, train, dets = setup
    x = train.x[:20]
    with torch.no_grad():
        logits = model(x)
    msp = dets["MSP"].score(x)
    np.testing.assert_allclose(msp, -logits.softmax(1).max(1).values.numpy(), rtol=1e-5)
    np.testing.assert_allclose(dets["MSP"].score_logits(logits), msp, rtol=1e-5)
    assert (msp <= 0).all() and (msp >= -1).all()
    np.testing.assert_allclose(dets["Energy"].score(x), -torch.logsumexp(logits, 1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(dets["ODIN"].score_logits(logits),
                               -(logits / 1000).softmax(1).max(1).values.numpy(), rtol=1e-5)


def test_mahalanobis_features_and_separation(setup):
    model, train, dets = setup
    maha = dets["Mahalanobis"]
    with torch.no_grad():
        z = model.features(train.x[:30])
    np.testing.assert_allclose(maha.score_features(z), maha.score(train.x[:30]), rtol=1e-4)
    far = torch.rand(30, 1, 28, 28)
    assert ood_metrics(maha.score(train.x[:30]), maha.score(far))["auroc"] > 0.9


def test_sweeps_equal_pytorch_ood_per_eps(setup):
    model, train, dets = setup
    x = train.x[:10]
    sw = dets["ODIN"].sweep(x, (0.001, 0.01), batch_size=4)
    for e in (0.001, 0.01):
        ref = pod.ODIN(model, eps=e, temperature=1000.0).predict(x).detach().numpy()
        np.testing.assert_allclose(sw[e], ref, rtol=1e-5, atol=1e-7)
    sw = dets["Mahalanobis+perturbation"].sweep(x, (0.001, 0.01), batch_size=4)
    for e in (0.001, 0.01):
        d = bl.MahalanobisODIN(model, eps=e, base=dets["Mahalanobis"])
        np.testing.assert_allclose(sw[e], d.score(x), rtol=1e-4)
    assert dets["Mahalanobis+perturbation"].detector.eps == 0.002     # restored


# ---------------------------------------------------------------- input validation (issue 17), table-driven

from ccc_lib import InputError, NotFittedError  # noqa: E402


def _nan_pixel():
    x = torch.rand(4, 1, 28, 28)
    x[2, 0, 5, 5] = float("nan")
    return x


BAD_IMAGES = [
    ("one NaN pixel", _nan_pixel, "non-finite"),
    ("3×32×32 into a 1×28×28 model", lambda: torch.rand(4, 3, 32, 32), "expects"),
    ("0-255 pixel values", lambda: 255 * torch.rand(4, 1, 28, 28), "divide by 255"),
    ("empty batch", lambda: torch.rand(0, 1, 28, 28), "empty"),
    ("channels-last", lambda: torch.rand(4, 28, 28, 1), "permute"),
]
DETECTORS = ["MSP", "Energy", "ODIN", "Mahalanobis", "Mahalanobis+perturbation"]


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("case,make,match", BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_bad_images_rejected_by_score(setup, name, case, make, match):
    _, _, dets = setup
    with pytest.raises(InputError, match=match):
        dets[name].score(make())


@pytest.mark.parametrize("name", ["ODIN", "Mahalanobis+perturbation"])
@pytest.mark.parametrize("case,make,match", BAD_IMAGES[:2], ids=[c[0] for c in BAD_IMAGES[:2]])
def test_bad_images_rejected_by_sweep(setup, name, case, make, match):
    _, _, dets = setup
    with pytest.raises(InputError, match=match):
        dets[name].sweep(make(), (0.001,))


@pytest.mark.parametrize("eps", [-0.001, float("nan")])
def test_bad_eps(setup, eps):
    model, _, dets = setup
    with pytest.raises(InputError, match="eps"):
        bl.ODIN(model, eps=eps)
    with pytest.raises(InputError, match="eps"):
        dets["ODIN"].sweep(torch.rand(2, 1, 28, 28), (eps,))


@pytest.mark.parametrize("name,method,arg,match", [
    ("MSP", "score_logits", lambda: torch.rand(5, 7), "features per row"),          # 7 logits for 3 classes
    ("ODIN", "score_logits", lambda: torch.full((5, 3), float("nan")), "non-finite"),
    ("Mahalanobis", "score_features", lambda: torch.rand(5, 99), "features per row"),
    ("Mahalanobis", "score_features", lambda: torch.rand(5, 16, 1, 1), "flatten"),
])
def test_bad_logits_and_features(setup, name, method, arg, match):
    _, _, dets = setup
    with pytest.raises(InputError, match=match):
        getattr(dets[name], method)(arg())


@pytest.mark.parametrize("cls", [bl.Mahalanobis, bl.MahalanobisODIN])
def test_score_before_fit_names_the_fix(setup, cls):
    model, _, _ = setup
    with pytest.raises(NotFittedError, match=r"fit\("):
        cls(model).score(torch.rand(3, 1, 28, 28))


@pytest.mark.parametrize("case,make_y,match", [
    ("label out of range", lambda n: torch.full((n,), 5), "classes"),
    ("one-hot labels", lambda n: torch.eye(3)[torch.arange(n) % 3], "one-hot"),
    ("too few labels", lambda n: torch.zeros(n - 1, dtype=torch.long), "one label per input"),
])
def test_mahalanobis_fit_checks_labels(setup, case, make_y, match):
    model, train, _ = setup
    from ccc_lib.data import TensorData
    bad = TensorData.__new__(TensorData)
    bad.x, bad.y, bad.classes, bad.name, bad.split = train.x, make_y(len(train.x)), train.classes, "bad", "train"
    with pytest.raises(InputError, match=match):
        bl.Mahalanobis(model).fit(bad)
    with pytest.raises(InputError):
        bl.Mahalanobis(model).fit(train.x)                         # no labels at all


def test_mahalanobis_fit_through_the_cache_is_the_same_fit(setup, tmp_path, monkeypatch):
    """``fit(cache=True)`` reads the penultimate features from the cache on a second fit: same means and
    precision as the uncached fit, and the fit is named by what it saw (for the perturbation sweeps' keys)."""
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    model, train, dets = setup
    ref = bl.Mahalanobis(model).fit(train)
    calls = []
    real = model.features

    def counting(x):
        calls.append(len(x))
        return real(x)
    monkeypatch.setattr(model, "features", counting)
    a = bl.Mahalanobis(model).fit(train, cache=True)
    n = len(calls)
    b = bl.Mahalanobis(model).fit(train, cache=True)
    assert n > 0 and len(calls) == n                                  # the second fit ran no image through
    for m in (a, b):
        torch.testing.assert_close(m.detector.mu, ref.detector.mu)
        torch.testing.assert_close(m.detector.precision, ref.detector.precision)
        assert m.fitted_on == ref.fitted_on and set(m.fitted_on) == {"images", "labels"}
    assert bl.MahalanobisODIN(model, base=a).fitted_on == a.fitted_on
