"""Unit tests for ccc_lib.counterfeits (tiny sizes, CPU, no data files)."""
import math

import pytest
import torch
from torch import nn

from ccc_lib import build_classifier
from ccc_lib import counterfeits as cf


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
    g = cf.VectorMatrixGenerator(num_classes=n, out_channels=c, image_size=h, nz=8, width=8)
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
    imgs = torch.zeros(2, 1, 2, 2)
    t = cf.loss_terms(logits, feats, imgs, onehot, labels, div_target=0.5)
    assert math.isclose(float(t["kl"]), float(t["ce"]), rel_tol=1e-5)   # one-hot target: KL = CE
    assert abs(float(t["cos"])) < 1e-6 and abs(float(t["ortho"])) < 1e-6
    assert float(t["div"]) == 0.0                                        # different labels: no pair
    same = torch.tensor([0, 0])
    t2 = cf.loss_terms(logits, torch.tensor([[1.0, 1.0], [2.0, 2.0]]), imgs, onehot, same, div_target=0.5)
    assert math.isclose(float(t2["cos"]), 1.0, rel_tol=1e-5)
    assert math.isclose(float(t2["ortho"]), 0.5, rel_tol=1e-5)         # two off-diagonal 1s of four
    assert math.isclose(float(t2["div"]), 0.5, rel_tol=1e-5)           # identical images: full hinge
    soft = torch.tensor([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2]])
    t3 = cf.loss_terms(logits, feats, imgs, soft, labels)
    assert float(t3["kl"]) != pytest.approx(float(t3["ce"]))


def test_feature_tap_on_foreign_and_own_models():
    own = _frozen(build_classifier(1, 28, 10))
    logits, f = cf.FeatureTap(own)(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10) and f.shape == (3, 256)
    tiny = _frozen(TinyNet())
    tap = cf.FeatureTap(tiny)
    logits, f = tap(torch.rand(3, 1, 28, 28))
    assert tap.kind == "hook-last-linear" and f.shape == (3, 16)
    tap.close()
    tap = cf.FeatureTap(tiny, layer="body.3")
    assert tap(torch.rand(2, 1, 28, 28))[1].shape == (2, 16)
    with pytest.raises(KeyError):
        cf.FeatureTap(tiny, layer="nope")


def test_training_raises_confidence_and_logs_every_term():
    clf = _frozen(TinyNet())
    g = cf.VectorMatrixGenerator(nz=8, width=8)
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
    g = cf.VectorMatrixGenerator(num_classes=5, out_channels=3, image_size=32, nz=8, width=8)
    s = cf.sample(g, clf, 4, seed=1)
    assert s["x"].shape == (20, 3, 32, 32) and s["y"].tolist() == sorted(list(range(5)) * 4)
    p = clf(s["x"]).softmax(1)
    assert torch.allclose(s["confidence"], p.gather(1, s["y"][:, None])[:, 0], atol=1e-5)
    assert torch.equal(s["pred"], p.argmax(1))
    s2 = cf.sample(g, clf, 4, seed=1)
    assert torch.equal(s["x"], s2["x"])                                   # seeded, eval mode
    tab = cf.confidence_table(s)
    assert len(tab) == 5 and "share ≥ 0.99" in tab


def test_get_generator_cache_keyed_by_classifier():
    kw = dict(steps=3, batch_size=20, nz=8, width=8)
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
