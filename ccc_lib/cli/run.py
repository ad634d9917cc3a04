"""``python -m ccc_lib run [CHAPTER...] --profile P [--jobs N]``: the chapters one after another in this
process (:func:`ccc_lib.runner.run_notebook`), or N side by side, each in its own ``python -m ccc_lib run``
with its share of the threads; a summary of every chapter's status and seconds, and a non-zero exit when
one failed."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..profiles import get_profile
from ..runner import CHAPTERS, find_root, resolve_chapters, run_notebook

__all__ = ["cmd_run", "load_parameters", "heaviest_first", "HEAVY_ORDER"]


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
        from .. import dryrun
        data = dryrun.activate(prof)
        print(f"DRY RUN of 'full' on generated files — not results. {dryrun.summary(data)}", flush=True)
    elif prof.download and not args.skip_fetch_check:
        from .. import fetch
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
    from ..utils import atomic_write_json
    atomic_write_json(Path(args.summary) if args.summary else out / "run_summary.json",
                      {"profile": profile, "results": results})
    failed = [r["chapter"] for r in results if r["status"] != "ok"]
    print("\nper chapter: " + ", ".join(f"{r['chapter']} {r['status']} {r.get('seconds', '-')} s" for r in results))
    print(f"{len(results) - len(failed)} ok, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _chapter_jobs(value) -> int:
    """How many chapters run side by side: ``--jobs``, else ``CCC_CHAPTER_JOBS``, else 1."""
    from ..checks import InputError
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


#: the chapters from the heaviest, where no earlier run says otherwise: their cold one-thread CPU seconds at
#: default (benchmarks/results/chapter_cpu_default_2026-12-07.json: 1, 3, 4, 2, 0), so that on 2 lanes chapter 2
#: (which reads chapter 1's generators near its end) follows chapter 1 and the lanes end close together
HEAVY_ORDER = ("01_counterfeits", "03_iocn", "04_drift", "02_neuralfp", "00_classifiers", "05_report")


def heaviest_first(chapters, out: Path) -> list:
    """``chapters`` ordered for running side by side, the longest first (so that the last to start are short
    and the lanes end together): by the ``run_seconds`` of the previous run in ``out`` where every chapter
    has one, else :data:`HEAVY_ORDER`; chapter 1 always first, since chapters 2 and 3 read its generators."""
    last = {}
    for stem in chapters:
        try:
            last[stem] = float(json.loads((Path(out) / "metrics" / f"{stem}.json").read_text())["run_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            break
    if len(last) == len(chapters):
        order = sorted(chapters, key=lambda s: -last[s])
    else:
        rank = {s: i for i, s in enumerate(HEAVY_ORDER)}
        order = sorted(chapters, key=lambda s: rank.get(s, len(rank)))
    # chapter 1 starts first whatever its length: chapters 2 and 3 read its generators (and wait for them)
    return sorted(order, key=lambda s: s != CHAPTERS["1"])


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
    from ..parallel import available_cores
    cores = available_cores()
    threads = max(1, int(os.environ.get("OMP_NUM_THREADS") or cores) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CCC_CHAPTER_JOBS="1",
               CCC_JOBS=os.environ.get("CCC_JOBS") or str(max(1, cores // jobs)))
    tmp = Path(tempfile.mkdtemp(prefix="ccc-run-"))
    done1 = tmp / "chapter1.ended"        # chapters reading chapter 1's generators wait for them until it exists
    if CHAPTERS["1"] in chapters:
        from ..counterfeits.trained import AWAIT_ENV
        env[AWAIT_ENV] = str(done1)

    def one(stem):
        summary = tmp / f"{stem}.json"
        cmd = [sys.executable, "-m", "ccc_lib", "run", stem, "--profile", profile, "--out", str(out),
               "--notebooks", str(notebook_dir), "--root", str(root), "--skip-fetch-check", "--summary", str(summary)]
        if args.parameters:
            cmd += ["--parameters", str(args.parameters)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        finally:
            if stem == CHAPTERS["1"]:
                done1.touch()
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
