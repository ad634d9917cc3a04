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

CHAPTERS = {
    "0": "00_classifiers", "1": "01_counterfeits", "2": "02_neuralfp", "3": "03_iocn", "4": "04_drift",
    "5": "05_report",
}
_NAMES = {v.split("_", 1)[1]: k for k, v in CHAPTERS.items()}


def find_root(explicit=None) -> Path:
    """The project root (the folder holding ``notebooks/`` and ``_config.yml``): ``explicit`` (the
    ``--root`` option), else ``CCC_ROOT``, else the working directory or the nearest parent that is one,
    else the checkout this package was imported from (an editable install). The console script thus
    works from a plain ``pip install`` run inside a clone."""
    def ok(d: Path) -> bool:
        return (d / "notebooks").is_dir() and (d / "_config.yml").is_file()
    if explicit or os.environ.get("CCC_ROOT"):
        d = Path(explicit or os.environ["CCC_ROOT"]).expanduser().resolve()
        if not ok(d):
            raise SystemExit(f"error: {d} is not the book's project root (no notebooks/ and _config.yml there)")
        return d
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if ok(d):
            return d
    pkg = Path(__file__).resolve().parent.parent
    if ok(pkg):
        return pkg
    raise SystemExit("error: run this from the book's clone (a folder with notebooks/ and _config.yml) "
                     "or pass --root PATH")


REPO = Path(__file__).resolve().parent.parent        # kept for callers of the old constants
NOTEBOOK_DIR = REPO / "notebooks"
DEFAULT_OUT = REPO / "book" / "executed"


def resolve_chapters(names, notebook_dir: Path | None = None) -> list[str]:
    """Chapter numbers or names ('0', 'classifiers', '01_counterfeits', 'all') → notebook stems."""
    notebook_dir = Path(notebook_dir) if notebook_dir is not None else NOTEBOOK_DIR
    if not names or "all" in names:
        return [v for _, v in sorted(CHAPTERS.items()) if (notebook_dir / f"{v}.ipynb").exists()]
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


BANNERS = {
    "dry_run": ("warning", "DRY RUN on generated files — not results",
                "This page was executed at profile `{profile}`: the code paths of `full` on small files "
                "*generated* in the real datasets' formats (see `ccc_lib.dryrun`), with every size and step "
                "count shrunk. Every number, table and figure below only shows that the code runs; none is "
                "a result, and the datasets named are stand-ins."),
    "smoke": ("note", "Smoke run: tiny sizes, not the book's results",
              "This page was executed at profile `smoke` (the CI check: tiny subsets, few epochs). Its "
              "numbers show that the code runs; the book's results are those of the `default` profile."),
}


def banner_kind(profile: str) -> str | None:
    prof = get_profile(profile)
    return "dry_run" if prof.dry_run else "smoke" if prof.name == "smoke" else None


def mark_executed(path: Path, profile: str) -> None:
    """Record the profile in the executed notebook's metadata (``ccc.profile``, ``ccc.dry_run``), hide
    the parameters cells (the set-up cell prints the profile) and, for a dry run or a smoke run, put a
    visible banner right under the page title."""
    import nbformat
    from nbformat.v4 import new_markdown_cell
    prof = get_profile(profile)
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.setdefault("ccc", {})
    meta.update(profile=prof.name, scale=prof.scale, dry_run=bool(prof.dry_run))
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    kind = banner_kind(prof.name)
    if kind and not any(c.metadata.get("ccc", {}).get("banner") for c in nb.cells):
        style, title, body = BANNERS[kind]
        text = f"```{{{style}}}\n**{title}.** {body.format(profile=prof.name)}\n```"
        cell = new_markdown_cell(text, metadata={"ccc": {"banner": kind}})
        at = next((i + 1 for i, c in enumerate(nb.cells)
                   if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), 0)
        nb.cells.insert(at, cell)
    nbformat.write(nb, path)


def _failing_cell(path: Path, index) -> tuple[int | None, str]:
    """Name the failing cell: ``(its index in the SOURCE notebook, its first source line)``, from
    the executed copy whose indices papermill reports (it holds papermill's injected-parameters cell;
    papermill's error banner, added on top after the failure, is skipped)."""
    try:
        import nbformat
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
        cell = cells[int(index)]
        injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in cells[:int(index)])
        src = cell.source.strip().splitlines()
        return int(index) - injected, (src[0][:100] if src else "")
    except Exception:            # the name is a courtesy; papermill's index is reported anyway
        return None, ""


def run_notebook(stem: str, profile: str, out_dir: Path, extra_params: dict | None = None,
                 notebook_dir: Path | None = None) -> dict:
    """Execute one chapter. Its metrics file is removed first, so whatever is there afterwards was
    written by this run (Claims records each claim as it is declared); a failed chapter's file gets
    ``status: failed`` and the error (written fresh when the notebook recorded nothing)."""
    import papermill as pm

    from .utils import absolute_path, absolutize_env
    absolutize_env()                              # the kernel starts in notebooks/: no relative path reaches it
    notebook_dir = absolute_path(notebook_dir) if notebook_dir is not None else NOTEBOOK_DIR
    src = notebook_dir / f"{stem}.ipynb"
    out_dir = absolute_path(out_dir)
    metrics_dir = out_dir / "metrics"
    mpath = metrics_dir / f"{stem}.json"
    if not src.exists():
        return {"chapter": stem, "status": "missing", "error": f"{src} does not exist"}
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    mpath.unlink(missing_ok=True)                 # never stamp an older run's file
    dst = out_dir / f"{stem}.ipynb"
    os.environ["CCC_METRICS_DIR"] = str(metrics_dir)
    os.environ.setdefault("CCC_PROGRESS", "off")
    from . import dryrun
    dryrun.activate(profile)                      # dry run: CCC_DATA -> the generated files
    # the kernel draws figures inline: MPLBACKEND=Agg (set for tests and scripts) would leave every
    # executed page without its figures, so it is not passed on to the notebook's kernel
    agg = os.environ.get("MPLBACKEND", "").lower() == "agg" and os.environ.pop("MPLBACKEND")
    t0 = time.perf_counter()
    result = {"chapter": stem, "profile": profile, "output": str(dst)}
    try:
        pm.execute_notebook(str(src), str(dst), parameters={"profile": profile, **(extra_params or {})},
                            kernel_name="python3", cwd=str(notebook_dir), progress_bar=False,
                            log_output=False)
        result["status"] = "ok"
    except pm.PapermillExecutionError as exc:
        result.update(status="failed", cell_index=exc.cell_index, exec_count=exc.exec_count,
                      error=f"{exc.ename}: {exc.evalue}")
    except Exception as exc:        # kernel died, bad notebook, ...
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        if agg:
            os.environ["MPLBACKEND"] = agg
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if "cell_index" in result:
        result["source_cell"], result["cell"] = _failing_cell(dst, result["cell_index"])
    if dst.exists():
        mark_executed(dst, profile)
    _finish_metrics(mpath, stem, profile, result)
    return result


def _finish_metrics(mpath: Path, stem: str, profile: str, result: dict) -> None:
    from .utils import atomic_write_json
    data = {}
    if mpath.exists():
        try:
            data = json.loads(mpath.read_text())
        except json.JSONDecodeError:
            data = {"note": "the notebook's metrics file was unreadable"}
    prof = get_profile(profile)
    data.setdefault("chapter", stem)
    data.setdefault("profile", prof.name)
    data.setdefault("claims", [])
    data.setdefault("failed_claims", [])
    data.setdefault("metrics", {})
    data.setdefault("dry_run", bool(prof.dry_run))
    if result["status"] != "ok":
        data["claims_status"] = data.get("status")          # what Claims had got to ("running", ...)
        data["status"] = "failed"
        data["error"] = result.get("error")
        if "cell_index" in result:
            data["failed_cell"] = {"index": result.get("source_cell"), "source": result.get("cell", ""),
                                   "notebook": f"notebooks/{stem}.ipynb"}
    else:
        data["claims_status"] = data.get("status")
        data["status"] = "ok"
    data["run_seconds"] = result["seconds"]
    atomic_write_json(mpath, data)


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


def stage_book(executed: Path, staging: Path, repo_url: str | None = None, root: Path | None = None) -> Path:
    """Lay out the book's sources for Jupyter Book: the configuration, ``book/``, the package's
    sources (``ccc_lib/``, for the chapters' ``literalinclude``) and the *executed* notebooks under ``notebooks/``, so that page names (and the launch buttons, which open
    ``notebooks/<chapter>.ipynb`` in the repository) match the sources. ``repo_url`` replaces
    ``repository.url`` in the staged configuration. The staged copies then follow the static book's
    rules (:func:`ccc_lib.static_book.finish_staging`: ``live-only`` cells, the intro's findings table)."""
    import shutil
    import yaml
    root = Path(root) if root is not None else REPO
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(root / name, staging / name)
    if repo_url:
        cfg = yaml.safe_load((staging / "_config.yml").read_text())
        cfg.setdefault("repository", {})["url"] = repo_url
        (staging / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    shutil.copytree(root / "book", staging / "book", ignore=shutil.ignore_patterns("executed"))
    # the chapters show the library's own code beside its equations (``literalinclude`` of
    # ``../ccc_lib/<module>.py``), so the package's sources are staged next to the notebooks
    shutil.copytree(root / "ccc_lib", staging / "ccc_lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (staging / "notebooks").mkdir()
    for nb in sorted(Path(executed).glob("*.ipynb")):
        shutil.copy(nb, staging / "notebooks" / nb.name)
    # the static book's rules (ccc_lib.static_book): a live-only cell's widgets become one line saying how to
    # make them live; the intro gets the findings table read from this run's metrics and the PDF link
    from .static_book import finish_staging
    finish_staging(staging, executed)
    return staging


def executed_profile(path: Path) -> dict:
    """``{"profile", "dry_run"}`` of an executed notebook: the runner's ``ccc`` metadata, else
    papermill's parameters (a notebook executed by papermill directly)."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    meta = dict(nb.metadata.get("ccc", {}))
    if "profile" not in meta:
        prof = nb.metadata.get("papermill", {}).get("parameters", {}).get("profile")
        meta["profile"] = prof
        if prof:
            try:
                meta["dry_run"] = bool(get_profile(prof).dry_run)
            except ValueError:
                pass
    meta.setdefault("dry_run", False)
    return meta


def figure_problems(notebook) -> list[str]:
    """Figure cells (``mystnb.figure`` metadata: a caption and a label) must show exactly one output:
    myst-nb wraps every visible output of such a cell in a figure with the same label, so a second
    one breaks the label ("Duplicate explicit target name") and the references to it."""
    nb = json.loads(Path(notebook).read_text())
    out = []
    for i, c in enumerate(nb.get("cells", [])):
        fig = c.get("metadata", {}).get("mystnb", {}).get("figure")
        if c.get("cell_type") != "code" or not fig:
            continue
        shown = [o for o in c.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")
                 and any(not k.startswith("application/papermill.record") for k in o.get("data", {}))]
        if len(shown) != 1:
            out.append(f"{Path(notebook).stem}: cell {i} (figure {fig.get('name')!r}) shows {len(shown)} outputs, "
                       "not 1 (draw one figure, e.g. plots.stack_figures; put tables in the next cell)")
    return out


def check_executed(executed: Path, chapters=None) -> tuple[list[str], list[str]]:
    """What stands between the executed notebooks and a book: ``(errors, notes)``. Errors: a
    chapter missing, a dry run (generated files: never a book), a chapter whose run failed (its
    metrics file says ``status: failed``), chapters run at different profiles. Notes: a smoke book
    (allowed; every page carries the smoke banner)."""
    executed = Path(executed)
    chapters = list(CHAPTERS.values()) if chapters is None else list(chapters)
    errors, notes, profiles = [], [], {}
    for stem in chapters:
        nb = executed / f"{stem}.ipynb"
        if not nb.exists():
            errors.append(f"{stem}: no executed notebook in {executed} (run: python -m ccc_lib run {stem})")
            continue
        meta = executed_profile(nb)
        profiles[stem] = meta.get("profile")
        if meta.get("dry_run"):
            errors.append(f"{stem}: executed at '{meta.get('profile')}', a DRY RUN on generated files — "
                          "not results; the book refuses it (run a real profile: default, or full on a GPU)")
        mfile = executed / "metrics" / f"{stem}.json"
        if mfile.exists():
            try:
                m = json.loads(mfile.read_text())
            except json.JSONDecodeError:
                m = {"status": "unreadable metrics file"}
            if m.get("status") not in ("ok",):
                cell = m.get("failed_cell", {})
                where = f" at cell {cell.get('index')} ({cell.get('source', '')!r})" if cell else ""
                failed = ", ".join(m.get("failed_claims", []))
                errors.append(f"{stem}: status {m.get('status')!r}{where}: {m.get('error', '')}"
                              + (f"; failed claims: {failed}" if failed else ""))
    distinct = {p for p in profiles.values() if p}
    if len(distinct) > 1:
        errors.append("chapters ran at different profiles: "
                      + ", ".join(f"{k}={v}" for k, v in profiles.items()))
    if "smoke" in distinct:
        notes.append("smoke book: every page says it is a smoke run (tiny sizes, not the book's results)")
    return errors, notes


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
    root = find_root(args.root)
    notebook_dir = args.notebooks or root / "notebooks"
    params = load_parameters(args.parameters) if args.parameters else {}
    profile = get_profile(args.profile or params.pop("profile", None)).name
    params.pop("profile", None)
    if args.dry_run:
        if get_profile(profile).scale != "full":
            raise SystemExit(f"error: --dry-run is the dry run of 'full' (profile full_dry), not of {profile!r}")
        profile = "full_dry"
    prof = get_profile(profile)
    chapters = resolve_chapters(args.chapters, notebook_dir)
    out = args.out or root / "book" / "executed"
    if prof.dry_run:
        from . import dryrun
        data = dryrun.activate(prof)
        print(f"DRY RUN of 'full' on generated files — not results. {dryrun.summary(data)}", flush=True)
    elif prof.download and not args.skip_fetch_check:
        from . import fetch
        missing = fetch.missing_for(prof)
        if missing:
            print(fetch.missing_report(missing, prof.name), file=sys.stderr)
            return 3
    jobs = _chapter_jobs(args.jobs)
    print(f"running {len(chapters)} notebook(s) on profile '{profile}' into {out}"
          + (f", {jobs} side by side" if jobs > 1 and len(chapters) > 1 else ""), flush=True)
    if jobs > 1 and len(chapters) > 1:
        results = _run_side_by_side(chapters, profile, out, notebook_dir, root, args, jobs)
    else:
        results = _run_in_turn(chapters, profile, out, notebook_dir, params)
    from .utils import atomic_write_json
    atomic_write_json(Path(args.summary) if args.summary else out / "run_summary.json",
                      {"profile": profile, "results": results})
    failed = [r["chapter"] for r in results if r["status"] != "ok"]
    print("\nper chapter: " + ", ".join(f"{r['chapter']} {r['status']} {r.get('seconds', '-')} s" for r in results))
    print(f"{len(results) - len(failed)} ok, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _chapter_jobs(value) -> int:
    """How many chapters run side by side: ``--jobs``, else ``CCC_CHAPTER_JOBS``, else 1."""
    from .checks import InputError
    raw = value if value is not None else os.environ.get("CCC_CHAPTER_JOBS", "").strip() or 1
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise InputError(f"run --jobs / CCC_CHAPTER_JOBS={raw!r}: give how many chapters run side by side, 1 or more")
    return n


def _run_in_turn(chapters, profile, out, notebook_dir, params) -> list:
    results = []
    for stem in chapters:
        print(f"\n=== {stem} ({profile}) ===", flush=True)
        r = run_notebook(stem, profile, out, extra_params=params, notebook_dir=notebook_dir)
        results.append(r)
        if r["status"] == "ok":
            print(f"ok in {r['seconds']} s -> {r['output']}", flush=True)
        else:
            where = (f" at cell {r.get('source_cell')} of notebooks/{stem}.ipynb ({r.get('cell', '')!r})"
                     if "cell_index" in r else "")
            print(f"FAILED: chapter {stem}{where}: {r.get('error')}\n  partial notebook kept: "
                  f"{r.get('output')}", flush=True)
    return results


#: the chapters from the heaviest, where no earlier run says otherwise (measured at default, warm and cold)
HEAVY_ORDER = ("03_iocn", "02_neuralfp", "01_counterfeits", "04_drift", "00_classifiers", "05_report")


def heaviest_first(chapters, out: Path) -> list:
    """``chapters`` ordered for running side by side, the longest first (so that the last to start are short
    and the lanes end together): by the ``run_seconds`` of the previous run in ``out`` where every chapter
    has one, else :data:`HEAVY_ORDER`."""
    last = {}
    for stem in chapters:
        try:
            last[stem] = float(json.loads((Path(out) / "metrics" / f"{stem}.json").read_text())["run_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            break
    if len(last) == len(chapters):
        return sorted(chapters, key=lambda s: -last[s])
    rank = {s: i for i, s in enumerate(HEAVY_ORDER)}
    return sorted(chapters, key=lambda s: rank.get(s, len(rank)))


def _run_side_by_side(chapters, profile, out, notebook_dir, root, args, jobs: int) -> list:
    """The chapters ``jobs`` at a time, each in its own ``python -m ccc_lib run STEM`` (its own kernel), with
    the threads shared out (the heaviest first: :func:`heaviest_first`): each gets ``OMP_NUM_THREADS`` ÷ ``jobs`` torch/BLAS threads (default: the cores)
    and ``CCC_JOBS`` = cores ÷ ``jobs`` workers for its own jobs, so the machine is not oversubscribed. The
    chapters share artefacts only through the cache, whose locks make a second builder wait and read; the
    report (chapter 5) reads the others' metrics, so it runs after them. Returns the chapters' results in
    the order given."""
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from .parallel import available_cores
    cores = available_cores()
    threads = max(1, int(os.environ.get("OMP_NUM_THREADS") or cores) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CCC_CHAPTER_JOBS="1",
               CCC_JOBS=os.environ.get("CCC_JOBS") or str(max(1, cores // jobs)))
    tmp = Path(tempfile.mkdtemp(prefix="ccc-run-"))

    def one(stem):
        summary = tmp / f"{stem}.json"
        cmd = [sys.executable, "-m", "ccc_lib", "run", stem, "--profile", profile, "--out", str(out),
               "--notebooks", str(notebook_dir), "--root", str(root), "--skip-fetch-check", "--summary", str(summary)]
        if args.parameters:
            cmd += ["--parameters", str(args.parameters)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        try:
            r = json.loads(summary.read_text())["results"][0]
        except (OSError, ValueError, KeyError, IndexError):
            r = {"chapter": stem, "profile": profile, "status": "failed",
                 "error": f"the chapter's runner exited {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}"}
        lines = [l for l in proc.stdout.splitlines() if l.startswith(("ok in", "FAILED", "  partial"))]
        print(f"\n=== {stem} ({profile}) ===\n" + "\n".join(lines), flush=True)
        return r

    last = [s for s in chapters if s == CHAPTERS["5"]]
    first = heaviest_first([s for s in chapters if s not in last], out)
    try:
        with ThreadPoolExecutor(jobs) as pool:
            results = dict(zip(first, pool.map(one, first)))
        results.update({s: one(s) for s in last})
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return [results[s] for s in chapters]


#: the options that name paths; :func:`_absolute_paths` resolves them once, where they enter
PATH_OPTIONS = ("out", "root", "notebooks", "executed", "parameters", "file", "source", "summary")


def _absolute_paths(args) -> None:
    """The one path rule (:func:`ccc_lib.utils.absolute_path`), applied where paths enter: every path
    option and every path variable of the environment is made absolute against the caller's working
    directory, before anything reaches a kernel (which papermill starts in ``notebooks/``), a
    subprocess or the environment they inherit."""
    from .utils import absolute_path, absolutize_env
    absolutize_env()
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if value and "://" not in str(value):             # a bundle's URL stays as it is
            setattr(args, name, absolute_path(value))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ccc_lib", description=__doc__.splitlines()[0])
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
    args = ap.parse_args(argv)
    _absolute_paths(args)
    if args.cmd == "cache":
        from .cache import cmd_cache
        return cmd_cache(args)
    if args.cmd == "profiles":
        for p in PROFILES.values():
            print(f"{p.name:8s} {p.description}")
        return 0
    if args.cmd == "book":
        return cmd_book(args)
    if args.cmd == "check":
        return cmd_check(args)
    if args.cmd == "fetch":
        from . import fetch
        return fetch.cmd_fetch(args)
    try:
        return cmd_run(args)
    except (ValueError, RuntimeError) as exc:       # bad profile, CCC_DATA on generated files, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
