"""One-class baselines on feature vectors (chapter 3, Table 1 of Schmier et al. 2024): PyOD and deepOD at
their libraries' default hyper-parameters, as the paper runs them, behind the book's
:class:`~ccc_lib.detectors.Detector` interface (higher score = more outlying). Re-exported by
:mod:`ccc_lib.baselines`.

* :class:`PyODDetector` — KNN, KDE, PCA, COPOD, IForest (and PyOD's DeepSVDD);
* :class:`DeepODDetector` — deepOD's DeepSVDD, RCA, ICL, GOAD, SLAD, with the training loss per epoch
  recorded, an optional ``monitor`` called after every epoch (it may stop the training: a plateau rule), and
  only the library defects of :data:`DEEPOD_FIXES` worked around;
* GOAD's training and scoring computed faster with the same numbers as deepOD's (tested):
  :func:`goad_loss`, ``FastGoadNet`` (:func:`_fast_goad_net_class`), :func:`_goad_inference_forward`."""
from __future__ import annotations

import contextlib
import functools
import io
import random
import time

import numpy as np
import torch

from .checks import InputError, check_features, check_fitted
from .detectors import Detector
from .utils import get_device, to_numpy

__all__ = ["PYOD_METHODS", "DEEPOD_METHODS", "DEEPOD_FIXES", "GOAD_INIT_PATCH", "PyODDetector", "DeepODDetector",
           "deepod_version", "plateau", "make_oneclass_baseline", "ONECLASS_BASELINES", "goad_loss"]

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
DEEPOD_METHODS = {"DeepSVDD": "DeepSVDD", "RCA": "RCA", "ICL": "ICL", "GOAD": "GOAD", "SLAD": "SLAD"}

#: What :class:`DeepODDetector` changes in deepOD (0.4.1) when ``fixes=True``, by method: each a defect of the
#: library's code that changes nothing the method's authors intended (the chapter states them). GOAD's
#: initialisation is NOT among them (see :data:`GOAD_INIT_PATCH`).
DEEPOD_FIXES = {
    "ICL": "n_ensemble=1: BaseDeepAD.fit retrains self.net from scratch n_ensemble times and keeps only the "
           "last, and decision_function scores that last net n_ensemble times (a sum that ranks like one "
           "score): deepOD's 'auto' ensemble gives one net's result at several times the cost, so one net is "
           "the same method at a fraction of the time",
    "SLAD": "feature weights all 1 when the training features are uncorrelated (max off-diagonal |Pearson r| < "
            "0.01, e.g. PCA components z-scored): deepOD's weights (mean |r| per feature, min-max scaled to "
            "[0, 1]) are then float rounding stretched to [0, 1]; on correlated features (the paper's "
            "hypersphere inputs) it never triggers",
}
#: The GOAD initialisation patch, off by default: deepOD calls ``weights_init(net)`` on the whole GoadNet,
#: whose class name matches none of its cases, so PyTorch's default initialisation is used; GOAD's original
#: code (github.com/lironber/GOAD: ``weights_init(self.netC)`` in ``opt_tc_tabular.py``, on ``netC1``/``netC5``)
#: makes the same call on its whole network, so the published GOAD numbers used PyTorch's default
#: initialisation too. Not a defect of deepOD.
GOAD_INIT_PATCH = ("weights_init applied to every module (net.apply) instead of deepOD's no-op call on the "
                   "whole network (GOAD's original code makes the same no-op call)")
#: below this max off-diagonal |Pearson r| SLAD's correlation weighting is degenerate (see DEEPOD_FIXES)
SLAD_UNCORRELATED = 0.01


class _FeatureDetector(Detector):
    """Common input checks of the one-class baselines: N×D finite feature rows, fitted before use."""
    est = None
    dim: int | None = None
    input_kind = "features"

    def _fit_input(self, data) -> np.ndarray:
        x = check_features(data, f"{self.name}.fit data")
        if len(x) < 2:
            raise InputError(f"{self.name}.fit data: {len(x)} row(s); a one-class detector needs at least 2")
        self.dim = x.shape[1]
        return to_numpy(x).astype(np.float64)

    def _score_input(self, x) -> np.ndarray:
        check_fitted(self, "est", self.name)
        return to_numpy(check_features(x, f"{self.name}.score input", dim=self.dim)).astype(np.float64)


class PyODDetector(_FeatureDetector):
    """A PyOD detector (default hyper-parameters, as in the paper) behind the book's interface;
    PyOD's ``decision_function`` is already higher = more outlying."""

    def __init__(self, method: str, **kwargs):
        if method not in PYOD_METHODS:
            raise InputError(f"unknown PyOD method {method!r}; known: {', '.join(PYOD_METHODS)}")
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


class _Stop(Exception):
    """Raised by the epoch hook to end deepOD's training loop after an epoch (the monitor said so)."""


class DeepODDetector(_FeatureDetector):
    """A deepOD tabular detector (Xu et al.'s library; DeepSVDD, RCA, ICL, GOAD, SLAD) at its default
    hyper-parameters, as the paper runs them; ``epochs`` overrides the default of 100 (the cap of a budget
    rule). ``decision_function`` is higher = more outlying. deepOD does not scale its inputs.

    ``fixes=True`` works around the library defects of :data:`DEEPOD_FIXES`; ``goad_init_patch=True`` applies
    :data:`GOAD_INIT_PATCH` (off by default: not a defect). ``monitor(epoch, score) -> dict | None`` is called
    after every epoch with a function ``score(x)`` that scores rows with the net as it is (the training's random
    generators and train mode are restored afterwards, so a monitored run trains exactly as an unmonitored one);
    what it returns is recorded in ``history["monitor"]``, and ``{"stop": True}`` ends the training there.
    After ``fit``, ``history`` holds the training loss per epoch (mean over its batches), each epoch's seconds,
    the number of epochs and gradient steps, and ``fixes`` the fixes applied."""

    def __init__(self, method: str, epochs: int | None = None, fixes: bool = True, goad_init_patch: bool = False,
                 monitor=None, **kwargs):
        if method not in DEEPOD_METHODS:
            raise InputError(f"unknown deepOD method {method!r}; known: {', '.join(DEEPOD_METHODS)}")
        self.method, self.name = method, f"{method} (deepOD)"
        self.epochs, self.use_fixes, self.goad_init_patch = epochs, bool(fixes), bool(goad_init_patch)
        self.monitor, self.kwargs = monitor, kwargs
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
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            self.est = getattr(tab, DEEPOD_METHODS[self.method])(**kw)
            self._patch()
            rec = _Recorder(self.est, self.monitor)
            # deepOD's fit ends by scoring the training rows (for a threshold the book never uses): skipped
            self.est.decision_function = lambda X, return_rep=False: np.zeros(len(X))
            try:
                self.est.fit(x)
            finally:
                del self.est.decision_function
        self.history = rec.history()
        return self

    def _patch(self) -> None:
        """Instance-level changes: the fixes of :data:`DEEPOD_FIXES`, the optional GOAD init patch, and GOAD's
        faster net, loss and score (the same numbers as deepOD's)."""
        est = self.est
        if self.method == "GOAD":
            prepare = est.training_prepare
            init_patch, fixes = self.goad_init_patch, self.fixes
            if init_patch:
                fixes.append("GOAD weights_init applied to every module")

            def training_prepare(X, y):
                loader, net, criterion = prepare(X, y)
                if init_patch:
                    from deepod.models.tabular.goad import weights_init
                    net.apply(lambda m: weights_init(m) if isinstance(getattr(m, "weight", None), torch.Tensor) else None)
                if all(getattr(m, "kernel_size", (1,)) == (1,) for m in net.modules()):
                    net.__class__ = _fast_goad_net_class()
                criterion.forward = lambda rep, pred, labels: goad_loss(rep, pred, labels, criterion.alpha, criterion.margin)
                return loader, net, criterion
            est.training_prepare = training_prepare
            import types
            est.inference_forward = types.MethodType(_goad_inference_forward, est)
        if self.use_fixes and self.method == "SLAD":
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
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), torch.inference_mode():
            s = np.concatenate([self.est.decision_function(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        return np.asarray(s, dtype=np.float64)

    def __repr__(self) -> str:
        return f"DeepODDetector({self.method!r}, epochs={self.epochs}, fixes={self.use_fixes})"


class _Recorder:
    """Records a deepOD estimator's training loss (per batch, grouped by epoch) and each epoch's seconds, by
    wrapping its ``_training``, ``training_forward`` and ``epoch_update`` on the instance (SLAD's inference
    reuses ``training_forward``: only calls inside ``_training`` are recorded), and calls the monitor."""

    def __init__(self, est, monitor=None):
        self.epochs, self.seconds, self.monitored, self._batch, self._on, self._t = [], [], [], [], False, 0.0
        self.stopped_early = False
        train, forward, update = est._training, est.training_forward, est.epoch_update

        def _training():
            self._on, self._t = True, time.perf_counter()
            try:
                return train()
            except _Stop:
                self.stopped_early = True
            finally:
                self._on = False

        def training_forward(batch_x, net, criterion):
            loss = forward(batch_x, net, criterion)
            if self._on:
                self._batch.append(float(loss.detach()))
            return loss

        def epoch_update():
            out = update()
            if not self._on:
                return out
            self.epochs.append(self._batch)
            self._batch = []
            now = time.perf_counter()
            self.seconds.append(now - self._t)
            if monitor is not None:
                rec = monitor(len(self.epochs), lambda x: self._probe(est, x)) or {}
                self.monitored.append({"epoch": len(self.epochs), **{k: v for k, v in rec.items() if k != "stop"}})
                if rec.get("stop") and len(self.epochs) < est.epochs:
                    raise _Stop()
            self._t = time.perf_counter()          # the monitor's time is not training time
            return out
        est._training, est.training_forward, est.epoch_update = _training, training_forward, epoch_update

    def _probe(self, est, x) -> np.ndarray:
        """Scores of ``x`` by the net as it is now, leaving the training exactly as it was: deepOD's inference
        switches the net to eval mode and (GOAD) draws from the shuffled training loader."""
        states = torch.get_rng_state(), np.random.get_state(), random.getstate()
        crit = getattr(est, "criterion", None)
        reduction = getattr(crit, "reduction", None)       # deepOD's inference sets it to 'none'
        self._on = False
        try:
            with torch.inference_mode():
                s = np.asarray(type(est).decision_function(est, np.asarray(x, dtype=np.float32)), dtype=np.float64)
        finally:
            torch.set_rng_state(states[0]); np.random.set_state(states[1]); random.setstate(states[2])
            if reduction is not None:
                crit.reduction = reduction
            est.net.train()
            self._on = True
        return s

    def history(self) -> dict:
        return {"loss": [float(np.mean(b)) if b else float("nan") for b in self.epochs],
                "epoch_seconds": list(self.seconds), "epochs": len(self.epochs),
                "steps": int(sum(len(b) for b in self.epochs)), "train_seconds": float(sum(self.seconds)),
                "monitor": self.monitored, "stopped_early": self.stopped_early}


def plateau(loss, frac: float = 0.1, tol: float = 0.01) -> dict:
    """The relative-improvement test of a training-loss curve (one value per epoch): the relative improvement
    of the mean loss over the last ``frac`` of the epochs against the mean over the ``frac`` before them,
    ``(mean(prev) − mean(last)) / |mean(prev)|``; ``plateaued`` when it is below ``tol`` (None with fewer than
    2 epochs). Blind to a slow fall of a loss far from zero (GOAD's, near ln of its transformations): the
    chapter judges training by whether the scores still change instead."""
    loss = np.asarray(loss, dtype=np.float64)
    n = len(loss)
    if n < 2:
        return {"improvement": float("nan"), "plateaued": None, "window": 0}
    w = min(max(1, int(round(frac * n))), n // 2)
    prev, last = loss[n - 2 * w:n - w].mean(), loss[n - w:].mean()
    imp = float((prev - last) / max(abs(prev), 1e-12))
    return {"improvement": imp, "plateaued": bool(imp < tol), "window": w}


# --------------------------------------------------------------------------- GOAD, faster, same numbers

def goad_loss(rep, pred, labels, alpha: float, margin: float):
    """deepOD's ``GoadLoss``: cross-entropy of the transformation logits ``pred`` (batch × n_trans × positions)
    + ``alpha`` × the triplet-centre term with ``margin`` on ``rep`` (batch × n_trans × hidden), with the same
    value and gradients, computed faster: the cross-entropy over the contiguous last axis, and the nearest
    other transformation's batch mean found without gradient (one matrix product) and only its distance
    recomputed with gradient — deepOD's minimum passes its gradient to that entry alone. Tested against
    ``GoadLoss`` (value and gradients)."""
    n_out = pred.shape[1]
    loss_ce = torch.nn.functional.cross_entropy(pred.transpose(1, 2).reshape(-1, n_out), labels.reshape(-1))
    means = rep.mean(0)                                                    # (n_trans, hidden)
    pos = (rep - means).pow(2).sum(-1)                                     # to its own transformation's mean
    with torch.no_grad():
        d = (rep ** 2).sum(-1, keepdim=True) + (means ** 2).sum(-1) - 2 * rep @ means.t()
        d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        nearest = d.argmin(-1)                                             # (batch, n_trans)
    neg = (rep - means[nearest]).pow(2).sum(-1)
    return alpha * torch.clamp(pos + margin - neg, min=0).mean() + loss_ce


@functools.lru_cache(maxsize=1)
def _fast_goad_net_class():
    """:class:`FastGoadNet`, built on first use (deepOD is imported only where a row needs it)."""
    from deepod.models.tabular.goad import GoadNet

    class FastGoadNet(GoadNet):
        """deepOD's GoadNet (kernel size 1) computed with the transformations as rows: its 1×1 convolutions as
        matrix products over the channels, the same parameters. Returns deepOD's ``(rep, pred)``: ``rep`` after
        the head's in-place LeakyReLU (deepOD's forward returns it so), ``pred`` as (batch, n_out, n_trans)."""

        def forward(self, x):
            h = x.transpose(1, 2)                                          # (batch, n_trans, channels)
            for layer in self.enc.net:
                h = (torch.nn.functional.linear(h, layer.weight[:, :, 0], layer.bias)
                     if isinstance(layer, torch.nn.Conv1d) else layer(h))
            act, conv = self.head
            rep = torch.nn.functional.leaky_relu(h, act.negative_slope)
            pred = torch.nn.functional.linear(rep, conv.weight[:, :, 0], conv.bias)
            return rep.transpose(1, 2), pred.transpose(1, 2)
    return FastGoadNet


def _goad_inference_forward(self, batch_x, net, criterion):
    """deepOD's ``GOAD.inference_forward`` with the same score computed without its (batch × n_trans × n_trans
    × hidden) intermediate: the squared distances of every transformed row's representation to every
    transformation's mean, ‖r_i − m_j‖², from one matrix product (in float64, then cast back to float32 as
    deepOD computes them). The rest — the ``eps`` floor, the log-softmax over transformations and the sum of
    the diagonal's negative — is deepOD's; the tests check the scores against deepOD's own."""
    batch_rep, _ = net(batch_x.float().to(self.device))
    batch_rep = batch_rep.permute(0, 2, 1)                          # (batch, n_trans, hidden)
    r, m = batch_rep.double(), self.rep_means[0].double()           # m: (n_trans, hidden)
    diffs = ((r ** 2).sum(-1, keepdim=True) + (m ** 2).sum(-1) - 2 * r @ m.t()).clamp_min(0).float()
    diffs = torch.clamp_min(diffs, self.eps)
    logp_sz = torch.nn.functional.log_softmax(-diffs, dim=2)
    return batch_rep, -torch.diagonal(logp_sz, 0, 1, 2).sum(1)


#: every one-class baseline row of chapter 3's Table 1, by its row name
ONECLASS_BASELINES = tuple(PYOD_METHODS) + tuple(f"{m} (deepOD)" for m in DEEPOD_METHODS)


def make_oneclass_baseline(name: str, deepod_epochs: int | None = None, deepod_fixes: bool = True, **kw) -> Detector:
    """A one-class baseline by its row name: a PyOD name ("KNN", ...) or "<method> (deepOD)"."""
    if name.endswith(" (deepOD)"):
        return DeepODDetector(name[:-len(" (deepOD)")], epochs=deepod_epochs, fixes=deepod_fixes, **kw)
    if name in PYOD_METHODS:
        return PyODDetector(name, **kw)
    raise InputError(f"unknown one-class baseline {name!r}; known: {', '.join(ONECLASS_BASELINES)}")
