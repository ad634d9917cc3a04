"""Ship the trained artefacts: a profile's cache entries as one verified ``.tar.gz`` bundle.

A reader without hours of CPU (or a GPU) starts from the weights and results the book's own run
produced, and rebuilds the book warm::

    python -m ccc_lib cache export --profile default ccc-cache-default.tar.gz     # after a run of the book
    python -m ccc_lib cache import ccc-cache-default.tar.gz                       # or an http(s):// URL
    python -m ccc_lib run --profile default                                       # warm: reads, re-scores, plots

Which artefacts (the rule)
--------------------------
Every cache hit stamps its file's modification time (:func:`ccc_lib.cache_files.mark_used`) and every build
writes it, so after a run of the book at profile P each artefact that run wrote or read carries a time
at or after the run's start. The bundle holds every checkpoint-cache entry (``<cache>/checkpoints/*.pt``)
used since the start of the earliest chapter of the last run at P in the executed folder (each chapter's
metrics file: written at the chapter's end, minus its ``run_seconds``), or since ``--since`` (a duration
such as ``2h`` back from now). Run the book at P on its own cache first (another profile's run in the same
window on the same cache would add its artefacts too). Datasets are not shipped (they come from their
own sources).

The manifest
------------
``manifest.json`` in the bundle: the format, the profile, the cache version, the code version (package
version, ``git describe`` where a checkout is at hand, and a SHA-256 of ``ccc_lib``'s sources), each
chapter's settings fingerprint at P (:func:`settings_fingerprints`), and per file its size and SHA-256.

What ``import`` checks (anything wrong: :class:`BundleError`, nothing installed)
-------------------------------------------------------------------------------
* every member is ``manifest.json`` or ``checkpoints/<kind>-<16 hex>.pt``, a regular file: absolute paths,
  ``..``, links, devices and anything else are refused before anything is extracted (and the
  extraction itself uses ``tarfile``'s ``"data"`` filter);
* a truncated or corrupt archive, a file missing from the bundle or from the manifest, a size or SHA-256
  that differs, a file that ``torch.load(weights_only=True)`` cannot read or whose key is not the one in
  its name, a different cache version, or settings fingerprints that differ from this checkout's at the
  profile (``force=True`` / ``--force`` installs anyway: an artefact whose configuration differs is then
  simply never read);
* the files are extracted into a temporary folder inside the cache, verified there, and only then moved
  into ``checkpoints/`` one ``os.replace`` each (atomic): an interrupted import leaves whole files or
  none. An artefact already in the cache is kept (same name = same configuration).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from .checks import InputError

__all__ = ["BundleError", "export_bundle", "import_bundle", "settings_fingerprints", "code_version",
           "run_start", "FORMAT"]

FORMAT = "ccc_lib-cache-bundle"
FORMAT_VERSION = 1
_MEMBER = re.compile(r"^checkpoints/[A-Za-z0-9][A-Za-z0-9_.+-]*-[0-9a-f]{16}\.pt$")


class BundleError(InputError):
    """A bundle that cannot be installed: corrupt, tampered with, unsafe or made for other settings."""


# --------------------------------------------------------------------------- identity of code and settings

def code_version() -> dict:
    """The package version, ``git describe --always --dirty`` of the checkout ccc_lib is imported from
    (None outside one) and a SHA-256 of ccc_lib's ``.py`` sources (names and bytes)."""
    import subprocess
    from .utils import sources_sha256
    pkg = Path(__file__).resolve().parent
    try:
        from importlib.metadata import version
        ver = version("ccc_lib")
    except Exception:
        ver = None
    try:
        git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=pkg, capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"package": ver, "git": git, "sources_sha256": sources_sha256()}


def settings_fingerprints(profile) -> dict:
    """Each chapter's settings at ``profile`` as a short hash (:func:`ccc_lib.cache.config_hash`): the
    profile itself and the settings of chapters 1-4 (and chapter 1's selection grid)."""
    import dataclasses
    import importlib
    from .cache import config_hash
    from .profiles import get_profile
    P = get_profile(profile)
    out = {"profile": config_hash({"profile": dataclasses.asdict(P)})}
    sources = {"counterfeits": ("ccc_lib.counterfeits", "settings"),
               "counterfeits_selection": ("ccc_lib.counterfeits", "selection_settings"),
               "neuralfp": ("ccc_lib.experiments.neuralfp", "settings"),
               "iocn": ("ccc_lib.experiments.iocn", "settings"),
               "drift": ("ccc_lib.experiments.drift", "settings")}
    for name, (mod, fn) in sources.items():
        try:
            out[name] = config_hash({name: getattr(importlib.import_module(mod), fn)(P)})
        except Exception as exc:          # a chapter module that does not import: say so, do not guess
            out[name] = f"unavailable ({type(exc).__name__})"
    return out


def _sha256(path: Path) -> str:
    from .utils import file_digest
    return file_digest(path, "sha256")


# --------------------------------------------------------------------------- export

def run_start(profile, executed) -> float:
    """The start of the last run of the book at ``profile`` in ``executed`` (the earliest chapter's
    metrics-file time minus its ``run_seconds``). Raises when no chapter there ran at that profile."""
    from .profiles import get_profile
    name = get_profile(profile).name
    starts, others = [], {}
    for m in sorted(Path(executed, "metrics").glob("*.json")):
        try:
            d = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        if d.get("profile") != name:
            others[m.stem] = d.get("profile")
            continue
        starts.append(m.stat().st_mtime - float(d.get("run_seconds") or 0.0))
    if not starts:
        seen = f" (there: {', '.join(f'{k} at {v}' for k, v in others.items())})" if others else ""
        raise InputError(f"no chapter ran at profile {name!r} in {executed}{seen}: run the book first "
                         f"(python -m ccc_lib run --profile {name}), or give --since 2h (a duration)")
    return min(starts) - 5.0                 # slack for the file-system clock's granularity


def export_bundle(profile, dest, *, since: float | None = None, executed=None, root=None) -> dict:
    """Write the bundle of ``profile``'s artefacts to ``dest`` (atomically) and return its manifest.
    ``since``: epoch seconds (default: :func:`run_start` of ``executed``, default ``book/executed``)."""
    from .cache import CACHE_VERSION, cache_entries
    from .profiles import get_profile
    from .utils import cache_dir
    P = get_profile(profile)
    root = Path(root) if root is not None else cache_dir()
    if since is None:
        if executed is None:
            from .runner import find_root
            executed = find_root() / "book" / "executed"
        since = run_start(P, executed)
    entries = [e for e in cache_entries(root / "checkpoints") if e.last_used >= since]
    if not entries:
        raise InputError(f"no cache entry in {root / 'checkpoints'} was used since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}: run the book at "
                         f"{P.name} on this cache (CCC_CACHE) first")
    files = {f"checkpoints/{e.path.name}": {"size": e.path.stat().st_size, "sha256": _sha256(e.path), "kind": e.kind}
             for e in entries}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "profile": P.name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cache_version": CACHE_VERSION,
                "code_version": code_version(), "settings": settings_fingerprints(P),
                "rule": f"cache entries written or read since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))}",
                "files": files}
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mtime, info.mode = len(blob), int(time.time()), 0o644
            import io
            tar.addfile(info, io.BytesIO(blob))
            for name in sorted(files):
                p = root / name
                if _sha256(p) != files[name]["sha256"]:
                    raise RuntimeError(f"{p} changed while the bundle was written (a run is using this cache); "
                                       f"export again when it has finished")
                ti = tar.gettarinfo(str(p), arcname=name)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mode = 0o644
                with open(p, "rb") as fh:
                    tar.addfile(ti, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


# --------------------------------------------------------------------------- import

def _fetch(src: str, into: Path) -> Path:
    """A local path as is; an http(s):// or file:// URL downloaded into ``into`` (inside the cache)."""
    from urllib.parse import urlparse
    scheme = urlparse(src).scheme.lower()
    if scheme in ("", ) or (len(scheme) == 1 and os.name == "nt"):
        p = Path(src).expanduser()
        if not p.is_file():
            raise BundleError(f"bundle {src}: no such file")
        return p
    if scheme not in ("http", "https", "file"):
        raise BundleError(f"bundle {src}: only a file path or an http://, https:// or file:// URL can be imported")
    import urllib.request
    dst = into / "bundle.tar.gz"
    try:
        with urllib.request.urlopen(src, timeout=60) as r, open(dst, "wb") as fh:
            shutil.copyfileobj(r, fh, 1 << 20)
    except OSError as exc:
        raise BundleError(f"bundle {src}: download failed ({type(exc).__name__}: {exc})") from None
    return dst


def _safe_members(tar: tarfile.TarFile, src: str) -> list[tarfile.TarInfo]:
    """Every member, checked before anything is extracted: only ``manifest.json`` and cache entries,
    as regular files, each once."""
    members, seen = [], set()
    for m in tar.getmembers():
        name = m.name
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in Path(name).parts:
            raise BundleError(f"bundle {src}: member {name!r} would land outside the cache (absolute path or '..'); refused")
        if m.issym() or m.islnk():
            raise BundleError(f"bundle {src}: member {name!r} is a link; refused")
        if not m.isfile():
            raise BundleError(f"bundle {src}: member {name!r} is not a regular file "
                              f"({'a device' if m.isdev() else 'a folder or special file'}); refused")
        if name != "manifest.json" and not _MEMBER.match(name):
            raise BundleError(f"bundle {src}: member {name!r} is not a cache entry (checkpoints/<kind>-<hash>.pt) "
                              f"or the manifest; refused")
        if name in seen:
            raise BundleError(f"bundle {src}: member {name!r} appears twice; refused")
        seen.add(name)
        members.append(m)
    if "manifest.json" not in seen:
        raise BundleError(f"bundle {src}: no manifest.json — not a ccc_lib cache bundle")
    return members


def _verify(tmp: Path, manifest: dict, src: str, profile, force: bool) -> list[str]:
    """Check the extracted files against the manifest and this checkout; returns the entry names."""
    import torch
    from .cache import CACHE_VERSION
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"bundle {src}: format {manifest.get('format')!r} v{manifest.get('format_version')} is not "
                          f"{FORMAT} v{FORMAT_VERSION}")
    if manifest.get("cache_version") != CACHE_VERSION:
        raise BundleError(f"bundle {src}: made for cache version {manifest.get('cache_version')}, this ccc_lib reads "
                          f"version {CACHE_VERSION}: its artefacts would never be read; rebuild from scratch")
    if profile is not None and manifest.get("profile") != profile:
        raise BundleError(f"bundle {src} holds profile {manifest.get('profile')!r}, not {profile!r}")
    files = manifest.get("files") or {}
    present = {str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()} - {"manifest.json"}
    if set(files) != present:
        extra, missing = sorted(present - set(files)), sorted(set(files) - present)
        raise BundleError(f"bundle {src}: its files do not match its manifest (not listed: {extra[:3]}; "
                          f"missing: {missing[:3]})")
    for name, info in files.items():
        p = tmp / name
        if p.stat().st_size != info.get("size") or _sha256(p) != info.get("sha256"):
            raise BundleError(f"bundle {src}: {name} does not match its SHA-256 in the manifest (corrupt or "
                              f"tampered with); nothing installed")
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BundleError(f"bundle {src}: {name} is not a readable cache entry ({type(exc).__name__}); "
                              f"nothing installed") from None
        if not isinstance(blob, dict) or blob.get("key") != name[-19:-3]:
            raise BundleError(f"bundle {src}: {name} holds another configuration's key; nothing installed")
    if not force:
        ours = settings_fingerprints(manifest["profile"])
        diff = [k for k, v in (manifest.get("settings") or {}).items() if ours.get(k) != v]
        if diff:
            cv = manifest.get("code_version") or {}
            raise BundleError(f"bundle {src}: the settings of {', '.join(diff)} at {manifest['profile']} differ from "
                              f"this checkout's (the bundle was made by ccc_lib {cv.get('git') or cv.get('package')}): "
                              f"check that version out, or rebuild from scratch; --force installs anyway (the "
                              f"artefacts of other settings are then never read)")
    return sorted(files)


def import_bundle(src, *, root=None, profile: str | None = None, force: bool = False) -> dict:
    """Verify the bundle ``src`` (a path or an http/https/file URL) and install its artefacts into the
    cache (see the module docstring for every check). Returns ``{"installed": n, "kept": n, "manifest":
    {...}, "code_version_matches": bool}``; raises :class:`BundleError` with nothing installed."""
    from .utils import cache_dir
    root = Path(root) if root is not None else cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".import-"))
    try:
        path = _fetch(str(src), work)
        tmp = work / "x"
        tmp.mkdir()
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = _safe_members(tar, str(src))
                kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, members=members, **kw)
        except BundleError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise BundleError(f"bundle {src}: not a readable .tar.gz ({type(exc).__name__}: {exc}) — truncated "
                              f"or corrupt; download it again") from None
        try:
            manifest = json.loads((tmp / "manifest.json").read_text())
        except ValueError:
            raise BundleError(f"bundle {src}: manifest.json is not JSON") from None
        names = _verify(tmp, manifest, str(src), profile, force)
        dest = root / "checkpoints"
        dest.mkdir(parents=True, exist_ok=True)
        installed = kept = 0
        for name in names:
            target = root / name
            if target.exists():
                kept += 1
                continue
            os.chmod(tmp / name, 0o644)
            os.replace(tmp / name, target)        # same file system (inside the cache): atomic
            installed += 1
        return {"installed": installed, "kept": kept, "manifest": manifest,
                "code_version_matches": (manifest.get("code_version") or {}).get("sources_sha256")
                == code_version()["sources_sha256"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
