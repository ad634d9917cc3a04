"""Counterfeits per second: the trained generator vs per-sample gradient inversion of the input.

Measured in one run, on one classifier (the papers' CNN for ``--dataset``, from the cache):

* **generator**: ``counterfeits.sample`` (generator in eval mode + the classifier's check), counting
  only samples the classifier gives confidence ≥ 0.99 for the intended class;
* **MIFace** (ART's model inversion of Fredrikson et al., gradient ascent on the class score) from a
  grey start, ``--miface-iter`` iterations;
* **Adam on pixels**: a plain loop of Adam on the input minimising the cross-entropy with the target
  label, from a grey start (one image per class, repeated) and from uniform-noise starts, until every
  sample reaches 0.99 or ``--adam-iter`` iterations.

For each: samples/s counted at confidence ≥ 0.99, the share reaching 0.99, and the within-class
diversity (mean pairwise pixel distance, against real test images'). Prints the ratios.

    python benchmarks/counterfeits_throughput.py --dataset mnist5k --profile default
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ccc_lib import get_classifier, get_device, get_profile, profile_data, set_seed  # noqa: E402
from ccc_lib import counterfeits as cf  # noqa: E402


def _report(name, x, y, conf, seconds, real_div):
    ok = conf >= 0.99
    div = cf.diversity_stats(x, y)["mean"] if len(x) else float("nan")
    return {"method": name, "n": int(len(x)), "seconds": round(seconds, 3),
            "share_ge_0.99": round(float(ok.float().mean()), 4),
            "per_second_at_0.99": float(ok.sum()) / max(seconds, 1e-9),
            "diversity": round(div, 3), "diversity_vs_real": round(div / real_div, 3)}


def bench_generator(gen, clf, n_per_class, real_div, repeats=3):
    cf.sample(gen, clf, 5, seed=123)                          # warm-up
    best = None
    for r in range(repeats):
        t0 = time.perf_counter()
        s = cf.sample(gen, clf, n_per_class, seed=r)
        dt = time.perf_counter() - t0
        if best is None or dt < best[1]:
            best = (s, dt)
    s, dt = best
    return _report("generator (eval mode)", s["x"], s["y"], s["confidence"], dt, real_div)


def bench_miface(clf, n_per_class, n_classes, shape, iters, real_div):
    from art.attacks.inference.model_inversion import MIFace
    from art.estimators.classification import PyTorchClassifier
    art_clf = PyTorchClassifier(model=clf, loss=torch.nn.CrossEntropyLoss(), input_shape=shape,
                                nb_classes=n_classes, clip_values=(0.0, 1.0),
                                device_type="gpu" if get_device().type == "cuda" else "cpu")
    y = np.repeat(np.arange(n_classes), n_per_class)
    x0 = np.full((len(y), *shape), 0.5, dtype=np.float32)
    attack = MIFace(art_clf, max_iter=iters, window_length=100, threshold=0.99, learning_rate=0.1,
                    batch_size=len(y), verbose=False)
    t0 = time.perf_counter()
    x = attack.infer(x0, y)
    dt = time.perf_counter() - t0
    x = torch.as_tensor(x)
    yt = torch.as_tensor(y)
    with torch.no_grad():
        conf = clf(x.to(get_device())).softmax(1).cpu().gather(1, yt[:, None])[:, 0]
    return _report(f"MIFace (ART, {iters} it, grey start)", x, yt, conf, dt, real_div)


def bench_adam(clf, n_per_class, n_classes, shape, iters, real_div, start="grey", lr=0.05, seed=0):
    dev = get_device()
    set_seed(seed)
    y = torch.arange(n_classes, device=dev).repeat_interleave(n_per_class)
    if start == "grey":
        x = torch.full((len(y), *shape), 0.5, device=dev)
    else:
        x = torch.rand((len(y), *shape), device=dev)
    x.requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    t0 = time.perf_counter()
    for _ in range(iters):
        logits = clf(x)
        conf = logits.softmax(1).gather(1, y[:, None])[:, 0]
        if bool((conf >= 0.99).all()):
            break
        loss = F.cross_entropy(logits, y, reduction="sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    with torch.no_grad():
        conf = clf(x).softmax(1).gather(1, y[:, None])[:, 0]
    dt = time.perf_counter() - t0
    return _report(f"Adam on pixels ({start} start)", x.detach().cpu(), y.cpu(), conf.cpu(), dt, real_div)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-generator", type=int, default=1000, help="generator samples per class")
    ap.add_argument("--n-miface", type=int, default=2, help="MIFace samples per class")
    ap.add_argument("--miface-iter", type=int, default=500)
    ap.add_argument("--n-adam", type=int, default=10, help="Adam samples per class")
    ap.add_argument("--adam-iter", type=int, default=500)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    P = get_profile(args.profile)
    clf, info = get_classifier(args.dataset, P, seed=args.seed)
    gen, ginfo = cf.get_generator(clf, args.dataset, P, seed=args.seed)
    test = profile_data(args.dataset, "test", P)
    real_div = cf.diversity_stats(test.x, test.y, per_class=200)["mean"]
    n_classes, shape = test.num_classes, tuple(test.shape)
    print(f"classifier: {args.dataset} ({P.name}), test accuracy {info['test_accuracy']:.4f}; "
          f"generator from cache: {ginfo['from_cache']}; device {get_device()}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"real test images: within-class diversity {real_div:.3f}")

    rows = [bench_generator(gen, clf, args.n_generator, real_div),
            bench_miface(clf, args.n_miface, n_classes, shape, args.miface_iter, real_div),
            bench_adam(clf, args.n_adam, n_classes, shape, args.adam_iter, real_div, "grey"),
            bench_adam(clf, args.n_adam, n_classes, shape, args.adam_iter, real_div, "noise")]
    g = rows[0]["per_second_at_0.99"]
    print(f"\n{'method':38s} {'n':>6s} {'seconds':>8s} {'share≥0.99':>10s} {'per s @0.99':>12s} "
          f"{'diversity':>9s} {'vs real':>7s}")
    for r in rows:
        print(f"{r['method']:38s} {r['n']:6d} {r['seconds']:8.2f} {r['share_ge_0.99']:10.3f} "
              f"{r['per_second_at_0.99']:12.4g} {r['diversity']:9.3f} {r['diversity_vs_real']:7.3f}")
    ratios = {}
    for r in rows[1:]:
        ratios[r["method"]] = g / r["per_second_at_0.99"] if r["per_second_at_0.99"] > 0 else float("inf")
        print(f"generator / {r['method']}: {ratios[r['method']]:.1f}×")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "ratios": ratios, "real_diversity": real_div}, fh, indent=2)
    return rows, ratios


if __name__ == "__main__":
    main()
