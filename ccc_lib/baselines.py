"""Baseline OOD detectors from ``pytorch-ood`` (0.4) behind the book's
:class:`~ccc_lib.detectors.Detector` interface (higher score = more likely OOD).

* :class:`MSP` — maximum softmax probability (Hendrycks & Gimpel), ``pytorch_ood.detector.MaxSoftmax``.
* :class:`Energy` — the energy score (Liu et al. 2020), ``pytorch_ood.detector.EnergyBased``.
* :class:`ODIN` — temperature scaling + input perturbation (Liang et al.), ``pytorch_ood.detector.ODIN``.
* :class:`Mahalanobis` — class-conditional Gaussians with a shared covariance on the 256-d
  penultimate features (Lee et al. 2018), ``pytorch_ood.detector.Mahalanobis``.
* :class:`MahalanobisODIN` — the same with Mahalanobis-guided input perturbation,
  ``pytorch_ood.detector.MahalanobisODIN``.

The gradient-based detectors also offer ``sweep(x, eps_grid)``: the sign of the input gradient
does not depend on ``eps``, so one backward pass serves the whole grid of noise magnitudes
(``x_hat = x - eps * sign(grad)``, exactly what pytorch-ood computes for each ``eps``). The
logit- and feature-based ones offer ``score_logits`` / ``score_features`` so that a notebook can
score every detector from one pass of the classifier."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_ood import detector as pod
from pytorch_ood.detector.odin import odin_preprocessing

from .detectors import Detector, as_tensor_images
from .utils import get_device, to_numpy

__all__ = ["MSP", "Energy", "ODIN", "Mahalanobis", "MahalanobisODIN", "EPS_GRID", "make_baselines"]

#: the noise magnitudes of the NeuralFP slides' ODIN and Mahalanobis tables
EPS_GRID = (0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01)


def _numpy_batches(fn, x, batch_size: int) -> np.ndarray:
    x = as_tensor_images(x)
    dev = get_device()
    out = [to_numpy(fn(x[i:i + batch_size].to(dev))).astype(np.float64).ravel() for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.empty(0)


class _LogitScore(Detector):
    """A pytorch-ood detector that is a function of the logits alone (``pod_class``)."""
    pod_class = None

    def __init__(self, model, temperature: float = 1.0):
        self.model = model
        self.detector = self.pod_class(model, t=temperature)

    @torch.no_grad()
    def _score(self, xb):
        return self.detector.predict(xb)

    def score_logits(self, logits) -> np.ndarray:
        return to_numpy(self.detector.predict_logits(torch.as_tensor(logits))).astype(np.float64)


class MSP(_LogitScore):
    """Maximum softmax probability; score = −max softmax."""
    name = "MSP"
    pod_class = pod.MaxSoftmax


class Energy(_LogitScore):
    """Energy score −T·logsumexp(f(x)/T)."""
    name = "Energy"
    pod_class = pod.EnergyBased


class ODIN(Detector):
    """ODIN: x̂ = x − ε·sign(∇ₓ CE(f(x)/T, ŷ)), score = −max softmax(f(x̂)/T). T = 1000 as in the slides."""
    name = "ODIN"

    def __init__(self, model, eps: float = 0.0014, temperature: float = 1000.0):
        self.model = model
        self.eps, self.temperature = eps, temperature
        self.detector = pod.ODIN(model, eps=eps, temperature=temperature)

    def _score(self, xb):
        if self.eps == 0:
            with torch.no_grad():
                return pod.MaxSoftmax.score(self.model(xb), self.temperature)
        return self.detector.predict(xb).detach()

    def score_logits(self, logits) -> np.ndarray:
        """ODIN without perturbation (ε = 0): temperature-scaled MSP."""
        return to_numpy(pod.MaxSoftmax.score(torch.as_tensor(logits), self.temperature)).astype(np.float64)

    def sweep(self, x, eps_grid=EPS_GRID, batch_size: int = 256) -> dict:
        """``{eps: scores}`` for every ``eps`` with one backward pass per batch."""
        x = as_tensor_images(x)
        dev = get_device()
        out = {e: [] for e in eps_grid}
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev)
            # pytorch-ood's own preprocessing at eps = 1 gives x - sign(grad)
            step = xb - odin_preprocessing(self.model, xb, eps=1.0, temperature=self.temperature)
            with torch.no_grad():
                for e in eps_grid:
                    out[e].append(to_numpy(pod.MaxSoftmax.score(self.model(xb - e * step), self.temperature)))
        return {e: np.concatenate(v).astype(np.float64) for e, v in out.items()}


class Mahalanobis(Detector):
    """Min over classes of the Mahalanobis distance of the penultimate features (shared covariance)."""
    name = "Mahalanobis"

    def __init__(self, model):
        self.model = model
        self.detector = pod.Mahalanobis(model.features)

    def fit(self, data, batch_size: int = 512) -> "Mahalanobis":
        """Fit the class means and shared covariance on labelled in-distribution ``data`` (TensorData)."""
        feats = []
        with torch.no_grad():
            for i in range(0, len(data.x), batch_size):
                feats.append(self.model.features(data.x[i:i + batch_size].to(get_device())).float())
        self.detector.fit_features(torch.cat(feats), data.y.to(get_device()))
        return self

    def fit_features(self, z, y) -> "Mahalanobis":
        self.detector.fit_features(torch.as_tensor(z).to(get_device()), torch.as_tensor(y).to(get_device()))
        return self

    @torch.no_grad()
    def _score(self, xb):
        return self.detector.predict(xb)

    def score_features(self, z) -> np.ndarray:
        return to_numpy(self.detector.predict_features(torch.as_tensor(z).to(get_device()))).astype(np.float64)


class MahalanobisODIN(Detector):
    """Mahalanobis with input perturbation (x̂ = x − ε·sign(∇ₓ d_M)), pytorch-ood's ``MahalanobisODIN``."""
    name = "Mahalanobis+perturbation"

    def __init__(self, model, eps: float = 0.0014, base: Mahalanobis | None = None):
        self.model = model
        self.eps = eps
        self.detector = pod.MahalanobisODIN(model.features, eps=eps)
        if base is not None:                      # share a fitted Mahalanobis detector
            self.detector._base = base.detector

    def fit(self, data, batch_size: int = 512) -> "MahalanobisODIN":
        base = Mahalanobis(self.model).fit(data, batch_size)
        self.detector._base = base.detector
        return self

    def _score(self, xb):
        return self.detector.predict(xb).detach()

    def sweep(self, x, eps_grid=EPS_GRID, batch_size: int = 256) -> dict:
        """``{eps: scores}`` for every ``eps`` with one backward pass per batch."""
        x = as_tensor_images(x)
        dev = get_device()
        out = {e: [] for e in eps_grid}
        keep = self.detector.eps
        self.detector.eps = 1.0
        try:
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(dev)
                step = xb - self.detector._odin_preprocess(xb, dev)
                for e in eps_grid:
                    out[e].append(to_numpy(self.detector._base.predict(xb - e * step)))
        finally:
            self.detector.eps = keep
        return {e: np.concatenate(v).astype(np.float64) for e, v in out.items()}


def make_baselines(model, train, eps: float = 0.0014, temperature: float = 1000.0) -> dict:
    """The baselines of this book on one classifier, fitted where needed: ``{name: Detector}``."""
    maha = Mahalanobis(model).fit(train)
    return {"MSP": MSP(model), "Energy": Energy(model), "ODIN": ODIN(model, eps=eps, temperature=temperature),
            "Mahalanobis": maha, "Mahalanobis+perturbation": MahalanobisODIN(model, eps=eps, base=maha)}
