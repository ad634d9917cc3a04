"""``python -m ccc_lib check`` (did every chapter run, at one profile, and not as a dry run?) and
``python -m ccc_lib book`` (stage the executed notebooks and build the HTML with Jupyter Book)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..runner import CHAPTERS, check_executed, figure_problems, find_root, resolve_chapters
from ..static_book import repository_url, stage_book

__all__ = ["cmd_check", "cmd_book"]


def cmd_check(args) -> int:
    root = find_root(args.root)
    executed = args.executed or root / "book" / "executed"
    notebook_dir = args.notebooks or root / "notebooks"
    chapters = resolve_chapters(args.chapters or ["all"], notebook_dir)      # those with a source notebook
    errors, notes = check_executed(executed, chapters)
    for n in notes:
        print(f"note: {n}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not errors:
        print(f"executed notebooks in {executed}: all chapters ran")
    return 1 if errors else 0


def cmd_book(args) -> int:
    import shutil
    import subprocess
    root = find_root(args.root)
    executed = args.executed or root / "book" / "executed"
    wanted = [stem for stem in CHAPTERS.values() if (root / "notebooks" / f"{stem}.ipynb").exists()]
    errors, notes = check_executed(executed, wanted)
    dry = [e for e in errors if "DRY RUN" in e]
    missing = [e for e in errors if "no executed notebook" in e]
    if dry or missing:
        for e in dry + missing:
            print(f"error: {e}", file=sys.stderr)
        return 2
    for e in errors:        # failed chapters are still built (their pages show the failure); the exit says so
        print(f"warning: {e}", file=sys.stderr)
    for n in notes:
        print(f"note: {n}")
    figure_issues = [w for stem in wanted for w in figure_problems(executed / f"{stem}.ipynb")]
    for w in figure_issues:
        print(f"{'error' if args.strict else 'warning'}: {w}", file=sys.stderr)
    if figure_issues and args.strict:
        return 2
    out = args.out or root
    url = repository_url(args.repo_url)
    staging = stage_book(executed, out / "_build" / "src", url, root=root)
    print(f"repository buttons point to {url or 'repository.url of _config.yml'}", flush=True)
    shutil.rmtree(out / "_build" / "html", ignore_errors=True)      # no stale pages from older builds
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(staging), "--path-output", str(out),
           "--builder", "html"] + (["-W", "--keep-going"] if args.strict else [])
    rc = subprocess.run(cmd).returncode
    if rc == 0:
        print(f"\nbook: {(out / '_build' / 'html' / 'index.html').resolve()}")
    return rc
