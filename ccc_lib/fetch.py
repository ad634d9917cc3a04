"""Prefetch for offline GPU nodes: what ``python -m ccc_lib fetch --profile full`` (:mod:`ccc_lib.cli.fetch`) does.

Compute nodes on clusters often have no internet. This module lists every file a profile needs
(datasets under ``CCC_DATA``, the ImageNet ResNet-18 weights in torch's hub cache), checks what is
present (torchvision's own md5 tables where it keeps them, sizes and existence otherwise), and
downloads what is missing through torchvision's dataset classes and weights API, which verify
their checksums. Offline it lists what is missing with sizes and the exact command to run where
there is a network, and exits non-zero. ``python -m ccc_lib run --profile full`` calls
:func:`missing_for` first and stops in seconds with the same list."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .profiles import Profile, get_profile

__all__ = ["Need", "needs_for", "missing_for", "missing_report", "fetch"]


@dataclass
class Need:
    """One thing a profile needs: a dataset or a weight file."""
    name: str                        # "mnist", "resnet18_imagenet", ...
    kind: str                        # "dataset" or "weights"
    download_mb: float               # what the download weighs (published sizes, MB = 10^6 bytes)
    where: str                       # the folder it lands in
    present: Callable[[], bool]      # cheap check (existence / torchvision's md5 table)
    download: Callable[[], None]     # torchvision's own downloader (verifies checksums)

    def line(self) -> str:
        return f"  {self.name:18s} {self.kind:8s} {self.download_mb:8.1f} MB  -> {self.where}"


def _data_root() -> Path:
    from .utils import data_root
    return data_root()


def _idx_present(folder: Path, names) -> Callable[[], bool]:
    return lambda: all((folder / n).is_file() and (folder / n).stat().st_size > 0 for n in names)


def _md5_present(pairs) -> Callable[[], bool]:
    def check() -> bool:
        from torchvision.datasets.utils import check_integrity
        return all(check_integrity(str(p), md5) for p, md5 in pairs)
    return check


def _dataset_needs(name: str, root: Path) -> Need:
    import torchvision.datasets as tvd
    mnist_files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if name == "mnist":
        return Need(name, "dataset", 11.6, str(root / "MNIST"), _idx_present(root / "MNIST" / "raw", mnist_files),
                    lambda: [tvd.MNIST(root, train=t, download=True) for t in (True, False)] and None)
    if name == "fashion_mnist":
        from .data import stage_debian_fashion
        stage_debian_fashion(root)        # Debian's package, where installed, is used before any download
        return Need(name, "dataset", 30.9, str(root / "FashionMNIST"),
                    _idx_present(root / "FashionMNIST" / "raw", mnist_files),
                    lambda: [tvd.FashionMNIST(root, train=t, download=True) for t in (True, False)] and None)
    if name == "emnist":
        files = [f"emnist-balanced-{s}-{k}" for s in ("train", "test")
                 for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]
        return Need(name, "dataset", 561.8, str(root / "EMNIST"), _idx_present(root / "EMNIST" / "raw", files),
                    lambda: [tvd.EMNIST(root, split="balanced", train=t, download=True) for t in (True, False)] and None)
    if name == "svhn":
        pairs = [(root / "SVHN" / tvd.SVHN.split_list[s][1], tvd.SVHN.split_list[s][2]) for s in ("train", "test")]
        return Need(name, "dataset", 246.3, str(root / "SVHN"), _md5_present(pairs),
                    lambda: [tvd.SVHN(root / "SVHN", split=s, download=True) for s in ("train", "test")] and None)
    if name == "cifar10":
        base = root / tvd.CIFAR10.base_folder
        pairs = [(base / f, md5) for f, md5 in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list]
        pairs.append((base / tvd.CIFAR10.meta["filename"], tvd.CIFAR10.meta["md5"]))
        return Need(name, "dataset", 170.5, str(root), _md5_present(pairs),
                    lambda: [tvd.CIFAR10(root, train=t, download=True) for t in (True, False)] and None)
    raise KeyError(f"no fetch recipe for dataset {name!r}")


def _resnet18_need() -> Need:
    import torch
    from torchvision.models import ResNet18_Weights
    w = ResNet18_Weights.IMAGENET1K_V1
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name

    def download():
        # torchvision's weights API: downloads into torch's hub cache and checks the hash in the file name
        w.get_state_dict(progress=False, check_hash=True)
    return Need("resnet18_imagenet", "weights", 46.8, str(target.parent), target.is_file, download)


def needs_for(profile: str | Profile | None = None) -> list[Need]:
    """Everything ``profile`` downloads: the classifier datasets, their OOD sets, chapter 4's sets
    (CIFAR-10 and EMNIST balanced at ``full``) and, at ``full``, chapter 3's ResNet-18 weights."""
    prof = get_profile(profile)
    if not prof.download:
        return []
    from .data import DATASETS
    names = list(prof.classifier_datasets)
    for sets in prof.ood_sets.values():
        names += list(sets)
    if prof.scale == "full":
        names += ["cifar10", "emnist"]          # chapter 4 at full (ccc_lib.drift SETTINGS["full"])
    root = _data_root()
    out = [_dataset_needs(n, root) for n in dict.fromkeys(names)
           if DATASETS.get(n, ("",))[0] == "torchvision"]
    if prof.scale == "full":
        out.append(_resnet18_need())            # chapter 3 at full (ImageNet ResNet-18 features)
    return out


def missing_for(profile: str | Profile | None = None) -> list[Need]:
    return [n for n in needs_for(profile) if not n.present()]


def missing_report(missing: list[Need], profile: str) -> str:
    total = sum(n.download_mb for n in missing)
    lines = [f"profile '{profile}' needs {len(missing)} item(s) that are not here ({total:.0f} MB to download):"]
    lines += [n.line() for n in missing]
    lines += ["On a machine with internet access (the same CCC_DATA folder and torch hub cache, e.g. the "
              "cluster's login node), run:",
              f"    CCC_DATA={_data_root()} python -m ccc_lib fetch --profile {profile}",
              "then run the book again here."]
    return "\n".join(lines)


def fetch(profile: str | Profile | None = None, timeout: float = 30.0, log=print) -> list[Need]:
    """Download what is missing; returns what is still missing afterwards (empty on success)."""
    prof = get_profile(profile)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)          # no hang offline: every connection attempt is bounded
    failed = []
    try:
        for need in needs_for(prof):
            if need.present():
                log(f"present  {need.name:18s} {need.where}")
                continue
            log(f"fetching {need.name:18s} (~{need.download_mb:.1f} MB) -> {need.where}")
            try:
                need.download()
            except Exception as exc:            # network errors, checksum errors: reported, not raised
                log(f"  FAILED: {type(exc).__name__}: {exc}")
                failed.append(need)
                continue
            if not need.present():
                log("  FAILED: files still missing or not matching torchvision's checksums")
                failed.append(need)
            else:
                log(f"  ok: {_size_on_disk(Path(need.where)) / 1e6:.1f} MB on disk, checksums verified")
    finally:
        socket.setdefaulttimeout(old)
    return failed


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
