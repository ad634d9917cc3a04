"""Benchmark: IOCN vs the normalising-flow baseline — the same INN, the same features, one run.

For each inlier class (Fashion-MNIST one-vs-rest, the chapter's protocol) both INNs are trained from
scratch (no checkpoint cache) and evaluated at a ladder of steps. Reported:

* time per training step of each method and the ratio IOCN / FLOW;
* scoring throughput (test rows per second) of each;
* the mean AUROC over classes at every evaluated step, with the training wall-clock (summed over
  classes) needed to get there;
* the goal of issue 5: the wall-clock IOCN needs to reach FLOW's final mean AUROC, against the
  wall-clock FLOW takes for its whole budget (ratio ≤ 1 means IOCN gets there no slower).

Usage::

    .venv/bin/python benchmarks/iocn_vs_flow.py --profile default --classes 0,2,4,6,8 --steps 1000

The machine's CPU cores may be shared; absolute times are then inflated, the ratios less so
(both methods run interleaved, class by class).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--features", default="cnn_mnist5k", choices=["cnn_mnist5k", "pixels"])
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-at", default="25,50,100,200,300,500,700,1000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    args = ap.parse_args(argv)

    from ccc_lib import get_device, get_profile, iocn
    P = get_profile(args.profile)
    classes = tuple(int(c) for c in args.classes.split(","))
    eval_at = tuple(s for s in (int(v) for v in args.eval_at.split(",")) if s <= args.steps)
    if args.steps not in eval_at:
        eval_at = eval_at + (args.steps,)
    S = iocn.settings(P, classes=classes, steps=args.steps, flow_steps=args.steps, eval_at=eval_at)
    print(f"profile {P.name}, device {get_device()}, features {args.features} ({S['feature_dim']}-d), "
          f"classes {classes}, {args.steps} steps, batch {S['batch_size']}, {S['n_blocks']} blocks", flush=True)
    t0 = time.perf_counter()
    res = iocn.one_vs_rest(args.features, S, P, methods=["FLOW", "IOCN"], seed=args.seed, cache=False, verbose=True)
    wall = time.perf_counter() - t0

    budget = iocn.budget_table(res)
    out = {"profile": P.name, "features": args.features, "classes": list(classes), "steps": args.steps,
           "device": str(get_device()), "wall_seconds": wall}
    xte = res["last_split"]["test"]
    for m in ("FLOW", "IOCN"):
        det = res["last"][m]
        best = float("inf")
        for _ in range(5):                       # best of 5: the least disturbed by other processes
            t = time.perf_counter()
            det.score(xte)
            best = min(best, time.perf_counter() - t)
        out[m] = {
            "seconds_per_step": float(np.mean([v["seconds_per_step"] for v in res["meta"][m].values()])),
            "score_rows_per_second": float(len(xte) / best),
            "final_mean_auroc": float(np.mean(list(res["auroc"][m].values()))),
            "best_mean_auroc": float(budget[budget["method"] == m]["mean AUROC"].max()),
            "total_train_seconds": float(sum(v["train_seconds"] for v in res["meta"][m].values())),
        }
    out["step_cost_ratio_iocn_over_flow"] = out["IOCN"]["seconds_per_step"] / out["FLOW"]["seconds_per_step"]
    out["score_throughput_ratio_iocn_over_flow"] = (out["IOCN"]["score_rows_per_second"]
                                                    / out["FLOW"]["score_rows_per_second"])
    target = out["FLOW"]["final_mean_auroc"]
    t_reach = iocn.time_to_reach(budget, "IOCN", target)
    out["iocn_seconds_to_flow_final_auroc"] = t_reach
    out["time_to_target_ratio_iocn_over_flow"] = (None if t_reach is None
                                                  else t_reach / out["FLOW"]["total_train_seconds"])
    out["budget"] = budget.to_dict("records")

    print("\nmean AUROC over classes along training (train seconds summed over classes):")
    print(budget.round(4).to_string(index=False))
    print()
    for m in ("FLOW", "IOCN"):
        o = out[m]
        print(f"{m:5s} {1000 * o['seconds_per_step']:.1f} ms/step, scoring {o['score_rows_per_second']:,.0f} rows/s, "
              f"final mean AUROC {o['final_mean_auroc']:.4f} (best along the way {o['best_mean_auroc']:.4f}), "
              f"training {o['total_train_seconds']:.1f} s")
    print(f"IOCN/FLOW time per step: {out['step_cost_ratio_iocn_over_flow']:.2f}x; "
          f"scoring throughput IOCN/FLOW: {out['score_throughput_ratio_iocn_over_flow']:.2f}x")
    if t_reach is None:
        print(f"IOCN never reached FLOW's final mean AUROC {target:.4f} within {args.steps} steps "
              f"(goal NOT met; IOCN's best {out['IOCN']['best_mean_auroc']:.4f})")
    else:
        print(f"IOCN reached FLOW's final mean AUROC {target:.4f} after {t_reach:.1f} s of training vs "
              f"{out['FLOW']['total_train_seconds']:.1f} s for FLOW's whole budget: ratio "
              f"{out['time_to_target_ratio_iocn_over_flow']:.2f} (goal ≤ 1: "
              f"{'met' if out['time_to_target_ratio_iocn_over_flow'] <= 1 else 'NOT met'})")
    print(f"benchmark wall-clock {wall:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
