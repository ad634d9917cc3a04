"""Chapter 3's appendix studies around the IOCN (the method itself is :mod:`ccc_lib.iocn`; Table 1 is
:mod:`.table1`; the package :mod:`ccc_lib.experiments.iocn` re-exports these):

* toy data: Figure 1 (:func:`toy_2d`, :func:`fit_toy`, :func:`plot_toy`, :func:`decision_boundary`);
* the simply-connected limitation on an annulus (:func:`hole_study`);
* the stop-gradient ablation (:func:`stopgrad_ablation`);
* the 1-D example of Figure 2 (:class:`Monotone1D`, :func:`train_1d`, :func:`plot_1d`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ...cache import fingerprint, load_or_compute
from ...checks import check_choice
from ...iocn import IOCN, INNConfig, TrainConfig, iocn_score, pull_f
from ...metrics import ood_metrics
from ...utils import cpu_threads, get_device, set_seed, to_numpy

__all__ = ["TOY_SETS", "toy_2d", "decision_boundary", "fit_toy", "plot_toy", "HoleResult", "hole_study",
           "AblationRun", "stopgrad_ablation", "Monotone1D", "toy_1d", "OneDRun", "train_1d", "plot_1d"]


# --------------------------------------------------------------------------- 2D toy data (Figure 1)

TOY_SETS = ("moons", "circles", "two_gaussians", "annulus")


def toy_2d(name: str, n: int = 2000, seed: int = 0) -> np.ndarray:
    """The 2D sets of Figure 1 (scikit-learn's moons and circles, two Gaussians) and an annulus
    (a support with a hole, for the simply-connected limitation)."""
    from sklearn import datasets
    check_choice(name, "name", TOY_SETS)
    rng = np.random.default_rng(seed)
    if name == "moons":
        x, _ = datasets.make_moons(n, noise=0.08, random_state=seed)
    elif name == "circles":
        x, _ = datasets.make_circles(n, noise=0.06, factor=0.5, random_state=seed)
    elif name == "two_gaussians":
        c = rng.integers(0, 2, n)
        x = rng.standard_normal((n, 2)) * 0.5 + np.where(c[:, None] == 0, [-2.0, 0.0], [2.0, 0.0])
    else:
        x = _ring(rng, n, 1.0, 1.6)
    return x.astype(np.float32)


def _ring(rng, n, r0, r1):
    """n points uniform (by area) in the ring r0 ≤ r ≤ r1."""
    phi = rng.uniform(0, 2 * np.pi, n)
    r = np.sqrt(rng.uniform(r0 ** 2, r1 ** 2, n))
    return np.c_[r * np.cos(phi), r * np.sin(phi)]


def decision_boundary(det: IOCN, n: int = 2000) -> np.ndarray:
    """The surface of the cube [-1, 1]^2 mapped back through INN⁻¹ (a closed curve in data space)."""
    t = np.linspace(-1, 1, n // 4, endpoint=False)
    one = np.ones_like(t)
    edge = np.concatenate([np.c_[t, -one], np.c_[one, t], np.c_[-t, one], np.c_[-one, -t]])
    edge = np.vstack([edge, edge[:1]])
    with torch.no_grad(), cpu_threads(1):
        x = det.model.inverse(torch.as_tensor(edge, dtype=torch.float32, device=get_device()))
    return to_numpy(x)


def fit_toy(name: str, S: dict, seed: int = 0, cache: bool = True, steps: int | None = None, n: int | None = None,
            x: np.ndarray | None = None, stop_gradient: bool = True) -> tuple:
    """Train an IOCN on one 2D set; returns ``(detector, data)``."""
    x = toy_2d(name, n or S["toy_n"], seed) if x is None else x
    tc = TrainConfig(objective="iocn", steps=steps or S["toy_steps"], lr=S["lr"], batch_size=256, noise=0.0,
                     seed=seed, stop_gradient=stop_gradient)
    det = IOCN(INNConfig(dim=2, n_blocks=S["toy_blocks"], clamp=S["clamp"], seed=seed), tc,
               standardise_divisor=S["toy_divisor"], cache_tag=f"toy-{name}" if cache else None)
    det.fit(x, desc=f"IOCN {name}")
    return det, x


def plot_toy(det: IOCN, x: np.ndarray, axes, title: str = "", grid: int = 150, extra=None):
    """Three panels for one 2D set: the data, its latent codes with the cube, and the score s(x) over
    the plane with the decision boundary (the cube's surface mapped back). ``extra``: further points
    ``(label, array)`` drawn in red in the data and latent panels (e.g. points in a hole)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm
    z = to_numpy(det.latent(x))
    lo, hi = x.min(0), x.max(0)
    pad = 0.35 * (hi - lo)
    gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid))
    s = det.score(np.c_[gx.ravel(), gy.ravel()].astype(np.float32)).reshape(gx.shape)
    b = decision_boundary(det)
    axes[0].scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
    axes[0].set_title(f"{title}: data")
    axes[1].scatter(z[:, 0], z[:, 1], s=2, alpha=0.5, c="C1")
    if extra is not None:
        lab, xe = extra
        ze = to_numpy(det.latent(xe))
        axes[0].scatter(xe[:, 0], xe[:, 1], s=4, c="C3", label=lab)
        axes[1].scatter(ze[:, 0], ze[:, 1], s=4, c="C3", label=lab)
        axes[0].legend(fontsize=7, loc="upper right")
    axes[1].plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "k-", lw=1)
    lim = max(1.3, float(np.quantile(np.abs(z), 0.995)) * 1.1)
    axes[1].set_xlim(-lim, lim); axes[1].set_ylim(-lim, lim); axes[1].set_aspect("equal")
    axes[1].set_title(f"latent INN(x), {(iocn_score(torch.as_tensor(z)) < 0).float().mean():.0%} inside")
    im = axes[2].pcolormesh(gx, gy, np.clip(s, -1, 2), cmap="coolwarm", shading="auto",
                            norm=TwoSlopeNorm(vmin=-1, vcenter=0, vmax=2))
    axes[2].scatter(x[:, 0], x[:, 1], s=1, c="k", alpha=0.3)
    axes[2].plot(b[:, 0], b[:, 1], "k-", lw=1.5)
    axes[2].set_xlim(gx.min(), gx.max()); axes[2].set_ylim(gy.min(), gy.max())
    axes[2].set_title("score s(x), boundary = INN⁻¹(cube surface)")
    plt.colorbar(im, ax=axes[2], fraction=0.046)
    return axes


@dataclass
class HoleResult:
    """The simply-connected limitation on an annulus: where points in its hole end up."""
    detector: IOCN
    train: np.ndarray
    hole: np.ndarray            # probe points inside the hole (radius < hole_radius)
    far: np.ndarray             # probe points far outside the ring
    inside_train: float
    inside_hole: float
    inside_far: float
    auroc_hole: float           # training ring vs hole points (higher = hole points scored more outlying)


def hole_study(S: dict, seed: int = 0, cache: bool = True, hole_radius: float = 0.5) -> HoleResult:
    """Train an IOCN on an annulus (radius 1 to 1.6, a support with a hole) and measure the share of
    training points, of points in the hole (radius < ``hole_radius``) and of points far outside
    (radius 2.5 to 3) that the IOCN maps inside the cube. The INN is a homeomorphism and the cube is
    simply connected, so the inlier region cannot have a hole: expect hole points inside."""
    rng = np.random.default_rng(seed + 7)
    det, x = fit_toy("annulus", S, seed=seed, cache=cache, steps=S["hole_steps"], n=S["hole_n"])
    hole = _ring(rng, 500, 0.0, hole_radius).astype(np.float32)
    far = _ring(rng, 500, 2.5, 3.0).astype(np.float32)
    s_tr, s_h = det.score(x), det.score(hole)
    return HoleResult(det, x, hole, far, float((s_tr < 0).mean()), float((s_h < 0).mean()),
                      float((det.score(far) < 0).mean()), ood_metrics(s_tr, s_h)["auroc"])


# --------------------------------------------------------------------------- stop-gradient ablation

@dataclass
class AblationRun:
    stop_gradient: bool
    auroc: float                 # on the test set of the split
    inside_train: float          # share of training inliers inside the cube
    inside_test_out: float       # share of test outliers inside the cube
    code_size: float             # median over training points of max_k |INN(x)_k|
    steps_done: int
    diverged: str = ""           # the INNTrainingError message, if training stopped
    curve: list = field(default_factory=list)   # [{step, auroc, code_size, inside_train}]


def stopgrad_ablation(sp: "Split", S: dict, seed: int = 0, steps: int | None = None, cache: bool = True) -> list:
    """Train the IOCN of one split with and without Algorithm 1's stop-gradient (same seed, data,
    settings). Without it INN(INN⁻¹(z)) = z, the push term has no gradient, and only the pull acts:
    the codes of the data shrink towards the origin (collapse). Returns two :class:`AblationRun`; with
    ``cache`` their numbers are stored under the settings and a fingerprint of the split (a warm
    rebuild does not retrain)."""
    steps = steps or S["ablation_steps"]
    if not cache:
        return _stopgrad_ablation(sp, S, seed, steps)
    key = {"v": 1, "steps": steps, "seed": seed, **{k: S[k] for k in ("lr", "batch_size", "noise", "n_blocks", "clamp", "divisor")},
           **({"data": sp.key} if sp.key is not None else
              {"train": fingerprint(torch.as_tensor(sp.train)), "test": fingerprint(torch.as_tensor(sp.test)),
               "is_out": fingerprint(np.asarray(sp.is_out))})}
    out = load_or_compute("iocn-stopgrad-ablation", key,
                          lambda: {"meta": {"runs": [vars(r) for r in _stopgrad_ablation(sp, S, seed, steps)]}})
    return [AblationRun(**r) for r in out["meta"]["runs"]]


def _stopgrad_ablation(sp: "Split", S: dict, seed: int, steps: int) -> list:
    from ...iocn import INNTrainingError
    eval_at = tuple(sorted({max(1, steps // 4), max(1, steps // 2), steps}))
    y = sp.is_out
    out = []
    for sg in (True, False):
        curve = []

        def eval_fn(model):
            with torch.no_grad(), cpu_threads(1):
                z_tr = model(torch.as_tensor(sp.train).to(get_device()))[0]
                z_te = model(torch.as_tensor(sp.test).to(get_device()))[0]
            s = to_numpy(iocn_score(z_te))
            ev = {"auroc": ood_metrics(s[y == 0], s[y == 1])["auroc"],
                  "code_size": float(z_tr.abs().amax(1).median()),
                  "inside_train": float((iocn_score(z_tr) < 0).float().mean()),
                  "inside_test_out": float((s[y == 1] < 0).mean())}
            curve.append(ev)
            return ev

        tc = TrainConfig(objective="iocn", steps=steps, lr=S["lr"], batch_size=S["batch_size"], noise=S["noise"],
                         seed=seed, eval_at=eval_at, stop_gradient=sg)
        det = IOCN(INNConfig(dim=sp.train.shape[1], n_blocks=S["n_blocks"], clamp=S["clamp"], seed=seed), tc,
                   standardise_divisor=S["divisor"])
        msg = ""
        try:
            det.fit(sp.train, eval_fn=eval_fn, desc=f"IOCN stopgrad={sg}")
            done = steps
        except INNTrainingError as exc:
            msg = str(exc)
            done = int(msg.split("step ")[1].split(" ")[0]) if "step " in msg else 0
        last = curve[-1] if curve else {"auroc": float("nan"), "code_size": float("nan"),
                                        "inside_train": float("nan"), "inside_test_out": float("nan")}
        steps_seen = [s for s in eval_at if s <= done] if msg else list(eval_at)
        out.append(AblationRun(sg, last["auroc"], last["inside_train"], last["inside_test_out"], last["code_size"],
                               done, msg, [{"step": st, **ev} for st, ev in zip(steps_seen, curve)]))
    return out


# --------------------------------------------------------------------------- the 1-D example (Figure 2)

class Monotone1D(nn.Module):
    """An exactly invertible 1-D map (an INN in one dimension), strictly increasing:
    ``f(u) = e^a·u + b + Σ_k softplus(w_k)·tanh(e^{s_k}(u − c_k))``. Its inverse is found by bisection
    (to float precision): ``f'(u) ≥ e^a`` bounds the bracket."""

    def __init__(self, n_bumps: int = 8, span: float = 3.0):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))
        self.w = nn.Parameter(torch.full((n_bumps,), -1.0))
        self.s = nn.Parameter(torch.zeros(n_bumps))
        self.c = nn.Parameter(torch.linspace(-span, span, n_bumps))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        bumps = nn.functional.softplus(self.w) * torch.tanh(self.s.exp() * (u[:, None] - self.c))
        return self.a.exp() * u + self.b + bumps.sum(1)

    @torch.no_grad()
    def inverse(self, z: torch.Tensor, iters: int = 60) -> torch.Tensor:
        W = float(nn.functional.softplus(self.w).sum())
        ea = float(self.a.exp())
        lo, hi = (z - self.b - W) / ea, (z - self.b + W) / ea
        for _ in range(iters):
            mid = (lo + hi) / 2
            up = self(mid) < z
            lo, hi = torch.where(up, mid, lo), torch.where(up, hi, mid)
        return (lo + hi) / 2


def toy_1d(n: int, seed: int = 0) -> np.ndarray:
    """A bimodal 1-D data set: 60 % N(−1.5, 0.4²), 40 % N(1.5, 0.6²)."""
    rng = np.random.default_rng(seed)
    c = rng.random(n) < 0.6
    return np.where(c, rng.normal(-1.5, 0.4, n), rng.normal(1.5, 0.6, n)).astype(np.float32)


@dataclass
class OneDRun:
    data: np.ndarray
    snapshots: dict              # step -> state_dict of the map
    loss: list
    model: Monotone1D


def train_1d(S: dict, seed: int = 0, lr: float = 3e-2, batch_size: int = 256, cache: bool = True) -> OneDRun:
    """Algorithm 1 in one dimension (f(z) = |z|): pull |f(x)| down on data, push |f(stopgrad(f⁻¹(z)))|
    up for z ~ U[-1, 1]; snapshots of the map at the steps ``S["oned_snapshots"]`` (with ``cache``,
    stored under these settings: a warm rebuild does not retrain)."""
    if not cache:
        return _train_1d(S, seed, lr, batch_size)
    key = {"v": 1, "n": S["oned_n"], "steps": S["oned_steps"], "snapshots": list(S["oned_snapshots"]), "seed": seed,
           "lr": lr, "batch_size": batch_size}

    def compute():
        run = _train_1d(S, seed, lr, batch_size)
        t = {f"s{step}.{k}": v for step, sd in run.snapshots.items() for k, v in sd.items()}
        return {**t, "data": torch.as_tensor(run.data), "meta": {"loss": run.loss}}
    out = load_or_compute("iocn-1d", key, compute)
    snaps = {}
    for name, v in out.items():
        if name.startswith("s") and "." in name:
            step, k = name[1:].split(".", 1)
            snaps.setdefault(int(step), {})[k] = v
    model = Monotone1D()
    model.load_state_dict(snaps[max(snaps)])
    return OneDRun(out["data"].numpy(), dict(sorted(snaps.items())), list(out["meta"]["loss"]), model)


def _train_1d(S: dict, seed: int, lr: float, batch_size: int) -> OneDRun:
    set_seed(seed)
    x = torch.as_tensor(toy_1d(S["oned_n"], seed))
    model = Monotone1D()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    snaps, losses = {}, []
    keep = set(S["oned_snapshots"])
    for step in range(S["oned_steps"] + 1):
        if step in keep:
            snaps[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step == S["oned_steps"]:
            break
        xb = x[torch.randint(len(x), (batch_size,), generator=g)]
        zc = torch.rand(batch_size, generator=g) * 2 - 1
        x_tilde = model.inverse(zc)                       # no gradient: the stop-gradient
        loss = pull_f(model(xb)[:, None]).mean() - pull_f(model(x_tilde)[:, None]).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(float(loss.detach()))
    return OneDRun(x.numpy(), snaps, losses, model)


def plot_1d(run: OneDRun, axes, n_bins: int = 24, seed: int = 0):
    """Figure 2: per snapshot (columns) the data space (top: the data and the pre-images of cube samples)
    and the latent space (bottom: the codes of the data against the uniform density on [−1, 1]), with
    arrows: the net loss gradient on the latent at each bin of x — data pull towards 0, pre-images of
    cube samples push outwards — which vanishes where the two coincide."""
    m = Monotone1D()
    zc = torch.rand(len(run.data), generator=torch.Generator().manual_seed(seed + 1)) * 2 - 1
    x = torch.as_tensor(run.data)
    edges = np.linspace(float(x.min()) - 0.5, float(x.max()) + 0.5, n_bins + 1)
    centres = (edges[1:] + edges[:-1]) / 2
    for col, (step, state) in enumerate(sorted(run.snapshots.items())):
        m.load_state_dict(state)
        with torch.no_grad():
            z = m(x).numpy()
            xt = m.inverse(zc).numpy()
            zcen = m(torch.as_tensor(centres, dtype=torch.float32)).numpy()
        top, bot = axes[0][col], axes[1][col]
        top.hist(run.data, bins=edges, alpha=0.6, label="data x", density=True)
        top.hist(np.clip(xt, edges[0], edges[-1]), bins=edges, alpha=0.6, label="INN⁻¹(z), z ~ U[−1, 1]", density=True)
        top.set_title(f"step {step}: data space", fontsize=9)
        n_data = np.histogram(run.data, edges)[0] / len(run.data)
        n_push = np.histogram(xt, edges)[0] / len(xt)
        force = (n_data - n_push) * -np.sign(zcen)          # net −∂L/∂z per bin: pull minus push
        bot.hist(z, bins=30, alpha=0.6, density=True, color="C0", label="INN(x)")
        bot.plot([-1, -1, 1, 1], [0, 0.5, 0.5, 0], "k-", lw=1, label="U[−1, 1]")
        bot.quiver(zcen, np.full_like(zcen, 0.05), force, np.zeros_like(force), angles="xy", scale_units="xy",
                   scale=0.25, width=0.006, color="k")
        bot.set_title(f"step {step}: latent space", fontsize=9); bot.set_xlabel("z")
        lim = max(1.5, float(np.quantile(np.abs(z), 0.99)) * 1.1)
        bot.set_xlim(-lim, lim)
        if col == 0:
            top.legend(fontsize=7); bot.legend(fontsize=7)
    return axes
