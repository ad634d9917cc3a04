"""Unit tests of chapter 4 (drift via gray data): tiny sizes, CPU, real assertions."""
import numpy as np
import pytest
import torch

from ccc_lib import TensorData, build_classifier, train_classifier
from ccc_lib import drift as D


def _toy(n_per_class=12, seed=0, classes=10):
    """Separable toy images: class c lights up a 4-pixel-wide vertical band at column 2c+... ."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = 0.1 * torch.rand(len(y), 1, 16, 16, generator=g)
    for i, c in enumerate(y.tolist()):
        r = (c * 16) // classes
        x[i, 0, :, r:r + 2] = 0.9
        if c % 2:
            x[i, 0, :3, :] = 0.9
    return TensorData(x, y, [str(c) for c in range(classes)], "toy", "train")


@pytest.fixture(scope="module")
def toy_model():
    torch.manual_seed(0)
    data = _toy(20)
    m = build_classifier(1, 16, 10, widths=(8, 8, 8), fc=16)
    train_classifier(m, data, epochs=8, batch_size=32, seed=0)
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval(), data


def test_settings_profiles_and_overrides():
    for prof in ("smoke", "default", "full"):
        s = D.settings(prof)
        assert s["margin"] > 0 and 0 < s["class_threshold"] < 1
        assert set(s["gray_methods"]) <= set(D.GRAY_METHODS)
    assert D.settings("smoke", margin=0.2)["margin"] == 0.2
    with pytest.raises(ValueError):
        D.settings("smoke", not_a_setting=1)


def test_make_splits_disjoint_and_stratified():
    data = _toy(30)
    base, prod = D.make_splits(data, 100, 100, seed=3)
    assert len(base) == len(prod) == 100
    assert np.bincount(base.y.numpy()).tolist() == [10] * 10
    # disjoint: no image in both portions
    xb, xp = base.x.flatten(1), prod.x.flatten(1)
    assert torch.cdist(xb, xp).min() > 0
    with pytest.raises(ValueError):
        D.make_splits(data, 200, 200)


def test_apply_drift_swap_rotate_none_and_severity():
    data = _toy(20)
    none = D.apply_drift(data, "none")
    assert torch.equal(none.x, data.x) and torch.equal(none.y, data.y)
    sw = D.apply_drift(data, "swap", 1.0)
    a, b = D.affected_classes("swap", 10)
    assert (sw.y[data.y == a] == b).all() and (sw.y[data.y == b] == a).all()
    other = ~((data.y == a) | (data.y == b))
    assert torch.equal(sw.y[other], data.y[other]) and torch.equal(sw.x, data.x)
    half = D.apply_drift(data, "swap", 0.5, seed=1)
    assert int((half.y[data.y == a] == b).sum()) == 10
    rot = D.apply_drift(data, "rotate", 1.0)
    for c in D.affected_classes("rotate", 10):
        m = data.y == c
        assert torch.equal(rot.x[m], torch.rot90(data.x[m], 1, dims=(2, 3)))
    m = data.y == 9
    assert torch.equal(rot.x[m], data.x[m]) and torch.equal(rot.y, data.y)
    with pytest.raises(ValueError):
        D.apply_drift(data, "melt")
    with pytest.raises(ValueError):
        D.apply_drift(data, "swap", 1.5)


def test_gray_adam_is_classified_as_intended_and_seeded(toy_model):
    m, _ = toy_model
    g1 = D.gray_adam(m, 2, steps=30, lr=0.1, seed=0)
    g2 = D.gray_adam(m, 2, steps=30, lr=0.1, seed=0)
    assert g1.x.shape == (20, 1, 16, 16) and g1.x.min() >= 0 and g1.x.max() <= 1
    assert torch.equal(g1.x, g2.x)
    assert round(g1.own_accuracy * len(g1.x)) >= 18      # at least 18 of the 20 samples (counted, not a float compare)


def test_gray_miface_grey_start_identical_per_class(toy_model):
    m, _ = toy_model
    g = D.gray_miface(m, 3, max_iter=10, learning_rate=0.1, window_length=5, threshold=0.99)
    assert g.x.shape == (30, 1, 16, 16)
    assert torch.equal(g.x[0], g.x[2]) and not torch.equal(g.x[0], g.x[3])
    assert g.y.tolist() == sum([[c] * 3 for c in range(10)], [])


def test_rule_based_attack_equals_agreement_and_decision(toy_model):
    m, data = toy_model
    att = D.MembershipAttacks(m)
    pred = m(data.x).argmax(1)
    s = att.score(D.GrayData(data.x, data.y, "real"), "rule")
    assert s["score"] == pytest.approx(float((pred == data.y).float().mean()))
    # relabel class 0 as 1: its per-class rule-based score drops to the share predicted as 1
    y2 = data.y.clone(); y2[data.y == 0] = 1; y2[data.y == 1] = 0
    s2 = att.score(D.GrayData(data.x, y2, "swapped"), "rule")
    assert s2["per_class"][0] <= 0.1 and s2["per_class"][5] == pytest.approx(s["per_class"][5])
    dec = D.drift_decision(s2["score"], reference=s["score"], margin=0.1, per_class=s2["per_class"])
    assert dec["drift"] and {0, 1} <= set(dec["flagged_classes"])
    assert not D.drift_decision(0.95, 1.0, 0.1)["drift"]
    with pytest.raises(ValueError):       # ART needs every class present
        att.infer(data.x[:5], data.y[:5])


def test_black_box_attack_with_shadow_models(toy_model):
    m, data = toy_model
    att = D.MembershipAttacks(m, _toy(8, seed=5), n_shadow=1, shadow_epochs=1, seed=0)
    out = att.infer(data.x, data.y, "black")
    assert out.shape == (len(data),) and set(np.unique(out)) <= {0, 1}
    chk = att.real_member_check(data, _toy(10, seed=7), n=50)
    assert 0 <= chk["black"]["balanced_accuracy"] <= 1 and "rule" in chk


def test_detect_drift_report(toy_model):
    m, data = toy_model
    S = D.settings("smoke", adam_steps=20, adam_lr=0.1)
    rep = D.detect_drift(m, m, method="adam", settings_=S, n_per_class=2, reference=None)
    assert set(rep.production_score) == {"rule"}
    assert rep.decision["rule"]["threshold"] == pytest.approx(rep.base_score["rule"] - S["margin"])
    assert not rep.drift           # the same model twice: no drift
    d = rep.to_dict()
    assert len(d["per_class"]["rule"]) == 10


def test_mmd_and_ks_tests():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    c = rng.normal(loc=1.0, size=(60, 5))
    assert D.mmd_test(a, b, 50)["p_value"] > 0.05
    assert D.mmd_test(a, c, 50)["p_value"] < 0.05
    assert D.ks_test(a, c)["p_value"] < 0.05 and D.ks_test(a, b)["p_value"] > 0.05


def test_input_drift_test_sees_rotation_not_swap(toy_model):
    m, _ = toy_model
    ref, prod = _toy(15, seed=1), _toy(15, seed=2)
    sw = D.input_drift_test(m, ref, D.apply_drift(prod, "swap"), n=100, n_permutations=50)
    rot = D.input_drift_test(m, ref, D.apply_drift(prod, "rotate"), n=100, n_permutations=50)
    assert not sw["mmd_drift"] and rot["mmd_drift"]


def test_cached_gray_data_roundtrip(toy_model, tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    m, _ = toy_model
    S = D.settings("smoke", adam_steps=10, adam_lr=0.1)
    g1 = D.cached_gray_data(m, "adam", 1, S, seed=0, dataset="toy", profile="smoke", tag="t")
    assert len(list((tmp_path / "drift-gray").glob("adam-*.pt"))) == 1
    g2 = D.cached_gray_data(m, "adam", 1, S, seed=0, dataset="toy", profile="smoke", tag="t")
    assert torch.equal(g1.x, g2.x) and g2.info.get("from_cache")
