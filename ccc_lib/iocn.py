"""Chapter 3: invertible one-class networks (IOCN, Schmier, Köthe & Straehle, TPM 2024).

* :func:`build_inn` — the paper's INN with FrEIA 0.2: a ``SequenceINN`` of ``AllInOneBlock``\\ s
  (12 blocks, subnets with one hidden layer of width 128 and ReLU; last subnet layer zero-initialised
  so that the untrained INN is a fixed rotation, a choice of ours the paper does not fix).
* :class:`INNModel` — the INN with the input standardisation stored as buffers (so a checkpoint
  holds everything needed to score).
* :func:`train_inn` — one loop for both objectives:
  ``"iocn"`` (Algorithm 1: pull f(INN(x)) down on data, push f(INN(stopgrad(INN⁻¹(z)))) up for
  z ~ U[-1, 1]^D, f(z) = max_i |z_i|; the pull and push forward passes are batched into one) and
  ``"flow"`` (maximum likelihood with a standard-normal latent). NaN/inf and blow-up checks raise
  :class:`INNTrainingError` naming the step and what to change.
* Detectors (all :class:`ccc_lib.detectors.Detector`, higher = more OOD):
  :class:`IOCN` (score s = s_out + s_in, equations 2–4; inlier ⇔ s < 0),
  :class:`FlowDetector` (NLL), :class:`PyODDetector` (KNN, KDE, PCA, COPOD, IForest, DeepSVDD).
* Features: :func:`fashion_features` (the MNIST-5k classifier's 256-d penultimate features — that
  encoder never saw a Fashion-MNIST label — or raw pixels) and :func:`one_class_split` (PCA fitted
  on the inlier class's training images).
* :func:`one_vs_rest` runs the one-vs-rest table; :func:`toy_2d` the 2D data of Figure 1.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .cache import load_or_train
from .detectors import Detector, as_tensor_images
from .metrics import ood_metrics
from .profiles import Profile, chapter_settings, get_profile
from .utils import cpu_threads, get_device, progress, set_seed, to_numpy

__all__ = ["SETTINGS", "settings", "INNConfig", "TrainConfig", "build_inn", "INNModel", "INNTrainingError",
           "train_inn", "iocn_score", "IOCN", "FlowDetector", "PyODDetector", "PYOD_METHODS", "make_baseline",
           "fashion_features", "encode_images", "score_counterfeits", "resnet18_encoder", "one_class_split", "one_vs_rest", "toy_2d", "decision_boundary",
           "reconstruction_error", "share_inside_cube", "cpu_threads", "budget_table", "time_to_reach"]


# --------------------------------------------------------------------------- settings per profile

SETTINGS = {
    # INN: the paper's 12 AllInOneBlocks with width-128 subnets; affine clamping 1.0 (at 2.0 the
    # inverse blew up here, see the chapter). Training: Adam, lr 1e-3 with 50 warm-up steps and a
    # cosine decay, gradient-norm clipping 1.0, batch 128 (+128 cube samples for IOCN), Gaussian
    # noise of std `noise` added to each training batch of both INN methods. Inputs are standardised
    # per feature and divided by `divisor` (3: most training points start inside the cube).
    "smoke": {
        "classes": (0, 1, 7),          # three Fashion-MNIST classes as inliers (T-shirt, Trouser, Sneaker)
        "n_train": 200,                # training images of the inlier class (all the smoke profile has)
        "feature_dim": 8,
        "feature_sets": ("cnn_mnist5k", "pixels"),
        "baselines": ("KNN", "KDE", "PCA", "COPOD", "IForest"),
        "n_blocks": 4, "clamp": 1.0, "lr": 1e-3, "noise": 0.1, "divisor": 3.0, "batch_size": 64,
        "steps": 40, "flow_steps": 40, "eval_at": (20, 40),
        "toy_sets": ("moons", "two_gaussians"), "toy_n": 256, "toy_steps": 60, "toy_blocks": 4, "toy_divisor": 1.0,
    },
    "default": {
        "classes": tuple(range(10)),
        "n_train": 2000,
        "feature_dim": 16,
        "feature_sets": ("cnn_mnist5k", "pixels"),
        "baselines": ("KNN", "KDE", "PCA", "COPOD", "IForest"),
        "n_blocks": 12, "clamp": 1.0, "lr": 1e-3, "noise": 0.1, "divisor": 3.0, "batch_size": 128,
        "steps": 300, "flow_steps": 300, "eval_at": (50, 100, 200, 300),
        "toy_sets": ("moons", "two_gaussians", "circles"), "toy_n": 1000, "toy_steps": 800, "toy_blocks": 12, "toy_divisor": 1.0,
    },
    "full": {
        # the paper's protocol: CIFAR-10, 128-d features of a pretrained encoder on the hypersphere
        "dataset": "cifar10",
        "classes": tuple(range(10)),
        "n_train": None,                # all 5,000 training images of a class
        "feature_dim": 128,
        "feature_sets": ("resnet18_imagenet", "pixels"),
        "baselines": ("KNN", "KDE", "PCA", "COPOD", "IForest", "DeepSVDD"),
        "n_blocks": 12, "clamp": 1.0, "lr": 1e-3, "noise": 0.1, "divisor": 3.0, "batch_size": 256,
        "steps": 4000, "flow_steps": 4000, "eval_at": (100, 250, 500, 1000, 2000, 4000),
        "toy_sets": ("moons", "two_gaussians", "circles"), "toy_n": 4000, "toy_steps": 4000, "toy_blocks": 12, "toy_divisor": 1.0,
    },
}


def settings(profile: str | Profile | None = None, **overrides) -> dict:
    return chapter_settings(SETTINGS, profile, **overrides)


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
    """A FrEIA ``SequenceINN`` of ``cfg.n_blocks`` ``AllInOneBlock``\\ s on ``cfg.dim``-d vectors.

    The soft permutations (random rotations from SO(D), drawn by scipy from NumPy's global generator)
    and the subnet weights are seeded with ``cfg.seed`` without disturbing the caller's generators."""
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    if cfg.dim < 2:
        raise ValueError(f"an AllInOneBlock needs at least 2 dimensions, got dim={cfg.dim}")
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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eval_at"] = list(self.eval_at)
        return d


def pull_f(z: torch.Tensor, kind: str = "max") -> torch.Tensor:
    """The convex pull function f(z) of equation (1), one value per row."""
    if kind == "max":
        return z.abs().amax(1)
    if kind == "l2":
        return z.pow(2).sum(1)
    if kind.startswith("p") and kind[1:].isdigit():     # "p8": the 8-norm, a smooth stand-in for the max
        return z.abs().pow(int(kind[1:])).mean(1).pow(1 / int(kind[1:]))
    raise ValueError(f"unknown pull function {kind!r}; use 'max' (the paper's), 'l2' or 'p<k>' (k-norm)")


def _lr_lambda(tc: TrainConfig):
    def f(step):
        if step < tc.warmup:
            return (step + 1) / tc.warmup
        t = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
        return tc.lr_min_ratio + (1 - tc.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def _advice(tc: TrainConfig) -> str:
    return (f"lower the learning rate (now lr={tc.lr:g}), clip gradients harder (now clip={tc.clip:g}), "
            f"or lower the affine clamping of the AllInOneBlocks (INNConfig.clamp)")


def train_inn(model: INNModel, x: torch.Tensor, tc: TrainConfig, eval_fn=None, desc: str = "INN") -> dict:
    """Train ``model`` on the rows of ``x`` (already standardised by the model's buffers).

    ``eval_fn(model) -> dict`` is called (in eval mode, no grad) after each step in ``tc.eval_at``;
    the result is recorded with the step and the training wall-clock so far. Returns the metadata
    (loss history, time per step, evaluations)."""
    if tc.objective not in ("iocn", "flow"):
        raise ValueError(f"objective must be 'iocn' or 'flow', not {tc.objective!r}")
    with cpu_threads(tc.cpu_threads):
        return _train_inn(model, x, tc, eval_fn, desc, get_device())


def _train_inn(model, x, tc, eval_fn, desc, dev) -> dict:
    set_seed(tc.seed)
    model.to(dev).train()
    x = torch.as_tensor(x, dtype=torch.float32).to(dev)
    xn = (x - model.shift) / model.scale
    n, d = xn.shape
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(tc))
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
            with torch.no_grad():
                zt = torch.rand(bsz, d, generator=g).to(dev) * 2 - 1
                xt = model.normalised_inverse(zt)
                xt_max = float(xt.abs().max()) if torch.isfinite(xt).all() else float("inf")
            if not xt_max < tc.blowup:
                raise INNTrainingError(
                    f"IOCN step {step} ({desc}): the pre-images INN⁻¹(z) of cube samples reached |x̃| = {xt_max:.3g} "
                    f"(the data are standardised, |x| ~ 1; limit {tc.blowup:g}): the inverse is blowing up. "
                    f"{_advice(tc)[0].upper() + _advice(tc)[1:]}.")
            z, _ = model.inn(torch.cat([xb, xt]), jac=False)      # pull and push in one forward pass
            f = pull_f(z, tc.pull)
            pull, push = f[:bsz].mean(), f[bsz:].mean()
            loss = pull - push
        else:
            z, log_jac = model.inn(xb, jac=True)
            loss = (0.5 * z.pow(2).sum(1) - log_jac).mean() / d
            pull, push = loss, torch.zeros(())
        if not torch.isfinite(loss):
            raise INNTrainingError(f"{tc.objective.upper()} step {step} ({desc}): the loss became {loss.item()}. "
                                   f"{_advice(tc)[0].upper() + _advice(tc)[1:]}.")
        zmax = float(z.detach().abs().max())
        if not zmax < tc.blowup:
            raise INNTrainingError(f"{tc.objective.upper()} step {step} ({desc}): latent codes reached |z| = {zmax:.3g} "
                                   f"(limit {tc.blowup:g}). {_advice(tc)[0].upper() + _advice(tc)[1:]}.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
        if not torch.isfinite(gnorm):
            raise INNTrainingError(f"{tc.objective.upper()} step {step} ({desc}): the gradient norm is {float(gnorm)}. "
                                   f"{_advice(tc)[0].upper() + _advice(tc)[1:]}.")
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


# --------------------------------------------------------------------------- scores

def iocn_score(z: torch.Tensor) -> torch.Tensor:
    """s = s_out + s_in (equations 2–4): L1 distance outside the cube [-1, 1]^D, or (≤ 0) the
    Chebyshev depth inside it. Inlier ⇔ s < 0."""
    a = z.abs()
    s_out = (a - 1).clamp_min(0).sum(1)
    s_in = (a.amax(1) - 1).clamp_max(0)
    return s_out + s_in


def _as_features(x) -> torch.Tensor:
    x = as_tensor_images(x) if not isinstance(x, torch.Tensor) else x
    return x.float().flatten(1)


class _INNDetector(Detector):
    objective = "iocn"

    def __init__(self, inn: INNConfig | dict | None = None, train: TrainConfig | dict | None = None,
                 standardise_divisor: float = 1.0, cache_tag: str | None = None):
        self.inn_cfg = inn if isinstance(inn, INNConfig) or inn is None else INNConfig(**inn)
        tc = train if isinstance(train, TrainConfig) else TrainConfig(**(train or {}))
        tc.objective = self.objective
        self.train_cfg = tc
        self.divisor = standardise_divisor
        self.cache_tag = cache_tag
        self.model: INNModel | None = None
        self.meta: dict = {}

    def fit(self, data, eval_fn=None, desc: str | None = None) -> "_INNDetector":
        """Train on in-distribution feature rows; with ``cache_tag`` set, load/store the checkpoint
        (the key is the tag, the INN and training configs and a fingerprint of the data)."""
        x = _as_features(data)
        cfg = self.inn_cfg or INNConfig(dim=x.shape[1])
        if cfg.dim != x.shape[1]:
            raise ValueError(f"INNConfig.dim={cfg.dim} but the data have {x.shape[1]} features")
        self.inn_cfg = cfg
        model = INNModel(cfg)
        model.set_standardisation(x, self.divisor)
        desc = desc or self.name
        train_fn = lambda m: train_inn(m, x, self.train_cfg, eval_fn=eval_fn, desc=desc)  # noqa: E731
        if self.cache_tag:
            key = {"tag": self.cache_tag, "inn": cfg.to_dict(), "train": self.train_cfg.to_dict(),
                   "divisor": self.divisor, "n": len(x), "fingerprint": _fingerprint(x)}
            self.meta = load_or_train(model, f"iocn-{self.objective}", key, train_fn)
        else:
            self.meta = {**train_fn(model), "from_cache": False}
        self.model = model.to(get_device()).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self

    def latent(self, x, batch_size: int = 4096) -> torch.Tensor:
        x = _as_features(x)
        dev = get_device()
        with torch.no_grad(), cpu_threads(1):
            out = [self.model(x[i:i + batch_size].to(dev))[0].cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.inn_cfg.dim)

    def score(self, x, batch_size: int = 4096) -> np.ndarray:
        x = _as_features(x)
        dev = get_device()
        with torch.no_grad(), cpu_threads(1):
            out = [to_numpy(self._score(x[i:i + batch_size].to(dev))).astype(np.float64)
                   for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.empty(0)


def _fingerprint(x: torch.Tensor) -> str:
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(to_numpy(x), dtype=np.float32).tobytes()).hexdigest()[:16]


class IOCN(_INNDetector):
    """Invertible one-class network: trained by Algorithm 1, scored by s = s_out + s_in; the
    decision rule of the paper is ``s > 0`` (outside the cube) → outlier."""
    name = "IOCN"
    objective = "iocn"
    threshold = 0.0

    def _score(self, xb):
        return iocn_score(self.model(_as_features(xb))[0])


class FlowDetector(_INNDetector):
    """The FLOW row: the same INN trained by maximum likelihood (standard-normal latent), scored by
    the negative log-likelihood per dimension (in nats, up to a constant)."""
    name = "FLOW"
    objective = "flow"

    def _score(self, xb):
        z, log_jac = self.model(_as_features(xb), jac=True)
        return (0.5 * z.pow(2).sum(1) - log_jac) / z.shape[1]


# --------------------------------------------------------------------------- PyOD baselines

PYOD_METHODS = {
    "KNN": ("pyod.models.knn", "KNN"),
    "KDE": ("pyod.models.kde", "KDE"),
    "PCA": ("pyod.models.pca", "PCA"),
    "COPOD": ("pyod.models.copod", "COPOD"),
    "IForest": ("pyod.models.iforest", "IForest"),
    "DeepSVDD": ("pyod.models.deep_svdd", "DeepSVDD"),
}


class PyODDetector(Detector):
    """A PyOD detector (default hyper-parameters, as in the paper) behind the book's interface;
    PyOD's ``decision_function`` is already higher = more outlying."""

    def __init__(self, method: str, **kwargs):
        if method not in PYOD_METHODS:
            raise KeyError(f"unknown PyOD method {method!r}; known: {', '.join(PYOD_METHODS)}")
        import importlib
        mod, cls = PYOD_METHODS[method]
        self.name = method
        self.kwargs = kwargs
        self._cls = getattr(importlib.import_module(mod), cls)
        self.est = None

    def fit(self, data, seed: int = 0) -> "PyODDetector":
        x = to_numpy(_as_features(data)).astype(np.float64)
        kw = dict(self.kwargs)
        if self.name == "IForest":
            kw.setdefault("random_state", seed)
        if self.name == "DeepSVDD":
            kw.setdefault("n_features", x.shape[1])
            kw.setdefault("random_state", seed)
            kw.setdefault("verbose", 0)
        self.est = self._cls(**kw).fit(x)
        return self

    def _score(self, xb):
        return torch.as_tensor(self.est.decision_function(to_numpy(xb).astype(np.float64)))

    def score(self, x, batch_size: int = 100_000) -> np.ndarray:
        x = to_numpy(_as_features(x)).astype(np.float64)
        if self.name == "COPOD":
            # PyOD's COPOD recomputes its empirical CDFs on the training rows *concatenated with the
            # rows being scored*: scoring 10,000 mostly-outlier test rows at once would let the test
            # set define "normal". Scoring in chunks of ≤ 1 % of the training set keeps it one-class.
            batch_size = max(1, len(self.est.X_train) // 100)
        out = [self.est.decision_function(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.asarray(np.concatenate(out) if out else np.empty(0), dtype=np.float64)

    def __repr__(self) -> str:
        return f"PyODDetector({self.name!r})"


def make_baseline(name: str, **kw) -> Detector:
    return PyODDetector(name, **kw)


# --------------------------------------------------------------------------- features

_FEATURE_MEMO: dict = {}


def fashion_features(kind: str, profile: str | Profile | None = None, batch_size: int = 1024,
                     dataset: str = "fashion_mnist") -> dict:
    """Train/test features of ``dataset`` for the one-vs-rest table (``S["dataset"]``: Fashion-MNIST at
    ``smoke``/``default``, CIFAR-10 at ``full``).

    ``kind``: ``"cnn_mnist5k"`` — the 256-d penultimate features of the papers' CNN trained on
    **MNIST-5k digits** (chapter 0's classifier; it never saw a Fashion-MNIST image or label),
    projected onto the unit hypersphere as the paper does with its MoCo features;
    ``"resnet18_imagenet"`` — the 512-d pooled features of torchvision's ImageNet-pretrained ResNet-18
    (downloaded; it never saw a CIFAR-10 label), on the hypersphere — our stand-in for the paper's MoCo;
    ``"pixels"`` — the raw pixel values. Returns ``{"train": (x, y), "test": (x, y), "classes": [...]}``."""
    from .train import profile_data
    _check_kind(kind)
    prof = get_profile(profile)
    key = (kind, prof.name, dataset)
    if key in _FEATURE_MEMO:
        return _FEATURE_MEMO[key]
    out = {}
    for split in ("train", "test"):
        data = profile_data(dataset, split, prof)
        out["classes"] = list(data.classes)
        out[split] = (encode_images(kind, data, prof, batch_size), data.y.numpy())
    _FEATURE_MEMO[key] = out
    return out


_ENCODERS: dict = {}
FEATURE_KINDS = ("cnn_mnist5k", "resnet18_imagenet", "pixels")


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; use one of {FEATURE_KINDS}")


def encode_images(kind: str, data, profile: str | Profile | None = None, batch_size: int = 1024) -> np.ndarray:
    """The ``kind`` features (see :func:`fashion_features`) of images: a :class:`~ccc_lib.data.TensorData`
    or an N×C×H×W tensor in [0, 1] (converted to the encoder's input shape). Returns float32 rows."""
    from .data import TensorData
    from .train import get_classifier
    _check_kind(kind)
    if kind == "pixels":
        x = data.x if isinstance(data, TensorData) else data
        return x.flatten(1).cpu().numpy().astype(np.float32)
    prof = get_profile(profile)
    ekey = (kind, prof.name)
    if ekey not in _ENCODERS:
        if kind == "cnn_mnist5k":
            model, _ = get_classifier("mnist5k", prof)
            _ENCODERS[ekey] = (model.features, tuple(model.input_shape))
        else:
            _ENCODERS[ekey] = (resnet18_encoder(), None)
    encode, shape = _ENCODERS[ekey]
    if not isinstance(data, TensorData):
        data = TensorData(torch.as_tensor(data).float(), torch.full((len(data),), -1, dtype=torch.long),
                          classes=[], name="images", split="query")
    x = data.x if shape is None or tuple(data.shape) == shape else data.to_shape(shape).x
    if len(x) == 0:
        return np.empty((0, 0), dtype=np.float32)
    dev = get_device()
    with torch.no_grad():
        f = torch.cat([encode(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])
    return torch.nn.functional.normalize(f, dim=1).numpy().astype(np.float32)


def resnet18_encoder(weights="DEFAULT"):
    """ImageNet-pretrained ResNet-18 as a 512-d encoder of N×3×H×W images in [0, 1] (resized to 224,
    ImageNet-normalised). ``weights=None`` gives a random network (for tests). The weights are
    downloaded by torchvision on first use; offline this fails with a message naming the fix."""
    import torchvision
    try:
        net = torchvision.models.resnet18(weights=weights)
    except OSError as exc:
        raise RuntimeError("the ImageNet-pretrained ResNet-18 weights could not be downloaded; the 'full' "
                           "profile needs internet access once (torchvision caches them under ~/.cache/torch), "
                           f"or use the 'cnn_mnist5k'/'pixels' features ({exc})") from exc
    net.fc = torch.nn.Identity()
    net = net.to(get_device()).eval()
    mean = torch.tensor([0.485, 0.456, 0.406], device=get_device()).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=get_device()).view(1, 3, 1, 1)

    def encode(x):
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        return net((x - mean) / std)
    return encode


def one_class_split(feats: dict, inlier: int, dim: int, n_train: int | None = None, seed: int = 0,
                    noise: float = 0.0) -> dict:
    """One-vs-rest data for ``inlier``: PCA to ``dim`` components fitted on the inlier class's
    training rows only (``n_train`` of them), applied to the whole test set; labels 1 = outlier."""
    from sklearn.decomposition import PCA
    xtr, ytr = feats["train"]
    xte, yte = feats["test"]
    idx = np.flatnonzero(ytr == inlier)
    if n_train is not None and n_train < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, n_train, replace=False))
    pca = PCA(n_components=dim, random_state=seed).fit(xtr[idx])
    tr = pca.transform(xtr[idx]).astype(np.float32)
    te = pca.transform(xte).astype(np.float32)
    if noise > 0:
        rng = np.random.default_rng(seed + 1)
        sd = tr.std(0, keepdims=True)
        tr = tr + noise * sd * rng.standard_normal(tr.shape).astype(np.float32)
    return {"train": tr, "test": te, "is_out": (yte != inlier).astype(int), "inlier": inlier, "pca": pca,
            "explained_variance": float(pca.explained_variance_ratio_.sum())}


# --------------------------------------------------------------------------- diagnostics

def reconstruction_error(det: _INNDetector, x) -> np.ndarray:
    """max_k |INN⁻¹(INN(x))_k - x_k| per row (in the input's own units)."""
    x = _as_features(x).to(get_device())
    with torch.no_grad(), cpu_threads(1):
        z, _ = det.model(x)
        xr = det.model.inverse(z)
    return to_numpy((xr - x).abs().amax(1))


def share_inside_cube(det: IOCN, x) -> float:
    """The share of rows that the IOCN maps inside the cube (s < 0)."""
    return float((det.score(x) < 0).mean())


# --------------------------------------------------------------------------- the one-vs-rest table

def one_vs_rest(feature_kind: str, S: dict, profile: str | Profile | None = None, methods=None,
                seed: int = 0, cache: bool = True, verbose: bool = False) -> dict:
    """Train every method on each inlier class of ``S["classes"]`` and score the whole test set.

    Returns ``{"auroc": {method: {class: auroc}}, "evals": {method: {class: [...]}},
    "meta": {method: {class: {...}}}, "inside": {class: share}, "recon": {class: max err}}``. The INN
    methods record their AUROC at the steps ``S["eval_at"]`` (the budget curves). The fitted
    detectors, each class's PCA and the scores of the test inliers are kept (``"detectors"``,
    ``"pca"``, ``"test_inlier_scores"``) so that other inputs can be scored the same way
    (:func:`score_counterfeits`)."""
    prof = get_profile(profile)
    feats = fashion_features(feature_kind, prof, dataset=S.get("dataset", "fashion_mnist"))
    methods = list(methods or (list(S["baselines"]) + ["FLOW", "IOCN"]))
    res = {"auroc": {m: {} for m in methods}, "evals": {}, "meta": {}, "inside": {}, "recon": {},
           "fit_seconds": {m: {} for m in methods}, "score_seconds": {m: {} for m in methods},
           "classes": feats["classes"], "feature_kind": feature_kind,
           "detectors": {m: {} for m in methods}, "pca": {}, "test_inlier_scores": {m: {} for m in methods}}
    for c in S["classes"]:
        sp = one_class_split(feats, c, S["feature_dim"], S["n_train"], seed=seed)
        xtr, xte, y = sp["train"], sp["test"], sp["is_out"]
        xte_t = torch.as_tensor(xte)
        res["last_split"] = sp
        res["pca"][c] = sp["pca"]

        def eval_fn(model, obj):
            det = IOCN() if obj == "iocn" else FlowDetector()
            det.model, det.inn_cfg = model, model.cfg
            s = det.score(xte_t)
            ev = {"auroc": ood_metrics(s[y == 0], s[y == 1])["auroc"]}
            if obj == "iocn":
                ev["inside_train"] = share_inside_cube(det, xtr)
            return ev

        for m in methods:
            t0 = time.perf_counter()
            if m in ("IOCN", "FLOW"):
                obj = m.lower() if m == "FLOW" else "iocn"
                tc = TrainConfig(objective=obj, steps=S["steps"] if m == "IOCN" else S["flow_steps"], lr=S["lr"],
                                 batch_size=S["batch_size"], noise=S["noise"], seed=seed, eval_at=tuple(S["eval_at"]))
                cls = IOCN if m == "IOCN" else FlowDetector
                det = cls(INNConfig(dim=xtr.shape[1], n_blocks=S["n_blocks"], clamp=S["clamp"], seed=seed), tc,
                          standardise_divisor=S["divisor"],
                          cache_tag=f"fashion-{feature_kind}-{prof.name}-class{c}" if cache else None)
                det.fit(xtr, eval_fn=lambda mod, o=obj: eval_fn(mod, o), desc=f"{m} class {c}")
                res["evals"].setdefault(m, {})[c] = det.meta.get("evals", [])
                res["meta"].setdefault(m, {})[c] = {k: det.meta.get(k) for k in
                                                    ("train_seconds", "seconds_per_step", "from_cache", "steps")}
                res["meta"][m][c]["loss_tail"] = float(np.mean(det.meta["history"]["loss"][-50:]))
            else:
                det = make_baseline(m).fit(xtr, seed=seed)
            t1 = time.perf_counter()
            s = det.score(xte)
            t2 = time.perf_counter()
            res["auroc"][m][c] = ood_metrics(s[y == 0], s[y == 1])["auroc"]
            res["fit_seconds"][m][c] = t1 - t0
            res["score_seconds"][m][c] = t2 - t1
            res.setdefault("last", {})[m] = det          # the last class's detectors (for timing)
            res["detectors"][m][c] = det
            res["test_inlier_scores"][m][c] = s[y == 0]
            if m == "IOCN":
                res["inside"][c] = share_inside_cube(det, xtr)
                res["inside_test_in"] = res.get("inside_test_in", {})
                res["inside_test_in"][c] = float((s[y == 0] < 0).mean())
                res["inside_test_out"] = res.get("inside_test_out", {})
                res["inside_test_out"][c] = float((s[y == 1] < 0).mean())
                res["recon"][c] = float(max(reconstruction_error(det, xtr).max(),
                                            reconstruction_error(det, xte).max()))
            if verbose:
                print(f"class {c} {m:8s} AUROC {res['auroc'][m][c]:.4f}  fit {t1 - t0:.1f}s", flush=True)
    return res


def score_counterfeits(res: dict, x: torch.Tensor, labels, profile: str | Profile | None = None,
                      alpha: float = 0.05):
    """Score images that claim a class — chapter 1's counterfeits, with the class the classifier
    gave them — by the one-class detectors of that class from :func:`one_vs_rest`: the
    counterfeits labelled ``c`` go through the same encoder and class-``c`` PCA as the test set and
    are scored by every method fitted on class ``c``.

    Returns one row per (method, class): the number of counterfeits, the AUROC of class ``c``'s
    test inliers vs those counterfeits, the share flagged at the threshold that flags ``alpha`` of
    the test inliers, and for the IOCN the share outside the cube (the paper's rule ``s > 0``),
    for the counterfeits and for the test inliers."""
    import pandas as pd
    labels = np.asarray(labels)
    feats = encode_images(res["feature_kind"], x, profile)
    rows = []
    for c, pca in res["pca"].items():
        m_c = labels == c
        if not m_c.any():
            continue
        z = pca.transform(feats[m_c]).astype(np.float32)
        for m, dets in res["detectors"].items():
            sc, s_in = dets[c].score(z), res["test_inlier_scores"][m][c]
            row = {"method": m, "class": res["classes"][c], "counterfeits": int(m_c.sum()),
                   "AUROC (test inliers vs counterfeits)": ood_metrics(s_in, sc)["auroc"],
                   f"flagged at {alpha:.0%} false alarms": float((sc > np.quantile(s_in, 1 - alpha)).mean())}
            if m == "IOCN":
                row["outside the cube: counterfeits"] = float((sc > 0).mean())
                row["outside the cube: test inliers"] = float((s_in > 0).mean())
            rows.append(row)
    return pd.DataFrame(rows)


def budget_table(res: dict, methods=("FLOW", "IOCN")) -> "object":
    """Mean over classes of the AUROC (and the IOCN's share inside the cube) at each recorded step."""
    import pandas as pd
    rows = []
    for m in methods:
        ev = res["evals"].get(m, {})
        if not ev:
            continue
        steps = [e["step"] for e in next(iter(ev.values()))]
        for i, st in enumerate(steps):
            per = [ev[c][i] for c in ev]
            row = {"method": m, "step": st,
                   "mean AUROC": float(np.mean([e["auroc"] for e in per])),
                   "train seconds (sum over classes)": float(np.sum([e["train_seconds"] for e in per]))}
            if "inside_train" in per[0]:
                row["share of training inliers inside the cube"] = float(np.mean([e["inside_train"] for e in per]))
            rows.append(row)
    return pd.DataFrame(rows)


def time_to_reach(budget, method: str, target: float):
    """Training wall-clock (summed over classes) at the first recorded step where ``method``'s mean
    AUROC reaches ``target``; None if it never does."""
    b = budget[budget["method"] == method].sort_values("step")
    hit = b[b["mean AUROC"] >= target]
    if hit.empty:
        return None
    return float(hit["train seconds (sum over classes)"].iloc[0])


# --------------------------------------------------------------------------- 2D toy data

def toy_2d(name: str, n: int = 2000, seed: int = 0) -> np.ndarray:
    """The 2D sets of Figure 1: scikit-learn's moons and circles, and two Gaussians."""
    from sklearn import datasets
    rng = np.random.default_rng(seed)
    if name == "moons":
        x, _ = datasets.make_moons(n, noise=0.08, random_state=seed)
    elif name == "circles":
        x, _ = datasets.make_circles(n, noise=0.06, factor=0.5, random_state=seed)
    elif name == "two_gaussians":
        c = rng.integers(0, 2, n)
        x = rng.standard_normal((n, 2)) * 0.5 + np.where(c[:, None] == 0, [-2.0, 0.0], [2.0, 0.0])
    else:
        raise ValueError(f"unknown 2D set {name!r}; use moons, circles or two_gaussians")
    return x.astype(np.float32)


def decision_boundary(det: IOCN, n: int = 2000) -> np.ndarray:
    """The surface of the cube [-1, 1]^2 mapped back through INN⁻¹ (a closed curve in data space)."""
    t = np.linspace(-1, 1, n // 4, endpoint=False)
    one = np.ones_like(t)
    edge = np.concatenate([np.c_[t, -one], np.c_[one, t], np.c_[-t, one], np.c_[-one, -t]])
    edge = np.vstack([edge, edge[:1]])
    with torch.no_grad(), cpu_threads(1):
        x = det.model.inverse(torch.as_tensor(edge, dtype=torch.float32, device=get_device()))
    return to_numpy(x)


def fit_toy(name: str, S: dict, seed: int = 0, cache: bool = True) -> tuple:
    """Train an IOCN on one 2D set of Figure 1; returns ``(detector, data)``."""
    x = toy_2d(name, S["toy_n"], seed)
    tc = TrainConfig(objective="iocn", steps=S["toy_steps"], lr=S["lr"], batch_size=256, noise=0.0, seed=seed)
    det = IOCN(INNConfig(dim=2, n_blocks=S["toy_blocks"], clamp=S["clamp"], seed=seed), tc,
               standardise_divisor=S["toy_divisor"], cache_tag=f"toy-{name}" if cache else None)
    det.fit(x, desc=f"IOCN {name}")
    return det, x


def plot_toy(det: IOCN, x: np.ndarray, axes, title: str = "", grid: int = 150):
    """Three panels for one 2D set: the data, its latent codes with the cube, and the score
    s(x) over the plane with the decision boundary (the cube's surface mapped back)."""
    import matplotlib.pyplot as plt
    z = to_numpy(det.latent(x))
    lo, hi = x.min(0), x.max(0)
    pad = 0.35 * (hi - lo)
    gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid))
    s = det.score(np.c_[gx.ravel(), gy.ravel()].astype(np.float32)).reshape(gx.shape)
    b = decision_boundary(det)
    ax = axes[0]
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
    ax.set_title(f"{title}: data")
    ax = axes[1]
    ax.scatter(z[:, 0], z[:, 1], s=2, alpha=0.5, c="C1")
    ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "k-", lw=1)
    lim = max(1.3, float(np.quantile(np.abs(z), 0.995)) * 1.1)
    ax.set_xlim(-lim, lim); ax.set_ylim(-lim, lim); ax.set_aspect("equal")
    ax.set_title(f"latent INN(x), {(iocn_score(torch.as_tensor(z)) < 0).float().mean():.0%} inside")
    ax = axes[2]
    from matplotlib.colors import TwoSlopeNorm
    im = ax.pcolormesh(gx, gy, np.clip(s, -1, 2), cmap="coolwarm", shading="auto",
                       norm=TwoSlopeNorm(vmin=-1, vcenter=0, vmax=2))
    ax.scatter(x[:, 0], x[:, 1], s=1, c="k", alpha=0.3)
    ax.plot(b[:, 0], b[:, 1], "k-", lw=1.5)
    ax.set_xlim(gx.min(), gx.max()); ax.set_ylim(gy.min(), gy.max())
    ax.set_title("score s(x), boundary = INN⁻¹(cube surface)")
    plt.colorbar(im, ax=ax, fraction=0.046)
    return axes
