"""Study: IOCN vs FLOW — the same INN, the same features — across what the paper differs from us in.

One axis is varied at a time from the chapter's settings at ``--profile`` (feature dimension, training
images per class, steps, and our own choices: affine clamping, standardisation divisor, input noise,
learning rate). For every configuration, seed and inlier class both INNs are trained from scratch (no
checkpoint cache) on the same one-vs-rest split and scored on the whole test set. Both INNs get the chapter's headline inputs (the paper's: features on the hypersphere plus noise; the
file records the settings). Printed and written to ``--out`` (JSON): per configuration, the mean over classes of each method's final AUROC, its mean
and spread (min–max) over seeds, the training wall-clock, and the goal of issue 14: the wall-clock
the IOCN needs to reach FLOW's final mean AUROC against the wall-clock FLOW takes for its whole budget
(ratio ≤ 1: the goal is met).

Usage (the chapter reads the file this writes)::

    python benchmarks/iocn_study.py --profile default --classes 0,2,4 --seeds 0,1 \\
        --out benchmarks/results/iocn_study_default.json
    python benchmarks/iocn_study.py --smoke      # seconds: the code paths, numbers meaningless

The machine's cores may be shared; absolute times are then inflated, the ratios less so (both methods
run interleaved, class by class, in the same process with the same thread count).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

#: the axes of the study: setting -> values tried (the chapter's value is always included)
AXES = {
    "feature_dim": (16, 32, 64, 128),
    "n_train": (500, 2000, 6000),
    "steps": (100, 300, 1000),
    "clamp": (1.0, 2.0),
    "divisor": (1.0, 3.0),
    "noise": (0.0, 0.1),
    "lr": (3e-4, 1e-3, 3e-3),
}


def configurations(base: dict, axes: list) -> list:
    """The base settings, then one configuration per (axis, value) that differs from the base."""
    from ccc_lib.experiments.iocn import study_overrides
    out = [("base", None, {})]
    for ax in axes:
        for v in AXES[ax]:
            if base.get(ax) != v:
                out.append((ax, v, study_overrides(ax, v)))
    return out


def run_one(S: dict, P, classes, seed: int) -> dict:
    from ccc_lib.experiments import iocn as E
    S = {**S, "classes": tuple(classes)}
    if not S["eval_at"] or max(S["eval_at"]) != S["steps"]:
        S["eval_at"] = tuple(s for s in (S["steps"] // 4, S["steps"] // 2, S["steps"]) if s > 0)
    res = E.one_vs_rest(S.get("study_features", S["feature_sets"][0]), S, P, methods=["FLOW", "IOCN"],
                        seed=seed, cache=False)
    budget = E.budget_table(res)
    out = {}
    for m in ("FLOW", "IOCN"):
        b = budget[budget["method"] == m].sort_values("step")
        out[m] = {"final_auroc": float(np.mean(list(res.auroc[m].values()))),
                  "train_seconds": float(b["train seconds (sum over classes)"].iloc[-1]),
                  "seconds_per_step": float(np.mean(list(res.seconds_per_step[m].values())))}
    t_reach = E.time_to_reach(budget, "IOCN", out["FLOW"]["final_auroc"])
    out["time_to_flow_ratio"] = None if t_reach is None else t_reach / out["FLOW"]["train_seconds"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--classes", default="0,2,4")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--axes", default=",".join(AXES), help=f"comma-separated subset of {list(AXES)}")
    ap.add_argument("--out", default=None, help="write the results here as JSON")
    ap.add_argument("--merge", action="store_true",
                    help="add this run's rows to those already in --out (same profile, classes and seeds); the "
                         "base configuration is then not rerun if --out has it")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (seconds): smoke profile, one class, one seed, the clamp axis")
    args = ap.parse_args(argv)
    if args.smoke:
        args.profile, args.classes, args.seeds, args.axes = "smoke", "0", "0", "clamp"

    from ccc_lib import get_device, get_profile
    from ccc_lib.experiments import iocn as E
    P = get_profile(args.profile)
    base = E.settings(P)
    classes = [int(c) for c in args.classes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    axes = [a for a in args.axes.split(",") if a]
    bad = [a for a in axes if a not in AXES]
    if bad:
        ap.error(f"unknown axes {bad}; choose from {list(AXES)}")
    command = "python benchmarks/iocn_study.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"profile {P.name}, device {get_device()}, classes {classes}, seeds {seeds}", flush=True)
    previous = None
    if args.merge and args.out and __import__("pathlib").Path(args.out).exists():
        previous = json.loads(open(args.out).read())
        if (previous["profile"], previous["classes"], previous["seeds"]) != (P.name, classes, seeds):
            ap.error(f"--merge: {args.out} holds profile {previous['profile']}, classes {previous['classes']}, "
                     f"seeds {previous['seeds']}; this run has {P.name}, {classes}, {seeds}")
    done = {(r["axis"], r["value"]) for r in previous["rows"]} if previous else set()
    rows, t0 = [], time.perf_counter()
    for axis, value, ov in configurations(base, axes):
        if (axis, value) in done:
            print(f"{axis} {value}: already in {args.out}, not rerun", flush=True)
            continue
        S = {**base, **ov}
        per_seed = [run_one(S, P, classes, s) for s in seeds]
        row = {"axis": axis, "value": value, "settings": {k: S[k] for k in ("feature_dim", "n_train", "steps", "clamp",
                                                                             "divisor", "noise", "lr", "inputs")}}
        for m in ("FLOW", "IOCN"):
            a = [r[m]["final_auroc"] for r in per_seed]
            row[m] = {"mean_auroc": float(np.mean(a)), "min_auroc": float(np.min(a)), "max_auroc": float(np.max(a)),
                      "train_seconds": float(np.mean([r[m]["train_seconds"] for r in per_seed])),
                      "seconds_per_step": float(np.mean([r[m]["seconds_per_step"] for r in per_seed]))}
        ratios = [r["time_to_flow_ratio"] for r in per_seed]
        row["iocn_minus_flow"] = row["IOCN"]["mean_auroc"] - row["FLOW"]["mean_auroc"]
        row["goal_met_seeds"] = int(sum(r is not None and r <= 1 for r in ratios))
        row["time_to_flow_ratio"] = ratios
        rows.append(row)
        print(f"{axis:12s} {str(value):8s} FLOW {row['FLOW']['mean_auroc']:.4f} "
              f"[{row['FLOW']['min_auroc']:.4f}, {row['FLOW']['max_auroc']:.4f}]  IOCN {row['IOCN']['mean_auroc']:.4f} "
              f"[{row['IOCN']['min_auroc']:.4f}, {row['IOCN']['max_auroc']:.4f}]  IOCN−FLOW {row['iocn_minus_flow']:+.4f}  "
              f"goal met in {row['goal_met_seeds']}/{len(seeds)} seeds", flush=True)
    wall = time.perf_counter() - t0
    for r in rows:
        r["command"] = command
    out = {"command": command, "profile": P.name, "classes": classes, "seeds": seeds, "device": str(get_device()),
           "wall_seconds": wall, "rows": rows,
           # the base settings, the inputs (the chapter's headline: the paper's hypersphere + noise) first of all
           "settings": {k: base[k] for k in ("inputs", "sphere_noise", "feature_dim", "n_train", "steps", "flow_steps")}}
    if previous:
        for r in previous["rows"]:
            r.setdefault("command", previous["command"])
        runs = previous.get("runs") or [{"command": previous["command"], "wall_seconds": previous["wall_seconds"]}]
        if previous.get("settings", {}).get("inputs") != out["settings"]["inputs"]:
            ap.error(f"--merge: {args.out} was run on the inputs {previous.get('settings', {}).get('inputs')}; this run has "
                     f"{out['settings']['inputs']}")
        out = {**out, "command": "; ".join([x["command"] for x in runs] + [command]),
               "wall_seconds": previous["wall_seconds"] + wall, "rows": previous["rows"] + rows,
               "runs": runs + [{"command": command, "wall_seconds": wall}]}
    rows = out["rows"]
    n_ge = sum(r["iocn_minus_flow"] >= 0 for r in rows)
    print(f"IOCN ≥ FLOW (mean over seeds) in {n_ge} of {len(rows)} configurations; "
          f"wall-clock {wall:.0f} s this run")
    if args.out:
        from ccc_lib.utils import atomic_write_json
        atomic_write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
