"""How long the book takes to rebuild: every chapter run by the runner twice at one profile, first from an
empty checkpoint cache (cold: everything trained, inverted and fitted) and then again on the cache the
first run filled (warm: only what is not cached is recomputed — scoring, tables, figures). Both runs use
the same command, threads, data and profile; the only difference is the cache.

    python benchmarks/rebuild_times.py                      # default profile, all chapters, fresh cache
    python benchmarks/rebuild_times.py --profile smoke 0 1  # some chapters at another profile
    python benchmarks/rebuild_times.py --cache DIR --warm-only   # only a warm run on an existing cache
    python benchmarks/rebuild_times.py --bundle FILE        # + a run from a shipped bundle (cache import FILE)
    python benchmarks/rebuild_times.py --cache DIR --warm-only --bundle FILE --book   # + the HTML book's build
    python benchmarks/rebuild_times.py --chapter-jobs 2 --book   # the book from scratch: cold chapters + HTML, then warm
    python benchmarks/rebuild_times.py --cache DIR --warm-only --chapter-jobs 2      # two chapters side by side
    python benchmarks/rebuild_times.py --jobs 1,2 3         # cold runs with CCC_JOBS=1 and =2: speed-up per heavy cell
    python benchmarks/rebuild_times.py --compare BEFORE.json AFTER.json   # side by side, nothing run
    python benchmarks/rebuild_times.py --smoke --json F     # seconds: one cold run of chapter 5 at smoke

Prints a table of per-chapter seconds (cold, warm, warm ÷ cold, and from the bundle with ``--bundle``), the
totals against the book's goal (default, #37: ≤ 30 min cold, ≤ 90 s warm, ≤ 2 min from a bundle to a built
book), the heaviest cells of each run (papermill's per-cell durations) and the machine's load average
before and after each run (the times are only comparable on an otherwise idle machine). With ``--jobs
1,2`` the cold run is repeated once per ``CCC_JOBS`` value, each on its own empty cache, with the same
``--threads`` in total (``OMP_NUM_THREADS``; each job of :func:`ccc_lib.parallel.run_jobs` uses one), and
the heaviest cells are printed side by side with their speed-up. ``--compare`` prints two result files
(before / after) side by side per chapter. Writes the numbers to
``benchmarks/results/rebuild_times_<profile>.json`` (or ``--json``), with the code version (``git describe``) it
measured. A chapter that fails is reported as failed, and the script exits 1. The README's and the intro's
build-time tables are generated from these files (``ccc_lib.build_times``; after saving a new result run
``python scripts/readme_build_times.py``)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the goals of #37 for the whole book: cold <= 30 min on 2 cores, warm <= 90 s, bundle -> built book <= 2 min
GOAL_S = {"default": {"cold": 1800.0, "warm": 90.0, "bundle": 120.0}}
CHAPTERS = ("00_classifiers", "01_counterfeits", "02_neuralfp", "03_iocn", "04_drift", "05_report")


def cell_times(notebook: Path) -> list[dict]:
    """Per code cell of an executed notebook: its index in the source notebook (papermill's injected
    parameters cell not counted), the section it is in (the last Markdown heading above it), its first line
    that says what it does (not a comment, not the timer's ``t = time.perf_counter()``) and papermill's
    duration (seconds)."""
    import re
    try:
        nb = json.loads(notebook.read_text())
    except (OSError, ValueError):
        return []
    out, section, index = [], "", -1
    for c in nb.get("cells", []):
        if "injected-parameters" in c.get("metadata", {}).get("tags", []):
            continue
        index += 1
        src = "".join(c.get("source", "")).strip().splitlines()
        if c.get("cell_type") == "markdown":
            section = next((l.lstrip("#").strip() for l in src if l.startswith("#")), section)
        if c.get("cell_type") != "code":
            continue
        d = c.get("metadata", {}).get("papermill", {}).get("duration")
        if d is None:
            continue
        first = next((l for l in src if l.strip() and not l.lstrip().startswith("#")
                      and not re.match(r"\s*t\d*\s*=\s*time\.perf_counter\(\)\s*$", l)), src[0] if src else "")
        out.append({"index": index, "section": section, "first_line": first[:70], "seconds": float(d)})
    return out


def run_once(chapters: list[str], profile: str, cache: Path, out: Path, threads: int,
             extra_env: dict | None = None, chapter_jobs: int = 1) -> dict:
    """One runner invocation; returns per-chapter seconds and status from the metrics files, and the
    per-cell durations of the executed notebooks."""
    env = dict(os.environ, CCC_CACHE=str(cache), CCC_PROGRESS="off", MPLBACKEND="Agg",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **(extra_env or {}))
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), os.times()
    proc = subprocess.run([sys.executable, "-m", "ccc_lib", "run", *chapters, "--profile", profile,
                           "--out", str(out), "--jobs", str(chapter_jobs)], env=env, capture_output=True, text=True)
    wall, c1 = time.perf_counter() - t0, os.times()
    per = {}
    for stem in CHAPTERS:
        m = out / "metrics" / f"{stem}.json"
        if m.exists():
            d = json.loads(m.read_text())
            per[stem] = {"seconds": d.get("run_seconds"), "status": d.get("status"),
                         "cells": cell_times(out / f"{stem}.ipynb")}
    return {"wall_s": wall, "cpu_s": (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system),
            "returncode": proc.returncode, "chapters": per, "env": extra_env or {},
            "load_before": load0, "load_after": os.getloadavg(), "tail": proc.stdout[-2000:] + proc.stderr[-2000:]}


def build_book(executed: Path, cache: Path, dest: Path) -> dict:
    """``python -m ccc_lib book --executed EXECUTED --out DEST`` (the HTML book from executed notebooks, as
    the Pages workflow builds it); returns its seconds and exit status."""
    env = dict(os.environ, CCC_CACHE=str(cache), CCC_PROGRESS="off", MPLBACKEND="Agg")
    root = Path(__file__).resolve().parents[1]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ccc_lib", "book", "--root", str(root), "--executed", str(executed),
                           "--out", str(dest)], env=env, capture_output=True, text=True)
    return {"seconds": time.perf_counter() - t0, "returncode": proc.returncode,
            "tail": proc.stdout[-2000:] + proc.stderr[-2000:]}


def import_bundle(bundle: str, cache: Path) -> float:
    """``python -m ccc_lib cache import BUNDLE`` into ``cache``; returns its seconds (raises on failure)."""
    env = dict(os.environ, CCC_CACHE=str(cache), CCC_PROGRESS="off")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ccc_lib", "cache", "import", bundle], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"cache import {bundle} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def code_version() -> str | None:
    """``git describe --always --dirty`` of the checkout measured (None outside one)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def fmt(x):
    return "—" if x is None else f"{x:7.1f}"


def seconds(run: dict | None, stem: str):
    return ((run or {}).get("chapters", {}).get(stem) or {}).get("seconds")


def print_chapters(runs: dict, profile: str, threads) -> dict:
    """Per-chapter table of every run kind side by side; returns the totals."""
    kinds = [k for k in ("cold", "warm", "bundle") if k in runs]
    stems = [s for s in CHAPTERS if any(s in r["chapters"] for r in runs.values())]
    print(f"\nper-chapter seconds at {profile} ({threads} threads; runner's run_seconds)")
    print(f"{'chapter':16s} " + " ".join(f"{k:>7s}" for k in kinds) + f" {'warm/cold':>9s}  status")
    tot = {k: 0.0 for k in kinds}
    for s in stems:
        vals = {k: seconds(runs[k], s) for k in kinds}
        for k in kinds:
            tot[k] += vals[k] or 0.0
        cs, ws = vals.get("cold"), vals.get("warm")
        ratio = f"{ws / cs:9.2f}" if cs and ws else f"{'—':>9s}"
        status = " / ".join(str((runs[k]["chapters"].get(s) or {}).get("status", "—")) for k in kinds)
        print(f"{s:16s} " + " ".join(fmt(vals[k]) for k in kinds) + f" {ratio}  {status}")
    print(f"{'total':16s} " + " ".join(fmt(tot[k]) for k in kinds))
    wall = {k: runs[k].get("wall_s") for k in kinds}
    print(f"{'wall clock':16s} " + " ".join(fmt(wall[k]) for k in kinds)
          + "   (the runner's whole command: chapters side by side overlap, so the goal is judged on this)")
    extra = {}
    for k in kinds:
        parts = {"import": runs[k].get("import_s"), "book": (runs[k].get("book") or {}).get("seconds")}
        parts = {p: v for p, v in parts.items() if v is not None}
        if parts:
            extra[k] = sum(parts.values())
            base = runs[k].get("wall_s") if runs[k].get("wall_s") is not None else tot[k]
            print(f"{k}: {base:.1f} s (wall) + " + " + ".join(f"{p} {v:.1f} s" for p, v in parts.items())
                  + f" = {base + extra[k]:.1f} s " + ("from the bundle to a built book" if k == "bundle" else "with the book's build"))
    goal = GOAL_S.get(profile)
    if goal:
        for k in kinds:
            t = (wall[k] if wall[k] is not None else tot[k]) + (extra.get(k, 0.0) if k == "bundle" else 0.0)
            what = " (import + chapters + book)" if k == "bundle" and k in extra else ""
            print(f"goal {k}{what}: ≤ {goal[k]:.0f} s — {'met' if t <= goal[k] else 'NOT met'} ({t:.0f} s)")
    return {**tot, **{f"{k}_wall": w for k, w in wall.items() if w is not None},
            **{f"{k}_with_import_and_book": (wall[k] if wall[k] is not None else tot[k]) + v for k, v in extra.items()}}


def heavy_cells(run: dict, top: int) -> list[tuple[str, dict]]:
    cells = [(stem, c) for stem, ch in run.get("chapters", {}).items() for c in ch.get("cells", [])]
    return sorted(cells, key=lambda sc: -sc[1]["seconds"])[:top]


def print_heavy(runs: dict, top: int) -> None:
    for kind, run in runs.items():
        hc = heavy_cells(run, top)
        if hc:
            print(f"\nheaviest cells, {kind} run:")
            for stem, c in hc:
                print(f"  {stem:16s} cell {c['index']:3d} {c['seconds']:8.1f} s  {c['first_line']}")


def print_jobs(jobs_runs: dict, top: int) -> None:
    """The heaviest cells of the first ``CCC_JOBS`` run beside the same cells of the others, with the
    speed-up (first ÷ other)."""
    names = list(jobs_runs)
    ref = jobs_runs[names[0]]
    print(f"\nparallel speed-up per heavy cell (cold runs; {', '.join(names)}; same threads in total)")
    print(f"  {'chapter':16s} {'cell':>4s} " + " ".join(f"{n:>12s}" for n in names) + "  speed-up  first line")
    for stem, c in heavy_cells(ref, top):
        vals = []
        for n in names:
            cells = {x["index"]: x for x in (jobs_runs[n]["chapters"].get(stem) or {}).get("cells", [])}
            vals.append(cells.get(c["index"], {}).get("seconds"))
        sp = " ".join(f"{vals[0] / v:5.2f}×" if v else "    —" for v in vals[1:])
        print(f"  {stem:16s} {c['index']:4d} " + " ".join(f"{v:12.1f}" if v is not None else f"{'—':>12s}" for v in vals)
              + f"  {sp:>8s}  {c['first_line']}")
    for n in names:
        print(f"  whole run {n}: {jobs_runs[n]['wall_s']:.1f} s wall, {jobs_runs[n]['cpu_s']:.1f} s CPU")


def compare(before: Path, after: Path) -> int:
    """Two result files of this script side by side per chapter: cold, warm (and bundle) before → after."""
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    kinds = [k for k in ("cold", "warm", "bundle") if k in a.get("runs", {}) or k in b.get("runs", {})]
    print(f"before: {before} ({a.get('profile')}, {a.get('threads')} threads, {a.get('when')})")
    print(f"after:  {after} ({b.get('profile')}, {b.get('threads')} threads, {b.get('when')})")
    head = " ".join(f"{k + ' before':>13s} {k + ' after':>12s} {'ratio':>6s}" for k in kinds)
    print(f"{'chapter':16s} {head}")
    tot = {k: [0.0, 0.0] for k in kinds}
    for s in CHAPTERS:
        cols, any_ = [], False
        for k in kinds:
            x, y = seconds(a.get("runs", {}).get(k), s), seconds(b.get("runs", {}).get(k), s)
            any_ |= x is not None or y is not None
            tot[k][0] += x or 0.0
            tot[k][1] += y or 0.0
            r = f"{x / y:6.2f}" if x and y else f"{'—':>6s}"
            cols.append(f"{fmt(x):>13s} {fmt(y):>12s} {r}")
        if any_:
            print(f"{s:16s} " + " ".join(cols))
    print(f"{'total':16s} " + " ".join(f"{tot[k][0]:13.1f} {tot[k][1]:12.1f} "
                                      f"{(tot[k][0] / tot[k][1] if tot[k][1] else float('nan')):6.2f}" for k in kinds))

    def wall(d, k):
        r = d.get("runs", {}).get(k) or {}
        w = r.get("wall_s")
        return None if w is None else w + (r.get("import_s") or 0.0) + ((r.get("book") or {}).get("seconds") or 0.0)
    cols = []
    for k in kinds:
        x, y = wall(a, k), wall(b, k)
        cols.append(f"{fmt(x):>13s} {fmt(y):>12s} " + (f"{x / y:6.2f}" if x and y else f"{'—':>6s}"))
    print(f"{'wall clock':16s} " + " ".join(cols))
    print("ratio = before ÷ after (> 1: faster after); wall clock = the runner's command, plus the bundle's import and "
          "the book's build where the file has them; chapters side by side (chapter_jobs: "
          f"{a.get('chapter_jobs', 1)} before, {b.get('chapter_jobs', 1)} after) overlap in it")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers (default: all)")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--cache", type=Path, default=None, help="checkpoint cache to use (default: a fresh, empty one)")
    ap.add_argument("--warm-only", action="store_true", help="skip the cold run (the cache must be filled)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None, help="where executed notebooks go (default: a temp dir)")
    ap.add_argument("--keep-cache", action="store_true", help="keep the fresh cache after the runs")
    ap.add_argument("--bundle", default=None, help="also time a run from this bundle (file or URL) on a fresh cache")
    ap.add_argument("--chapter-jobs", type=int, default=1,
                    help="chapters side by side in every run (the runner's --jobs; the --threads are shared out)")
    ap.add_argument("--book", action="store_true",
                    help="after the cold, warm and bundle runs, also time the HTML book's build from their notebooks")
    ap.add_argument("--jobs", default=None, help="comma-separated CCC_JOBS values: one cold run each, per-cell speed-up")
    ap.add_argument("--top", type=int, default=8, help="heaviest cells to list")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="print two result files side by side")
    ap.add_argument("--json", type=Path, default=None, help="where to write the results "
                                                             "(default: benchmarks/results/rebuild_times_<profile>.json)")
    ap.add_argument("--smoke", action="store_true",
                    help="one cold run of chapter 5 at smoke (seconds): checks the script runs")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if args.smoke:
        args.profile, args.chapters = "smoke", args.chapters or ["5"]
        if args.json is None:
            ap.error("--smoke needs --json FILE (its numbers must not replace the results in benchmarks/results/)")
    if args.warm_only and args.cache is None:
        ap.error("--warm-only needs --cache DIR (a cache a previous run filled)")
    if args.cache is not None and not args.warm_only and args.cache.exists() and any(args.cache.iterdir()):
        ap.error(f"--cache {args.cache} is not empty, so a run on it would not be cold: give an empty or "
                 f"new folder, or add --warm-only")
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()] if args.jobs else []
    fresh = args.cache is None
    cache = Path(tempfile.mkdtemp(prefix="ccc-cold-cache-")) if fresh else args.cache
    cache.mkdir(parents=True, exist_ok=True)
    out_root = args.out or Path(tempfile.mkdtemp(prefix="ccc-rebuild-"))
    runs, jobs_runs, scratch = {}, {}, []

    def report(kind, r):
        print(f"[{kind}] {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, exit {r['returncode']}, load "
              f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}", flush=True)
        if r["returncode"]:
            print(r["tail"], file=sys.stderr)

    try:
        for kind in (("warm",) if args.warm_only else ("cold",) if args.smoke else ("cold", "warm")):
            print(f"[{kind}] running chapters {args.chapters or 'all'} at {args.profile} on cache {cache} ...", flush=True)
            runs[kind] = run_once(args.chapters, args.profile, cache, out_root / kind, args.threads,
                                  chapter_jobs=args.chapter_jobs)
            report(kind, runs[kind])
            if args.book and kind in ("cold", "warm"):       # cold + its HTML build: the book from scratch
                runs[kind]["book"] = build_book(out_root / kind, cache, out_root / f"{kind}-book")
                print(f"[{kind}] book {runs[kind]['book']['seconds']:.1f} s, exit {runs[kind]['book']['returncode']}", flush=True)
        if args.bundle:
            bcache = Path(tempfile.mkdtemp(prefix="ccc-bundle-cache-"))
            scratch.append(bcache)
            print(f"[bundle] importing {args.bundle} into {bcache} ...", flush=True)
            t_import = import_bundle(args.bundle, bcache)
            runs["bundle"] = run_once(args.chapters, args.profile, bcache, out_root / "bundle", args.threads,
                                      chapter_jobs=args.chapter_jobs)
            runs["bundle"]["import_s"] = t_import
            report("bundle", runs["bundle"])
            msg = f"[bundle] import {t_import:.1f} s + run {runs['bundle']['wall_s']:.1f} s"
            if args.book:
                b = runs["bundle"]["book"] = build_book(out_root / "bundle", bcache, out_root / "bundle-book")
                msg += (f" + book {b['seconds']:.1f} s (exit {b['returncode']}) = "
                        f"{t_import + runs['bundle']['wall_s'] + b['seconds']:.1f} s from the bundle to a built book")
            print(msg, flush=True)
        for j in jobs:
            jcache = Path(tempfile.mkdtemp(prefix=f"ccc-jobs{j}-cache-"))
            scratch.append(jcache)
            name = f"CCC_JOBS={j}"
            print(f"[{name}] cold run of chapters {args.chapters or 'all'} ...", flush=True)
            jobs_runs[name] = run_once(args.chapters, args.profile, jcache, out_root / f"jobs{j}", args.threads,
                                       {"CCC_JOBS": j}, chapter_jobs=args.chapter_jobs)
            report(name, jobs_runs[name])
    finally:
        if fresh and not args.keep_cache:
            shutil.rmtree(cache, ignore_errors=True)
        for d in scratch:
            shutil.rmtree(d, ignore_errors=True)

    tot = print_chapters(runs, args.profile, args.threads)
    print_heavy(runs, args.top)
    if len(jobs_runs) > 1:
        print_jobs(jobs_runs, args.top)
    dst = args.json or Path(__file__).resolve().parent / "results" / f"rebuild_times_{args.profile}.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".json.tmp")
    payload = {"profile": args.profile, "threads": args.threads, "chapter_jobs": args.chapter_jobs,
               "chapters": args.chapters or "all", "code": code_version(),
               "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "runs": {k: {kk: ({**vv, "tail": ""} if kk == "book" else vv) for kk, vv in v.items() if kk != "tail"}
                        for k, v in runs.items()},
               "jobs_runs": {k: {kk: vv for kk, vv in v.items() if kk != "tail"} for k, v in jobs_runs.items()},
               "totals_s": tot}
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, dst)
    print(f"wrote {dst}" + ("" if args.json else "; the README's build times: python scripts/readme_build_times.py"))
    failed = any(r["returncode"] or (r.get("book") or {}).get("returncode") for r in list(runs.values()) + list(jobs_runs.values()))
    for k, r in runs.items():
        if (r.get("book") or {}).get("returncode"):
            print(f"[{k}] the book's build failed:\n{r['book']['tail']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
