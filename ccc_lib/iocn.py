"""Invertible one-class networks (IOCN; Schmier, Köthe & Straehle, TPM 2024): the paper's method only.

An invertible neural network (INN) maps inlier data onto the **uniform distribution on the cube**
:math:`[-1, 1]^D`. Training (Algorithm 1) needs no Jacobian determinant: with the convex pull
function :math:`f(z) = \\max_k |z_k|` each step minimises

.. math::  \\mathcal L = \\tfrac1B\\sum_i f(\\mathrm{INN}(x_i))
          - \\tfrac1B\\sum_i f\\big(\\mathrm{INN}(\\mathrm{stopgrad}(\\mathrm{INN}^{-1}(z_i)))\\big),
          \\qquad z_i \\sim \\mathcal U[-1, 1]^D,                                         \\qquad (1)

pulling the codes of data towards the origin and pushing the codes of the model's own samples
outwards; at the optimum (Theorem 3.1) the pushed-forward data are uniform on the cube. The
stop-gradient matters: without it :math:`\\mathrm{INN}(\\mathrm{INN}^{-1}(z)) = z` and the push term
has no gradient, so only the pull acts and the data collapse to the origin.

The outlier score (equations 2–4) of :math:`z = \\mathrm{INN}(x)`:

.. math::  s_\\mathrm{out} = \\sum_k \\max(|z_k| - 1, 0), \\quad
           s_\\mathrm{in} = \\min(\\max_k |z_k| - 1, 0), \\quad s = s_\\mathrm{out} + s_\\mathrm{in},

and the decision rule: inlier :math:`\\Leftrightarrow s < 0` (inside the cube).

Contents: :func:`build_inn` (FrEIA ``SequenceINN`` of ``AllInOneBlock``\\ s, as in the paper),
:class:`INNModel` (the INN with its input standardisation as buffers), :func:`iocn_loss` (equation 1),
:func:`flow_loss` (the FLOW baseline: the same INN by maximum likelihood), :func:`train_inn` (one
loop for both), :func:`iocn_score` (equations 2–4), and the detectors :class:`IOCN` and
:class:`FlowDetector`. Protocols, features, tables and plots live in :mod:`ccc_lib.experiments.iocn`;
the one-class baselines (PyOD, deepOD) in :mod:`ccc_lib.baselines`.

Choices of ours, which the paper does not fix: the last layer of every subnet starts at zero (the
untrained INN is a product of rotations and scalings); soft permutations (``permute_soft=True``: a
random rotation in each block; FrEIA's default is a hard permutation); the inputs are standardised
per feature (and divided by a ``divisor``); Gaussian noise on each training batch; Adam with warm-up
and cosine decay, gradient clipping. The affine clamping defaults to FrEIA's 2.0 (``INNConfig.clamp``);
chapter 3's settings use 1.0 (at 2.0 the inverse blew up in our trials)."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .cache import fingerprint, load_or_train
from .checks import InputError, check_features, check_fitted, check_positive
from .detectors import Detector
from .utils import cpu_threads, get_device, progress, set_seed, to_numpy

__all__ = ["INNConfig", "TrainConfig", "build_inn", "INNModel", "INNTrainingError", "pull_f", "iocn_loss",
           "flow_loss", "train_inn", "iocn_score", "IOCN", "FlowDetector"]


# --------------------------------------------------------------------------- the INN

@dataclass(frozen=True)
class INNConfig:
    dim: int
    n_blocks: int = 12
    hidden: int = 128
    clamp: float = 2.0
    permute_soft: bool = True
    zero_init: bool = True
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _subnet(hidden: int, zero_init: bool):
    def make(c_in: int, c_out: int) -> nn.Module:
        net = nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, c_out))
        if zero_init:
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
        return net
    return make


def build_inn(cfg: INNConfig):
    """A FrEIA ``SequenceINN`` of ``cfg.n_blocks`` ``AllInOneBlock``\\ s on ``cfg.dim``-d vectors (the
    paper's 12 blocks, subnets with one hidden layer of width 128 and ReLU).

    The soft permutations (random rotations from SO(D), drawn by scipy from NumPy's global generator)
    and the subnet weights are seeded with ``cfg.seed`` without disturbing the caller's generators."""
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    if cfg.dim < 2:
        raise InputError(f"an AllInOneBlock needs at least 2 dimensions, got dim={cfg.dim}; "
                         f"pad 1-D data with a second coordinate")
    np_state = np.random.get_state()
    try:
        np.random.seed(cfg.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            inn = Ff.SequenceINN(cfg.dim)
            for _ in range(cfg.n_blocks):
                inn.append(Fm.AllInOneBlock, subnet_constructor=_subnet(cfg.hidden, cfg.zero_init),
                           affine_clamping=cfg.clamp, permute_soft=cfg.permute_soft)
    finally:
        np.random.set_state(np_state)
    return inn


class INNModel(nn.Module):
    """The INN with its input standardisation: ``forward(x) = INN((x - shift) / scale)``."""

    def __init__(self, cfg: INNConfig):
        super().__init__()
        self.cfg = cfg
        self.inn = build_inn(cfg)
        self.register_buffer("shift", torch.zeros(cfg.dim))
        self.register_buffer("scale", torch.ones(cfg.dim))

    def set_standardisation(self, x: torch.Tensor, divisor: float = 1.0) -> None:
        self.shift.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-6) * divisor)

    def forward(self, x: torch.Tensor, jac: bool = False):
        z, log_jac = self.inn((x - self.shift) / self.scale, jac=jac)
        if jac:
            log_jac = log_jac - torch.log(self.scale).sum()
        return z, log_jac

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        x, _ = self.inn(z, rev=True, jac=False)
        return x * self.scale + self.shift

    def normalised_inverse(self, z: torch.Tensor) -> torch.Tensor:
        """INN⁻¹(z) in the standardised input space (where the training runs)."""
        x, _ = self.inn(z, rev=True, jac=False)
        return x


class INNTrainingError(FloatingPointError):
    """Training of an INN diverged (NaN/inf or runaway values); the message says what to change."""


# --------------------------------------------------------------------------- training

@dataclass
class TrainConfig:
    objective: str = "iocn"           # "iocn" (Algorithm 1) or "flow" (maximum likelihood)
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 50                  # linear warm-up steps, then cosine decay to lr_min_ratio * lr
    lr_min_ratio: float = 0.02
    batch_size: int = 256
    clip: float = 1.0                 # gradient-norm clipping
    weight_decay: float = 0.0
    pull: str = "max"                 # f(z): "max" = max_i |z_i| (the paper's choice)
    noise: float = 0.0                # std of Gaussian noise added to each training batch (standardised units)
    cpu_threads: int | None = 1       # torch threads while training on a CPU (tiny matmuls: 1 is fastest)
    blowup: float = 1e4               # abort when |INN⁻¹(z)| or |INN(x)| exceeds this (standardised units)
    seed: int = 0
    eval_at: tuple = ()
    stop_gradient: bool = True        # Algorithm 1's stopgrad; False only for the ablation

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eval_at"] = list(self.eval_at)
        if d["stop_gradient"]:          # the paper's setting keeps the cache keys it always had
            del d["stop_gradient"]
        return d


def pull_f(z: torch.Tensor, kind: str = "max") -> torch.Tensor:
    """The convex pull function f(z) of equation (1), one value per row."""
    if kind == "max":
        return z.abs().amax(1)
    if kind == "l2":
        return z.pow(2).sum(1)
    if kind.startswith("p") and kind[1:].isdigit():     # "p8": the 8-norm, a smooth stand-in for the max
        return z.abs().pow(int(kind[1:])).mean(1).pow(1 / int(kind[1:]))
    raise InputError(f"unknown pull function {kind!r}; use 'max' (the paper's), 'l2' or 'p<k>' (k-norm)")


def iocn_loss(model: INNModel, xb: torch.Tensor, z_cube: torch.Tensor, pull: str = "max",
              stop_gradient: bool = True):
    """Equation (1) on one batch (Algorithm 1): pull the codes of the data ``xb`` (standardised) down,
    push the codes of the pre-images of the cube samples ``z_cube`` up. The pre-images are computed
    without gradient (the stop-gradient), and both forward passes are batched into one.

    Returns ``(loss, pull_term, push_term, z, x_tilde)`` with ``z`` the codes of ``[xb; x̃]``."""
    if stop_gradient:
        with torch.no_grad():
            x_tilde = model.normalised_inverse(z_cube)          # stopgrad(INN⁻¹(z))
    else:
        x_tilde = model.normalised_inverse(z_cube)          # ablation: INN(INN⁻¹(z)) = z, no push gradient
    z, _ = model.inn(torch.cat([xb, x_tilde]), jac=False)
    f = pull_f(z, pull)
    pull_term, push_term = f[:len(xb)].mean(), f[len(xb):].mean()
    return pull_term - push_term, pull_term, push_term, z, x_tilde


def flow_loss(model: INNModel, xb: torch.Tensor):
    """The FLOW baseline: negative log-likelihood per dimension under a standard-normal latent,
    ``(½‖INN(x)‖² − log|det J|) / D``. Returns ``(loss, z)``."""
    z, log_jac = model.inn(xb, jac=True)
    return (0.5 * z.pow(2).sum(1) - log_jac).mean() / xb.shape[1], z


def lr_lambda(tc: TrainConfig):
    def f(step):
        if step < tc.warmup:
            return (step + 1) / tc.warmup
        t = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
        return tc.lr_min_ratio + (1 - tc.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def training_advice(tc: TrainConfig) -> str:
    return (f"Lower the learning rate (now lr={tc.lr:g}), clip gradients harder (now clip={tc.clip:g}), "
            f"or lower the affine clamping of the AllInOneBlocks (INNConfig.clamp)")


def train_inn(model: INNModel, x: torch.Tensor, tc: TrainConfig, eval_fn=None, desc: str = "INN") -> dict:
    """Train ``model`` on the rows of ``x`` (standardised by the model's buffers) by Algorithm 1
    (``tc.objective="iocn"``) or maximum likelihood (``"flow"``).

    ``eval_fn(model) -> dict`` is called (in eval mode, no grad) after each step in ``tc.eval_at``;
    the result is recorded with the step and the training wall-clock so far. Returns the metadata
    (loss history, time per step, evaluations). Raises :class:`INNTrainingError` naming the step and
    what to change when the loss, a gradient, a latent code or a pre-image becomes non-finite or
    exceeds ``tc.blowup`` (the data themselves are checked to be finite first)."""
    if tc.objective not in ("iocn", "flow"):
        raise InputError(f"objective must be 'iocn' or 'flow', not {tc.objective!r}")
    x = check_features(x, "training data", dim=model.cfg.dim)
    with cpu_threads(tc.cpu_threads):
        return _train_inn(model, x, tc, eval_fn, desc, get_device())


def _train_inn(model, x, tc, eval_fn, desc, dev) -> dict:
    set_seed(tc.seed)
    model.to(dev).train()
    xn = (x.to(dev) - model.shift) / model.scale
    n, d = xn.shape
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tc))
    g = torch.Generator(device="cpu").manual_seed(tc.seed)
    hist = {"loss": [], "pull": [], "push": []}
    evals, t_train = [], 0.0
    eval_at = set(int(s) for s in tc.eval_at)
    bsz = min(tc.batch_size, n)
    bar = progress(total=tc.steps, desc=desc)
    perm, pos = torch.randperm(n, generator=g), 0
    for step in range(1, tc.steps + 1):
        t0 = time.perf_counter()
        if pos + bsz > n:
            perm, pos = torch.randperm(n, generator=g), 0
        xb = xn[perm[pos:pos + bsz].to(dev)]
        pos += bsz
        if tc.noise > 0:
            xb = xb + tc.noise * torch.randn(xb.shape, generator=g).to(dev)
        if tc.objective == "iocn":
            zt = torch.rand(bsz, d, generator=g).to(dev) * 2 - 1          # z ~ U[-1, 1]^D
            loss, pull, push, z, x_tilde = iocn_loss(model, xb, zt, tc.pull, tc.stop_gradient)
            xt_max = float(x_tilde.detach().abs().max())
            if not xt_max < tc.blowup:              # also catches NaN
                raise INNTrainingError(
                    f"IOCN step {step} ({desc}): the pre-images INN⁻¹(z) of cube samples reached |x̃| = {xt_max:.3g} "
                    f"(the data are standardised, |x| ~ 1; limit {tc.blowup:g}): the inverse is blowing up. "
                    f"{training_advice(tc)}.")
        else:
            loss, z = flow_loss(model, xb)
            pull, push = loss, torch.zeros(())
        if not torch.isfinite(loss):
            raise INNTrainingError(f"{tc.objective.upper()} step {step} ({desc}): the loss became {loss.item()}. "
                                   f"{training_advice(tc)}.")
        zmax = float(z.detach().abs().max())
        if not zmax < tc.blowup:
            raise INNTrainingError(f"{tc.objective.upper()} step {step} ({desc}): latent codes reached |z| = {zmax:.3g} "
                                   f"(limit {tc.blowup:g}). {training_advice(tc)}.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
        if not torch.isfinite(gnorm):
            raise INNTrainingError(f"{tc.objective.upper()} step {step} ({desc}): the gradient norm is {float(gnorm)}. "
                                   f"{training_advice(tc)}.")
        opt.step()
        sched.step()
        t_train += time.perf_counter() - t0
        hist["loss"].append(float(loss.detach()))
        hist["pull"].append(float(pull.detach()))
        hist["push"].append(float(push.detach()))
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if eval_fn is not None and step in eval_at:
            model.eval()
            with torch.no_grad():
                ev = eval_fn(model)
            model.train()
            evals.append({"step": step, "train_seconds": t_train, **ev})
    bar.close()
    model.eval()
    return {"history": hist, "train_seconds": t_train, "seconds_per_step": t_train / max(tc.steps, 1),
            "steps": tc.steps, "evals": evals, "objective": tc.objective, "n_train": n, "device": str(dev)}


# --------------------------------------------------------------------------- the score and the detectors

def iocn_score(z: torch.Tensor) -> torch.Tensor:
    """s = s_out + s_in (equations 2–4): the L1 distance outside the cube [-1, 1]^D, or (≤ 0) the
    Chebyshev depth inside it. Inlier ⇔ s < 0."""
    a = z.abs()
    s_out = (a - 1).clamp_min(0).sum(1)
    s_in = (a.amax(1) - 1).clamp_max(0)
    return s_out + s_in


class _INNDetector(Detector):
    objective = "iocn"
    input_kind = "features"

    def __init__(self, inn: INNConfig | dict | None = None, train: TrainConfig | dict | None = None,
                 standardise_divisor: float = 1.0, cache_tag: str | None = None, data_key: dict | None = None):
        self.inn_cfg = inn if isinstance(inn, INNConfig) or inn is None else INNConfig(**inn)
        tc = train if isinstance(train, TrainConfig) else TrainConfig(**(train or {}))
        tc.objective = self.objective
        check_positive(tc.steps, "TrainConfig.steps", integer=True)
        check_positive(tc.lr, "TrainConfig.lr")
        check_positive(tc.batch_size, "TrainConfig.batch_size", integer=True)
        check_positive(standardise_divisor, "standardise_divisor")
        self.train_cfg = tc
        self.divisor = standardise_divisor
        self.cache_tag = cache_tag
        # what the training rows *are* (e.g. a split's inputs and settings), keyed in place of their bytes:
        # rows recomputed elsewhere can differ in the last bits and would miss the checkpoint
        self.data_key = data_key
        self.model: INNModel | None = None
        self.meta: dict = {}

    def fit(self, data, eval_fn=None, desc: str | None = None) -> "_INNDetector":
        """Train on in-distribution feature rows (N×D, finite); with ``cache_tag`` set, load/store the
        checkpoint (the key is the tag, the INN and training configs and a fingerprint of the data, or
        ``data_key`` where the detector was given one).
        :func:`ccc_lib.batched.fit_stacked` fits K such detectors at once into the same checkpoints."""
        x, model, key = self.prepare(data)
        desc = desc or self.name
        train_fn = lambda m: train_inn(m, x, self.train_cfg, eval_fn=eval_fn, desc=desc)  # noqa: E731
        meta = (load_or_train(model, self.cache_kind, key, train_fn) if key is not None
                else {**train_fn(model), "from_cache": False})
        return self.finish(model, meta)

    @property
    def cache_kind(self) -> str:
        return f"iocn-{self.objective}"

    def prepare(self, data) -> tuple:
        """Checked training rows, an untrained model standardised on them, and the cache key (None
        without ``cache_tag``): what :meth:`fit` trains."""
        x = check_features(data, f"{self.name}.fit data",
                           dim=self.inn_cfg.dim if self.inn_cfg is not None else None)
        if len(x) < 2:
            raise InputError(f"{self.name}.fit data: {len(x)} row(s); the standardisation needs at least 2")
        cfg = self.inn_cfg or INNConfig(dim=x.shape[1])
        self.inn_cfg = cfg
        model = INNModel(cfg)
        model.set_standardisation(x, self.divisor)
        key = None
        if self.cache_tag:
            key = {"tag": self.cache_tag, "inn": cfg.to_dict(), "train": self.train_cfg.to_dict(),
                   "divisor": self.divisor, "n": len(x)}
            if self.data_key is not None:
                key["data"] = self.data_key
            else:
                key["fingerprint"] = fingerprint(torch.as_tensor(x, dtype=torch.float32))
        return x, model, key

    def finish(self, model: INNModel, meta: dict) -> "_INNDetector":
        """Take a trained ``model`` (and its training metadata) as this detector's."""
        self.meta = meta
        self.model = model.to(get_device()).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self

    def _check(self, x, what: str) -> torch.Tensor:
        check_fitted(self, "model", self.name)
        return check_features(x, f"{self.name}.{what} input", dim=self.inn_cfg.dim)

    def latent(self, x, batch_size: int = 4096) -> torch.Tensor:
        """INN(x) for feature rows ``x`` (on the CPU)."""
        x = self._check(x, "latent")
        dev = get_device()
        with torch.no_grad(), cpu_threads(1):
            out = [self.model(x[i:i + batch_size].to(dev))[0].cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(out)

    def score(self, x, batch_size: int = 4096) -> np.ndarray:
        """The outlier score of each row (higher = more outlying)."""
        x = self._check(x, "score")
        dev = get_device()
        with torch.no_grad(), cpu_threads(1):
            out = [to_numpy(self._score(x[i:i + batch_size].to(dev))).astype(np.float64)
                   for i in range(0, len(x), batch_size)]
        return np.concatenate(out)

    def is_outlier(self, x) -> np.ndarray:
        check_fitted(self, "model", self.name)
        if self.threshold is None:
            raise NotImplementedError(f"{self.name} defines no decision rule; use score() and pick a threshold "
                                      f"(e.g. a quantile of the scores of held-out inliers)")
        return self.score(x) > self.threshold


class IOCN(_INNDetector):
    """Invertible one-class network: trained by Algorithm 1, scored by s = s_out + s_in; the
    decision rule of the paper is ``s > 0`` (outside the cube) → outlier."""
    name = "IOCN"
    objective = "iocn"
    threshold = 0.0

    def _score(self, xb):
        return iocn_score(self.model(xb)[0])


class FlowDetector(_INNDetector):
    """The FLOW row: the same INN trained by maximum likelihood (standard-normal latent), scored by
    the negative log-likelihood per dimension (in nats, up to a constant). No decision rule of its own."""
    name = "FLOW"
    objective = "flow"

    def _score(self, xb):
        z, log_jac = self.model(xb, jac=True)
        return (0.5 * z.pow(2).sum(1) - log_jac) / z.shape[1]
