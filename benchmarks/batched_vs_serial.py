"""Chapter 3's per-class INNs three ways, in one run: one after another (``iocn.train_inn``, as the chapter
trains today), side by side in worker processes (:func:`ccc_lib.parallel.run_jobs`, one torch thread
each) and as one stacked model (:func:`ccc_lib.batched.train_inns_batched`, one thread).

    python benchmarks/batched_vs_serial.py [--profile default] [--steps 60] [--jobs 2]
    python benchmarks/batched_vs_serial.py --smoke      # seconds: the code paths, numbers meaningless

The INNs have the chapter's architecture and batch size at ``--profile`` (``ccc_lib.experiments.iocn``:
feature dimension, blocks, batch), one per class, each on its own generated training set of the
profile's size; ``--steps`` steps each (the same for every way). Printed per way: wall-clock seconds,
the CPU seconds of this process *and* its worker processes (psutil; on a loaded machine the wall-clock
ratios are unreliable, CPU time much less so), and seconds per model-step. Whether the batched weights
equal the serial ones is tested in ``tests/test_batched.py``; here the largest difference is printed."""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import torch


def make(profile: str, classes: int):
    from ccc_lib import iocn
    from ccc_lib.experiments import iocn as E
    S = E.settings(profile)
    dim, n = int(S["feature_dim"]), int(S["n_train"] or 2000)
    models, xs = [], []
    for c in range(classes):
        x = torch.randn(n, dim, generator=torch.Generator().manual_seed(c)) * (1 + 0.1 * c) + c
        m = iocn.INNModel(iocn.INNConfig(dim=dim, n_blocks=int(S["n_blocks"]), clamp=float(S["clamp"]), seed=c))
        m.set_standardisation(x, divisor=float(S["divisor"]))
        models.append(m)
        xs.append(x)
    return S, models, xs


def train_one(state: dict, cfg: dict, x: torch.Tensor, tc: dict) -> dict:
    """A job for run_jobs: rebuild the INN, load its initial weights, train it; returns its weights."""
    from ccc_lib import iocn
    m = iocn.INNModel(iocn.INNConfig(**cfg))
    m.load_state_dict(state)
    iocn.train_inn(m, x, iocn.TrainConfig(**tc))
    return {k: v.clone() for k, v in m.state_dict().items()}


def clock():
    """(wall, CPU seconds of this process and of its live children — the loky workers — so far)."""
    import psutil
    me = psutil.Process()
    cpu = sum(sum(p.cpu_times()[:2]) for p in [me] + me.children(recursive=True) if p.is_running())
    return time.perf_counter(), cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--objective", default="iocn", choices=("iocn", "flow"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="smoke profile, 3 classes, 3 steps")
    args = ap.parse_args(argv)
    if args.smoke:
        args.profile, args.classes, args.steps = "smoke", 3, 3
    from ccc_lib import iocn
    from ccc_lib.batched import train_inns_batched
    from ccc_lib.parallel import run_jobs
    S, models, xs = make(args.profile, args.classes)
    tc = dict(objective=args.objective, steps=args.steps, lr=float(S["lr"]), batch_size=int(S["batch_size"]),
              noise=float(S["noise"]), warmup=min(50, args.steps), seed=0, cpu_threads=1)
    torch.set_num_threads(1)
    print(f"{args.classes} INNs ({S['feature_dim']}-d, {S['n_blocks']} blocks, batch {S['batch_size']}, "
          f"{len(xs[0])} rows each), {args.steps} {args.objective} steps each; load {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores", flush=True)
    rows = {}

    w0, c0 = clock()
    serial = [copy.deepcopy(m) for m in models]
    for m, x in zip(serial, xs):
        iocn.train_inn(m, x, iocn.TrainConfig(**tc))
    w1, c1 = clock()
    rows["one after another (train_inn, 1 thread)"] = (w1 - w0, c1 - c0)

    jobs = [{"state": m.state_dict(), "cfg": m.cfg.to_dict(), "x": x, "tc": tc} for m, x in zip(models, xs)]
    run_jobs(train_one, jobs[:args.jobs], n_jobs=args.jobs)            # start the workers (not timed)
    w0, c0 = clock()
    par = run_jobs(train_one, jobs, n_jobs=args.jobs)
    w1, c1 = clock()
    rows[f"side by side (run_jobs, {args.jobs} workers × 1 thread)"] = (w1 - w0, c1 - c0)

    w0, c0 = clock()
    batched = [copy.deepcopy(m) for m in models]
    train_inns_batched(batched, xs, iocn.TrainConfig(**tc))
    w1, c1 = clock()
    rows["stacked (train_inns_batched, 1 thread)"] = (w1 - w0, c1 - c0)

    diff_b = max(float((a.state_dict()[k] - b.state_dict()[k]).abs().max()) for a, b in zip(serial, batched)
                 for k in a.state_dict())
    diff_p = max(float((a.state_dict()[k] - p[k]).abs().max()) for a, p in zip(serial, par) for k in p)
    ref_w, ref_c = rows["one after another (train_inn, 1 thread)"]
    print(f"\n{'way':48s} {'wall s':>8s} {'CPU s':>8s} {'ms/model-step':>14s} {'wall ×':>7s} {'CPU ×':>7s}")
    for name, (w, c) in rows.items():
        print(f"{name:48s} {w:8.2f} {c:8.2f} {1e3 * w / (args.classes * args.steps):14.2f} {ref_w / w:7.2f} {ref_c / c:7.2f}")
    print(f"largest weight difference to one after another: stacked {diff_b:.2g}, side by side {diff_p:.2g}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows, "diff_batched": diff_b, "diff_parallel": diff_p,
                       "load_end": os.getloadavg()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
