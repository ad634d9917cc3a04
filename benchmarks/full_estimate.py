"""An ESTIMATE of how long the ``full`` profile takes per chapter, on this CPU and on one H100.

    python benchmarks/full_estimate.py [--threads 2] [--repeats 5]
    python benchmarks/full_estimate.py --smoke      # seconds: the code paths, numbers meaningless

Method (printed with the result):

1. For each chapter's dominant loops, build the library's own model at ``full``'s shapes and batch
   sizes (from the chapter modules' ``SETTINGS["full"]`` and the ``full`` profile) and time one training
   step on this CPU with ``--threads`` threads: warm-up steps first, then the fastest of ``--repeats``
   timings (the same threads, warm-up and repeats for every loop). The CPU estimate uses the process's
   CPU time divided by the threads (what the step costs on an idle machine: on a shared machine other
   processes add wall-clock time, not CPU time; the fastest wall-clock time is printed beside it).
2. Multiply by the number of steps ``full`` runs (formulas printed per row, from the settings).
3. For the GPU, nothing is measured (no GPU here): one step's floating-point operations and its number of
   tensor operations are *counted* on the CPU (``torch.utils.flop_counter`` and a dispatch counter), and
   a step is taken to cost ``max(FLOPs / throughput, ops × per-op overhead)``: small models on a large
   GPU are bound by kernel launches and Python, large ones by arithmetic. Assumed (H100, FP32/TF32,
   no CUDA graphs): throughput 10 TFLOP/s achieved (about 15 % of peak: small convolutions and matmuls),
   10 µs per operation (launch + Python dispatch); the range printed uses 30 TFLOP/s & 5 µs (optimistic)
   and 3 TFLOP/s & 20 µs (pessimistic).

Chapter 3 is printed twice: one INN at a time (as the chapter trains today) and with the ten classes'
INNs trained as one stacked model (:mod:`ccc_lib.batched`, same weights to 1e-6 in
``tests/test_batched.py``): the stacked step is timed and counted like any other (its FLOPs are K
times one model's, its operations about one model's), and there are K times fewer of them.

Not included (stated, not guessed): data loading and downloads, evaluation passes (scoring test sets:
a few forward passes, small beside training), PyOD's classic baselines (scikit-learn on the CPU, either
way), notebook start-up and plotting. The result is an estimate until someone runs ``full``."""
from __future__ import annotations

import argparse
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
    cpu_s: float = 0.0           # one step, measured here (CPU time / threads: idle-machine wall time)
    wall_s: float = 0.0          # one step, fastest wall-clock time here (inflated by other processes)
    flops: float = 0.0           # one step, counted
    ops: int = 0                 # one step, counted
    per_model: int = 1           # independent models of the same architecture in ``steps`` (batchable)
    mode: str = ""               # "" (always counted), "serial" (one model at a time) or "batched" (K at once)

    def gpu_step(self, case: str) -> float:
        tput, per_op = GPU[case]
        return max(self.flops / tput, self.ops * per_op)


def measure(step, warmup: int, repeats: int, threads: int) -> tuple[float, float, float, int]:
    """``(wall, busy, flops, ops)`` of one ``step()``: ``wall`` the fastest of ``repeats`` wall-clock timings;
    ``busy`` the fastest of the process CPU times divided by ``threads`` — what the step takes on an idle
    machine, since on a shared one other processes add wall time while this one waits for a core, but no
    CPU time; ``flops`` and ``ops`` counted over one step."""
    for _ in range(warmup):
        step()
    walls, busys = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - w0)
        busys.append((time.process_time() - c0) / threads)
    fc = FlopCounterMode(display=False)
    with fc:
        step()
    oc = _OpCounter()
    with oc:
        step()
    return min(walls), min(min(busys), min(walls)), float(fc.get_total_flops()), oc.n


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


def inn_batched_step(dim: int, blocks: int, batch: int, objective: str, k: int):
    """Chapter 3 with batching: one step of ``k`` INNs trained as one stacked model
    (:class:`ccc_lib.batched.Stack`, the step of :func:`ccc_lib.batched.train_inns_batched`: the library's
    own losses, Adam, per-model clipping, the schedule), on ``k`` different training sets."""
    from ccc_lib import iocn
    from ccc_lib.batched import Stack
    models, xs = [], []
    for i in range(k):
        m = iocn.INNModel(iocn.INNConfig(dim=dim, n_blocks=blocks, seed=i))
        x = torch.randn(4 * batch, dim) + i
        m.set_standardisation(x)
        models.append(m.train())
        xs.append((x - m.shift) / m.scale)
    st = Stack(models)
    tc = iocn.TrainConfig(objective=objective, steps=1000, batch_size=batch, warmup=0)
    opt = torch.optim.Adam(st.parameters(), lr=tc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, iocn.lr_lambda(tc))
    gens = [torch.Generator().manual_seed(i) for i in range(k)]

    def loss_fn(m, xb, zt):
        return iocn.iocn_loss(m, xb, zt)[0] if objective == "iocn" else iocn.flow_loss(m, xb)[0]

    def step():
        xb = torch.stack([x[torch.randint(len(x), (batch,), generator=g)] for x, g in zip(xs, gens)])
        zt = torch.stack([torch.rand(batch, dim, generator=g) * 2 - 1 for g in gens])
        opt.zero_grad(set_to_none=True)
        st.map(loss_fn, xb, zt).sum().backward()
        st.clip_grad_norm_(tc.clip)
        opt.step()
        sched.step()
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


def _settings(chapter: str, P):
    """A chapter's settings at ``P`` from where the chapter keeps them (the experiment module's
    ``settings`` for chapters 2-4, the method module's for chapter 1)."""
    import importlib
    mod = importlib.import_module({"counterfeits": "ccc_lib.counterfeits"}.get(chapter, f"ccc_lib.experiments.{chapter}"))
    return mod.settings(P)


def plan(smoke: bool = False) -> list[tuple[Loop, callable]]:
    """The dominant loops of ``full``: ``(Loop, step function)``. ``smoke``: every batch cut to ≤ 4 (the
    code paths in seconds; the numbers then mean nothing)."""
    from ccc_lib import counterfeits
    P = get_profile("full")
    cut = (lambda b: min(int(b), 4)) if smoke else int
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
                    classifier_step(shape[ds], classes.get(ds, 10), cut(b))))
    s1 = _settings("counterfeits", P)
    sel = counterfeits.selection_settings(P)
    n_seeds = int(s1.get("n_seeds", 1))
    for ds in P.classifier_datasets:
        steps = 2 * n_seeds * s1["steps"]                       # paper + ours, each over the headline seeds
        out.append((Loop("1 counterfeits", f"generators {ds} batch {s1['batch_size']}", steps,
                         f"2 variants × {n_seeds} seeds × steps {s1['steps']}"),
                    generator_step(shape[ds], 10, cut(s1["batch_size"]), s1)))
    ds = P.classifier_datasets[0]
    n_cand = len(sel["epsilons"]) * len(sel["taus"])
    out.append((Loop("1 counterfeits", f"ε/τ selection candidates {ds}", n_cand * sel["steps"] * len(P.classifier_datasets),
                     f"{n_cand} candidates × {sel['steps']} steps × {len(P.classifier_datasets)} datasets"),
                generator_step(shape[ds], 10, cut(s1["batch_size"]), s1)))
    abl = s1.get("ablation_steps", 0) * 6 * s1.get("ablation_datasets", 1)   # the ablation's variants (assumed 6)
    if abl:
        out.append((Loop("1 counterfeits", f"ablation generators {ds}", abl,
                         f"ablation_steps {s1['ablation_steps']} × 6 variants (assumed) × "
                         f"{s1.get('ablation_datasets', 1)} datasets"),
                    generator_step(shape[ds], 10, cut(s1["batch_size"]), s1)))
    s2 = _settings("neuralfp", P)
    from ccc_lib.neuralfp import DEFAULT_TAPS, every_module_taps
    for ds in [d for d in P.classifier_datasets if P.ood_sets.get(d)]:
        n_fit = s2["fit_limit"] or n_train[ds]
        probe = PaperCNN(CNNConfig(in_channels=shape[ds][0], image_size=shape[ds][1], num_classes=10))
        for tapset, pool_to in s2["configs"]:
            taps = DEFAULT_TAPS if tapset == "cnn" else every_module_taps(probe)
            dims = tap_dims(shape[ds], 10, taps, pool_to)
            steps = s2["epochs"] * -(-n_fit // s2["batch_size"])
            out.append((Loop("2 neuralfp", f"{len(dims)} layer AEs {ds} {tapset}/pool {pool_to} (dims {dims})", steps,
                             f"{s2['epochs']} epochs × ⌈{n_fit}/{s2['batch_size']}⌉"),
                        ae_step(dims, cut(s2["batch_size"]), s2["lr"])))
    s3 = _settings("iocn", P)
    n_cls, n_feat = len(s3["classes"]), len(s3["feature_sets"])
    for obj, key in (("iocn", "steps"), ("flow", "flow_steps")):
        out.append((Loop("3 iocn", f"INN {obj} {s3['feature_dim']}-d {s3['n_blocks']} blocks batch {s3['batch_size']}",
                         s3[key] * n_cls * n_feat, f"{key} {s3[key]} × {n_cls} classes × {n_feat} feature sets",
                         per_model=n_cls, mode="serial"),
                    inn_step(s3["feature_dim"], s3["n_blocks"], cut(s3["batch_size"]), obj)))
        out.append((Loop("3 iocn", f"INN {obj}, the {n_cls} classes' INNs stacked (ccc_lib.batched)",
                         s3[key] * n_feat, f"{key} {s3[key]} × {n_feat} feature sets, one stacked step for "
                                           f"{n_cls} classes", per_model=n_cls, mode="batched"),
                    inn_batched_step(s3["feature_dim"], s3["n_blocks"], cut(s3["batch_size"]), obj,
                                     2 if smoke else n_cls)))
    if "resnet18_imagenet" in s3["feature_sets"]:
        out.append((Loop("3 iocn", "ResNet-18 features at 224×224, batch 8 (forward)", 60000 / 8,
                         "CIFAR-10 train + test = 60,000 images / 8"), resnet_forward(2 if smoke else 8)))
    s4 = _settings("drift", P)
    from ccc_lib.experiments.drift import per_dataset
    for ds in s4["datasets"]:
        n_models = 1 + len(s4["control_seeds"]) + len(s4["drift_kinds"]) * len(s4["drift_seeds"])
        ep = per_dataset(s4["epochs"], ds)
        nb = per_dataset(s4["n_base"], ds)
        n_bb = 2                                             # black-box attacks: shadows on synthetic and on real records
        steps = n_models * ep * -(-nb // b) + n_bb * s4["n_shadow"] * s4["shadow_epochs"] * -(-s4["n_attack"] // b)
        out.append((Loop("4 drift", f"CNNs {ds} (base, drifted, controls, shadows)", steps,
                         f"{n_models} models (1 base + {len(s4['control_seeds'])} controls + {len(s4['drift_kinds'])} "
                         f"kinds × {len(s4['drift_seeds'])} seeds) × {ep} epochs × ⌈{nb}/{b}⌉ + {n_bb} × "
                         f"{s4['n_shadow']} shadows × {s4['shadow_epochs']} epochs × ⌈{s4['n_attack']}/{b}⌉"),
                    classifier_step(shape[ds], classes.get(ds, 10), cut(b))))
        c = classes.get(ds, 10)
        gray_batch = s4["n_per_class"] * c
        iters = n_models * (s4["miface_max_iter"] + s4["adam_steps"])
        out.append((Loop("4 drift", f"gray data {ds}: MIFace + Adam inversion, batch {gray_batch} (≈ CNN step)",
                         iters, f"{n_models} models × (MIFace {s4['miface_max_iter']} + Adam {s4['adam_steps']}) "
                                "iterations, each ≈ one CNN forward+backward on the gray batch"),
                    classifier_step(shape[ds], c, cut(gray_batch))))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chapters", default=None, help="comma-separated chapter numbers to estimate (default: all)")
    ap.add_argument("--smoke", action="store_true",
                    help="every batch cut to ≤ 4, no warm-up, one repeat: the code paths in seconds, numbers meaningless")
    args = ap.parse_args(argv)
    if args.smoke:
        args.warmup, args.repeats = 0, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import os
    print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes slow "
          "the CPU timings down by about that ratio when it exceeds the core count)")
    print(f"ESTIMATE of the `full` profile; CPU steps measured with {args.threads} thread(s), warm-up "
          f"{args.warmup}, fastest of {args.repeats}; GPU from counted FLOPs/ops and the assumptions in the "
          "docstring\n")
    rows, seen = [], set()
    for loop, step in plan(args.smoke):
        if args.chapters and loop.chapter.split()[0] not in args.chapters.split(","):
            continue
        kind = (loop.chapter, loop.what.split()[0], loop.mode)
        if args.smoke and kind in seen:    # one loop of each kind
            continue
        seen.add(kind)
        loop.wall_s, loop.cpu_s, loop.flops, loop.ops = measure(step, args.warmup, args.repeats, args.threads)
        rows.append(loop)
        print(f"[{loop.chapter}] {loop.what}: {loop.steps:,.0f} steps ({loop.formula}); CPU {loop.cpu_s * 1e3:.1f} ms/step (wall {loop.wall_s * 1e3:.0f}), "
              f"{loop.flops / 1e9:.2f} GFLOP, {loop.ops} ops/step -> CPU {loop.cpu_s * loop.steps / 3600:.2f} h, "
              f"H100 {loop.gpu_step('likely') * loop.steps / 60:.1f} min", flush=True)
    for title, mode in (("one model at a time (as the chapters train today)", "serial"),
                        ("chapter 3's per-class INNs batched (ccc_lib.batched: one stacked step for all classes)",
                         "batched")):
        rs_all = [r for r in rows if r.mode in ("", mode)]
        print(f"\nper chapter, hours (ESTIMATE), {title}. CPU: {args.threads} thread(s) as measured; 2 cores: "
              "between that / 2 (perfect scaling) and that / 1. H100: likely [optimistic–pessimistic]:")
        print(f"| chapter | {args.threads} CPU thread(s) | 2 CPU cores | one H100 |\n|---|---|---|---|")
        chapters = list(dict.fromkeys(r.chapter for r in rs_all))
        for ch in chapters + ["all"]:
            rs = [r for r in rs_all if ch in ("all", r.chapter)]
            cpu = sum(r.cpu_s * r.steps for r in rs) / 3600
            g = {c: sum(r.gpu_step(c) * r.steps for r in rs) / 3600 for c in GPU}
            print(f"| {ch} | {cpu:.1f} h | {cpu / 2:.1f}–{cpu:.1f} h | {g['likely'] * 60:.0f} min "
                  f"[{g['optimistic'] * 60:.0f}–{g['pessimistic'] * 60:.0f}] |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
