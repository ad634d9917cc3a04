"""Chapter 1: Confidently Classified Counterfeits (Suhail & Sethi, arXiv 2503.20187).

A *vector-matrix conditioned generator* is trained against a frozen classifier so that its images
are classified as the intended label. Two modes:

* ``"inversion"`` (network inversion, arXiv 2407.18002): the condition vector is the softmax of a
  normal draw (soft conditioning), the label is its argmax, the KL target is the soft vector;
* ``"counterfeit"``: one-hot condition vector and matrix, and the KL target is the one-hot label,
  which drives the classifier's confidence to 1.

The loss is ``L = α·KL + β·CE + γ·Cosine + δ·Ortho`` (paper, §3.3) plus one optional term of ours,
``ε·Div`` (a within-class pixel-diversity hinge, off with ε = 0), added to fight the collapse to
one template per class. Every term is logged per step.

Public API: :func:`get_generator` (train or load from the checkpoint cache), :func:`sample`,
:func:`train_generator`, :class:`VectorMatrixGenerator`, :func:`loss_terms`, plus the measurement
helpers used by the chapter notebook and the benchmark."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import load_or_train
from .metrics import nearest_neighbour_distance, pairwise_mean_distance
from .profiles import Profile, chapter_settings, get_profile
from .utils import get_device, progress, set_seed

__all__ = ["SETTINGS", "settings", "GeneratorConfig", "VectorMatrixGenerator", "hot_matrix", "draw_conditions",
           "FeatureTap", "loss_terms", "validate_weights", "train_generator", "get_generator", "sample", "confident_counterfeits",
           "classifier_fingerprint", "confidence_table", "distance_stats", "diversity_stats",
           "continue_training", "LOSS_TERMS", "feature_diversity", "summarise", "run_ablation", "show_grid",
           "pick_grid", "ABLATION"]

LOSS_TERMS = ("kl", "ce", "cos", "ortho", "div")
MODES = ("counterfeit", "inversion")

#: per-profile settings; the loss weights α, β, γ, δ (paper) and ε (ours), dropout, steps, ...
SETTINGS = {
    "smoke": dict(steps=100, batch_size=30, lr=4e-3, nz=32, width=16, dropout=0.1,
                  alpha=4.0, beta=4.0, gamma=0.5, delta=0.5, epsilon=1.0, div_target=0.30,
                  inversion_steps=30, ablation_steps=20, ablation_datasets=1,
                  n_per_class=20, n_reference=1000, slider_steps=10, bench_n=200),
    "default": dict(steps=800, batch_size=60, lr=2e-3, nz=32, width=16, dropout=0.1,
                    alpha=4.0, beta=4.0, gamma=0.5, delta=0.5, epsilon=1.0, div_target=0.30,
                    inversion_steps=200, ablation_steps=200, ablation_datasets=1,
                    n_per_class=100, n_reference=None, slider_steps=30, bench_n=1000),
    "full": dict(steps=4000, batch_size=200, lr=1e-3, nz=64, width=32, dropout=0.1,
                 alpha=4.0, beta=4.0, gamma=0.5, delta=0.5, epsilon=1.0, div_target=0.30,
                 inversion_steps=1000, ablation_steps=1000, ablation_datasets=4,
                 n_per_class=500, n_reference=None, slider_steps=100, bench_n=5000),
}


def settings(profile: str | Profile | None = None, **overrides) -> dict:
    return chapter_settings(SETTINGS, profile, **overrides)


# ----------------------------------------------------------------------------------------------
# the generator
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratorConfig:
    num_classes: int = 10
    out_channels: int = 1
    image_size: int = 28
    nz: int = 32
    width: int = 32
    dropout: float = 0.1
    mode: str = "counterfeit"

    def to_dict(self) -> dict:
        return asdict(self)


def hot_matrix(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The N×N *hot conditioning matrix*: row and column ``label`` set to 1, the rest 0 (B×1×N×N)."""
    eye = F.one_hot(labels, num_classes).float()                     # B×N
    m = eye[:, :, None] + eye[:, None, :]                            # row + column
    return m.clamp_(max=1.0)[:, None]


def draw_conditions(labels: torch.Tensor, num_classes: int, mode: str, generator=None) -> torch.Tensor:
    """Condition vectors for ``labels``: one-hot (counterfeit) or the softmax of a normal draw whose
    argmax is moved to the label (inversion: the same law as "draw, then take the argmax as label")."""
    if mode == "counterfeit":
        return F.one_hot(labels, num_classes).float()
    if mode != "inversion":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    v = torch.randn(len(labels), num_classes, generator=generator, device=labels.device)
    top = v.argmax(1)
    rows = torch.arange(len(labels), device=labels.device)
    vt, vl = v[rows, top].clone(), v[rows, labels].clone()
    v[rows, labels], v[rows, top] = vt, vl                            # swap: argmax at the label
    return v.softmax(1)


def _bn_relu(c):
    return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]


class VectorMatrixGenerator(nn.Module):
    """Vector-matrix conditioned generator (paper §3.2, §4).

    ``z`` (nz) ⊕ a linear embedding of the N-dim condition vector at 1×1 → transposed convs
    (k4, s1: +3 pixels each, BatchNorm, ReLU) up to N×N → ⊕ the N×N hot conditioning matrix (one
    channel) → two resize-convolution stages (nearest upsampling to H/2 and H, then a stride-1 3×3
    transposed conv, BatchNorm, ReLU, Dropout2d) → 3×3 conv → sigmoid: images in [0, 1].
    Upsample-then-convolve replaces the stride-2 transposed convs of the reference code to avoid
    checkerboard artefacts; everything else follows the paper."""

    def __init__(self, config: GeneratorConfig | None = None, **kw):
        super().__init__()
        self.config = c = config or GeneratorConfig(**kw)
        if c.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {c.mode!r}")
        if not 0.0 <= c.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {c.dropout}")
        n, w = c.num_classes, c.width
        if n < 2:
            raise ValueError("need at least 2 classes")
        self.embed = nn.Linear(n, c.nz)
        layers, size, ch = [], 1, 2 * c.nz
        chans = [4 * w, 2 * w, w]
        i = 0
        while size < n:
            k = min(4, n - size + 1)                                  # +3 per stage, last one fits N
            out = chans[min(i, len(chans) - 1)] if n - size > 3 else w
            layers += [nn.ConvTranspose2d(ch, out, k, 1, 0, bias=False), *_bn_relu(out)]
            size, ch, i = size + k - 1, out, i + 1
        if ch != w:
            layers += [nn.ConvTranspose2d(ch, w, 1, 1, 0, bias=False), *_bn_relu(w)]
        self.to_matrix = nn.Sequential(*layers)
        h = c.image_size
        self.up = nn.Sequential(
            nn.Upsample(size=(h // 2, h // 2), mode="nearest"),
            nn.ConvTranspose2d(w + 1, w, 3, 1, 1, bias=False), *_bn_relu(w), nn.Dropout2d(c.dropout),
            nn.Upsample(size=(h, h), mode="nearest"),
            nn.ConvTranspose2d(w, w, 3, 1, 1, bias=False), *_bn_relu(w), nn.Dropout2d(c.dropout),
            nn.Conv2d(w, c.out_channels, 3, 1, 1))

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def output_shape(self) -> tuple:
        return (self.config.out_channels, self.config.image_size, self.config.image_size)

    def set_dropout(self, p: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Dropout2d):
                m.p = float(p)

    def forward(self, z: torch.Tensor, cond: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(cond)], 1)[:, :, None, None]
        h = self.to_matrix(h)
        h = torch.cat([h, hot_matrix(labels, self.num_classes).to(h.dtype)], 1)
        return torch.sigmoid(self.up(h))

    def generate(self, labels: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and condition vectors for ``labels`` (fresh latents)."""
        dev = next(self.parameters()).device
        labels = labels.to(dev)
        z = torch.randn(len(labels), self.config.nz, generator=generator, device=dev)
        cond = draw_conditions(labels, self.num_classes, self.mode, generator)
        return self(z, cond, labels), cond


# ----------------------------------------------------------------------------------------------
# classifier access: logits and penultimate features in one pass, for any nn.Module
# ----------------------------------------------------------------------------------------------
class FeatureTap:
    """Logits and penultimate features of a classifier.

    Uses ``model.forward_with(x, [model.feature_layer])`` when the model has it (ours), else a forward
    hook on ``layer`` (a module name) or, by default, on the input of the last ``nn.Linear`` (the
    penultimate features of any ordinary classifier), else ``model.features(x)`` in a second pass."""

    def __init__(self, model: nn.Module, layer: str | None = None):
        self.model, self._store, self._handle = model, {}, None
        self.kind = None
        if layer is None and hasattr(model, "forward_with") and hasattr(model, "feature_layer"):
            self.kind = "forward_with"
            return
        mods = dict(model.named_modules())
        if layer is not None:
            if layer not in mods:
                raise KeyError(f"no module named {layer!r} in the classifier")
            self._handle = mods[layer].register_forward_hook(lambda m, i, o: self._store.__setitem__("f", o))
            self.kind = "hook-output"
            return
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if linears:
            self._handle = linears[-1].register_forward_hook(
                lambda m, i, o: self._store.__setitem__("f", i[0]))
            self.kind = "hook-last-linear"
        elif callable(getattr(model, "features", None)):
            self.kind = "features"
        else:
            raise TypeError("the classifier needs model.features, forward_with, a final nn.Linear, or layer=")

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        if self.kind == "forward_with":
            logits, taps = m.forward_with(x, [m.feature_layer])
            return logits, taps[m.feature_layer].flatten(1)
        if self.kind == "features":
            return m(x), m.features(x).flatten(1)
        self._store.clear()
        logits = m(x)
        return logits, self._store.pop("f").flatten(1)

    def close(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def classifier_fingerprint(model: nn.Module) -> str:
    """A short hash of a classifier's state_dict (its identity in the generator cache key)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# the loss
# ----------------------------------------------------------------------------------------------
def validate_weights(alpha, beta, gamma, delta, epsilon=0.0) -> dict:
    w = {"alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta, "epsilon": epsilon}
    for k, v in w.items():
        if v is None or not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"loss weight {k} must be a finite number ≥ 0, got {v!r}")
    if all(float(v) == 0 for v in w.values()):
        raise ValueError("all loss weights are 0: nothing to train")
    if float(alpha) == 0 and float(beta) == 0:
        import warnings
        warnings.warn("alpha = beta = 0: no term asks for the intended label", RuntimeWarning, stacklevel=2)
    return {k: float(v) for k, v in w.items()}


def _offdiag_mean(m: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    n = m.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=m.device)
    if mask is not None:
        off = off & mask
    return m[off].mean() if off.any() else m.new_zeros(())


def loss_terms(logits, feats, images, target, labels, div_target: float = 0.3) -> dict:
    """The five terms (unweighted) for one batch.

    * ``kl``: KL(target ‖ softmax(logits)) — target one-hot (counterfeit) or soft (inversion);
      for a one-hot target it equals the cross-entropy.
    * ``ce``: cross-entropy with the intended label.
    * ``cos``: mean off-diagonal cosine similarity of the batch's penultimate features.
    * ``ortho``: mean((F̂ F̂ᵀ − I)²) for the L2-normalised features F̂ (Gram matrix against identity).
    * ``div`` (ours): mean over same-label pairs of relu(τ − d_ij/√D), d_ij the pixel distance,
      τ = ``div_target`` the wanted RMS per-pixel difference: zero once a class is diverse enough."""
    logp = logits.log_softmax(1)
    kl = F.kl_div(logp, target, reduction="batchmean")
    ce = F.nll_loss(logp, labels)
    fn = F.normalize(feats.float(), dim=1)
    sim = fn @ fn.T
    cos = _offdiag_mean(sim)
    eye = torch.eye(len(fn), device=fn.device)
    ortho = ((sim - eye) ** 2).mean()
    flat = images.flatten(1)
    d = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    same = labels[:, None] == labels[None, :]
    div = _offdiag_mean(F.relu(div_target - d), same)
    return {"kl": kl, "ce": ce, "cos": cos, "ortho": ortho, "div": div}


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def _balanced_labels(batch_size: int, n: int, device) -> torch.Tensor:
    per = max(2, batch_size // n)
    return torch.arange(n, device=device).repeat_interleave(per)


def train_generator(gen: VectorMatrixGenerator, classifier: nn.Module, *, steps: int, batch_size: int = 100,
                    lr: float = 2e-3, alpha=1.0, beta=1.0, gamma=0.5, delta=0.5, epsilon=0.0,
                    div_target: float = 0.3, seed: int = 0, feature_layer: str | None = None,
                    desc: str = "generator", log_every: int = 1) -> dict:
    """Train ``gen`` in place against the frozen ``classifier`` (eval mode, no parameter grads).

    Batches hold every class equally often (≥ 2 per class, for the within-class terms). Returns the
    per-term history (unweighted values, every ``log_every`` steps), the weighted total, and time."""
    w = validate_weights(alpha, beta, gamma, delta, epsilon)
    if int(steps) < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    set_seed(seed)
    dev = next(gen.parameters()).device
    was = classifier.training
    classifier.eval()
    req = [p.requires_grad for p in classifier.parameters()]
    for p in classifier.parameters():
        p.requires_grad_(False)
    tap = FeatureTap(classifier, feature_layer)
    gen.train()
    opt = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(steps), eta_min=lr * 0.05)
    hist = {k: [] for k in (*LOSS_TERMS, "total", "confidence")}
    n = gen.num_classes
    t0 = time.perf_counter()
    bar = progress(range(int(steps)), desc=desc, total=int(steps))
    try:
        for step in bar:
            labels = _balanced_labels(batch_size, n, dev)
            x, cond = gen.generate(labels)
            logits, feats = tap(x)
            t = loss_terms(logits, feats, x, cond, labels, div_target)
            total = (w["alpha"] * t["kl"] + w["beta"] * t["ce"] + w["gamma"] * t["cos"]
                     + w["delta"] * t["ortho"] + w["epsilon"] * t["div"])
            if not torch.isfinite(total):
                raise FloatingPointError(f"generator loss became {total.item()} at step {step}; lower lr (now {lr})")
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            if step % log_every == 0 or step == steps - 1:
                with torch.no_grad():
                    conf = logits.softmax(1).gather(1, labels[:, None]).mean()
                for k in LOSS_TERMS:
                    hist[k].append(round(float(t[k].detach()), 6))
                hist["total"].append(round(float(total.detach()), 6))
                hist["confidence"].append(round(float(conf), 6))
    finally:
        tap.close()
        for p, r in zip(classifier.parameters(), req):
            p.requires_grad_(r)
        classifier.train(was)
        gen.eval()
    return {"history": hist, "train_seconds": time.perf_counter() - t0, "steps": int(steps),
            "weights": w, "lr": lr, "batch_size": batch_size, "div_target": div_target, "device": str(dev)}


def continue_training(gen, classifier, **kw) -> dict:
    """Fine-tune an existing generator (the sliders): same loop, no cache."""
    return train_generator(gen, classifier, **kw)


_TRAIN_KEYS = ("steps", "batch_size", "lr", "alpha", "beta", "gamma", "delta", "epsilon", "div_target")
_ARCH_KEYS = ("nz", "width", "dropout")


def get_generator(classifier: nn.Module, dataset: str, profile: str | Profile | None = None, *,
                  mode: str = "counterfeit", seed: int = 0, tag: str = "", feature_layer: str | None = None,
                  force: bool = False, cache_only: bool = False, **overrides):
    """The generator for ``classifier`` (trained on ``dataset`` at ``profile``), from the checkpoint
    cache or trained now. ``overrides`` replace entries of :data:`SETTINGS` (loss weights, dropout,
    steps, ...). Returns ``(generator, info)``; the generator is in eval mode on the classifier's
    device, ``info`` holds the per-term loss ``history``, ``train_seconds``, the settings used and
    ``from_cache``.

    The cache key holds the dataset, tag, seed, mode, the settings and a hash of the classifier's
    state_dict, so a different classifier gets a different generator. With ``cache_only=True`` a
    generator that is not in the cache raises :class:`ccc_lib.cache.NotCached` instead of being
    trained (how chapters 2 and 3 reuse chapter 1's counterfeits without spending its minutes)."""
    prof = get_profile(profile)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    s = settings(prof, **overrides)
    validate_weights(s["alpha"], s["beta"], s["gamma"], s["delta"], s["epsilon"])
    shape = _input_shape(classifier)
    n_classes = _num_classes(classifier, shape)
    cfg = GeneratorConfig(num_classes=n_classes, out_channels=shape[0], image_size=shape[1],
                          nz=int(s["nz"]), width=int(s["width"]), dropout=float(s["dropout"]), mode=mode)
    train_kw = {k: s[k] for k in _TRAIN_KEYS}
    key = {"generator": cfg.to_dict(), "train": train_kw, "dataset": dataset, "tag": tag, "seed": seed,
           "classifier": classifier_fingerprint(classifier), "feature_layer": feature_layer, "version": 1}
    set_seed(seed)
    gen = VectorMatrixGenerator(cfg).to(_device_of(classifier))
    meta = load_or_train(gen, f"generator-{dataset}-{mode}", key,
                         lambda g: train_generator(g, classifier, seed=seed, feature_layer=feature_layer,
                                                   desc=f"{dataset} {mode} generator", **train_kw),
                         force=force, cache_only=cache_only)
    gen.eval()
    info = {**meta, "dataset": dataset, "mode": mode, "seed": seed, "tag": tag, "settings": s,
            "config": cfg.to_dict()}
    return gen, info


def confident_counterfeits(classifier: nn.Module, dataset: str, profile: str | Profile | None = None,
                           n_per_class: int = 100, seed: int = 0, threshold: float = 0.99) -> dict:
    """Chapter 1's counterfeits of ``classifier`` for the other chapters' detectors to score:
    ``n_per_class`` images per class from the *cached* generator (raises
    :class:`ccc_lib.cache.NotCached` if chapter 1 has not trained it at this profile), keeping those
    the classifier labels as intended with confidence ≥ ``threshold``. Returns :func:`sample`'s dict
    restricted to the kept images, plus ``n_sampled`` and ``info`` (the generator's)."""
    gen, info = get_generator(classifier, dataset, profile, seed=seed, cache_only=True)
    s = sample(gen, classifier, n_per_class, seed=seed)
    keep = (s["confidence"] >= threshold) & (s["pred"] == s["y"])
    out = {k: v[keep] for k, v in s.items()}
    return {**out, "n_sampled": int(len(keep)), "info": info}


def _device_of(model: nn.Module):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return get_device()


def _input_shape(model: nn.Module) -> tuple:
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("the classifier needs an `input_shape` attribute (C, H, W); set it, e.g. "
                         "model.input_shape = (1, 28, 28)")
    c, h, w = (int(v) for v in shape)
    if h != w:
        raise ValueError(f"square images only, got {shape}")
    return c, h, w


def _num_classes(model: nn.Module, shape) -> int:
    n = getattr(model, "num_classes", None)
    if n is None:
        was = model.training
        model.eval()
        with torch.no_grad():
            n = model(torch.zeros(2, *shape, device=_device_of(model))).shape[1]
        model.train(was)
    return int(n)


# ----------------------------------------------------------------------------------------------
# sampling and measurement
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def sample(generator: VectorMatrixGenerator, classifier: nn.Module, n_per_class: int, seed: int = 0,
           batch_size: int = 1000, dropout: bool = False) -> dict:
    """``n_per_class`` images per class from ``generator`` (eval mode unless ``dropout=True``).

    Returns ``x`` (N×C×H×W in [0, 1], CPU), ``y`` (intended labels), ``pred`` (classifier's labels),
    ``confidence`` (classifier's probability of the intended label) and ``cond`` (condition vectors)."""
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
    for i in range(0, len(labels), batch_size):
        x, c = generator.generate(labels[i:i + batch_size], generator=g)
        probs.append(classifier(x).softmax(1).float())
        xs.append(x.float().cpu()); conds.append(c.cpu())
    generator.train(was_g)
    classifier.train(was_c)
    p = torch.cat(probs) if probs else torch.empty(0, generator.num_classes)
    lab = labels
    return {"x": torch.cat(xs) if xs else torch.empty(0, *generator.output_shape),
            "y": lab.cpu(), "pred": p.argmax(1).cpu(), "confidence": p.gather(1, lab[:, None])[:, 0].cpu(),
            "cond": torch.cat(conds) if conds else torch.empty(0)}


def confidence_table(s: dict, classes=None, threshold: float = 0.99):
    """Per intended class: mean confidence, share ≥ ``threshold``, share predicted as intended."""
    import pandas as pd
    y, conf, pred = s["y"].numpy(), s["confidence"].numpy(), s["pred"].numpy()
    rows = []
    for c in np.unique(y):
        m = y == c
        rows.append({"class": classes[c] if classes is not None else int(c), "n": int(m.sum()),
                     "mean confidence": float(conf[m].mean()), "min confidence": float(conf[m].min()),
                     f"share ≥ {threshold}": float((conf[m] >= threshold).mean()),
                     "predicted as intended": float((pred[m] == c).mean())})
    return pd.DataFrame(rows).set_index("class")


def diversity_stats(x: torch.Tensor, y: torch.Tensor, per_class: int | None = None, seed: int = 0) -> dict:
    """Within-class mean pairwise pixel distance, per class and averaged over classes."""
    g = np.random.default_rng(seed)
    out = {}
    for c in np.unique(y.numpy()):
        idx = np.flatnonzero(y.numpy() == c)
        if per_class is not None and len(idx) > per_class:
            idx = g.choice(idx, per_class, replace=False)
        out[int(c)] = pairwise_mean_distance(x[idx])
    return {"per_class": out, "mean": float(np.mean(list(out.values())))}


def feature_diversity(classifier, x: torch.Tensor, y: torch.Tensor, per_class: int | None = None,
                      seed: int = 0, feature_layer=None) -> float:
    """Within-class mean pairwise distance in the classifier's penultimate feature space (averaged
    over classes): diversity as the classifier sees it, blind to background pixel noise."""
    return diversity_stats(_features(classifier, x, feature_layer=feature_layer), y, per_class, seed)["mean"]


@torch.no_grad()
def _features(classifier, x, batch=1000, feature_layer=None):
    tap = FeatureTap(classifier, feature_layer)
    dev = _device_of(classifier)
    was = classifier.training
    classifier.eval()
    try:
        return torch.cat([tap(x[i:i + batch].to(dev))[1].float().cpu() for i in range(0, len(x), batch)])
    finally:
        tap.close()
        classifier.train(was)


def distance_stats(classifier, train_x: torch.Tensor, queries: dict, feature_layer=None) -> dict:
    """Nearest-neighbour distance to the training set of each query set, in pixel space and in the
    classifier's (penultimate) feature space. ``queries``: name → images. Returns name → dict of
    arrays ``pixel`` and ``feature``."""
    ftrain = _features(classifier, train_x, feature_layer=feature_layer)
    out = {}
    for name, q in queries.items():
        out[name] = {"pixel": nearest_neighbour_distance(q, train_x),
                     "feature": nearest_neighbour_distance(_features(classifier, q, feature_layer=feature_layer),
                                                           ftrain)}
    return out


# ----------------------------------------------------------------------------------------------
# what the chapter measures and shows
# ----------------------------------------------------------------------------------------------
def summarise(s: dict, real_diversity: float, threshold: float = 0.99) -> dict:
    """Headline numbers of one sample set: confidences, shares ≥ threshold, diversity vs real."""
    conf, y = s["confidence"].numpy(), s["y"].numpy()
    per_class_mean = [float(conf[y == c].mean()) for c in np.unique(y)]
    per_class_share = [float((conf[y == c] >= threshold).mean()) for c in np.unique(y)]
    div = diversity_stats(s["x"], s["y"])["mean"]
    return {"mean confidence": float(conf.mean()), "worst class mean confidence": min(per_class_mean),
            f"share ≥ {threshold}": float((conf >= threshold).mean()),
            f"worst class share ≥ {threshold}": min(per_class_share),
            "predicted as intended": float((s["pred"] == s["y"]).float().mean()),
            "diversity": div, "diversity / real": div / real_diversity}


#: the ablation: name → (mode, overrides); "all terms" is the baseline at the same number of steps
ABLATION = {
    "all terms (ours: + ε·Div)": ("counterfeit", {}),
    "− KL (α = 0)": ("counterfeit", {"alpha": 0.0}),
    "− CE (β = 0)": ("counterfeit", {"beta": 0.0}),
    "− Cosine (γ = 0)": ("counterfeit", {"gamma": 0.0}),
    "− Ortho (δ = 0)": ("counterfeit", {"delta": 0.0}),
    "− Div (ε = 0): the paper's loss": ("counterfeit", {"epsilon": 0.0}),
    "paper's loss, no dropout": ("counterfeit", {"epsilon": 0.0, "dropout": 0.0}),
    "soft conditioning (inversion mode)": ("inversion", {}),
}


def run_ablation(classifier, dataset: str, profile, real_diversity: float, *, seed: int = 0,
                 steps: int | None = None, n_per_class: int = 50, variants: dict | None = None,
                 train_x: torch.Tensor | None = None):
    """Train (or load) one generator per variant at ``steps`` steps and summarise each.
    Returns a DataFrame (one row per variant); ``train_x`` adds the median pixel NN distance."""
    import pandas as pd
    s0 = settings(profile)
    steps = int(steps or s0["ablation_steps"])
    rows = []
    for name, (mode, ov) in (variants or ABLATION).items():
        gen, info = get_generator(classifier, dataset, profile, mode=mode, seed=seed, steps=steps, **ov)
        s = sample(gen, classifier, n_per_class, seed=seed + 1)
        row = {"variant": name, **summarise(s, real_diversity)}
        if train_x is not None:
            row["median NN pixel distance"] = float(np.median(nearest_neighbour_distance(s["x"], train_x)))
        row["train s"] = info.get("train_seconds", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def pick_grid(s: dict, per_class: int, num_classes: int | None = None):
    """The first ``per_class`` samples of each class, arranged row by row (one column per class)."""
    y = s["y"].numpy()
    n = num_classes or int(y.max()) + 1
    idx = [np.flatnonzero(y == c)[:per_class] for c in range(n)]
    order = [idx[c][r] for r in range(per_class) for c in range(n)]
    return s["x"][order], [float(s["confidence"][i]) for i in order], [int(s["pred"][i]) for i in order]


def show_grid(s: dict, classes, per_class: int = 3, title: str = "", size: float = 1.05):
    """Figure-2 style grid: one column per intended class, the confidence above each image (red when
    the classifier's label differs from the intended one or confidence < 0.99)."""
    from .plots import image_grid
    n = len(classes)
    x, conf, pred = pick_grid(s, per_class, n)
    intended = [c for _ in range(per_class) for c in range(n)]
    titles = [(f"{classes[c][:9]}\n{p:.4f}" if r == 0 else f"{p:.4f}")
              for r in range(per_class) for c, p in zip(range(n), conf[r * n:(r + 1) * n])]
    colors = ["black" if (pr == c and p >= 0.99) else "red" for pr, c, p in zip(pred, intended, conf)]
    return image_grid(x, titles=titles, ncol=n, size=size, suptitle=title or None, title_colors=colors)
