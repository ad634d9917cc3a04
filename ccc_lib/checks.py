"""Input checks for every public entry point: one small helper, used everywhere.

Each error says what was given, what was expected, and the fix, and is raised *before* the input
reaches torch, NumPy, PyOD or ART internals. All errors derive from :class:`InputError`
(a ``ValueError``) or :class:`NotFittedError` (a ``RuntimeError``)::

    x = check_images(x, "x", expected_shape=model.input_shape)   # N×C×H×W float32 in [0, 1], finite
    f = check_features(f, "features", dim=self.dim)              # N×D float32, finite
    check_fitted(self, "_fitted", "NeuralFP")                      # before score()/is_outlier()
"""
from __future__ import annotations

import sys

import numpy as np
import torch

__all__ = ["InputError", "NotFittedError", "check_images", "check_features", "check_labels", "check_fitted",
           "check_positive", "check_fraction", "check_choice", "as_tensor", "require_finite"]


class InputError(ValueError):
    """A public entry point was given input it cannot use; the message names the fix."""


class NotFittedError(RuntimeError):
    """A detector (or model) was used before ``fit``."""


def as_tensor(x, name: str) -> torch.Tensor:
    # TensorData without importing ccc_lib.data (which needs utils, which needs this module): if that
    # module is not loaded, no TensorData exists, so the lookup loses nothing and keeps checks a leaf
    data = sys.modules.get("ccc_lib.data")
    if data is not None and isinstance(x, data.TensorData):
        x = x.x
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise InputError(f"{name}: expected numbers, got an array of dtype {x.dtype}; convert it with "
                             f"np.asarray({name}, dtype=np.float32)")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, a NumPy array or TensorData, got "
                         f"{type(x).__name__}; convert it with torch.as_tensor({name})")
    if x.is_complex():
        raise InputError(f"{name}: complex values are not supported (dtype {x.dtype})")
    return x


def require_finite(x: torch.Tensor, name: str, what: str) -> None:
    if x.is_floating_point() and x.numel():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            rows = torch.nonzero(bad.reshape(len(x), -1).any(1)).flatten()[:5].tolist()
            raise InputError(f"{name}: {int(bad.sum())} non-finite value(s) (NaN or inf) in {what} "
                             f"{rows}{' ...' if int(bad.reshape(len(x), -1).any(1).sum()) > 5 else ''}; "
                             f"remove or impute them before calling (e.g. x[torch.isfinite(x).flatten(1).all(1)])")


def check_images(x, name: str = "x", *, expected_shape=None, value_range=(0.0, 1.0),
                 allow_empty: bool = False, tol: float = 1e-4) -> torch.Tensor:
    """N×C×H×W images as float32: 4-D, non-empty, finite, within ``value_range`` (None: any range),
    and of ``expected_shape`` = (C, H, W) when given (e.g. the classifier's ``input_shape``).
    A single C×H×W image is rejected with the fix (``x.unsqueeze(0)``) rather than guessed."""
    x = as_tensor(x, name)
    if x.ndim == 3 and expected_shape is not None and tuple(x.shape) == tuple(expected_shape):
        raise InputError(f"{name}: got one image of shape {tuple(x.shape)}; expected a batch N×C×H×W — "
                         f"pass {name}.unsqueeze(0)")
    if x.ndim != 4:
        exp = f"N×{'×'.join(map(str, expected_shape))}" if expected_shape is not None else "N×C×H×W"
        raise InputError(f"{name}: expected a batch of images {exp}, got shape {tuple(x.shape)}"
                         + (" (flat vectors? reshape them with x.view(-1, C, H, W))" if x.ndim == 2 else ""))
    if expected_shape is not None and tuple(x.shape[1:]) != tuple(expected_shape):
        c, h, w = expected_shape
        fix = (f"convert them first, e.g. ccc_lib.data.convert_images({name}, {tuple(expected_shape)}) "
               f"(grey-scale/colourise and resize)")
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            fix = f"they look channels-last: use {name}.permute(0, 3, 1, 2)"
        raise InputError(f"{name}: images of shape {tuple(x.shape[1:])} but the model expects "
                         f"{tuple(expected_shape)} (C×H×W); {fix}")
    if len(x) == 0 and not allow_empty:
        raise InputError(f"{name}: empty batch (0 images); pass at least one image")
    if not x.is_floating_point():
        if x.dtype == torch.uint8:
            raise InputError(f"{name}: uint8 images; scale them to [0, 1] first: {name}.float() / 255")
        x = x.float()
    x = x.float() if x.dtype != torch.float32 else x
    require_finite(x, name, "images")
    if value_range is not None and x.numel():
        lo, hi = value_range
        mn, mx = float(x.min()), float(x.max())
        if mn < lo - tol or mx > hi + tol:
            hint = " (0-255 pixel values? divide by 255)" if mx > 1.5 and hi <= 1 else \
                   " (normalised with a mean and std? pass the un-normalised images)" if mn < 0 <= lo else ""
            raise InputError(f"{name}: values in [{mn:.3g}, {mx:.3g}] but images must lie in [{lo:g}, {hi:g}]{hint}")
    return x


def check_features(x, name: str = "x", *, dim: int | None = None, allow_empty: bool = False) -> torch.Tensor:
    """N×D feature vectors as float32: 2-D, non-empty, finite, ``D == dim`` when given."""
    x = as_tensor(x, name)
    if x.ndim == 1 and dim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise InputError(f"{name}: expected N×D feature vectors, got shape {tuple(x.shape)}"
                         + (f"; flatten them with {name}.reshape(len({name}), -1)" if x.ndim > 2 else
                            f"; one vector? pass {name}[None]" if x.ndim == 1 else ""))
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"{name}: {x.shape[1]} features per row but the model was fitted on {dim}; "
                         f"use the same feature extractor for fit and score")
    if len(x) == 0 and not allow_empty:
        raise InputError(f"{name}: no rows (0 samples); pass at least one")
    x = x.float()
    require_finite(x, name, "rows")
    return x


def check_labels(y, name: str = "y", *, n: int | None = None, num_classes: int | None = None) -> torch.Tensor:
    """Integer class labels (1-D, ``n`` of them, in ``[0, num_classes)``) as int64."""
    y = as_tensor(y, name)
    if y.ndim == 2 and y.shape[1] > 1:
        raise InputError(f"{name}: got a {tuple(y.shape)} array (one-hot?); pass class indices: {name}.argmax(1)")
    y = y.reshape(-1)
    if y.is_floating_point():
        if not bool(torch.all(y == y.round())):
            raise InputError(f"{name}: labels must be integers, got non-integer values")
    y = y.long()
    if n is not None and len(y) != n:
        raise InputError(f"{name}: {len(y)} labels for {n} inputs; pass one label per input")
    if num_classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InputError(f"{name}: labels in [{int(y.min())}, {int(y.max())}] but the model has {num_classes} "
                         f"classes (0..{num_classes - 1})")
    return y


def check_fitted(obj, attr: str, what: str | None = None, fit_call: str = "fit(...)") -> None:
    """Raise :class:`NotFittedError` unless ``obj.<attr>`` is set (not None/False)."""
    if getattr(obj, attr, None) is None or getattr(obj, attr) is False:
        what = what or type(obj).__name__
        raise NotFittedError(f"{what} is not fitted yet: call .{fit_call} before scoring")


def check_positive(value, name: str, *, integer: bool = False, allow_zero: bool = False):
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{name} must be {kind} {'≥' if allow_zero else '>'} 0, got {value!r}")
    return value


def check_fraction(value, name: str, *, open_interval: bool = True):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) \
            or not ((0 < value < 1) if open_interval else (0 <= value <= 1)):
        raise InputError(f"{name} must lie in {'(0, 1)' if open_interval else '[0, 1]'}, got {value!r}")
    return float(value)


def check_choice(value, name: str, choices) -> object:
    if value not in choices:
        raise InputError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value
