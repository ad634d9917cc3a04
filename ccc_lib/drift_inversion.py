"""Steps 3-4 of chapter 4's method (:mod:`ccc_lib.drift`): the model-inversion algorithms that make
*gray data* from a trained model — ART's ``MIFace`` from a grey start (our reading of the slides' "model
inversion" and "gray data"), plain Adam on the pixels and chapter 1's conditioned generator (ours).
:func:`ccc_lib.drift.gray_data` picks one and caches its output."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import counterfeits
from .checks import check_positive
from .drift_art import art_classifier, check_model
from .models import PaperCNN
from .train import predict_logits
from .utils import cpu_threads

__all__ = ["GrayData", "finish_gray", "gray_miface", "gray_adam", "gray_generator"]


@dataclass
class GrayData:
    """Gray data of one model: images, intended labels, and the model's own view of them."""
    x: torch.Tensor
    y: torch.Tensor
    method: str
    own_pred: torch.Tensor | None = None
    own_conf: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.x)

    @property
    def own_accuracy(self) -> float:
        """Share classified as intended by the model that made them."""
        return float((self.own_pred == self.y).float().mean()) if self.own_pred is not None else float("nan")


def _labels(num_classes: int, n_per_class: int) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(n_per_class)


def finish_gray(model, x, y, method, **info) -> GrayData:
    """Gray data ``x`` (clipped to [0, 1]) with intended labels ``y`` and the model's own view of them."""
    x = x.detach().float().clamp(0, 1).cpu()
    p = predict_logits(model, x, cache=True).softmax(1)
    conf, pred = p.max(1)
    return GrayData(x, y.cpu(), method, pred, conf, info)


def gray_miface(model: PaperCNN, n_per_class: int = 1, *, max_iter: int = 100, learning_rate: float = 1.0,
                window_length: int = 50, threshold: float = 0.99) -> GrayData:
    """Model inversion by ART's ``MIFace`` (Fredrikson et al. 2015) from a grey (all 0.5) start, as in
    ART's MNIST example — our reading of the slides' "model inversion" and "gray data" (they name
    neither ART, MIFace nor a start image). Each step adds ``learning_rate`` × the gradient of
    p(y | x) to the records still active, clipped to [0, 1]; with ``cost = 1 - p(y | x)`` ART 1.20
    then sets ``active = (cost <= threshold) + (cost >= max(window))`` (``window``: the last
    ``window_length`` costs, starting at +∞). So a record the model gives p(y) ≥ 1 - ``threshold``
    (0.01 at the default 0.99) is updated until ``max_iter``, and one below that stops as soon as its
    cost is below the window's maximum (at the first step, as the window starts at +∞) — the
    reverse of "stop once good enough or no longer improving". On a softmax output (with logits
    the cost is meaningless). MIFace is deterministic: from one grey start every sample of a class
    is identical, so one inversion per class is computed and repeated ``n_per_class`` times."""
    from art.attacks.inference.model_inversion import MIFace
    check_model(model)
    check_positive(n_per_class, "n_per_class", integer=True)
    est = art_classifier(model, probabilities=True)
    attack = MIFace(est, max_iter=int(max_iter), window_length=int(window_length), threshold=float(threshold),
                    learning_rate=float(learning_rate), batch_size=model.num_classes, verbose=False)
    y1 = np.arange(model.num_classes)
    x0 = np.full((model.num_classes, *model.input_shape), 0.5, dtype=np.float32)
    with cpu_threads(1):              # one small batch, many tiny steps: threads only add overhead
        x1 = torch.as_tensor(attack.infer(x0, y1))
    x = x1.repeat_interleave(n_per_class, 0)
    return finish_gray(model, x, _labels(model.num_classes, n_per_class), "miface", max_iter=max_iter)


def gray_adam(model: PaperCNN, n_per_class: int = 10, *, steps: int = 100, lr: float = 0.05,
              noise: float = 0.05, seed: int = 0, plateau_tol: float | None = None, plateau_every: int = 10) -> GrayData:
    """Plain model inversion (ours): Adam on the pixels, cross-entropy to the intended class, from
    grey plus a little seeded noise (so samples of a class differ), pixels clipped to [0, 1]. All
    classes are inverted in one batch; on the CPU through a channels-last copy of the model (the
    same inversion up to float rounding, about 1.4× faster). ``steps`` is the cap; with
    ``plateau_tol`` it stops earlier once the records' mean confidence in their intended class rose by
    less than ``plateau_tol`` over the last ``plateau_every`` steps (the plateau test). ``info``: the
    loss per step (``loss``) and the step it stopped at (``stopped_at``)."""
    check_model(model)
    check_positive(n_per_class, "n_per_class", integer=True)
    dev = next(model.parameters()).device
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    net = copy.deepcopy(model).to(memory_format=fmt).eval() if dev.type == "cpu" else model.eval()
    g = torch.Generator().manual_seed(int(seed))
    y = _labels(model.num_classes, n_per_class)
    x = (0.5 + noise * torch.randn(len(y), *model.input_shape, generator=g)).clamp(0, 1).to(dev)
    x = x.to(memory_format=fmt).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    yd, losses, conf = y.to(dev), [], []
    for step in range(1, int(steps) + 1):
        ce = F.cross_entropy(net(x), yd, reduction="none")
        loss = ce.mean()
        if plateau_tol is not None and step % plateau_every == 1 % plateau_every:
            conf.append(float(torch.exp(-ce.detach()).mean()))          # confidence before steps 1, 11, 21, ...
            if len(conf) > 1 and conf[-1] - conf[-2] < plateau_tol:
                break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        losses.append(float(loss.detach()))
    return finish_gray(model, x.detach().contiguous(), y, "adam", steps=steps, lr=lr, loss=losses,
                       stopped_at=len(losses))


def gray_generator(model: PaperCNN, dataset: str, profile, n_per_class: int = 10, *, tag: str, seed: int = 0,
                   **overrides) -> GrayData:
    """Gray data from chapter 1's conditioned generator trained against ``model`` in counterfeit
    mode (ours), through chapter 1's public ``get_generator`` / ``sample``."""
    check_model(model)
    gen, info = counterfeits.get_generator(model, dataset, profile, mode="counterfeit", seed=seed,
                                           tag=f"drift-{tag}", **overrides)
    s = counterfeits.sample(gen, model, n_per_class, seed=seed)
    return finish_gray(model, torch.as_tensor(s["x"]).float(), torch.as_tensor(s["y"]).long(), "generator",
                   from_cache=bool(info.get("from_cache", False)))
