"""Counterfeits per second: chapter 1's trained generator vs per-sample gradient inversion of the input.

Every method runs under the same conditions, in one run, on one classifier (the papers' CNN for
``--dataset``, from the cache): the same torch threads (``--threads``), one warm-up call, the same
number of timed repeats (the median counts), the same batch of ``--batch`` images per call.

* **generator (paper / ours)**: :func:`ccc_lib.counterfeits.sample` (one forward pass of generator
  and classifier), sampled as chapter 1 samples each variant;
* **MIFace**: ART's model inversion from a grey start on the whole batch, set up as chapter 4 sets
  it up (:func:`ccc_lib.drift.art_classifier` with the softmax wrapper; chapter 4's learning rate,
  window and threshold; ``--miface-iter`` iterations, default chapter 4's);
* **Adam on pixels**: chapter 4's plain inversion (:func:`ccc_lib.drift.gray_adam`: grey plus a little
  noise, cross-entropy, pixels clipped), ``--adam-iter`` steps.

For each: the share of images at confidence ≥ 0.99 for the intended class, counterfeits per second
at ≥ 0.99, and the within-class diversity (feature space: the classifier's penultimate features;
pixel space), both against real test images'. Two ratios are printed:

1. **sampling only**: generator counterfeits/s at ≥ 0.99 over each method's;
2. **end to end** for ``--target`` (10,000) counterfeits at ≥ 0.99: each method's time to produce them
   at its measured rate, the generator's *training* included (trained from scratch in this run, same
   threads, the profile's steps).

    python benchmarks/counterfeits_throughput.py --dataset mnist5k --profile default
    python benchmarks/counterfeits_throughput.py --smoke     # seconds: the code paths, numbers meaningless

``--smoke`` (the test suite runs it, ``tests/test_benchmarks.py``) uses the ``smoke`` profile, a batch of
20, one timed call, 5 generator training steps, 2 inversion iterations and a target of 100 counterfeits.

``--train-step`` measures one generator *training* step instead (CPU seconds of this process, one thread
unless ``--threads``, the fastest of ``--repeats`` blocks of ``--steps`` steps), for the two questions of
issue 37: what the channels-last layout of :func:`ccc_lib.counterfeits.train_generator` saves over the
default layout, and whether stacking K same-shape generators into one batch of K × B images (what
:mod:`ccc_lib.batched` would do for seeds or selection candidates) pays on this CPU: the cost per
generator-step at K = 1, 2, 3, 6 (it pays only where that falls below K = 1's)::

    python benchmarks/counterfeits_throughput.py --train-step --dataset mnist5k --profile default
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ccc_lib import counterfeits as cf
from ccc_lib import drift
from ccc_lib import get_classifier, get_device, get_profile, profile_data, set_seed
from ccc_lib.experiments import counterfeits as xcf
from ccc_lib.experiments import drift as xdrift
from ccc_lib.utils import cpu_threads


def timed(fn, repeats: int):
    """One warm-up call, then ``repeats`` timed calls; returns (last result, median seconds)."""
    fn(0)
    times, out = [], None
    for r in range(repeats):
        t0 = time.perf_counter()
        out = fn(r + 1)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def miface(clf, per_class: int, max_iter: int, D: dict):
    """ART's MIFace on the whole batch from a grey start, with chapter 4's estimator (softmax wrapper)
    and settings. (Chapter 4 inverts one image per class and repeats it, since MIFace from grey is
    deterministic; here it runs on the same batch as every other method.)"""
    import numpy as np
    from art.attacks.inference.model_inversion import MIFace
    y = np.repeat(np.arange(clf.num_classes), per_class)
    attack = MIFace(drift.art_classifier(clf), max_iter=int(max_iter), window_length=int(D["miface_window"]),
                    threshold=float(D["miface_threshold"]), learning_rate=float(D["miface_lr"]),
                    batch_size=len(y), verbose=False)
    x = attack.infer(np.full((len(y), *clf.input_shape), 0.5, dtype=np.float32), y)
    return torch.as_tensor(x).float(), torch.as_tensor(y).long()


def row(name, clf, x, y, seconds, real, train_seconds=0.0):
    with torch.no_grad():
        conf = torch.cat([clf(x[i:i + 500].to(get_device())).softmax(1).cpu() for i in range(0, len(x), 500)])
    conf = conf.gather(1, y[:, None])[:, 0]
    ok = int((conf >= 0.99).sum())
    return {"method": name, "n": int(len(x)), "seconds": seconds, "share_ge_0.99": ok / len(x),
            "per_second_at_0.99": ok / max(seconds, 1e-12), "train_seconds": train_seconds,
            "feature_diversity_vs_real": xcf.feature_diversity(clf, x, y) / real.feature_diversity,
            "pixel_diversity_vs_real": xcf.diversity_stats(x, y)["mean"] / real.pixel_diversity}


def train_step_costs(clf, S: dict, steps: int, repeats: int, ks=(1, 2, 3, 6)) -> dict:
    """CPU seconds per generator training step at the profile's settings ``S``: the default layout, the
    library's channels-last layout, and K generators' batches stacked into one (per generator)."""
    import copy
    w = cf.validate_weights(S["alpha"], S["beta"], S["gamma"], S["delta"], S["epsilon"])

    def cost(fast: bool, k: int) -> float:
        set_seed(0)
        g = cf.VectorMatrixGenerator(num_classes=clf.num_classes, out_channels=clf.input_shape[0],
                                     image_size=clf.input_shape[1], nz=S["nz"], channels=S["channels"],
                                     dropout=S["dropout"])
        model = cf.fast_layout(g, clf) if fast else copy.deepcopy(clf)
        tap, opt = cf.FeatureTap(model), torch.optim.Adam(g.parameters(), lr=S["lr"])
        labels = torch.arange(clf.num_classes).repeat_interleave(max(2, S["batch_size"] // clf.num_classes) * k)
        g.train()
        cf.train_step(g, tap, opt, labels, w, S["div_target"])              # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            for _ in range(steps):
                cf.train_step(g, tap, opt, labels, w, S["div_target"])
            best = min(best, (time.process_time() - t0) / steps / k)
        tap.close()
        return best

    out = {"default layout, K=1": cost(False, 1)}
    for k in ks:
        out[f"channels-last, K={k} (per generator)"] = cost(True, k)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads, the same for every method")
    ap.add_argument("--batch", type=int, default=100, help="images per call, the same for every method")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per method (median)")
    ap.add_argument("--miface-iter", type=int, default=None, help="default: chapter 4's setting")
    ap.add_argument("--adam-iter", type=int, default=None, help="default: chapter 4's setting")
    ap.add_argument("--target", type=int, default=10_000, help="counterfeits at ≥ 0.99 for the end-to-end ratio")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (seconds): checks the script runs")
    ap.add_argument("--train-step", action="store_true",
                    help="time one generator training step: layouts, and K generators stacked into one batch")
    ap.add_argument("--steps", type=int, default=10, help="--train-step: steps per timed block")
    args = ap.parse_args(argv)
    if args.smoke:
        args.profile, args.batch, args.repeats, args.target = "smoke", 20, 1, 100
        args.miface_iter, args.adam_iter = 2, 2

    P = get_profile(args.profile)
    S, D = cf.settings(P), xdrift.settings(P)      # chapter 4's settings (ccc_lib.experiments.drift)
    miface_iter = args.miface_iter or D["miface_max_iter"]
    adam_iter = args.adam_iter or D["adam_steps"]
    clf, info = get_classifier(args.dataset, P, seed=args.seed)
    n_classes = clf.num_classes
    per_class = max(1, args.batch // n_classes)
    train, test = profile_data(args.dataset, "train", P), profile_data(args.dataset, "test", P)
    tsub = test.subset(min(len(test), 2000), seed=args.seed)
    real = xcf.real_stats(clf, train.subset(min(len(train), 5000), seed=args.seed).x, tsub.x, tsub.y)
    print(f"classifier: {args.dataset} ({P.name}), test accuracy {info['test_accuracy']:.4f}; device {get_device()}; "
          f"threads {args.threads}; batch {per_class * n_classes}; repeats {args.repeats} (+1 warm-up)")

    if args.train_step:
        with cpu_threads(args.threads):
            costs = train_step_costs(clf, S, 2 if args.smoke else args.steps, args.repeats,
                                     ks=(1, 2) if args.smoke else (1, 2, 3, 6))
        base = costs["channels-last, K=1 (per generator)"]
        for name, c in costs.items():
            print(f"{name:40s} {c:8.4f} CPU s per generator-step ({c / base:5.2f}× channels-last K=1)")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"train_step_cpu_s": costs, "args": vars(args)}, fh, indent=2)
        return costs

    rows = []
    with cpu_threads(args.threads):
        for variant in cf.VARIANTS:
            set_seed(args.seed)
            t0 = time.perf_counter()         # trained from scratch here: the end-to-end ratio counts it
            gen, ginfo = cf.get_generator(clf, args.dataset, P, variant=variant, seed=args.seed,
                                          tag="benchmark", force=True, **({"steps": 5} if args.smoke else {}))
            train_s = time.perf_counter() - t0
            drop = cf.sample_dropout(variant, ginfo["settings"])
            s, dt = timed(lambda r: cf.sample(gen, clf, per_class, seed=r, dropout=drop), args.repeats)
            rows.append(row(f"generator, {variant} ({ginfo['settings']['steps']} training steps)", clf, s["x"], s["y"], dt, real,
                            train_s))
        (x, y), dt = timed(lambda r: miface(clf, per_class, miface_iter, D), args.repeats)
        rows.append(row(f"MIFace (ART, chapter 4's set-up, {miface_iter} it)", clf, x, y, dt, real))
        g, dt = timed(lambda r: drift.gray_adam(clf, per_class, steps=adam_iter, lr=D["adam_lr"],
                                                noise=D["adam_noise"], seed=r), args.repeats)
        rows.append(row(f"Adam on pixels (chapter 4's, {adam_iter} steps)", clf, g.x, g.y, dt, real))

    for r in rows:
        rate = r["per_second_at_0.99"]
        r["end_to_end_seconds"] = r["train_seconds"] + (args.target / rate if rate > 0 else float("inf"))
    print(f"\n{'method':48s} {'share≥0.99':>10s} {'per s @0.99':>12s} {'train s':>8s} "
          f"{'e2e s':>9s} {'feat div':>8s} {'pix div':>8s}")
    for r in rows:
        print(f"{r['method']:48s} {r['share_ge_0.99']:10.3f} {r['per_second_at_0.99']:12.4g} {r['train_seconds']:8.1f} "
              f"{r['end_to_end_seconds']:9.4g} {r['feature_diversity_vs_real']:8.3f} {r['pixel_diversity_vs_real']:8.3f}")
    ratios = {}
    for gr in rows[:len(cf.VARIANTS)]:
        for r in rows[len(cf.VARIANTS):]:
            samp = gr["per_second_at_0.99"] / r["per_second_at_0.99"] if r["per_second_at_0.99"] > 0 else float("inf")
            e2e = r["end_to_end_seconds"] / gr["end_to_end_seconds"]
            ratios[f"{gr['method']} / {r['method']}"] = {"sampling_only": samp, "end_to_end": e2e}
            print(f"{gr['method']} vs {r['method']}: sampling only {samp:.3g}×, "
                  f"end to end ({args.target:,} at ≥ 0.99, training included) {e2e:.3g}×")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "ratios": ratios, "args": vars(args)}, fh, indent=2, default=float)
    return rows, ratios


if __name__ == "__main__":
    main()
