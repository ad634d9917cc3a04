"""What the static book shows differently from a running notebook, applied to the staged copies of the
executed notebooks when the book is staged (:func:`stage_book`; the executed notebooks themselves are
left as they ran):

* A cell tagged ``live-only`` (e.g. chapter 1's sliders that retrain the generator) needs a kernel: in a
  static page its widgets would look like they work and change nothing. Its outputs are replaced by one
  line saying how to make it live, and the widget models only it used are dropped from the saved state.
* The intro page receives the generated "what we found" table and the link to the PDF
  (:func:`ccc_lib.findings.write_findings`), and the book's build times as measured by
  ``benchmarks/rebuild_times.py`` (:mod:`ccc_lib.build_times`: read from ``benchmarks/results/``, never typed)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = ["LIVE_ONLY_TAG", "LIVE_NOTE", "static_notebook", "finish_staging", "stage_book", "repository_url"]

#: the checkout this package was imported from (the default project root of :func:`stage_book`)
PACKAGE_ROOT = Path(__file__).resolve().parent.parent

LIVE_ONLY_TAG = "live-only"
LIVE_NOTE = ("Live control: these sliders retrain and redraw in a running notebook, so this static page leaves "
             "them out. To use them, open the notebook in Jupyter or start it from the launch button (the rocket "
             "at the top of this page) and run the chapter; the precomputed panel above works here as it is.")
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_REF = re.compile(r"IPY_MODEL_([0-9A-Za-z_-]+)")


def _note_output(text: str = LIVE_NOTE) -> dict:
    import html
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": [text],
                     "text/html": [f'<div class="ccc-live-only-note">{html.escape(text)}</div>']}}


def _views(nb: dict) -> set[str]:
    ids = set()
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            view = (out.get("data") or {}).get(_WIDGET_VIEW)
            if isinstance(view, dict) and view.get("model_id"):
                ids.add(view["model_id"])
    return ids


def _reach(state: dict, start) -> set[str]:
    """Models reachable from ``start`` through ``IPY_MODEL_`` references in their states."""
    seen, todo = set(), list(start)
    while todo:
        mid = todo.pop()
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        todo += _REF.findall(json.dumps(state[mid].get("state", {})))
    return seen


def _prune_widget_state(nb: dict, removed_views) -> int:
    """Drop the saved widget models only the removed views used: reachable from them, not from any
    remaining view, plus models (e.g. a ``jslink``) that reference nothing but dropped ones. Models no
    view reaches at all (a link between two panel widgets) stay. Returns how many were dropped."""
    meta = nb.get("metadata", {}).get("widgets", {}).get(_WIDGET_STATE)
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        return 0
    state = meta["state"]
    drop = _reach(state, removed_views) - _reach(state, _views(nb))
    for mid, model in state.items():
        refs = set(_REF.findall(json.dumps(model.get("state", {}))))
        if mid not in drop and refs and refs <= drop:
            drop.add(mid)
    for k in drop:
        del state[k]
    return len(drop)


def static_notebook(nb: dict, note: str = LIVE_NOTE) -> int:
    """Replace the outputs of every ``live-only`` cell of ``nb`` (a notebook as a JSON dict) by ``note``
    and prune the widget state they alone used. Returns the number of such cells."""
    n, removed = 0, set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and LIVE_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            removed |= _views({"cells": [cell]})
            cell["outputs"] = [_note_output(note)]
            n += 1
    if removed:
        _prune_widget_state(nb, removed)
    return n


def finish_staging(staging: Path, executed: Path, pdf_href: str = "../book.pdf", results: Path | None = None) -> dict:
    """Apply the static book's rules to a staged book: ``live-only`` cells of ``staging/notebooks/*.ipynb``,
    the findings table and PDF link of ``staging/book/intro.md`` (from ``executed/metrics``) and, at its
    marker, the measured build times (:func:`ccc_lib.build_times.build_times_markdown` of ``results``, the
    project's ``benchmarks/results``; "not measured" where it has none). Returns ``{"live_only_cells": n,
    "findings": bool, "build_times": bool}``."""
    from .build_times import MARKER, build_times_markdown
    from .findings import write_findings
    staging, n = Path(staging), 0
    for path in sorted((staging / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        k = static_notebook(nb)
        if k:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            n += k
    intro = staging / "book" / "intro.md"
    done = intro.exists() and write_findings(intro, Path(executed) / "metrics", pdf_href=pdf_href)
    times = intro.exists() and MARKER in intro.read_text()
    if times:
        table = build_times_markdown(results)
        intro.write_text(intro.read_text().replace(MARKER, table))
    return {"live_only_cells": n, "findings": bool(done), "build_times": bool(times)}


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
    import subprocess
    try:
        url = subprocess.run(["git", "-C", str(PACKAGE_ROOT), "remote", "get-url", "origin"], capture_output=True,
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
    rules (:func:`finish_staging`: ``live-only`` cells, the intro's findings table and build times)."""
    import shutil
    import yaml
    root = Path(root) if root is not None else PACKAGE_ROOT
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
    # the static book's rules: a live-only cell's widgets become one line saying how to make them live; the
    # intro gets the findings table read from this run's metrics, the PDF link and the measured build times
    finish_staging(staging, executed, results=root / "benchmarks" / "results")
    return staging
