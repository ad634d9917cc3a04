"""Chapter 2 — NeuralFP {Lee et al., the slides cited as ``lee2020neuralfp``}: per-layer autoencoder
fingerprints of a trained classifier (the method only; the chapter's experiments are
:mod:`ccc_lib.experiments.neuralfp`).

*Fingerprinting* (the slides' steps 1-3): pass the training data through the frozen classifier and take the
activations ``a_l(x)`` of each tapped layer ``l``; train one autoencoder per layer on them (the layer's
*fingerprint*); compute the reconstruction errors ``e_l(x) = L(a_l(x), â_l(x))``. *Detection*: a record ``x*``
is an **outlier** iff ``∃ l : e_l(x*) > τ_l or e_l(x*) < μ_l`` (the *one-out* rule, slides' eq. 1) — errors
can be abnormally *low*, not only high.

The slides leave open the taps, the autoencoders, ``τ_l``, ``μ_l`` and the ROC curves' score. Ours (parameters):

* **Taps** :data:`DEFAULT_TAPS`: after each LeakyReLU and max-pool of the papers' CNN's three conv blocks, the
  256-d penultimate vector and the logits (8; the slides' models have 7 and 11 layers); :func:`every_module_taps`
  taps after every module. Conv maps are average-pooled to ``pool_to``² per channel (``None``: the full map).
* **Autoencoders** (:class:`LayerAE`): standardised inputs, MLP ``d → h → k → h → d`` (LeakyReLU,
  ``k = max(2, d // 8)``, ``h = min(512, max(32, 4k))``), Adam on the MSE, cosine learning rate over at most
  ``epochs``, optionally stopped at a plateau test; ``e_l`` = per-input MSE in standardised units.
* **Calibration**: on held-out in-distribution images, each layer's median ``m_l`` and robust spread ``s_l``
  (IQR / 1.349) of ``log e_l``; ``z_l = (log e_l − m_l) / s_l``.
* **Score**: ``max_l |z_l|``; ``max_l |z_l| > t`` is *exactly* the one-out rule with ``τ_l = exp(m_l + t s_l)``,
  ``μ_l = exp(m_l − t s_l)``, so sweeping ``t`` traces the rule's ROC curve.
* **Decision at a false-alarm budget α** (:meth:`NeuralFP.set_rule`, all ours): ``"joint"`` (default) takes
  ``t`` as the (1 − α) quantile of ``max_l |z_l|`` on the calibration data (the whole rule flags a share α);
  ``"literal"`` puts each layer's ``μ_l``/``τ_l`` at its own α/2 and 1 − α/2 quantiles (the layers' false
  alarms add up); ``"bonferroni"`` uses α/(2L) per tail per layer.
* **Our extensions** (``combine``): ``"upper"`` = ``max_l z_l`` (upper thresholds only); ``"mahalanobis"`` =
  the Mahalanobis distance of the vector of log errors under a Gaussian fitted to the calibration data.

Usage: ``NeuralFP(model, pool_to=2, alpha=0.05).fit(train_images)``, then ``.score(x)``, ``.is_outlier(x)``."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import fingerprint, load_or_compute, load_or_train
from .checks import (InputError, check_choice, check_fitted, check_fraction, check_images, check_positive)
from .detectors import Detector
from .utils import get_device, progress, set_seed, to_numpy

__all__ = ["DEFAULT_TAPS", "COMBINES", "RULES", "every_module_taps", "LayerAE", "FingerprintBank", "NeuralFP",
           "collect_activations", "reduce_activation"]

#: the layers NeuralFP taps in :class:`ccc_lib.models.PaperCNN` by default (see the module docstring)
DEFAULT_TAPS = ("act1", "pool1", "act2", "pool2", "act3", "pool3", "act_fc", "logits")

#: the continuous scores NeuralFP can report (see :meth:`NeuralFP.score_errors`)
COMBINES = ("max", "upper", "mahalanobis")

#: the thresholding rules of the one-out decision (see :meth:`NeuralFP.set_rule`)
RULES = ("joint", "bonferroni", "literal")


def every_module_taps(model) -> tuple:
    """Taps after every module of ``model`` that changes the representation (conv, BatchNorm,
    activation, pooling, linear) — dropout and flatten left out (identities in eval mode)."""
    names = getattr(model, "layer_names", None)
    if names is None:
        raise InputError("every_module_taps needs a model with named layers (layer_names), e.g. PaperCNN")
    return tuple(n for n in names if not n.startswith(("drop", "flatten")))


# --------------------------------------------------------------------------- step 1: activations

def reduce_activation(a: torch.Tensor, pool_to: int | None = 2) -> torch.Tensor:
    """A layer's output as one vector per input: conv maps average-pooled to ``pool_to``² per
    channel (only if larger; ``None`` keeps the full map), then flattened."""
    if a.ndim == 4 and pool_to and (a.shape[2] > pool_to or a.shape[3] > pool_to):
        a = F.adaptive_avg_pool2d(a, pool_to)
    return a.flatten(1)


def _input_shape(model):
    s = getattr(model, "input_shape", None)
    return tuple(s) if s is not None else None


def _check_taps(model, taps) -> tuple:
    taps = tuple(taps)
    if not taps:
        raise InputError("taps: give at least one layer name to tap")
    names = getattr(model, "layer_names", None)
    if names is not None:
        bad = [t for t in taps if t not in names]
        if bad:
            raise InputError(f"taps {bad} are not layers of the model; valid names: {list(names)}")
    if not hasattr(model, "forward_with"):
        raise InputError("NeuralFP needs a model with forward_with(x, names) returning (logits, {name: "
                         "activation}), e.g. ccc_lib.models.PaperCNN")
    return taps


@torch.inference_mode()
def collect_activations(model, x, taps=DEFAULT_TAPS, pool_to: int | None = 2, batch_size: int = 500,
                        desc: str | None = None) -> dict:
    """One forward pass over images ``x``: ``{tap: N×d_l tensor}`` plus ``"_logits"`` and
    ``"_features"`` (the penultimate vector), all on the CPU, so every detector can be scored from
    one pass of the classifier."""
    taps = _check_taps(model, taps)
    x = check_images(x, "x", expected_shape=_input_shape(model))
    dev = next(model.parameters()).device
    feat = getattr(model, "feature_layer", None)
    names = set(taps) | ({feat} if feat else set())
    out: dict = {t: [] for t in taps}
    out["_logits"], out["_features"] = [], []
    it = range(0, len(x), batch_size)
    for i in progress(it, desc=desc, total=len(it)) if desc else it:
        logits, acts = model.forward_with(x[i:i + batch_size].to(dev), names)
        for t in taps:
            out[t].append(reduce_activation(acts[t], pool_to).float().cpu())
        out["_logits"].append(logits.float().cpu())
        if feat:
            out["_features"].append(acts[feat].float().cpu())
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in out.items()}


# --------------------------------------------------------------------------- step 2: the fingerprints

class LayerAE(nn.Module):
    """The fingerprint of one layer: standardise, encode to ``k`` dims, decode.
    :meth:`error` is ``e_l``: the per-input mean squared reconstruction error in standardised units."""

    def __init__(self, dim: int, bottleneck: int | None = None, hidden: int | None = None):
        super().__init__()
        k = bottleneck or max(2, dim // 8)
        h = hidden or min(512, max(32, 4 * k))
        self.dim, self.k, self.h = dim, k, h
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.encoder = nn.Sequential(nn.Linear(dim, h), nn.LeakyReLU(0.2), nn.Linear(h, k))
        self.decoder = nn.Sequential(nn.Linear(k, h), nn.LeakyReLU(0.2), nn.Linear(h, dim))

    def set_stats(self, a: torch.Tensor) -> None:
        self.mean.copy_(a.mean(0))
        self.std.copy_(a.std(0).clamp_min(1e-3 * float(a.std(0).max().clamp_min(1e-8))))

    def standardise(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.mean) / self.std

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``â_l`` in standardised units."""
        return self.decoder(self.encoder(self.standardise(a)))

    def error(self, a: torch.Tensor) -> torch.Tensor:
        """``e_l = mean_i (â_l − a_l)_i²`` per input, standardised units."""
        z = self.standardise(a)
        return (self.decoder(self.encoder(z)) - z).pow(2).mean(1)


class FingerprintBank(nn.Module):
    """One :class:`LayerAE` per tap, trained together (their parameters are disjoint, so the summed
    loss trains each one on its own layer)."""

    def __init__(self, dims: dict):
        super().__init__()
        self.taps = list(dims)
        self.aes = nn.ModuleDict({t: LayerAE(d) for t, d in dims.items()})

    def errors(self, acts: dict) -> torch.Tensor:
        """N×L reconstruction errors (columns in ``self.taps`` order)."""
        return torch.stack([self.aes[t].error(acts[t]) for t in self.taps], 1)

    def train_on(self, acts: dict, *, epochs: int, lr: float, batch_size: int, seed: int = 0,
                 plateau: dict | None = None) -> dict:
        """Adam on the summed per-layer MSE, cosine learning rate over ``epochs`` (the cap); returns the loss
        history. ``plateau`` (``{"tol", "frac", "min_epochs"}``): from ``min_epochs`` on, stop when every layer's
        loss curve passes :func:`ccc_lib.baselines.plateau` (the mean loss of its last ``frac`` improved on the
        ``frac`` before by less than ``tol``); the history says where it stopped and why."""
        from .baselines import plateau as plateau_test
        stop = _check_plateau(plateau)
        set_seed(seed)
        dev = next(self.parameters()).device
        for t in self.taps:
            self.aes[t].set_stats(acts[t].to(dev))
        n = len(acts[self.taps[0]])
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        steps = epochs * int(np.ceil(n / batch_size))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
        g = torch.Generator().manual_seed(seed)
        hist = {t: [] for t in self.taps}
        t0 = time.perf_counter()
        self.train()
        bar = progress(total=steps, desc="NeuralFP autoencoders")
        stopped = False
        for ep in range(epochs):
            perm = torch.randperm(n, generator=g)
            tot = torch.zeros(len(self.taps))
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                losses = torch.stack([self.aes[t].error(acts[t][idx].to(dev)).mean() for t in self.taps])
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()
                opt.step()
                sched.step()
                tot += losses.detach().cpu() * len(idx)
                bar.update(1)
            for j, t in enumerate(self.taps):
                hist[t].append(float(tot[j] / n))
            if stop is not None and ep + 1 >= stop["min_epochs"] and ep + 1 < epochs and all(
                    plateau_test(hist[t], stop["frac"], stop["tol"])["plateaued"] for t in self.taps):
                stopped = True
                break
        bar.close()
        self.eval()
        tests = {t: plateau_test(hist[t], stop["frac"], stop["tol"]) if stop else plateau_test(hist[t])
                 for t in self.taps}
        return {"epoch_losses": hist, "train_seconds": time.perf_counter() - t0, "n_fit": n, "epochs": epochs,
                "epochs_run": len(hist[self.taps[0]]), "stopped_early": stopped, "plateau": stop,
                "plateau_tests": tests}


def _check_plateau(plateau: dict | None) -> dict | None:
    """The stopping rule, checked: ``None`` (every epoch) or ``{"tol", "frac", "min_epochs"}``."""
    if plateau is None:
        return None
    if not isinstance(plateau, dict) or set(plateau) != {"tol", "frac", "min_epochs"}:
        raise InputError(f"plateau: give None or a dict with exactly tol, frac and min_epochs (e.g. "
                         f"{{'tol': 0.01, 'frac': 0.2, 'min_epochs': 3}}), got {plateau!r}")
    return {"tol": float(check_positive(plateau["tol"], "plateau['tol']")),
            "frac": float(check_fraction(plateau["frac"], "plateau['frac']")),
            "min_epochs": int(check_positive(plateau["min_epochs"], "plateau['min_epochs']", integer=True))}


# --------------------------------------------------------------------------- step 3 and detection

class NeuralFP(Detector):
    """NeuralFP as a :class:`~ccc_lib.detectors.Detector`.

    ``fit(train)`` collects the taps' activations of the in-distribution images ``train`` (a ``fit_limit``
    subset if given), holds out ``calib_frac`` of them (or uses ``calibration``), trains the fingerprints and
    sets the per-layer statistics and the thresholds for the false-alarm budget ``alpha``. Then ``score(x)``
    → ``max_l |z_l|`` (or the ``combine`` variant), ``layer_z(x)`` → the signed ``z_l``, ``is_outlier(x)`` →
    the one-out rule with the thresholds of ``rule``; ``score_errors`` works from errors computed elsewhere.
    Every entry point checks its input (shape, finite values in [0, 1], fitted before use)."""

    name = "NeuralFP"

    def __init__(self, model, taps=DEFAULT_TAPS, pool_to: int | None = 2, *, epochs: int = 10,
                 lr: float = 2e-3, batch_size: int = 256, alpha: float = 0.05, rule: str = "joint",
                 combine: str = "max", seed: int = 0, plateau: dict | None = None):
        self.model = model
        self.taps = _check_taps(model, taps)
        self.pool_to = pool_to if pool_to is None else check_positive(pool_to, "pool_to", integer=True)
        self.epochs = check_positive(epochs, "epochs", integer=True)
        self.lr = check_positive(lr, "lr")
        self.batch_size = check_positive(batch_size, "batch_size", integer=True)
        self.seed = seed
        self.plateau = _check_plateau(plateau)
        self.alpha = check_fraction(alpha, "alpha")
        self.rule = check_choice(rule, "rule", RULES)
        self.combine = check_choice(combine, "combine", COMBINES)
        self.bank: FingerprintBank | None = None
        self.fit_info: dict = {}

    @property
    def input_shape(self):
        return _input_shape(self.model)

    def _images(self, x, name: str = "x") -> torch.Tensor:
        return check_images(x, name, expected_shape=self.input_shape)

    # ---- fingerprinting (steps 1-3)
    def fit(self, train, *, calibration=None, fit_limit: int | None = None, calib_frac: float = 0.2,
            cache_key: dict | None = None) -> "NeuralFP":
        """Fit the fingerprints on in-distribution images ``train`` (N×C×H×W in [0, 1], TensorData or
        tensor). ``cache_key`` (a dict naming the classifier, e.g. its checkpoint) turns on the
        checkpoint cache for the autoencoders."""
        x = self._images(train, "train")
        if fit_limit is not None:
            check_positive(fit_limit, "fit_limit", integer=True)
        check_fraction(calib_frac, "calib_frac")
        rng = np.random.default_rng(self.seed)
        perm = torch.as_tensor(rng.permutation(len(x)))
        if calibration is None:
            n_cal = max(20, int(round(calib_frac * (len(x) if fit_limit is None else min(len(x), fit_limit)))))
            x_cal, perm = x[perm[:n_cal]], perm[n_cal:]
        else:
            x_cal = self._images(calibration, "calibration")
        x_fit = x[perm[:fit_limit]] if fit_limit else x[perm]
        if len(x_fit) < 10 or len(x_cal) < 10:
            raise InputError(f"train: {len(x)} images leave {len(x_fit)} to fit the autoencoders and {len(x_cal)} "
                             f"to calibrate; give at least 10 of each (more training images)")
        t0 = time.perf_counter()
        probe = collect_activations(self.model, x_fit[:2], self.taps, self.pool_to)
        dims = {t: probe[t].shape[1] for t in self.taps}
        set_seed(self.seed)                       # the autoencoders' initial weights depend on the seed only
        self.bank = FingerprintBank(dims).to(get_device())
        kw = dict(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed)
        if self.plateau is not None:              # (absent from the key when off: keys of earlier runs hold)
            kw["plateau"] = self.plateau
        timing = {}

        def train_fn(bank):                       # the activations are collected only when training
            t = time.perf_counter()
            acts = collect_activations(self.model, x_fit, self.taps, self.pool_to)
            timing["activation_seconds"] = time.perf_counter() - t
            return bank.train_on(acts, **kw)

        if cache_key is not None:
            cfg = {**cache_key, "init": "seeded", "taps": list(self.taps), "pool_to": self.pool_to, "dims": dims,
                   "n_fit": len(x_fit), "fit_limit": fit_limit, "calib_frac": calib_frac, **kw}
            meta = load_or_train(self.bank, "neuralfp", cfg, train_fn)
        else:
            meta = {**train_fn(self.bank), "from_cache": False}
        self.bank.to(get_device()).eval()
        for p in self.bank.parameters():
            p.requires_grad_(False)
        if cache_key is not None:                 # the calibration errors through the cache too
            key = {"model": fingerprint(self.model), "bank": fingerprint(self.bank), "taps": list(self.taps),
                   "pool_to": self.pool_to, "x": fingerprint(x_cal)}
            e = load_or_compute("neuralfp-errors", key, lambda: {"errors": torch.as_tensor(self.errors(x_cal))})
            self.calibrate(errors=e["errors"].numpy())
        else:
            self.calibrate(x_cal)
        self.fit_info = {**meta, **timing, "n_calibration": len(x_cal),
                         "fit_seconds": time.perf_counter() - t0, "dims": dims}
        return self

    def calibrate(self, x_cal=None, errors: np.ndarray | None = None) -> "NeuralFP":
        """Per-layer log-error median ``m_l`` and spread ``s_l`` and the thresholds, from held-out
        in-distribution images ``x_cal`` (or their errors)."""
        check_fitted(self, "bank", "NeuralFP")
        le = np.log(self.errors(x_cal) if errors is None else self._check_errors(errors))
        self.cal_log_errors = le
        self.center = np.median(le, 0)
        q25, q75 = np.percentile(le, [25, 75], axis=0)          # robust spread IQR / 1.349, else the std
        self.scale = np.where((q75 - q25) / 1.349 > 1e-8, (q75 - q25) / 1.349, np.maximum(le.std(0), 1e-8))
        # the joint fingerprint (our extension): a Gaussian on the vector of log errors
        self.joint_mean = le.mean(0)
        cov = np.cov(le.T).reshape(le.shape[1], le.shape[1])
        self.joint_precision = np.linalg.inv(cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov)))
        self.set_rule(self.rule, self.alpha)
        return self

    def set_rule(self, rule: str = "joint", alpha: float | None = None) -> "NeuralFP":
        """Set the one-out thresholds ``μ_l``, ``τ_l`` (on the log error) for budget ``alpha``."""
        check_fitted(self, "cal_log_errors", "NeuralFP")
        check_choice(rule, "rule", RULES)
        alpha = self.alpha if alpha is None else check_fraction(alpha, "alpha")
        le, L = self.cal_log_errors, len(self.taps)
        self.threshold = None
        if rule == "literal":
            lo, hi = np.quantile(le, alpha / 2, 0), np.quantile(le, 1 - alpha / 2, 0)
        elif rule == "bonferroni":
            lo, hi = np.quantile(le, alpha / (2 * L), 0), np.quantile(le, 1 - alpha / (2 * L), 0)
        else:   # joint: one t for the whole rule
            upper = self.combine == "upper"
            t = float(np.quantile(self.score_errors(np.exp(le), "upper" if upper else "max"), 1 - alpha))
            lo, hi = self.center - t * self.scale, self.center + t * self.scale
            if upper:
                lo = np.full_like(lo, -np.inf)
            self.threshold = t
        if self.combine == "mahalanobis":
            self.threshold = float(np.quantile(self._combine_maha(le), 1 - alpha))
        self.rule, self.alpha = rule, alpha
        self.log_mu, self.log_tau = lo, hi
        return self

    @property
    def thresholds(self) -> dict:
        """``{tap: (μ_l, τ_l)}`` on the reconstruction error itself."""
        check_fitted(self, "cal_log_errors", "NeuralFP")
        return {t: (float(np.exp(self.log_mu[j])), float(np.exp(self.log_tau[j]))) for j, t in enumerate(self.taps)}

    # ---- reconstruction errors
    def _check_errors(self, errors) -> np.ndarray:
        e = np.asarray(errors, dtype=np.float64)
        if e.ndim != 2 or e.shape[1] != len(self.taps):
            raise InputError(f"errors: expected N×{len(self.taps)} reconstruction errors (one column per tap), "
                             f"got shape {e.shape}; compute them with errors(x)")
        if not np.isfinite(e).all() or (e <= 0).any():
            raise InputError("errors: reconstruction errors must be finite and > 0; compute them with errors(x)")
        return e

    @torch.inference_mode()
    def _errors_batch(self, xb: torch.Tensor) -> torch.Tensor:
        _, acts = self.model.forward_with(xb, set(self.taps))
        acts = {t: reduce_activation(acts[t], self.pool_to) for t in self.taps}
        return self.bank.errors(acts).clamp_min(1e-12)

    def errors(self, x, batch_size: int = 500) -> np.ndarray:
        """N×L reconstruction errors ``e_l`` of images ``x``."""
        check_fitted(self, "bank", "NeuralFP")
        x = self._images(x)
        dev = get_device()
        out = [to_numpy(self._errors_batch(x[i:i + batch_size].to(dev))).astype(np.float64)
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out)

    # ---- scores and the one-out rule
    def _z(self, log_errors: np.ndarray) -> np.ndarray:
        return (log_errors - self.center) / self.scale

    def _combine_maha(self, log_errors: np.ndarray) -> np.ndarray:
        d = log_errors - self.joint_mean
        return np.einsum("ij,jk,ik->i", d, self.joint_precision, d)

    def score_errors(self, errors: np.ndarray, combine: str | None = None) -> np.ndarray:
        """The continuous score from N×L errors: ``"max"`` = ``max_l |z_l|`` (the one-out rule's
        score), and two extensions of ours: ``"upper"`` = ``max_l z_l`` (upper thresholds only) and
        ``"mahalanobis"`` = Mahalanobis distance of the vector of log errors (a Gaussian fitted to
        the calibration data's log errors: the joint fingerprint)."""
        check_fitted(self, "center", "NeuralFP")
        combine = check_choice(combine or self.combine, "combine", COMBINES)
        le = np.log(self._check_errors(errors))
        if combine == "max":
            return np.abs(self._z(le)).max(1)
        if combine == "upper":
            return self._z(le).max(1)
        return self._combine_maha(le)

    def layer_z(self, x=None, *, errors: np.ndarray | None = None) -> np.ndarray:
        """Signed standardised log errors ``z_l``, N×L (positive: larger error than in-distribution)."""
        check_fitted(self, "center", "NeuralFP")
        e = self.errors(x) if errors is None else self._check_errors(errors)
        return self._z(np.log(e))

    def score(self, x, batch_size: int = 512) -> np.ndarray:
        """``max_l |z_l|`` (or the ``combine`` variant) of images ``x``; higher = more likely OOD."""
        check_fitted(self, "center", "NeuralFP")
        return super().score(self._images(x), batch_size)

    def _score(self, xb: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.score_errors(to_numpy(self._errors_batch(xb)).astype(np.float64)))

    def flags_from_errors(self, errors: np.ndarray) -> np.ndarray:
        """N×L per-layer flags of the one-out rule (``e_l < μ_l`` or ``e_l > τ_l``)."""
        check_fitted(self, "log_mu", "NeuralFP")
        le = np.log(self._check_errors(errors))
        return (le < self.log_mu) | (le > self.log_tau)

    def is_outlier(self, x=None, *, errors: np.ndarray | None = None) -> np.ndarray:
        """The one-out rule (eq. 1): outlier iff some layer's error leaves ``[μ_l, τ_l]`` (with
        ``combine="mahalanobis"``: the joint score above its threshold)."""
        check_fitted(self, "center", "NeuralFP")
        if x is None and errors is None:
            raise InputError("is_outlier: pass images x or their errors=")
        e = self.errors(x) if errors is None else self._check_errors(errors)
        if self.combine == "mahalanobis":
            return self.score_errors(e) > self.threshold
        return self.flags_from_errors(e).any(1)

    def __repr__(self) -> str:
        return (f"NeuralFP(taps={list(self.taps)}, pool_to={self.pool_to}, rule={self.rule!r}, "
                f"combine={self.combine!r}, alpha={self.alpha})")
