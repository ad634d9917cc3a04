"""The detector interface every chapter uses (in the style of pytorch-ood):

``fit(data)`` on in-distribution data, ``score(x)`` → one float per input, **higher = more
likely OOD**, and ``is_outlier(x)`` where the method has a decision rule. Chapters 2 and 3 and
the baselines implement it, so a chapter can swap one detector for another."""
from __future__ import annotations

import numpy as np
import torch

from .data import TensorData
from .metrics import ood_metrics
from .utils import get_device, to_numpy

__all__ = ["Detector", "evaluate_detector", "as_tensor_images"]


def as_tensor_images(x) -> torch.Tensor:
    if isinstance(x, TensorData):
        return x.x
    if isinstance(x, np.ndarray):
        return torch.as_tensor(x, dtype=torch.float32)
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"expected TensorData, a tensor or an array, got {type(x).__name__}")


class Detector:
    """Base class. Subclasses implement ``fit`` and ``_score`` (a batch of inputs on the device
    → scores); ``score`` batches, moves data and returns a NumPy array."""

    name = "detector"
    #: decision threshold on the score, set by ``fit`` where the method defines one
    threshold: float | None = None

    def fit(self, data, *args, **kwargs) -> "Detector":
        return self

    def _score(self, xb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, x, batch_size: int = 512) -> np.ndarray:
        x = as_tensor_images(x)
        dev = get_device()
        out = [to_numpy(self._score(x[i:i + batch_size].to(dev))).astype(np.float64).ravel()
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.empty(0)

    def is_outlier(self, x) -> np.ndarray:
        if self.threshold is None:
            raise NotImplementedError(f"{self.name} defines no decision rule; use score() and pick a threshold")
        return self.score(x) > self.threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def evaluate_detector(detector: Detector, x_in, x_out) -> dict:
    """AUROC / AUPR / FPR95 of a fitted detector on in-distribution vs OOD inputs."""
    return ood_metrics(detector.score(x_in), detector.score(x_out))
