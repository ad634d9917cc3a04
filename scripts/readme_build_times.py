"""Write the README's "Build times" table from the measurements in ``benchmarks/results/`` (the result files of
``benchmarks/rebuild_times.py``; :mod:`ccc_lib.build_times` picks the latest complete run of each kind), so the
README never carries a typed build time. The intro page gets the same table when the book is staged.

    python scripts/readme_build_times.py           # rewrite the marked section of README.md
    python scripts/readme_build_times.py --check   # exit 1 (and say so) when the section is out of date

Run it after saving a new measurement; ``tests/test_static_book.py`` fails while the README disagrees."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from ccc_lib.build_times import build_times_markdown, replace_marked  # noqa: E402


def expected_readme(readme: Path, results: Path, profile: str = "default") -> str:
    """The README's text with its build-times section as the result files say."""
    return replace_marked(readme.read_text(), build_times_markdown(results, profile))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that the section is up to date")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    want = expected_readme(args.readme, args.results)
    if want == args.readme.read_text():
        print(f"{args.readme}: the build-times section says what {args.results} says")
        return 0
    if args.check:
        print(f"{args.readme}: the build-times section is out of date; run python scripts/readme_build_times.py",
              file=sys.stderr)
        return 1
    args.readme.write_text(want)
    print(f"{args.readme}: build-times section rewritten from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
