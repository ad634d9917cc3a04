"""Chapter 3's inputs: the features (:func:`fashion_features`: the MNIST-5k CNN's penultimate features, an
ImageNet ResNet-18's, or raw pixels) and the one-vs-rest split of one inlier class in one of the two input
settings (:func:`one_class_split`: ``"sphere"``, the paper's; ``"zscore"``, our variant), with the probe rows
the deep baselines' training check scores (training-split rows only, never test images)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ...cache import fingerprint, load_or_compute
from ...checks import InputError
from ...profiles import Profile, get_profile
from ...utils import get_device

FEATURE_KINDS = ("cnn_mnist5k", "resnet18_imagenet", "pixels")


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise InputError(f"unknown feature kind {kind!r}; use one of {FEATURE_KINDS}")


def fashion_features(kind: str, profile: str | Profile | None = None, batch_size: int = 1024,
                     dataset: str = "fashion_mnist", train_pool: int | None = None) -> dict:
    """Train/test features of ``dataset`` (``S["dataset"]``) for the one-vs-rest table.

    ``kind``: ``"cnn_mnist5k"`` — the 256-d penultimate features of the papers' CNN trained on
    **MNIST-5k digits** (chapter 0's classifier; it never saw a Fashion-MNIST image or label), on the
    unit hypersphere as the paper does with its MoCo features; ``"resnet18_imagenet"`` — the 512-d
    pooled features of torchvision's ImageNet-pretrained ResNet-18 (it never saw a CIFAR-10 label),
    on the hypersphere; ``"pixels"`` — the raw pixel values (C·H·W per image).
    ``train_pool``: keep only the first ``train_pool`` training images of each class (in the split's order) — all
    that a profile's training rows, seeds and probe rows draw from, so the rest is never encoded.
    Returns ``{"train": (x, y), "test": (x, y), "classes": [...], "key": ...}``; ``key`` names what the
    features are (kind, encoder, images, labels, profile), the identity the chapter's cache keys use."""
    from ...train import profile_data
    _check_kind(kind)
    prof = get_profile(profile)
    out, key = {}, {"v": 1, "dataset": dataset, "profile": prof.name}
    for split in ("train", "test"):
        data = profile_data(dataset, split, prof)
        if split == "train" and train_pool is not None:
            y = data.y.numpy()
            keep = np.zeros(len(y), bool)
            for c in np.unique(y):
                keep[np.flatnonzero(y == c)[:int(train_pool)]] = True
            data = data.where(keep)
            key["train_pool"] = int(train_pool)
        out["classes"] = list(data.classes)
        x, key[split] = _cached_encoding(kind, data, prof, batch_size)
        key[f"{split}_labels"] = fingerprint(data.y)
        out[split] = (x, data.y.numpy())
    out["image_shape"] = tuple(data.shape)
    out["key"] = key
    return out


def _cached_encoding(kind: str, data, prof: Profile, batch_size: int) -> tuple[np.ndarray, dict]:
    """:func:`encode_images` of a whole split, through the tensor cache for the learned encoders (keyed by
    the encoder's identity and a fingerprint of the images), so a warm rebuild does not re-encode the
    training set; the pixels are the data themselves and are not cached. Returns ``(features, key)``:
    the key names the features by their inputs, not by their (platform-dependent) last bits."""
    if kind == "pixels":
        return encode_images(kind, data, prof, batch_size), {"kind": kind, "images": fingerprint(data.x)}
    if kind == "cnn_mnist5k":
        from ...train import get_classifier
        encoder = fingerprint(get_classifier("mnist5k", prof)[0])
    else:
        encoder = f"resnet18-{'random' if prof.dry_run else 'imagenet'}-{64 if prof.dry_run else 224}"
    key = {"kind": kind, "encoder": encoder, "images": fingerprint(data.x), "profile": prof.name}
    out = load_or_compute("iocn-features", key,
                          lambda: {"x": torch.as_tensor(encode_images(kind, data, prof, batch_size))})
    return out["x"].numpy(), key


@functools.lru_cache(maxsize=4)
def _encoder(kind: str, profile_name: str):
    """The learned encoder of ``kind`` at a profile, built once per process: ``(encode, input shape or
    None)`` — chapter 0's MNIST-5k CNN (from the checkpoint cache) or the pretrained ResNet-18."""
    from ...train import get_classifier
    prof = get_profile(profile_name)
    if kind == "cnn_mnist5k":
        model, _ = get_classifier("mnist5k", prof)
        return model.features, tuple(model.input_shape)
    if prof.dry_run:
        print("DRY RUN: the ResNet-18 encoder has random weights (nothing is downloaded) and sees the "
              "images at 64×64 instead of 224×224 (to save time); its features are not ImageNet features")
    return resnet18_encoder(weights=None if prof.dry_run else "DEFAULT", size=64 if prof.dry_run else 224), None


def encode_images(kind: str, data, profile: str | Profile | None = None, batch_size: int = 1024) -> np.ndarray:
    """The ``kind`` features (see :func:`fashion_features`) of images: a :class:`~ccc_lib.data.TensorData`
    or an N×C×H×W tensor in [0, 1] (converted to the encoder's input shape). Returns float32 rows."""
    from ...data import TensorData
    _check_kind(kind)
    if kind == "pixels":
        x = data.x if isinstance(data, TensorData) else data
        return x.flatten(1).cpu().numpy().astype(np.float32)
    encode, shape = _encoder(kind, get_profile(profile).name)
    if not isinstance(data, TensorData):
        data = TensorData(torch.as_tensor(data).float(), torch.full((len(data),), -1, dtype=torch.long),
                          classes=[], name="images", split="query")
    x = data.x if shape is None or tuple(data.shape) == shape else data.to_shape(shape).x
    if len(x) == 0:
        return np.empty((0, 0), dtype=np.float32)
    dev = get_device()
    with torch.no_grad():
        f = torch.cat([encode(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])
    return torch.nn.functional.normalize(f, dim=1).numpy().astype(np.float32)


def resnet18_encoder(weights="DEFAULT", size: int = 224):
    """ImageNet-pretrained ResNet-18 as a 512-d encoder of N×3×H×W images in [0, 1] (resized to
    ``size`` × ``size``, 224 as in ImageNet training; ImageNet-normalised). ``weights=None`` gives a random network (tests, the dry run). The weights are
    downloaded by torchvision on first use; offline this fails with a message naming the fix."""
    import torchvision
    try:
        net = torchvision.models.resnet18(weights=weights)
    except OSError as exc:
        raise RuntimeError("the ImageNet-pretrained ResNet-18 weights could not be downloaded; the 'full' "
                           "profile needs internet access once (torchvision caches them under ~/.cache/torch), "
                           f"or use the 'cnn_mnist5k'/'pixels' features ({exc})") from exc
    net.fc = torch.nn.Identity()
    net = net.to(get_device()).eval()
    mean = torch.tensor([0.485, 0.456, 0.406], device=get_device()).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=get_device()).view(1, 3, 1, 1)

    def encode(x):
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return net((x - mean) / std)
    return encode


@dataclass
class Split:
    """One-vs-rest data for one inlier class in one input setting: the training inliers, the whole test set and
    the probe rows (for the deep baselines' training check), all through the same fitted map (``prep``), which
    every row of Table 1 receives."""
    inlier: int
    train: np.ndarray
    test: np.ndarray
    is_out: np.ndarray          # 1 = outlier (another class)
    pca: object                 # the fitted map: ``pca.transform(features)`` (name kept from the PCA days)
    explained_variance: float   # share of the inlier rows' variance (zscore) or energy (sphere) the reduction keeps
    inputs: str = "zscore"
    probe: np.ndarray | None = None         # held-out training inliers, then other classes' training rows
    probe_is_out: np.ndarray | None = None
    key: dict | None = None     # what the split is (its features' key, class, inputs, dimension, rows, seed): the
                                # cache keys of the rows trained on it use this, not the split's floating-point bits


class SphereMap:
    """The paper's preprocessing as a fitted map: rows on the unit hypersphere (after an optional truncated SVD
    fitted on the inlier class's training rows, which leaves the sphere), then Gaussian noise of std
    ``noise``, drawn from a generator seeded by ``seed`` and the rows' own bytes: the same rows always get the
    same noise. ``transform(x)`` maps new feature rows (e.g. chapter 1's counterfeits) the same way."""

    def __init__(self, svd, noise: float, seed: int):
        self.svd, self.noise, self.seed = svd, float(noise), int(seed)

    def transform(self, x) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64)
        rng = np.random.default_rng([self.seed, int(fingerprint(np.ascontiguousarray(x))[:15], 16)])
        if self.svd is not None:
            z = self.svd.transform(z)
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return z + self.noise * rng.standard_normal(z.shape)


def _probe_rows(ytr, inlier: int, idx: np.ndarray, n_probe: tuple, seed: int) -> tuple:
    """Indices of the probe rows: up to ``n_probe[0]`` training inliers not among the training rows ``idx``
    (the training rows themselves where none are left) and ``n_probe[1]`` rows of the other classes (equal
    shares), all from the training split."""
    rng = np.random.default_rng([seed, inlier, 77])
    n_in, n_out = n_probe
    rest = np.setdiff1d(np.flatnonzero(ytr == inlier), idx)
    pin = rng.permutation(rest if len(rest) else idx)[:n_in]
    others = [c for c in np.unique(ytr) if c != inlier]
    per = -(-n_out // max(1, len(others))) if n_out else 0
    pout = np.concatenate([rng.permutation(np.flatnonzero(ytr == c))[:per] for c in others])[:n_out] if per else \
        np.empty(0, int)
    return np.sort(pin), np.sort(pout)


def one_class_split(feats: dict, inlier: int, dim: int, n_train: int | None = None, seed: int = 0,
                    inputs: str = "zscore", noise: float = 0.0, n_probe: tuple = (0, 0)) -> Split:
    """Table 1's inputs for one inlier class, fitted on its ``n_train`` training rows only and applied to the
    whole test set (and the probe rows). ``inputs="sphere"`` (the paper's): the features on the unit
    hypersphere — reduced first by a truncated SVD to ``dim`` components where ``dim`` is below their own
    dimension, then put back on it — plus Gaussian noise of std ``noise``; ``"zscore"`` (our variant): a PCA to
    ``dim`` components, then a per-feature z-score. Labels 1 = outlier."""
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.preprocessing import StandardScaler
    from sklearn.pipeline import Pipeline
    if inputs not in ("sphere", "zscore"):
        raise InputError(f"inputs must be 'sphere' (the paper's) or 'zscore' (our variant), not {inputs!r}")
    xtr, ytr = feats["train"]
    xte, yte = feats["test"]
    idx = np.flatnonzero(ytr == inlier)
    if len(idx) < 2:
        raise InputError(f"class {inlier}: {len(idx)} training row(s); need at least 2")
    if n_train is not None and n_train < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, n_train, replace=False))
    dim = min(dim, len(idx), xtr.shape[1])
    pin, pout = _probe_rows(ytr, inlier, idx, n_probe, seed)
    xpr = np.r_[xtr[pin], xtr[pout]]
    # on one BLAS thread, whatever the caller's: a multi-threaded BLAS sums in another order, and a per-class
    # job (one thread) and the notebook's kernel (all cores) must compute the same bits
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        if inputs == "zscore":
            pca = PCA(n_components=dim, random_state=seed).fit(xtr[idx])
            z = StandardScaler().fit(pca.transform(xtr[idx]))
            prep = Pipeline([("pca", pca), ("zscore", z)])
            kept = float(pca.explained_variance_ratio_.sum())
        else:
            svd = TruncatedSVD(n_components=dim, random_state=seed).fit(xtr[idx]) if dim < xtr.shape[1] else None
            energy = float(np.square(svd.transform(xtr[idx])).sum() / np.square(xtr[idx]).sum()) if svd else 1.0
            prep, kept = SphereMap(svd, noise, seed * 1000 + int(inlier)), energy
        ztr, zte = prep.transform(xtr[idx]), prep.transform(xte)
        zpr = prep.transform(xpr) if len(xpr) else np.empty((0, ztr.shape[1]))
    # the split named by its inputs: the map's last bits depend on the BLAS, its threads and the process, and
    # must not decide a cache hit
    key = {"split": 2, "features": feats.get("key") or {"train": fingerprint(xtr), "test": fingerprint(xte),
                                                         "train_labels": fingerprint(np.asarray(ytr)),
                                                         "test_labels": fingerprint(np.asarray(yte))},
           "inlier": int(inlier), "inputs": inputs, "dim": int(dim), "n_train": None if n_train is None else int(n_train),
           "seed": int(seed), **({"noise": float(noise)} if inputs == "sphere" else {})}
    return Split(inlier, ztr.astype(np.float32), zte.astype(np.float32), (yte != inlier).astype(int), prep, kept,
                 inputs, zpr.astype(np.float32), np.r_[np.zeros(len(pin), int), np.ones(len(pout), int)], key)


def calibration_mask(y_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed, class-stratified half of the test set (True) held out to *calibrate* thresholds; the
    decision rates are measured on the other half. (AUROCs use the whole test set, as the paper.)"""
    rng = np.random.default_rng(seed + 12345)
    mask = np.zeros(len(y_test), bool)
    for c in np.unique(y_test):
        idx = np.flatnonzero(y_test == c)
        mask[rng.permutation(idx)[:len(idx) // 2]] = True
    return mask
