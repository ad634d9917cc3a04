"""Generated files for the dry run of ``full`` (profile ``full_dry``): tiny, learnable-ish images
written in the *real* on-disk formats, so that torchvision's own dataset classes read them.

``python -m ccc_lib run --profile full_dry`` (or ``run --profile full --dry-run``) calls
:func:`ensure_dry_data` and points ``CCC_DATA`` at the folder it returns. The folder holds

* ``MNIST/raw/`` and ``FashionMNIST/raw/``: IDX files under torchvision's names (10 classes, 1×28×28);
* ``EMNIST/raw/emnist-balanced-*``: IDX files, 47 classes, stored transposed as EMNIST is;
* ``SVHN/{train,test}_32x32.mat``: MATLAB files with ``X`` (32×32×3×N) and ``y`` (label 10 = digit 0);
* ``cifar-10-batches-py/``: five pickled training batches, ``test_batch`` and ``batches.meta``;
* ``DRY_RUN_MANIFEST.json``: what was generated (sizes, md5 sums, the generator's version).

The images are NOT the datasets whose formats they borrow: each class is a fixed random smooth
pattern (per set, per class) plus noise and a small random shift, so a classifier can learn them
and every training loop has something to do. Class names in the files say "generated". Nothing
read from this folder is a result; the runner marks every page of a dry run as such, and
``python -m ccc_lib book`` refuses to build from it.

The md5 sums of SVHN and CIFAR-10 files are checked by torchvision against its tables of the real
files; :mod:`ccc_lib.data` reads a dry folder through subclasses whose tables come from this
manifest (no library internals are patched)."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MANIFEST", "GENERATOR_VERSION", "DRY_SETS", "DrySet", "is_dry_root", "read_manifest",
           "dry_data_root", "write_dry_data", "ensure_dry_data", "activate", "BANNER"]

MANIFEST = "DRY_RUN_MANIFEST.json"
#: bump when the generated files change meaning (the default folder name carries it)
GENERATOR_VERSION = 1
#: the visible mark of every page of a dry run
BANNER = "DRY RUN on generated files — not results"


@dataclass(frozen=True)
class DrySet:
    """One generated set: classes, per-class counts and the image shape (C, H, W)."""
    name: str
    classes: int
    shape: tuple
    train_per_class: int
    test_per_class: int
    seed: int


#: what ``full`` loads, shrunk: the five torchvision-backed sets
DRY_SETS = {
    "mnist": DrySet("mnist", 10, (1, 28, 28), 100, 50, 11),
    "fashion_mnist": DrySet("fashion_mnist", 10, (1, 28, 28), 100, 50, 23),
    "emnist": DrySet("emnist", 47, (1, 28, 28), 40, 20, 37),
    "svhn": DrySet("svhn", 10, (3, 32, 32), 100, 50, 41),
    "cifar10": DrySet("cifar10", 10, (3, 32, 32), 100, 50, 53),
}


# --------------------------------------------------------------------------- images

def _smooth_pattern(rng: np.random.Generator, shape) -> np.ndarray:
    """A smooth random C×H×W pattern in [0, 1]: a coarse 7×7 grid upsampled bilinearly."""
    c, h, w = shape
    coarse = rng.random((c, 7, 7))
    yi = np.linspace(0, 6, h)
    xi = np.linspace(0, 6, w)
    y0 = np.floor(yi).astype(int).clip(0, 5)
    x0 = np.floor(xi).astype(int).clip(0, 5)
    fy = (yi - y0)[:, None]
    fx = (xi - x0)[None, :]
    out = np.empty((c, h, w))
    for ch in range(c):
        g = coarse[ch]
        a = g[y0][:, x0]
        b = g[y0][:, x0 + 1]
        cc = g[y0 + 1][:, x0]
        d = g[y0 + 1][:, x0 + 1]
        out[ch] = (a * (1 - fx) + b * fx) * (1 - fy) + (cc * (1 - fx) + d * fx) * fy
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-8)


def generate_images(spec: DrySet, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` for a split: uint8 N×C×H×W (class pattern + noise + shift), int labels.
    Deterministic in (set, split); the train and test images differ, the class patterns do not."""
    proto_rng = np.random.default_rng(spec.seed)
    protos = np.stack([_smooth_pattern(proto_rng, spec.shape) for _ in range(spec.classes)])
    per_class = spec.train_per_class if split == "train" else spec.test_per_class
    rng = np.random.default_rng(spec.seed * 1000 + (1 if split == "train" else 2))
    labels = np.tile(np.arange(spec.classes), per_class)
    rng.shuffle(labels)
    n = len(labels)
    c, h, w = spec.shape
    x = protos[labels] * rng.uniform(0.6, 1.0, size=(n, 1, 1, 1))
    shifts = rng.integers(-2, 3, size=(n, 2))
    for i, (dy, dx) in enumerate(shifts):
        x[i] = np.roll(x[i], (int(dy), int(dx)), axis=(1, 2))
    x = x + rng.normal(0.0, 0.15, size=x.shape)
    return (x.clip(0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


def class_names(spec: DrySet) -> list[str]:
    return [f"generated {i}" for i in range(spec.classes)]


# --------------------------------------------------------------------------- writers (real formats)

def write_idx_images(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 0x08, 3))
        fh.write(struct.pack(">III", *arr.shape))
        fh.write(arr.tobytes())


def write_idx_labels(path: Path, lab: np.ndarray) -> None:
    lab = np.asarray(lab, dtype=np.uint8)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 0x08, 1))
        fh.write(struct.pack(">I", len(lab)))
        fh.write(lab.tobytes())


def _write_idx_set(root: Path, folder: str, prefix: str, spec: DrySet, transpose: bool) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    names = {"train": "train", "test": "test" if prefix else "t10k"}
    for split in ("train", "test"):
        x, y = generate_images(spec, split)
        imgs = x[:, 0]
        if transpose:                       # EMNIST's files hold each image transposed
            imgs = imgs.transpose(0, 2, 1)
        write_idx_images(raw / f"{prefix}{names[split]}-images-idx3-ubyte", np.ascontiguousarray(imgs))
        write_idx_labels(raw / f"{prefix}{names[split]}-labels-idx1-ubyte", y)


def _write_svhn(root: Path, spec: DrySet) -> None:
    import scipy.io
    d = root / "SVHN"
    d.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x, y = generate_images(spec, split)
        X = np.ascontiguousarray(x.transpose(2, 3, 1, 0))         # 32×32×3×N as in the real files
        lab = np.where(y == 0, 10, y).astype(np.uint8)[:, None]   # SVHN stores digit 0 as label 10
        scipy.io.savemat(d / f"{split}_32x32.mat", {"X": X, "y": lab})


def _write_cifar10(root: Path, spec: DrySet) -> None:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    x, y = generate_images(spec, "train")
    flat = x.reshape(len(x), -1)                                  # R plane, G plane, B plane (row-major)
    for i, part in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
        with open(d / f"data_batch_{i}", "wb") as fh:
            pickle.dump({"batch_label": f"generated batch {i} of 5", "data": flat[part],
                         "labels": y[part].tolist(), "filenames": [f"generated_{j}.png" for j in part]}, fh)
    xt, yt = generate_images(spec, "test")
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({"batch_label": "generated test batch", "data": xt.reshape(len(xt), -1),
                     "labels": yt.tolist(), "filenames": [f"generated_{j}.png" for j in range(len(yt))]}, fh)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": class_names(spec), "num_cases_per_batch": len(y) // 5,
                     "num_vis": 3072}, fh)


def _md5(path: Path) -> str:
    from .utils import file_digest
    return file_digest(path, "md5")


def write_dry_data(root, sets: dict | None = None) -> Path:
    """Write every dry-run set under ``root`` (which must not exist or be empty) and its manifest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sets = DRY_SETS if sets is None else sets
    for name, spec in sets.items():
        if name == "mnist":
            _write_idx_set(root, "MNIST", "", spec, transpose=False)
        elif name == "fashion_mnist":
            _write_idx_set(root, "FashionMNIST", "", spec, transpose=False)
        elif name == "emnist":
            _write_idx_set(root, "EMNIST", "emnist-balanced-", spec, transpose=True)
        elif name == "svhn":
            _write_svhn(root, spec)
        elif name == "cifar10":
            _write_cifar10(root, spec)
        else:
            raise KeyError(f"no dry-run writer for {name!r}; known: {', '.join(DRY_SETS)}")
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(root).as_posix()] = {"bytes": p.stat().st_size, "md5": _md5(p)}
    manifest = {
        "generator": "ccc_lib.dryrun", "version": GENERATOR_VERSION,
        "note": "GENERATED files in the formats of MNIST, Fashion-MNIST, EMNIST (balanced), SVHN and "
                "CIFAR-10 for the dry run of the 'full' profile. They are not those datasets; nothing "
                "computed from them is a result.",
        "sets": {n: {"classes": s.classes, "shape": list(s.shape), "train": s.classes * s.train_per_class,
                     "test": s.classes * s.test_per_class, "class_names": class_names(s)}
                 for n, s in sets.items()},
        "files": files,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return root


# --------------------------------------------------------------------------- reading and placing

def is_dry_root(root) -> bool:
    return root is not None and (Path(root) / MANIFEST).is_file()


def read_manifest(root) -> dict:
    path = Path(root) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"dry-run manifest {path} unreadable ({exc}); delete {Path(root)} and run "
                           "'python -m ccc_lib run --profile full_dry' to write it again") from exc


def file_md5(root, relpath: str) -> str:
    """The md5 the manifest records for a generated file (what the dry-run dataset classes check)."""
    entry = read_manifest(root)["files"].get(relpath)
    if entry is None:
        raise RuntimeError(f"{relpath} is not in the dry-run manifest of {root}")
    return entry["md5"]


def dry_data_root() -> Path:
    """The scratch folder of the dry run: ``CCC_DRY_DATA`` or ``<cache>/dry_run_data_v<version>``."""
    from .utils import absolute_path, cache_dir
    env = os.environ.get("CCC_DRY_DATA")
    if env:
        return absolute_path(env)
    return cache_dir() / f"dry_run_data_v{GENERATOR_VERSION}"


def ensure_dry_data(root=None) -> Path:
    """The dry-run folder, written first if missing (atomically: built beside it, then renamed, so
    concurrent runs never see half a folder)."""
    from .utils import absolute_path
    root = absolute_path(root) if root is not None else dry_data_root()
    if is_dry_root(root):
        man = read_manifest(root)
        if man.get("version") == GENERATOR_VERSION and all(
                (root / f).is_file() and (root / f).stat().st_size == e["bytes"] for f, e in man["files"].items()):
            return root
        raise RuntimeError(f"{root} holds dry-run files of another version or incomplete files; delete it "
                           "and run again")
    if root.exists() and any(root.iterdir()):
        raise RuntimeError(f"{root} exists, is not empty and holds no {MANIFEST}: refusing to write "
                           "generated files into what may be real data (set CCC_DRY_DATA elsewhere)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        write_dry_data(tmp)
        try:
            if root.exists():
                root.rmdir()                 # an empty folder
            os.rename(tmp, root)
        except OSError:
            if not is_dry_root(root):        # someone else won the race: theirs is fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def activate(profile=None) -> Path | None:
    """For a dry-run profile: make sure the generated files exist and point ``CCC_DATA`` at them
    (unless it already points at a dry-run folder); returns that folder, or None for other profiles,
    which are refused when ``CCC_DATA`` points at generated files (they would pass for real data).
    The runner calls this; a notebook run by hand at ``full_dry`` may call it too."""
    from .profiles import get_profile
    prof = get_profile(profile)
    current = os.environ.get("CCC_DATA")
    if not prof.dry_run:
        if current and is_dry_root(current):
            raise RuntimeError(f"CCC_DATA={current} holds the dry run's GENERATED files, but profile "
                               f"{prof.name!r} is not a dry run: unset CCC_DATA or point it at real data")
        return None
    if current and is_dry_root(current):
        return Path(current)
    root = ensure_dry_data()
    os.environ["CCC_DATA"] = str(root)
    return root


def summary(root) -> str:
    """A few lines on what the dry-run folder holds (for the runner's log)."""
    man = read_manifest(root)
    total = sum(e["bytes"] for e in man["files"].values())
    sets = ", ".join(f"{n} ({s['classes']} classes, {s['train']}+{s['test']} images {tuple(s['shape'])})"
                     for n, s in man["sets"].items())
    return f"dry-run data (generated, not the real sets): {root} — {total / 1e6:.1f} MB; {sets}"
