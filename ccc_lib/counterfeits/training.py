"""Training a generator against a frozen classifier (Adam; the paper names no optimiser), the
chapter's plateau test that stops it, and sampling counterfeits with the classifier's verdict."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from ..cache import cached
from ..checks import InputError, check_fraction, check_positive
from ..utils import get_device, progress, set_seed
from .generator import LOSS_TERMS, FeatureTap, VectorMatrixGenerator, loss_terms, validate_weights

__all__ = ["train_step", "PLATEAU", "plateaued", "history_plateaued", "check_plateau", "fast_layout",
           "train_generator", "device_of", "sample"]


def _balanced_labels(batch_size: int, n: int, device) -> torch.Tensor:
    per = max(2, batch_size // n)
    return torch.arange(n, device=device).repeat_interleave(per)


def _check_pair(gen: VectorMatrixGenerator, classifier: nn.Module) -> None:
    if not isinstance(gen, VectorMatrixGenerator):
        raise InputError(f"expected a VectorMatrixGenerator, got {type(gen).__name__}")
    if not isinstance(classifier, nn.Module):
        raise InputError(f"classifier: expected a torch nn.Module, got {type(classifier).__name__}")
    shape = getattr(classifier, "input_shape", None)
    if shape is not None and tuple(int(v) for v in shape) != tuple(gen.output_shape):
        raise InputError(f"the generator draws {tuple(gen.output_shape)} images but the classifier expects "
                         f"{tuple(shape)}; build the generator with get_generator(classifier, ...)")


def train_step(gen: VectorMatrixGenerator, tap: FeatureTap, opt: torch.optim.Optimizer, labels: torch.Tensor,
               w: dict, div_target: float) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """One step: generate for ``labels``, score with the frozen classifier, weigh the terms, step."""
    x, cond = gen.generate(labels)
    logits, feats = tap(x)
    t = loss_terms(logits, feats, cond, labels, div_target)
    total = (w["alpha"] * t["kl"] + w["beta"] * t["ce"] + w["gamma"] * t["cos"]
             + w["delta"] * t["ortho"] + w["epsilon"] * t["div"])
    if not torch.isfinite(total):
        raise FloatingPointError(f"generator loss became {total.item()}; lower the learning rate")
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return t, total, logits


#: the chapter's plateau test for a generator's training (the same for every generator it trains): checked
#: every ``every`` steps from ``min_steps`` on, training stops when every curve it watches — the batch's
#: mean confidence and each loss term with a non-zero weight — has flattened: the mean of its last
#: ``frac`` of steps differs from the mean of the ``frac`` before by at most ``tol`` times the curve's
#: range so far (:func:`plateaued`). ``steps`` stays the cap.
PLATEAU = dict(every=50, min_steps=100, frac=0.2, tol=0.02)


_WEIGHT_OF = {"kl": "alpha", "ce": "beta", "cos": "gamma", "ortho": "delta", "div": "epsilon"}


def plateaued(curve, frac: float = 0.2, tol: float = 0.01, *, relative: bool = False) -> bool:
    """Whether a training curve has flattened: the mean of its last ``frac`` differs from the mean of
    the ``frac`` before by less than ``tol`` (``relative=True``: by at most ``tol`` times the curve's
    range, max − min, so far)."""
    c = np.asarray(curve, dtype=float)
    k = max(1, int(len(c) * frac))
    if len(c) < 2 * k:
        return False
    d = abs(c[-k:].mean() - c[-2 * k:-k].mean())
    return bool(d <= tol * (c.max() - c.min())) if relative else bool(d < tol)


def history_plateaued(hist: dict, weights: dict, rule: dict) -> bool:
    """The plateau test (:data:`PLATEAU`) on a training history: the confidence curve and the curve of
    every term whose weight is non-zero."""
    curves = ["confidence"] + [k for k in LOSS_TERMS if float(weights[_WEIGHT_OF[k]]) > 0]
    return all(plateaued(hist[k], rule["frac"], rule["tol"], relative=True) for k in curves)


def check_plateau(rule) -> dict | None:
    if rule is None:
        return None
    if not isinstance(rule, dict) or set(rule) != set(PLATEAU):
        raise InputError(f"plateau must be None or a dict with the keys {sorted(PLATEAU)}, got {rule!r}")
    check_positive(rule["every"], "plateau['every']", integer=True)
    check_positive(rule["min_steps"], "plateau['min_steps']", integer=True)
    check_fraction(rule["frac"], "plateau['frac']")
    check_positive(rule["tol"], "plateau['tol']")
    return {k: rule[k] for k in PLATEAU}


def fast_layout(gen: VectorMatrixGenerator, classifier: nn.Module) -> nn.Module:
    """``gen`` in channels-last memory layout (in place) and a channels-last copy of the frozen
    ``classifier``: the same arithmetic, faster convolutions and pooling on the CPU (measured:
    ``benchmarks/counterfeits_throughput.py --train-step``)."""
    gen.to(memory_format=torch.channels_last)
    return copy.deepcopy(classifier).to(memory_format=torch.channels_last)


def train_generator(gen: VectorMatrixGenerator, classifier: nn.Module, *, steps: int, batch_size: int = 100,
                    lr: float = 5e-4, alpha=1.0, beta=1.0, gamma=0.5, delta=0.5, epsilon=0.0,
                    div_target: float = 0.5, seed: int = 0, feature_layer: str | None = None,
                    desc: str = "generator", log_every: int = 1, plateau: dict | None = None,
                    snapshots=()) -> dict:
    """Train ``gen`` in place against the frozen ``classifier`` (eval mode, no parameter grads) with
    Adam at a constant ``lr`` (ours: the paper names no optimiser). Batches hold every class equally
    often (≥ 2 per class, for the within-class term). With ``plateau`` (a rule like :data:`PLATEAU`)
    training stops early once the plateau test passes; ``steps`` is then the cap. ``snapshots``: step
    counts at which to keep a copy of the weights (a run capped there would be this run up to there).

    Returns the per-term history (unweighted, every ``log_every`` steps), the weighted total, the batch
    confidence, the time, ``stopped_at`` (steps trained), ``plateau_reached`` and ``snapshots``
    (step → (state dict, history length, seconds))."""
    _check_pair(gen, classifier)
    w = validate_weights(alpha, beta, gamma, delta, epsilon)
    check_positive(steps, "steps", integer=True)
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(lr, "lr")
    rule = check_plateau(plateau)
    if rule is not None and log_every != 1:
        raise InputError("the plateau test needs the history of every step: log_every=1")
    set_seed(seed)
    dev = next(gen.parameters()).device
    was = classifier.training
    classifier.eval()
    req = [p.requires_grad for p in classifier.parameters()]
    for p in classifier.parameters():
        p.requires_grad_(False)
    tap = FeatureTap(fast_layout(gen, classifier), feature_layer)
    gen.train()
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    hist = {k: [] for k in (*LOSS_TERMS, "total", "confidence")}
    snaps, keep, done, reached = {}, {int(s) for s in snapshots if 0 < int(s) < int(steps)}, 0, False
    t0 = time.perf_counter()
    try:
        for step in progress(range(int(steps)), desc=desc, total=int(steps)):
            labels = _balanced_labels(batch_size, gen.num_classes, dev)
            t, total, logits = train_step(gen, tap, opt, labels, w, div_target)
            if step % log_every == 0 or step == steps - 1:
                with torch.no_grad():
                    conf = logits.softmax(1).gather(1, labels[:, None]).mean()
                for k in LOSS_TERMS:
                    hist[k].append(round(float(t[k].detach()), 6))
                hist["total"].append(round(float(total.detach()), 6))
                hist["confidence"].append(round(float(conf), 6))
            done = step + 1
            if done in keep:
                snaps[done] = ({k: v.detach().clone().contiguous() for k, v in gen.state_dict().items()},
                               len(hist["total"]), time.perf_counter() - t0)
            if (rule is not None and done < steps and done >= rule["min_steps"] and done % rule["every"] == 0
                    and history_plateaued(hist, w, rule)):
                reached = True
                break
    finally:
        tap.close()
        for p, r in zip(classifier.parameters(), req):
            p.requires_grad_(r)
        classifier.train(was)
        gen.to(memory_format=torch.contiguous_format)
        gen.eval()
    return {"history": hist, "train_seconds": time.perf_counter() - t0, "steps": int(steps),
            "stopped_at": done, "plateau_reached": reached, "plateau": rule, "snapshots": snaps,
            "weights": w, "lr": lr, "batch_size": batch_size, "div_target": div_target, "device": str(dev)}


def device_of(model: nn.Module):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return get_device()


def sample(generator: VectorMatrixGenerator, classifier: nn.Module, n_per_class: int, seed: int = 0,
           batch_size: int = 1000, dropout: bool = False, *, cache: bool = True) -> dict:
    """``n_per_class`` images per class from ``generator``, BatchNorm in eval mode; ``dropout=True``
    keeps its Dropout2d layers active (the paper's "dropout during generation").

    Returns ``x`` (N×C×H×W in [0, 1], CPU), ``y`` (intended labels), ``pred`` (classifier's labels),
    ``confidence`` (classifier's probability of the intended label) and ``cond`` (condition vectors).
    The draw is a function of the seed: with ``cache=True`` it is stored in the checkpoint cache under
    the generator's and the classifier's fingerprints (and the dropout rates), so a rebuild reads it."""
    _check_pair(generator, classifier)
    check_positive(n_per_class, "n_per_class", integer=True)
    check_positive(batch_size, "batch_size", integer=True)
    if cache:
        rates = [float(m.p) for m in generator.modules() if isinstance(m, nn.Dropout2d)]
        return _cached_sample(generator, classifier, int(n_per_class), int(seed), int(batch_size), bool(dropout),
                              rates)
    return _sample(generator, classifier, n_per_class, seed, batch_size, dropout)


@cached("ch1-samples", version=2)   # 2: dropout masks seeded
def _cached_sample(generator, classifier, n_per_class, seed, batch_size, dropout, dropout_rates):
    return _sample(generator, classifier, n_per_class, seed, batch_size, dropout)


@torch.inference_mode()
def _sample(generator, classifier, n_per_class, seed, batch_size, dropout) -> dict:
    dev = next(generator.parameters()).device
    was_g, was_c = generator.training, classifier.training
    generator.eval()
    if dropout:
        for m in generator.modules():
            if isinstance(m, nn.Dropout2d):
                m.train()
    classifier.eval()
    g = torch.Generator(device=dev).manual_seed(int(seed))
    labels = torch.arange(generator.num_classes, device=dev).repeat_interleave(int(n_per_class))
    xs, conds, probs = [], [], []
    # dropout masks come from torch's global stream: seed it too (and restore it afterwards), so the
    # draw is a function of the seed alone, whatever ran before — the cache key relies on that
    devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            for i in range(0, len(labels), batch_size):
                x, c = generator.generate(labels[i:i + batch_size], generator=g)
                probs.append(classifier(x).softmax(1).float())
                xs.append(x.float().cpu())
                conds.append(c.cpu())
    finally:
        generator.train(was_g)
        classifier.train(was_c)
    p = torch.cat(probs)
    out = {"x": torch.cat(xs), "y": labels.cpu(), "pred": p.argmax(1).cpu(),
           "confidence": p.gather(1, labels[:, None])[:, 0].cpu(), "cond": torch.cat(conds)}
    with torch.inference_mode(False):           # ordinary tensors for the caller (in-place use allowed)
        return {k: v.clone() for k, v in out.items()}
