"""The book's command line, above everything else in ccc_lib (nothing in the package imports it):
``python -m ccc_lib COMMAND`` and the console script ``ccc-book``.

* ``run`` — execute chapters with papermill (:mod:`ccc_lib.cli.run`, on :mod:`ccc_lib.runner`);
* ``book`` and ``check`` — build the HTML book, check the executed chapters (:mod:`ccc_lib.cli.book`);
* ``cache`` — ``info``, ``prune``, and the bundles ``export`` / ``import`` (:mod:`ccc_lib.cli.cache`, on
  :mod:`ccc_lib.cache` and :mod:`ccc_lib.bundle`);
* ``fetch`` and ``profiles`` — download what a profile needs, list the profiles (:mod:`ccc_lib.cli.fetch`).

Every path option and path variable is made absolute once, here, where it enters (:func:`absolute_paths`)."""
from __future__ import annotations

import argparse
import sys

from ..profiles import PROFILES

__all__ = ["main", "build_parser", "absolute_paths", "PATH_OPTIONS"]

DESCRIPTION = "Run the book's notebooks with papermill: ``python -m ccc_lib run [CHAPTER...] --profile P``."

#: the options that name paths; :func:`absolute_paths` resolves them once, where they enter
PATH_OPTIONS = ("out", "root", "notebooks", "executed", "parameters", "file", "source", "summary")


def absolute_paths(args) -> None:
    """The one path rule (:func:`ccc_lib.utils.absolute_path`), applied where paths enter: every path
    option and every path variable of the environment is made absolute against the caller's working
    directory, before anything reaches a kernel (which papermill starts in ``notebooks/``), a
    subprocess or the environment they inherit."""
    from ..utils import absolute_path, absolutize_env
    absolutize_env()
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if value and "://" not in str(value):             # a bundle's URL stays as it is
            setattr(args, name, absolute_path(value))


def build_parser() -> argparse.ArgumentParser:
    """The command line: every command, option and help text."""
    ap = argparse.ArgumentParser(prog="python -m ccc_lib", description=DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)
    root_help = ("the book's project root (default: $CCC_ROOT, else the working directory or a parent of it "
                 "holding notebooks/ and _config.yml)")
    r = sub.add_parser("run", help="execute chapters with papermill")
    r.add_argument("chapters", nargs="*", help="chapter numbers or names (default: all)")
    r.add_argument("--profile", default=None,
                   help=f"one of {', '.join(PROFILES)} (default: $CCC_PROFILE or 'default')")
    r.add_argument("--dry-run", action="store_true",
                   help="with --profile full: the dry run of full on generated files (= --profile full_dry)")
    r.add_argument("--out", default=None, help="where executed notebooks go (default: ROOT/book/executed)")
    r.add_argument("--notebooks", default=None, help="folder of source notebooks (default: ROOT/notebooks)")
    r.add_argument("--root", default=None, help=root_help)
    r.add_argument("--parameters", default=None, metavar="YAML",
                   help="papermill parameters for every chapter (a YAML mapping; its 'profile' is used "
                        "unless --profile is given), e.g. scripts/full_gpu.yaml")
    r.add_argument("--skip-fetch-check", action="store_true",
                   help="at a downloading profile (full), do not stop when files are missing up front")
    r.add_argument("--jobs", default=None,
                   help="how many chapters run side by side, each in its own kernel with its share of the "
                        "threads (default: $CCC_CHAPTER_JOBS, else 1); the report runs last")
    r.add_argument("--summary", default=None, help=argparse.SUPPRESS)
    b = sub.add_parser("book", help="build the HTML book from executed notebooks (never from a dry run)")
    b.add_argument("--executed", default=None, help="folder of executed notebooks (default: ROOT/book/executed)")
    b.add_argument("--out", default=None, help="the HTML goes to OUT/_build/html (default: ROOT)")
    b.add_argument("--root", default=None, help=root_help)
    b.add_argument("--repo-url", default=None,
                   help="GitHub URL for the launch/repository/issue buttons (default: $CCC_REPO_URL, "
                        "$GITHUB_REPOSITORY, the origin remote, else _config.yml)")
    b.add_argument("--strict", action="store_true",
                   help="fail on any Sphinx warning (a missing literalinclude object, a duplicate figure label, "
                        "a broken reference) and on a figure cell showing more than one output")
    c = sub.add_parser("check", help="exit non-zero when an executed chapter failed, is missing, is a dry "
                                     "run or ran at another profile")
    c.add_argument("chapters", nargs="*", help="chapters to check (default: all)")
    c.add_argument("--executed", default=None, help="folder of executed notebooks (default: ROOT/book/executed)")
    c.add_argument("--root", default=None, help=root_help)
    c.add_argument("--notebooks", default=None, help="folder of source notebooks (default: ROOT/notebooks)")
    f = sub.add_parser("fetch", help="download every dataset and weight file a profile needs (for offline GPU nodes)")
    f.add_argument("--profile", default="full", help="the profile whose files to fetch (default: full)")
    f.add_argument("--check", action="store_true", help="only list what is missing (no download)")
    f.add_argument("--timeout", type=float, default=30.0, help="seconds per network attempt")
    sub.add_parser("profiles", help="list the run profiles")
    k = sub.add_parser("cache", help="look after the cache ($CCC_CACHE): its size by kind, prune what no run uses, "
                                     "export a profile's artefacts as a bundle or import one")
    ksub = k.add_subparsers(dest="action", required=True)
    ki = ksub.add_parser("info", help="sizes of the cache's folders and of its artefacts by kind, with last use")
    ki.add_argument("--top", type=int, default=25, help="kinds to list (default 25)")
    kp = ksub.add_parser("prune", help="remove artefacts no run has written or read for a while (their last use "
                                       "is stamped on every hit): run the book once, then prune")
    kp.add_argument("--unused-for", required=True, metavar="DURATION",
                    help="remove what was not used in this long: e.g. 90s, 30m, 2h, 7d")
    kp.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    ke = ksub.add_parser("export", help="write the artefacts a profile's book reads (the cache entries its last run "
                                        "wrote or read) into one .tar.gz with a manifest: sha256 per file, code "
                                        "version, profile, settings fingerprints (see ccc_lib/bundle.py)")
    ke.add_argument("file", metavar="FILE", help="the bundle to write, e.g. ccc-cache-default.tar.gz")
    ke.add_argument("--profile", required=True, help=f"the book's profile: one of {', '.join(PROFILES)}")
    ke.add_argument("--since", default=None, metavar="DURATION",
                    help="take the entries used in this long (e.g. 2h) instead of since the start of the last run "
                         "at --profile in --executed")
    ke.add_argument("--executed", default=None,
                    help="executed notebooks whose metrics date the last run (default: ROOT/book/executed)")
    kim = ksub.add_parser("import", help="verify a bundle (a file or an http/https/file URL) and install its "
                                         "artefacts into the cache atomically; a corrupt, unsafe or mismatching "
                                         "bundle is refused with nothing installed")
    kim.add_argument("source", metavar="FILE_OR_URL")
    kim.add_argument("--profile", default=None, help="refuse a bundle made for another profile")
    kim.add_argument("--force", action="store_true",
                     help="install even when the bundle's settings differ from this checkout's (such artefacts "
                          "are then never read)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    absolute_paths(args)
    if args.cmd == "cache":
        from .cache import cmd_cache
        return cmd_cache(args)
    if args.cmd == "profiles":
        from .fetch import cmd_profiles
        return cmd_profiles(args)
    if args.cmd == "fetch":
        from .fetch import cmd_fetch
        return cmd_fetch(args)
    if args.cmd == "book":
        from .book import cmd_book
        return cmd_book(args)
    if args.cmd == "check":
        from .book import cmd_check
        return cmd_check(args)
    from .run import cmd_run
    try:
        return cmd_run(args)
    except (ValueError, RuntimeError) as exc:       # bad profile, CCC_DATA on generated files, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
