"""Small shared helpers: the one place that picks the device, sets seeds and the deterministic
settings, draws progress bars, and writes files atomically.

Determinism (what :func:`seed_everything` guarantees)
----------------------------------------------------
One call seeds Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device) and
switches torch to deterministic algorithms (``torch.use_deterministic_algorithms(True, warn_only=True)``,
``cudnn.deterministic = True``, ``cudnn.benchmark = False``). DataLoaders built with
:func:`seeded_loader` draw their shuffling from their own seeded generator and seed each worker
(:func:`seed_worker`), so the order does not depend on what ran before. The checkpoint cache runs every
training function inside :func:`rng_isolated`, so the random stream a chapter sees afterwards is the same
whether a checkpoint was trained or loaded (a warm, cold or half-filled cache gives the same numbers).

On the CPU this makes a rerun bit-identical on the same machine and torch build (tested in
``tests/test_determinism.py``). What is NOT guaranteed:

* across machines, CPU instruction sets (AVX2 vs AVX-512 kernels), thread counts and torch/MKL/oneDNN
  versions: floating-point sums are reduced in a different order;
* on CUDA, ops that have no deterministic kernel and only *warn* (``warn_only=True``): atomics in the
  backward of ``scatter_add``/``index_add``/``index_put(accumulate=True)``, ``F.interpolate``/
  ``upsample`` backward, ``nn.AdaptiveAvgPool2d`` backward, ``ctc_loss``, ``histc``, ``bincount`` with
  weights, ``embedding_bag`` backward, ...; cuBLAS reductions are deterministic only with
  ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (set here before CUDA starts, unless already set);
* on CUDA with ``CCC_DETERMINISTIC=0`` (faster): cuDNN then benchmarks and picks convolution algorithms
  per run (``cudnn.benchmark = True``), which changes the last bits of every conv result;
* CPU vs CUDA results never agree bit for bit (different kernels); the book's claims carry bounds that
  allow for that.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["get_device", "set_seed", "seed_everything", "configure_determinism", "deterministic_enabled",
           "rng_isolated", "seed_worker", "seeded_loader", "loader_options", "progress", "cache_dir", "data_root",
           "atomic_write_bytes", "atomic_write_json", "to_numpy", "cpu_threads"]


# cuBLAS reads this when CUDA initialises: it must be in the environment before the first CUDA call.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

_DEVICE_TYPES = ("cpu", "cuda", "mps")


@lru_cache(maxsize=1)
def get_device() -> torch.device:
    """The device every chapter uses: ``CCC_DEVICE`` if set (``cpu``, ``cuda``, ``cuda:1``, ``mps``),
    else cuda, else mps, else cpu. An unknown or unavailable ``CCC_DEVICE`` is an error naming the fix."""
    wanted = os.environ.get("CCC_DEVICE", "").strip()
    if wanted:
        try:
            dev = torch.device(wanted)
        except (RuntimeError, ValueError):
            raise RuntimeError(f"CCC_DEVICE={wanted!r} is not a device; use one of {', '.join(_DEVICE_TYPES)} "
                               f"(or cuda:N), or unset it to pick automatically") from None
        if dev.type not in _DEVICE_TYPES:
            raise RuntimeError(f"CCC_DEVICE={wanted!r}: device type {dev.type!r} is not supported; use one of "
                               f"{', '.join(_DEVICE_TYPES)}, or unset it")
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(f"CCC_DEVICE={wanted!r} but CUDA is not available; unset CCC_DEVICE or set it to 'cpu'.")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise RuntimeError(f"CCC_DEVICE={wanted!r} but only {torch.cuda.device_count()} CUDA device(s) "
                                   f"are visible; use cuda:0..cuda:{torch.cuda.device_count() - 1}")
        if dev.type == "mps" and not _mps_available():
            raise RuntimeError(f"CCC_DEVICE={wanted!r} but MPS is not available; unset CCC_DEVICE or set it to 'cpu'.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


@lru_cache(maxsize=1)
def sources_sha256() -> str:
    """SHA-256 of ccc_lib's ``.py`` sources (names and bytes): the code's identity, e.g. in a bundle's
    manifest and in :func:`ccc_lib.parallel.run_jobs`'s record of a finished call."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def deterministic_enabled() -> bool:
    """Deterministic algorithms on (the default) unless ``CCC_DETERMINISTIC`` is 0/false/no/off."""
    return os.environ.get("CCC_DETERMINISTIC", "1").strip().lower() not in ("0", "false", "no", "off")


def configure_determinism(deterministic: bool | None = None) -> bool:
    """Switch torch to deterministic algorithms (default, see the module docstring) or, with
    ``deterministic=False`` / ``CCC_DETERMINISTIC=0``, to the fastest ones (``cudnn.benchmark = True``
    on CUDA: the right choice for long GPU runs of fixed-size batches, at the cost of bitwise
    reproducibility). Returns the mode set. Idempotent and cheap; :func:`seed_everything` calls it."""
    det = deterministic_enabled() if deterministic is None else bool(deterministic)
    import sys
    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(det, warn_only=True)
    else:
        # torch.use_deterministic_algorithms also imports torch._inductor to set its config (about 2 s in every
        # kernel and worker); the book compiles nothing, so only the flag itself is set until inductor is loaded
        torch._C._set_deterministic_algorithms(det, warn_only=True)
    # torch's deterministic mode also fills every torch.empty() with NaN (to expose reads of uninitialised
    # memory); that costs ~10 % of a CPU training step here (benchmarks/determinism_overhead.py) and no
    # torch kernel depends on it, so it stays off.
    if hasattr(torch.utils, "deterministic"):
        torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.deterministic = det
    torch.backends.cudnn.benchmark = not det
    return det


def seed_everything(seed: int, deterministic: bool | None = None) -> None:
    """Seed Python, NumPy and torch (all devices) at once and set the deterministic settings
    (:func:`configure_determinism`). Every seeded entry point of the book goes through here."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        from .checks import InputError
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    configure_determinism(deterministic)


#: the historical name, kept: same function
set_seed = seed_everything


@contextmanager
def rng_isolated():
    """Run the enclosed code on its own random stream: Python's, NumPy's and torch's (CPU and CUDA)
    generator states are saved and restored afterwards, so code after the block sees the same random
    numbers whether or not the block ran (the cache trains inside this)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices, enabled=True):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoaders: seed NumPy and Python in each worker from torch's
    per-worker seed (which the loader's generator determines)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def loader_options(device: torch.device | None = None) -> dict:
    """DataLoader options for the device: on CUDA pinned memory and ``CCC_WORKERS`` worker processes
    (default: min(4, CPU count)) kept alive between epochs so host-to-device copies overlap compute;
    on the CPU none (the data are in-memory tensors: workers would only add pickling)."""
    dev = device or get_device()
    if dev.type != "cuda":
        return {"num_workers": 0, "pin_memory": False}
    env = os.environ.get("CCC_WORKERS")
    n = int(env) if env not in (None, "") else min(4, os.cpu_count() or 1)
    return {"num_workers": n, "pin_memory": True, "persistent_workers": n > 0}


def seeded_loader(dataset, batch_size: int, *, shuffle: bool, seed: int, device: torch.device | None = None,
                  drop_last: bool = False):
    """A DataLoader whose order depends only on ``seed`` (its own generator, seeded workers), with
    :func:`loader_options` for the device."""
    from torch.utils.data import DataLoader
    g = torch.Generator().manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last,
                      worker_init_fn=seed_worker, **loader_options(device))


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


#: the environment variables that hold paths; :func:`absolutize_env` makes them absolute
PATH_ENV = ("CCC_CACHE", "CCC_DATA", "CCC_DRY_DATA", "CCC_METRICS_DIR", "CCC_ROOT")


def absolute_path(path: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
    """The one rule for every path the project accepts or passes on: ``~`` expanded, then made absolute
    against ``base`` (default: the working directory of the process that received it), ``..`` folded.
    Applied once, where a path enters (a command-line option, an environment variable), before it
    reaches a kernel or a subprocess, which may run in another working directory (papermill starts
    every kernel in ``notebooks/``)."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(base if base is not None else os.getcwd()) / p
    return Path(os.path.normpath(p))


def absolutize_env(env=None, base: str | os.PathLike | None = None) -> dict:
    """Make every path variable of :data:`PATH_ENV` in ``env`` (default ``os.environ``) absolute, in
    place, against ``base`` (default: the working directory); returns what changed ``{name: (old, new)}``.
    The runner calls it first, so the kernels it starts inherit absolute paths."""
    env = os.environ if env is None else env
    changed = {}
    for name in PATH_ENV:
        value = env.get(name)
        if value and str(absolute_path(value, base)) != value:
            changed[name] = (value, str(absolute_path(value, base)))
            env[name] = changed[name][1]
    return changed


def cache_dir() -> Path:
    """Where checkpoints and metrics go: ``CCC_CACHE`` or ``~/.cache/ccc_lib`` (always absolute)."""
    root = absolute_path(os.environ.get("CCC_CACHE") or Path.home() / ".cache" / "ccc_lib")
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: the argument, else ``CCC_DATA``, else ``<cache>/data`` (always absolute)."""
    if root is None:
        root = os.environ.get("CCC_DATA") or (cache_dir() / "data")
    root = absolute_path(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (read in 1 MiB blocks): the bundle's sha256, the dry run's md5."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        os.chmod(tmp, 0o666 & ~_umask())        # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
