"""Training the papers' classifier, and the one call every chapter uses to get it from the cache.

Every entry point checks its input first (:mod:`ccc_lib.checks`): images against the model's
``input_shape``, finite and in [0, 1]; labels against its class count; sizes and rates positive.
Training is seeded and deterministic (:func:`ccc_lib.utils.seed_everything`): the model's initial
weights are drawn from ``seed`` too, so the same seed gives the same weights on a rerun, after a
corrupt checkpoint, or when an interrupted run trains it again. On CUDA the DataLoader pins memory and
uses worker processes (:func:`ccc_lib.utils.loader_options`)."""
from __future__ import annotations

import functools
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .cache import fingerprint, load_or_compute, load_or_train
from .checks import InputError, check_images, check_labels, check_positive
from .data import TensorData, load_dataset
from .models import CNNConfig, PaperCNN
from .profiles import Profile, get_profile
from .utils import get_device, progress, rng_isolated, seed_everything, seeded_loader

__all__ = ["profile_data", "train_classifier", "get_classifier", "predict_proba", "predict_logits", "accuracy_of"]


def profile_data(dataset: str, split: str, profile: str | Profile | None = None, shape=None) -> TensorData:
    """A dataset as the profile uses it (its download rule, size limits and seed), loaded once per
    process (:func:`_load`). ``shape`` converts it (e.g. CIFAR-10 to 1×28×28 for an MNIST model)."""
    prof = get_profile(profile)
    limit = prof.train_limit if split == "train" else prof.test_limit
    return _load(dataset, split, prof.download, limit, prof.seed, tuple(shape) if shape else None)


@functools.lru_cache(maxsize=None)
def _load(dataset: str, split: str, download: bool, limit, seed: int, shape) -> TensorData:
    """:func:`ccc_lib.data.load_dataset`, once per process and set of arguments (the sets are small
    and read-only; every chapter asks for the same ones many times)."""
    return load_dataset(dataset, split, download=download, limit=limit, seed=seed, shape=shape)


def _check_model(model, where: str) -> None:
    if not isinstance(model, nn.Module):
        raise InputError(f"{where}: model must be a torch.nn.Module (e.g. from get_classifier), got "
                         f"{type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise InputError(f"{where}: the model has no parameters; pass a classifier such as PaperCNN")


def _input_shape(model):
    shape = getattr(model, "input_shape", None)
    return tuple(shape) if shape is not None else None


def default_batch_size(device: torch.device | None = None) -> int:
    """Inference batch size: ``CCC_EVAL_BATCH``, else 4096 on CUDA (fills a large GPU for these small
    CNNs; eval-mode results do not depend on the batch) and 512 elsewhere."""
    env = os.environ.get("CCC_EVAL_BATCH")
    if env:
        return int(env)
    return 4096 if (device or get_device()).type == "cuda" else 512


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int | None = None, *,
                   cache: bool = False) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) for images ``x`` (N×C×H×W in [0, 1], of the model's
    ``input_shape`` where it has one), batched (:func:`default_batch_size`), returned on the CPU.

    ``cache=True`` stores them in the checkpoint cache under the fingerprints of the model's weights
    and of ``x`` (and the device type), so a rebuild of the book reads what it predicted before
    instead of predicting again; the numbers are the same either way."""
    _check_model(model, "predict_logits")
    dev = next(model.parameters()).device
    batch_size = default_batch_size(dev) if batch_size is None else batch_size
    check_positive(batch_size, "batch_size", integer=True)
    x = check_images(x, "x", expected_shape=_input_shape(model))
    if cache:
        key = {"model": fingerprint(model), "class": type(model).__name__, "x": fingerprint(x),
               "device": dev.type}
        return load_or_compute("logits", key, lambda: {"logits": predict_logits(model, x, batch_size)})["logits"]
    was_training = model.training
    model.eval()
    out = [model(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int | None = None, *,
                  cache: bool = False) -> torch.Tensor:
    """Softmax of :func:`predict_logits` (``cache`` as there)."""
    return predict_logits(model, x, batch_size, cache=cache).softmax(1)


def accuracy_of(model: nn.Module, data: TensorData) -> float:
    if not isinstance(data, TensorData):
        raise InputError(f"accuracy_of: data must be a TensorData (images and labels), got {type(data).__name__}; "
                         f"build one with TensorData(x, y, classes, name, split)")
    logits = predict_logits(model, data.x, cache=True)
    y = check_labels(data.y, "data.y", n=len(data), num_classes=logits.shape[1])
    return float((logits.argmax(1) == y).float().mean())


def train_classifier(model: nn.Module, train: TensorData, *, epochs: int = 3, lr: float = 1e-3,
                     batch_size: int = 128, seed: int = 0, weight_decay: float = 0.0,
                     desc: str = "classifier", channels_last: bool = False) -> dict:
    """Adam + cross-entropy with a cosine learning-rate schedule; returns per-epoch losses and the time.

    Deterministic for a given ``seed`` (dropout, batch order; see :mod:`ccc_lib.utils`): the model's
    weights at entry are the caller's (``get_classifier`` draws them from the seed). ``channels_last``
    trains the model in the channels-last memory format (other convolution kernels: the same model up
    to float rounding, about 1.5× faster for the papers' CNN on one CPU thread) and returns it in the
    default format."""
    _check_model(model, "train_classifier")
    if not isinstance(train, TensorData):
        raise InputError(f"train_classifier: train must be a TensorData (images and labels), got "
                         f"{type(train).__name__}; e.g. ccc_lib.load_dataset('mnist', 'train')")
    check_positive(epochs, "epochs", integer=True)
    check_positive(lr, "lr")
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(weight_decay, "weight_decay", allow_zero=True)
    check_images(train.x, f"train ({train.name})", expected_shape=_input_shape(model))
    y = check_labels(train.y, f"train.y ({train.name})", n=len(train))
    if int(y.min()) < 0:
        raise InputError(f"train_classifier: {train.name} has unlabelled rows (label {int(y.min())}); a "
                         f"classifier needs a labelled training set (drop them: train.where(train.y >= 0))")
    y = check_labels(y, f"train.y ({train.name})", num_classes=getattr(model, "num_classes", None))
    seed_everything(seed)
    dev = get_device()
    model.to(dev).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * int(np.ceil(len(train) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    losses, t0 = [], time.perf_counter()
    bar = progress(total=steps, desc=desc)
    dataset = TensorDataset(train.x, y)
    for ep in range(epochs):
        total, n = 0.0, 0
        for xb, yb in seeded_loader(dataset, batch_size, shuffle=True, seed=seed + ep, device=dev):
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
    model.to(memory_format=torch.contiguous_format).eval()
    return {"epoch_losses": losses, "train_seconds": time.perf_counter() - t0, "epochs": epochs,
            "n_train": len(train), "device": str(dev)}


def get_classifier(dataset: str, profile: str | Profile | None = None, *, seed: int = 0,
                   train_data: TensorData | None = None, test_data: TensorData | None = None,
                   epochs: int | None = None, tag: str = "", force: bool = False, channels_last: bool = False,
                   **model_kw):
    """The papers' classifier for ``dataset`` at ``profile``: loaded from the checkpoint cache,
    else trained and cached. Returns ``(model, info)``; the model is in eval mode on the device.

    ``train_data``/``tag`` let a chapter train on its own split (e.g. chapter 4's base and
    production portions); the tag must name that split, it is part of the cache key. ``channels_last``:
    :func:`train_classifier`'s (named in the cache key when on)."""
    prof = get_profile(profile)
    if not isinstance(dataset, str) or not dataset:
        raise InputError(f"get_classifier: dataset must be a dataset name such as 'mnist', got {dataset!r}")
    if train_data is not None and not tag:
        raise InputError("get_classifier(train_data=...) needs tag='<name of that split>': "
                         "the tag is part of the checkpoint's cache key")
    for nm, d in (("train_data", train_data), ("test_data", test_data)):
        if d is not None and not isinstance(d, TensorData):
            raise InputError(f"get_classifier: {nm} must be a TensorData, got {type(d).__name__}")
    if epochs is not None:
        check_positive(epochs, "epochs", integer=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"get_classifier: seed must be a non-negative integer, got {seed!r}")
    if train_data is None:
        train_data = profile_data(dataset, "train", prof)
    if test_data is None:
        test_data = profile_data(dataset, "test", prof)
    if test_data.shape != train_data.shape:
        raise InputError(f"get_classifier: test_data images are {test_data.shape} but train_data images are "
                         f"{train_data.shape}; convert one with .to_shape({train_data.shape})")
    c, h, _ = train_data.shape
    cfg = CNNConfig(in_channels=c, image_size=h, num_classes=train_data.num_classes, **model_kw)
    ep = int(epochs if epochs is not None else prof.epochs_for(dataset))
    key = {"model": cfg.to_dict(), "dataset": dataset, "tag": tag, "profile": prof.name,
           "train_limit": prof.train_limit, "epochs": ep, "seed": seed, "lr": 1e-3,
           "batch_size": prof.batch_size, "init": "seeded", **({"memory_format": "channels_last"} if channels_last else {})}
    with rng_isolated():                  # initial weights from the seed, not from what ran before
        seed_everything(seed)
        model = PaperCNN(cfg)
    meta = load_or_train(model, f"classifier-{dataset}", key,
                         lambda m: train_classifier(m, train_data, epochs=ep, batch_size=prof.batch_size,
                                                    seed=seed, desc=f"{dataset} CNN", channels_last=channels_last),
                         force=force)
    model.to(get_device()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = {**meta, "dataset": dataset, "profile": prof.name, "seed": seed,
            "test_accuracy": accuracy_of(model, test_data), "n_test": len(test_data),
            "train_data": train_data, "test_data": test_data}
    return model, info

