"""What the deterministic settings cost: training steps of the papers' CNN with
``configure_determinism(True)`` (the default) against ``configure_determinism(False)``, measured in the
same run with the same threads, batch, warm-up and repeats (alternating, median of the repeats).

    python benchmarks/determinism_overhead.py [--steps 20] [--repeats 5] [--batch 128] [--threads 1]
    python benchmarks/determinism_overhead.py --smoke      # seconds: the code paths, numbers meaningless

Prints seconds per step for each mode and the ratio deterministic / fast (1.00 = free)."""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ccc_lib.models import build_classifier
from ccc_lib.utils import configure_determinism, get_device, seed_everything


def steps_per_second(deterministic: bool, steps: int, batch: int, shape) -> float:
    configure_determinism(deterministic)
    dev = get_device()
    seed_everything(0, deterministic=deterministic)
    model = build_classifier(in_channels=shape[0], image_size=shape[1]).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(batch, *shape, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    for _ in range(3):                                   # warm-up
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shape", default="1,28,28")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (seconds): checks the script runs")
    a = ap.parse_args(argv)
    if a.smoke:
        a.steps, a.repeats, a.batch = 2, 1, 8
    torch.set_num_threads(a.threads)
    shape = tuple(int(s) for s in a.shape.split(","))
    res = {True: [], False: []}
    for _ in range(a.repeats):                           # alternate so load changes hit both alike
        for det in (True, False):
            res[det].append(steps_per_second(det, a.steps, a.batch, shape))
    d, f = statistics.median(res[True]), statistics.median(res[False])
    print(f"device {get_device()}, threads {a.threads}, batch {a.batch}, shape {shape}, {a.steps} steps x {a.repeats}")
    print(f"deterministic: {d * 1e3:.1f} ms/step   fast: {f * 1e3:.1f} ms/step   ratio {d / f:.2f}")
    configure_determinism(True)


if __name__ == "__main__":
    main()
