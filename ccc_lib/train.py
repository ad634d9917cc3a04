"""Training the papers' classifier, and the one call every chapter uses to get it from the cache."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import load_or_train
from .data import TensorData, load_dataset
from .models import CNNConfig, PaperCNN
from .profiles import Profile, get_profile
from .utils import get_device, progress, set_seed

__all__ = ["profile_data", "train_classifier", "get_classifier", "predict_proba", "predict_logits", "accuracy_of"]


_DATA_MEMO: dict = {}


def profile_data(dataset: str, split: str, profile: str | Profile | None = None, shape=None) -> TensorData:
    """A dataset as the profile uses it (its download rule, size limits and seed), loaded once per
    process. ``shape`` converts it (e.g. CIFAR-10 to 1×28×28 for an MNIST model)."""
    prof = get_profile(profile)
    key = (dataset, split, prof.name, tuple(shape) if shape else None)
    if key not in _DATA_MEMO:
        limit = prof.train_limit if split == "train" else prof.test_limit
        _DATA_MEMO[key] = load_dataset(dataset, split, download=prof.download, limit=limit,
                                       seed=prof.seed, shape=shape)
    return _DATA_MEMO[key]


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) for images ``x``, batched, returned on the CPU."""
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return predict_logits(model, x, batch_size).softmax(1)


def accuracy_of(model: nn.Module, data: TensorData) -> float:
    return float((predict_logits(model, data.x).argmax(1) == data.y).float().mean())


def train_classifier(model: nn.Module, train: TensorData, *, epochs: int = 3, lr: float = 1e-3,
                     batch_size: int = 128, seed: int = 0, weight_decay: float = 0.0,
                     desc: str = "classifier") -> dict:
    """Adam + cross-entropy with a cosine learning-rate schedule; returns per-epoch losses and the time."""
    if epochs < 1:
        raise ValueError(f"epochs must be ≥ 1, got {epochs}")
    set_seed(seed)
    dev = get_device()
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * int(np.ceil(len(train) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    losses, t0 = [], time.perf_counter()
    bar = progress(total=steps, desc=desc)
    for ep in range(epochs):
        total, n = 0.0, 0
        for xb, yb in train.loader(batch_size, shuffle=True, seed=seed + ep):
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"classifier loss became {loss.item()} in epoch {ep + 1}; lower lr (now {lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
            n += len(xb)
            bar.update(1)
        losses.append(total / n)
        bar.set_postfix(epoch=ep + 1, loss=f"{losses[-1]:.4f}")
    bar.close()
    model.eval()
    return {"epoch_losses": losses, "train_seconds": time.perf_counter() - t0, "epochs": epochs,
            "n_train": len(train), "device": str(dev)}


def get_classifier(dataset: str, profile: str | Profile | None = None, *, seed: int = 0,
                   train_data: TensorData | None = None, test_data: TensorData | None = None,
                   epochs: int | None = None, tag: str = "", force: bool = False, **model_kw):
    """The papers' classifier for ``dataset`` at ``profile``: loaded from the checkpoint cache,
    else trained and cached. Returns ``(model, info)``; the model is in eval mode on the device.

    ``train_data``/``tag`` let a chapter train on its own split (e.g. chapter 4's base and
    production portions); the tag must name that split, it is part of the cache key."""
    prof = get_profile(profile)
    if train_data is not None and not tag:
        raise ValueError("get_classifier(train_data=...) needs tag='<name of that split>': "
                         "the tag is part of the checkpoint's cache key")
    if train_data is None:
        train_data = profile_data(dataset, "train", prof)
    if test_data is None:
        test_data = profile_data(dataset, "test", prof)
    c, h, _ = train_data.shape
    cfg = CNNConfig(in_channels=c, image_size=h, num_classes=train_data.num_classes, **model_kw)
    ep = int(epochs if epochs is not None else prof.epochs_for(dataset))
    key = {"model": cfg.to_dict(), "dataset": dataset, "tag": tag, "profile": prof.name,
           "train_limit": prof.train_limit, "epochs": ep, "seed": seed, "lr": 1e-3,
           "batch_size": prof.batch_size}
    model = PaperCNN(cfg)
    meta = load_or_train(model, f"classifier-{dataset}", key,
                         lambda m: train_classifier(m, train_data, epochs=ep, batch_size=prof.batch_size,
                                                    seed=seed, desc=f"{dataset} CNN"),
                         force=force)
    model.to(get_device()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = {**meta, "dataset": dataset, "profile": prof.name, "seed": seed,
            "test_accuracy": accuracy_of(model, test_data), "n_test": len(test_data),
            "train_data": train_data, "test_data": test_data}
    return model, info

