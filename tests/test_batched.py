"""ccc_lib.batched: K small models trained as one stacked model give the weights K separate trainings
give (a small MLP with Adam and per-model clipping; chapter 3's INN through Algorithm 1 and the flow's
likelihood, built with ccc_lib.iocn's own constructor and trained one by one with iocn.train_inn)."""
import copy

import pytest
import torch
from torch import nn

from ccc_lib import iocn
from ccc_lib.batched import Stack, train_inns_batched


def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


def _close(a: nn.Module, b: nn.Module, tol=1e-5):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, rtol=tol, atol=tol), (k, float((x - y).abs().max()))


def test_mlp_batched_equals_one_by_one():
    K, steps = 4, 40
    data = [(torch.randn(32, 6, generator=torch.Generator().manual_seed(k)),
             torch.randn(32, 1, generator=torch.Generator().manual_seed(100 + k))) for k in range(K)]
    alone = [_mlp(k) for k in range(K)]
    for m, (x, y) in zip(alone, data):
        opt = torch.optim.Adam(m.parameters(), lr=3e-2)
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(m(x), y).backward()
            nn.utils.clip_grad_norm_(m.parameters(), 0.5)        # coupled across a model's tensors: per model below
            opt.step()
    together = [_mlp(k) for k in range(K)]
    st = Stack(together)
    opt = torch.optim.Adam(st.parameters(), lr=3e-2)
    xs, ys = torch.stack([d[0] for d in data]), torch.stack([d[1] for d in data])
    for _ in range(steps):
        opt.zero_grad()
        loss = st.map(lambda m, x, y: nn.functional.mse_loss(m(x), y), xs, ys)
        loss.sum().backward()
        st.clip_grad_norm_(0.5)
        opt.step()
    st.unstack()
    for a, b in zip(alone, together):
        _close(a, b)
    assert not torch.allclose(together[0][0].weight, _mlp(0)[0].weight)      # it did train


def test_a_mean_loss_would_not_be_equivalent():
    """The reason the stacked loss is a sum: with the mean, each model's gradient is 1/K of its own."""
    ms = [_mlp(k) for k in range(2)]
    st = Stack(ms)
    x = torch.randn(2, 8, 6)
    st.map(lambda m, x: m(x).pow(2).mean(), x).mean().backward()
    g_mean = st.params["0.weight"].grad[0].clone()
    ms[0].zero_grad()
    ms[0](x[0]).pow(2).mean().backward()
    assert torch.allclose(g_mean * 2, ms[0][0].weight.grad, atol=1e-6)


def test_stack_refuses_different_architectures():
    with pytest.raises(ValueError, match="architecture"):
        Stack([_mlp(0), nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))])


@pytest.mark.parametrize("objective", ["iocn", "flow"])
def test_inn_batched_equals_train_inn(objective):
    K, dim = 3, 6
    xs = [torch.randn(200, dim, generator=torch.Generator().manual_seed(k)) * (1 + k) + k for k in range(K)]
    models = []
    for k in range(K):
        m = iocn.INNModel(iocn.INNConfig(dim=dim, n_blocks=3, hidden=16, seed=k))
        m.set_standardisation(xs[k], divisor=3.0)
        models.append(m)
    tc = iocn.TrainConfig(objective=objective, steps=30, lr=1e-3, warmup=5, batch_size=64, noise=0.1, seed=0)
    alone = [copy.deepcopy(m) for m in models]
    metas = [iocn.train_inn(m, x, tc) for m, x in zip(alone, xs)]
    together = [copy.deepcopy(m) for m in models]
    bmetas = train_inns_batched(together, xs, tc)
    for a, b in zip(alone, together):
        _close(a, b, tol=1e-6)
    for ma, mb in zip(metas, bmetas):
        assert ma["history"]["loss"] == pytest.approx(mb["history"]["loss"], rel=1e-6, abs=1e-6)
    assert not torch.allclose(together[0].inn.module_list[0].subnet[2].weight, models[0].inn.module_list[0].subnet[2].weight)


def test_inn_batched_names_the_model_that_blows_up():
    xs = [torch.randn(100, 4), torch.randn(100, 4)]
    models = [iocn.INNModel(iocn.INNConfig(dim=4, n_blocks=2, hidden=8, seed=k)) for k in range(2)]
    for m, x in zip(models, xs):
        m.set_standardisation(x)
    tc = iocn.TrainConfig(objective="flow", steps=3, batch_size=32, warmup=1, blowup=1e-3)
    with pytest.raises(iocn.INNTrainingError, match="model 0 of 2"):
        train_inns_batched(models, xs, tc)


def test_frozen_parameters_stay_frozen():
    """FrEIA's soft permutations are parameters with requires_grad=False: not trained when stacked."""
    models = [iocn.INNModel(iocn.INNConfig(dim=4, n_blocks=2, hidden=8, seed=k)) for k in range(2)]
    st = Stack(models)
    assert not st.params["inn.module_list.0.w_perm"].requires_grad
    assert all(p.requires_grad for p in st.parameters())
    assert len(st.parameters()) == sum(p.requires_grad for p in models[0].parameters())


def test_chapter3_stacked_inns_equal_one_by_one(monkeypatch, tmp_path):
    """Chapter 3 with ``stack_inns`` (on at full): each method's per-class INNs trained as one stacked model
    land in the checkpoints the one-by-one run would write, with the same weights, budget curves and
    AUROCs to float rounding; a second run reads them (nothing retrained)."""
    import numpy as np
    from ccc_lib.experiments import iocn as E
    rng = np.random.default_rng(0)
    feats = {"train": (rng.standard_normal((240, 10)).astype(np.float32) + np.repeat(np.arange(3), 80)[:, None] * 0.5,
                       np.repeat(np.arange(3), 80)),
             "test": (rng.standard_normal((90, 10)).astype(np.float32) + np.repeat(np.arange(3), 30)[:, None] * 0.5,
                      np.repeat(np.arange(3), 30)),
             "classes": ["a", "b", "c"]}
    monkeypatch.setattr(E.inputs, "fashion_features", lambda *a, **k: feats)
    monkeypatch.setenv("CCC_JOBS", "1")                   # the class jobs in this process (they see the patch)
    S = E.settings("smoke", classes=(0, 1, 2), n_train=None, feature_dim=6, steps=8, flow_steps=8, eval_at=(4, 8),
                   n_blocks=2, batch_size=32)
    runs = {}
    for stacked in (False, True):
        monkeypatch.setenv("CCC_CACHE", str(tmp_path / str(stacked)))
        runs[stacked] = E.one_vs_rest("cnn_mnist5k", {**S, "stack_inns": stacked}, "smoke", methods=["FLOW", "IOCN"])
    a, b = runs[False], runs[True]
    for m in ("FLOW", "IOCN"):
        for c in (0, 1, 2):
            assert b.detectors[m][c].meta["batched"] == 3 and "batched" not in a.detectors[m][c].meta
            _close(a.detectors[m][c].model, b.detectors[m][c].model, tol=1e-5)
            assert a.auroc[m][c] == pytest.approx(b.auroc[m][c], abs=1e-6)
            assert [e["step"] for e in a.evals[m][c]] == [e["step"] for e in b.evals[m][c]] == [4, 8]
            assert [e["auroc"] for e in a.evals[m][c]] == pytest.approx([e["auroc"] for e in b.evals[m][c]], abs=1e-6)
    again = E.one_vs_rest("cnn_mnist5k", {**S, "stack_inns": True}, "smoke", methods=["FLOW", "IOCN"])
    assert all(all(again.from_cache[m].values()) for m in ("FLOW", "IOCN"))


def test_fit_stacked_refuses_mixed_training_configs():
    x = torch.randn(100, 4)
    dets = [iocn.IOCN(iocn.INNConfig(dim=4, n_blocks=2, hidden=8), {"steps": 3}),
            iocn.IOCN(iocn.INNConfig(dim=4, n_blocks=2, hidden=8), {"steps": 4})]
    from ccc_lib.batched import fit_stacked
    from ccc_lib.checks import InputError
    with pytest.raises(InputError, match="group them"):
        fit_stacked(dets, [x, x])
