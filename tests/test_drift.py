"""Unit tests of chapter 4 (drift via gray data): tiny sizes, CPU, assertions that can fail."""
import math

import numpy as np
import pytest
import torch

from ccc_lib import InputError, TensorData, build_classifier, train_classifier
from ccc_lib import drift as D
from ccc_lib.experiments import drift as X
from ccc_lib.metrics import ks_test, mmd_test


def _toy(n_per_class=12, seed=0, classes=10):
    """Separable toy images: class c lights up a vertical band (and odd classes a top bar)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = 0.1 * torch.rand(len(y), 1, 16, 16, generator=g)
    for i, c in enumerate(y.tolist()):
        r = (c * 16) // classes
        x[i, 0, :, r:r + 2] = 0.9
        if c % 2:
            x[i, 0, :3, :] = 0.9
    return TensorData(x, y, [str(c) for c in range(classes)], "toy", "train")


def _noise(n, seed, classes=10):
    """Random images with random labels: nothing to generalise, only to memorise."""
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, classes, (n,), generator=g),
                      [str(c) for c in range(classes)], "noise", "train")


def _frozen(m):
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


class _Swapped(torch.nn.Module):
    """A production model whose concepts of classes 3 and 5 are exchanged (outputs swapped)."""

    def __init__(self, m):
        super().__init__()
        self.m, self.input_shape, self.num_classes = m, m.input_shape, m.num_classes
        perm = list(range(m.num_classes))
        perm[3], perm[5] = 5, 3
        self.register_buffer("perm", torch.tensor(perm))

    def forward(self, x):
        return self.m(x)[:, self.perm]


class _OneClass(torch.nn.Module):
    """A production model whose concept of class 9 became the base model's class 0 (one class drifts)."""

    def __init__(self, m, cls=9, like=0):
        super().__init__()
        self.m, self.input_shape, self.num_classes, self.cls, self.like = m, m.input_shape, m.num_classes, cls, like

    def forward(self, x):
        out = self.m(x).clone()
        out[:, self.cls] = out[:, self.like]
        return out


@pytest.fixture(scope="module")
def toy_model():
    torch.manual_seed(0)
    data = _toy(20)
    m = build_classifier(1, 16, 10, widths=(8, 8, 8), fc=16)
    train_classifier(m, data, epochs=8, batch_size=32, seed=0)
    return _frozen(m), data


@pytest.fixture(scope="module")
def overfit_model():
    """A target that memorised 60 random-label noise images (its members)."""
    members = _noise(60, seed=1)
    m = build_classifier(1, 16, 10, widths=(8, 8, 8), fc=64, conv_dropout=0.0, fc_dropout=0.0)
    train_classifier(m, members, epochs=150, batch_size=60, lr=3e-3, seed=0)
    return _frozen(m), members


# --------------------------------------------------------------------------- settings

def test_settings_profiles_overrides_and_bounds():
    for prof in ("smoke", "default", "full", "full_dry"):
        s = X.settings(prof)
        assert s["margin"] > 0 and s["decision_rule"] in D.DECISION_RULES and 0 < s["alpha"] < 1
        assert {"rotate-one", "new-one"} <= set(s["drift_kinds"])          # drifts confined to one class
        assert len(s["control_seeds"]) >= 3                                   # leave-one-out keeps ≥ 2
        assert s["headline_method"] == "miface" and set(s["variant_methods"]) <= set(D.GRAY_METHODS)
        assert set(s["drift_kinds"]) <= set(X.DRIFT_KINDS) and "none" not in s["drift_kinds"]
    for prof, ds in (("default", ("mnist5k", 10)), ("full", ("emnist", 47))):   # the controls the design needs
        s = X.settings(prof)
        need = X.controls_needed(s["n_per_class"], ds[1], s["alpha"], s["design_drop_to"])
        assert need is not None and len(s["control_seeds"]) >= need, (prof, need)
    assert len(X.settings("default")["drift_seeds"]) >= 2 and len(X.settings("full")["drift_seeds"]) >= 3
    assert X.settings("full")["datasets"] == ("cifar10", "emnist")
    dry, full = X.settings("full_dry"), X.settings("full")
    assert dry["datasets"] == full["datasets"] and dry["n_per_class"] < full["n_per_class"]
    assert X.settings("smoke", margin=0.2)["margin"] == 0.2
    with pytest.raises(ValueError):
        X.settings("smoke", not_a_setting=1)
    assert set(X.CLAIM_BOUNDS) == {"smoke", "default", "full"}


def test_affected_classes_generic_in_class_count():
    assert X.affected_classes("none", 47) == ()
    assert X.affected_classes("rotate-one", 47) == (1,) and X.affected_classes("new-one", 47) == (46,)
    assert X.affected_classes("swap", 47) == (3, 5)
    assert X.affected_classes("rotate", 47) == tuple(range(23))
    assert X.affected_classes("new", 47) == (45, 46)
    with pytest.raises(InputError):
        X.affected_classes("melt", 10)


# --------------------------------------------------------------------------- steps 1-2

def test_make_splits_disjoint_and_stratified():
    data = _toy(30)
    base, prod = D.make_splits(data, 100, 100, seed=3)
    assert len(base) == len(prod) == 100
    assert np.bincount(base.y.numpy()).tolist() == [10] * 10
    assert torch.cdist(base.x.flatten(1), prod.x.flatten(1)).min() > 0       # no image in both portions
    # each production draw its own portion of the rest; the base portion stays the same
    b1, p1 = D.make_splits(data, 100, 100, seed=3, prod_seed=1)
    b2, p2 = D.make_splits(data, 100, 100, seed=3, prod_seed=2)
    assert torch.equal(b1.x, base.x) and torch.equal(b2.x, base.x) and not torch.equal(p1.x, p2.x)
    assert torch.cdist(b1.x.flatten(1), p2.x.flatten(1)).min() > 0
    assert np.bincount(p2.y.numpy()).tolist() == [10] * 10
    assert X.portion_seed("none", 1) != X.portion_seed("swap", 1) != X.portion_seed("swap", 2)
    with pytest.raises(InputError):
        D.make_splits(data, 200, 200)
    with pytest.raises(InputError):
        D.make_splits(data, 0, 10)


def test_apply_drift_swap_rotate_new_none_and_severity():
    data = _toy(20)
    none = X.apply_drift(data, "none")
    assert torch.equal(none.x, data.x) and torch.equal(none.y, data.y)
    sw = X.apply_drift(data, "swap", 1.0)
    a, b = X.affected_classes("swap", 10)
    assert (sw.y[data.y == a] == b).all() and (sw.y[data.y == b] == a).all()
    other = ~((data.y == a) | (data.y == b))
    assert torch.equal(sw.y[other], data.y[other]) and torch.equal(sw.x, data.x)
    half = X.apply_drift(data, "swap", 0.5, seed=1)
    assert int((half.y[data.y == a] == b).sum()) == 10
    rot = X.apply_drift(data, "rotate", 1.0)
    for c in X.affected_classes("rotate", 10):
        m = data.y == c
        assert torch.equal(rot.x[m], torch.rot90(data.x[m], 1, dims=(2, 3)))
    m = data.y == 9
    assert torch.equal(rot.x[m], data.x[m]) and torch.equal(rot.y, data.y)
    src = _noise(100, seed=4)
    new = X.apply_drift(data, "new", 1.0, new_images=src)
    for c in X.affected_classes("new", 10):
        m = data.y == c
        assert not torch.equal(new.x[m], data.x[m])
        # every new image is an image of the source set
        assert (new.x[m].flatten(1)[:, None] == src.x.flatten(1)[None]).all(-1).any(1).all()
    assert torch.equal(new.x[data.y == 0], data.x[data.y == 0]) and torch.equal(new.y, data.y)
    # the drifts confined to one class change that class's images and nothing else
    for kind, kw in (("rotate-one", {}), ("new-one", {"new_images": src})):
        one = X.apply_drift(data, kind, 1.0, **kw)
        (c,) = X.affected_classes(kind, 10)
        changed = (one.x != data.x).flatten(1).any(1)
        assert changed[data.y == c].all() and not changed[data.y != c].any() and torch.equal(one.y, data.y)


@pytest.mark.parametrize("kw, match", [
    ({"kind": "melt"}, "kind"),
    ({"kind": "swap", "severity": 1.5}, "severity"),
    ({"kind": "new"}, "new_images"),
    ({"kind": "new", "new_images": TensorData(torch.rand(20, 3, 8, 8), torch.arange(20) % 10, list("0123456789"), "rgb", "train")}, "shape"),
])
def test_apply_drift_rejects_bad_input(kw, match):
    with pytest.raises(InputError, match=match):
        X.apply_drift(_toy(4), **kw)


# --------------------------------------------------------------------------- steps 3-4

def test_gray_adam_is_classified_as_intended_and_seeded(toy_model):
    m, _ = toy_model
    g1 = D.gray_adam(m, 2, steps=30, lr=0.1, seed=0)
    g2 = D.gray_adam(m, 2, steps=30, lr=0.1, seed=0)
    assert g1.x.shape == (20, 1, 16, 16) and g1.x.min() >= 0 and g1.x.max() <= 1
    assert torch.equal(g1.x, g2.x)
    assert round(g1.own_accuracy * len(g1.x)) >= 18      # at least 18 of the 20 samples


def test_gray_miface_grey_start_identical_per_class(toy_model):
    m, _ = toy_model
    g = D.gray_miface(m, 3, max_iter=10, learning_rate=0.1, window_length=5, threshold=0.99)
    assert g.x.shape == (30, 1, 16, 16)
    assert torch.equal(g.x[0], g.x[2]) and not torch.equal(g.x[0], g.x[3])
    assert g.y.tolist() == sum([[c] * 3 for c in range(10)], [])


def test_gray_data_cached_under_the_model_fingerprint(toy_model, tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    m, _ = toy_model
    S = {"adam_steps": 10, "adam_lr": 0.1}
    g1 = D.gray_data(m, "adam", 1, S, seed=0)
    files = list((tmp_path / "checkpoints").glob("drift-gray-adam-*.pt"))
    assert len(files) == 1 and not g1.info["from_cache"]
    g2 = D.gray_data(m, "adam", 1, S, seed=0)
    assert torch.equal(g1.x, g2.x) and g2.info["from_cache"]
    D.gray_data(m, "adam", 1, S, seed=1)                     # another seed: another entry
    assert len(list((tmp_path / "checkpoints").glob("drift-gray-adam-*.pt"))) == 2


@pytest.mark.parametrize("args, kw, match", [
    (("adam", 2), {}, None),
    (("melt", 2), {}, "method"),
    (("adam", 0), {}, "n_per_class"),
    (("generator", 2), {}, "dataset"),
])
def test_gray_data_validation(toy_model, args, kw, match, tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    m, _ = toy_model
    if match is None:
        assert len(D.gray_data(m, *args, {"adam_steps": 2}, **kw)) == 20
    else:
        with pytest.raises(InputError, match=match):
            D.gray_data(m, *args, **kw)
    with pytest.raises(InputError, match="Module"):
        D.gray_data("not a model", "adam", 1)


# --------------------------------------------------------------------------- steps 5-6

def test_rule_based_attack_equals_agreement(toy_model):
    m, data = toy_model
    att = D.MembershipAttacks(m)
    pred = m(data.x).argmax(1)
    s, pc = att.score(D.GrayData(data.x, data.y, "real"), "rule")
    assert s == pytest.approx(float((pred == data.y).float().mean()))
    y2 = data.y.clone(); y2[data.y == 0] = 1; y2[data.y == 1] = 0
    s2, pc2 = att.score(D.GrayData(data.x, y2, "swapped"), "rule")
    assert pc2[0] <= 0.1 and pc2[5] == pytest.approx(pc[5]) and s2 < s
    # a few records of a few classes are fine (labels are one-hot encoded over all classes)
    assert att.infer(data.x[:5], data.y[:5]).shape == (5,)


def test_attacks_tell_members_of_an_overfit_target(overfit_model):
    """The test that can fail: an overfit target's members get a higher member rate than non-members."""
    m, members = overfit_model
    nonmembers = _noise(60, seed=2)
    att = D.MembershipAttacks(m)
    mem, non = att.member_rates(members, nonmembers, "rule")
    assert mem >= 0.9 and non <= 0.4 and mem - non >= 0.5


def test_black_box_attack_with_real_and_synthetic_shadows(toy_model):
    m, data = toy_model
    att = D.MembershipAttacks(m, _toy(8, seed=5), n_shadow=1, shadow_epochs=1, attack_model="nn", seed=0)
    out = att.infer(data.x, data.y, "black")
    assert out.shape == (len(data),) and set(np.unique(out)) <= {0, 1}
    assert att.shadow == "real" and att.shadow_info["n_records"] == 80
    x, y, fail = D.synthetic_shadow_records(m, 2, max_iterations=40, seed=0)
    assert len(x) == len(y) == 20 - int(fail.sum()) and x.shape[1:] == (1, 16, 16)
    assert len(x) == 0 or (x.min() >= 0 and x.max() <= 1 and (m(x).softmax(1).gather(1, y[:, None]) > 0.4).all())


@pytest.mark.parametrize("call, match", [
    (lambda m, d: D.MembershipAttacks(m, shadow="real"), "attack_data"),
    (lambda m, d: D.MembershipAttacks(m, d, shadow="bogus"), "shadow"),
    (lambda m, d: D.MembershipAttacks(m, TensorData(d.x[:30], d.y[:30], d.classes, "x", "y")), "all 10 classes"),
    (lambda m, d: D.MembershipAttacks(m).infer(torch.rand(4, 3, 16, 16), torch.zeros(4)), "expects"),
    (lambda m, d: D.MembershipAttacks(m).infer(torch.full((4, 1, 16, 16), float("nan")), torch.zeros(4)), "non-finite"),
    (lambda m, d: D.MembershipAttacks(m).infer(d.x[:4], torch.tensor([0, 1, 2, 10])), "classes"),
    (lambda m, d: D.MembershipAttacks(m).infer(d.x[:4], d.y[:3]), "labels for"),
    (lambda m, d: D.MembershipAttacks(m).infer(d.x[:4] * 255, d.y[:4]), "255"),
    (lambda m, d: D.MembershipAttacks(m).infer(d.x[:4], d.y[:4], "black"), "no black-box"),
])
def test_attack_validation(toy_model, call, match):
    m, data = toy_model
    with pytest.raises(InputError, match=match):
        call(m, data)


# --------------------------------------------------------------------------- step 7

def test_betabinom_p_values_equal_a_direct_computation():
    """The grid posterior predictive, computed independently with scipy's beta-binomial: per class,
    weights prior × Π_i pmf(k_i), then P(K_new ≤ k0); the total by convolving the class predictives."""
    from scipy import stats
    from ccc_lib.metrics import BB_PRIOR, betabinom_p_values
    P = BB_PRIOR
    mu = stats.beta.ppf((np.arange(P["n_mu"]) + 0.5) / P["n_mu"], 0.5, 0.5)
    rho = np.geomspace(P["rho_min"], P["rho_max"], P["n_rho"])
    MU, RHO = np.meshgrid(mu, rho, indexing="ij")
    a, b, prior = MU * (1 / RHO - 1), (1 - MU) * (1 / RHO - 1), RHO ** P["rho_power"]
    m, ctrl, k0 = 12, np.array([[12, 7], [11, 9], [12, 3], [10, 8]]), np.array([6, 2])
    pred = []
    for c in range(2):
        w = prior * np.prod([stats.betabinom.pmf(k, m, a, b) for k in ctrl[:, c]], 0)
        pred.append(np.array([(w * stats.betabinom.pmf(j, m, a, b)).sum() for j in range(m + 1)]) / w.sum())
    pc, pt = betabinom_p_values(k0, ctrl, m)
    np.testing.assert_allclose(pc, [pred[c][:k0[c] + 1].sum() for c in range(2)], rtol=1e-9)
    assert pt == pytest.approx(np.convolve(pred[0], pred[1])[:k0.sum() + 1].sum(), rel=1e-9)
    # vectorised over a leading batch dimension: the same numbers
    pcb, ptb = betabinom_p_values(np.stack([k0, k0[::-1]]), np.stack([ctrl, ctrl[:, ::-1]]), m)
    np.testing.assert_allclose(pcb[0], pc) and np.testing.assert_allclose(pcb[1], pc[::-1])
    np.testing.assert_allclose(ptb, pt)


def test_betabinom_p_values_properties():
    from ccc_lib.metrics import betabinom_p_values
    ctrl = np.array([[20, 18], [19, 12], [20, 15], [20, 9], [18, 17]])
    p = np.array([betabinom_p_values(np.array([k, k]), ctrl, 20)[0] for k in range(21)])
    assert (np.diff(p, axis=0) >= 0).all() and np.allclose(p[-1], 1.0)          # a CDF in the count
    assert p[10, 0] < p[10, 1]                  # the same count is lower against tight controls than wide ones
    single = betabinom_p_values(np.array([7]), ctrl[:, :1], 20)
    assert single[0][0] == pytest.approx(single[1])                              # one class: total = class
    for bad, match in [((np.array([21]), ctrl[:, :1], 20), "integers"), ((np.array([1.5]), ctrl[:, :1], 20), "integers"),
                       ((np.array([1, 2]), ctrl[:, :1], 20), "do not match"), ((np.array([1]), ctrl[:, :1], 0), "records")]:
        with pytest.raises(InputError, match=match):
            betabinom_p_values(*bad)


def test_family_false_alarm_rate_at_most_alpha_under_betabinomial_shares():
    """#38: no-drift production models and 10 controls with beta-binomial shares, 20 records per class,
    base rates 0.5-0.95, over-dispersion 0-0.3: the family (model + 10 classes, Holm) raises a false
    alarm at most α (+ two Monte Carlo standard errors); the t-interval rule it replaced does not."""
    reps, alpha = 1000, 0.05
    rows = X.false_alarm_simulation.uncached(base_rates=(0.5, 0.7, 0.9, 0.95, "0.5-0.95"), rhos=(0.0, 0.1, 0.3),
                                             records=20, n_controls=10, reps=reps, alpha=alpha, seed=1)
    mc = 2 * math.sqrt(alpha * (1 - alpha) / reps)
    bb = [r for r in rows if r["rule"] == "beta-binomial, no margin"]
    assert len(bb) == 15 and max(r["rate"] for r in bb) <= alpha + mc, bb
    with_margin = {(r["base rate"], r["rho"]): r["rate"] for r in rows if r["rule"] == "beta-binomial"}
    assert all(with_margin[(r["base rate"], r["rho"])] <= r["rate"] for r in bb)   # the margin only removes alarms
    before = [r["rate"] for r in rows if r["rule"] == "t-interval (before)"]
    assert max(before) > alpha + mc                                                # the old rule fails the same test


def test_controls_needed_is_the_smallest_number_that_sees_the_design_drop():
    from ccc_lib.metrics import betabinom_p_values
    n = X.controls_needed(20, 10, 0.05, 0.1)
    p = [betabinom_p_values(np.array([2]), np.full((k, 1), 20), 20)[0][0] for k in (n - 1, n)]
    assert p[1] < 0.05 / 11 <= p[0]
    assert X.controls_needed(20, 47, 0.05, 0.1) > n               # a larger family needs more controls
    assert X.controls_needed(20, 10, 0.05, 0.5, max_n=5) is None   # a drop to half: not within five


def test_fitted_world_and_simulation_table():
    share = np.array([[1.0, 0.5], [1.0, 0.9], [1.0, 0.1], [1.0, 0.7]])
    label, mu, rho = X.fitted_world(share, 10, "w")
    assert label == "w" and mu == pytest.approx((1.0, 0.55)) and rho[0] == 0.0
    v, b = share[:, 1].var(ddof=1), 0.55 * 0.45 / 10
    assert rho[1] == pytest.approx((v / b - 1) / 9)
    rows = X.false_alarm_simulation.uncached(base_rates=(0.9,), rhos=(0.0, 0.5), records=10, n_controls=4, classes=2,
                                             reps=200, worlds=(("w", mu, rho),), seed=2)
    table, worst = X.simulation_table(rows, 0.05, rho_claim=0.3)
    assert table.shape == (3, 3) and set(worst) == set(X.SIM_RULES)
    assert "0.5" not in worst["beta-binomial"]["setting"]            # ρ above the claim: shown, not claimed


# ten controls, six classes, 20 records: classes 0-2 agree at 20/20, class 3 widely spread, class 4 tight near 18
_CTRL_K = np.array([[20, 20, 20, 4, 18, 20], [20, 20, 20, 12, 17, 20], [20, 20, 20, 18, 19, 20], [20, 20, 20, 8, 18, 20],
                    [20, 20, 20, 14, 18, 19], [20, 20, 20, 10, 17, 20], [20, 20, 20, 16, 19, 20], [20, 20, 20, 6, 18, 20],
                    [20, 20, 20, 13, 18, 20], [20, 20, 20, 9, 19, 20]])


@pytest.mark.parametrize("counts, flagged, why", [
    ([20, 2, 20, 11, 18, 20], (1,), "a class far below its agreeing controls"),
    ([20, 20, 20, 3, 18, 20], (), "within class 3's own wide spread"),
    ([20, 20, 20, 11, 10, 20], (4,), "0.4 below a tight class"),
    ([0, 0, 20, 11, 18, 20], (0, 1), "two classes"),
    ([20, 18, 20, 11, 18, 20], (), "a drop of the margin (0.1) is never drift"),
    ([20, 20, 20, 11, 18, 20], (), "nothing moved"),
    ([20, 20, 20, 11, 18, 0], (5,), "one control at 19/20: a collapse is still far out"),
])
def test_drift_decision_beta_binomial_classes_table(counts, flagged, why):
    pc, cpc = np.array(counts) / 20, _CTRL_K / 20
    d = D.drift_decision(float(pc.mean()), cpc.mean(1), per_class=pc, control_per_class=cpc, records=20)
    assert d.flagged_classes == flagged, why
    assert d.drift is bool(flagged) and d.rule == "beta-binomial" and (d.p_value < 0.05) is d.drift
    q, p = np.array(d.class_p_corrected), np.array(d.class_p_values)
    assert (q >= p - 1e-15).all() and (q <= np.minimum(1, 7 * p) + 1e-12).all()    # Holm over 7 tests
    assert set(np.flatnonzero((q < 0.05) & (cpc.mean(0) - pc > 0.1 + 1e-9))) == set(flagged)


def test_drift_decision_margin_is_the_smallest_drop_called_drift():
    """A drop of at most the margin is never drift however significant; a larger margin removes alarms only."""
    cpc = np.ones((15, 4))
    cpc[:, 1] = np.r_[[0.95, 1.0] * 7, 0.95]              # class 1: 19 or 20 of 20 records
    pc = np.array([1.0, 0.6, 1.0, 1.0])                  # 12/20: a drop of 0.37 below the controls' mean
    kw = dict(per_class=pc, control_per_class=cpc, records=20)
    d3 = D.drift_decision(float(pc.mean()), cpc.mean(1), margin=0.3, **kw)
    d4 = D.drift_decision(float(pc.mean()), cpc.mean(1), margin=0.4, **kw)
    assert d3.flagged_classes == (1,) and d3.class_p_corrected[1] < 0.05
    assert not d4.drift and d4.class_p_corrected[1] == d3.class_p_corrected[1] and d4.p_value == 1.0


def test_one_class_drift_the_model_level_test_misses_the_family_catches():
    ctrl_k = np.random.default_rng(0).binomial(20, 0.95, (10, 10))
    prod = ctrl_k[0].copy()
    prod[7] = 0                                          # one class collapses: the model-level share moves < 0.1
    pc, cpc = prod / 20, ctrl_k / 20
    model_only = D.drift_decision(float(pc.mean()), cpc.mean(1), records=200)
    family = D.drift_decision(float(pc.mean()), cpc.mean(1), per_class=pc, control_per_class=cpc, records=20)
    assert not model_only.drift and family.drift and family.flagged_classes == (7,)
    quiet = D.drift_decision(float(ctrl_k[0].mean() / 20), cpc.mean(1), per_class=ctrl_k[0] / 20,
                             control_per_class=cpc, records=20)
    assert not quiet.drift and quiet.flagged_classes == ()


@pytest.mark.parametrize("score, controls, drift", [
    (0.95, [1.0, 1.0, 1.0], False),                # controls agree: the margin floor sets the scale
    (0.85, [1.0, 1.0, 1.0], True),
    (0.80, [0.9, 0.8, 1.0, 0.85, 0.95], False),    # within the controls' spread
    (0.30, [0.9, 0.8, 1.0, 0.85, 0.95], True),
])
def test_drift_decision_t_interval_table(score, controls, drift):
    """The rule the beta-binomial family replaced, kept to compare (model-level score alone)."""
    d = D.drift_decision(score, controls, margin=0.1, alpha=0.05, rule="t-interval")
    assert d.drift is drift and d.score == score and d.n_controls == len(controls)
    assert d.threshold <= d.reference - 0.1 + 1e-12 and 0 < d.p_value < 1 and ((d.p_value < 0.05) == drift)


def test_drift_decision_slides_rule_and_t_threshold():
    from scipy import stats
    d = D.drift_decision(0.85, 1.0, margin=0.1)                # the slides' rule: one reference, no p-value
    assert d.drift and d.n_controls == 0 and math.isnan(d.p_value) and d.threshold == pytest.approx(0.9)
    ctrl = np.array([0.9, 0.8, 1.0, 0.85, 0.95])
    d = D.drift_decision(0.5, ctrl, margin=0.0, alpha=0.05, rule="t-interval")
    half = stats.t.ppf(0.95, 4) * ctrl.std(ddof=1) * math.sqrt(1 + 1 / 5)
    assert d.threshold == pytest.approx(ctrl.mean() - half)
    # with controls that agree exactly the old family is a fixed threshold, not the margin (#38)
    from ccc_lib.metrics import prediction_interval_p
    p = prediction_interval_p(1.0 - 0.18, [1.0] * 10, 0.1, 0.05)[3]
    assert 0.05 / 11 < p < 0.05          # a drop of 1.8 × margin: significant alone, not in a family of 11


# five controls; per class: all at 1.0 except class 3 (wide spread, mean 0.56) and class 4 (tight, 0.9 ± 0.02)
_CTRL_PC = np.array([[1.0, 1.0, 1.0, 0.2, 0.90, 1.0],
                     [1.0, 1.0, 1.0, 0.6, 0.88, 1.0],
                     [1.0, 1.0, 1.0, 0.9, 0.92, 1.0],
                     [1.0, 1.0, 1.0, 0.4, 0.90, 1.0],
                     [1.0, 1.0, 1.0, 0.7, 0.91, 1.0]])
_CTRL = [0.9, 0.9, 0.95, 0.88, 0.92]


@pytest.mark.parametrize("score, per_class, flagged", [
    (0.50, [1.0, 0.1, 1.0, 0.56, 0.90, 1.0], (1,)),
    (0.50, [1.0, 1.0, 1.0, 0.30, 0.90, 1.0], ()),
    (0.50, [1.0, 1.0, 1.0, 0.56, 0.60, 1.0], (4,)),
    (0.91, [1.0, 0.1, 1.0, 0.56, 0.90, 1.0], (1,)),
    (0.50, [1.0, float("nan"), 1.0, 0.56, 0.90, 0.0], (5,)),
])
def test_drift_decision_t_interval_classes(score, per_class, flagged):
    d = D.drift_decision(score, _CTRL, margin=0.1, alpha=0.05, per_class=per_class, control_per_class=_CTRL_PC,
                         rule="t-interval")
    assert d.flagged_classes == flagged and d.drift is (score < 0.8 or bool(flagged))
    p, q = np.array(d.class_p_values), np.array(d.class_p_corrected)
    assert np.isnan(p[np.isnan(per_class)]).all()
    np.testing.assert_allclose(q, D.holm(np.r_[d.model_p_value, p])[1:])
    for c in np.flatnonzero(np.isfinite(p)):      # a class's p-value is the model-level formula on its column
        assert p[c] == pytest.approx(D.drift_decision(per_class[c], _CTRL_PC[:, c], margin=0.1, alpha=0.05,
                                                      rule="t-interval").p_value)


@pytest.mark.parametrize("p, method, expected", [
    ([0.01, 0.04, 0.03, 0.005], "holm", [0.03, 0.06, 0.06, 0.02]),       # step-down, made monotone
    ([0.01, 0.04, 0.03, 0.005], "bonferroni", [0.04, 0.16, 0.12, 0.02]),
    ([0.01, 0.03], "holm", [0.02, 0.03]),                                  # Holm keeps both < 0.05 ...
    ([0.01, 0.03], "bonferroni", [0.02, 0.06]),                            # ... Bonferroni loses one
    ([0.5, float("nan"), 0.2], "holm", [0.5, float("nan"), 0.4]),          # NaN: no test, not counted
    ([0.4, 0.3], "holm", [0.6, 0.6]),                                      # monotone: 0.4 < 0.6 raised
    ([0.6, 0.7, 0.8], "bonferroni", [1.0, 1.0, 1.0]),                      # capped at 1
])
def test_holm_table(p, method, expected):
    np.testing.assert_allclose(D.holm(p, method), expected, equal_nan=True)
    rows = D.holm(np.stack([p, p[::-1]]), method)                          # one family per row
    np.testing.assert_allclose(rows[0], expected, equal_nan=True)
    np.testing.assert_allclose(rows[1], expected[::-1], equal_nan=True)


def test_holm_vs_bonferroni_in_the_class_decision():
    # two classes, p ≈ 0.01 and 0.03 (uncorrected): Holm flags both, Bonferroni only the first
    from scipy import stats
    ctrl_pc = np.ones((5, 2))
    t = stats.t.ppf(0.95, 4)
    sigma = 0.1 / t                               # controls agree: the margin sets the scale
    pc = [1.0 + sigma * stats.t.ppf(0.01, 4), 1.0 + sigma * stats.t.ppf(0.03, 4)]
    kw = dict(per_class=pc, control_per_class=ctrl_pc, margin=0.1, alpha=0.05, rule="t-interval")
    h = D.drift_decision(0.5, [1.0] * 5, **kw)
    b = D.drift_decision(0.5, [1.0] * 5, correction="bonferroni", **kw)
    np.testing.assert_allclose(h.class_p_values[:2], [0.01, 0.03])
    assert h.flagged_classes == (0, 1) and b.flagged_classes == (0,)


def test_class_p_values_is_the_t_interval_class_half():
    pc = [1.0, 0.1, 1.0, 0.3, 0.7, 1.0]
    raw, adj = D.class_p_values(pc, _CTRL_PC, margin=0.1, alpha=0.05)
    f = D.drift_decision(0.5, _CTRL, per_class=pc, control_per_class=_CTRL_PC, margin=0.1, alpha=0.05,
                         rule="t-interval")
    np.testing.assert_allclose(raw, f.class_p_values)
    np.testing.assert_allclose(adj, D.holm(raw))


def test_drift_decision_classes_need_two_controls():
    pc = [1.0, 0.0]
    assert D.drift_decision(0.3, 1.0, per_class=pc).flagged_classes == ()            # the slides' rule
    d = D.drift_decision(0.3, [1.0], per_class=pc, control_per_class=[[1.0, 1.0]])
    assert d.drift and d.flagged_classes == () and all(math.isnan(v) for v in d.class_p_values)


@pytest.mark.parametrize("score, controls, kw, match", [
    (1.5, [1.0], {}, "score"),
    (0.5, [], {}, "control_scores"),
    (0.5, [float("nan"), 1.0], {}, "control_scores"),
    (0.5, [1.2], {}, "control_scores"),
    (0.5, [1.0], {"alpha": 0.0}, "alpha"),
    (0.5, [1.0], {"margin": -1}, "margin"),
    (0.5, [[1.0, 1.0]], {}, "control_scores"),
    (0.5, [1.0, 1.0], {"correction": "sidak"}, "correction"),
    (0.5, [1.0, 1.0], {"rule": "gated"}, "rule"),
    (0.5, [1.0, 1.0], {}, "needs records="),
    (0.5, [1.0, 1.0], {"records": 7}, "whole number"),
    (0.5, [1.0, 1.0], {"records": 0}, "records"),
    (0.5, [1.0, 1.0], {"per_class": [1.2, 0.5]}, "per_class"),
    (0.5, [1.0, 1.0], {"per_class": [[1.0, 0.5]]}, "per_class"),
    (0.5, [1.0, 1.0], {"per_class": [1.0, 0.5]}, "needs control_per_class"),
    (0.5, [1.0, 1.0], {"per_class": [1.0, 0.5], "control_per_class": [[1.0, 1.0]]}, r"shape \(2, 2\)"),
    (0.5, [1.0, 1.0], {"per_class": [1.0, 0.5], "control_per_class": [[1.0, 1.1], [1.0, 1.0]]}, "control_per_class"),
    (0.5, [1.0, 1.0], {"control_per_class": [[1.0], [1.0]]}, "without per_class"),
])
def test_drift_decision_validation(score, controls, kw, match):
    with pytest.raises(InputError, match=match):
        D.drift_decision(score, controls, **kw)


@pytest.mark.parametrize("call, match", [
    (lambda: D.holm([0.5, 1.5]), "p_values"),
    (lambda: D.class_p_values([1.0, 0.5], [[1.0, 1.0]]), "n ≥ 2"),
    (lambda: D.class_p_values([1.0, 0.5], [[1.0, 1.0]] * 3, alpha=1.5), "alpha"),
    (lambda: D.class_p_values([1.0, 0.5, 0.2], [[1.0, 1.0]] * 3), "shape"),
    (lambda: D.holm([0.5], "fdr"), "method"),
    (lambda: D.prediction_interval_p(0.5, [1.0]), "n ≥ 2"),
])
def test_class_rule_validation(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_detect_drift_same_model_no_drift_and_swapped_model_drifts(toy_model, tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    m, data = toy_model
    S = {"adam_steps": 40, "adam_lr": 0.1}
    ctrl, kw = [m] * 10, dict(method="adam", n_per_class=10, gray_settings=S)   # ten controls: each its own gray seed
    rep = D.detect_drift(m, m, controls=ctrl, **kw)
    assert set(rep.production_score) == {"rule"} and not rep.drift
    assert rep.decision["rule"].n_controls == 10 and len(rep.to_dict()["per_class"]["rule"]) == 10
    rep2 = D.detect_drift(m, _Swapped(m), controls=ctrl, **kw)
    flagged = set(rep2.decision["rule"].flagged_classes)
    assert rep2.drift and {3, 5} <= flagged and len(flagged) <= 4
    assert rep2.decision["rule"].p_value < 0.05 < rep.decision["rule"].p_value
    # a drift confined to class 9: found, and exactly that class flagged
    rep3 = D.detect_drift(m, _OneClass(m), controls=ctrl, **kw)
    d = rep3.decision["rule"]
    assert rep3.drift and d.flagged_classes == (9,) and rep3.per_class["rule"][9] <= 0.25
    assert d.score >= d.reference - 0.12                 # the model-level score moved about 1/K of its range
    before = D.detect_drift(m, _Swapped(m), controls=ctrl, rule="t-interval", **kw).decision["rule"]
    assert before.rule == "t-interval" and before.drift
    slides = D.detect_drift(m, m, method="adam", n_per_class=2, gray_settings=S)
    assert slides.decision["rule"].n_controls == 0 and math.isnan(slides.decision["rule"].p_value)


@pytest.mark.parametrize("make, match", [
    (lambda m: dict(base_model="x", production_model=m), "Module"),
    (lambda m: dict(base_model=m, production_model=build_classifier(1, 28, 10)), "input shape"),
    (lambda m: dict(base_model=m, production_model=m, controls=[build_classifier(1, 16, 5)]), "controls"),
    (lambda m: dict(base_model=m, production_model=m, method="melt"), "method"),
    (lambda m: dict(base_model=m, production_model=m, n_per_class=0), "n_per_class"),
    (lambda m: dict(base_model=m, production_model=m, attacks=D.MembershipAttacks(build_classifier(1, 16, 10))),
     "base_model"),
    (lambda m: dict(base_model=m, production_model=m, margin=-0.1, controls=[m]), "margin"),
])
def test_detect_drift_validation(toy_model, make, match, tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    m, _ = toy_model
    with pytest.raises(InputError, match=match):
        D.detect_drift(**make(m), gray_settings={"adam_steps": 2})


# --------------------------------------------------------------------------- input-drift tests

def test_mmd_and_ks_tests():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    c = rng.normal(loc=1.0, size=(60, 5))
    assert mmd_test(a, b, 50)["p_value"] > 0.05
    assert mmd_test(a, c, 50)["p_value"] < 0.05
    assert ks_test(a, c)["p_value"] < 0.05 and ks_test(a, b)["p_value"] > 0.05


def test_input_drift_test_sees_rotation_not_swap(toy_model):
    m, _ = toy_model
    ref, prod = _toy(15, seed=1), _toy(15, seed=2)
    sw = X.input_drift_test(m, ref, X.apply_drift(prod, "swap"), n=100, n_permutations=50)
    rot = X.input_drift_test(m, ref, X.apply_drift(prod, "rotate"), n=100, n_permutations=50)
    assert not sw.mmd_drift and rot.mmd_drift


# --------------------------------------------------------------------------- beyond the drifted classes

def _prod(name, kind, m, data, seed=0):
    return X.Production(name, kind, 0.0 if kind == "none" else 1.0, seed, m, data, 1.0)


class _Lookup(torch.nn.Module):
    """A perfect toy classifier: reads the class from the corner pixel (class / 10)."""
    input_shape, num_classes = (1, 16, 16), 10

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(10.0), requires_grad=False)

    def forward(self, x):
        return self.scale * torch.nn.functional.one_hot((x[:, 0, 15, 15] * 10).round().long(), 10).float()


def _lookup_data(n_per_class=20):
    y = torch.arange(10).repeat_interleave(n_per_class)
    x = torch.rand(len(y), 1, 16, 16, generator=torch.Generator().manual_seed(0))
    x[:, 0, 15, 15] = y / 10
    return TensorData(x, y, [str(c) for c in range(10)], "lookup", "test")


def test_class_accuracy_and_accuracy_changes_find_the_swapped_classes():
    m, test = _Lookup(), _lookup_data()
    rec, prec = X.class_accuracy(m, test)
    np.testing.assert_allclose(rec, 1.0) and np.testing.assert_allclose(prec, 1.0)
    srec, sprec = X.class_accuracy(_Swapped(m), test)
    assert srec[3] == srec[5] == sprec[3] == sprec[5] == 0.0
    np.testing.assert_allclose(np.delete(srec, [3, 5]), 1.0)
    prods = [_prod(f"c{i}", "none", m, test, i) for i in range(3)] + [_prod("swapped", "swap", _Swapped(m), test)]
    S = {"margin": 0.1, "alpha": 0.05, "correction": "holm"}
    out = {a.production: a for a in X.accuracy_changes(prods, test, S)}
    assert out["swapped"].changed == out["swapped"].recall_fell == out["swapped"].precision_fell == (3, 5)
    assert all(out[f"c{i}"].changed == () for i in range(3))
    # two controls: each control has one other control, so it is not tested (t with 1 degree of freedom is
    # so heavy-tailed that even a total loss is not significant after Holm over 20 tests: honest, not a bug)
    out2 = {a.production: a for a in X.accuracy_changes(prods[1:], test, S)}
    assert out2["c1"].changed == () == out2["c2"].changed and out2["swapped"].recall == srec.tolist()


@pytest.mark.parametrize("call, match", [
    (lambda m, d: X.class_accuracy("m", d), "Module"),
    (lambda m, d: X.accuracy_changes([_prod("c0", "none", m, d), _prod("s", "swap", m, d)], d,
                                     {"margin": 0.1, "alpha": 0.05, "correction": "holm"}), "≥ 2 no-drift controls"),
])
def test_accuracy_changes_validation(toy_model, call, match):
    m, data = toy_model
    with pytest.raises(InputError, match=match):
        call(m, data)


def test_mmd_permutation_statistics_match_the_block_formula():
    """The batched permutation statistics equal the unbiased MMD² computed block by block on the
    relabelled samples (Gretton et al. 2012, eq. 3), for unequal sample sizes too."""
    import torch
    from ccc_lib.metrics import _mmd2_of_splits
    rng = np.random.default_rng(1)
    z = torch.as_tensor(rng.normal(size=(23, 4)))
    k = torch.exp(-torch.cdist(z, z).pow(2) / 3.0)
    g = torch.Generator().manual_seed(0)
    for n in (5, 11):
        perms = torch.stack([torch.randperm(len(z), generator=g) for _ in range(7)])
        first = torch.zeros(len(perms), len(z), dtype=torch.bool)
        first.scatter_(1, perms[:, :n], True)
        got = _mmd2_of_splits(k, first)
        for p, v in zip(perms, got):
            kp = k[p][:, p]
            xx, yy, xy = kp[:n, :n], kp[n:, n:], kp[:n, n:]
            m = len(z) - n
            want = ((xx.sum() - xx.diagonal().sum()) / (n * (n - 1)) + (yy.sum() - yy.diagonal().sum()) / (m * (m - 1))
                    - 2 * xy.mean())
            assert float(v) == pytest.approx(float(want), rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- what the slides state

def test_no_sentence_gives_the_slides_a_choice_they_do_not_state():
    """Chapter 4's prose and the method's docstrings read the slides, they do not put words in them:
    the slides name no library, inversion algorithm, start image, architecture, split or threshold."""
    import json
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    nb = json.loads((root / "notebooks" / "04_drift.ipynb").read_text())
    prose = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    text = prose + "\n" + "\n".join(f.read_text() for f in [*sorted((root / "ccc_lib").glob("drift*.py")),
                                                              *sorted((root / "ccc_lib" / "experiments" / "drift").glob("*.py"))])
    text = re.sub(r"\s+", " ", text)
    forbidden = [r"the slides use", r"the slides' (method|inversion|way)", r"(?<!reading of )the slides' setting is",
                 r"their production model is another split", r"another split[^.]*the slides",
                 r"as in the slides\)", r"the slides' production model is the second portion"]
    hits = [(p, m.group(0)) for p in forbidden for m in re.finditer(p, text, re.I)]
    assert not hits, hits
    # the table of differences covers all seven steps and says whose each choice is
    from ccc_lib import get_profile
    t = X.where_we_differ(X.settings("default"), get_profile("default"))
    assert {"steps 1-2: the split", "steps 3-4: model inversion", "steps 5-6: membership inference",
            "step 7: the decision"} <= set(t.index)
    assert t["whose"].str.contains("the slides'|ours|our reading").all()
    assert t.loc["steps 3-4: model inversion", "slides"].count("not stated") == 1


def test_slides_table2_is_not_a_multiple_of_one_third_k():
    g = X.table2_granularity()
    cif = g[(g.dataset == "cifar10") & (g.slides == 0.3611)]
    assert cif["value × 3K"].iloc[0] == pytest.approx(10.83) and not cif["a multiple of 1/(3K)"].iloc[0]
    assert g[g.slides == 1.0]["a multiple of 1/(3K)"].all()            # 1.0 is (the check can say yes)
    em = g[g.dataset == "emnist"].groupby("classes")["a multiple of 1/(3K)"].all()
    assert not em.any()                                                 # no EMNIST split fits every value
def test_class_p_values_vectorised_equal_one_class_at_a_time():
    """raw_class_p computes every class's prediction_interval_p at once; it equals the one-by-one call,
    including a class without a value, a control without one, and controls that agree exactly (s = 0)."""
    from ccc_lib.metrics import prediction_interval_p, raw_class_p
    rng = np.random.default_rng(0)
    cpc = rng.uniform(0.6, 1.0, (10, 7))
    cpc[:, 3] = 0.9                       # s = 0: the margin sets the scale
    cpc[2, 5] = np.nan                    # a control without the class
    pc = rng.uniform(0.3, 1.0, 7)
    pc[1] = np.nan
    for margin, alpha in ((0.1, 0.05), (0.0, 0.2), (0.05, 0.001)):
        got = raw_class_p(pc, cpc, margin, alpha)
        for c in range(7):
            if np.isnan(pc[c]) or np.isnan(cpc[:, c]).any():
                assert np.isnan(got[c])
            else:
                assert got[c] == pytest.approx(prediction_interval_p(pc[c], cpc[:, c], margin, alpha)[3], abs=1e-12)
    assert np.isnan(raw_class_p(pc, None, 0.1, 0.05)).all()
