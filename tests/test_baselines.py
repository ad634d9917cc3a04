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
