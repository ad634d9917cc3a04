"""The detector interface every chapter uses (in the style of pytorch-ood):

``fit(data)`` on in-distribution data, ``score(x)`` → one float per input, **higher = more
likely OOD**, and ``is_outlier(x)`` where the method has a decision rule. Chapters 2 and 3 and
the baselines implement it, so a chapter can swap one detector for another.

Input checks come with the interface: every subclass's ``fit``, ``score`` and ``is_outlier`` are
wrapped (in ``__init_subclass__``) so that, before the method's own code runs,

* ``score``/``is_outlier`` of a detector whose class defines ``fit`` raise
  :class:`~ccc_lib.checks.NotFittedError` until ``fit`` has returned;
* the input is checked with :mod:`ccc_lib.checks` (:meth:`Detector.check_input`): images (N×C×H×W,
  finite, in [0, 1]) of the wrapped classifier's ``input_shape`` (or its first convolution's channel
  count), feature rows (N×D, finite) of the dimension seen in ``fit``; a wrong shape, a NaN or an
  empty batch is an :class:`~ccc_lib.checks.InputError` naming the fix, never an error from inside
  torch, NumPy or PyOD, never a silent NaN score.

A subclass says what it reads with ``input_kind``: ``"images"``, ``"features"`` or ``"auto"`` (the
default: images when it wraps a model with a known input shape, feature rows when ``fit`` saw 2-D
data, otherwise any finite, non-empty array)."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch import nn

from .checks import InputError, NotFittedError, as_tensor, check_features, check_images, require_finite
from .data import TensorData
from .metrics import ood_metrics
from .utils import get_device, to_numpy

__all__ = ["Detector", "evaluate_detector", "as_tensor_images", "model_input_shape"]


def as_tensor_images(x) -> torch.Tensor:
    if isinstance(x, TensorData):
        return x.x
    if isinstance(x, np.ndarray):
        return torch.as_tensor(x, dtype=torch.float32)
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"expected TensorData, a tensor or an array, got {type(x).__name__}")


def model_input_shape(model) -> tuple | None:
    """(C, H, W) a classifier expects: its ``input_shape`` attribute, else None."""
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        try:
            return tuple(int(s) for s in shape)
        except TypeError:
            return None
    return None


def _model_channels(model) -> int | None:
    """Input channels of the first convolution of ``model`` (None when there is none)."""
    if isinstance(model, nn.Module):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                return int(m.in_channels)
    return None


_WRAPPED = ("fit", "score", "is_outlier")


def _is_fit_name(name: str) -> bool:
    return name == "fit" or name.startswith("fit_")


def _guard(name: str, fn):
    """Wrap a subclass's ``fit``/``score``/``is_outlier``: check the input (and, for scoring, that the
    detector is fitted) on the outermost call only, then run the method unchanged."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        depth = self.__dict__.get("_ccc_depth", 0)
        outer = depth == 0
        x = args[0] if args else kwargs.get("x", kwargs.get("data", kwargs.get("train")))
        if outer:
            if not _is_fit_name(name):
                self.check_fitted()
            if x is not None and name in _WRAPPED:
                checked = self.check_input(x, "data" if name == "fit" else "x", fitting=name == "fit")
                if name == "fit" and checked is not None and checked.ndim == 2:
                    self.__dict__["_ccc_fit_dim"] = int(checked.shape[1])
        self.__dict__["_ccc_depth"] = depth + 1
        try:
            out = fn(self, *args, **kwargs)
        except (AttributeError, TypeError) as exc:
            if outer and name != "fit" and not self.is_fitted and "NoneType" in str(exc):
                raise self._not_fitted() from exc
            raise
        finally:
            self.__dict__["_ccc_depth"] = depth
        if outer and _is_fit_name(name):
            self.__dict__["_ccc_fitted"] = True
        if outer and name == "score":
            _warn_nan(self, out)
        return out

    wrapper._ccc_guarded = True
    return wrapper


def _warn_nan(det, scores) -> None:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        return
    bad = np.isnan(s)
    if bad.any():
        warnings.warn(f"{det.name}: {int(bad.sum())} NaN score(s) for finite inputs (rows "
                      f"{np.flatnonzero(bad)[:5].tolist()}); the method is numerically unstable on them",
                      RuntimeWarning, stacklevel=3)


class Detector:
    """Base class. Subclasses implement ``fit`` and ``_score`` (a batch of inputs on the device
    → scores); ``score`` batches, moves data and returns a NumPy array. Inputs are checked before
    any of it runs (see the module docstring)."""

    name = "detector"
    #: decision threshold on the score, set by ``fit`` where the method defines one
    threshold: float | None = None
    #: what ``fit``/``score`` read: "images", "features" or "auto" (see the module docstring)
    input_kind: str = "auto"
    #: images are expected in this range (None: any finite values)
    value_range: tuple | None = (0.0, 1.0)
    #: optional: an attribute that is set (not None) once the detector is usable, for subclasses that
    #: can be made ready without ``fit`` (e.g. restored from a cache); ``fit`` returning counts anyway
    fitted_attr: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, fn in list(cls.__dict__.items()):
            if (name in _WRAPPED or _is_fit_name(name)) and callable(fn) and not getattr(fn, "_ccc_guarded", False):
                setattr(cls, name, _guard(name, fn))

    # ---- checks
    @classmethod
    def _defines_fit(cls) -> bool:
        return any("fit" in k.__dict__ for k in cls.__mro__ if k is not Detector and issubclass(k, Detector))

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` (or a ``fit_*`` method) returned, when ``fitted_attr`` is set, or when the
        class has nothing to fit."""
        if self.__dict__.get("_ccc_fitted", False) or not self._defines_fit():
            return True
        return self.fitted_attr is not None and getattr(self, self.fitted_attr, None) is not None

    def _not_fitted(self) -> NotFittedError:
        return NotFittedError(f"{self.name} is not fitted yet: call .fit(in-distribution data) before "
                              f"score()/is_outlier()")

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` before scoring an unfitted detector. Strict for classes that
        declare ``fitted_attr``; for the others (which may be made ready without ``fit``, e.g. from a
        shared fitted detector) an unfitted use is caught where it first touches the missing state."""
        if self.fitted_attr is not None and not self.is_fitted:
            raise self._not_fitted()

    @property
    def expected_input_shape(self) -> tuple | None:
        """(C, H, W) of the wrapped classifier, where known."""
        return model_input_shape(getattr(self, "model", None))

    def check_input(self, x, name: str = "x", *, fitting: bool = False):
        """Check ``x`` for this detector (see the module docstring); returns it as a float32 tensor."""
        kind = self.input_kind
        shape = self.expected_input_shape
        model = getattr(self, "model", None)
        if kind == "auto":
            t = as_tensor(x, name)
            if shape is not None or _model_channels(model) is not None:
                kind = "images"
            elif t.ndim == 2 or (not fitting and self.__dict__.get("_ccc_fit_dim") is not None):
                kind = "features"
            else:
                if t.numel() == 0 or len(t) == 0:
                    raise InputError(f"{self.name}: {name} is empty (shape {tuple(t.shape)}); pass at least one input")
                t = t.float()
                require_finite(t, f"{self.name}: {name}", "inputs")
                return t
        if kind == "images":
            t = as_tensor(x, name)
            channels = _model_channels(model) if shape is None else None
            if shape is None and channels is not None and t.ndim == 4 and t.shape[1] != channels:
                raise InputError(f"{self.name}: {name} has {t.shape[1]} channel(s) but the model's first "
                                 f"convolution expects {channels}; convert the images first, e.g. "
                                 f"ccc_lib.data.convert_images({name}, ({channels}, H, W))")
            return check_images(x, f"{self.name}: {name}", expected_shape=shape, value_range=self.value_range)
        if kind == "features":
            dim = None if fitting else self.__dict__.get("_ccc_fit_dim")
            t = as_tensor(x, name)
            if dim is not None and t.ndim > 2 and int(np.prod(t.shape[1:])) == dim:
                t = t.reshape(len(t), -1)          # rows given unflattened: same numbers, same order
            return check_features(t, f"{self.name}: {name}", dim=dim)
        raise InputError(f"{type(self).__name__}.input_kind={kind!r}; use 'images', 'features' or 'auto'")

    # ---- the interface
    def fit(self, data, *args, **kwargs) -> "Detector":
        return self

    def _score(self, xb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, x, batch_size: int = 512) -> np.ndarray:
        outer = self.__dict__.get("_ccc_depth", 0) == 0
        if outer:
            self.check_fitted()
        x = self.check_input(x) if outer else as_tensor_images(x)
        dev = get_device()
        try:
            out = [to_numpy(self._score(x[i:i + batch_size].to(dev))).astype(np.float64).ravel()
                   for i in range(0, len(x), batch_size)]
        except (AttributeError, TypeError) as exc:
            if outer and not self.is_fitted and "NoneType" in str(exc):
                raise self._not_fitted() from exc
            raise
        scores = np.concatenate(out) if out else np.empty(0)
        if self.__dict__.get("_ccc_depth", 0) == 0:
            _warn_nan(self, scores)
        return scores

    def is_outlier(self, x) -> np.ndarray:
        self.check_fitted()
        if self.threshold is None:
            raise NotImplementedError(f"{self.name} defines no decision rule; use score() and pick a threshold")
        return self.score(x) > self.threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def evaluate_detector(detector: Detector, x_in, x_out) -> dict:
    """AUROC / AUPR / FPR95 of a fitted detector on in-distribution vs OOD inputs."""
    if not isinstance(detector, Detector) and not callable(getattr(detector, "score", None)):
        raise InputError(f"evaluate_detector: expected a fitted Detector, got {type(detector).__name__}")
    if isinstance(detector, Detector):
        detector.check_fitted()
    for nm, v in (("x_in", x_in), ("x_out", x_out)):
        if v is None:
            raise InputError(f"evaluate_detector: {nm} is None; pass in-distribution (x_in) and OOD (x_out) inputs")
        if len(v) == 0:
            raise InputError(f"evaluate_detector: {nm} is empty; AUROC needs at least one in-distribution "
                             f"and one OOD input")
    return ood_metrics(detector.score(x_in), detector.score(x_out))
