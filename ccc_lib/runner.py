"""Run the book's notebooks with papermill, one chapter at a time (the commands that call this are in
:mod:`ccc_lib.cli`: ``python -m ccc_lib run [CHAPTER...] --profile P``).

Each notebook is executed into the book's build area (``book/executed/`` by default) with the
papermill parameter ``profile``; a failing notebook keeps its partial output, the failing cell
is named, and its metrics file says ``status: failed``. Each chapter's headline metrics land in
``book/executed/metrics/<chapter>.json`` with its run time. :func:`check_executed` says what stands
between the executed notebooks and a book."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .profiles import get_profile

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
