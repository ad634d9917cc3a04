"""Unit tests of ccc_lib.neuralfp and ccc_lib.experiments.neuralfp (tiny CNN, synthetic data, CPU)."""
import numpy as np
import pandas as pd
import pytest
import torch

from ccc_lib import Detector, InputError, NotFittedError, build_classifier, ood_metrics, set_seed
from ccc_lib import neuralfp as nfp
from ccc_lib.data import TensorData
from ccc_lib.experiments import neuralfp as xp

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
    model = build_classifier()
    for prof in ("smoke", "default", "full", "full_dry"):
        s = xp.settings(prof)
        for taps, pool in s["configs"]:
            assert set(xp.tap_set(taps, model)) <= set(model.layer_names)
        assert 0 < s["alpha"] < 1 and 0.0 in s["eps_grid"]
        assert set(xp.claim_bounds(prof)) == {"auroc_mnist_other", "fa_slack"}
    assert xp.settings("full_dry")["epochs"] < xp.settings("full")["epochs"]
    assert xp.settings("smoke", epochs=1)["epochs"] == 1
    with pytest.raises(ValueError):
        xp.settings("smoke", no_such_setting=1)


def test_every_module_taps_cover_conv_bn_act_pool():
    taps = nfp.every_module_taps(build_classifier())
    for block in (1, 2, 3):
        assert {f"conv{block}", f"bn{block}", f"act{block}", f"pool{block}"} <= set(taps)
    assert not any(t.startswith(("drop", "flatten")) for t in taps) and taps[-1] == "logits"


def test_reduce_and_collect_shapes():
    a = torch.randn(3, 8, 14, 14)
    assert nfp.reduce_activation(a, 2).shape == (3, 32)
    assert nfp.reduce_activation(a, None).shape == (3, 8 * 14 * 14)               # full map
    assert nfp.reduce_activation(torch.randn(3, 8, 3, 3), 4).shape == (3, 72)   # not pooled up
    assert nfp.reduce_activation(torch.randn(3, 10), 2).shape == (3, 10)
    model = build_classifier(num_classes=4, widths=(4, 8, 8), fc=16).eval()
    acts = nfp.collect_activations(model, torch.rand(5, 1, 28, 28), TAPS, pool_to=2, batch_size=2)
    assert acts["act1"].shape == (5, 16) and acts["pool3"].shape == (5, 32)
    assert acts["_logits"].shape == (5, 4) and acts["_features"].shape == (5, 16)
    tbp = xp.taps_by_pool(model, [("cnn", 1), ("every_module", 2), ("cnn", 2)])
    assert set(tbp) == {1, 2} and set(tbp[2]) == set(nfp.every_module_taps(model)) and tbp[1] == nfp.DEFAULT_TAPS
    multi = xp.collect_pooled(model, torch.rand(5, 1, 28, 28), {1: TAPS, 2: TAPS})
    assert multi[1]["act1"].shape == (5, 4) and multi[2]["act1"].shape == (5, 16)
    # the lazy mapping: keyed without a pass, the same activations when asked, computed once
    torch.manual_seed(0)
    images = {"a": torch.rand(5, 1, 28, 28), "b": torch.rand(3, 1, 28, 28)}
    lazy = xp.PooledActivations(model, images, {2: TAPS})
    assert list(lazy) == ["a", "b"] and len(lazy) == 2 and not lazy._acts
    assert lazy.key("a") == xp.PooledActivations(model, images, {2: TAPS}).key("a") != lazy.key("b")
    assert torch.equal(lazy["a"][2]["act1"], xp.collect_pooled(model, images["a"], {2: TAPS})[2]["act1"])
    assert lazy["a"] is lazy["a"] and "b" not in lazy._acts


def test_is_a_detector_and_scores(fitted):
    model, det = fitted
    assert isinstance(det, Detector)
    x_in = _blobs(200, 1).x
    x_out = torch.rand(200, 1, 28, 28)
    s_in, s_out = det.score(x_in), det.score(x_out)
    assert s_in.shape == (200,) and np.isfinite(s_in).all() and (s_in >= 0).all()
    assert ood_metrics(s_in, s_out)["auroc"] > 0.9
    # score(x) equals the score from one shared pass of the classifier
    e = xp.errors_from_activations(det, nfp.collect_activations(model, x_in, TAPS, 2))
    np.testing.assert_allclose(det.score_errors(e), s_in, rtol=1e-5, atol=1e-6)
    assert det.errors(x_in).shape == (200, len(TAPS))


def test_joint_rule_is_the_max_score_and_holds_budget_on_fresh_data(fitted):
    _, det = fitted
    det.set_rule("joint", 0.1)
    x = torch.cat([_blobs(100, 2).x, torch.rand(50, 1, 28, 28)])
    e = det.errors(x)
    # the one-out rule with tau/mu = exp(m ± t s) is exactly "max |z| > t"
    np.testing.assert_array_equal(det.is_outlier(errors=e), det.score_errors(e) > det.threshold)
    # the budget on FRESH in-distribution images (not the calibration errors the threshold came from):
    # with 1,000 fresh images the binomial standard error at alpha = 0.1 is ~0.01
    fresh = det.is_outlier(_blobs(1000, 12345).x).mean()
    assert abs(fresh - 0.1) <= 0.06, fresh
    th = det.thresholds
    assert all(lo < hi for lo, hi in th.values()) and list(th) == list(TAPS)


def test_budget_test_can_fail(fitted):
    # the same check catches a rule whose threshold is off (here: calibrated for 40 % false alarms)
    _, det = fitted
    det.set_rule("joint", 0.4)
    assert abs(det.is_outlier(_blobs(1000, 12345).x).mean() - 0.1) > 0.06
    det.set_rule("joint", 0.1)


def test_literal_rule_compounds_and_fixes(fitted):
    _, det = fitted
    fresh = det.errors(_blobs(600, 99).x)
    rows = xp.false_alarm_table(det, fresh, {"noise": det.errors(torch.rand(50, 1, 28, 28))}, alpha=0.1)
    fa = rows["false alarms (ID test)"]
    assert fa["literal"] > fa["joint"] and fa["literal"] > 0.1 + 0.05     # per-layer 10 % adds up
    assert fa["bonferroni"] < fa["literal"]                              # splitting the budget helps
    assert det.rule == "joint" and det.combine == "max"                  # restored


def test_per_layer_table(fitted):
    _, det = fitted
    t = xp.per_layer_auroc(det, det.errors(_blobs(100, 7).x), det.errors(torch.rand(100, 1, 28, 28)))
    assert len(t) == len(TAPS) + len(nfp.COMBINES) and t.index[0] == "layer 1: act1"
    assert t[xp.ZABS].between(0, 1).all() and t[xp.RAW].between(0, 1).all()


def test_per_layer_raw_is_the_one_sided_auroc_and_can_be_below_half(fitted):
    # the slides' quantity: sklearn's roc_auc_score of the raw error (OOD = 1), NOT folded to >= 0.5
    from sklearn.metrics import roc_auc_score
    _, det = fitted
    e_in = det.errors(_blobs(150, 21).x)
    rng = np.random.default_rng(0)
    e_out = e_in[rng.permutation(len(e_in))[:120]].copy()
    e_out[:, 0] *= 0.05                   # layer 1: OOD reconstructed far better (lower error)
    e_out[:, 1] *= 20.0                   # layer 2: OOD reconstructed far worse
    t = xp.per_layer_auroc(det, e_in, e_out)
    y = np.r_[np.zeros(len(e_in)), np.ones(len(e_out))]
    for j in range(len(TAPS)):
        assert t[xp.RAW].iloc[j] == pytest.approx(roc_auc_score(y, np.r_[e_in[:, j], e_out[:, j]]), abs=1e-9)
    assert t[xp.RAW].iloc[0] < 0.1 and t[xp.RAW].iloc[1] > 0.9      # below 0.5 kept as it is
    assert t[xp.ZABS].iloc[0] > 0.9                                 # the two-sided score sees both directions
    cv = xp.combined_vs_layers(t)
    comb = float(t.loc["combined: max", xp.ZABS])
    for q in (xp.RAW, xp.ZABS):
        layers = t[q].iloc[:len(TAPS)]
        assert cv[q]["best"] == pytest.approx(layers.max()) and cv[q]["best layer"] == layers.idxmax()
        assert cv[q]["margin"] == pytest.approx(comb - layers.max())
    assert cv[xp.RAW]["best layer"] == "layer 2: act1".replace("act1", TAPS[1])


def test_slides_numbers_are_transcribed_as_printed():
    mn, fa = xp.slides_per_layer("mnist"), xp.slides_per_layer("fashion_mnist")
    assert mn.shape == (7, 3) and fa.shape == (11, 3)
    assert fa.loc["layer 10", "mnist"] == 0.1961 and fa.loc["layer 9", "cifar10"] == 0.2530
    assert fa.loc["layer 9", "svhn"] == 0.2418 and mn.loc["layer 7", "cifar10"] == 0.8955
    for (meth, fam), eps in xp.SLIDES_EPS_PRINTED.items():
        t = xp.slides_eps_table(meth, fam)
        assert list(t.index) == list(eps) and t.shape == (6, 3), (meth, fam)
        assert (meth, fam) in xp.SLIDES_SOURCES and ("per_layer", fam) in xp.SLIDES_SOURCES
    assert 0.014 in xp.SLIDES_EPS_PRINTED[("ODIN", "mnist")]                 # read as printed, not as 0.0014
    assert 0.0014 in xp.SLIDES_EPS_PRINTED[("Mahalanobis", "fashion_mnist")]
    assert xp.slides_eps_table("Mahalanobis", "fashion_mnist").loc[0.002, "svhn"] == 0.9908
    assert xp.slides_eps_table("ODIN", "mnist").loc[0.01, "svhn"] == 0.9891
    for prof in ("smoke", "default", "full"):
        assert {0.0014, 0.014} <= set(xp.settings(prof)["eps_grid"])


def test_slides_checks_find_the_contradictions_in_their_numbers(monkeypatch):
    checks = {c["statement"]: c for c in xp.slides_checks()}
    maha, odin = checks[xp.SLIDES_TEXT["maha"]], checks[xp.SLIDES_TEXT["odin"]]
    assert not maha["holds"] and "0.9908" in maha["evidence"] and "0.9608" in maha["evidence"]
    assert not odin["holds"] and "0.9891" in odin["evidence"] and "is not one" in odin["evidence"]
    assert checks[xp.SLIDES_TEXT["high"]]["holds"] and checks[xp.SLIDES_TEXT["layers"]]["holds"]
    text = xp.slides_contradictions_text()
    assert "0.9908" in text and "0.9891" in text
    # the checks are computed from the constants: make ODIN beat NeuralFP on MNIST vs SVHN and the exception holds
    patched = {k: dict(v) for k, v in xp.SLIDES_BASELINES.items()}
    patched[("ODIN", "mnist")]["svhn"] = (0.9858, 0.9858, 0.9859, 0.9860, 0.9870, 0.9950)
    monkeypatch.setattr(xp.slides, "SLIDES_BASELINES", patched)          # where slides_checks reads it
    odin = {c["statement"]: c for c in xp.slides_checks()}[xp.SLIDES_TEXT["odin"]]
    assert odin["holds"] and "is one" in odin["evidence"]


def test_slides_beside_ours_and_labelled_by_comparability():
    from ccc_lib import get_profile
    ours = pd.DataFrame({"fashion_mnist": [0.5, 0.6], "noise": [0.9, 0.8]}, index=[0.0, 0.014])
    t = xp.eps_with_slides(ours, "ODIN", "mnist5k", get_profile("default"))
    lab = "slides (comparable only at full)"
    assert ("fashion_mnist", lab) in t.columns and ("noise", lab) not in t.columns
    assert t.loc[0.014, ("fashion_mnist", lab)] == 0.9285 and t.loc[0.014, ("fashion_mnist", "ours")] == 0.6
    assert np.isnan(t.loc[0.0, ("fashion_mnist", lab)]) and 0.0014 not in t.index     # only the ε printed
    assert np.isnan(t.loc[0.0005, ("fashion_mnist", "ours")]) and t.loc[0.0005, ("fashion_mnist", lab)] == 0.9289
    full = xp.eps_with_slides(ours.rename(columns={"fashion_mnist": "svhn"}), "Mahalanobis", "fashion_mnist",
                              get_profile("full"))
    assert full.loc[0.0014, ("svhn", xp.slides_label("full"))] == 0.9147 and "same data" in xp.slides_label("full")
    tab = pd.DataFrame({xp.RAW: [0.3, 0.7, 0.9], xp.ZABS: [0.8, 0.7, 0.9]},
                       index=["layer 1: a", "layer 2: b", "combined: max"])
    pl = xp.per_layer_with_slides("mnist", {"fashion_mnist": tab}, ("a", "b"), get_profile("full"))
    sl = xp.slides_label("full")
    assert len(pl) == 7 + 2 and pl.loc["layer 7", ("fashion_mnist", sl)] == 0.8741
    assert np.isnan(pl.loc["layer 7", ("fashion_mnist", xp.RAW)])
    assert pl.loc["combined − best layer", ("fashion_mnist", xp.RAW)] == pytest.approx(0.2)
    assert pl.loc["combined − best layer", ("fashion_mnist", xp.ZABS)] == pytest.approx(0.1)
    assert pl.loc["combined (one-out)", ("fashion_mnist", sl)] == 0.9826


def test_counterfeit_thresholds_come_from_validation_scores_only():
    rng = np.random.default_rng(0)
    val, x = rng.normal(size=500), rng.normal(1.0, 1.0, size=200)
    r = xp.flag_share(val, x, 0.05)
    assert r["threshold"] == pytest.approx(np.quantile(val, 0.95))
    assert r["flagged"] == pytest.approx(float((x > np.quantile(val, 0.95)).mean()))
    assert xp.flag_share(val + 10, x, 0.05)["flagged"] == 0.0               # moves with the validation scores
    with pytest.raises(InputError, match="validation"):
        xp.flag_share(val[:1], x, 0.05)
    # the chapter's counterfeit rows threshold on the validation ID scores, never on the ID test scores
    import inspect
    src = inspect.getsource(xp.counterfeits.score_counterfeits)
    assert "flag_share(val[ds][meth]" in src and "np.quantile(ref" not in src and "val = validation_scores(ch)" in src
    assert 'ch.dets[ds].score_errors(ch.ERR[ds]["val_id"]' in inspect.getsource(xp.counterfeits.validation_scores)


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


# ---------------------------------------------------------------- input validation (issue 17), table-driven

def _nan_pixel():
    x = torch.rand(4, 1, 28, 28)
    x[1, 0, 3, 3] = float("nan")
    return x


BAD_IMAGES = [
    ("one NaN pixel", _nan_pixel, InputError, "non-finite"),
    ("3×32×32 into a 1×28×28 model", lambda: torch.rand(4, 3, 32, 32), InputError, "expects"),
    ("0-255 pixel values", lambda: 255 * torch.rand(4, 1, 28, 28), InputError, "divide by 255"),
    ("empty batch", lambda: torch.rand(0, 1, 28, 28), InputError, "empty"),
    ("single image without batch dim", lambda: torch.rand(1, 28, 28), InputError, "unsqueeze"),
    ("flat vectors", lambda: torch.rand(4, 784), InputError, "reshape"),
    ("a list", lambda: [[0.5]], InputError, "torch.as_tensor"),
    ("uint8 images", lambda: torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8), InputError, "255"),
]


@pytest.mark.parametrize("entry", ["score", "is_outlier", "errors", "layer_z"])
@pytest.mark.parametrize("case,make,exc,match", BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_bad_images_are_rejected_before_torch(fitted, entry, case, make, exc, match):
    _, det = fitted
    with pytest.raises(exc, match=match):
        getattr(det, entry)(make())


@pytest.mark.parametrize("case,make,exc,match", BAD_IMAGES[:3], ids=[c[0] for c in BAD_IMAGES[:3]])
def test_bad_training_images_are_rejected(tiny_classifier, case, make, exc, match):
    det = nfp.NeuralFP(tiny_classifier(4), TAPS, epochs=1)
    with pytest.raises(exc, match=match):
        det.fit(make())


@pytest.mark.parametrize("entry", ["score", "is_outlier", "errors", "layer_z", "score_errors"])
def test_score_before_fit_names_the_fix(tiny_classifier, entry):
    det = nfp.NeuralFP(tiny_classifier(4), TAPS)
    arg = np.ones((3, len(TAPS))) if entry == "score_errors" else torch.rand(3, 1, 28, 28)
    with pytest.raises(NotFittedError, match=r"fit\("):
        getattr(det, entry)(arg)


BAD_ERRORS = [
    ("wrong number of layers", lambda L: np.ones((3, L + 1)), "one column per tap"),
    ("NaN error", lambda L: np.full((3, L), np.nan), "finite"),
    ("zero error", lambda L: np.zeros((3, L)), "> 0"),
    ("1-D", lambda L: np.ones(L), "N×"),
]


@pytest.mark.parametrize("case,make,match", BAD_ERRORS, ids=[c[0] for c in BAD_ERRORS])
@pytest.mark.parametrize("entry", ["score_errors", "is_outlier", "flags_from_errors", "layer_z"])
def test_bad_error_arrays(fitted, case, make, match, entry):
    _, det = fitted
    with pytest.raises(InputError, match=match):
        getattr(det, entry)(errors=make(len(TAPS))) if entry in ("is_outlier", "layer_z") else \
            getattr(det, entry)(make(len(TAPS)))


BAD_ARGS = [
    ({"combine": "sum"}, "combine"),
    ({"rule": "any"}, "rule"),
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": 0}, "alpha"),
    ({"epochs": 0}, "epochs"),
    ({"pool_to": 0}, "pool_to"),
    ({"taps": ("no_such_layer",)}, "not layers"),
    ({"taps": ()}, "at least one"),
]


@pytest.mark.parametrize("kw,match", BAD_ARGS, ids=[str(k) for k, _ in BAD_ARGS])
def test_bad_constructor_arguments(tiny_classifier, kw, match):
    with pytest.raises(InputError, match=match):
        nfp.NeuralFP(tiny_classifier(4), **kw)


def test_bad_fit_arguments(tiny_classifier):
    det = nfp.NeuralFP(tiny_classifier(4), TAPS, epochs=1)
    with pytest.raises(InputError, match="calib_frac"):
        det.fit(_blobs(100, 0), calib_frac=1.5)
    with pytest.raises(InputError, match="at least 10"):
        det.fit(_blobs(25, 0), calib_frac=0.9)


def test_errors_from_activations_checks_pooling(fitted):
    model, det = fitted
    acts = nfp.collect_activations(model, _blobs(5, 1).x, TAPS, pool_to=1)
    with pytest.raises(InputError, match="pool_to=2"):
        xp.errors_from_activations(det, acts)
    with pytest.raises(InputError, match="no activations"):
        xp.errors_from_activations(det, {"act1": acts["act1"]})


# ---------------------------------------------------------------- experiment protocol

def test_validation_split_is_disjoint_and_stratified():
    data = _blobs(400, 4)
    rest, val = xp.validation_split(data, 80, seed=0)
    assert len(rest) + len(val) == 400 and len(val) == 80
    xs = {tuple(r.flatten()[:50].tolist()) for r in rest.x}
    assert not any(tuple(r.flatten()[:50].tolist()) in xs for r in val.x)
    assert set(val.y.tolist()) == {0, 1, 2, 3}
    with pytest.raises(InputError):
        xp.validation_split(data, 2)


def test_spatial_shifts_move_the_layout():
    x = _blobs(10, 5).x
    shifts = xp.spatial_shifts(x, 6)
    assert set(shifts) == {"flipped left-right", "flipped upside-down", "rotated 90°", "shifted 6 px"}
    for name, s in shifts.items():
        assert s.shape == x.shape and not torch.equal(s, x), name
        assert s.min() >= 0 and s.max() <= 1
    assert torch.equal(shifts["shifted 6 px"][..., 6:, 6:], x[..., :-6, :-6])


def test_tune_on_validation_picks_the_best_and_the_first_tie():
    assert xp.tune_on_validation({"a": 0.5, "b": 0.9, "c": 0.9}) == "b"
    assert xp.tune_on_validation({"a": 1.0, "b": 1.0, "c": 0.9}, tiebreak={"a": 2.0, "b": 5.0, "c": 9.0}) == "b"
    assert xp.tune_on_validation({"a": 0.99991, "b": 0.99994}, tiebreak={"a": 3.0, "b": 1.0}) == "a"   # 4 decimals


def test_chapter_models_skip_classifiers_without_ood_sets():
    from ccc_lib import get_profile
    run, skipped = xp.chapter_models(get_profile("full"))
    assert run == ["mnist", "fashion_mnist"] and set(skipped) == {"svhn", "cifar10"}
    assert all("slides" in why for why in skipped.values())


def test_tune_baselines_on_validation(tiny_classifier, tmp_path, monkeypatch):
    from ccc_lib import baselines as bl
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    model = tiny_classifier(4)
    maha = bl.Mahalanobis(model).fit(_blobs(200, 8))
    noise = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    ch = xp.tune_baselines(model, maha, _blobs(40, 9).x, noise, (1.0, 1000.0), (0.0, 0.001), "unit-test")
    assert ch.odin_T in (1.0, 1000.0) and ch.odin_eps in (0.0, 0.001) and ch.maha_eps in (0.0, 0.001)
    assert ch.odin_val.loc[ch.odin_eps, ch.odin_T] == ch.odin_val.max().max()
    assert ch.maha_val[ch.maha_eps] == ch.maha_val.max()
    again = xp.tune_baselines(model, maha, _blobs(40, 9).x, noise, (1.0, 1000.0), (0.0, 0.001), "unit-test")
    assert list(tmp_path.glob("checkpoints/neuralfp-sweep-*.pt"))        # read back from the tensor cache
    assert again.odin_val.equals(ch.odin_val)


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


def test_chapter_models_without_any_ood_set_fails_loudly():
    from dataclasses import replace
    from ccc_lib import get_profile
    with pytest.raises(InputError, match="no OOD sets"):
        xp.chapter_models(replace(get_profile("smoke"), ood_sets={}))


def test_where_we_differ_is_generated_from_the_settings():
    from ccc_lib import get_profile
    S = xp.settings("default")
    t = xp.where_we_differ(S, get_profile("default"), {"mnist5k": xp.Config("cnn", 4)})
    assert "mnist5k: CNN taps, pool 4×4" in t.loc["tapped layers", "this chapter"]
    assert f"{S['fit_limit']:,}" in t.loc["training images", "this chapter"]
    assert t.loc["score behind the ROC", "slides"] == "not given"
    step3 = t.loc["step 3: reconstruction errors for the thresholds"]
    assert "applied on training data" in step3["slides"] and "held out from the autoencoders" in step3["this chapter"]
    assert "our literal reading" in t.loc["thresholds τ_l, μ_l", "this chapter"]
    assert "0.014" in t.loc["ε grid of the baselines' tables", "slides"]
    assert "Hendrycks" in t.loc['"ODIN [1]"', "slides"]
    assert "one-sided" in t.loc["per-layer AUROC", "slides"]


def test_held_out_table_says_what_the_classifier_saw():
    S = xp.settings("default")
    h = xp.held_out(S, {"test ID": "mnist5k: 1,000"})
    assert h.loc["validation ID", "classifier trained on them"].startswith("yes")
    assert h.loc["calibration", "autoencoders trained on them"] == "no"
    assert h.loc["test ID", "classifier trained on them"] == "no" and h.loc["test ID", "count"] == "mnist5k: 1,000"


def test_fit_is_deterministic_whatever_ran_before(tiny_classifier):
    model = tiny_classifier(4)
    data = _blobs(200, 5)
    a = nfp.NeuralFP(model, TAPS, epochs=1).fit(data)
    torch.rand(1000)                                            # consume the global RNG in between
    b = nfp.NeuralFP(model, TAPS, epochs=1).fit(data)
    x = _blobs(20, 6).x
    np.testing.assert_array_equal(a.score(x), b.score(x))


def test_versus_baseline_verdict_comes_from_the_paired_interval():
    rng = np.random.default_rng(1)
    n = 300
    base = {"test": rng.normal(size=n), "ood": rng.normal(0.3, 1.0, size=n)}           # weak baseline
    strong = {s: {"test": rng.normal(size=n), "ood": rng.normal(2.5, 1.0, size=n)} for s in (0, 1, 2)}
    r = xp.versus_baseline(strong, base, "ood")
    assert r["verdict"] == "wins" and r["combined"].lo > 0 and len(r["per_seed"]) == 3
    assert r["combined"].n == 3                                                      # combined over the seeds
    r = xp.versus_baseline({0: base, 1: base}, strong[0], "ood")
    assert r["verdict"] == "loses" and r["combined"].hi < 0
    same = {s: {"test": base["test"] + 1e-3 * rng.normal(size=n), "ood": base["ood"]} for s in (0, 1, 2)}
    r = xp.versus_baseline(same, base, "ood")
    assert r["verdict"] == "tie within uncertainty" and r["combined"].lo < 0 < r["combined"].hi
    ci = xp.auroc_over_seeds(strong, "ood")
    assert ci.lo < ci.estimate < ci.hi and ci.estimate == pytest.approx(
        np.mean([xp.auroc(v["test"], v["ood"]) for v in strong.values()]))


def test_combined_vs_layers_interval_is_paired_on_the_same_images(fitted):
    from ccc_lib import stats as st
    _, det = fitted
    e_in, e_out = det.errors(_blobs(150, 31).x), det.errors(torch.rand(120, 1, 28, 28))
    cv = xp.combined_vs_layers_ci(det, e_in, e_out)
    t = xp.per_layer_auroc(det, e_in, e_out)
    for q in (xp.RAW, xp.ZABS):
        d = cv[q]["diff"]
        assert d.estimate == pytest.approx(cv[q]["margin"], abs=1e-9) and d.lo <= d.estimate <= d.hi
    j = list(t.index).index(cv[xp.RAW]["best layer"])
    ref = st.auroc_diff_ci(det.score_errors(e_in), det.score_errors(e_out), e_in[:, j], e_out[:, j])
    assert cv[xp.RAW]["diff"].lo == pytest.approx(ref.lo) and cv[xp.RAW]["diff"].hi == pytest.approx(ref.hi)


def test_validation_comes_from_the_test_split_only_where_cheap():
    train, test = _blobs(400, 41), _blobs(300, 42)
    sp = xp.split_validation(train, test, 60, 200, seed=0)           # 300 - 60 >= 200: cheap
    assert sp["source"] == "test" and len(sp["val"]) == 60 and len(sp["test"]) == 200
    assert sp["fit"] is train                                         # the training split is left whole
    key = lambda d: {tuple(r.flatten()[::7].tolist()) for r in d.x}
    assert not key(sp["val"]) & key(sp["test"]) and key(sp["val"]) <= key(test)
    sp = xp.split_validation(train, test, 60, 280, seed=0)           # would shrink the evaluation: train
    assert sp["source"] == "train" and len(sp["fit"]) == 340 and len(sp["test"]) == 280
    assert key(sp["val"]) <= key(train) and not key(sp["val"]) & key(sp["fit"])
    assert not xp.validation_from_test(1000, None, 500)              # all test images evaluated (full)
    h = xp.held_out(xp.settings("default"), {}, {"a": "test", "b": "train"})
    assert h.loc["validation ID", "classifier trained on them"] == "no (a); yes, trained on them (b)"


def test_fit_bank_job_fills_the_cache_the_chapter_reads(tiny_classifier, tmp_path, monkeypatch):
    # the job loads the classifier and the split as the chapter does and leaves the bank in the cache:
    # the chapter's own fit with the same key then reads it (from_cache) instead of training again
    import ccc_lib.train
    from ccc_lib import get_profile
    from ccc_lib.parallel import run_jobs
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    model = tiny_classifier(4)
    info = {"train_data": _blobs(500, 51), "test_data": _blobs(400, 52)}
    monkeypatch.setattr(ccc_lib.train, "get_classifier", lambda ds, P, seed=0: (model, info))
    monkeypatch.setitem(xp.SETTINGS, "smoke", {**xp.SETTINGS["smoke"], "epochs": 1, "fit_limit": 200})
    out = run_jobs(xp.fit_bank_job, [dict(ds="blobs", profile="smoke", taps="cnn", pool_to=1, seed=3)], n_jobs=1)
    assert out[0]["from_cache"] is False and out[0]["seed"] == 3
    P = get_profile("smoke")
    S = xp.settings(P)
    sp = xp.split_validation(info["train_data"], info["test_data"], S["val_n"], S["test_limit"], seed=0)
    det = xp.make_detector(model, xp.Config("cnn", 1), S, seed=3)       # what the chapter's fit_config builds
    det.fit(sp["fit"], fit_limit=S["fit_limit"], calib_frac=S["calib_frac"],
            cache_key=xp.bank_key(model, "blobs", P, S, sp["source"]))
    assert det.fit_info["from_cache"]
    other = xp.make_detector(model, xp.Config("cnn", 1), S, seed=4)        # another seed: its own bank
    other.fit(sp["fit"], fit_limit=S["fit_limit"], calib_frac=S["calib_frac"],
              cache_key=xp.bank_key(model, "blobs", P, S, sp["source"]))
    assert not other.fit_info["from_cache"]


def test_auroc_over_seeds_stays_inside_zero_one():
    rng = np.random.default_rng(2)
    perfect = {s: {"test": rng.normal(size=40), "ood": rng.normal(50.0, 1.0, size=40)} for s in (0, 1, 2)}
    ci = xp.auroc_over_seeds(perfect, "ood")
    assert ci.estimate == 1.0 and 0.0 <= ci.lo < 1.0 and ci.hi == 1.0


def test_plateau_stops_a_flat_loss_early_and_says_so():
    # a learning rate too small to move the weights: every layer's loss is flat from the start, so the bank
    # stops at min_epochs; the history says how far it went and why
    g = torch.Generator().manual_seed(0)
    acts = {"a": torch.randn(256, 8, generator=g), "b": torch.randn(256, 4, generator=g)}
    bank = nfp.FingerprintBank({"a": 8, "b": 4})
    rule = {"tol": 0.01, "frac": 0.2, "min_epochs": 3}
    info = bank.train_on(acts, epochs=12, lr=1e-12, batch_size=64, plateau=rule)
    assert info["stopped_early"] and info["epochs_run"] == 3 and info["epochs"] == 12
    assert len(info["epoch_losses"]["a"]) == 3 and all(t["plateaued"] for t in info["plateau_tests"].values())
    tab = xp.stopping_table({("m", "cfg", 0): info})
    assert tab.loc[("m", "cfg", 0), "epochs run"] == 3 and tab.loc[("m", "cfg", 0), "stopped early (plateau)"]


def test_plateau_never_stops_a_falling_loss_and_off_trains_every_epoch():
    g = torch.Generator().manual_seed(0)
    acts = {"a": torch.randn(512, 32, generator=g) @ torch.randn(32, 32, generator=g)}
    rule = {"tol": 1e-6, "frac": 0.2, "min_epochs": 2}                  # nothing falls by less than 1e-6
    info = nfp.FingerprintBank({"a": 32}).train_on(acts, epochs=5, lr=1e-2, batch_size=64, plateau=rule)
    assert not info["stopped_early"] and info["epochs_run"] == 5
    off = nfp.FingerprintBank({"a": 32}).train_on(acts, epochs=5, lr=1e-2, batch_size=64)
    assert off["plateau"] is None and off["epochs_run"] == 5 and not off["stopped_early"]


@pytest.mark.parametrize("rule", [{"tol": 0.01}, {"tol": -1, "frac": 0.2, "min_epochs": 3},
                                  {"tol": 0.01, "frac": 1.5, "min_epochs": 3}, {"tol": 0.01, "frac": 0.2, "min_epochs": 0},
                                  "0.01"])
def test_bad_plateau_rule_names_the_fix(tiny_classifier, rule):
    with pytest.raises(InputError, match="plateau"):
        nfp.NeuralFP(tiny_classifier(4), TAPS, plateau=rule)


def test_versus_every_baseline_wins_only_when_ahead_of_each():
    # NeuralFP far ahead of a weak baseline but level with a strong one: against the best-of-test pick it
    # would be a tie; against EVERY baseline it is a tie too — and never a win over the weak one alone
    rng = np.random.default_rng(3)
    n = 300
    nf = {s: {"test": rng.normal(size=n), "ood": rng.normal(2.5, 1.0, size=n)} for s in (0, 1, 2)}
    weak = {"test": rng.normal(size=n), "ood": rng.normal(0.3, 1.0, size=n)}
    level = {"test": nf[0]["test"] + 1e-3 * rng.normal(size=n), "ood": nf[0]["ood"] + 1e-3 * rng.normal(size=n)}
    far = {"test": rng.normal(size=n), "ood": rng.normal(6.0, 1.0, size=n)}
    r = xp.versus_baselines(nf, {"weak": weak}, ["weak"], "ood")
    assert r.verdict == "wins"
    r = xp.versus_baselines(nf, {"weak": weak, "level": level}, ["weak", "level"], "ood")
    assert r.verdict == "tie within uncertainty" and r.closest == "level"
    r = xp.versus_baselines(nf, {"weak": weak, "far": far}, ["weak", "far"], "ood")
    assert r.verdict == "loses" and r.closest == "far" and r.summary.hi < 0
    tab = xp.winners_table({("m", "ood"): r}, {("m", "ood"): xp.auroc_over_seeds(nf, "ood")}, 3)
    assert tab.loc[("m", "ood"), "verdict"] == "loses" and tab.loc[("m", "ood"), "closest baseline"] == "far"
    assert "Holm p" in tab.loc[("m", "ood"), "− far"] and "Holm" not in tab.loc[("m", "ood"), "− weak"]
