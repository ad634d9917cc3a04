"""Unit tests for chapter 3 (ccc_lib.iocn, ccc_lib.experiments.iocn): invertibility, the score, the
training loop's checks, input validation, the detectors' interface, the one-vs-rest plumbing, the
decision rules, Table 2, Figure 3, the 1-D example, the hole and the stop-gradient ablation — tiny
sizes, CPU."""
import numpy as np
import pytest
import torch

from ccc_lib import Detector, InputError, NotFittedError, iocn
from ccc_lib.baselines import make_oneclass_baseline
from ccc_lib.experiments import iocn as E
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
        assert E.reconstruction_error(det, x_out).max() < 1e-3
    assert det.threshold is None
    iocn_det = iocn.IOCN(iocn.INNConfig(dim=4, n_blocks=3), iocn.TrainConfig(steps=80, batch_size=64, lr=2e-3),
                         standardise_divisor=3.0).fit(x_in)
    assert iocn_det.threshold == 0.0
    assert iocn_det.is_outlier(x_out).mean() > iocn_det.is_outlier(x_in).mean()
    assert E.share_inside_cube(iocn_det, x_in) > 0.5


def test_blow_up_is_reported_with_the_step_and_advice():
    x_in, _ = _blobs(200, 3)
    det = iocn.IOCN(iocn.INNConfig(dim=3, n_blocks=2), iocn.TrainConfig(steps=5, batch_size=32, blowup=1e-3))
    with pytest.raises(iocn.INNTrainingError, match=r"step 1 .*lower the learning rate|step 1 .*Lower the learning rate"):
        det.fit(x_in)


@pytest.mark.parametrize("cls", [iocn.IOCN, iocn.FlowDetector])
def test_nan_data_is_an_input_error_naming_the_data(cls):
    """Issue 17: a NaN in the training features is the data's fault, not the learning rate's."""
    x_in, _ = _blobs(200, 3)
    x_in[5, 1] = np.nan
    det = cls(iocn.INNConfig(dim=3, n_blocks=2), iocn.TrainConfig(steps=50, batch_size=200))
    with pytest.raises(InputError, match=r"data.*non-finite.*\[5\]") as exc:
        det.fit(x_in)
    assert "learning rate" not in str(exc.value)
    assert not isinstance(exc.value, iocn.INNTrainingError)


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


def test_one_class_split_uses_only_the_inlier_class():
    rng = np.random.default_rng(0)
    xtr = rng.standard_normal((300, 10)).astype(np.float32)
    xtr[100:200] += 5.0                                   # class 1 lives elsewhere
    feats = {"train": (xtr, np.repeat(np.arange(3), 100)),
             "test": (rng.standard_normal((90, 10)).astype(np.float32), np.repeat(np.arange(3), 30))}
    sp = E.one_class_split(feats, 1, dim=4, n_train=50)
    assert sp.train.shape == (50, 4) and sp.test.shape == (90, 4)
    assert sp.is_out.sum() == 60 and (sp.is_out[30:60] == 0).all()
    assert np.allclose(sp.pca.named_steps["pca"].mean_, 5.0, atol=0.5)       # fitted on class 1's rows only
    # the chapter's one preprocessing: z-scored on the inlier training rows, the test set by the same map
    assert np.allclose(sp.train.mean(0), 0, atol=1e-5) and np.allclose(sp.train.std(0), 1, atol=1e-4)
    assert np.allclose(sp.pca.transform(feats["test"][0]), sp.test, atol=1e-5)
    assert sp.inputs == "zscore" and sp.key["inputs"] == "zscore"


def test_sphere_split_is_the_papers_inputs():
    """The paper's inputs: on the unit hypersphere (after a truncated SVD fitted on the inlier class's training
    rows, back on the sphere) plus a little noise — the same noise for the same rows, every norm ≈ 1 whatever the
    class, so the norm alone carries nothing; the probe rows are training-split rows only."""
    rng = np.random.default_rng(0)
    xtr = rng.standard_normal((300, 10)).astype(np.float32)
    xtr[100:200] += 5.0
    xte = rng.standard_normal((90, 10)).astype(np.float32)
    xte[30:60] += 5.0
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    feats = {"train": (unit(xtr), np.repeat(np.arange(3), 100)), "test": (unit(xte), np.repeat(np.arange(3), 30))}
    sp = E.one_class_split(feats, 1, dim=4, n_train=50, inputs="sphere", noise=0.01, n_probe=(20, 20))
    assert sp.train.shape == (50, 4) and sp.test.shape == (90, 4) and sp.inputs == "sphere"
    n = np.linalg.norm(sp.test, axis=1)
    assert np.allclose(n, 1, atol=0.1) and 0.005 < n.std() < 0.02                   # noise of std 0.01: radially ~0.01
    assert np.allclose(sp.pca.transform(feats["test"][0]), sp.test, atol=1e-6)       # the same rows, the same noise
    assert not np.allclose(sp.pca.transform(feats["test"][0][::-1])[::-1], sp.test, atol=1e-4)
    assert sp.key["inputs"] == "sphere" and sp.key["noise"] == 0.01
    assert sp.probe.shape == (40, 4) and sp.probe_is_out.sum() == 20
    same = E.one_class_split(feats, 1, dim=10, n_train=50, inputs="sphere", noise=0.0)   # full dimension: no SVD
    assert same.pca.svd is None and np.allclose(np.linalg.norm(same.test, axis=1), 1, atol=1e-5)
    with pytest.raises(InputError, match="sphere"):
        E.one_class_split(feats, 1, dim=4, inputs="unit")


def test_toy_sets_and_boundary():
    for name in ("moons", "circles", "two_gaussians", "annulus"):
        assert E.toy_2d(name, 100).shape == (100, 2)
    S = E.settings("smoke", toy_steps=5, toy_n=64)
    det, x = E.fit_toy("moons", S, cache=False)
    b = E.decision_boundary(det, n=40)
    assert b.shape == (41, 2) and np.allclose(b[0], b[-1])
    with torch.no_grad():
        z, _ = det.model(torch.as_tensor(b))
    assert np.allclose(z.abs().amax(1).numpy(), 1.0, atol=1e-4)      # on the cube's surface


def test_settings_profiles():
    for p in ("smoke", "default", "full", "full_dry"):
        S = E.settings(p)
        assert max(S["eval_at"]) == S["steps"] == S["flow_steps"]
        assert max(S["oned_snapshots"]) == S["oned_steps"]
        assert set(S["deepod_feature_sets"]) <= set(S["feature_sets"])
    assert E.settings("full_dry")["dataset"] == "cifar10"           # full's code paths
    assert E.settings("full_dry")["steps"] < E.settings("full")["steps"]
    with pytest.raises(ValueError):
        E.settings("smoke", nonsense=1)


def test_pull_functions():
    z = torch.tensor([[0.5, -2.0, 1.0]])
    assert torch.allclose(iocn.pull_f(z, "max"), torch.tensor([2.0]))
    assert torch.allclose(iocn.pull_f(z, "l2"), torch.tensor([5.25]))
    p = iocn.pull_f(z, "p8")
    assert 1.0 < p.item() < 2.0
    with pytest.raises(InputError):
        iocn.pull_f(z, "median")


def test_resnet18_encoder_shapes_without_download():
    """The `full` profile's CIFAR-10 encoder (weights=None: a random net, nothing downloaded)."""
    enc = E.resnet18_encoder(weights=None)
    with torch.no_grad():
        f = enc(torch.rand(2, 3, 32, 32))
        g = enc(torch.rand(2, 1, 28, 28))          # grey images are repeated to three channels
    assert f.shape == (2, 512) and g.shape == (2, 512) and torch.isfinite(f).all()


def test_unknown_feature_kind_is_an_input_error():
    with pytest.raises(InputError, match="unknown feature kind"):
        E.fashion_features("moco", "smoke")


def _fake_ovr(dets_per_class, test_scores, y_test, kind="pixels", names=("dark", "bright")):
    res = E.OneVsRest(kind, "zscore", list(names), tuple(sorted(test_scores[next(iter(test_scores))])), list(test_scores),
                      y_test, E.calibration_mask(y_test))
    res.scores = test_scores
    res.detectors = dets_per_class
    return res


def test_score_counterfeits_uses_the_claimed_class_detectors():
    """Counterfeits claiming class c are scored by class c's detectors, through class c's PCA."""
    g = torch.Generator().manual_seed(0)
    train = {c: (0.2 + 0.6 * c) + 0.05 * torch.randn(200, 1, 4, 4, generator=g) for c in (0, 1)}
    test = torch.cat([(0.2 + 0.6 * c) + 0.05 * torch.randn(50, 1, 4, 4, generator=g) for c in (0, 1)])
    y_test = np.repeat([0, 1], 50)
    S = E.settings("smoke")
    dets, scores, pcas = {"KNN": {}, "IOCN": {}}, {"KNN": {}, "IOCN": {}}, {}
    for c in (0, 1):
        feats = {"train": (E.encode_images("pixels", train[c]), np.full(200, c)),
                 "test": (E.encode_images("pixels", test), y_test)}
        sp = E.one_class_split(feats, c, dim=3)
        pcas[c] = sp.pca
        for m, d in {"KNN": make_oneclass_baseline("KNN").fit(sp.train),
                     "IOCN": iocn.IOCN(iocn.INNConfig(dim=3, n_blocks=2), iocn.TrainConfig(steps=30, batch_size=64),
                                       standardise_divisor=S["divisor"]).fit(sp.train)}.items():
            dets[m][c] = d
            scores[m][c] = d.score(sp.test)
    res = _fake_ovr(dets, scores, y_test)
    res.pca = pcas
    # "bright" counterfeits that claim to be dark, and in-class images that claim their own class
    x = torch.cat([0.8 + 0.05 * torch.randn(30, 1, 4, 4, generator=g), test[50:60]])
    labels = np.array([0] * 30 + [1] * 10)
    t = E.score_counterfeits(res, x, labels, alpha=0.05).set_index(["method", "class"])
    assert t.loc[("KNN", "dark"), "counterfeits"] == 30 and t.loc[("KNN", "bright"), "counterfeits"] == 10
    assert t.loc[("KNN", "dark"), "AUROC (test inliers vs counterfeits)"] > 0.95
    assert t.loc[("KNN", "dark"), "flagged at 5% false alarms"] > 0.9
    assert t.loc[("KNN", "bright"), "AUROC (test inliers vs counterfeits)"] < 0.9     # these are inliers
    assert t.loc[("IOCN", "dark"), "outside the cube: counterfeits"] > 0.9
    assert np.isnan(t.loc[("KNN", "dark")].get("outside the cube: counterfeits", np.nan))
    # the mean over claimed classes with its interval over the pool of test images and counterfeits
    ci = E.counterfeit_auroc_ci(res, E.score_counterfeits(res, x, labels, alpha=0.05))
    mean_knn = t.loc["KNN", "AUROC (test inliers vs counterfeits)"].mean()
    assert ci["KNN"].estimate == pytest.approx(mean_knn, abs=0.02) and ci["KNN"].lo < ci["KNN"].estimate < ci["KNN"].hi
    assert E.score_counterfeits(res, x[:0], labels[:0]).empty


def test_decision_rates_confusion_and_extremes():
    """Calibrated thresholds are set on the calibration half and measured on the other half; the
    paper's cube rule is reported for the IOCN only; Table 2 and Figure 3 read the right rows."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 400)
    # class-c detector: its inliers score N(0, 1), class j scores N(j - c + ..., 1): ordered difficulty
    scores = {"IOCN": {c: rng.standard_normal(len(y)) + 3.0 * (y != c) * (1 + (y - c) % 3) - 0.5 for c in range(3)},
              "KNN": {c: rng.standard_normal(len(y)) for c in range(3)}}           # useless detector
    res = _fake_ovr({"IOCN": {}, "KNN": {}}, scores, y, names=("a", "b", "c"))
    d = E.decision_rates(res, alpha=0.1).set_index(["method", "rule"])
    cal = d.loc[("IOCN", "calibrated on held-out inliers (10%)")]
    assert abs(cal["false alarms (held-out inliers)"] - 0.1) < 0.05
    assert cal["detection (held-out outliers)"] > 0.9
    cube = d.loc[("IOCN", "the paper's rule: outside the cube (s > 0)")]
    assert 0.2 < cube["false alarms (held-out inliers)"] < 0.45             # P(N(-0.5, 1) > 0) ≈ 0.31
    knn = d.loc[("KNN", "calibrated on held-out inliers (10%)")]
    assert abs(knn["detection (held-out outliers)"] - 0.1) < 0.05          # chance level
    assert ("KNN", "the paper's rule: outside the cube (s > 0)") not in d.index
    M = E.confusion_auroc(res, "IOCN")
    assert M.shape == (3, 3) and np.isnan(np.diag(M.values)).all()
    assert M.loc["a", "c"] > M.loc["a", "b"] > 0.9                          # farther class, easier
    ex = E.extreme_examples(res, 1, k=4)
    s = scores["IOCN"][1]
    assert (y[ex["TP"]] == 1).all() and (y[ex["FN"]] == 1).all() and (y[ex["FP"]] != 1).all()
    assert s[ex["TP"]].max() <= s[ex["FN"]].min() and s[ex["FP"]].max() <= s[ex["TN"]].min()
    assert s[ex["TP"][0]] == s[y == 1].min() and s[ex["TN"][0]] == s[y != 1].max()


def test_one_d_map_is_invertible_and_algorithm_1_moves_it_towards_uniform():
    m = E.Monotone1D()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    u = torch.linspace(-4, 4, 101)
    assert (m(u)[1:] > m(u)[:-1]).all()                                  # strictly increasing
    assert (m.inverse(m(u)) - u).abs().max() < 1e-4
    S = E.settings("smoke")
    run = E.train_1d(S, cache=False)
    assert sorted(run.snapshots) == sorted(S["oned_snapshots"])
    m.load_state_dict(run.snapshots[max(run.snapshots)])
    with torch.no_grad():
        z = m(torch.as_tensor(run.data))
    m.load_state_dict(run.snapshots[0])
    with torch.no_grad():
        z0 = m(torch.as_tensor(run.data))
    inside = lambda v: float((v.abs() < 1).float().mean())  # noqa: E731
    assert inside(z) > inside(z0) + 0.3                                  # pulled into [-1, 1]


def test_hole_points_land_inside_the_cube():
    """The simply-connected limitation: the IOCN cannot cut the annulus' hole out."""
    h = E.hole_study(E.settings("smoke"), cache=False)
    assert h.inside_hole > h.inside_far + 0.5
    assert h.inside_far < 0.1


def test_stop_gradient_ablation_collapses_without_it():
    rng = np.random.default_rng(0)
    feats = {"train": (rng.standard_normal((400, 6)).astype(np.float32), np.repeat([0, 1], 200)),
             "test": (rng.standard_normal((200, 6)).astype(np.float32), np.repeat([0, 1], 100))}
    feats["train"][0][200:] += 3; feats["test"][0][100:] += 3
    sp = E.one_class_split(feats, 0, dim=4)
    S = E.settings("smoke", ablation_steps=200)
    with_sg, without = E.stopgrad_ablation(sp, S, cache=False)
    assert with_sg.stop_gradient and not without.stop_gradient
    assert with_sg.curve and with_sg.steps_done == 200
    # without the stop-gradient only the pull acts: codes shrink and the outliers move inside too
    assert without.diverged or without.code_size < 0.5 * with_sg.code_size
    assert without.diverged or without.inside_test_out > with_sg.inside_test_out


# ------------------------------------------------------------------ input validation (issue 17)

def _fitted(cls=iocn.IOCN, d=3):
    x, _ = _blobs(100, d)
    return cls(iocn.INNConfig(dim=d, n_blocks=2), iocn.TrainConfig(steps=3, batch_size=32)).fit(x)


_NAN = np.ones((5, 3), np.float32); _NAN[2, 0] = np.nan
_INF = np.ones((5, 3), np.float32); _INF[0, 2] = np.inf


@pytest.mark.parametrize("cls", [iocn.IOCN, iocn.FlowDetector])
@pytest.mark.parametrize("bad,match", [
    (_NAN, "non-finite"), (_INF, "non-finite"), (np.ones((0, 3), np.float32), "no rows"),
    (np.ones((5, 4), np.float32), "4 features per row but the model was fitted on 3"),
    (np.ones((2, 1, 3), np.float32), "expected N×D"), ("text", "expected a torch.Tensor"),
])
@pytest.mark.parametrize("entry", ["score", "is_outlier", "latent"])
def test_inn_detectors_reject_bad_input(cls, bad, match, entry):
    det = _fitted(cls)
    if entry == "is_outlier" and cls is iocn.FlowDetector:
        with pytest.raises(NotImplementedError, match="no decision rule"):
            det.is_outlier(np.ones((2, 3), np.float32))
        return
    with pytest.raises(InputError, match=match):
        getattr(det, entry)(bad)


@pytest.mark.parametrize("cls,entry", [(iocn.IOCN, "score"), (iocn.IOCN, "is_outlier"), (iocn.IOCN, "latent"),
                                       (iocn.FlowDetector, "score"), (iocn.FlowDetector, "latent")])
def test_inn_detectors_must_be_fitted(cls, entry):
    det = cls(iocn.INNConfig(dim=3, n_blocks=2))
    with pytest.raises(NotFittedError, match="fit"):
        getattr(det, entry)(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("kwargs,match", [
    ({"train": {"steps": 0}}, "steps"), ({"train": {"lr": -1.0}}, "lr"), ({"train": {"batch_size": 0}}, "batch_size"),
    ({"standardise_divisor": 0.0}, "standardise_divisor"),
])
def test_inn_detectors_reject_bad_settings(kwargs, match):
    with pytest.raises(InputError, match=match):
        iocn.IOCN(iocn.INNConfig(dim=3, n_blocks=2), **kwargs)


@pytest.mark.parametrize("bad,match", [(np.ones((1, 3), np.float32), "at least 2"),
                                       (np.ones((10, 4), np.float32), "4 features per row"),
                                       (np.ones(10, np.float32), "expected N×D")])
def test_inn_fit_rejects_bad_training_data(bad, match):
    with pytest.raises(InputError, match=match):
        iocn.IOCN(iocn.INNConfig(dim=3, n_blocks=2), iocn.TrainConfig(steps=2)).fit(bad)


def test_one_dimensional_inn_is_refused_with_the_fix():
    with pytest.raises(InputError, match="pad"):
        iocn.INNModel(iocn.INNConfig(dim=1))


def test_deepod_budget_rule():
    """deepOD's defaults with its 100 epochs as the cap at default and full; the check's settings; the classes a
    row runs on (all unless the profile lists them: default's GOAD on one class, the others on three)."""
    S = E.settings("default")
    assert set(S["deepod"]) == {"DeepSVDD", "RCA", "ICL", "GOAD", "SLAD"}
    b = E.deepod_budget(S)
    assert b["cap"] == 100 == E.deepod_default("ICL", "epochs") == E.deepod_default("GOAD", "epochs")
    assert b["every"] >= 1 and 0.99 <= b["settle"] < 1
    assert E.deepod_classes("GOAD", S) == (7,) and E.deepod_classes("SLAD", S) == (0, 4, 7)
    assert E.deepod_classes("SLAD", S, "sphere") == (0, 4, 7) and E.deepod_classes("SLAD", S, "zscore") == (7,)
    full = E.settings("full")
    assert E.deepod_budget(full)["cap"] == 100 and all(E.deepod_classes(m, full) == full["classes"] for m in full["deepod"])
    assert full["goad_n_trans"] is None and S["goad_n_trans"] is None        # deepOD's 256 transformations
    assert S["match_reference"] == "SLAD (deepOD)" and 0 < S["match_margin"] <= 0.02


def test_every_row_gets_the_same_standardised_arrays(monkeypatch, tmp_path):
    """The chapter's one preprocessing reaches every row of Table 1: the arrays each detector is fitted on
    and scores are the same, z-scored on the inlier training rows (the INNs divide by 3 inside)."""
    rng = np.random.default_rng(0)
    xtr = (rng.standard_normal((240, 12)) * np.linspace(0.05, 3, 12)).astype(np.float32)
    xte = (rng.standard_normal((60, 12)) * np.linspace(0.05, 3, 12)).astype(np.float32)
    feats = {"train": (xtr, np.repeat(np.arange(3), 80)), "test": (xte, np.repeat(np.arange(3), 20)),
             "classes": ["a", "b", "c"]}
    monkeypatch.setattr(E.inputs, "fashion_features", lambda *a, **k: feats)
    monkeypatch.setenv("CCC_JOBS", "1")        # the patched features live in this process: no worker pool
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))            # nothing from an earlier run's cache
    seen = {}

    def spy(cls, name):
        fit, score = cls.fit, cls.score

        def fit_(self, data, *a, **k):
            seen.setdefault(getattr(self, "name", name), {})["fit"] = np.asarray(data, dtype=np.float32).copy()
            return fit(self, data, *a, **k)

        def score_(self, x, *a, **k):
            seen.setdefault(getattr(self, "name", name), {}).setdefault("score", np.asarray(x, dtype=np.float32).copy())
            return score(self, x, *a, **k)
        monkeypatch.setattr(cls, "fit", fit_)
        monkeypatch.setattr(cls, "score", score_)
    from ccc_lib.baselines import DeepODDetector, PyODDetector
    for cls, name in ((DeepODDetector, "deepOD"), (PyODDetector, "PyOD"), (iocn.IOCN, "IOCN"), (iocn.FlowDetector, "FLOW")):
        spy(cls, name)
    S = E.settings("smoke", classes=(0,), n_train=None, feature_dim=6, baselines=("KNN", "COPOD"), deepod=("DeepSVDD",),
                   deepod_epochs=1, deepod_classes={}, steps=4, flow_steps=4, eval_at=(4,), n_blocks=2, probe=(10, 10))
    for inputs in ("zscore", "sphere"):
        seen.clear()
        res = E.one_vs_rest("cnn_mnist5k", S, "smoke", inputs, cache=False)
        assert set(seen) == {"KNN", "COPOD", "DeepSVDD (deepOD)", "FLOW", "IOCN"} == set(res.methods) - {E.NORM_ROW}
        sp = E.one_class_split(feats, 0, 6, inputs=inputs, noise=S["sphere_noise"], n_probe=(10, 10))
        if inputs == "zscore":
            assert np.allclose(sp.train.std(0), 1, atol=1e-4)
        else:
            assert np.allclose(np.linalg.norm(sp.test, axis=1), 1, atol=0.1)
        for m, got in seen.items():
            np.testing.assert_allclose(got["fit"], sp.train, atol=1e-6, err_msg=m)
            np.testing.assert_allclose(got["score"], sp.test if m != "DeepSVDD (deepOD)" else got["score"], atol=1e-6, err_msg=m)
        np.testing.assert_allclose(res.scores[E.NORM_ROW][0], np.linalg.norm(sp.test.astype(np.float64), axis=1), rtol=1e-6)
        for m in ("IOCN", "FLOW"):                              # inside: the same rows, standardised ÷ divisor
            model = res.detectors[m][0].model
            np.testing.assert_allclose(model.scale.numpy(), sp.train.std(0, ddof=1) * S["divisor"], rtol=1e-3)
        assert res.deepod["DeepSVDD (deepOD)"][0]["history"]["epochs"] == 1


def test_where_we_differ_names_every_choice():
    t = E.where_we_differ(E.settings("default"), "default")
    for item in ("permutation in each block", "training noise, INNs", "affine clamping",
                 "preprocessing: the headline (the paper's inputs)", "preprocessing: our variant",
                 "preprocessing, INNs only", "deepOD rows: budget", "deepOD rows: classes", "deepOD rows: library defects",
                 "feature extractor", "data", "seeds", "\"matches\"", "appendix studies' sizes"):
        assert item in t.index
    assert "permute_soft=True" in t.loc["permutation in each block", "this chapter"]
    assert t.loc["affine clamping", "paper"] == "not reported"
    assert "100 epochs as the cap" in t.loc["deepOD rows: budget", "this chapter"]
    assert "500 training images" in t.loc["data", "this chapter"] and "at full: None" in t.loc["data", "this chapter"]
    assert "GOAD: classes 7 only" in t.loc["deepOD rows: classes", "this chapter"]
    assert "Not patched: GOAD's initialisation" in t.loc["deepOD rows: library defects", "this chapter"]
    assert "steps at full: 4000" in t.loc["appendix studies' sizes", "this chapter"]
    full = E.where_we_differ(E.settings("full"), "full")
    assert full.loc["deepOD rows: classes", "which"] == "paper" and "at full" not in full.loc["data", "this chapter"]


def test_baseline_scores_are_cached_and_refit_lazily(tmp_path, monkeypatch):
    """A warm rebuild reads a PyOD row's test scores from the cache; the row is fitted again only when
    something else (the counterfeits) asks it to score, and then scores the same."""
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    x_in, x_out = _blobs(120, 3)
    key = {"method": "KNN", "seed": 0, "unit": "test"}
    calls = []

    def fit_score():
        calls.append(1)
        return make_oneclass_baseline("KNN").fit(x_in).score(x_out)
    a, cached_a, _ = E.table1._scores_cached("iocn-pyod-scores", key, fit_score, cache=True)
    b, cached_b, _ = E.table1._scores_cached("iocn-pyod-scores", key, fit_score, cache=True)
    assert (cached_a, cached_b, len(calls)) == (False, True, 1)
    np.testing.assert_allclose(a, b)
    lazy = E.LazyBaseline("KNN", x_in, seed=0)
    assert lazy.det is None
    np.testing.assert_allclose(lazy.score(x_out), a)


def test_1d_run_and_ablation_round_trip_through_the_cache(tmp_path, monkeypatch):
    """A warm rebuild reads Figure 2's snapshots and the stop-gradient ablation from the cache, with the
    same numbers as the run that computed them."""
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    S = E.settings("smoke", oned_n=100, oned_steps=10, oned_snapshots=(0, 5, 10), ablation_steps=8)
    a, b = E.train_1d(S), E.train_1d(S)
    assert sorted(a.snapshots) == sorted(b.snapshots) == [0, 5, 10] and a.loss == b.loss
    for st in a.snapshots:
        for k, v in a.snapshots[st].items():
            assert torch.equal(v, b.snapshots[st][k])
    np.testing.assert_array_equal(a.data, b.data)
    rng = np.random.default_rng(0)
    feats = {"train": (rng.standard_normal((100, 4)).astype(np.float32), np.repeat([0, 1], 50)),
             "test": (rng.standard_normal((40, 4)).astype(np.float32), np.repeat([0, 1], 20))}
    sp = E.one_class_split(feats, 0, dim=3)
    r1, r2 = E.stopgrad_ablation(sp, S), E.stopgrad_ablation(sp, S)
    assert [vars(r) for r in r1] == [vars(r) for r in r2]
    assert len(list((tmp_path / "checkpoints").glob("iocn-stopgrad-ablation-*.pt"))) == 1


def test_study_choice_picks_a_cheap_configuration_where_iocn_wins():
    def row(axis, value, gap, secs):
        return {"axis": axis, "value": value, "iocn_minus_flow": gap,
                "IOCN": {"train_seconds": secs}, "FLOW": {"train_seconds": secs}}
    study = {"rows": [row("base", None, -0.02, 10.0), row("steps", 1000, 0.01, 33.0), row("steps", 100, 0.005, 3.0),
                      row("lr", 0.003, 0.002, 10.0), row("clamp", 2.0, -0.01, 10.0)]}
    ch = E.study_choice(study)
    assert (ch.axis, ch.value, ch.iocn_minus_flow) == ("steps", 100, 0.005)       # 1000 steps costs too much
    assert ch.overrides == {"steps": 100, "flow_steps": 100, "eval_at": (25, 50, 100)} and ch.seconds_ratio == 0.3
    assert E.study_choice(study, max_time_ratio=4.0).value == 1000
    study["rows"] = [r for r in study["rows"] if r["iocn_minus_flow"] < 0]
    assert E.study_choice(study) is None


def test_paired_class_mean_differences_and_seeds():
    """A − B per class by paired DeLong, the mean over classes with its interval, and over seeds: a clearly
    better A wins (interval above 0); A against itself is a tie (the interval contains 0)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 200)

    def run(shift_a, seed):
        r = np.random.default_rng(seed)
        res = E.OneVsRest("x", "sphere", ["a", "b", "c"], (0, 1, 2), ["A", "B"], y, np.zeros(len(y), bool))
        res.scores = {"A": {}, "B": {}}
        for c in range(3):
            out = (y != c).astype(float)
            base = r.standard_normal(len(y))
            res.scores["B"][c] = base + 0.5 * out
            res.scores["A"][c] = base + (0.5 + shift_a) * out + 0.3 * r.standard_normal(len(y))
        return res
    runs = {s: run(1.0, s) for s in (0, 1, 2)}
    iv, per_seed, per_class = E.diff_over_seeds(runs, "A", "B")
    assert iv.lo > 0 and len(per_seed) == 3 and set(per_class[0]) == {0, 1, 2}
    mean, per = E.class_mean_diff(runs[0], "A", runs[0], "B")
    assert np.isclose(mean.estimate, np.mean([p.estimate for p in per.values()]))
    assert mean.hi - mean.lo < np.mean([p.hi - p.lo for p in per.values()])       # the mean is tighter
    same, _ = E.class_mean_diff(runs[0], "B", run(0.0, 0), "B")
    assert same.lo <= 0 <= same.hi
    del rng


def _toy_feats(d=8, n=80, k=2, key=None):
    rng = np.random.default_rng(0)
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return {"train": (unit(rng.standard_normal((n * k, d)) + 2 * np.repeat(np.eye(k, d), n, 0)), np.repeat(np.arange(k), n)),
            "test": (unit(rng.standard_normal((30 * k, d)) + 2 * np.repeat(np.eye(k, d), 30, 0)), np.repeat(np.arange(k), 30)),
            "classes": ["a", "b", "c"][:k], **({"key": key} if key else {})}


def test_goad_table_scaling_test_norm_evidence_and_training_records(monkeypatch, tmp_path):
    """GOAD's evidence: per block and class its AUROC, the scaling test (mean score of the test inliers scaled
    by each factor), corr(score, ‖x‖) and the norm-only row's AUROC; the init-patch row beside it; the training
    table (where each row stopped, its checks) and the curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    feats = _toy_feats()
    monkeypatch.setattr(E.inputs, "fashion_features", lambda *a, **k: feats)
    monkeypatch.setenv("CCC_JOBS", "1")        # the patched features live in this process: no worker pool
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    S = E.settings("smoke", classes=(0, 1), n_train=None, feature_dim=4, baselines=(), deepod=("GOAD",), deepod_classes={},
                   goad_n_trans=4, deepod_epochs=3, deepod_every=1, goad_init_patch_classes=(1,),
                   goad_init_patch_inputs=("zscore",), steps=4, flow_steps=4, eval_at=(4,), n_blocks=2, probe=(20, 20))
    results = {}
    for inputs in ("sphere", "zscore"):
        methods = [m for m in E.default_methods("cnn_mnist5k", S, inputs) if m not in ("FLOW", "IOCN")]
        results[inputs] = E.one_vs_rest("cnn_mnist5k", S, "smoke", inputs, methods=methods)
    assert E.GOAD_PATCHED in results["zscore"].methods and E.GOAD_PATCHED not in results["sphere"].methods
    assert set(results["zscore"].auroc[E.GOAD_PATCHED]) == {1}
    t = E.goad_table(results, S)
    assert len(t) == 2 + 2 + 1
    assert {"mean score ×0.25", "mean score ×1.0", "mean score ×4.0", "corr(score, ‖x‖)", "AUROC of ‖x‖"} <= set(t.columns)
    z = t.xs("zscore", level="block").xs("GOAD (deepOD)", level="row")
    assert (z["mean ‖x‖ outliers"] > 0).all() and np.isfinite(z["corr(score, ‖x‖)"]).all()
    sph = t.xs("sphere", level="block")
    assert np.allclose(sph["mean ‖x‖ inliers"], 1, atol=0.05)
    d = E.deepod_training_table(results, S)
    assert d.loc[("sphere", "GOAD (deepOD)"), "classes"] == 2 and "last loss ÷ chance (ln n_trans)" in d.columns
    h = results["sphere"].deepod["GOAD (deepOD)"][0]["history"]
    assert [r["epoch"] for r in h["monitor"]] == list(range(1, h["epochs"] + 1)) and h["monitor"][0]["rho"] is None
    assert all(r["rho"] is not None for r in h["monitor"][1:]) and "probe_auroc" in h["monitor"][0]
    fig, axes = plt.subplots(1, 1, squeeze=False)
    E.plot_deepod_curves(results["sphere"], axes[0], 3)
    assert len(axes[0][0].lines) >= 2
    plt.close(fig)


def test_settle_monitor_stops_when_the_ranking_no_longer_changes():
    """The deep rows' check: ρ between the probe scores of two checks; it stops only once ρ ≥ the threshold,
    records the probe AUROC (never used to stop) and skips epochs between checks."""
    probe = np.arange(10.0)
    is_out = np.r_[np.zeros(5, int), np.ones(5, int)]
    mon = E.settle_monitor(probe, is_out, every=2, settle=0.99)
    scores = iter([probe[::-1].copy(), probe.copy(), probe.copy()])
    assert mon(1, lambda x: 1 / 0) is None                       # not a check epoch: nothing scored
    r2 = mon(2, lambda x: next(scores))
    assert r2["rho"] is None and not r2["stop"] and r2["probe_auroc"] == 0.0
    r4 = mon(4, lambda x: next(scores))
    assert r4["rho"] == pytest.approx(-1.0) and not r4["stop"]
    r6 = mon(6, lambda x: next(scores))
    assert r6["rho"] == pytest.approx(1.0) and r6["stop"] and r6["probe_auroc"] == 1.0


def test_verdicts_against_every_baseline_and_the_match(monkeypatch, tmp_path):
    """IOCN against every baseline (each on its own classes; one clearly better baseline makes it lose, after
    Holm), the match as an interval over the reference's classes only, and the claims they become: a tie is
    never a match."""
    from ccc_lib.claims import Claims
    y = np.repeat(np.arange(3), 200)
    r = np.random.default_rng(1)

    def det(strength, seed):
        g = np.random.default_rng(seed)
        return {c: g.standard_normal(len(y)) + strength * (y != c) for c in range(3)}
    res = E.OneVsRest("cnn_mnist5k", "sphere", ["a", "b", "c"], (0, 1, 2), ["KNN", "SLAD (deepOD)", "GOAD (deepOD)", "FLOW",
                      "IOCN", E.NORM_ROW], y, np.zeros(len(y), bool))
    res.scores = {"IOCN": det(1.0, 0), "FLOW": det(1.0, 1), "KNN": det(1.0, 2), "SLAD (deepOD)": det(3.0, 3),
                  "GOAD (deepOD)": {2: det(0.0, 4)[2]}, E.NORM_ROW: det(0.0, 5)}
    from ccc_lib.metrics import ood_metrics
    res.auroc = {m: {c: ood_metrics(s[y == c], s[y != c])["auroc"] for c, s in per.items()} for m, per in res.scores.items()}
    assert E.baselines_of(res) == ["KNN", "SLAD (deepOD)", "GOAD (deepOD)"]
    assert E.classes_of(res, "GOAD (deepOD)") == (2,)
    every = E.versus_baselines({0: res}, res)
    assert every.verdict == "loses" and every.closest == "SLAD (deepOD)"
    rows = {r["baseline"]: r for r in every.rows}
    assert rows["GOAD (deepOD)"]["interval"].lo > 0
    iv, classes = E.match_interval({0: res}, res, "SLAD (deepOD)")
    assert classes == (0, 1, 2) and iv.level == pytest.approx(0.9) and iv.hi < 0
    monkeypatch.setenv("CCC_METRICS_DIR", str(tmp_path))
    C = Claims("03_iocn_unit_test", "smoke")
    S = E.settings("smoke")
    V = E.chapter.declare_verdicts(C, {"cnn_mnist5k_sphere": res}, {"cnn_mnist5k_sphere": {0: res}}, S)
    assert C["iocn_vs_best_cnn_mnist5k_sphere"].verdict == "loses"
    assert C["iocn_matches_best_cnn_mnist5k_sphere"].verdict == "does not hold"
    assert C["iocn_vs_flow_cnn_mnist5k_sphere"].verdict == "tie within uncertainty"
    assert "learned features" in C["iocn_vs_flow_cnn_mnist5k_sphere"].text
    t = E.chapter.verdict_table(V, C)
    assert len(t) == 3
    # a tie is never a match: the reference equal to the IOCN but noisy → "not resolved", not "holds"
    res.scores["SLAD (deepOD)"] = det(1.0, 6)
    res.auroc["SLAD (deepOD)"] = {c: ood_metrics(s[y == c], s[y != c])["auroc"] for c, s in res.scores["SLAD (deepOD)"].items()}
    res.inputs = "zscore"
    C2 = Claims("03_iocn_unit_test2", "smoke")
    E.chapter.declare_verdicts(C2, {"cnn_mnist5k_zscore": res}, {"cnn_mnist5k_zscore": {0: res}}, S)
    assert C2["iocn_matches_best_cnn_mnist5k_zscore"].verdict != "holds"
    assert "learned features" not in C2["iocn_vs_flow_cnn_mnist5k_zscore"].text
    del r


def test_one_class_split_is_the_same_bits_on_any_number_of_blas_threads():
    """The split's bits go into the cache keys of every row trained on it: a per-class job (one thread) and
    the notebook's kernel (all cores) must compute the same split, or the kernel misses what the jobs
    trained and trains it again (measured at default: every Table 1 row retrained in the kernel)."""
    from threadpoolctl import threadpool_limits
    from ccc_lib.cache import fingerprint
    rng = np.random.default_rng(0)
    xtr = rng.standard_normal((3000, 256)).astype(np.float32)
    feats = {"train": (xtr, np.repeat(np.arange(2), 1500)), "test": (xtr[:500], np.zeros(500, int)), "classes": ["a", "b"]}
    prints = set()
    for n in (1, 2, 4):
        with threadpool_limits(limits=n):
            sp = E.one_class_split(feats, 0, 16, 1000, seed=0)
        prints.add((fingerprint(torch.as_tensor(sp.train)), fingerprint(torch.as_tensor(sp.test))))
    assert len(prints) == 1


def test_rows_are_keyed_on_what_the_split_is_not_on_its_last_bits(monkeypatch, tmp_path):
    """A notebook kernel computed a class's split with other last bits than the per-class job that trained
    its rows (seen at default, cause in the BLAS not found), and trained every row again. The rows are now
    keyed on the split's inputs and settings: a split whose every number is one ulp off still hits every
    row (PyOD, deepOD, FLOW, IOCN), and a split of other features or another class misses."""
    rng = np.random.default_rng(0)
    feats = {"train": (rng.standard_normal((160, 8)).astype(np.float32), np.repeat(np.arange(2), 80)),
             "test": (rng.standard_normal((60, 8)).astype(np.float32) + np.repeat(np.arange(2), 30)[:, None],
                      np.repeat(np.arange(2), 30)),
             "classes": ["a", "b"], "key": {"features": "toy"}}
    monkeypatch.setattr(E.inputs, "fashion_features", lambda *a, **k: feats)
    monkeypatch.setenv("CCC_JOBS", "1")        # the patched features live in this process: no worker pool
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    S = E.settings("smoke", classes=(0,), n_train=None, feature_dim=4, baselines=("KNN",), deepod=("DeepSVDD",),
                   deepod_classes={}, steps=4, flow_steps=4, eval_at=(4,), n_blocks=2, probe=(10, 10))
    methods = ["KNN", "DeepSVDD (deepOD)", "FLOW", "IOCN"]
    first = E.one_vs_rest("cnn_mnist5k", S, "smoke", methods=methods, cache=True)
    assert not any(first.from_cache[m][0] for m in methods)
    split = E.one_class_split

    def off_by_one_ulp(*a, **k):
        sp = split(*a, **k)
        sp.train, sp.test = (np.nextafter(v, np.float32(np.inf)) for v in (sp.train, sp.test))
        return sp
    monkeypatch.setattr(E.inputs, "one_class_split", off_by_one_ulp)
    again = E.one_vs_rest("cnn_mnist5k", S, "smoke", methods=methods, cache=True)
    assert all(again.from_cache[m][0] for m in methods), again.from_cache
    for m in methods:                         # the INN rows' scores, cube share and reconstruction: from the cache
        np.testing.assert_array_equal(again.scores[m][0], first.scores[m][0])
    assert (again.inside_train, again.recon) == (first.inside_train, first.recon)
    fresh = E.one_vs_rest("cnn_mnist5k", S, "smoke", methods=["IOCN"], cache=False)
    np.testing.assert_allclose(fresh.scores["IOCN"][0], first.scores["IOCN"][0], atol=1e-5)   # retrained: float rounding
    monkeypatch.setattr(E.inputs, "one_class_split", split)
    feats["key"] = {"features": "other"}
    other = E.one_vs_rest("cnn_mnist5k", S, "smoke", methods=methods, cache=True).from_cache
    assert not any(other[m][0] for m in methods), other
    assert split(feats, 0, 4).key != split(feats, 1, 4).key != split(feats, 1, 3).key


def test_lazy_baseline_scores_are_keyed_on_what_the_rows_are(tmp_path, monkeypatch):
    """With a data key and an ``x_key``, rows one ulp off (recomputed elsewhere) read the cached scores; a
    different ``x_key`` does not."""
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    x_in, x_out = _blobs(120, 3)
    lazy = E.LazyBaseline("KNN", x_in, seed=0, data_key={"split": "toy"})
    a = lazy.score(x_out, x_key={"images": "q"})
    other = E.LazyBaseline("KNN", np.nextafter(x_in, np.inf), seed=0, data_key={"split": "toy"})
    np.testing.assert_array_equal(other.score(np.nextafter(x_out, np.inf), x_key={"images": "q"}), a)
    assert other.det is None                                   # read, not fitted
    other.score(x_out, x_key={"images": "r"})
    assert other.det is not None
