"""Chapter 1's method as the paper defines it (Suhail & Sethi, arXiv 2503.20187, §3.2-§4): the
vector-matrix conditioned generator, its conditions (one-hot in counterfeit mode, soft in inversion
mode), the frozen classifier's logits and penultimate features, and the loss of §3.3 with our ε·Div."""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import InputError, check_choice

__all__ = ["LOSS_TERMS", "MODES", "GeneratorConfig", "hot_matrix", "draw_conditions", "VectorMatrixGenerator",
           "FeatureTap", "validate_weights", "loss_terms"]


LOSS_TERMS = ("kl", "ce", "cos", "ortho", "div")


MODES = ("counterfeit", "inversion")


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
