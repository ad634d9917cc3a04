"""``python -m ccc_lib cache info | prune | export | import``: look after the checkpoint cache
(:mod:`ccc_lib.cache`) and ship a profile's artefacts as a verified bundle (:mod:`ccc_lib.bundle`)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..cache import CacheEntry, cache_entries, parse_duration, prune
from ..checks import InputError
from ..dryrun import GENERATOR_VERSION
from ..utils import cache_dir

__all__ = ["cmd_cache", "cmd_bundle", "human", "ago"]


def human(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"


def print_by_kind(entries: list[CacheEntry], top: int | None = None) -> None:
    """One line per kind of artefact (files, size, last use), largest first; ``top`` lines at most."""
    by_kind: dict[str, list[CacheEntry]] = {}
    for e in entries:
        by_kind.setdefault(e.kind, []).append(e)
    rows, now = sorted(by_kind.items(), key=lambda kv: -sum(e.size for e in kv[1])), time.time()
    for kind, es in rows[:top]:
        print(f"  {kind:36s} {len(es):5d} {human(sum(e.size for e in es)):>9s}  "
              f"last used {ago(now - max(e.last_used for e in es))}")
    if top is not None and len(rows) > top:
        print(f"  ... and {len(rows) - top} more kinds (--top N)")


def cmd_cache(args) -> int:
    """``python -m ccc_lib cache info``, ``cache prune --unused-for D [--dry-run]``,
    ``cache export --profile P FILE [--since D] [--executed DIR]`` and ``cache import FILE_OR_URL [--force]``
    (the bundles: :mod:`ccc_lib.bundle`)."""
    root = cache_dir()
    if args.action in ("export", "import"):
        return cmd_bundle(args, root)
    if args.action == "info" and args.top < 0:
        print(f"error: --top {args.top}: give how many kinds to list, 0 or more", file=sys.stderr)
        return 2
    if args.action == "info":
        entries = cache_entries()
        print(f"cache: {root} (CCC_CACHE)")
        known = {"checkpoints", "data", "metrics", f"dry_run_data_v{GENERATOR_VERSION}"}
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            note = "" if d.name in known or d.name.startswith(".") else \
                "  not used by this version of ccc_lib (left by an older one): safe to delete"
            print(f"  {d.name + '/':24s} {human(size):>9s}{note}")
        if not entries:
            print("no cached artefacts")
            return 0
        print(f"\n{len(entries)} artefacts, {human(sum(e.size for e in entries))}; by kind (largest first):")
        print(f"  {'kind':36s} {'files':>5s} {'size':>9s}")
        print_by_kind(entries, args.top)
        return 0
    try:
        seconds = parse_duration(args.unused_for)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    r = prune(seconds, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"cache: {root}: {verb} {len(r['removed'])} artefacts unused for {args.unused_for} "
          f"({human(r['freed'])}); kept {r['kept']}" + (f"; {r['busy']} skipped (being built)" if r["busy"] else ""))
    print_by_kind(r["removed"])
    return 0


def cmd_bundle(args, root: Path) -> int:
    """``cache export`` / ``cache import``: a clear one-line error and exit 2 on a bad bundle or input."""
    from .. import bundle
    try:
        if args.action == "export":
            since = None
            if getattr(args, "since", None):
                since = time.time() - parse_duration(args.since)
            t0 = time.perf_counter()
            m = bundle.export_bundle(args.profile, args.file, since=since, executed=getattr(args, "executed", None))
            size = Path(args.file).stat().st_size
            print(f"cache: {root}: wrote {args.file} ({human(size)}, {len(m['files'])} artefacts of profile "
                  f"{m['profile']}; {m['rule']}; code {m['code_version']['git'] or m['code_version']['package']}) "
                  f"in {time.perf_counter() - t0:.1f} s")
            return 0
        t0 = time.perf_counter()
        r = bundle.import_bundle(args.source, profile=getattr(args, "profile", None), force=getattr(args, "force", False))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = r["manifest"]
    print(f"cache: {root}: installed {r['installed']} artefacts ({r['kept']} already there) of profile "
          f"{m['profile']} from {args.source}, every SHA-256 verified, in {time.perf_counter() - t0:.1f} s")
    if not r["code_version_matches"]:
        cv = m.get("code_version") or {}
        print(f"note: the bundle was made by ccc_lib {cv.get('git') or cv.get('package')} (sources "
              f"{str(cv.get('sources_sha256'))[:12]}), not this checkout's code; its settings match, so what this "
              f"code asks for under the same configuration is read, the rest rebuilt")
    print(f"next: python -m ccc_lib run --profile {m['profile']}   (a warm rebuild)")
    return 0


def ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"
