"""A checkpoint cache: "load the checkpoint if present, else train".

A checkpoint is keyed by a hash of everything that determines the trained weights (a config
dict the caller gives: model config, dataset, profile, seed, ...). Files hold the state_dict,
the key and a small metadata dict; they are written atomically and read with
``torch.load(weights_only=True)``. A corrupt or mismatching file is reported and rebuilt,
never a crash.

Interrupted and concurrent runs
-------------------------------
* A checkpoint appears only complete (written to a temporary file, fsynced, renamed), so a run killed
  while training or writing leaves either no file or the whole file: the rerun resumes from every
  checkpoint already written and trains the rest.
* Building is *claimed* with an exclusive ``fcntl.flock`` on ``<checkpoint>.lock``
  (:mod:`ccc_lib.cache_files`, which also looks after the folder: listing, pruning): when two processes
  (two chapters running side by side on one cache) ask for the same missing checkpoint, one trains and
  the other waits, then loads what the first wrote; nothing is trained twice or half-read. A lock held
  by a process that dies is released by the OS, so a killed run never blocks the next one. Waiting
  longer than ``CCC_LOCK_TIMEOUT`` seconds (default 6 h) raises :class:`CacheLockTimeout` naming the
  lock file and the process holding it.
* Training runs inside :func:`ccc_lib.utils.rng_isolated`: the random stream the caller sees afterwards
  is the same whether the checkpoint was trained or loaded, so a warm, cold or half-filled cache gives
  the same numbers downstream."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .cache_files import (CacheEntry, CacheLockTimeout, build_lock, cache_entries, mark_used, parse_duration,
                          prune)
from .utils import atomic_write_bytes, cache_dir, rng_isolated

__all__ = ["config_hash", "checkpoint_path", "load_or_train", "load_or_compute", "load_or_compute_value", "cached",
           "fingerprint", "arg_identity", "NotCached", "CacheLockTimeout", "build_lock", "mark_used", "CACHE_VERSION",
           "CacheEntry", "cache_entries", "prune", "parse_duration"]

#: bump to invalidate every checkpoint when training code changes meaning
CACHE_VERSION = 1


class NotCached(LookupError):
    """``load_or_train(..., cache_only=True)`` found no usable checkpoint (and trained nothing)."""


def _stable(o):
    """JSON stand-in for a config value JSON cannot write: tensors, arrays and modules by their
    :func:`fingerprint` (never their truncated repr), dataclasses as dicts, NumPy scalars as numbers,
    paths as text. An object whose text is its memory address would give a new key every run: refused."""
    import dataclasses
    import numpy as np
    if isinstance(o, (torch.Tensor, np.ndarray, nn.Module)):
        return f"fingerprint:{fingerprint(o)}"
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    text = str(o)
    if " at 0x" in text:
        raise TypeError(f"cache key: {type(o).__name__} has no stable text ({text}); put its settings in the "
                        f"config (a dict, a dataclass) or its numbers via fingerprint(...)")
    return text


def config_hash(config: dict) -> str:
    """Short SHA-256 of a config dict (plus :data:`CACHE_VERSION`); see :func:`_stable` for values
    that are not plain JSON."""
    if not isinstance(config, dict):
        from .checks import InputError
        raise InputError(f"cache config must be a dict of what determines the result, got {type(config).__name__}")
    blob = json.dumps({"v": CACHE_VERSION, **config}, sort_keys=True, default=_stable)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_KIND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def checkpoint_path(kind: str, config: dict, root=None) -> Path:
    if not isinstance(kind, str) or not _KIND.match(kind) or ".." in kind:
        from .checks import InputError
        raise InputError(f"cache kind {kind!r} must be a plain file-name stem (letters, digits, _ . + -), "
                         f"e.g. 'classifier-mnist'")
    root = Path(root) if root is not None else cache_dir() / "checkpoints"
    return root / f"{kind}-{config_hash(config)}.pt"


def _read_blob(path: Path, key: str) -> dict:
    """A cache file's contents, checked to belong to ``key`` (raises on a corrupt or foreign file)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("key") != key:
        raise ValueError("key mismatch (the file belongs to another configuration)")
    return blob


def _get_or_build(kind: str, config: dict, root, unpack: Callable[[dict], object],
                  build: Callable[[], tuple], *, what: str, redo: str, force: bool = False,
                  cache_only: bool = False, lock_timeout: float | None = None) -> tuple:
    """The one read / lock / build / write path behind :func:`load_or_train`, :func:`load_or_compute`
    and :func:`cached`. ``unpack(blob)`` turns a stored file's contents into the result (raising on an
    unusable one); ``build()`` returns ``(fields to store beside key, kind and config, result)`` and
    runs on its own random stream, under the artefact's build lock, after a second look at the file
    (another process may have built it while we waited). Returns ``(result, from_cache, path)``."""
    path = checkpoint_path(kind, config, root)
    key = config_hash(config)

    def read(quiet: bool):
        if not path.exists():
            return None
        try:
            hit = (unpack(_read_blob(path, key)),)
            mark_used(path)
            return hit
        except Exception as exc:      # corrupt, truncated, foreign, wrong architecture, ...
            if not quiet:             # (the first look is quiet: the look under the lock warns)
                warnings.warn(f"{what} {path} is unusable ({type(exc).__name__}: {exc}); {redo} it.",
                              RuntimeWarning, stacklevel=4)
            return None

    if not force:
        hit = read(True)
        if hit is not None:
            return hit[0], True, path
    if cache_only:
        if path.exists():
            read(False)                               # say why the file is unusable
        raise NotCached(f"no usable {kind!r} {what.split()[-1]} at {path}")
    with build_lock(path, lock_timeout):
        if not force:
            hit = read(False)
            if hit is not None:
                return hit[0], True, path
        with rng_isolated():
            fields, result = build()
        buf = io.BytesIO()
        torch.save({"key": key, "kind": kind, "config": json.dumps(config, sort_keys=True, default=str),
                    **fields}, buf)
        atomic_write_bytes(path, buf.getvalue())
    return result, False, path



def load_or_train(module: nn.Module, kind: str, config: dict, train_fn: Callable[[nn.Module], dict],
                  *, root=None, force: bool = False, cache_only: bool = False,
                  lock_timeout: float | None = None) -> dict:
    """Fill ``module`` from the cache, or call ``train_fn(module)`` and cache the result.

    ``train_fn`` trains the module in place and returns a JSON-serialisable dict of metadata
    (losses, timings, ...). Returns that metadata with ``from_cache`` and ``path`` added.
    With ``cache_only=True`` a missing or unusable checkpoint raises :class:`NotCached` instead
    of training (for a chapter that reuses what another chapter trains). Concurrent callers are
    serialised per checkpoint (see the module docstring); ``train_fn`` runs on its own random stream."""
    def unpack(blob):
        module.load_state_dict(blob["state_dict"], strict=True)
        return json.loads(blob.get("meta", "{}"))

    def build():
        meta = train_fn(module) or {}
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        return {"state_dict": state, "meta": json.dumps(meta, default=_jsonable)}, meta

    meta, hit, path = _get_or_build(kind, config, root, unpack, build, what="checkpoint", redo="rebuilding",
                                    force=force, cache_only=cache_only, lock_timeout=lock_timeout)
    return {**meta, "from_cache": hit, "path": str(path)}


def _jsonable(o):
    try:
        return o.item()
    except Exception:
        return str(o)


def fingerprint(obj) -> str:
    """The one identity function of the book: a short SHA-256 of a module's ``state_dict`` (names,
    dtypes, shapes and values), of a tensor / array, or of a dict/list/tuple of those. Two objects
    with the same fingerprint hold the same numbers; use it in cache keys instead of ``id()``."""
    import numpy as np
    h = hashlib.sha256()

    def feed(o):
        if isinstance(o, nn.Module):
            feed(o.state_dict())
        elif isinstance(o, dict):
            for k in sorted(o, key=str):
                h.update(str(k).encode())
                feed(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(f"seq{len(o)}".encode())
            for v in o:
                feed(v)
        elif isinstance(o, torch.Tensor):
            t = o.detach()
            if t.is_sparse:
                t = t.to_dense()
            t = t.cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, np.ndarray):
            a = np.ascontiguousarray(o)
            if a.dtype == object:
                raise TypeError("fingerprint: an object array has no stable bytes; convert it to numbers first")
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(o, sort_keys=True, default=_stable).encode())

    feed(obj)
    return h.hexdigest()[:16]


def load_or_compute(kind: str, config: dict, compute_fn: Callable[[], dict], *, root=None,
                    force: bool = False, cache_only: bool = False, lock_timeout: float | None = None) -> dict:
    """The cache for tensor artefacts (gray data, features, score arrays): ``compute_fn()`` returns a
    dict of tensors (and JSON-serialisable extras under ``"meta"``); it is stored atomically under
    ``kind`` and a hash of ``config`` and read back with ``weights_only=True``. A corrupt or
    mismatching file is reported and recomputed. Returns the dict with ``from_cache`` added.
    Put model identities in ``config`` with :func:`fingerprint`. Concurrent callers are serialised
    per artefact and ``compute_fn`` runs on its own random stream, as in :func:`load_or_train`."""
    def unpack(blob):
        return {**blob["tensors"], "meta": json.loads(blob.get("meta", "{}"))}

    def build():
        result = dict(compute_fn())
        meta = result.pop("meta", {})
        tensors = {}
        for k, v in result.items():
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"load_or_compute({kind!r}): compute_fn returned {k}={type(v).__name__}; return "
                                "tensors, and JSON-serialisable extras under 'meta'")
            tensors[k] = v.detach().cpu().contiguous()
        return {"tensors": tensors, "meta": json.dumps(meta, default=_jsonable)}, {**tensors, "meta": meta}

    out, hit, _ = _get_or_build(kind, config, root, unpack, build, what="cached artefact", redo="recomputing",
                                force=force, cache_only=cache_only, lock_timeout=lock_timeout)
    return {**out, "from_cache": hit}


# --------------------------------------------------------------------------- results of deterministic functions

def arg_identity(v):
    """A small, JSON-able stand-in for an argument of a :func:`cached` function: numbers, text and
    containers as themselves, tensors, arrays and modules by :func:`fingerprint`, dataclasses (e.g.
    ``TensorData``) field by field. An object with no stable identity is refused (see :func:`_stable`)."""
    import dataclasses
    import numpy as np
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (torch.Tensor, np.ndarray, nn.Module)):
        return f"fingerprint:{fingerprint(v)}"
    if isinstance(v, np.generic):
        return v.item()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"__type__": type(v).__qualname__,
                **{f.name: arg_identity(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    if isinstance(v, dict):
        return {str(k): arg_identity(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [arg_identity(x) for x in v]
    return _stable(v)


def _encode(o):
    """A result as what ``torch.load(weights_only=True)`` reads back: tensors, numbers, text, lists
    and dicts, with markers for arrays, tuples, non-text dict keys and ccc_lib's dataclasses."""
    import dataclasses
    import numpy as np
    if o is None or isinstance(o, (bool, int, float, str, torch.Tensor)):
        return o.detach().cpu().contiguous() if isinstance(o, torch.Tensor) else o
    if isinstance(o, np.ndarray):
        if o.dtype == object:
            raise TypeError("cached: an object array cannot be stored; return numbers")
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(o))}
    if isinstance(o, np.generic):
        return o.item()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        cls = type(o)
        if not cls.__module__.startswith("ccc_lib."):
            raise TypeError(f"cached: only ccc_lib's dataclasses are stored, not {cls.__module__}.{cls.__qualname__}")
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(o, f.name)) for f in dataclasses.fields(o)}}
    if isinstance(o, tuple):
        return {"__tuple__": [_encode(x) for x in o]}
    if isinstance(o, list):
        return [_encode(x) for x in o]
    if isinstance(o, dict):
        return {"__items__": [[_encode(k), _encode(v)] for k, v in o.items()]}
    raise TypeError(f"cached: a result of type {type(o).__name__} cannot be stored; return tensors, arrays, "
                    "numbers, text, lists, tuples, dicts or ccc_lib dataclasses")


def _decode(o):
    import importlib
    if isinstance(o, list):
        return [_decode(x) for x in o]
    if not isinstance(o, dict):
        return o
    if "__ndarray__" in o:
        return o["__ndarray__"].numpy()
    if "__tuple__" in o:
        return tuple(_decode(x) for x in o["__tuple__"])
    if "__items__" in o:
        return {_decode(k): _decode(v) for k, v in o["__items__"]}
    if "__dataclass__" in o:
        mod, name = o["__dataclass__"].split(":")
        if not mod.startswith("ccc_lib."):
            raise ValueError(f"foreign type {o['__dataclass__']} in a cached result")
        cls = importlib.import_module(mod)
        for part in name.split("."):
            cls = getattr(cls, part)
        return cls(**{k: _decode(v) for k, v in o["fields"].items()})
    raise ValueError("unknown record in a cached result")


def load_or_compute_value(kind: str, config: dict, compute_fn: Callable[[], object] | None, *, root=None,
                          force: bool = False, cache_only: bool = False, lock_timeout: float | None = None,
                          what: str = "cached result", redo: str = "recomputing") -> tuple:
    """The cache for any value :func:`cached` stores (tensors, arrays, numbers, text, lists, tuples, dicts,
    ccc_lib's dataclasses): read it under ``kind`` and a hash of ``config``, or call ``compute_fn()`` and
    store what it returns. Returns ``(value, from_cache)``. With ``cache_only=True`` a missing or unusable
    entry raises :class:`NotCached` (``compute_fn`` may then be None). A value that cannot be stored raises
    ``TypeError``. Same guarantees as :func:`load_or_compute`; ``what`` and ``redo`` word the warning about
    an unusable file."""
    def build():
        if compute_fn is None:
            raise NotCached(f"no {kind!r} entry and nothing to compute it with")
        value = compute_fn()
        return {"result": _encode(value)}, value

    value, hit, _ = _get_or_build(kind, config, root, lambda blob: _decode(blob["result"]), build, what=what,
                                  redo=redo, force=force, cache_only=cache_only, lock_timeout=lock_timeout)
    return value, hit


def cached(kind: str, version: int = 1):
    """Decorator: store the result of a deterministic function of tensors, models and settings in the
    checkpoint cache, keyed by the function's name, ``version`` and its arguments' identities
    (:func:`fingerprint` for tensors, arrays, modules; values for settings; the device type). A
    second call with the same numbers — in this process or in the next build of the book — reads the
    result instead of computing it. Same guarantees as :func:`load_or_compute`: atomic files read
    with ``weights_only=True``, a corrupt file recomputed, concurrent callers serialised, the
    computation on its own random stream. Bump ``version`` when the function's meaning changes.
    ``CCC_RESULT_CACHE=0`` turns it off (every call computes); ``fn.uncached`` always computes."""
    import functools
    import inspect

    def deco(fn):
        sig = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if os.environ.get("CCC_RESULT_CACHE", "1") == "0":
                return fn(*args, **kwargs)
            from .utils import get_device
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            config = {"fn": name, "version": version, "device": get_device().type,
                      "args": {k: arg_identity(v) for k, v in bound.arguments.items()}}
            return load_or_compute_value(kind, config, lambda: fn(*args, **kwargs))[0]

        wrapper.uncached = fn
        return wrapper
    return deco
