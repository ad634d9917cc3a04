"""``python -m ccc_lib fetch --profile P [--check]`` (download what a profile needs, for offline GPU nodes:
:mod:`ccc_lib.fetch`) and ``python -m ccc_lib profiles`` (list the run profiles)."""
from __future__ import annotations

import sys

from ..fetch import fetch, missing_report, needs_for
from ..profiles import PROFILES, get_profile
from ..utils import data_root

__all__ = ["cmd_fetch", "cmd_profiles"]


def cmd_profiles(args) -> int:
    for p in PROFILES.values():
        print(f"{p.name:8s} {p.description}")
    return 0


def cmd_fetch(args) -> int:
    prof = get_profile(args.profile)
    needs = needs_for(prof)
    if not needs:
        print(f"profile '{prof.name}' downloads nothing (it reads offline data only)")
        return 0
    if args.check:
        missing = [n for n in needs if not n.present()]
        if missing:
            print(missing_report(missing, prof.name), file=sys.stderr)
            return 1
        print(f"everything profile '{prof.name}' needs is present")
        return 0
    failed = fetch(prof, timeout=args.timeout)
    if failed:
        print("\n" + missing_report(failed, prof.name), file=sys.stderr)
        return 1
    print(f"\neverything profile '{prof.name}' needs is present (data: {data_root()})")
    return 0
