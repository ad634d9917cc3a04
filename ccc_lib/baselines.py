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
score every detector from one pass of the classifier.

Every public entry point checks its input with :mod:`ccc_lib.checks` (images against the model's
``input_shape``, finite values in [0, 1], logits/features of the right width, fitted before use)."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_ood import detector as pod
from pytorch_ood.detector.odin import odin_preprocessing

from .checks import InputError, check_features, check_fitted, check_images, check_labels, check_positive
from .detectors import Detector
from .utils import get_device, to_numpy

__all__ = ["MSP", "Energy", "ODIN", "Mahalanobis", "MahalanobisODIN", "EPS_GRID", "make_baselines"]

#: the noise magnitudes of the NeuralFP slides' ODIN and Mahalanobis tables. Three of their four tables
#: print the third value as 0.014 (out of order, between 0.001 and 0.002); the fourth prints 0.0014, which
#: fits the ascending order. This is the default grid; chapter 2 sweeps both 0.0014 and 0.014 and puts each
#: slides number at the ε printed beside it (:mod:`ccc_lib.experiments.neuralfp`)
EPS_GRID = (0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01)


class _Checked(Detector):
    """Input checks shared by the wrappers: images of the model's ``input_shape``, finite, in [0, 1]."""

    def _ready(self) -> None:          # overridden by detectors that need fitting
        pass

    def _images(self, x, name: str = "x") -> torch.Tensor:
        return check_images(x, name, expected_shape=getattr(self.model, "input_shape", None))

    def score(self, x, batch_size: int = 512) -> np.ndarray:
        """One score per image (higher = more likely OOD), after checking the images."""
        self._ready()
        check_positive(batch_size, "batch_size", integer=True)
        return super().score(self._images(x), batch_size)

    def _logits(self, logits) -> torch.Tensor:
        return check_features(logits, "logits", dim=getattr(self.model, "num_classes", None))


class _LogitScore(_Checked):
    """A pytorch-ood detector that is a function of the logits alone (``pod_class``)."""
    pod_class = None

    def __init__(self, model, temperature: float = 1.0):
        self.model = model
        self.detector = self.pod_class(model, t=check_positive(temperature, "temperature"))

    @torch.no_grad()
    def _score(self, xb):
        return self.detector.predict(xb)

    def score_logits(self, logits) -> np.ndarray:
        """The score from N×K logits (no pass through the classifier)."""
        return to_numpy(self.detector.predict_logits(self._logits(logits))).astype(np.float64)


class MSP(_LogitScore):
    """Maximum softmax probability; score = −max softmax."""
    name = "MSP"
    pod_class = pod.MaxSoftmax


class Energy(_LogitScore):
    """Energy score −T·logsumexp(f(x)/T)."""
    name = "Energy"
    pod_class = pod.EnergyBased


def _eps(e, name: str = "eps") -> float:
    return float(check_positive(e, name, allow_zero=True))


class ODIN(_Checked):
    """ODIN (Liang et al. 2018): x̂ = x − ε·sign(∇ₓ CE(f(x)/T, ŷ)), score = −max softmax(f(x̂)/T).
    The NeuralFP slides give ε grids but no temperature; their ODIN tables cite reference [1], which is
    Hendrycks & Gimpel's maximum-softmax baseline (MSP), not Liang et al.'s ODIN, so which method the
    slides ran is unclear (chapter 2 shows both). ODIN's authors pick T (and ε) on validation
    data, and so does chapter 2 (:func:`ccc_lib.experiments.neuralfp.tune_baselines`). The default
    T = 1000 is the ODIN paper's most used value, not the slides'."""
    name = "ODIN"

    def __init__(self, model, eps: float = 0.0014, temperature: float = 1000.0):
        self.model = model
        self.eps, self.temperature = _eps(eps), float(check_positive(temperature, "temperature"))
        self.detector = pod.ODIN(model, eps=eps, temperature=temperature)

    def _score(self, xb):
        if self.eps == 0:
            with torch.no_grad():
                return pod.MaxSoftmax.score(self.model(xb), self.temperature)
        return self.detector.predict(xb).detach()

    def score_logits(self, logits) -> np.ndarray:
        """ODIN without perturbation (ε = 0): temperature-scaled MSP."""
        return to_numpy(pod.MaxSoftmax.score(self._logits(logits), self.temperature)).astype(np.float64)

    def sweep(self, x, eps_grid=EPS_GRID, batch_size: int = 256) -> dict:
        """``{eps: scores}`` for every ``eps`` with one backward pass per batch."""
        x = self._images(x)
        eps_grid = [_eps(e, "eps_grid") for e in eps_grid]
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


class Mahalanobis(_Checked):
    """Min over classes of the Mahalanobis distance of the penultimate features (shared covariance)."""
    name = "Mahalanobis"

    def __init__(self, model):
        self.model = model
        self.detector = pod.Mahalanobis(model.features)
        # what the fit saw (fingerprints of the images and labels, or of the features): a cache key can name
        # the fit by it instead of by its class means and precision, whose last bits depend on the BLAS threads
        self.fitted_on: dict | None = None

    def _ready(self) -> None:
        check_fitted(self.detector, "precision", "Mahalanobis", "fit(data)")

    def fit(self, data, batch_size: int = 512, cache: bool = False) -> "Mahalanobis":
        """Fit the class means and shared covariance on labelled in-distribution ``data`` (TensorData).
        ``cache=True``: the penultimate features go through the tensor cache (keyed by the fingerprints of
        the classifier and of the images), so a warm rebuild does not run the images through it again."""
        if not hasattr(data, "y"):
            raise InputError(
                "Mahalanobis.fit needs labelled data (TensorData with .x and .y), or use fit_features(z, y)")
        x = self._images(data.x, "data.x")
        y = check_labels(data.y, "data.y", n=len(x), num_classes=getattr(self.model, "num_classes", None))
        from .cache import fingerprint, load_or_compute

        def features():
            with torch.no_grad():
                return {"z": torch.cat([self.model.features(x[i:i + batch_size].to(get_device())).float().cpu()
                                        for i in range(0, len(x), batch_size)])}
        self.fitted_on = {"images": fingerprint(x), "labels": fingerprint(y)}
        z = (load_or_compute("maha-features", {"model": fingerprint(self.model), "images": self.fitted_on["images"]},
                             features) if cache else features())["z"]
        self.detector.fit_features(z.to(get_device()), y.to(get_device()))
        return self

    def fit_features(self, z, y) -> "Mahalanobis":
        z = check_features(z, "z")
        y = check_labels(y, "y", n=len(z), num_classes=getattr(self.model, "num_classes", None))
        self.detector.fit_features(z.to(get_device()), y.to(get_device()))
        from .cache import fingerprint
        self.fitted_on = {"features": fingerprint(z), "labels": fingerprint(y)}
        return self

    @torch.no_grad()
    def _score(self, xb):
        return self.detector.predict(xb)

    def score_features(self, z) -> np.ndarray:
        """The score from N×D penultimate features (no pass through the classifier)."""
        self._ready()
        z = check_features(z, "z", dim=int(self.detector.mu.shape[1]))
        return to_numpy(self.detector.predict_features(z.to(get_device()))).astype(np.float64)


class MahalanobisODIN(_Checked):
    """Mahalanobis with input perturbation (x̂ = x − ε·sign(∇ₓ d_M)), pytorch-ood's ``MahalanobisODIN``."""
    name = "Mahalanobis+perturbation"

    def __init__(self, model, eps: float = 0.0014, base: Mahalanobis | None = None):
        self.model = model
        self.eps = _eps(eps)
        self.detector = pod.MahalanobisODIN(model.features, eps=eps)
        self.fitted_on = None
        if base is not None:                      # share a fitted Mahalanobis detector
            self.detector._base = base.detector
            self.fitted_on = base.fitted_on

    def fit(self, data, batch_size: int = 512) -> "MahalanobisODIN":
        base = Mahalanobis(self.model).fit(data, batch_size)
        self.detector._base = base.detector
        self.fitted_on = base.fitted_on
        return self

    def _ready(self) -> None:
        check_fitted(self.detector._base, "precision", "Mahalanobis+perturbation", "fit(data)")

    def _score(self, xb):
        if self.eps == 0:
            with torch.no_grad():
                return self.detector._base.predict(xb)
        return self.detector.predict(xb).detach()

    def sweep(self, x, eps_grid=EPS_GRID, batch_size: int = 256) -> dict:
        """``{eps: scores}`` for every ``eps`` with one backward pass per batch."""
        self._ready()
        x = self._images(x)
        eps_grid = [_eps(e, "eps_grid") for e in eps_grid]
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


# One-class baselines on feature vectors (chapter 3's Table 1: PyOD and deepOD at their defaults) live in
# :mod:`ccc_lib.oneclass`; re-exported here, where chapter 3 and its tests have always found them.
from .oneclass import (DEEPOD_FIXES, DEEPOD_METHODS, GOAD_INIT_PATCH, ONECLASS_BASELINES, PYOD_METHODS,  # noqa: E402
                       SLAD_UNCORRELATED, DeepODDetector, PyODDetector, deepod_version, goad_loss,
                       make_oneclass_baseline, plateau)

__all__ += ["PYOD_METHODS", "DEEPOD_METHODS", "DEEPOD_FIXES", "GOAD_INIT_PATCH", "PyODDetector", "DeepODDetector",
            "deepod_version", "plateau", "make_oneclass_baseline", "ONECLASS_BASELINES", "goad_loss"]
