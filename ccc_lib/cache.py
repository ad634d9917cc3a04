"""A checkpoint cache: "load the checkpoint if present, else train".

A checkpoint is keyed by a hash of everything that determines the trained weights (a config
dict the caller gives: model config, dataset, profile, seed, ...). Files hold the state_dict,
the key and a small metadata dict; they are written atomically and read with
``torch.load(weights_only=True)``. A corrupt or mismatching file is reported and rebuilt,
never a crash."""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .utils import atomic_write_bytes, cache_dir

__all__ = ["config_hash", "checkpoint_path", "load_or_train", "load_or_compute", "fingerprint", "NotCached",
           "CACHE_VERSION"]

#: bump to invalidate every checkpoint when training code changes meaning
CACHE_VERSION = 1


class NotCached(LookupError):
    """``load_or_train(..., cache_only=True)`` found no usable checkpoint (and trained nothing)."""


def config_hash(config: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint_path(kind: str, config: dict, root=None) -> Path:
    root = Path(root) if root is not None else cache_dir() / "checkpoints"
    return root / f"{kind}-{config_hash(config)}.pt"


def _try_load(path: Path, module: nn.Module, key: str):
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("key") != key:
            raise ValueError("key mismatch (the file belongs to another configuration)")
        module.load_state_dict(blob["state_dict"], strict=True)
        meta = json.loads(blob.get("meta", "{}"))
        return meta
    except Exception as exc:      # corrupt, truncated, wrong architecture, ...
        warnings.warn(f"checkpoint {path} is unusable ({type(exc).__name__}: {exc}); rebuilding it.",
                      RuntimeWarning, stacklevel=3)
        return None


def load_or_train(module: nn.Module, kind: str, config: dict, train_fn: Callable[[nn.Module], dict],
                  *, root=None, force: bool = False, cache_only: bool = False) -> dict:
    """Fill ``module`` from the cache, or call ``train_fn(module)`` and cache the result.

    ``train_fn`` trains the module in place and returns a JSON-serialisable dict of metadata
    (losses, timings, ...). Returns that metadata with ``from_cache`` and ``path`` added.
    With ``cache_only=True`` a missing or unusable checkpoint raises :class:`NotCached` instead
    of training (for a chapter that reuses what another chapter trains)."""
    path = checkpoint_path(kind, config, root)
    key = config_hash(config)
    if not force:
        meta = _try_load(path, module, key)
        if meta is not None:
            return {**meta, "from_cache": True, "path": str(path)}
    if cache_only:
        raise NotCached(f"no usable {kind!r} checkpoint at {path}")
    meta = train_fn(module) or {}
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"key": key, "kind": kind, "config": json.dumps(config, sort_keys=True, default=str),
                "state_dict": state, "meta": json.dumps(meta, default=_jsonable)}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return {**meta, "from_cache": False, "path": str(path)}


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
            t = o.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, np.ndarray):
            a = np.ascontiguousarray(o)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(o, sort_keys=True, default=str).encode())

    feed(obj)
    return h.hexdigest()[:16]


def load_or_compute(kind: str, config: dict, compute_fn: Callable[[], dict], *, root=None,
                    force: bool = False, cache_only: bool = False) -> dict:
    """The cache for tensor artefacts (gray data, features, score arrays): ``compute_fn()`` returns a
    dict of tensors (and JSON-serialisable extras under ``"meta"``); it is stored atomically under
    ``kind`` and a hash of ``config`` and read back with ``weights_only=True``. A corrupt or
    mismatching file is reported and recomputed. Returns the dict with ``from_cache`` added.
    Put model identities in ``config`` with :func:`fingerprint`."""
    path = checkpoint_path(kind, config, root)
    key = config_hash(config)
    if not force and path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or blob.get("key") != key:
                raise ValueError("key mismatch (the file belongs to another configuration)")
            out = dict(blob["tensors"])
            out["meta"] = json.loads(blob.get("meta", "{}"))
            out["from_cache"] = True
            return out
        except Exception as exc:
            warnings.warn(f"cached artefact {path} is unusable ({type(exc).__name__}: {exc}); recomputing it.",
                          RuntimeWarning, stacklevel=2)
    if cache_only:
        raise NotCached(f"no usable {kind!r} artefact at {path}")
    result = dict(compute_fn())
    meta = result.pop("meta", {})
    tensors = {}
    for k, v in result.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"load_or_compute({kind!r}): compute_fn returned {k}={type(v).__name__}; return "
                            "tensors, and JSON-serialisable extras under 'meta'")
        tensors[k] = v.detach().cpu().contiguous()
    buf = io.BytesIO()
    torch.save({"key": key, "kind": kind, "config": json.dumps(config, sort_keys=True, default=str),
                "tensors": tensors, "meta": json.dumps(meta, default=_jsonable)}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return {**tensors, "meta": meta, "from_cache": False}
