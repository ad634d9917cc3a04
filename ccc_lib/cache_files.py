"""The checkpoint cache's files on disk: the build lock that makes one process build an artefact while
the others wait, the stamp of use every hit leaves on its file, and looking after the folder (listing
its entries by kind and age, pruning what no run uses). :mod:`ccc_lib.cache` reads and writes the
artefacts through these and re-exports the public names.

* Building is *claimed* with an exclusive ``fcntl.flock`` on ``<checkpoint>.lock``
  (:func:`build_lock`): a lock held by a process that dies is released by the OS, so a killed run never
  blocks the next one. Waiting longer than ``CCC_LOCK_TIMEOUT`` seconds (default 6 h) raises
  :class:`CacheLockTimeout` naming the lock file and the process holding it.
* Every hit stamps its file's modification time (:func:`mark_used`) and every build writes it, so
  ``last_used`` of :func:`cache_entries` is the last time a run wrote or read the artefact, and
  :func:`prune` removes exactly what no run has used for a while."""
from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .utils import cache_dir

try:
    import fcntl
except ImportError:                   # Windows: no advisory locks; concurrent runs may both train
    fcntl = None

__all__ = ["CacheLockTimeout", "build_lock", "mark_used", "CacheEntry", "cache_entries", "parse_duration", "prune"]


class CacheLockTimeout(TimeoutError):
    """Another process held a checkpoint's build lock for longer than the timeout."""


def _lock_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    env = os.environ.get("CCC_LOCK_TIMEOUT", "")
    try:
        return float(env) if env else 6 * 3600.0
    except ValueError:
        raise ValueError(f"CCC_LOCK_TIMEOUT={env!r} is not a number of seconds") from None


@contextmanager
def build_lock(path: Path, timeout: float | None = None, poll: float = 0.2):
    """Hold the exclusive build claim on ``path`` (a ``flock`` on ``<path>.lock``) for the block.
    Waits for another holder, saying so once; raises :class:`CacheLockTimeout` after ``timeout`` seconds
    (default ``CCC_LOCK_TIMEOUT`` or 6 h). Released on exit, and by the OS if the process dies."""
    path = Path(path)
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        limit, t0, told = _lock_timeout(timeout), time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _lock_holder(lock)
                waited = time.monotonic() - t0
                if waited >= limit:
                    raise CacheLockTimeout(
                        f"waited {waited:.0f} s for {lock} (held by {holder}); if that process is still "
                        f"training, let it finish or raise CCC_LOCK_TIMEOUT; if it hangs, stop it — its lock "
                        f"goes with it") from None
                if not told:
                    print(f"[cache] {path.name} is being built by {holder}; waiting for it", flush=True)
                    told = True
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):     # left by a writer that was killed
            try:
                tmp.unlink()
            except OSError:
                pass
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _lock_holder(lock: Path) -> str:
    try:
        return lock.read_text().strip() or "another process"
    except OSError:
        return "another process"


def mark_used(path: Path) -> None:
    """Stamp a cache hit with the time of use (the file's mtime), so that ``cache prune --unused-for``
    knows what a run still reads. A read-only cache is fine: the stamp is only a hint."""
    try:
        os.utime(path)
    except OSError:
        pass


@dataclass(frozen=True)
class CacheEntry:
    """One artefact in the checkpoint folder: its file, kind, size and the last time a run wrote or read it."""
    path: Path
    kind: str
    size: int
    last_used: float


_ENTRY = re.compile(r"^(?P<kind>.+)-[0-9a-f]{16}\.pt$")


def cache_entries(root=None) -> list[CacheEntry]:
    """Every artefact in the checkpoint folder (default ``<cache>/checkpoints``), oldest use first.
    A hit stamps its file's mtime (see :func:`mark_used`), so ``last_used`` is the last write or read."""
    root = Path(root) if root is not None else cache_dir() / "checkpoints"
    out = []
    for f in root.glob("*.pt") if root.is_dir() else ():
        m = _ENTRY.match(f.name)
        if not m:
            continue
        try:
            st = f.stat()
        except OSError:                  # removed meanwhile
            continue
        out.append(CacheEntry(f, m.group("kind"), st.st_size, st.st_mtime))
    return sorted(out, key=lambda e: e.last_used)


def parse_duration(text: str) -> float:
    """Seconds in ``'90'``, ``'90s'``, ``'30m'``, ``'2h'`` or ``'7d'``; an error names the accepted forms."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not m:
        from .checks import InputError
        raise InputError(f"duration {text!r} is not a number with an optional unit: give e.g. 90s, 30m, 2h or 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def prune(unused_for: float, *, root=None, dry_run: bool = False, now: float | None = None) -> dict:
    """Remove the artefacts no run has written or read for ``unused_for`` seconds, with their lock
    files, and temporary files of killed writers as old. An artefact whose build lock another process
    holds is skipped (it is being built or waited for). Returns what was (or, with ``dry_run``, would be)
    removed: ``{"removed": [CacheEntry...], "kept": n, "freed": bytes, "busy": n}``.

    The usual way: run the book once on a warm cache (every artefact it needs is read and stamped),
    then ``python -m ccc_lib cache prune --unused-for 1h``: what earlier code versions or other
    settings left behind goes, and the next run finds everything it reads."""
    if unused_for < 0:
        from .checks import InputError
        raise InputError(f"unused_for must be >= 0 seconds, got {unused_for}")
    root = Path(root) if root is not None else cache_dir() / "checkpoints"
    cutoff = (time.time() if now is None else now) - unused_for
    removed, kept, busy = [], 0, 0
    for e in cache_entries(root):
        if e.last_used >= cutoff:
            kept += 1
            continue
        lock = e.path.with_name(e.path.name + ".lock")
        if dry_run:
            removed.append(e)
            continue
        try:
            with build_lock(e.path, timeout=0):       # the builders' own claim, not waited for
                e.path.unlink(missing_ok=True)
                lock.unlink(missing_ok=True)
        except CacheLockTimeout:
            busy += 1
            continue
        removed.append(e)
    for lock in root.glob("*.pt.lock") if root.is_dir() and not dry_run else ():   # locks of vanished files
        if not lock.with_name(lock.name[:-len(".lock")]).exists():
            try:
                if lock.stat().st_mtime < cutoff:
                    lock.unlink()
            except OSError:
                pass
    for tmp in root.glob(".*.pt.*.tmp") if root.is_dir() else ():
        try:
            if tmp.stat().st_mtime < cutoff:
                if not dry_run:
                    tmp.unlink()
        except OSError:
            pass
    return {"removed": removed, "kept": kept, "freed": sum(e.size for e in removed), "busy": busy}
