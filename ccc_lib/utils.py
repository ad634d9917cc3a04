"""Small shared helpers: the one place that picks the device, sets seeds,
draws progress bars, and writes files atomically."""
from __future__ import annotations

import json
import os
import random
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["get_device", "set_seed", "progress", "cache_dir", "data_root",
           "atomic_write_bytes", "atomic_write_json", "to_numpy", "cpu_threads"]


@lru_cache(maxsize=1)
def get_device() -> torch.device:
    """The device every chapter uses: ``CCC_DEVICE`` if set, else cuda, else mps, else cpu."""
    wanted = os.environ.get("CCC_DEVICE")
    if wanted:
        dev = torch.device(wanted)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"CCC_DEVICE={wanted!r} but CUDA is not available; unset CCC_DEVICE or set it to 'cpu'.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) at once."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def progress(iterable=None, **kwargs):
    """A tqdm bar: a widget in a live notebook, plain text elsewhere, off when
    ``CCC_PROGRESS=off`` (the runner and the test suite set that)."""
    mode = os.environ.get("CCC_PROGRESS", "auto").lower()
    kwargs.setdefault("disable", mode in ("off", "0", "false", "no"))
    kwargs.setdefault("mininterval", 0.5)
    if mode == "plain":
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def cache_dir() -> Path:
    """Where checkpoints and metrics go: ``CCC_CACHE`` or ``~/.cache/ccc_lib``."""
    root = Path(os.environ.get("CCC_CACHE", Path.home() / ".cache" / "ccc_lib")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: the argument, else ``CCC_DATA``, else ``<cache>/data``."""
    if root is None:
        root = os.environ.get("CCC_DATA") or (cache_dir() / "data")
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode())


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


@contextmanager
def cpu_threads(n: int | None = 1):
    """Run the enclosed torch code with ``n`` CPU threads (restored afterwards). Small models (tiny
    INNs, one-image attacks): one thread is as fast as two and immune to contention from other processes,
    where a second OpenMP thread can slow each small matmul down by an order of magnitude."""
    old = torch.get_num_threads()
    if n and get_device().type == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
