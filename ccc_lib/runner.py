"""Run the book's notebooks with papermill: ``python -m ccc_lib run [CHAPTER...] --profile P``.

Each notebook is executed into the book's build area (``book/executed/`` by default) with the
papermill parameter ``profile``; a failing notebook keeps its partial output, the failing cell
is named, the other chapters still run, and the exit status is non-zero. Each chapter's
headline metrics land in ``book/executed/metrics/<chapter>.json`` with its run time."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .profiles import PROFILES, get_profile

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
DEFAULT_OUT = REPO / "book" / "executed"

CHAPTERS = {
    "0": "00_classifiers", "1": "01_counterfeits", "2": "02_neuralfp", "3": "03_iocn", "4": "04_drift",
    "5": "05_report",
}
_NAMES = {v.split("_", 1)[1]: k for k, v in CHAPTERS.items()}


def resolve_chapters(names) -> list[str]:
    """Chapter numbers or names ('0', 'classifiers', '01_counterfeits', 'all') → notebook stems."""
    if not names or "all" in names:
        return [v for _, v in sorted(CHAPTERS.items()) if (NOTEBOOK_DIR / f"{v}.ipynb").exists()]
    out = []
    for n in names:
        key = str(n).lower().removesuffix(".ipynb")
        key = key.lstrip("0") or "0" if key.isdigit() else key
        if key in CHAPTERS:
            out.append(CHAPTERS[key])
        elif key in _NAMES:
            out.append(CHAPTERS[_NAMES[key]])
        elif key in CHAPTERS.values():
            out.append(key)
        else:
            raise SystemExit(f"unknown chapter {n!r}; valid: {', '.join(CHAPTERS)} or "
                             f"{', '.join(_NAMES)} or 'all'")
    return out


def run_notebook(stem: str, profile: str, out_dir: Path, extra_params: dict | None = None,
                 notebook_dir: Path = NOTEBOOK_DIR) -> dict:
    import papermill as pm

    notebook_dir = Path(notebook_dir)
    src = notebook_dir / f"{stem}.ipynb"
    if not src.exists():
        return {"chapter": stem, "status": "missing", "error": f"{src} does not exist"}
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{stem}.ipynb"
    metrics_dir = out_dir / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["CCC_METRICS_DIR"] = str(metrics_dir)
    os.environ.setdefault("CCC_PROGRESS", "off")
    t0 = time.perf_counter()
    result = {"chapter": stem, "profile": profile, "output": str(dst)}
    try:
        pm.execute_notebook(str(src), str(dst), parameters={"profile": profile, **(extra_params or {})},
                            kernel_name="python3", cwd=str(notebook_dir), progress_bar=True,
                            log_output=False)
        result["status"] = "ok"
    except pm.PapermillExecutionError as exc:
        result.update(status="failed", cell_index=exc.cell_index, exec_count=exc.exec_count,
                      error=f"{exc.ename}: {exc.evalue}")
    except Exception as exc:        # kernel died, bad notebook, ...
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if dst.exists():
        _hide_parameter_cells(dst)
    mpath = metrics_dir / f"{stem}.json"
    if mpath.exists():
        try:
            data = json.loads(mpath.read_text())
        except json.JSONDecodeError:
            data = {}
        data.update(run_seconds=result["seconds"], status=result["status"])
        from .utils import atomic_write_json
        atomic_write_json(mpath, data)
    return result


def _hide_parameter_cells(path: Path) -> None:
    """The parameters cells are for papermill; in the book the set-up cell prints the profile."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def repository_url(explicit: str | None = None) -> str | None:
    """The repository the book's launch, repository and issue buttons point to: ``explicit``, else
    ``$CCC_REPO_URL``, else ``$GITHUB_REPOSITORY`` (set in GitHub Actions), else the ``origin``
    remote of this checkout when it is on GitHub; None keeps ``_config.yml``'s ``repository.url``."""
    if explicit:
        return explicit
    if os.environ.get("CCC_REPO_URL"):
        return os.environ["CCC_REPO_URL"]
    if os.environ.get("GITHUB_REPOSITORY"):
        return f"https://github.com/{os.environ['GITHUB_REPOSITORY']}"
    import re
    import subprocess
    try:
        url = subprocess.run(["git", "-C", str(REPO), "remote", "get-url", "origin"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"(?:https://github\.com/|git@github\.com:)([^/]+/[^/]+?)(?:\.git)?$", url)
    return f"https://github.com/{m.group(1)}" if m else None


def stage_book(executed: Path, staging: Path, repo_url: str | None = None) -> Path:
    """Lay out the book's sources for Jupyter Book: the configuration, ``book/`` and the *executed*
    notebooks under ``notebooks/``, so that page names (and the launch buttons, which open
    ``notebooks/<chapter>.ipynb`` in the repository) match the sources. ``repo_url`` replaces
    ``repository.url`` in the staged configuration."""
    import shutil
    import yaml
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, staging / name)
    if repo_url:
        cfg = yaml.safe_load((staging / "_config.yml").read_text())
        cfg.setdefault("repository", {})["url"] = repo_url
        (staging / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    shutil.copytree(REPO / "book", staging / "book", ignore=shutil.ignore_patterns("executed"))
    (staging / "notebooks").mkdir()
    for nb in sorted(Path(executed).glob("*.ipynb")):
        shutil.copy(nb, staging / "notebooks" / nb.name)
    return staging


def cmd_book(args) -> int:
    import subprocess
    executed = Path(args.executed)
    found = sorted(p.stem for p in executed.glob("*.ipynb"))
    missing = [stem for stem in CHAPTERS.values() if stem not in found and (NOTEBOOK_DIR / f"{stem}.ipynb").exists()]
    if missing:
        print(f"error: no executed notebook for {', '.join(missing)} in {executed}; "
              f"run: python -m ccc_lib run {' '.join(missing)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    url = repository_url(args.repo_url)
    staging = stage_book(executed, out / "_build" / "src", url)
    print(f"repository buttons point to {url or 'repository.url of _config.yml'}", flush=True)
    import shutil
    shutil.rmtree(out / "_build" / "html", ignore_errors=True)      # no stale pages from older builds
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(staging), "--path-output", str(out),
           "--builder", "html"]
    rc = subprocess.run(cmd).returncode
    if rc == 0:
        print(f"\nbook: {(out / '_build' / 'html' / 'index.html').resolve()}")
    return rc


def load_parameters(path) -> dict:
    """Notebook parameters from a YAML file (a mapping, e.g. ``profile: full`` and ``seed: 0``),
    passed to every chapter by papermill; a clear error if the file is missing or not a mapping."""
    import yaml
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: parameters file {p} not found (see scripts/full_gpu.yaml for an example)")
    params = yaml.safe_load(p.read_text()) or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise SystemExit(f"error: {p} must be a YAML mapping of parameter names to values, e.g. 'profile: full'")
    return params


def cmd_run(args) -> int:
    params = load_parameters(args.parameters) if args.parameters else {}
    profile = get_profile(args.profile or params.pop("profile", None)).name
    params.pop("profile", None)
    chapters = resolve_chapters(args.chapters)
    out = Path(args.out)
    print(f"running {len(chapters)} notebook(s) on profile '{profile}' into {out}", flush=True)
    results = []
    for stem in chapters:
        print(f"\n=== {stem} ({profile}) ===", flush=True)
        r = run_notebook(stem, profile, out, extra_params=params)
        results.append(r)
        if r["status"] == "ok":
            print(f"ok in {r['seconds']} s -> {r['output']}", flush=True)
        else:
            where = f" at cell {r['cell_index']} (execution count {r.get('exec_count')})" if "cell_index" in r else ""
            print(f"FAILED{where}: {r.get('error')}\n  partial notebook kept: {r.get('output')}", flush=True)
    from .utils import atomic_write_json
    atomic_write_json(out / "run_summary.json", {"profile": profile, "results": results})
    failed = [r["chapter"] for r in results if r["status"] != "ok"]
    print(f"\n{len(results) - len(failed)} ok, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ccc_lib", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute chapters with papermill")
    r.add_argument("chapters", nargs="*", help="chapter numbers or names (default: all)")
    r.add_argument("--profile", default=None,
                   help=f"one of {', '.join(PROFILES)} (default: $CCC_PROFILE or 'default')")
    r.add_argument("--out", default=str(DEFAULT_OUT), help="where executed notebooks go")
    r.add_argument("--parameters", default=None, metavar="YAML",
                   help="papermill parameters for every chapter (a YAML mapping; its 'profile' is used "
                        "unless --profile is given), e.g. scripts/full_gpu.yaml")
    b = sub.add_parser("book", help="build the HTML book from executed notebooks")
    b.add_argument("--executed", default=str(DEFAULT_OUT), help="folder of executed notebooks")
    b.add_argument("--out", default=str(REPO), help="the HTML goes to OUT/_build/html")
    b.add_argument("--repo-url", default=None,
                   help="GitHub URL for the launch/repository/issue buttons (default: $CCC_REPO_URL, "
                        "$GITHUB_REPOSITORY, the origin remote, else _config.yml)")
    sub.add_parser("profiles", help="list the run profiles")
    args = ap.parse_args(argv)
    if args.cmd == "profiles":
        for p in PROFILES.values():
            print(f"{p.name:8s} {p.description}")
        return 0
    if args.cmd == "book":
        return cmd_book(args)
    try:
        return cmd_run(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
