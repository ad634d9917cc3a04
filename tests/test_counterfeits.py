"""Unit tests for ccc_lib.counterfeits (tiny sizes, CPU, no data files)."""
import math

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ccc_lib import build_classifier
from ccc_lib import NotCached, InputError
from ccc_lib import counterfeits as cf
from ccc_lib.experiments import counterfeits as xcf


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CCC_CACHE", str(tmp_path))
    monkeypatch.setenv("CCC_PROGRESS", "off")
    torch.manual_seed(0)


class TinyNet(nn.Module):
    """A generic classifier that is not ours: no features(), no forward_with()."""

    def __init__(self, c=1, h=28, n=10):
        super().__init__()
        self.input_shape = (c, h, h)
        self.body = nn.Sequential(nn.Conv2d(c, 4, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * (h // 2) ** 2, 16),
                                  nn.ReLU(), nn.Linear(16, n))

    def forward(self, x):
        return self.body(x)


def _frozen(m):
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def test_hot_matrix_sets_row_and_column():
    m = cf.hot_matrix(torch.tensor([2, 0]), 4)
    assert m.shape == (2, 1, 4, 4)
    assert m[0, 0, 2].tolist() == [1, 1, 1, 1] and m[0, 0, :, 2].tolist() == [1, 1, 1, 1]
    assert m[0].sum() == 7 and m[1].sum() == 7
    assert m[0, 0, 1, 1] == 0


def test_conditions_one_hot_and_soft():
    y = torch.arange(10).repeat(20)
    hard = cf.draw_conditions(y, 10, "counterfeit")
    assert torch.equal(hard.argmax(1), y) and torch.allclose(hard.sum(1), torch.ones(len(y)))
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    soft = cf.draw_conditions(y, 10, "inversion")
    assert torch.equal(soft.argmax(1), y)
    assert torch.allclose(soft.sum(1), torch.ones(len(y)), atol=1e-6)
    assert soft.max() < 1.0 and soft.min() > 0.0
    with pytest.raises(ValueError):
        cf.draw_conditions(y, 10, "bogus")


@pytest.mark.parametrize("c,h,n", [(1, 28, 10), (3, 32, 10), (1, 28, 3), (3, 32, 17)])
def test_generator_shapes_and_range(c, h, n):
    g = cf.VectorMatrixGenerator(num_classes=n, out_channels=c, image_size=h, nz=8, channels=(8,))
    with torch.no_grad():
        x, cond = g.generate(torch.arange(n).repeat(2))
    assert x.shape == (2 * n, c, h, h) and cond.shape == (2 * n, n)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # the condition really enters: different labels, same latent → different images
    g.eval()
    z = torch.randn(1, 8).repeat(2, 1)
    lab = torch.tensor([0, 1])
    a = g(z, cf.draw_conditions(lab, n, "counterfeit"), lab)
    assert not torch.allclose(a[0], a[1])


def test_generator_rejects_bad_config():
    with pytest.raises(ValueError):
        cf.VectorMatrixGenerator(mode="nope")
    with pytest.raises(ValueError):
        cf.VectorMatrixGenerator(dropout=1.0)


@pytest.mark.parametrize("w", [dict(alpha=-1), dict(beta=float("nan")), dict(alpha=0, beta=0, gamma=0, delta=0)])
def test_weights_validated(w):
    full = dict(alpha=1.0, beta=1.0, gamma=0.0, delta=0.0, epsilon=0.0)
    full.update(w)
    with pytest.raises(ValueError):
        cf.validate_weights(**full)


def test_loss_terms_definitions():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1])
    onehot = torch.nn.functional.one_hot(labels, 3).float()
    feats = torch.tensor([[1.0, 0.0], [0.0, 3.0]])              # orthogonal
    t = cf.loss_terms(logits, feats, onehot, labels, div_target=0.5)
    assert math.isclose(float(t["kl"]), float(t["ce"]), rel_tol=1e-5)   # one-hot target: KL = CE
    assert abs(float(t["cos"])) < 1e-6 and abs(float(t["ortho"])) < 1e-6
    assert float(t["div"]) == 0.0                                        # different labels: no pair
    same = torch.tensor([0, 0])
    t2 = cf.loss_terms(logits, torch.tensor([[1.0, 1.0], [2.0, 2.0]]), onehot, same, div_target=0.5)
    assert math.isclose(float(t2["cos"]), 1.0, rel_tol=1e-5)
    assert math.isclose(float(t2["ortho"]), 0.5, rel_tol=1e-5)         # two off-diagonal 1s of four
    # features [1,1] and [2,2]: distance √2, RMS norm √5 → hinge 0.5 − √2/√5 < 0: silent
    assert float(t2["div"]) == 0.0
    t3 = cf.loss_terms(logits, torch.tensor([[1.0, 1.0], [1.0, 1.0]]), onehot, same, div_target=0.5)
    assert math.isclose(float(t3["div"]), 0.5, rel_tol=1e-5)           # identical features: full hinge
    big = cf.loss_terms(logits, 100 * torch.tensor([[1.0, 1.0], [2.0, 2.0]]), onehot, same, div_target=0.9)
    assert math.isclose(float(big["div"]), 0.9 - math.sqrt(2 / 5), rel_tol=1e-4)   # scale-free
    soft = torch.tensor([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2]])
    t4 = cf.loss_terms(logits, feats, soft, labels)
    assert float(t4["kl"]) != pytest.approx(float(t4["ce"]))


def test_div_term_pushes_features_apart():
    feats = torch.randn(6, 4) * 0.01 + 1.0
    feats.requires_grad_(True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    t = cf.loss_terms(torch.zeros(6, 2), feats, torch.nn.functional.one_hot(labels, 2).float(), labels, 0.5)
    t["div"].backward()
    # a gradient step on div moves same-class features apart
    f2 = feats.detach() - 0.5 * feats.grad
    d0 = torch.cdist(feats.detach()[:3], feats.detach()[:3]).sum()
    d1 = torch.cdist(f2[:3], f2[:3]).sum()
    assert d1 > d0


def test_feature_tap_on_foreign_and_own_models():
    own = _frozen(build_classifier(1, 28, 10))
    tap = cf.FeatureTap(own)
    logits, f = tap(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10) and f.shape == (3, 256) and "act_fc" in tap.kind
    tiny = _frozen(TinyNet())
    tap = cf.FeatureTap(tiny)
    logits, f = tap(torch.rand(3, 1, 28, 28))
    assert tap.kind == "input of the last linear layer" and f.shape == (3, 16)
    tap.close()
    tap = cf.FeatureTap(tiny, layer="body.3")
    assert tap(torch.rand(2, 1, 28, 28))[1].shape == (2, 16)
    with pytest.raises(InputError):
        cf.FeatureTap(tiny, layer="nope")


def test_training_raises_confidence_and_logs_every_term():
    clf = _frozen(TinyNet())
    g = cf.VectorMatrixGenerator(nz=8, channels=(8,))
    s0 = cf.sample(g, clf, 10)
    info = cf.train_generator(g, clf, steps=40, batch_size=40, lr=5e-3, epsilon=0.5)
    assert set(cf.LOSS_TERMS) <= set(info["history"]) and len(info["history"]["ce"]) == 40
    s1 = cf.sample(g, clf, 10)
    assert float(s1["confidence"].mean()) > float(s0["confidence"].mean())
    assert not g.training and not clf.training
    assert all(not p.requires_grad for p in clf.parameters())
    with pytest.raises(ValueError):
        cf.train_generator(g, clf, steps=0)


def test_sample_contract():
    clf = _frozen(TinyNet(3, 32, 5))
    g = cf.VectorMatrixGenerator(num_classes=5, out_channels=3, image_size=32, nz=8, channels=(8,))
    s = cf.sample(g, clf, 4, seed=1)
    assert s["x"].shape == (20, 3, 32, 32) and s["y"].tolist() == sorted(list(range(5)) * 4)
    p = clf(s["x"]).softmax(1)
    assert torch.allclose(s["confidence"], p.gather(1, s["y"][:, None])[:, 0], atol=1e-5)
    assert torch.equal(s["pred"], p.argmax(1))
    s2 = cf.sample(g, clf, 4, seed=1)
    assert torch.equal(s["x"], s2["x"])                                   # seeded, eval mode
    tab = xcf.confidence_table(s)
    assert len(tab) == 5 and "share ≥ 0.99" in tab
    s3 = cf.sample(g, clf, 4, seed=1, dropout=True)
    assert not torch.equal(s["x"], s3["x"])                               # dropout active at sampling
    # with dropout on too, the draw is a function of the seed alone (what the cache key assumes):
    # the same uncached after other random draws, another seed differs, the caller's stream untouched
    torch.rand(7)
    state = torch.get_rng_state()
    s4 = cf.sample(g, clf, 4, seed=1, dropout=True, cache=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(s3["x"], s4["x"])
    assert not torch.equal(s3["x"], cf.sample(g, clf, 4, seed=2, dropout=True, cache=False)["x"])


def test_get_generator_cache_keyed_by_classifier():
    kw = dict(steps=3, batch_size=20, nz=8, channels=(8,))
    a, b = _frozen(TinyNet()), _frozen(TinyNet())
    ga, ia = cf.get_generator(a, "toy", "smoke", **kw)
    assert not ia["from_cache"] and len(ia["history"]["kl"]) == 3 and "train_seconds" in ia
    ga2, ia2 = cf.get_generator(a, "toy", "smoke", **kw)
    assert ia2["from_cache"] and ia2["path"] == ia["path"]
    for (k, v), v2 in zip(ga.state_dict().items(), ga2.state_dict().values()):
        assert torch.equal(v, v2), k
    gb, ib = cf.get_generator(b, "toy", "smoke", **kw)
    assert ib["path"] != ia["path"] and not ib["from_cache"]
    gi, ii = cf.get_generator(a, "toy", "smoke", mode="inversion", **kw)
    assert ii["path"] != ia["path"] and gi.mode == "inversion"
    with pytest.raises(ValueError):
        cf.get_generator(a, "toy", "smoke", alpha=-1.0, **kw)
    with pytest.raises(ValueError):
        cf.get_generator(a, "toy", "smoke", unknown_setting=1)


# ---------------------------------------------------------------------------------------------
# variants, cache, 3×32×32, and the other chapters' entry point
# ---------------------------------------------------------------------------------------------
def test_variants_paper_loss_and_ours():
    kw = dict(steps=2, batch_size=20, nz=8, channels=(8, 8, 8))
    clf = _frozen(TinyNet())
    gp, ip = cf.get_generator(clf, "toy", "smoke", variant="paper", **kw)
    go, io = cf.get_generator(clf, "toy", "smoke", variant="ours", **kw)
    assert ip["settings"]["epsilon"] == 0.0 and ip["history"]["div"] and io["settings"]["epsilon"] > 0
    assert ip["path"] != io["path"]
    # epsilon overrides are ignored by the paper's variant: it is the paper's loss by definition
    gp2, ip2 = cf.get_generator(clf, "toy", "smoke", variant="paper", epsilon=5.0, **kw)
    assert ip2["from_cache"] and ip2["path"] == ip["path"]
    assert cf.sample_dropout("paper", ip["settings"]) == cf.settings("smoke")["sample_dropout"]
    assert cf.sample_dropout("ours", io["settings"]) == cf.settings("smoke")["ours_sample_dropout"]


@pytest.mark.parametrize("c,h,n", [(3, 32, 10), (1, 28, 4)])
def test_get_generator_any_shape_and_class_count(c, h, n):
    clf = _frozen(TinyNet(c, h, n))
    g, info = cf.get_generator(clf, f"toy{c}{h}{n}", "full_dry")
    assert g.output_shape == (c, h, h) and g.num_classes == n
    assert info["settings"]["steps"] == cf.SETTINGS["full_dry"]["steps"]   # full's paths, full_dry's sizes
    assert info["settings"]["nz"] == cf.SETTINGS["full"]["nz"]
    s = cf.sample(g, clf, 3, dropout=True)
    assert s["x"].shape == (3 * n, c, h, h)


def test_confident_counterfeits_cache_only():
    clf = _frozen(TinyNet())
    with pytest.raises(NotCached):
        cf.confident_counterfeits(clf, "toy", "smoke", 2)
    cf.get_generator(clf, "toy", "full_dry")                                    # not how chapter 1 trains
    with pytest.raises(NotCached):
        cf.confident_counterfeits(clf, "toy", "full_dry", 3, threshold=0.0)
    cf.get_generator(clf, "toy", "full_dry", plateau=True)
    out = cf.confident_counterfeits(clf, "toy", "full_dry", 3, threshold=0.0)
    assert out["n_sampled"] == 30 and len(out["x"]) == int(((out["pred"] == out["y"])).sum()) and out["variant"] == "paper"
    assert bool((out["pred"] == out["y"]).all())
    with pytest.raises(NotCached):
        cf.confident_counterfeits(clf, "toy", "full_dry", 3, variant="ours")


class NoShape(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10]


_G = dict(num_classes=10, nz=8, channels=(8,))


@pytest.mark.parametrize("call,match", [
    (lambda clf: cf.get_generator(NoShape(), "toy", "smoke"), "input_shape"),
    (lambda clf: cf.get_generator("not a model", "toy", "smoke"), "nn.Module"),
    (lambda clf: cf.get_generator(clf, "", "smoke"), "dataset"),
    (lambda clf: cf.get_generator(clf, "toy", "smoke", variant="mine"), "variant"),
    (lambda clf: cf.get_generator(clf, "toy", "smoke", mode="soft"), "mode"),
    (lambda clf: cf.get_generator(clf, "toy", "nope"), "profile"),
    (lambda clf: cf.get_generator(clf, "toy", "smoke", variant="ours", epsilon=-1.0), "epsilon"),
    (lambda clf: cf.get_generator(clf, "toy", "smoke", steps_typo=3), "unknown setting"),
    (lambda clf: cf.sample(cf.VectorMatrixGenerator(**_G), clf, 0), "n_per_class"),
    (lambda clf: cf.sample(cf.VectorMatrixGenerator(**_G), clf, 2.5), "n_per_class"),
    (lambda clf: cf.sample(cf.VectorMatrixGenerator(**_G, out_channels=3, image_size=32), clf, 2), "expects"),
    (lambda clf: cf.sample("gen", clf, 2), "VectorMatrixGenerator"),
    (lambda clf: cf.train_generator(cf.VectorMatrixGenerator(**_G), clf, steps=0), "steps"),
    (lambda clf: cf.train_generator(cf.VectorMatrixGenerator(**_G), clf, steps=2, lr=-1.0), "lr"),
    (lambda clf: cf.train_generator(cf.VectorMatrixGenerator(**_G), clf, steps=2, batch_size=0), "batch_size"),
    (lambda clf: cf.train_generator(cf.VectorMatrixGenerator(**_G), clf, steps=2, alpha=float("inf")), "alpha"),
    (lambda clf: cf.VectorMatrixGenerator(num_classes=1), "classes"),
    (lambda clf: cf.VectorMatrixGenerator(image_size=27), "image_size"),
    (lambda clf: cf.VectorMatrixGenerator(channels=(0, 4)), "channels"),
    (lambda clf: cf.VectorMatrixGenerator(**_G).set_dropout(1.5), "dropout"),
    (lambda clf: cf.confident_counterfeits(clf, "toy", "smoke", threshold=-0.1), "threshold"),
    (lambda clf: cf.confident_counterfeits(clf, "toy", "smoke", threshold=1.5), "threshold"),
    (lambda clf: xcf.diversity_stats(torch.rand(4, 1, 2, 2), torch.tensor([0, 1])), "labels"),
])
def test_entry_points_reject_bad_input(call, match):
    clf = _frozen(TinyNet())
    with pytest.raises(InputError, match=match):
        call(clf)


# ---------------------------------------------------------------------------------------------
# experiment code
# ---------------------------------------------------------------------------------------------
#: the elements issue 26 asked the table to cover (keys of xcf.DIFFER_ELEMENTS)
_MUST_COVER = ("datasets", "nz", "condition_entry", "before_matrix", "dropout_before_matrix", "hot_matrix",
               "after_matrix", "many_classes", "output", "feature_layer", "dropout_rate", "sample_dropout", "lr",
               "optimizer", "weights", "steps_batch", "div", "selection", "seeds")


def test_differ_table_covers_every_element_at_every_profile():
    t = xcf.differ_table()
    assert set(t.index.get_level_values("profile")) == {"smoke", "default", "full", "full_dry"}
    for prof in ("smoke", "default", "full", "full_dry"):
        rows = t.xs(prof, level="profile")
        assert list(rows.index) == list(xcf.DIFFER_ELEMENTS.values())
        for key in _MUST_COVER:
            assert xcf.DIFFER_ELEMENTS[key] in rows.index, (prof, key)
        for _, r in rows.iterrows():
            assert r["paper"] == "not stated" or (r["paper"].startswith("“") and r["paper"].endswith("”"))
            assert r["which"] in {"same as the paper", "differs from the paper", "paper silent: ours", "ours only"}
            assert r["which"] != "same as the paper" or r["paper"] != "not stated"     # 'same' needs a quote
            assert str(r["ours"]).strip()
        # the paper's wording vs ours: these differ at every profile, full included
        for key in ("condition_entry", "dropout_before_matrix", "hot_matrix"):
            assert rows.loc[xcf.DIFFER_ELEMENTS[key], "which"] == "differs from the paper"


def test_differ_table_follows_the_settings():
    t = xcf.differ_table()
    before = xcf.DIFFER_ELEMENTS["before_matrix"]
    assert "8/16/32" in t.loc[(before, "smoke"), "ours"] and "64/128/256" in t.loc[(before, "full"), "ours"]
    ds = xcf.DIFFER_ELEMENTS["datasets"]
    assert t.loc[(ds, "full"), "which"] == "same as the paper" and t.loc[(ds, "default"), "which"] != "same as the paper"
    many = xcf.DIFFER_ELEMENTS["many_classes"]
    assert "kernel 34" in t.loc[(many, "full"), "ours"] and "EMNIST" in t.loc[(many, "full"), "ours"]
    assert "not used" in t.loc[(many, "default"), "ours"]
    sel = t.loc[(xcf.DIFFER_ELEMENTS["selection"], "default"), "ours"]
    g = cf.selection_settings("default")
    assert f"{len(g['epsilons']) * len(g['taus']) * g['steps']} extra generator steps" in sel
    assert t.loc[(xcf.DIFFER_ELEMENTS["lr"], "smoke"), "ours"] == f"{cf.settings('smoke')['lr']:g}"
    # the generator the code builds for 47 classes at 28×28 is what the row says
    g47 = cf.VectorMatrixGenerator(num_classes=47, image_size=28, nz=2, channels=(2,))
    assert isinstance(g47.up[0], nn.Conv2d) and g47.up[0].kernel_size == (34, 34)


def test_summarise_and_real_stats():
    clf = _frozen(TinyNet())
    x, y = torch.rand(40, 1, 28, 28), torch.arange(10).repeat(4)
    real = xcf.real_stats(clf, torch.rand(30, 1, 28, 28), x, y)
    assert real.pixel_diversity > 0 and real.feature_diversity > 0
    g = cf.VectorMatrixGenerator(nz=8, channels=(8,))
    s = cf.sample(g, clf, 3)
    sm = xcf.summarise(clf, s, real, torch.rand(30, 1, 28, 28))
    assert 0 <= sm.share_099 <= sm.predicted_as_intended + 1 and sm.nn_pixel_ratio > 0
    assert sm.worst_class_mean_confidence <= sm.mean_confidence
    assert "feature diversity / real" in sm.row()
    # identical samples have no diversity
    s["x"][:] = s["x"][0]
    assert xcf.summarise(clf, s, real).pixel_diversity_ratio == 0.0


def test_slider_values_include_setting():
    s = cf.settings("smoke")
    for knob in xcf.KNOBS:
        vals = xcf.slider_values(knob, s)
        assert float(s[knob]) in vals and vals == sorted(vals) and len(vals) >= 2


def test_precomputed_sliders_cached_and_linked():
    pytest.importorskip("ipywidgets")
    clf = _frozen(TinyNet())
    g, info = cf.get_generator(clf, "toy", "full_dry")
    x, y = torch.rand(20, 1, 28, 28), torch.arange(10).repeat(2)
    real = xcf.real_stats(clf, x, x, y)
    classes = [str(i) for i in range(10)]
    pts = xcf.precompute_sliders(g, info, clf, classes, real, knobs=("delta", "dropout"))
    assert set(pts) == {"delta", "dropout"}
    for knob, ps in pts.items():
        assert [p.value for p in ps] == xcf.slider_values(knob, info["settings"])
        assert all(p.png[:8] == b"\x89PNG\r\n\x1a\n" and not p.from_cache for p in ps)
        assert len({p.png for p in ps}) == len(ps)                      # each value its own grid
    again = xcf.precompute_sliders(g, info, clf, classes, real, knobs=("delta",))
    assert all(p.from_cache for p in again["delta"])
    assert [p.png for p in again["delta"]] == [p.png for p in pts["delta"]]
    panel = xcf.slider_panel(pts, info["settings"])
    boxes = panel.children
    assert len(boxes) == 2 and all("ccc-precomputed" in b._dom_classes for b in boxes)
    slider, stack = boxes[0].children
    assert len(stack.children) == len(pts["delta"])
    slider.index = len(pts["delta"]) - 1            # jslink is front-end only: the stack stays independent here
    assert stack.selected_index is not None


def test_modes_view():
    clf = _frozen(TinyNet())
    train_x, train_y = torch.rand(30, 1, 28, 28), torch.arange(10).repeat(3)
    m = xcf.modes(clf, train_x, train_y, train_x, train_y)          # each image is its own neighbour
    assert m.nn_label_agrees == 1.0 and m.distinct_neighbours == 1.0
    same = train_x[:1].repeat(10, 1, 1, 1)
    m1 = xcf.modes(clf, same, torch.zeros(10, dtype=torch.long), train_x, train_y)
    assert m1.distinct_neighbours == pytest.approx(0.1) and m1.nn_label_agrees == 1.0


# ---------------------------------------------------------------------------------------------
# our variant's ε, τ chosen on validation data; other architectures
# ---------------------------------------------------------------------------------------------
def _cand(eps, tau, worst, div):
    return xcf.Candidate(epsilon=eps, div_target=tau, mean_confidence=0.9, share_099=worst, worst_class_share_099=worst,
                         feature_diversity_ratio=div)


@pytest.mark.parametrize("cands,expect,any_ok", [
    # the most diverse among those meeting the worst-class rule, not the most diverse overall
    ([_cand(0.5, 0.5, 1.0, 0.6), _cand(1.0, 0.5, 0.995, 0.7), _cand(4.0, 0.7, 0.9, 0.9)], (1.0, 0.5), True),
    # none qualifies: the highest worst-class share
    ([_cand(0.5, 0.5, 0.95, 0.6), _cand(2.0, 0.7, 0.98, 0.5), _cand(4.0, 0.7, 0.5, 0.9)], (2.0, 0.7), False),
])
def test_selection_rule(cands, expect, any_ok):
    best, ok = xcf.apply_rule(cands, 0.99)
    assert (best.epsilon, best.div_target) == expect and ok is any_ok
    assert [c.chosen for c in cands].count(True) == 1
    assert [c.qualifies for c in cands] == [c.worst_class_share_099 >= 0.99 for c in cands]


def test_select_ours_cached_and_read_by_other_chapters():
    clf = _frozen(TinyNet())
    val_x, val_y = torch.rand(40, 1, 28, 28), torch.arange(10).repeat(4)
    sel = xcf.select_ours(clf, "toy", "full_dry", val_x, val_y)
    grid = cf.selection_settings("full_dry")
    assert len(sel.candidates) == len(grid["epsilons"]) * len(grid["taus"])
    assert (sel.epsilon, sel.div_target) in {(c.epsilon, c.div_target) for c in sel.candidates}
    assert sel.table()["chosen"].sum() == 1 and "worst-class" in sel.rule
    assert cf.ours_choice(clf, "toy", "full_dry") == sel.overrides()
    sel2 = xcf.select_ours(clf, "toy", "full_dry", val_x, val_y)                # from the cache
    assert sel2.overrides() == sel.overrides()
    with pytest.raises(NotCached):                                              # selection done, generator not
        cf.confident_counterfeits(clf, "toy", "full_dry", 3, variant="ours")
    cf.get_generator(clf, "toy", "full_dry", variant="ours", plateau=True, **sel.overrides())
    out = cf.confident_counterfeits(clf, "toy", "full_dry", 3, variant="ours", threshold=0.0)
    assert out["info"]["settings"]["epsilon"] == sel.epsilon and out["info"]["settings"]["div_target"] == sel.div_target
    with pytest.raises(NotCached):                                              # another classifier: not selected
        cf.ours_choice(_frozen(TinyNet()), "toy", "full_dry")


def test_validation_split_comes_from_training_images():
    from ccc_lib.data import TensorData
    train = TensorData(torch.rand(100, 1, 28, 28), torch.arange(10).repeat(10), [str(i) for i in range(10)], "toy", "train")
    val = xcf.validation_split(train, 30)
    assert len(val) == 30 and val.split == "train" and sorted(val.y.tolist()) == sorted(list(range(10)) * 3)


@pytest.mark.parametrize("arch", ["mlp", "rescnn"])
def test_architecture_rows_same_settings(arch):
    from ccc_lib.data import TensorData
    from ccc_lib.models import build_model
    clf = _frozen(build_model(arch, 1, 28, 10))
    test = TensorData(torch.rand(60, 1, 28, 28), torch.arange(10).repeat(6), [str(i) for i in range(10)], "toy", "test")
    rows = xcf.architecture_rows(arch, clf, "toy", "full_dry", test, {"epsilon": 2.0, "div_target": 0.7},
                                 n_per_class=3, accuracy=0.5)
    assert [r["generator"] for r in rows] == ["paper's generator", "ours: + ε·Div"]
    for r in rows:
        assert r["architecture"] == arch and 0 <= r["worst class: share ≥ 0.99"] <= 1
        assert r["feature diversity / real"] > 0 and r["pixel diversity / real"] > 0


def test_arch_and_selection_settings_per_profile():
    for prof in ("smoke", "default", "full", "full_dry"):
        a, s = xcf.arch_settings(prof), cf.selection_settings(prof)
        assert set(a["architectures"]) <= set(xcf.ARCHITECTURES) and s["steps"] >= 1
    assert cf.selection_settings("full_dry")["steps"] < cf.selection_settings("full")["steps"]
    with pytest.raises(InputError):
        cf.selection_settings("nope")


# ---------------------------------------------------------------------------------------------
# the headline: independent space, intervals, seeds; the residual-CNN budget study
# ---------------------------------------------------------------------------------------------
def test_pair_distances_give_the_within_class_diversity():
    x, y = torch.rand(30, 1, 8, 8), torch.arange(3).repeat(10)
    pd_ = xcf.PairDistances(x, y)
    assert math.isclose(pd_.diversity(np.arange(30)), xcf.diversity_stats(x, y)["mean"], rel_tol=1e-4)
    assert pd_.diversity(np.repeat(np.arange(30), 2)) < pd_.diversity(np.arange(30))  # repeats pair at distance 0
    with pytest.raises(InputError):
        xcf.PairDistances(torch.rand(3, 4), torch.tensor([0, 1, 1]))               # one image in class 0


def test_diversity_ratio_interval_separates_spread_from_collapsed():
    y = torch.arange(5).repeat(40)
    real = torch.randn(200, 16)
    wide = xcf.diversity_ratio_ci(2 * torch.randn(200, 16), y, real, y, n_resamples=300)
    narrow = xcf.diversity_ratio_ci(0.3 * torch.randn(200, 16), y, real, y, n_resamples=300)
    assert wide.lo > 1.5 and narrow.hi < 0.5 and wide.lo <= wide.estimate <= wide.hi
    same = xcf.diversity_ratio_ci(torch.randn(200, 16), y, real, y, n_resamples=300)
    assert same.lo < 1.0 < same.hi                                                   # same law: the interval covers 1


def test_seed_measures_use_the_stated_spaces_and_images():
    """The independent space's diversity is computed on the samples' features in the independent
    model, against the real images' diversity there: a different independent model changes it."""
    from ccc_lib.stats import Interval
    clf, other = _frozen(TinyNet()), _frozen(TinyNet())
    test_x, test_y, train_x = torch.rand(40, 1, 28, 28), torch.arange(10).repeat(4), torch.rand(50, 1, 28, 28)
    smp = {"x": torch.rand(40, 1, 28, 28), "y": torch.arange(10).repeat(4), "confidence": torch.rand(40),
           "pred": torch.arange(10).repeat(4)}
    smp["confidence"][:10] = 0.995
    out = {}
    for ind in (other, clf):
        spaces = xcf.headline_spaces(clf, ind)
        yard = xcf.real_reference(spaces, test_x, test_y, train_x)
        m = xcf.seed_measures(smp, "paper", 0, True, spaces, *yard)
        by_hand = (xcf.diversity_stats(xcf.features(ind, smp["x"]), smp["y"])["mean"]
                   / xcf.diversity_stats(xcf.features(ind, test_x), test_y)["mean"])
        assert math.isclose(Interval.from_dict(m.independent_diversity_ratio).estimate, by_hand, rel_tol=1e-4)
        out[id(ind)] = Interval.from_dict(m.independent_diversity_ratio).estimate
        assert math.isclose(Interval.from_dict(m.share_099).estimate, 0.25)
        assert set(m.nn_ratio) == {"pixel", "classifier", "independent"}
    assert out[id(other)] != out[id(clf)]
    # the classifier space equals the independent one when both are the attacked classifier
    assert math.isclose(Interval.from_dict(m.feature_diversity_ratio).estimate, out[id(clf)], rel_tol=1e-6)


def test_compare_over_seeds_pairs_seeds_and_calls_ties():
    def ms(variant, seed, share):
        iv = {"estimate": share, "lo": share - 0.01, "hi": share + 0.01, "level": 0.95, "method": "t"}
        return xcf.SeedMeasures(variant, seed, True, iv, iv, 0.9, iv, iv, {"pixel": iv})
    far = [ms("paper", s, 0.5) for s in range(3)] + [ms("ours", s, 0.8 + 0.001 * s) for s in range(3)]
    r = xcf.compare_over_seeds(far, "share_099")
    assert r["seeds"] == 3 and r["diff"].lo > 0 and math.isclose(r["diff"].estimate, 0.301, rel_tol=1e-6)
    close = [ms("paper", s, 0.5) for s in range(3)] + [ms("ours", s, 0.5 + 0.001 * (s - 1)) for s in range(3)]
    d = xcf.compare_over_seeds(close, "nn_ratio:pixel")["diff"]
    assert d.lo < 0 < d.hi


def test_plateau_check():
    assert xcf.plateaued([0.1] * 5 + [0.9] * 45)
    assert not xcf.plateaued(list(np.linspace(0, 1, 50)))
    assert not xcf.plateaued([0.5])


def test_budget_study_grid_and_verdict():
    clf = _frozen(TinyNet())
    tab, curves = xcf.budget_study("tiny", clf, "toy", "full_dry", n_per_class=3, bound=0.0)
    grid = xcf.arch_settings("full_dry")["budget"]
    assert list(tab.index) == [(int(s), float(lr)) for s, lr in grid] and set(curves) == set(tab.index)
    assert tab["meets the claim"].all()                                         # bound 0: every budget meets it
    assert [len(curves[k]) for k in tab.index] == list(tab["steps trained"])
    assert (tab["steps trained"] <= [int(s) for s, _ in grid]).all()
    assert not xcf.budget_study("tiny", clf, "toy", "full_dry", n_per_class=3, bound=1.01)[0]["meets the claim"].any()


def test_pretrain_trains_through_the_cache(monkeypatch):
    monkeypatch.setenv("CCC_JOBS", "1")
    clf = _frozen(TinyNet())
    jobs = [{"classifier": clf, "dataset": "toy", "profile": "full_dry", "variant": v, "seed": 3,
             "overrides": {"epsilon": 2.0} if v == "ours" else {}} for v in cf.VARIANTS]
    first = xcf.pretrain(jobs)
    assert len(first) == 2 and all(t > 0 for t in first)
    assert xcf.pretrain(jobs) == [0.0, 0.0]                                    # read from the cache
    _, info = xcf.generator(clf, "toy", "full_dry", variant="ours", seed=3, epsilon=2.0)
    assert info["from_cache"]


def test_notebook_live_slider_cell_is_live_only():
    import json
    from pathlib import Path
    nb = json.loads((Path(__file__).resolve().parent.parent / "notebooks" / "01_counterfeits.ipynb").read_text())
    tags = {i: c.get("metadata", {}).get("tags", []) for i, c in enumerate(nb["cells"])}
    live = [i for i, c in enumerate(nb["cells"]) if "widgets.FloatSlider" in "".join(c["source"])]
    panel = [i for i, c in enumerate(nb["cells"]) if "xcf.slider_panel(" in "".join(c["source"])]
    assert live and all("live-only" in tags[i] for i in live)
    assert panel and all("live-only" not in tags[i] for i in panel)


# ---------------------------------------------------------------------------------------------
# training until the plateau test passes; prefixes of a longer run; the fast layout (#37)
# ---------------------------------------------------------------------------------------------
def test_plateau_test_watches_confidence_and_the_weighted_terms():
    flat = {k: [1.0] * 40 for k in (*cf.LOSS_TERMS, "confidence")}
    w = {"alpha": 1.0, "beta": 1.0, "gamma": 0.5, "delta": 0.5, "epsilon": 0.0}
    rule = dict(cf.PLATEAU)
    assert cf.history_plateaued(flat, w, rule)
    moving = dict(flat, div=list(np.linspace(0, 1, 40)))
    assert cf.history_plateaued(moving, w, rule)                       # ε = 0: Div is not watched
    assert not cf.history_plateaued(moving, {**w, "epsilon": 1.0}, rule)
    assert not cf.history_plateaued(dict(flat, cos=list(np.linspace(1, 0, 40))), w, rule)
    assert cf.plateaued([0.0] * 20 + [1.0] + [1.0] * 79, relative=True, tol=0.02)      # moved before, flat now
    assert not cf.plateaued(list(np.linspace(0, 1, 100)), relative=True, tol=0.02)


def test_training_stops_on_the_plateau_and_says_where():
    clf = _frozen(TinyNet())
    for p in clf.parameters():
        p.zero_()                                      # constant logits and features: every curve flat
    kw = dict(steps=40, batch_size=20, lr=1e-3)
    g = cf.VectorMatrixGenerator(**_G)
    out = cf.train_generator(g, clf, plateau=dict(cf.PLATEAU, every=5, min_steps=10), **kw)
    assert out["plateau_reached"] and out["stopped_at"] == 10 and len(out["history"]["kl"]) == 10
    g2 = cf.VectorMatrixGenerator(**_G)
    out2 = cf.train_generator(g2, _frozen(TinyNet()), plateau=dict(cf.PLATEAU, every=5, min_steps=10, tol=1e-9),
                              **kw)
    assert not out2["plateau_reached"] and out2["stopped_at"] == 40        # the cap
    with pytest.raises(InputError, match="plateau"):
        cf.train_generator(cf.VectorMatrixGenerator(**_G), clf, plateau={"every": 5}, **kw)
    _, info = cf.get_generator(clf, "toy", "smoke", plateau=True, steps=60, batch_size=20, nz=8, channels=(8,))
    assert info["plateau_reached"] and info["stopped_at"] < 60
    _, plain = cf.get_generator(clf, "toy", "smoke", steps=60, batch_size=20, nz=8, channels=(8,))
    assert plain["path"] != info["path"] and plain["stopped_at"] == 60        # the rule is part of the key


def test_a_shorter_cap_is_the_longer_run_up_to_there(tmp_path, monkeypatch):
    clf = _frozen(TinyNet())
    kw = dict(batch_size=20, nz=8, channels=(8,), lr=2e-3)
    _, long_ = cf.get_generator(clf, "toy", "smoke", steps=6, also_at=(3,), **kw)
    short, info = cf.get_generator(clf, "toy", "smoke", steps=3, **kw)
    assert not long_["from_cache"] and info["from_cache"] and info["stopped_at"] == 3
    assert info["history"]["kl"] == long_["history"]["kl"][:3]
    monkeypatch.setenv("CCC_CACHE", str(tmp_path / "alone"))                # trained on its own
    alone, info2 = cf.get_generator(clf, "toy", "smoke", steps=3, **kw)
    assert not info2["from_cache"] and info2["history"]["kl"] == info["history"]["kl"]
    for (k, v), v2 in zip(short.state_dict().items(), alone.state_dict().values()):
        assert torch.equal(v, v2), k


def test_fast_layout_is_the_same_arithmetic():
    from ccc_lib.models import PaperCNN, CNNConfig
    clf = _frozen(PaperCNN(CNNConfig()))
    torch.manual_seed(1)
    g = cf.VectorMatrixGenerator(num_classes=10, nz=8, channels=(8, 8, 8))
    labels = torch.arange(10).repeat(2)
    z, cond = torch.randn(20, 8), F.one_hot(labels, 10).float()
    g.eval()
    ref_x = g(z, cond, labels)
    ref = clf(ref_x)
    fast = cf.fast_layout(g, clf)
    assert g.up[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = g(z, cond, labels)
    assert torch.allclose(x, ref_x, atol=1e-5) and torch.allclose(fast(x), ref, atol=1e-4)
    for p in clf.parameters():                                              # the caller's classifier untouched
        assert p.is_contiguous()


def test_diversity_of_many_resamples_at_once_equals_one_by_one():
    x, y = torch.rand(60, 5), torch.arange(3).repeat(20)
    pd_ = xcf.PairDistances(x, y)
    rows = np.random.default_rng(0).integers(0, 60, (7, 60))
    assert np.allclose(pd_.diversity_many(rows), [pd_.diversity(r) for r in rows])
    one_by_one = np.mean([pd_.d[np.ix_(r[pd_.y[r] == c], r[pd_.y[r] == c])].sum()
                          / ((pd_.y[r] == c).sum() * ((pd_.y[r] == c).sum() - 1)) for r in rows[:1] for c in range(3)])
    assert math.isclose(pd_.diversity(rows[0]), one_by_one, rel_tol=1e-12)


def test_selection_margin_says_how_firm_each_choice_is():
    none = xcf.Selection(1.0, 0.5, "r", False, [_cand(1.0, 0.5, 0.06, 0.6), _cand(2.0, 0.5, 0.02, 0.7)])
    some = xcf.Selection(2.0, 0.7, "r", True, [_cand(1.0, 0.5, 1.0, 0.6), _cand(2.0, 0.7, 0.995, 0.7)])
    for s in (none, some):
        xcf.apply_rule(s.candidates, 0.99)
    txt = xcf.selection_margin({"a": none, "b": some}, 50)
    assert "a: no candidate met" in txt and "3 of 50" in txt and "runner-up's 1" in txt and "fragile" in txt
    assert "b: 2 of 2 candidates met" in txt
    assert "fragile" not in xcf.selection_margin({"b": some}, 50)
