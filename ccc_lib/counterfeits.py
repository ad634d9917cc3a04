"""Chapter 1: Confidently Classified Counterfeits (Suhail & Sethi, arXiv 2503.20187) — the method.

A *vector-matrix conditioned generator* G is trained against a frozen classifier f (evaluation
mode, no parameter gradients) so that its images are classified as the intended label. Two modes:

* ``"inversion"`` (network inversion, arXiv 2407.18002): the condition vector is the softmax of a
  normal draw (soft conditioning), the label is its argmax, the KL target is the soft vector;
* ``"counterfeit"``: one-hot condition vector and matrix, and the KL target is the one-hot label,
  which drives the classifier's confidence to 1.

The paper's loss (§3.3) is

    L = α·KL(t ‖ softmax f(G(z, c))) + β·CE(f(G(z, c)), y) + γ·Cos(F) + δ·Ortho(F),

F the batch's penultimate features of f. :data:`VARIANTS` names the two generators the book uses:
``"paper"`` is exactly that loss (ε = 0); ``"ours"`` adds one term, ε·Div, a within-class hinge on
the *feature-space* distance (see :func:`loss_terms`), against the collapse to one template per
class; its ε and τ are chosen per classifier on its generated samples alone (:data:`SELECTION`,
:func:`ours_choice`; training images only set the scale), never on the test set. The paper gives the architecture only in words
(:data:`PAPER` quotes what the paper states); the experiment's ``differ_table`` lists, at every profile,
each element, the paper's wording or "not stated", ours, and which is which.

Public API (what chapters 2-4 and the report call):

* :func:`get_generator` — the trained generator for a classifier, from the checkpoint cache or
  trained now (``variant="paper"`` or ``"ours"``; ``cache_only=True`` never trains);
* :func:`sample` — counterfeits from a generator, with the classifier's verdict on each;
* :func:`confident_counterfeits` — the cached generator's samples at confidence ≥ 0.99.

Measurement, the claims' bounds and our goal, the other architectures, ablations, grids and the
precomputed sliders are experiment code: :mod:`ccc_lib.experiments.counterfeits`."""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import cached, fingerprint, load_or_train
from .checks import InputError, check_choice, check_fraction, check_positive
from .profiles import Profile, chapter_settings, get_profile
from .utils import get_device, progress, set_seed

__all__ = ["SETTINGS", "PAPER", "VARIANTS", "MODES", "LOSS_TERMS", "settings",
           "GeneratorConfig", "VectorMatrixGenerator", "hot_matrix", "draw_conditions", "FeatureTap",
           "loss_terms", "validate_weights", "train_generator", "get_generator", "sample",
           "confident_counterfeits", "sample_dropout", "generator_settings", "train_step", "SELECTION",
           "selection_settings", "selection_config", "ours_choice"]

LOSS_TERMS = ("kl", "ce", "cos", "ortho", "div")
MODES = ("counterfeit", "inversion")

#: what the paper states about each element of the method, quoted (arXiv 2503.20187; None: not
#: stated). The values the book uses where the paper is silent are ours: an unattributed public
#: implementation uses several of them (n_z = 100, widths 64/128/256, Dropout2d(0.1) after the matrix,
#: Adam 5e-4), but its repository could not be identified, so nothing here is attributed to it.
PAPER = {
    "datasets": "carried out by modifying the inversion technique on the MNIST [2], FashionMNIST [14], SVHN "
                "and CIFAR-10 [6] datasets",
    "classifier": "a simple multi-layer convolutional neural network consisting of convolutional layers, dropout "
                  "layers, batch normalization, and leaky-relu activation followed by fully connected layers and "
                  "softmax",
    "classifier_mode": "then held in evaluation mode for the purpose of inversion",
    "nz": None,
    "condition_entry": "the class labels are encoded into random softmaxed vectors concatenated with the latent "
                       "vector",
    "condition_counterfeit": "we modify the conditioning mechanism in inversion by shifting from soft vectors to "
                             "one-hot vectors and matrices",
    "before_matrix": "followed by multiple layers of transposed convolutions, batch normalization [3] and dropout "
                     "layers [10]. Once the vectors are upsampled to N × N spatial dimensions",
    "dropout_before_matrix": "multiple layers of transposed convolutions, batch normalization [3] and dropout "
                             "layers [10]",
    "hot_matrix": "all elements in a specific row or column are set to 1, corresponding to the encoded label",
    "matrix_entry": "Once the vectors are upsampled to N × N spatial dimensions ... they are concatenated with a "
                    "conditioning matrix",
    "after_matrix": "for subsequent generation upto the required image size of 28×28 or 32×32",
    "many_classes": None,
    "output": None,
    "dropout_rate": "apply heavy dropout during the generation process",
    "sample_dropout": "The use of dropout during the generation process ensures that the samples vary significantly",
    "loss": "L_Inv = α·L_KL + β·L_CE + γ·L_Cosine + δ·L_Ortho",
    "weights": None,
    "kl_target": "applying Kullback-Leibler divergence (KLD) between the one-hot vectors and the classifier's "
                 "output distribution",
    "feature_layer": "we minimize cosine similarity between features of the generated images; ... penalizing "
                     "deviations in the Gram matrix of the features",
    "optimizer": None,
    "lr": None,
    "steps_batch": None,
    "stop": None,
    "div": None,
    "selection": None,
    "seeds": None,
    "studies": None,
}

#: the two generators: the paper's loss, and ours (+ ε·Div on features)
VARIANTS = ("paper", "ours")

#: the chapter's plateau test for a generator's training (the same for every generator it trains): checked
#: every ``every`` steps from ``min_steps`` on, training stops when every curve it watches — the batch's
#: mean confidence and each loss term with a non-zero weight — has flattened: the mean of its last
#: ``frac`` of steps differs from the mean of the ``frac`` before by at most ``tol`` times the curve's
#: range so far (:func:`plateaued`). ``steps`` stays the cap.
PLATEAU = dict(every=50, min_steps=100, frac=0.2, tol=0.02)
_COMMON = dict(plateau=PLATEAU, nz=100, dropout=0.1, sample_dropout=True, ours_sample_dropout=True, alpha=4.0,
               beta=4.0, gamma=0.5, delta=0.5, epsilon=1.0, div_target=0.5)
#: per-profile settings. Loss weights α, β, γ, δ (paper, values not reported: ours), ε and τ of our
#: Div term, sampling with dropout on for both generators (the paper's "dropout during the generation
#: process"; the chapter shows dropout off beside it), training steps (equal for every generator compared), the ablation's steps, the slider
#: fine-tunes (steps, points per knob, samples per class), sample sizes, and ``n_seeds``: generator
#: seeds of the headline paper-vs-ours comparison (seed 0 is the one the figures show).
SETTINGS = {
    "smoke": dict(_COMMON, plateau=dict(PLATEAU, every=25, min_steps=50), channels=(8, 16, 32), steps=100,
                  batch_size=40, lr=4e-3, n_seeds=1,
                  ablation_steps=40, ablation_datasets=1, n_per_class=20, n_reference=1000,
                  slider_steps=4, slider_points=2, slider_n=4, bench_n=100),
    "default": dict(_COMMON, channels=(16, 32, 64), steps=500, batch_size=60, lr=5e-4, n_seeds=3,
                    ablation_steps=200, ablation_datasets=1, n_per_class=100, n_reference=10000,
                    slider_steps=30, slider_points=2, slider_n=20, bench_n=1000),
    "full": dict(_COMMON, channels=(64, 128, 256), steps=4000, batch_size=200, lr=5e-4, n_seeds=3,
                 ablation_steps=2000, ablation_datasets=2, n_per_class=500, n_reference=None,
                 slider_steps=200, slider_points=5, slider_n=50, bench_n=5000),
    # full's code paths on generated files: everything tiny
    "full_dry": dict(plateau=dict(PLATEAU, every=2, min_steps=2), channels=(4, 8, 8), steps=4, batch_size=20,
                     ablation_steps=2, n_per_class=4, n_seeds=2, n_reference=200, slider_steps=1, slider_points=2,
                     slider_n=2, bench_n=10),
}

#: how our variant's ε and τ (``epsilon``, ``div_target``) are chosen, per profile, on generated samples
#: alone (training images set the scale; never the test set): the candidate grid, the training steps of
#: every candidate (equal for all), samples per class, and scale images (``n_validation``).
#: The rule (:func:`ccc_lib.experiments.counterfeits.select_ours`): the largest feature diversity among
#: candidates whose worst-class share at ≥ 0.99 is ≥ ``min_worst_share``; if none qualifies, the
#: highest worst-class share. The paper's generator has no parameter chosen this way (α..δ are fixed).
SELECTION = {
    "smoke": dict(epsilons=(0.5, 2.0), taus=(0.5,), steps=30, n_per_class=10, n_validation=500,
                  min_worst_share=0.99),
    # default: the middle four of full's eight candidates (#37: the selection as a study at reduced size)
    "default": dict(epsilons=(1.0, 2.0), taus=(0.5, 0.7), steps=200, n_per_class=50,
                    n_validation=2000, min_worst_share=0.99),
    "full": dict(epsilons=(0.5, 1.0, 2.0, 4.0), taus=(0.5, 0.7), steps=1000, n_per_class=100,
                 n_validation=5000, min_worst_share=0.99),
    "full_dry": dict(epsilons=(0.5, 2.0), taus=(0.5,), steps=2, n_per_class=3, n_validation=100),
}


def settings(profile: str | Profile | None = None, **overrides) -> dict:
    """The chapter's settings at ``profile`` with ``overrides`` applied (unknown keys raise)."""
    try:
        return chapter_settings(SETTINGS, _profile(profile), **overrides)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def selection_settings(profile: str | Profile | None = None, **overrides) -> dict:
    """The selection grid and budget of our variant's ε, τ at ``profile`` (:data:`SELECTION`)."""
    try:
        return chapter_settings(SELECTION, _profile(profile), **overrides)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def selection_config(classifier: nn.Module, dataset: str, profile: str | Profile | None = None,
                     seed: int = 0) -> dict:
    """The cache key of our variant's (ε, τ) selection for ``classifier`` on ``dataset``: the
    classifier's fingerprint, the grid and budget, and every other training setting."""
    s = settings(profile)
    return {"classifier": fingerprint(classifier), "dataset": dataset, "seed": seed,
            "selection": {k: list(v) if isinstance(v, tuple) else v for k, v in selection_settings(profile).items()},
            "train": {k: s[k] for k in _TRAIN_KEYS if k not in ("steps", "epsilon", "div_target")},
            "generator": {k: list(s[k]) if k == "channels" else s[k] for k in ("nz", "channels", "dropout")},
            "sample_dropout": bool(s["ours_sample_dropout"]), "plateau": s["plateau"], "version": 2}


def ours_choice(classifier: nn.Module, dataset: str, profile: str | Profile | None = None, seed: int = 0) -> dict:
    """Our variant's chosen ``{"epsilon": ..., "div_target": ...}`` for ``classifier`` on ``dataset``,
    from the selection chapter 1 ran (cached); raises
    :class:`ccc_lib.cache.NotCached` if it has not run at this profile."""
    from .cache import load_or_compute
    out = load_or_compute("ch1-ours-selection", selection_config(classifier, dataset, profile, seed),
                          None, cache_only=True)
    return {"epsilon": float(out["meta"]["epsilon"]), "div_target": float(out["meta"]["div_target"])}


def _profile(profile) -> Profile:
    try:
        return get_profile(profile)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


# ----------------------------------------------------------------------------------------------
# the generator (paper §3.2, §4; the layout below the paper's words is ours)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratorConfig:
    num_classes: int = 10
    out_channels: int = 1
    image_size: int = 28
    nz: int = 100
    channels: tuple = (64, 128, 256)
    dropout: float = 0.1
    mode: str = "counterfeit"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def hot_matrix(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The N×N *hot conditioning matrix*: row and column ``label`` set to 1, the rest 0 (B×1×N×N)."""
    eye = F.one_hot(labels, num_classes).float()                     # B×N
    m = eye[:, :, None] + eye[:, None, :]                            # row + column
    return m.clamp_(max=1.0)[:, None]


def draw_conditions(labels: torch.Tensor, num_classes: int, mode: str, generator=None) -> torch.Tensor:
    """Condition vectors for ``labels``: one-hot (counterfeit) or the softmax of a normal draw whose
    argmax is moved to the label (inversion: the same law as "draw, then take the argmax as label")."""
    check_choice(mode, "mode", MODES)
    if mode == "counterfeit":
        return F.one_hot(labels, num_classes).float()
    v = torch.randn(len(labels), num_classes, generator=generator, device=labels.device)
    top = v.argmax(1)
    rows = torch.arange(len(labels), device=labels.device)
    vt, vl = v[rows, top].clone(), v[rows, labels].clone()
    v[rows, labels], v[rows, top] = vt, vl                            # swap: argmax at the label
    return v.softmax(1)


def _block(conv, c, dropout=None):
    return [conv, nn.BatchNorm2d(c), nn.ReLU(inplace=True)] + ([nn.Dropout2d(dropout)] if dropout is not None else [])


class VectorMatrixGenerator(nn.Module):
    """Vector-matrix conditioned generator (paper §3.2, §4, which describe it in words only; the layout
    is ours — ``differ_table`` in the experiments lists each element against the paper's wording).

    ``z`` (nz) ⊕ a linear embedding of the N-dim condition vector, at 1×1 → transposed convs (k4, s1,
    BatchNorm, ReLU; channels ``channels[0], [1], [2], ...``) grow 1 → 4 → 7 → ... → N pixels →
    ⊕ the N×N hot conditioning matrix (one channel) → a stride-1 transposed conv to H/2 and a
    stride-2 transposed conv (k4) to H, each with BatchNorm, ReLU and Dropout2d(``dropout``) →
    a 3×3 transposed conv to the image channels → sigmoid: images in [0, 1]. Where N > H/2 (more
    classes than half the image side, e.g. EMNIST-47 at 28×28) a plain convolution of kernel
    N − H/2 + 1 shrinks N×N to H/2 instead. No dropout before the matrix."""

    def __init__(self, config: GeneratorConfig | None = None, **kw):
        super().__init__()
        if "channels" in kw:
            kw["channels"] = tuple(int(c) for c in kw["channels"])
        self.config = c = config or GeneratorConfig(**kw)
        check_choice(c.mode, "mode", MODES)
        if not 0.0 <= c.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {c.dropout}")
        n, h = c.num_classes, c.image_size
        if n < 2:
            raise InputError(f"need at least 2 classes, got num_classes={n}")
        if h < 8 or h % 2:
            raise InputError(f"image_size must be even and ≥ 8, got {h}")
        if not c.channels or min(c.channels) < 1:
            raise InputError(f"channels must be positive widths, got {c.channels}")
        self.embed = nn.Linear(n, c.nz)
        layers, size, ch, i = [], 1, 2 * c.nz, 0
        while size < n:                                               # 1 → 4 → 7 → ... → N
            k = min(4, n - size + 1)
            out = c.channels[min(i, len(c.channels) - 1)]
            layers += _block(nn.ConvTranspose2d(ch, out, k, 1, 0, bias=False), out)
            size, ch, i = size + k - 1, out, i + 1
        self.to_matrix = nn.Sequential(*layers)
        w1, w2 = max(1, c.channels[-1] // 2), max(1, c.channels[-1] // 4)
        half = h // 2
        if n < half:                                                  # N → H/2
            first = nn.ConvTranspose2d(ch + 1, w1, half - n + 1, 1, 0, bias=False)
        elif n > half:
            first = nn.Conv2d(ch + 1, w1, n - half + 1, 1, 0, bias=False)
        else:
            first = nn.ConvTranspose2d(ch + 1, w1, 3, 1, 1, bias=False)
        self.up = nn.Sequential(
            *_block(first, w1, c.dropout),
            *_block(nn.ConvTranspose2d(w1, w2, 4, 2, 1, bias=False), w2, c.dropout),   # H/2 → H
            nn.ConvTranspose2d(w2, c.out_channels, 3, 1, 1))

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
        """Set the Dropout2d probability of every stage (the sliders' dropout knob)."""
        if not 0.0 <= float(p) < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {p}")
        for m in self.modules():
            if isinstance(m, nn.Dropout2d):
                m.p = float(p)

    def forward(self, z: torch.Tensor, cond: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(cond)], 1)[:, :, None, None]    # vector conditioning at 1×1
        h = self.to_matrix(h)                                         # B×C×N×N
        h = torch.cat([h, hot_matrix(labels, self.num_classes).to(h.dtype)], 1)   # matrix conditioning
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
    """Logits and penultimate features of a classifier in one forward pass, by a forward hook:
    on the output of the module named ``layer`` (default: ``model.feature_layer`` when the model
    names one, as ours does), else on the *input* of the last ``nn.Linear`` (the penultimate
    features of any ordinary classifier)."""

    def __init__(self, model: nn.Module, layer: str | None = None):
        self.model, self._store = model, {}
        layer = layer if layer is not None else getattr(model, "feature_layer", None)
        mods = dict(model.named_modules())
        if layer is not None and layer not in mods:           # a short name ("act_fc" for "layers.act_fc")
            layer = next((k for k in mods if k.endswith("." + layer)), layer)
        if layer is not None:
            if layer not in mods:
                raise InputError(f"no module named {layer!r} in the classifier; pick one of "
                                 f"{[k for k in mods if k][:12]}")
            self._handle = mods[layer].register_forward_hook(lambda m, i, o: self._store.__setitem__("f", o))
            self.kind = f"output of {layer}"
        else:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise InputError("the classifier has no nn.Linear layer: name its feature layer with layer=")
            self._handle = linears[-1].register_forward_hook(lambda m, i, o: self._store.__setitem__("f", i[0]))
            self.kind = "input of the last linear layer"

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._store.clear()
        logits = self.model(x)
        return logits, self._store.pop("f").flatten(1)

    def close(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


# ----------------------------------------------------------------------------------------------
# the loss (paper §3.3, plus our ε·Div)
# ----------------------------------------------------------------------------------------------
def validate_weights(alpha, beta, gamma, delta, epsilon=0.0) -> dict:
    w = {"alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta, "epsilon": epsilon}
    for k, v in w.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or float(v) < 0:
            raise InputError(f"loss weight {k} must be a finite number ≥ 0, got {v!r}")
    if all(float(v) == 0 for v in w.values()):
        raise InputError("all loss weights are 0: nothing to train; set at least alpha or beta > 0")
    if float(alpha) == 0 and float(beta) == 0:
        warnings.warn("alpha = beta = 0: no term asks for the intended label", RuntimeWarning, stacklevel=2)
    return {k: float(v) for k, v in w.items()}


def _offdiag_mean(m: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    off = ~torch.eye(m.shape[0], dtype=torch.bool, device=m.device)
    if mask is not None:
        off = off & mask
    return m[off].mean() if off.any() else m.new_zeros(())


def loss_terms(logits, feats, target, labels, div_target: float = 0.5) -> dict:
    """The five terms (unweighted) of one batch: four of the paper's and our ``div``.

    * ``kl``: KL(t ‖ softmax(logits)), t the condition — one-hot (counterfeit) or soft (inversion);
      for a one-hot t it equals the cross-entropy.
    * ``ce``: cross-entropy with the intended label.
    * ``cos``: mean off-diagonal cosine similarity of the batch's penultimate features F.
    * ``ortho``: mean((F̂ F̂ᵀ − I)²), F̂ the L2-normalised features (Gram matrix against identity).
    * ``div`` (ours): over pairs i ≠ j with the same label, mean relu(τ − ‖F_i − F_j‖ / r), r the
      batch's RMS feature norm (detached) and τ = ``div_target``: zero once the counterfeits of a
      class are spread out as the classifier sees them; blind to pixel noise it ignores."""
    logp = logits.log_softmax(1)
    kl = F.kl_div(logp, target, reduction="batchmean")
    ce = F.nll_loss(logp, labels)
    f = feats.float()
    fn = F.normalize(f, dim=1)
    sim = fn @ fn.T
    cos = _offdiag_mean(sim)
    ortho = ((sim - torch.eye(len(fn), device=fn.device)) ** 2).mean()
    r = f.pow(2).sum(1).mean().sqrt().detach().clamp_min(1e-8)
    d = torch.cdist(f, f) / r
    same = labels[:, None] == labels[None, :]
    div = _offdiag_mean(F.relu(div_target - d), same)
    return {"kl": kl, "ce": ce, "cos": cos, "ortho": ortho, "div": div}


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
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


def _check_plateau(rule) -> dict | None:
    if rule is None:
        return None
    if not isinstance(rule, dict) or set(rule) != set(PLATEAU):
        raise InputError(f"plateau must be None or a dict with the keys {sorted(PLATEAU)}, got {rule!r}")
    check_positive(rule["every"], "plateau['every']", integer=True)
    check_positive(rule["min_steps"], "plateau['min_steps']", integer=True)
    check_fraction(rule["frac"], "plateau['frac']")
    check_positive(rule["tol"], "plateau['tol']")
    return {k: rule[k] for k in PLATEAU}


def _fast_layout(gen: VectorMatrixGenerator, classifier: nn.Module) -> nn.Module:
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
    rule = _check_plateau(plateau)
    if rule is not None and log_every != 1:
        raise InputError("the plateau test needs the history of every step: log_every=1")
    set_seed(seed)
    dev = next(gen.parameters()).device
    was = classifier.training
    classifier.eval()
    req = [p.requires_grad for p in classifier.parameters()]
    for p in classifier.parameters():
        p.requires_grad_(False)
    tap = FeatureTap(_fast_layout(gen, classifier), feature_layer)
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


_TRAIN_KEYS = ("steps", "batch_size", "lr", "alpha", "beta", "gamma", "delta", "epsilon", "div_target")


def generator_settings(profile: str | Profile | None = None, variant: str = "paper", **overrides) -> dict:
    """The settings a variant trains with: ``"paper"`` forces ε = 0 (the paper's loss)."""
    check_choice(variant, "variant", VARIANTS)
    s = settings(profile, **overrides)
    if variant == "paper":
        s["epsilon"] = 0.0
    return s


def sample_dropout(variant: str, s: dict) -> bool:
    """Whether ``variant`` samples with dropout active: the paper's setting ``sample_dropout`` (its
    "heavy dropout during generation"), ours ``ours_sample_dropout``."""
    check_choice(variant, "variant", VARIANTS)
    return bool(s["sample_dropout"] if variant == "paper" else s["ours_sample_dropout"])


def get_generator(classifier: nn.Module, dataset: str, profile: str | Profile | None = None, *,
                  variant: str = "paper", mode: str = "counterfeit", seed: int = 0, tag: str = "",
                  feature_layer: str | None = None, force: bool = False, cache_only: bool = False,
                  plateau: bool = False, also_at=(), **overrides):
    """The generator for ``classifier`` (trained on ``dataset`` at ``profile``), from the checkpoint
    cache or trained now. ``variant="paper"`` (the paper's loss, ε = 0) or ``"ours"`` (+ ε·Div);
    ``overrides`` replace entries of :data:`SETTINGS` (loss weights, dropout, steps, ...). With
    ``plateau=True`` it trains until the plateau test (:data:`PLATEAU`) passes, ``steps`` the cap (how
    chapter 1 trains every generator). ``also_at``: smaller caps whose generators are this run's
    weights at that step (identical to training them on their own: same seed, same stream), cached
    under their own keys as a by-product. Returns ``(generator, info)``: the generator in eval mode on
    the classifier's device; ``info`` holds the per-term loss ``history``, ``train_seconds``,
    ``stopped_at``, ``plateau_reached``, ``settings``, ``variant`` and ``from_cache``.

    The cache key holds the dataset, tag, seed, mode, variant, the settings (and the plateau rule when
    used) and a fingerprint of the classifier's weights, so a different classifier gets a different
    generator. With ``cache_only=True`` a generator that is not cached raises
    :class:`ccc_lib.cache.NotCached` instead of being trained (how chapters 2-4 reuse chapter 1's)."""
    prof = _profile(profile)
    check_choice(mode, "mode", MODES)
    if not isinstance(classifier, nn.Module):
        raise InputError(f"classifier: expected a torch nn.Module, got {type(classifier).__name__}")
    if not isinstance(dataset, str) or not dataset:
        raise InputError(f"dataset must be a non-empty name (the cache key), got {dataset!r}")
    s = generator_settings(prof, variant, **overrides)
    validate_weights(s["alpha"], s["beta"], s["gamma"], s["delta"], s["epsilon"])
    rule = _check_plateau(s["plateau"]) if plateau else None
    shape = _input_shape(classifier)
    n_classes = _num_classes(classifier, shape)
    cfg = GeneratorConfig(num_classes=n_classes, out_channels=shape[0], image_size=shape[1],
                          nz=int(s["nz"]), channels=tuple(int(c) for c in s["channels"]),
                          dropout=float(s["dropout"]), mode=mode)
    train_kw = {k: s[k] for k in _TRAIN_KEYS}

    def key_at(cap: int) -> dict:
        key = {"generator": cfg.to_dict(), "train": {**train_kw, "steps": int(cap)}, "dataset": dataset, "tag": tag,
               "seed": seed, "classifier": fingerprint(classifier), "feature_layer": feature_layer, "version": 2}
        return key if rule is None else {**key, "plateau": rule}

    kind, snaps = f"generator-{dataset}-{mode}", {}

    def train(g):
        out = train_generator(g, classifier, seed=seed, feature_layer=feature_layer, plateau=rule,
                              snapshots=also_at, desc=f"{dataset} {variant} {mode} generator", **train_kw)
        snaps.update(out.pop("snapshots"))
        return out

    set_seed(seed)
    gen = VectorMatrixGenerator(cfg).to(device_of(classifier))
    meta = load_or_train(gen, kind, key_at(train_kw["steps"]), train, force=force, cache_only=cache_only)
    for cap in sorted({int(c) for c in also_at if 0 < int(c) < int(train_kw["steps"])}):
        _store_prefix(gen, meta, snaps.get(cap), cap, kind, key_at(cap))
    gen.eval()
    info = {**meta, "dataset": dataset, "mode": mode, "variant": variant, "seed": seed, "tag": tag,
            "settings": s, "config": cfg.to_dict()}
    info.setdefault("stopped_at", info.get("steps"))
    info.setdefault("plateau_reached", False)
    return gen, info


def _store_prefix(gen, meta: dict, snap, cap: int, kind: str, key: dict) -> None:
    """Cache the run's weights at step ``cap`` under the key of a run capped there (the same run up to
    there); a run that stopped on its plateau before ``cap`` is that run, whole. Nothing to do when
    the long run came from the cache (its prefixes were stored when it trained) or the entry exists."""
    if meta["from_cache"]:
        return
    stopped = int(meta.get("stopped_at", meta["steps"]))
    if snap is None and stopped > cap:
        return

    def fill(g):
        if stopped <= cap:
            g.load_state_dict(gen.state_dict())
            return {k: v for k, v in meta.items() if k not in ("from_cache", "path")} | {"steps": cap}
        state, n, seconds = snap
        g.load_state_dict(state)
        return {k: v for k, v in meta.items() if k not in ("from_cache", "path", "history")} | {
            "history": {k: v[:n] for k, v in meta["history"].items()}, "train_seconds": seconds, "steps": cap,
            "stopped_at": cap, "plateau_reached": False, "prefix_of": int(meta["steps"])}

    load_or_train(VectorMatrixGenerator(gen.config).to(next(gen.parameters()).device), kind, key, fill)


def device_of(model: nn.Module):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return get_device()


def _input_shape(model: nn.Module) -> tuple:
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise InputError("the classifier needs an `input_shape` attribute (C, H, W); set it, e.g. "
                         "model.input_shape = (1, 28, 28)")
    if len(tuple(shape)) != 3:
        raise InputError(f"classifier.input_shape must be (C, H, W), got {shape!r}")
    c, h, w = (int(v) for v in shape)
    if h != w:
        raise InputError(f"the generator draws square images; the classifier expects {c}×{h}×{w}")
    return c, h, w


def _num_classes(model: nn.Module, shape) -> int:
    n = getattr(model, "num_classes", None)
    if n is None:
        was = model.training
        model.eval()
        with torch.no_grad():
            n = model(torch.zeros(2, *shape, device=device_of(model))).shape[1]
        model.train(was)
    return int(n)


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------
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


def confident_counterfeits(classifier: nn.Module, dataset: str, profile: str | Profile | None = None,
                           n_per_class: int = 100, seed: int = 0, threshold: float = 0.99,
                           variant: str = "paper") -> dict:
    """Chapter 1's counterfeits of ``classifier`` for the other chapters' detectors to score:
    ``n_per_class`` images per class from the *cached* generator of ``variant`` ("paper": the
    headline; "ours", at the ε and τ chapter 1 chose, :func:`ours_choice`),
    sampled as the chapter samples (dropout on when the settings say so);
    raises :class:`ccc_lib.cache.NotCached` if chapter 1 has not trained it at this profile. Keeps
    those the classifier labels as intended with confidence ≥ ``threshold``. Returns :func:`sample`'s
    dict restricted to the kept images, plus ``n_sampled``, ``variant`` and ``info``."""
    check_fraction(threshold, "threshold", open_interval=False)
    chosen = ours_choice(classifier, dataset, profile, seed) if variant == "ours" else {}
    gen, info = get_generator(classifier, dataset, profile, variant=variant, seed=seed, cache_only=True, plateau=True,
                              **chosen)
    s = sample(gen, classifier, n_per_class, seed=seed, dropout=sample_dropout(variant, info["settings"]))
    keep = (s["confidence"] >= threshold) & (s["pred"] == s["y"])
    out = {k: v[keep] for k, v in s.items()}
    return {**out, "n_sampled": int(len(keep)), "variant": variant, "info": info}
