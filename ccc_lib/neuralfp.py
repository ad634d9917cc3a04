"""Chapter 2 — NeuralFP: per-layer autoencoder fingerprints of a trained classifier.

NeuralFP (Lee et al., the slides in ``shared/papers/02-neuralfp-slides.txt``) taps the
activations of several layers of a frozen classifier, trains one autoencoder per layer on the
training set's activations (the *fingerprints*), and flags an input as an outlier when, for some
layer ``l``, its reconstruction error ``e_l`` leaves the band ``[mu_l, tau_l]`` seen on
in-distribution data (the *one-out* rule; errors can be abnormally *low*, not only high).

What the slides leave open and what we choose (documented in the chapter):

* **Taps** (:data:`DEFAULT_TAPS`): after each LeakyReLU and each max-pool of the three conv
  blocks, the 256-d penultimate vector and the logits. BatchNorm taps are left out: in eval mode
  BatchNorm is a per-channel affine map of the convolution's output, so after the per-feature
  standardisation below a BN tap carries exactly the information of the conv tap. Conv maps are
  average-pooled to ``pool_to``×``pool_to`` per channel (2×2 at ``default``, 4×4 at ``full``), which keeps the autoencoders small.
* **Autoencoders** (:class:`LayerAE`): inputs standardised per feature with training statistics
  (stored as buffers), MLP ``d → h → k → h → d`` with LeakyReLU, bottleneck ``k = max(2, d // 8)``
  and ``h = min(512, max(32, 4k))``, Adam, mean-squared error; all layers train in one loop
  (:class:`FingerprintBank`) and are cached with :func:`ccc_lib.load_or_train`.
* **Thresholds**: errors are compared on a log scale, standardised per layer with the median and
  the robust spread (IQR / 1.349) of *held-out* in-distribution data (``calibration``): training
  images not used to fit the autoencoders. ``z_l = (log e_l - m_l) / s_l``.
* **Continuous score** for ROC curves: ``max_l |z_l|``. It is the score *behind* the one-out rule:
  ``max_l |z_l| > t`` is exactly "for some layer ``e_l > tau_l = exp(m_l + t s_l)`` or
  ``e_l < mu_l = exp(m_l - t s_l)``", so sweeping ``t`` traces the rule's ROC.
* **Decision rule at a false-alarm budget** ``alpha``: ``t`` is the (1 - alpha) quantile of
  ``max_l |z_l|`` on the calibration data, so the *whole* rule — not each layer — raises a false
  alarm on a fraction alpha of in-distribution inputs (``rule="joint"``). For comparison,
  ``rule="literal"`` uses the per-layer alpha/2 and 1 - alpha/2 quantiles (the false alarms of
  the layers add up) and ``rule="bonferroni"`` splits the budget: alpha/(2L) per tail per layer.
* **Our extensions** (``combine``): ``"upper"`` = ``max_l z_l`` (upper thresholds only) and
  ``"mahalanobis"`` = the Mahalanobis distance of the vector of log errors under a Gaussian fitted
  to the calibration data (the *joint fingerprint*: it uses how the layers' errors co-vary).
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import load_or_train
from .detectors import Detector, as_tensor_images
from .metrics import ood_metrics
from .profiles import chapter_settings
from .utils import get_device, progress, set_seed, to_numpy

__all__ = ["SETTINGS", "settings", "DEFAULT_TAPS", "COMBINES", "LayerAE", "FingerprintBank", "NeuralFP",
           "collect_activations", "reduce_activation", "false_alarm_table", "per_layer_auroc"]

#: the layers NeuralFP taps in :class:`ccc_lib.models.PaperCNN` (see the module docstring)
#: the continuous scores NeuralFP can report (see :meth:`NeuralFP.score_errors`)
COMBINES = ("max", "upper", "mahalanobis")

DEFAULT_TAPS = ("act1", "pool1", "act2", "pool2", "act3", "pool3", "act_fc", "logits")

SETTINGS = {
    # fit_limit: training images whose activations train the autoencoders (plus calib_frac held out);
    # sweep_n: images per set for the gradient-based eps sweeps; maha_fit_limit: training images for
    # the Mahalanobis baseline
    "smoke": {"taps": DEFAULT_TAPS, "pool_to": 2, "epochs": 3, "fit_limit": 1000, "calib_frac": 0.25,
              "lr": 2e-3, "batch_size": 256, "alpha": 0.05, "test_limit": 500, "ood_limit": 500,
              "eps_grid": (0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01), "sweep_n": 40, "maha_fit_limit": 2000,
              "odin_temperature": 1000.0, "bench_n": 500, "counterfeits_n_per_class": 10,
              },
    "default": {"taps": DEFAULT_TAPS, "pool_to": 2, "epochs": 10, "fit_limit": 6000, "calib_frac": 0.2,
                "lr": 2e-3, "batch_size": 256, "alpha": 0.05, "test_limit": 3000, "ood_limit": 2000,
                "eps_grid": (0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01), "sweep_n": 200, "maha_fit_limit": 10000,
                "odin_temperature": 1000.0, "bench_n": 2000, "counterfeits_n_per_class": 30,
                },
    "full": {"taps": DEFAULT_TAPS, "pool_to": 4, "epochs": 20, "fit_limit": None, "calib_frac": 0.1,
             "lr": 2e-3, "batch_size": 256, "alpha": 0.05, "test_limit": None, "ood_limit": None,
             "eps_grid": (0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01), "sweep_n": 2000, "maha_fit_limit": None,
             "odin_temperature": 1000.0, "bench_n": 10000, "counterfeits_n_per_class": 100,
             },
}


def settings(profile=None, **overrides) -> dict:
    """This chapter's settings for a profile (see :data:`SETTINGS`)."""
    return chapter_settings(SETTINGS, profile, **overrides)


# --------------------------------------------------------------------------- activations

def reduce_activation(a: torch.Tensor, pool_to: int | None = 4) -> torch.Tensor:
    """A layer's output as one vector per input: conv maps average-pooled to ``pool_to``² per
    channel (only if larger), then flattened."""
    if a.ndim == 4 and pool_to and (a.shape[2] > pool_to or a.shape[3] > pool_to):
        a = F.adaptive_avg_pool2d(a, pool_to)
    return a.flatten(1)


@torch.no_grad()
def collect_activations(model, x, taps=DEFAULT_TAPS, pool_to: int | None = 4, batch_size: int = 500,
                        desc: str | None = None) -> dict:
    """One forward pass over ``x``: ``{tap: N×d_l tensor}`` plus ``"_logits"`` and
    ``"_features"`` (the 256-d penultimate vector), all on the CPU. The notebook scores every
    detector from these, so the classifier runs once per dataset."""
    x = as_tensor_images(x)
    dev = next(model.parameters()).device
    names = set(taps) | {model.feature_layer}
    out: dict = {t: [] for t in taps}
    out["_logits"], out["_features"] = [], []
    it = range(0, len(x), batch_size)
    for i in progress(it, desc=desc, total=len(it)) if desc else it:
        logits, acts = model.forward_with(x[i:i + batch_size].to(dev), names)
        for t in taps:
            out[t].append(reduce_activation(acts[t], pool_to).float().cpu())
        out["_logits"].append(logits.float().cpu())
        out["_features"].append(acts[model.feature_layer].float().cpu())
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in out.items()}


# --------------------------------------------------------------------------- autoencoders

class LayerAE(nn.Module):
    """The fingerprint of one layer: standardise, encode to ``k`` dims, decode.
    ``error(a)`` is the per-input mean squared reconstruction error in standardised units."""

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
        """Reconstruction in standardised units."""
        return self.decoder(self.encoder(self.standardise(a)))

    def error(self, a: torch.Tensor) -> torch.Tensor:
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

    def train_on(self, acts: dict, *, epochs: int, lr: float, batch_size: int, seed: int = 0) -> dict:
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
        bar.close()
        self.eval()
        return {"epoch_losses": hist, "train_seconds": time.perf_counter() - t0, "n_fit": n, "epochs": epochs}


# --------------------------------------------------------------------------- the detector

def _robust_scale(v: np.ndarray) -> float:
    q25, q75 = np.percentile(v, [25, 75])
    s = (q75 - q25) / 1.349
    return float(s if s > 1e-8 else max(np.std(v), 1e-8))


class NeuralFP(Detector):
    """NeuralFP as a :class:`~ccc_lib.detectors.Detector`.

    ``fit(model, train)`` collects the taps' activations on ``train`` (or a ``fit_limit`` subset),
    holds out ``calib_frac`` of it (or uses ``calibration``), trains the fingerprints and sets the
    per-layer statistics and the decision threshold for false-alarm budget ``alpha``.
    ``score(x)`` → ``max_l |z_l|`` (or a variant, ``combine``); ``layer_z(x)`` → the signed ``z_l``;
    ``is_outlier(x)`` → the one-out rule with the thresholds of ``rule`` (``"joint"`` by default).
    The notebook scores from shared activations: ``errors_from_activations`` + ``score_errors``."""

    name = "NeuralFP"

    def __init__(self, model, taps=DEFAULT_TAPS, pool_to: int | None = 2, *, epochs: int = 10,
                 lr: float = 2e-3, batch_size: int = 256, alpha: float = 0.05, rule: str = "joint",
                 combine: str = "max", seed: int = 0):
        self.model = model
        self.taps = tuple(taps)
        self.pool_to = pool_to
        self.epochs, self.lr, self.batch_size, self.seed = epochs, lr, batch_size, seed
        self.alpha = alpha
        self.rule = rule
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, not {combine!r}")
        self.combine = combine
        self.bank: FingerprintBank | None = None
        self.fit_info: dict = {}

    # ---- fitting
    def fit(self, train, *, calibration=None, fit_limit: int | None = None, calib_frac: float = 0.2,
            cache_key: dict | None = None) -> "NeuralFP":
        """Fit the fingerprints on in-distribution images ``train`` (TensorData or tensor).
        ``cache_key`` (a dict naming the classifier, e.g. its checkpoint) turns on the checkpoint
        cache for the autoencoders."""
        x = as_tensor_images(train)
        rng = np.random.default_rng(self.seed)
        perm = torch.as_tensor(rng.permutation(len(x)))
        if calibration is None:
            n_cal = max(20, int(round(calib_frac * (len(x) if fit_limit is None else min(len(x), fit_limit)))))
            x_cal, perm = x[perm[:n_cal]], perm[n_cal:]
        else:
            x_cal = as_tensor_images(calibration)
        x_fit = x[perm[:fit_limit]] if fit_limit else x[perm]
        t0 = time.perf_counter()
        acts = collect_activations(self.model, x_fit, self.taps, self.pool_to)
        t_acts = time.perf_counter() - t0
        dims = {t: acts[t].shape[1] for t in self.taps}
        self.bank = FingerprintBank(dims).to(get_device())
        kw = dict(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed)
        train_fn = lambda bank: bank.train_on(acts, **kw)   # noqa: E731
        if cache_key is not None:
            cfg = {**cache_key, "taps": list(self.taps), "pool_to": self.pool_to, "dims": dims,
                   "n_fit": len(x_fit), "fit_limit": fit_limit, "calib_frac": calib_frac, **kw}
            meta = load_or_train(self.bank, "neuralfp", cfg, train_fn)
        else:
            meta = {**train_fn(self.bank), "from_cache": False}
        self.bank.to(get_device()).eval()
        for p in self.bank.parameters():
            p.requires_grad_(False)
        self.calibrate(x_cal)
        self.fit_info = {**meta, "activation_seconds": t_acts, "n_calibration": len(x_cal),
                         "fit_seconds": time.perf_counter() - t0, "dims": dims}
        return self

    def calibrate(self, x_cal=None, errors: np.ndarray | None = None) -> "NeuralFP":
        """Per-layer log-error median/spread and the thresholds, from held-out in-distribution data."""
        le = np.log(self.errors(x_cal) if errors is None else errors)
        self.cal_log_errors = le
        self.center = np.median(le, 0)
        self.scale = np.array([_robust_scale(le[:, j]) for j in range(le.shape[1])])
        # the joint fingerprint (our extension): a Gaussian on the vector of log errors
        self.joint_mean = le.mean(0)
        cov = np.cov(le.T).reshape(le.shape[1], le.shape[1])
        self.joint_precision = np.linalg.inv(cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov)))
        self.set_rule(self.rule, self.alpha)
        return self

    def set_rule(self, rule: str = "joint", alpha: float | None = None) -> "NeuralFP":
        """Set the one-out thresholds ``mu_l``, ``tau_l`` (on the log error) for budget ``alpha``."""
        alpha = self.alpha if alpha is None else alpha
        le, L = self.cal_log_errors, len(self.taps)
        if rule == "literal":
            lo, hi = np.quantile(le, alpha / 2, 0), np.quantile(le, 1 - alpha / 2, 0)
        elif rule == "bonferroni":
            lo, hi = np.quantile(le, alpha / (2 * L), 0), np.quantile(le, 1 - alpha / (2 * L), 0)
        elif rule == "joint":
            upper = self.combine == "upper"
            t = float(np.quantile(self.score_errors(np.exp(le), "upper" if upper else "max"), 1 - alpha))
            lo, hi = self.center - t * self.scale, self.center + t * self.scale
            if upper:
                lo = np.full_like(lo, -np.inf)
            self.threshold = t
        else:
            raise ValueError(f"rule must be 'joint', 'bonferroni' or 'literal', not {rule!r}")
        if rule != "joint":
            self.threshold = None
        if self.combine == "mahalanobis":
            self.threshold = float(np.quantile(self._combine_maha(le), 1 - alpha))
        self.rule, self.alpha = rule, alpha
        self.log_mu, self.log_tau = lo, hi
        return self

    @property
    def thresholds(self) -> dict:
        """``{tap: (mu_l, tau_l)}`` on the reconstruction error itself."""
        return {t: (float(np.exp(self.log_mu[j])), float(np.exp(self.log_tau[j]))) for j, t in enumerate(self.taps)}

    # ---- scoring
    @torch.no_grad()
    def _errors_batch(self, xb: torch.Tensor) -> torch.Tensor:
        names = set(self.taps)
        _, acts = self.model.forward_with(xb, names)
        acts = {t: reduce_activation(acts[t], self.pool_to) for t in self.taps}
        return self.bank.errors(acts).clamp_min(1e-12)

    def errors(self, x, batch_size: int = 500) -> np.ndarray:
        """N×L reconstruction errors of images ``x``."""
        if self.bank is None:
            raise RuntimeError("NeuralFP is not fitted; call fit() first")
        x = as_tensor_images(x)
        dev = get_device()
        out = [to_numpy(self._errors_batch(x[i:i + batch_size].to(dev))).astype(np.float64)
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.empty((0, len(self.taps)))

    @torch.no_grad()
    def errors_from_activations(self, acts: dict, batch_size: int = 2000) -> np.ndarray:
        """Errors from :func:`collect_activations`' output (no second pass through the classifier)."""
        dev = get_device()
        n = len(acts[self.taps[0]])
        out = [to_numpy(self.bank.errors({t: acts[t][i:i + batch_size].to(dev) for t in self.taps})
                        .clamp_min(1e-12)).astype(np.float64) for i in range(0, n, batch_size)]
        return np.concatenate(out) if out else np.empty((0, len(self.taps)))

    def _z(self, log_errors: np.ndarray) -> np.ndarray:
        return (log_errors - self.center) / self.scale

    @staticmethod
    def _combine_max(z: np.ndarray) -> np.ndarray:
        return np.abs(z).max(1)

    def _combine_maha(self, log_errors: np.ndarray) -> np.ndarray:
        d = log_errors - self.joint_mean
        return np.einsum("ij,jk,ik->i", d, self.joint_precision, d)

    def score_errors(self, errors: np.ndarray, combine: str | None = None) -> np.ndarray:
        """The continuous score from N×L errors: ``"max"`` = ``max_l |z_l|`` (the one-out rule's
        score), and two extensions of ours: ``"upper"`` = ``max_l z_l`` (upper thresholds only) and
        ``"mahalanobis"`` = Mahalanobis distance of the vector of log errors (a Gaussian fitted to
        the calibration data's log errors: the joint fingerprint)."""
        combine = combine or self.combine
        le = np.log(errors)
        if combine == "max":
            return self._combine_max(self._z(le))
        if combine == "upper":
            return self._z(le).max(1)
        if combine == "mahalanobis":
            return self._combine_maha(le)
        raise ValueError(f"combine must be one of {COMBINES}, not {combine!r}")

    def layer_z(self, x=None, *, errors: np.ndarray | None = None) -> np.ndarray:
        """Signed standardised log errors, N×L (positive: larger error than in-distribution)."""
        e = self.errors(x) if errors is None else errors
        return self._z(np.log(e))

    def _score(self, xb: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.score_errors(to_numpy(self._errors_batch(xb)).astype(np.float64)))

    def flags_from_errors(self, errors: np.ndarray) -> np.ndarray:
        """N×L per-layer flags of the one-out rule (``e_l < mu_l`` or ``e_l > tau_l``)."""
        le = np.log(errors)
        return (le < self.log_mu) | (le > self.log_tau)

    def is_outlier(self, x=None, *, errors: np.ndarray | None = None) -> np.ndarray:
        """The one-out rule: outlier iff some layer's error leaves ``[mu_l, tau_l]`` (with
        ``combine="mahalanobis"``: the joint score above its threshold)."""
        e = self.errors(x) if errors is None else errors
        if self.combine == "mahalanobis":
            return self.score_errors(e) > self.threshold
        return self.flags_from_errors(e).any(1)

    def __repr__(self) -> str:
        return (f"NeuralFP(taps={list(self.taps)}, pool_to={self.pool_to}, rule={self.rule!r}, "
                f"combine={self.combine!r}, alpha={self.alpha})")


# --------------------------------------------------------------------------- analysis helpers

def per_layer_auroc(det: NeuralFP, err_in: np.ndarray, err_out: np.ndarray) -> dict:
    """AUROC of each layer's two-sided score ``|z_l|`` and of its raw error (``e_l``, one-sided,
    as a histogram reader would use it), plus the combined score."""
    zi, zo = det._z(np.log(err_in)), det._z(np.log(err_out))
    out = {}
    for j, t in enumerate(det.taps):
        out[t] = {"|z|": ood_metrics(np.abs(zi[:, j]), np.abs(zo[:, j]))["auroc"],
                  "error": ood_metrics(err_in[:, j], err_out[:, j])["auroc"]}
    for c in COMBINES:
        out[f"combined: {c}"] = {"|z|": ood_metrics(det.score_errors(err_in, c), det.score_errors(err_out, c))["auroc"],
                                 "error": np.nan}
    return out


def false_alarm_table(det: NeuralFP, err_in: np.ndarray, err_outs: dict, alpha: float | None = None,
                      rules=("literal", "bonferroni", "joint", "upper", "mahalanobis")) -> list:
    """For each thresholding rule: the share of in-distribution inputs flagged (false alarms) and
    of each OOD set flagged (detections). ``"literal"``, ``"bonferroni"`` and ``"joint"`` are the
    one-out rule with different per-layer thresholds; ``"upper"`` is the joint rule with upper
    thresholds only; ``"mahalanobis"`` thresholds the joint-fingerprint score. Restores the detector's rule and combination afterwards."""
    keep = (det.rule, det.alpha, det.combine)
    rows = []
    for rule in rules:
        det.combine = rule if rule in ("upper", "mahalanobis") else "max"
        det.set_rule("joint" if rule in ("upper", "mahalanobis") else rule, alpha)
        flags = det.flags_from_errors(err_in)
        row = {"rule": rule, "alpha": det.alpha,
               "false alarms (ID test)": float(det.is_outlier(errors=err_in).mean()),
               "mean layers flagged (ID)": float(flags.sum(1).mean()) if det.combine != "mahalanobis" else np.nan}
        for name, e in err_outs.items():
            row[f"detected: {name}"] = float(det.is_outlier(errors=e).mean())
        rows.append(row)
    det.combine = keep[2]
    det.set_rule(keep[0], keep[1])
    return rows
