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


# =====================================================================================================
# One-class baselines on feature vectors (chapter 3, Table 1 of Schmier et al. 2024): PyOD and deepOD
# at their default hyper-parameters, as the paper runs them. (Section owned by chapter 3; appended.)
# =====================================================================================================

from .checks import InputError as _InputError, check_features as _check_features, check_fitted as _check_fitted  # noqa: E402

#: PyOD's shallow detectors (and its DeepSVDD): name -> (module, class)
PYOD_METHODS = {
    "KNN": ("pyod.models.knn", "KNN"),
    "KDE": ("pyod.models.kde", "KDE"),
    "PCA": ("pyod.models.pca", "PCA"),
    "COPOD": ("pyod.models.copod", "COPOD"),
    "IForest": ("pyod.models.iforest", "IForest"),
    "DeepSVDD": ("pyod.models.deep_svdd", "DeepSVDD"),
}
#: deepOD's deep tabular detectors, the paper's deep baselines; rows are named "<name> (deepOD)"
DEEPOD_METHODS = {
    "DeepSVDD": "DeepSVDD", "RCA": "RCA", "ICL": "ICL", "GOAD": "GOAD", "SLAD": "SLAD",
}
__all__ += ["PYOD_METHODS", "DEEPOD_METHODS", "DEEPOD_FIXES", "PyODDetector", "DeepODDetector", "deepod_version",
            "plateau", "make_oneclass_baseline", "ONECLASS_BASELINES"]


class _FeatureDetector(Detector):
    """Common input checks of the one-class baselines: N×D finite feature rows, fitted before use."""
    est = None
    dim: int | None = None
    input_kind = "features"

    def _fit_input(self, data) -> np.ndarray:
        x = _check_features(data, f"{self.name}.fit data")
        if len(x) < 2:
            raise _InputError(f"{self.name}.fit data: {len(x)} row(s); a one-class detector needs at least 2")
        self.dim = x.shape[1]
        return to_numpy(x).astype(np.float64)

    def _score_input(self, x) -> np.ndarray:
        _check_fitted(self, "est", self.name)
        return to_numpy(_check_features(x, f"{self.name}.score input", dim=self.dim)).astype(np.float64)


class PyODDetector(_FeatureDetector):
    """A PyOD detector (default hyper-parameters, as in the paper) behind the book's interface;
    PyOD's ``decision_function`` is already higher = more outlying."""

    def __init__(self, method: str, **kwargs):
        if method not in PYOD_METHODS:
            raise _InputError(f"unknown PyOD method {method!r}; known: {', '.join(PYOD_METHODS)}")
        import importlib
        mod, cls = PYOD_METHODS[method]
        self.name = method
        self.kwargs = kwargs
        self._cls = getattr(importlib.import_module(mod), cls)

    def fit(self, data, seed: int = 0) -> "PyODDetector":
        x = self._fit_input(data)
        kw = dict(self.kwargs)
        if self.name == "IForest":
            kw.setdefault("random_state", seed)
        if self.name == "DeepSVDD":
            kw.setdefault("n_features", x.shape[1])
            kw.setdefault("random_state", seed)
            kw.setdefault("verbose", 0)
        self.est = self._cls(**kw).fit(x)
        return self

    def score(self, x, batch_size: int = 100_000) -> np.ndarray:
        x = self._score_input(x)
        if self.name == "COPOD":
            # PyOD's COPOD recomputes its empirical CDFs on the training rows *concatenated with the
            # rows being scored*: scoring 10,000 mostly-outlier test rows at once would let the test
            # set define "normal". Scoring in chunks of ≤ 1 % of the training set keeps it one-class.
            batch_size = max(1, len(self.est.X_train) // 100)
        out = [self.est.decision_function(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.asarray(np.concatenate(out), dtype=np.float64)

    def __repr__(self) -> str:
        return f"PyODDetector({self.name!r})"


def deepod_version() -> str:
    """The installed deepOD's version (the fixes below are checked against 0.4.1's source)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("deepod")
    except PackageNotFoundError:       # pragma: no cover - depends on the install
        return "not installed"


#: What :class:`DeepODDetector` changes in deepOD (0.4.1) when ``fixes=True``, by method; each is a
#: defect of the library, not a choice of the method's authors (the chapter states them):
DEEPOD_FIXES = {
    "GOAD": "initialisation: deepOD calls weights_init(net) on the whole GoadNet, whose class name matches "
            "none of its cases, so the initialisation never runs; we apply it to every module with weights "
            "(net.apply)",
    "ICL": "n_ensemble=1: BaseDeepAD.fit retrains self.net from scratch n_ensemble times and keeps only the "
           "last, and decision_function scores that last net n_ensemble times (the sum ranks like one score); "
           "ICL's 'auto' ensemble (5 here) would only multiply the training time",
    "SLAD": "feature weights all 1 when the training features are uncorrelated (max off-diagonal |Pearson r| < "
            "0.01, e.g. PCA components): deepOD's weights (mean |r| per feature, min-max scaled to [0, 1]) are "
            "then float rounding stretched to [0, 1]",
}
#: below this max off-diagonal |Pearson r| SLAD's correlation weighting is degenerate (see DEEPOD_FIXES)
SLAD_UNCORRELATED = 0.01


class DeepODDetector(_FeatureDetector):
    """A deepOD tabular detector (Xu et al.'s library; DeepSVDD, RCA, ICL, GOAD, SLAD) at its default
    hyper-parameters, as the paper runs them; ``epochs`` overrides the default of 100 where a budget
    rule needs it (the chapter says so). ``decision_function`` is higher = more outlying.

    deepOD does not scale its inputs: give it standardised features. With ``fixes=True`` (the default)
    the library defects listed in :data:`DEEPOD_FIXES` are worked around. After ``fit``,
    ``history`` holds the training loss per epoch (mean over its batches), each epoch's seconds, the
    number of epochs and gradient steps, and ``fixes`` the fixes applied."""

    def __init__(self, method: str, epochs: int | None = None, fixes: bool = True, **kwargs):
        if method not in DEEPOD_METHODS:
            raise _InputError(f"unknown deepOD method {method!r}; known: {', '.join(DEEPOD_METHODS)}")
        self.method = method
        self.name = f"{method} (deepOD)"
        self.epochs = epochs
        self.use_fixes = bool(fixes)
        self.kwargs = kwargs
        self.history: dict = {}
        self.fixes: list = []

    def fit(self, data, seed: int = 0) -> "DeepODDetector":
        x = self._fit_input(data).astype(np.float32)
        try:
            import deepod.models.tabular as tab
        except ImportError as exc:       # pragma: no cover - depends on the install
            raise ImportError("deepOD is not installed: pip install --no-deps deepod (its own pin asks for "
                              "torch<1.13.1, which the book does not need)") from exc
        kw = {"verbose": 0, "random_state": seed, "device": str(get_device()), **self.kwargs}
        if self.epochs is not None:
            kw["epochs"] = int(self.epochs)
        self.fixes = []
        if self.use_fixes and self.method == "ICL" and "n_ensemble" not in self.kwargs:
            kw["n_ensemble"] = 1
            self.fixes.append("ICL n_ensemble=1")
        import contextlib, io as _io
        with contextlib.redirect_stdout(_io.StringIO()), contextlib.redirect_stderr(_io.StringIO()):
            self.est = getattr(tab, DEEPOD_METHODS[self.method])(**kw)
            if self.use_fixes:
                self._patch_fixes()
            if self.method == "GOAD":
                _fast_goad_loss(self.est)
            rec = _LossRecorder(self.est)
            self.est.fit(x)
        self.history = rec.history()
        return self

    def _patch_fixes(self) -> None:
        """Instance-level patches of the deepOD defects of :data:`DEEPOD_FIXES` (GOAD, SLAD)."""
        est = self.est
        if self.method == "GOAD":
            from deepod.models.tabular.goad import weights_init
            prepare = est.training_prepare

            def training_prepare(X, y):
                loader, net, criterion = prepare(X, y)
                net.apply(lambda m: weights_init(m) if isinstance(getattr(m, "weight", None), torch.Tensor) else None)
                return loader, net, criterion
            est.training_prepare = training_prepare
            self.fixes.append("GOAD weights_init applied to every module")
        if self.method == "SLAD":
            cal = est._cal_f_weight

            def _cal_f_weight(X):
                w = cal(X)
                if X.shape[1] < 50:
                    r = np.abs(np.corrcoef(np.asarray(X, dtype=np.float64).T))
                    np.fill_diagonal(r, 0.0)
                    if np.nanmax(r) < SLAD_UNCORRELATED:
                        self.fixes.append(f"SLAD feature weights all 1 (max off-diagonal |r| = {np.nanmax(r):.1e})")
                        return np.ones(X.shape[1])
                return w
            est._cal_f_weight = _cal_f_weight

    def score(self, x, batch_size: int = 100_000) -> np.ndarray:
        x = self._score_input(x).astype(np.float32)
        import contextlib, io as _io
        if self.method == "GOAD" and not getattr(self.est, "_ccc_fast_inference", False):
            import types
            self.est.inference_forward = types.MethodType(_goad_inference_forward, self.est)
            self.est._ccc_fast_inference = True
        with contextlib.redirect_stdout(_io.StringIO()), contextlib.redirect_stderr(_io.StringIO()):
            s = np.concatenate([self.est.decision_function(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        return np.asarray(s, dtype=np.float64)

    def __repr__(self) -> str:
        return f"DeepODDetector({self.method!r}, epochs={self.epochs}, fixes={self.use_fixes})"


class _LossRecorder:
    """Records a deepOD estimator's training loss (per batch, grouped by epoch) and each epoch's
    seconds, by wrapping its ``_training``, ``training_forward`` and ``epoch_update`` on the instance
    (SLAD's inference reuses ``training_forward``: only calls inside ``_training`` are recorded)."""

    def __init__(self, est):
        import time
        self.epochs, self.seconds, self._batch, self._on, self._t = [], [], [], False, 0.0
        train, forward, update = est._training, est.training_forward, est.epoch_update

        def _training():
            self._on, self._t = True, time.perf_counter()
            try:
                return train()
            finally:
                self._on = False

        def training_forward(batch_x, net, criterion):
            loss = forward(batch_x, net, criterion)
            if self._on:
                self._batch.append(float(loss.detach()))
            return loss

        def epoch_update():
            if self._on:
                self.epochs.append(self._batch)
                self._batch = []
                now = time.perf_counter()
                self.seconds.append(now - self._t)
                self._t = now
            return update()
        est._training, est.training_forward, est.epoch_update = _training, training_forward, epoch_update

    def history(self) -> dict:
        return {"loss": [float(np.mean(b)) if b else float("nan") for b in self.epochs],
                "epoch_seconds": list(self.seconds), "epochs": len(self.epochs),
                "steps": int(sum(len(b) for b in self.epochs)), "train_seconds": float(sum(self.seconds))}


def plateau(loss, frac: float = 0.1, tol: float = 0.01) -> dict:
    """The plateau test of a training-loss curve (one value per epoch): the relative improvement of the
    mean loss over the last ``frac`` of the epochs against the mean over the ``frac`` before them,
    ``(mean(prev) − mean(last)) / |mean(prev)|``; ``plateaued`` when it is below ``tol`` (None with
    fewer than 2 epochs, where there is nothing to compare)."""
    loss = np.asarray(loss, dtype=np.float64)
    n = len(loss)
    if n < 2:
        return {"improvement": float("nan"), "plateaued": None, "window": 0}
    w = max(1, int(round(frac * n)))
    w = min(w, n // 2)
    prev, last = loss[n - 2 * w:n - w].mean(), loss[n - w:].mean()
    imp = float((prev - last) / max(abs(prev), 1e-12))
    return {"improvement": imp, "plateaued": bool(imp < tol), "window": w}


def _goad_loss(rep, pred, labels, alpha: float, margin: float):
    """deepOD's ``GoadLoss`` (cross-entropy over the transformations + ``alpha`` × the triplet-centre
    term with ``margin``) with the squared distances of every representation to every transformation's
    batch mean from one matrix product, ‖r‖² + ‖m‖² − 2 r·m, instead of a (batch × n_trans × n_trans ×
    hidden) intermediate: the same loss (tested), about 5× faster per GOAD step here."""
    loss_ce = torch.nn.functional.cross_entropy(pred, labels)
    means = rep.mean(0)                                                    # (n_trans, hidden)
    res = ((rep ** 2).sum(-1, keepdim=True) + (means ** 2).sum(-1) - 2 * rep @ means.t()).clamp_min(0)
    pos = torch.diagonal(res, dim1=1, dim2=2)
    neg = (res + torch.eye(rep.size(1), device=rep.device) * 1e6).min(-1)[0]
    return alpha * torch.clamp(pos + margin - neg, min=0).mean() + loss_ce


def _fast_goad_loss(est) -> None:
    """Make a deepOD GOAD estimator train with :func:`_goad_loss` (the criterion it builds keeps its
    ``alpha`` and ``margin``)."""
    prepare = est.training_prepare

    def training_prepare(X, y):
        loader, net, criterion = prepare(X, y)
        criterion.forward = lambda rep, pred, labels: _goad_loss(rep, pred, labels, criterion.alpha, criterion.margin)
        return loader, net, criterion
    est.training_prepare = training_prepare


def _goad_inference_forward(self, batch_x, net, criterion):
    """deepOD's ``GOAD.inference_forward`` with the same score computed without its (batch × 256 × 256 ×
    hidden) intermediate: the squared distances of every transformed row's representation to every
    transformation's mean, ‖r_i − m_j‖², come from one matrix product (in float64, then cast back to
    float32 as deepOD computes them), which makes scoring the test set several times faster. The rest
    — the ``eps`` floor, the log-softmax over transformations and the sum of the diagonal's negative —
    is deepOD's; ``tests/test_baselines_oneclass.py`` checks the scores against deepOD's own."""
    batch_data = batch_x.float().to(self.device)
    batch_rep, _ = net(batch_data)
    batch_rep = batch_rep.permute(0, 2, 1)                          # (batch, n_trans, hidden)
    r = batch_rep.double()
    m = self.rep_means[0].double()                                  # (n_trans, hidden)
    diffs = ((r ** 2).sum(-1, keepdim=True) + (m ** 2).sum(-1) - 2 * r @ m.t()).clamp_min(0).float()
    diffs = torch.max(diffs, self.eps * torch.ones_like(diffs))
    logp_sz = torch.nn.functional.log_softmax(-diffs, dim=2)
    s = -torch.diagonal(logp_sz, 0, 1, 2).sum(1)
    return batch_rep, s


#: every one-class baseline row of chapter 3's Table 1, by its row name
ONECLASS_BASELINES = tuple(PYOD_METHODS) + tuple(f"{m} (deepOD)" for m in DEEPOD_METHODS)


def make_oneclass_baseline(name: str, deepod_epochs: int | None = None, deepod_fixes: bool = True, **kw) -> Detector:
    """A one-class baseline by its row name: a PyOD name ("KNN", ...) or "<method> (deepOD)"."""
    if name.endswith(" (deepOD)"):
        return DeepODDetector(name[:-len(" (deepOD)")], epochs=deepod_epochs, fixes=deepod_fixes, **kw)
    if name in PYOD_METHODS:
        return PyODDetector(name, **kw)
    raise _InputError(f"unknown one-class baseline {name!r}; known: {', '.join(ONECLASS_BASELINES)}")
