"""Unit tests for chapter 3 (ccc_lib.iocn): invertibility, the score, the training loop's
checks, the detectors' interface and the one-vs-rest plumbing — tiny sizes, CPU."""
import numpy as np
import pytest
import torch

from ccc_lib import Detector, iocn
from ccc_lib.metrics import ood_metrics


def _perturb(model, scale=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("dim,blocks,clamp", [(2, 3, 1.0), (7, 12, 2.0), (16, 4, 1.0)])
def test_inn_is_invertible_with_random_weights(dim, blocks, clamp):
    model = iocn.INNModel(iocn.INNConfig(dim=dim, n_blocks=blocks, clamp=clamp, seed=1))
    _perturb(model)      # away from the zero init, so the coupling subnets are active
    x = torch.randn(300, dim, generator=torch.Generator().manual_seed(0)) * 2 + 1   # seeded: no flakiness
    with torch.no_grad():
        z, _ = model(x)
        assert not torch.allclose(z, x)                    # it is not the identity
        xr = model.inverse(z)
        zr, _ = model(model.inverse(z))
    # float32: relative error (12 blocks with clamp 2 can scale by e^24, so absolute errors grow)
    # (unseeded draws reached 5e-4 in float32; the float64 check below is the exact one)
    assert ((xr - x).abs() / (1 + x.abs())).max() < 1e-3
    assert ((zr - z).abs() / (1 + z.abs())).max() < 1e-3
    # float64 with hard permutations: exact to round-off. (With FrEIA 0.2's soft permutations the
    # inverse rotation is the transpose of the float32-rounded matrix, exact only to ~1e-7 per block.)
    m64 = iocn.INNModel(iocn.INNConfig(dim=dim, n_blocks=blocks, clamp=clamp, permute_soft=False, seed=1))
    _perturb(m64)
    m64, x64 = m64.double(), x.double()
    with torch.no_grad():
        assert (m64.inverse(m64(x64)[0]) - x64).abs().max() < 1e-9


def test_log_jacobian_matches_autograd():
    model = iocn.INNModel(iocn.INNConfig(dim=3, n_blocks=3, seed=0))
    _perturb(model, 0.2)
    model.set_standardisation(torch.randn(50, 3) * 2, divisor=3.0)
    x = torch.randn(4, 3)
    _, log_jac = model(x, jac=True)
    for i in range(4):
        J = torch.autograd.functional.jacobian(lambda v: model(v[None])[0][0], x[i])
        assert torch.allclose(log_jac[i], torch.logdet(J), atol=1e-4)


def test_build_is_seeded_and_leaves_global_rng_alone():
    np.random.seed(123); torch.manual_seed(123)
    a_np, a_t = np.random.rand(), torch.rand(1)
    np.random.seed(123); torch.manual_seed(123)
    m1 = iocn.INNModel(iocn.INNConfig(dim=5, n_blocks=2, seed=7))
    b_np, b_t = np.random.rand(), torch.rand(1)
    assert a_np == b_np and torch.equal(a_t, b_t)
    m2 = iocn.INNModel(iocn.INNConfig(dim=5, n_blocks=2, seed=7))
    for (k, v), (_, w) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(v, w), k


def test_score_equations_2_to_4():
    z = torch.tensor([[0.0, 0.0], [0.5, -0.2], [1.0, 0.0], [1.5, 0.0], [-2.0, 3.0]])
    s = iocn.iocn_score(z)
    assert torch.allclose(s, torch.tensor([-1.0, -0.5, 0.0, 0.5, 3.0]))
    assert ((s < 0) == (z.abs().amax(1) < 1)).all()       # inlier ⇔ inside the cube


def _blobs(n=400, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x_in = rng.standard_normal((n, d)).astype(np.float32)
    x_out = (rng.standard_normal((n, d)) * 1.0 + 4.0).astype(np.float32)
    return x_in, x_out


def test_iocn_and_flow_learn_a_toy_problem():
    x_in, x_out = _blobs()
    for cls in (iocn.IOCN, iocn.FlowDetector):
        det = cls(iocn.INNConfig(dim=4, n_blocks=3, seed=0),
                  iocn.TrainConfig(steps=80, batch_size=64, lr=2e-3, eval_at=(40, 80)), standardise_divisor=3.0)
        det.fit(x_in, eval_fn=lambda m: {"ok": 1.0})
        assert isinstance(det, Detector)
        assert [e["step"] for e in det.meta["evals"]] == [40, 80]
        assert len(det.meta["history"]["loss"]) == 80
        s_in, s_out = det.score(x_in), det.score(x_out)
        assert s_in.shape == (400,) and np.isfinite(s_in).all()
        assert ood_metrics(s_in, s_out)["auroc"] > 0.95, cls.name
        assert iocn.reconstruction_error(det, x_out).max() < 1e-3
    assert det.threshold is None
    iocn_det = iocn.IOCN(iocn.INNConfig(dim=4, n_blocks=3), iocn.TrainConfig(steps=80, batch_size=64, lr=2e-3),
                         standardise_divisor=3.0).fit(x_in)
    assert iocn_det.threshold == 0.0
    assert iocn_det.is_outlier(x_out).mean() > iocn_det.is_outlier(x_in).mean()
    assert iocn.share_inside_cube(iocn_det, x_in) > 0.5


def test_blow_up_is_reported_with_the_step_and_advice():
    x_in, _ = _blobs(200, 3)
    det = iocn.IOCN(iocn.INNConfig(dim=3, n_blocks=2), iocn.TrainConfig(steps=5, batch_size=32, blowup=1e-3))
    with pytest.raises(iocn.INNTrainingError, match=r"step 1 .*lower the learning rate|step 1 .*Lower the learning rate"):
        det.fit(x_in)


def test_nan_data_is_reported():
    x_in, _ = _blobs(200, 3)
    x_in[5, 1] = np.nan
    det = iocn.FlowDetector(iocn.INNConfig(dim=3, n_blocks=2), iocn.TrainConfig(steps=50, batch_size=200))
    with pytest.raises(iocn.INNTrainingError, match="step 1"):
        det.fit(x_in)


def test_training_restores_torch_threads():
    before = torch.get_num_threads()
    x_in, _ = _blobs(100, 2)
    iocn.IOCN(iocn.INNConfig(dim=2, n_blocks=1), iocn.TrainConfig(steps=2, batch_size=32)).fit(x_in)
    assert torch.get_num_threads() == before


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    x_in, x_out = _blobs(200, 3)
    make = lambda: iocn.IOCN(iocn.INNConfig(dim=3, n_blocks=2), iocn.TrainConfig(steps=10, batch_size=32),  # noqa: E731
                             cache_tag="unit-test")
    a = make().fit(x_in)
    b = make().fit(x_in)
    assert not a.meta["from_cache"] and b.meta["from_cache"]
    np.testing.assert_allclose(a.score(x_out), b.score(x_out), rtol=1e-6)
    c = make().fit(x_in[:150])                    # other data → other checkpoint
    assert not c.meta["from_cache"]


@pytest.mark.parametrize("method", ["KNN", "KDE", "PCA", "COPOD", "IForest"])
def test_pyod_wrappers_are_detectors(method):
    x_in, x_out = _blobs(300, 4)
    det = iocn.make_baseline(method).fit(x_in)
    assert isinstance(det, Detector)
    s_in, s_out = det.score(x_in), det.score(torch.as_tensor(x_out))
    assert ood_metrics(s_in, s_out)["auroc"] > 0.9            # higher = more outlying


def test_one_class_split_uses_only_the_inlier_class():
    rng = np.random.default_rng(0)
    feats = {"train": (rng.standard_normal((300, 10)).astype(np.float32), np.repeat(np.arange(3), 100)),
             "test": (rng.standard_normal((90, 10)).astype(np.float32), np.repeat(np.arange(3), 30))}
    sp = iocn.one_class_split(feats, 1, dim=4, n_train=50)
    assert sp["train"].shape == (50, 4) and sp["test"].shape == (90, 4)
    assert sp["is_out"].sum() == 60 and (sp["is_out"][30:60] == 0).all()


def test_toy_sets_and_boundary():
    for name in ("moons", "circles", "two_gaussians"):
        assert iocn.toy_2d(name, 100).shape == (100, 2)
    S = iocn.settings("smoke", toy_steps=5, toy_n=64)
    det, x = iocn.fit_toy("moons", S, cache=False)
    b = iocn.decision_boundary(det, n=40)
    assert b.shape == (41, 2) and np.allclose(b[0], b[-1])
    with torch.no_grad():
        z, _ = det.model(torch.as_tensor(b))
    assert np.allclose(z.abs().amax(1).numpy(), 1.0, atol=1e-4)      # on the cube's surface


def test_settings_profiles():
    for p in ("smoke", "default", "full"):
        S = iocn.settings(p)
        assert max(S["eval_at"]) == S["steps"] == S["flow_steps"]
    with pytest.raises(ValueError):
        iocn.settings("smoke", nonsense=1)


def test_pull_functions():
    z = torch.tensor([[0.5, -2.0, 1.0]])
    assert torch.allclose(iocn.pull_f(z, "max"), torch.tensor([2.0]))
    assert torch.allclose(iocn.pull_f(z, "l2"), torch.tensor([5.25]))
    p = iocn.pull_f(z, "p8")
    assert 1.0 < p.item() < 2.0
    with pytest.raises(ValueError):
        iocn.pull_f(z, "median")


def test_resnet18_encoder_shapes_without_download():
    """The `full` profile's CIFAR-10 encoder (weights=None: a random net, nothing downloaded)."""
    enc = iocn.resnet18_encoder(weights=None)
    with torch.no_grad():
        f = enc(torch.rand(2, 3, 32, 32))
        g = enc(torch.rand(2, 1, 28, 28))          # grey images are repeated to three channels
    assert f.shape == (2, 512) and g.shape == (2, 512) and torch.isfinite(f).all()


def test_full_profile_runs_the_papers_cifar10_protocol():
    S = iocn.settings("full")
    assert S["dataset"] == "cifar10" and S["feature_dim"] == 128
    assert S["feature_sets"][0] == "resnet18_imagenet"
    with pytest.raises(ValueError, match="unknown feature kind"):
        iocn.fashion_features("moco", "smoke")


def test_score_counterfeits_uses_the_claimed_class_detectors():
    """Counterfeits claiming class c are scored by class c's detectors, through class c's PCA."""
    g = torch.Generator().manual_seed(0)
    train = {c: (0.2 + 0.6 * c) + 0.05 * torch.randn(200, 1, 4, 4, generator=g) for c in (0, 1)}
    test = {c: (0.2 + 0.6 * c) + 0.05 * torch.randn(50, 1, 4, 4, generator=g) for c in (0, 1)}
    res = {"feature_kind": "pixels", "classes": ["dark", "bright"], "pca": {}, "detectors": {"KNN": {}, "IOCN": {}},
           "test_inlier_scores": {"KNN": {}, "IOCN": {}}}
    S = iocn.settings("smoke")
    for c in (0, 1):
        feats = {"train": (iocn.encode_images("pixels", train[c]), np.full(200, c)),
                 "test": (iocn.encode_images("pixels", test[c]), np.full(50, c))}
        sp = iocn.one_class_split(feats, c, dim=3)
        res["pca"][c] = sp["pca"]
        dets = {"KNN": iocn.make_baseline("KNN").fit(sp["train"]),
                "IOCN": iocn.IOCN(iocn.INNConfig(dim=3, n_blocks=2), iocn.TrainConfig(steps=30, batch_size=64),
                                  standardise_divisor=S["divisor"]).fit(sp["train"])}
        for m, d in dets.items():
            res["detectors"][m][c] = d
            res["test_inlier_scores"][m][c] = d.score(sp["test"])
    # "bright" counterfeits that claim to be dark, and in-class images that claim their own class
    x = torch.cat([0.8 + 0.05 * torch.randn(30, 1, 4, 4, generator=g), test[1][:10]])
    labels = np.array([0] * 30 + [1] * 10)
    t = iocn.score_counterfeits(res, x, labels, alpha=0.05).set_index(["method", "class"])
    assert t.loc[("KNN", "dark"), "counterfeits"] == 30 and t.loc[("KNN", "bright"), "counterfeits"] == 10
    assert t.loc[("KNN", "dark"), "AUROC (test inliers vs counterfeits)"] > 0.95
    assert t.loc[("KNN", "dark"), "flagged at 5% false alarms"] > 0.9
    assert t.loc[("KNN", "bright"), "AUROC (test inliers vs counterfeits)"] < 0.9     # these are inliers
    assert t.loc[("IOCN", "dark"), "outside the cube: counterfeits"] > 0.9
    assert np.isnan(t.loc[("KNN", "dark")].get("outside the cube: counterfeits", np.nan))
    empty = iocn.score_counterfeits(res, x[:0], labels[:0])
    assert empty.empty
