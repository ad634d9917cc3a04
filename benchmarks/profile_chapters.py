"""Where a chapter's time goes: a sampling profile (py-spy) of ``python -m ccc_lib run N`` — the runner
*and* the notebook's kernel process — split into compute and overhead.

    python benchmarks/profile_chapters.py 0 1 2 3 4 --profile smoke      # one profiled cold run per chapter
    python benchmarks/profile_chapters.py 3 --profile default --cache DIR  # on a cache of your choosing
    python benchmarks/profile_chapters.py --smoke                         # seconds: profiles `ccc_lib profiles`

Needs ``py-spy`` (``pip install py-spy``; on Linux it reads other processes' memory: run as root or
with ``ptrace`` allowed). Each chapter runs alone, on a fresh empty cache unless ``--cache`` is given
(so "cold" means everything the chapter trains is trained), with ``--rate`` samples per second. Every
sample is put in one category by its Python stack (py-spy sees Python frames; time inside a C/C++
kernel is charged to the Python function that called it):

* **compute: torch** — the innermost frame is in ``torch`` (an op, autograd's backward, an optimiser
  step: the op's kernel plus its Python dispatch), not ``torch.serialization``;
* **compute: numpy / scipy / sklearn / PyOD / ART** — innermost frame in those libraries;
* **overhead: imports** — an ``import`` on the stack (the set-up cell, lazy imports);
* **overhead: I/O and (de)serialisation** — ``torch.load/save``, pickle, json, gzip, file reads;
* **overhead: plotting** — matplotlib, seaborn, PIL;
* **overhead: tables** — pandas;
* **overhead: notebook machinery** — papermill, nbclient, jupyter_client, ipykernel, IPython, myst-nb,
  zmq, tornado, asyncio (kernel start-up, cell execution, output capture);
* **overhead: job dispatch** — joblib / loky / multiprocessing (sending jobs and results to workers);
* **overhead: Python in ccc_lib** / **other Python** — the rest (loops, checks, bookkeeping).

py-spy counts a thread as active while it runs *or waits for a core*, so on a loaded machine the
seconds are close to wall-clock time, not CPU time; the shares are what to compare. Samples of threads
that only wait (selectors, ``Condition.wait``, the kernel's I/O pump and parent
poller) are counted apart as *waiting*, and threads with no Python frame at all (zmq's I/O thread) as
*native*; both are left out of the shares. Writes the raw stacks next to the
JSON result so that a flame graph can be drawn from them (``flamegraph.pl``, speedscope)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

CATEGORIES = ("compute: torch", "compute: numpy/scipy/sklearn/PyOD/ART", "overhead: imports",
              "overhead: I/O and (de)serialisation", "overhead: plotting", "overhead: tables (pandas)",
              "overhead: notebook machinery", "overhead: job dispatch (joblib/loky)", "overhead: Python in ccc_lib",
              "overhead: other Python")
WAITING = ("selectors.py", "Condition.wait", "Event.wait", "_watch_pipe_fd", "ParentPollerUnix.run",
           "device (zmq/sugar", "time.sleep", "Thread._wait_for_tstate_lock", "socket.py", "poll (zmq",
           "_run_once (asyncio", "Queue.get", "GarbageCollectorThread.run",
           "Parallel._retrieve", "resource_tracker.py", "Popen.poll (joblib", "_wait_for_job", "queues.py")
_LIBS = (("torch/serialization.py", "overhead: I/O and (de)serialisation"),
         ("torch/", "compute: torch"), ("functorch/", "compute: torch"), ("FrEIA/", "compute: torch"),
         ("numpy/", "compute: numpy/scipy/sklearn/PyOD/ART"), ("scipy/", "compute: numpy/scipy/sklearn/PyOD/ART"),
         ("sklearn/", "compute: numpy/scipy/sklearn/PyOD/ART"), ("pyod/", "compute: numpy/scipy/sklearn/PyOD/ART"),
         ("art/", "compute: numpy/scipy/sklearn/PyOD/ART"), ("deepod/", "compute: numpy/scipy/sklearn/PyOD/ART"),
         ("pickle", "overhead: I/O and (de)serialisation"), ("json/", "overhead: I/O and (de)serialisation"),
         ("gzip.py", "overhead: I/O and (de)serialisation"), ("zipfile", "overhead: I/O and (de)serialisation"),
         ("shutil.py", "overhead: I/O and (de)serialisation"), ("tempfile.py", "overhead: I/O and (de)serialisation"),
         ("matplotlib/", "overhead: plotting"), ("seaborn/", "overhead: plotting"), ("PIL/", "overhead: plotting"),
         ("pandas/", "overhead: tables (pandas)"),
         ("papermill/", "overhead: notebook machinery"), ("nbclient/", "overhead: notebook machinery"),
         ("nbformat/", "overhead: notebook machinery"), ("jupyter_client/", "overhead: notebook machinery"),
         ("ipykernel/", "overhead: notebook machinery"), ("IPython/", "overhead: notebook machinery"),
         ("myst_nb/", "overhead: notebook machinery"), ("zmq/", "overhead: notebook machinery"),
         ("tornado/", "overhead: notebook machinery"), ("asyncio/", "overhead: notebook machinery"),
         ("joblib/", "overhead: job dispatch (joblib/loky)"), ("multiprocessing/", "overhead: job dispatch (joblib/loky)"),
         ("cloudpickle", "overhead: job dispatch (joblib/loky)"),
         ("ccc_lib/", "overhead: Python in ccc_lib"))


def classify(frames: list[str]) -> str:
    """The category of one sample, from its frames (outermost first) as py-spy's raw format gives them."""
    text = ";".join(frames)
    if all(f.startswith("process ") for f in frames):
        return "native"                           # a thread with no Python frame (zmq's I/O thread, ...)
    if any(w in f for f in frames[-3:] for w in WAITING):
        return "waiting"
    if "_find_and_load" in text:
        return "overhead: imports"
    for f in reversed(frames):
        if f.startswith("process "):
            continue
        for needle, cat in _LIBS:
            if needle in f:
                return cat
        break                                   # only the innermost frame decides; else "other Python"
    return "overhead: other Python"


def read_raw(path: Path) -> Counter:
    """py-spy's raw (collapsed) output: one ``frame;frame;... count`` per line → samples per category."""
    out = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        out[classify(stack.split(";"))] += int(n)
    return out


def profile(cmd: list[str], raw: Path, rate: int, env: dict) -> tuple[int, float]:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy (then run this again)")
    t0 = time.perf_counter()
    proc = subprocess.run([pyspy, "record", "--subprocesses", "-f", "raw", "-r", str(rate), "-o", str(raw),
                           "--", *cmd], env=env, capture_output=True, text=True)
    if not raw.exists():
        raise SystemExit(f"py-spy wrote nothing (exit {proc.returncode}): {proc.stderr[-1500:]}\n"
                         "on Linux py-spy needs ptrace: run as root or set kernel.yama.ptrace_scope=0")
    return proc.returncode, time.perf_counter() - t0


def table(name: str, counts: Counter, rate: int, wall: float) -> dict:
    busy = sum(v for k, v in counts.items() if k not in ("waiting", "native"))
    print(f"\n{name}: {wall:.0f} s wall, {busy / rate:.0f} s of active samples (running, or runnable and waiting "
          f"for a core on a loaded machine); left out: {counts.get('waiting', 0) / rate:.0f} s of idle threads, "
          f"{counts.get('native', 0) / rate:.0f} s of threads without Python frames")
    shares = {}
    for cat in CATEGORIES:
        v = counts.get(cat, 0)
        shares[cat] = v / busy if busy else 0.0
        print(f"  {cat:42s} {v / rate:8.1f} s  {100 * shares[cat]:5.1f} %")
    comp = sum(shares[c] for c in CATEGORIES if c.startswith("compute"))
    print(f"  {'= compute':42s} {'':8s}   {100 * comp:5.1f} %   overhead {100 * (1 - comp):5.1f} %")
    return {"wall_s": wall, "busy_s": busy / rate, "waiting_s": counts.get("waiting", 0) / rate,
            "native_s": counts.get("native", 0) / rate,
            "seconds": {c: counts.get(c, 0) / rate for c in CATEGORIES}, "shares": shares, "compute_share": comp}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers, each profiled in its own run (default: 0-5)")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--cache", type=Path, default=None, help="cache to use (default: a fresh empty one per chapter)")
    ap.add_argument("--rate", type=int, default=50, help="samples per second")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=None, help="write the results here (default: "
                                                             "benchmarks/results/profile_<profile>.json)")
    ap.add_argument("--smoke", action="store_true", help="profile `python -m ccc_lib profiles` (seconds)")
    args = ap.parse_args(argv)
    out = args.json or Path(__file__).resolve().parent / "results" / f"profile_{'smoke-check' if args.smoke else args.profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    work = Path(tempfile.mkdtemp(prefix="ccc-profile-"))
    try:
        targets = [("ccc_lib profiles", [sys.executable, "-m", "ccc_lib", "profiles"])] if args.smoke else [
            (f"chapter {c}", [sys.executable, "-m", "ccc_lib", "run", c, "--profile", args.profile, "--out",
                              str(work / f"out{c}")]) for c in (args.chapters or ["0", "1", "2", "3", "4", "5"])]
        for name, cmd in targets:
            cache = args.cache or work / f"cache-{len(results)}"
            env = dict(os.environ, CCC_CACHE=str(cache), CCC_PROGRESS="off", MPLBACKEND="Agg",
                       OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
            raw = out.with_name(out.stem + f"_{name.replace(' ', '_')}.raw.txt")
            print(f"[{name}] profiling {' '.join(cmd[1:])} ...", flush=True)
            rc, wall = profile(cmd, raw, args.rate, env)
            results[name] = {**table(name, read_raw(raw), args.rate, wall), "returncode": rc, "raw": str(raw),
                             "command": " ".join(cmd[1:]), "load_after": os.getloadavg()}
            if rc:
                print(f"[{name}] the profiled command failed (exit {rc})", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.write_text(json.dumps({"profile": args.profile, "rate": args.rate, "threads": args.threads,
                               "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "runs": results}, indent=1))
    print(f"wrote {out}")
    return 1 if any(r["returncode"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
