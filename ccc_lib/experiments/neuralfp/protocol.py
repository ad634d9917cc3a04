"""The data protocol: the validation split (from the test split where that is cheap, else from the training
split), the validation OOD set, the near-OOD spatial shifts, and one pass of the classifier per image set
for every pooling of the configurations."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ... import neuralfp as nfp
from ...cache import fingerprint
from ...checks import InputError, check_images
from ...data import TensorData
from ...profiles import get_profile
from ...train import profile_data
from .settings import Config, tap_set

__all__ = ["validation_split", "validation_from_test", "split_validation", "validation_ood", "spatial_shifts",
           "collect_pooled", "PooledActivations", "taps_by_pool"]


def validation_split(data: TensorData, n_val: int | None, seed: int = 0) -> tuple[TensorData, TensorData]:
    """Split ``n_val`` in-distribution validation images off ``data`` (stratified where every class
    can be represented, seeded): ``(rest, val)``; the two are disjoint."""
    from sklearn.model_selection import train_test_split
    n_val = min(int(n_val or 0), len(data) // 4)
    if n_val < 10:
        raise InputError(f"validation_split: {len(data)} training images leave {n_val} for validation; need ≥ 10")
    y = data.y.numpy()
    strat = y if (y >= 0).all() and 1 < len(np.unique(y)) <= n_val else None
    _, val_idx = train_test_split(np.arange(len(y)), test_size=n_val, stratify=strat, random_state=seed)
    val = torch.zeros(len(y), dtype=torch.bool)
    val[torch.as_tensor(val_idx)] = True
    return data.where(~val), data.where(val)


def validation_from_test(n_test: int, test_limit: int | None, n_val: int | None) -> bool:
    """Is it cheap to draw the in-distribution validation images from the *test* split (images the
    classifier never trained on)? Yes when the test split holds ``n_val`` images beyond the
    ``test_limit`` evaluated, so the evaluation keeps its size; else they come from the training split."""
    return test_limit is not None and n_test - int(n_val or 0) >= int(test_limit)


def split_validation(train: TensorData, test: TensorData, n_val: int | None, test_limit: int | None,
                     seed: int = 0) -> dict:
    """The chapter's split of one model's images: ``{"fit": training images for the detectors,
    "val": validation ID images, "test": evaluation ID images, "source": "test" | "train"}``. Where
    :func:`validation_from_test` says it is cheap, the validation images are a stratified part of the
    test split kept apart from the evaluation images (drawn first; the evaluation images are then
    ``test_limit`` of the rest); else they are split off the training split (see :func:`validation_split`)."""
    if validation_from_test(len(test), test_limit, n_val):
        rest, val = validation_split(test, n_val, seed=seed)
        return {"fit": train, "val": val, "test": rest.subset(test_limit, seed=seed), "source": "test"}
    fit, val = validation_split(train, n_val, seed=seed)
    return {"fit": fit, "val": val, "test": test.subset(test_limit, seed=seed), "source": "train"}


def validation_ood(shape, n: int, profile, seed: int = 0) -> torch.Tensor:
    """The validation OOD images (:data:`VALIDATION_OOD`), a third each: natural-image crops from the
    photos' left halves (the test crops come from the right halves), Gaussian noise, and scikit-learn's
    8×8 digits upsampled (blurry, thick strokes: near-OOD for an MNIST model), in ``shape``. None of
    them is a test OOD set."""
    P = get_profile(profile)
    parts = [profile_data(name, "train", P, shape=shape).x for name in ("natural_patches", "gaussian_noise", "digits")]
    g = torch.Generator().manual_seed(seed)
    sizes = [n // 3, n // 3, n - 2 * (n // 3)]
    return torch.cat([p[torch.randperm(len(p), generator=g)[:k]] for p, k in zip(parts, sizes)])


def spatial_shifts(x: torch.Tensor, shift_px: int = 6) -> dict:
    """Near-OOD sets that live in the *spatial layout* of in-distribution images: flipped left-right,
    flipped upside-down, rotated by 90° and translated by ``shift_px`` pixels right and down (zero fill).
    Averaging a conv map over space discards exactly this information."""
    x = check_images(x, "x")
    shifted = F.pad(x, (shift_px, 0, shift_px, 0))[..., :x.shape[2], :x.shape[3]]
    return {"flipped left-right": x.flip(-1), "flipped upside-down": x.flip(-2),
            "rotated 90°": x.rot90(1, (2, 3)), f"shifted {shift_px} px": shifted}


@torch.inference_mode()
def collect_pooled(model, x, taps_by_pool: dict, batch_size: int = 500) -> dict:
    """One forward pass over images ``x``, each pooling's taps reduced at that pooling
    (``taps_by_pool``: ``{pool_to: taps}``): ``{pool_to: {tap: N×d}}`` plus ``"_logits"`` and
    ``"_features"`` (see :func:`ccc_lib.neuralfp.collect_activations`)."""
    x = check_images(x, "x", expected_shape=getattr(model, "input_shape", None))
    dev = next(model.parameters()).device
    names = {t for taps in taps_by_pool.values() for t in taps} | {model.feature_layer}
    out = {p: {t: [] for t in dict.fromkeys(taps)} for p, taps in taps_by_pool.items()}
    logits_all, feats = [], []
    for i in range(0, len(x), batch_size):
        logits, acts = model.forward_with(x[i:i + batch_size].to(dev), names)
        for p, d in out.items():
            for t in d:
                d[t].append(nfp.reduce_activation(acts[t], p).float().cpu())
        logits_all.append(logits.float().cpu())
        feats.append(acts[model.feature_layer].float().cpu())
    res = {p: {t: torch.cat(v) for t, v in d.items()} for p, d in out.items()}
    res["_logits"], res["_features"] = torch.cat(logits_all), torch.cat(feats)
    return res


class PooledActivations(Mapping):
    """``{set name: collect_pooled(model, images, taps_by_pool)}``, each computed on first use and kept
    for the object's life; ``key(name)`` identifies a set's activations without computing them (the
    model's and the images' fingerprints), so errors cached under it need no pass at all."""

    def __init__(self, model, images: dict, taps_by_pool: dict):
        self.model, self.images, self.taps_by_pool, self._acts = model, dict(images), dict(taps_by_pool), {}
        self._model_fp = fingerprint(model)

    def __getitem__(self, name):
        if name not in self._acts:
            self._acts[name] = collect_pooled(self.model, self.images[name], self.taps_by_pool)
        return self._acts[name]

    def __iter__(self):
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def key(self, name) -> dict:
        return {"model": self._model_fp, "images": fingerprint(self.images[name]),
                "taps_by_pool": {str(p): list(t) for p, t in self.taps_by_pool.items()}}


def taps_by_pool(model, configs) -> dict:
    """``{pool_to: union of the tap sets used at that pooling}`` for :func:`collect_pooled`."""
    out: dict = {}
    for c in configs:
        c = c if isinstance(c, Config) else Config(*c)
        out.setdefault(c.pool_to, {}).update(dict.fromkeys(tap_set(c.taps, model)))
    return {p: tuple(t) for p, t in out.items()}
