"""An ESTIMATE of how long the ``full`` profile takes per chapter, on this CPU and on one H100.

    python benchmarks/full_estimate.py [--threads 2] [--repeats 5]

Method (printed with the result):

1. For each chapter's dominant loops, build the library's own model at ``full``'s shapes and batch
   sizes (from the chapter modules' ``SETTINGS["full"]`` and the ``full`` profile) and time one training
   step on this CPU with ``--threads`` threads: warm-up steps first, then the median of ``--repeats``
   timings (the same threads, warm-up and repeats for every loop).
2. Multiply by the number of steps ``full`` runs (formulas printed per row, from the settings).
3. For the GPU, nothing is measured (no GPU here): one step's floating-point operations and its number of
   tensor operations are *counted* on the CPU (``torch.utils.flop_counter`` and a dispatch counter), and
   a step is taken to cost ``max(FLOPs / throughput, ops × per-op overhead)``: small models on a large
   GPU are bound by kernel launches and Python, large ones by arithmetic. Assumed (H100, FP32/TF32,
   no CUDA graphs): throughput 10 TFLOP/s achieved (about 15 % of peak: small convolutions and matmuls),
   10 µs per operation (launch + Python dispatch); the range printed uses 30 TFLOP/s & 5 µs (optimistic)
   and 3 TFLOP/s & 20 µs (pessimistic).

Not included (stated, not guessed): data loading and downloads, evaluation passes (scoring test sets:
a few forward passes, small beside training), PyOD's classic baselines (scikit-learn on the CPU, either
way), notebook start-up and plotting. The result is an estimate until someone runs ``full``."""
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ccc_lib.models import CNNConfig, PaperCNN
from ccc_lib.profiles import get_profile

GPU = {"likely": (10e12, 10e-6), "optimistic": (30e12, 5e-6), "pessimistic": (3e12, 20e-6)}


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Loop:
    chapter: str
    what: str
    steps: float
    formula: str
    cpu_s: float = 0.0           # one step, measured here
    flops: float = 0.0           # one step, counted
    ops: int = 0                 # one step, counted

    def gpu_step(self, case: str) -> float:
        tput, per_op = GPU[case]
        return max(self.flops / tput, self.ops * per_op)


def measure(step, warmup: int, repeats: int) -> tuple[float, float, int]:
    """(median seconds per step, FLOPs per step, tensor ops per step) of ``step()``."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    fc = FlopCounterMode(display=False)
    with fc:
        step()
    oc = _OpCounter()
    with oc:
        step()
    return statistics.median(times), float(fc.get_total_flops()), oc.n


# --------------------------------------------------------------------------- the loops

def classifier_step(shape, classes: int, batch: int):
    model = PaperCNN(CNNConfig(in_channels=shape[0], image_size=shape[1], num_classes=classes)).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.rand(batch, *shape), torch.randint(0, classes, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def generator_step(shape, classes: int, batch: int, s: dict):
    """Chapter 1: one step of the library's own ``train_generator`` (its loss, its optimiser)."""
    from ccc_lib import counterfeits as cf
    clf = PaperCNN(CNNConfig(in_channels=shape[0], image_size=shape[1], num_classes=classes)).eval()
    for p in clf.parameters():
        p.requires_grad_(False)
    cfg_kw = {k: s[k] for k in ("nz", "width", "dropout") if k in s}
    gen = cf.VectorMatrixGenerator(cf.GeneratorConfig(num_classes=classes, out_channels=shape[0],
                                                      image_size=shape[1], **cfg_kw))

    def step():
        cf.train_generator(gen, clf, steps=1, batch_size=batch, lr=s["lr"], alpha=s["alpha"], beta=s["beta"],
                           gamma=s["gamma"], delta=s["delta"], epsilon=s.get("epsilon", 0.0))
    return step


def ae_step(dims, batch: int, lr: float):
    """Chapter 2: one step of every layer's fingerprint autoencoder (the library's ``LayerAE``)."""
    from ccc_lib.neuralfp import LayerAE
    aes = torch.nn.ModuleList(LayerAE(d) for d in dims)
    opt = torch.optim.Adam(aes.parameters(), lr)
    acts = [torch.randn(batch, d) for d in dims]

    def step():
        opt.zero_grad(set_to_none=True)
        sum(((ae(a) - ae.standardise(a)) ** 2).mean() for ae, a in zip(aes, acts)).backward()
        opt.step()
    return step


def inn_step(dim: int, blocks: int, batch: int, objective: str):
    """Chapter 3: one step of the library's ``train_inn`` (Algorithm 1, or the flow's likelihood)."""
    from ccc_lib import iocn
    model = iocn.INNModel(iocn.INNConfig(dim=dim, n_blocks=blocks))
    x = torch.randn(4 * batch, dim)
    model.set_standardisation(x)

    def step():
        iocn.train_inn(model, x, iocn.TrainConfig(objective=objective, steps=1, batch_size=batch, warmup=0,
                                                  cpu_threads=None))
    return step


def resnet_forward(batch: int):
    import torchvision
    net = torchvision.models.resnet18(weights=None).eval()     # random weights: the same arithmetic
    x = torch.rand(batch, 3, 224, 224)

    @torch.no_grad()
    def step():
        net(x)
    return step


def tap_dims(shape, classes: int, taps, pool_to: int) -> list[int]:
    from ccc_lib.neuralfp import collect_activations
    model = PaperCNN(CNNConfig(in_channels=shape[0], image_size=shape[1], num_classes=classes)).eval()
    acts = collect_activations(model, torch.rand(2, *shape), taps=taps, pool_to=pool_to)
    return [acts[t].shape[1] for t in taps]


def plan() -> list[tuple[Loop, callable]]:
    from ccc_lib import counterfeits, drift, iocn, neuralfp
    P = get_profile("full")
    n_train = {"mnist": 60000, "fashion_mnist": 60000, "svhn": 73257, "cifar10": 50000, "emnist": 112800}
    shape = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "svhn": (3, 32, 32), "cifar10": (3, 32, 32),
             "emnist": (1, 28, 28)}
    classes = {"emnist": 47}
    out = []
    b = P.batch_size
    for ds in P.classifier_datasets:
        ep = P.epochs_for(ds)
        steps = ep * -(-n_train[ds] // b)
        out.append((Loop("0 classifiers", f"CNN {ds} {shape[ds]} batch {b}", steps,
                         f"{ep} epochs × ⌈{n_train[ds]}/{b}⌉"),
                    classifier_step(shape[ds], classes.get(ds, 10), b)))
    s1 = counterfeits.SETTINGS["full"]
    for ds in P.classifier_datasets:
        steps = s1["steps"] + s1.get("inversion_steps", 0)
        out.append((Loop("1 counterfeits", f"generator {ds} batch {s1['batch_size']}", steps,
                         f"steps {s1['steps']} + inversion {s1.get('inversion_steps', 0)}"),
                    generator_step(shape[ds], 10, s1["batch_size"], s1)))
    abl = s1.get("ablation_steps", 0) * 6           # the ablation's variants (assumed 6) on one dataset
    if abl:
        ds = P.classifier_datasets[0]
        out.append((Loop("1 counterfeits", f"ablation generators {ds}", abl,
                         f"ablation_steps {s1['ablation_steps']} × 6 variants (assumed)"),
                    generator_step(shape[ds], 10, s1["batch_size"], s1)))
    s2 = neuralfp.SETTINGS["full"]
    for ds in [d for d in P.classifier_datasets if P.ood_sets.get(d)]:
        dims = tap_dims(shape[ds], 10, s2["taps"], s2["pool_to"])
        steps = s2["epochs"] * -(-n_train[ds] // s2["batch_size"])
        out.append((Loop("2 neuralfp", f"{len(dims)} layer AEs {ds} (dims {dims})", steps,
                         f"{s2['epochs']} epochs × ⌈{n_train[ds]}/{s2['batch_size']}⌉"),
                    ae_step(dims, s2["batch_size"], s2["lr"])))
    s3 = iocn.SETTINGS["full"]
    n_cls, n_feat = len(s3["classes"]), len(s3["feature_sets"])
    for obj, key in (("iocn", "steps"), ("flow", "flow_steps")):
        out.append((Loop("3 iocn", f"INN {obj} {s3['feature_dim']}-d {s3['n_blocks']} blocks batch {s3['batch_size']}",
                         s3[key] * n_cls * n_feat, f"{key} {s3[key]} × {n_cls} classes × {n_feat} feature sets"),
                    inn_step(s3["feature_dim"], s3["n_blocks"], s3["batch_size"], obj)))
    if "resnet18_imagenet" in s3["feature_sets"]:
        out.append((Loop("3 iocn", "ResNet-18 features at 224×224, batch 8 (forward)", 60000 / 8,
                         "CIFAR-10 train + test = 60,000 images / 8"), resnet_forward(8)))
    s4 = drift.SETTINGS["full"]
    for ds in s4["datasets"]:
        n_models = 1 + len(s4["drifts"]) + len(s4["control_seeds_per_dataset"].get(ds, s4["control_seeds_per_dataset"]["*"]))
        ep = s4["epochs"].get(ds, s4["epochs"]["*"])
        nb = s4["n_base"].get(ds, s4["n_base"]["*"])
        steps = n_models * ep * -(-nb // b) + s4["n_shadow"] * s4["shadow_epochs"] * -(-s4["n_attack"] // b)
        out.append((Loop("4 drift", f"CNNs {ds} (base, drifted, controls, shadows)", steps,
                         f"{n_models} models × {ep} epochs × ⌈{nb}/{b}⌉ + {s4['n_shadow']} shadows × "
                         f"{s4['shadow_epochs']} epochs × ⌈{s4['n_attack']}/{b}⌉"),
                    classifier_step(shape[ds], classes.get(ds, 10), b)))
        c = classes.get(ds, 10)
        gray_batch = s4["n_per_class"] * c
        iters = n_models * (s4["miface_max_iter"] + s4["adam_steps"])
        out.append((Loop("4 drift", f"gray data {ds}: MIFace + Adam inversion, batch {gray_batch} (≈ CNN step)",
                         iters, f"{n_models} models × (MIFace {s4['miface_max_iter']} + Adam {s4['adam_steps']}) "
                                "iterations, each ≈ one CNN forward+backward on the gray batch"),
                    classifier_step(shape[ds], c, gray_batch)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import os
    print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes slow "
          "the CPU timings down by about that ratio when it exceeds the core count)")
    print(f"ESTIMATE of the `full` profile; CPU steps measured with {args.threads} thread(s), warm-up "
          f"{args.warmup}, median of {args.repeats}; GPU from counted FLOPs/ops and the assumptions in the "
          "docstring\n")
    rows = []
    for loop, step in plan():
        loop.cpu_s, loop.flops, loop.ops = measure(step, args.warmup, args.repeats)
        rows.append(loop)
        print(f"[{loop.chapter}] {loop.what}: {loop.steps:,.0f} steps ({loop.formula}); CPU {loop.cpu_s * 1e3:.1f} ms/step, "
              f"{loop.flops / 1e9:.2f} GFLOP, {loop.ops} ops/step -> CPU {loop.cpu_s * loop.steps / 3600:.2f} h, "
              f"H100 {loop.gpu_step('likely') * loop.steps / 60:.1f} min", flush=True)
    print("\nper chapter (hours; H100 likely [optimistic–pessimistic]):")
    print(f"| chapter | {args.threads} CPU cores (h) | one H100 (h) |\n|---|---|---|")
    tot = Counter()
    for ch in dict.fromkeys(r.chapter for r in rows):
        rs = [r for r in rows if r.chapter == ch]
        cpu = sum(r.cpu_s * r.steps for r in rs) / 3600
        g = {c: sum(r.gpu_step(c) * r.steps for r in rs) / 3600 for c in GPU}
        for k, v in {"cpu": cpu, **g}.items():
            tot[k] += v
        print(f"| {ch} | {cpu:.1f} | {g['likely']:.2f} [{g['optimistic']:.2f}–{g['pessimistic']:.2f}] |")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"| all | {tot['cpu']:.1f} | {tot['likely']:.2f} [{tot['optimistic']:.2f}–{tot['pessimistic']:.2f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
