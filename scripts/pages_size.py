"""Check that a site stays under GitHub Pages' size limit before it is published (the Pages workflow runs it
on ``_build/html`` after the cache bundle ``ccc-cache-<profile>.tar.gz`` has been written next to the book).

    python scripts/pages_size.py _build/html             # exit 1 above the limit (default: 1 GB)
    python scripts/pages_size.py _build/html --limit-mb 500

GitHub documents the limit as "published GitHub Pages sites may be no larger than 1 GB"; it is counted here
as 10^9 bytes of files (the stricter reading). Prints the total and the largest files, so a failure says
what to drop or shrink."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: GitHub Pages' published-site limit, in bytes (1 GB, read as 10^9)
PAGES_LIMIT = 10**9


def site_files(site: Path) -> list[tuple[int, Path]]:
    """``(bytes, path)`` of every file under ``site``, largest first (links are not followed)."""
    out = [(p.stat().st_size, p) for p in Path(site).rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(out, key=lambda sp: (-sp[0], str(sp[1])))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", type=Path, help="the built site, e.g. _build/html")
    ap.add_argument("--limit-mb", type=float, default=PAGES_LIMIT / 1e6,
                    help=f"the limit in MB of 10^6 bytes (default {PAGES_LIMIT / 1e6:.0f}: GitHub Pages' 1 GB)")
    ap.add_argument("--top", type=int, default=5, help="largest files to list")
    args = ap.parse_args(argv)
    if not args.site.is_dir():
        print(f"error: {args.site} is not a folder (build the site first)", file=sys.stderr)
        return 2
    files = site_files(args.site)
    total, limit = sum(s for s, _ in files), args.limit_mb * 1e6
    print(f"{args.site}: {len(files)} files, {total / 1e6:.1f} MB (limit {limit / 1e6:.0f} MB, "
          f"{100 * total / limit:.0f} % of it); largest:")
    for size, path in files[:args.top]:
        print(f"  {size / 1e6:9.1f} MB  {path.relative_to(args.site)}")
    if total > limit:
        print(f"error: the site is {total / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit of GitHub Pages: "
              f"shrink or drop the largest files above (e.g. publish the cache bundle as a release asset)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
