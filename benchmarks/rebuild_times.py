"""How long the book takes to rebuild: every chapter run by the runner twice at one profile, first from an
empty checkpoint cache (cold: everything trained, inverted and fitted) and then again on the cache the
first run filled (warm: only what is not cached is recomputed — scoring, tables, figures). Both runs use
the same command, threads, data and profile; the only difference is the cache.

    python benchmarks/rebuild_times.py                      # default profile, all chapters, fresh cache
    python benchmarks/rebuild_times.py --profile smoke 0 1  # some chapters at another profile
    python benchmarks/rebuild_times.py --cache DIR --warm-only   # only a warm run on an existing cache

Prints a table of per-chapter seconds (cold, warm, warm ÷ cold), the totals against the book's goal
(default: ≤ 10 min cold, ≤ 2 min warm for the whole book) and the machine's load average before and
after each run (the times are only comparable on an otherwise idle machine). Writes the numbers to
``benchmarks/results/rebuild_times_<profile>.json``. A chapter that fails is reported as failed, and the
script exits 1."""
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

GOAL_S = {"default": {"cold": 600.0, "warm": 120.0}}
CHAPTERS = ("00_classifiers", "01_counterfeits", "02_neuralfp", "03_iocn", "04_drift", "05_report")


def run_once(chapters: list[str], profile: str, cache: Path, out: Path, threads: int) -> dict:
    """One runner invocation; returns per-chapter seconds and status from the metrics files."""
    env = dict(os.environ, CCC_CACHE=str(cache), CCC_PROGRESS="off", MPLBACKEND="Agg",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ccc_lib", "run", *chapters, "--profile", profile,
                           "--out", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    per = {}
    for stem in CHAPTERS:
        m = out / "metrics" / f"{stem}.json"
        if m.exists():
            d = json.loads(m.read_text())
            per[stem] = {"seconds": d.get("run_seconds"), "status": d.get("status")}
    return {"wall_s": wall, "returncode": proc.returncode, "chapters": per,
            "load_before": load0, "load_after": os.getloadavg(), "tail": proc.stdout[-2000:] + proc.stderr[-2000:]}


def fmt(x):
    return "—" if x is None else f"{x:7.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers (default: all)")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--cache", type=Path, default=None, help="checkpoint cache to use (default: a fresh, empty one)")
    ap.add_argument("--warm-only", action="store_true", help="skip the cold run (the cache must be filled)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None, help="where executed notebooks go (default: a temp dir)")
    ap.add_argument("--keep-cache", action="store_true", help="keep the fresh cache after the runs")
    args = ap.parse_args(argv)
    if args.warm_only and args.cache is None:
        ap.error("--warm-only needs --cache DIR (a cache a previous run filled)")
    if args.cache is not None and not args.warm_only and args.cache.exists() and any(args.cache.iterdir()):
        ap.error(f"--cache {args.cache} is not empty, so a run on it would not be cold: give an empty or "
                 f"new folder, or add --warm-only")
    fresh = args.cache is None
    cache = Path(tempfile.mkdtemp(prefix="ccc-cold-cache-")) if fresh else args.cache
    cache.mkdir(parents=True, exist_ok=True)
    out_root = args.out or Path(tempfile.mkdtemp(prefix="ccc-rebuild-"))
    runs = {}
    try:
        for kind in (("warm",) if args.warm_only else ("cold", "warm")):
            print(f"[{kind}] running chapters {args.chapters or 'all'} at {args.profile} on cache {cache} ...", flush=True)
            runs[kind] = run_once(args.chapters, args.profile, cache, out_root / kind, args.threads)
            r = runs[kind]
            print(f"[{kind}] {r['wall_s']:.1f} s wall, exit {r['returncode']}, load {r['load_before'][0]:.1f} → "
                  f"{r['load_after'][0]:.1f}", flush=True)
            if r["returncode"]:
                print(r["tail"], file=sys.stderr)
    finally:
        if fresh and not args.keep_cache:
            shutil.rmtree(cache, ignore_errors=True)

    stems = [s for s in CHAPTERS if any(s in r["chapters"] for r in runs.values())]
    print(f"\nper-chapter seconds at {args.profile} ({args.threads} threads; runner's run_seconds)")
    print(f"{'chapter':16s} {'cold':>7s} {'warm':>7s} {'warm/cold':>9s}  status")
    tot = {"cold": 0.0, "warm": 0.0}
    for s in stems:
        c = runs.get("cold", {}).get("chapters", {}).get(s, {})
        w = runs.get("warm", {}).get("chapters", {}).get(s, {})
        cs, ws = c.get("seconds"), w.get("seconds")
        tot["cold"] += cs or 0.0
        tot["warm"] += ws or 0.0
        ratio = f"{ws / cs:9.2f}" if cs and ws else f"{'—':>9s}"
        print(f"{s:16s} {fmt(cs)} {fmt(ws)} {ratio}  {c.get('status', '—')} / {w.get('status', '—')}")
    print(f"{'total':16s} {fmt(tot['cold'] if 'cold' in runs else None)} {fmt(tot['warm'])}")
    goal = GOAL_S.get(args.profile)
    if goal:
        for kind in runs:
            print(f"goal {kind}: ≤ {goal[kind]:.0f} s — {'met' if tot[kind] <= goal[kind] else 'NOT met'} "
                  f"({tot[kind]:.0f} s)")
    res_dir = Path(__file__).resolve().parent / "results"
    res_dir.mkdir(exist_ok=True)
    dst = res_dir / f"rebuild_times_{args.profile}.json"
    tmp = dst.with_suffix(".json.tmp")
    payload = {"profile": args.profile, "threads": args.threads, "chapters": args.chapters or "all",
               "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "runs": {k: {kk: vv for kk, vv in v.items() if kk != "tail"} for k, v in runs.items()},
               "totals_s": {k: tot[k] for k in runs}}
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, dst)
    print(f"wrote {dst}")
    failed = any(r["returncode"] for r in runs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
