"""Chapter 4: model drift detection with *gray data* (model inversion) and membership inference.

The method of the slides *Image-Based Model Drift Detection using model inversion and membership
inference attacks*, in their seven steps (the chapter's experiment — injected drifts, controls,
tables — lives in :mod:`ccc_lib.experiments.drift`). The slides name the steps and the kinds of
attack, nothing more: no library, inversion algorithm, start image, architecture, data sizes or
decision threshold. Every such choice below is ours (or our reading of the slides' words), and the
chapter's "where we differ" table lists them.

1-2. "Split training data in original dataset into base data and production data, then create a
     **base model** from base data [and] a **production model** from production data":
     :func:`make_splits`, :func:`train_model` (the papers' CNN: ours).
3-4. "Run a *model inversion* attack on the base model to generate **base gray data** [...] on the
     production model to generate **production gray data**": :func:`gray_data` — ``"miface"`` (ART's
     ``MIFace`` from a grey start: our reading of "model inversion" and "gray data"), ``"adam"``
     (plain Adam on the pixels; ours) or ``"generator"`` (chapter 1's conditioned generator; ours).
5-6. "Run *membership inference* attack on base model with base gray data [→ base drift score] [...]
     with production gray data [→ production drift score]": :class:`MembershipAttacks` — ART's
     rule-based attack and its black-box attack (our reading of the slides' "rule-based" and
     "black-box" attacks), whose attack model is trained on shadow models; their shadow data
     "created by feeding random examples [to] the model" we read as ART's synthetic shadow data
     (Shokri et al.'s hill climbing), or, our variant, real images.
7.   "If production drift accuracy score ≪ base drift accuracy score, then concept drift confirmed":
     :func:`drift_decision` makes "≪" (ours: a margin and a test against no-drift control scores)
     one family of tests — the model-level count of "member" records and every class's count, each
     against its controls' counts by a beta-binomial predictive p-value, corrected together (Holm),
     a test firing only on a drop larger than the margin — so a drift confined to one class is seen;
     :func:`detect_drift` runs steps 3-7 for two trained models.

The drift score of a set of gray data (our reading of the slides' "accuracy with gray data") is
the share of its records that the attack calls "member" of the base model's training data
(overall and per intended class). The interval and p-value machinery is generic statistics and
lives in :mod:`ccc_lib.metrics`.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import counterfeits
from .cache import cached, fingerprint, load_or_compute
from .metrics import (holm, prediction_interval_p, raw_class_p, class_p_values,   # step 7's statistics
                      check_class_scores, betabinom_p_values)
from .checks import (InputError, check_choice, check_fraction, check_images, check_labels, check_positive)
from .data import TensorData
from .models import CNNConfig, PaperCNN
from .train import get_classifier, predict_logits
from .utils import cpu_threads, get_device, rng_isolated, set_seed

__all__ = ["ShadowSynthesisError", "GRAY_METHODS", "SHADOW_DATA", "make_splits", "train_model", "art_classifier", "GrayData", "gray_miface",
           "gray_adam", "gray_generator", "gray_data", "MembershipAttacks", "synthetic_shadow_records",
           "DriftDecision", "DECISION_RULES", "holm", "class_p_values", "family_test", "drift_decision", "DriftReport", "detect_drift", "check_model"]

GRAY_METHODS = ("miface", "adam", "generator")
SHADOW_DATA = ("synthetic", "real")

#: the inversion settings :func:`gray_data` reads (the chapter's SETTINGS hold them per profile)
GRAY_DEFAULTS = {"miface_max_iter": 100, "miface_lr": 1.0, "miface_window": 50, "miface_threshold": 0.99,
                 "adam_steps": 100, "adam_lr": 0.05, "adam_noise": 0.05, "generator_overrides": {}}


class ShadowSynthesisError(RuntimeError):
    """ART's hill climbing could not synthesise enough shadow records from random examples."""

    def __init__(self, message: str, n_records: int, failures):
        super().__init__(message)
        self.n_records, self.failures = int(n_records), list(failures)


def check_model(model, name: str = "model") -> PaperCNN:
    """A classifier usable here: an ``nn.Module`` with ``input_shape`` (C, H, W) and ``num_classes``."""
    if not isinstance(model, nn.Module):
        raise InputError(f"{name}: expected a torch.nn.Module classifier (e.g. ccc_lib.PaperCNN), got "
                         f"{type(model).__name__}")
    shape = getattr(model, "input_shape", None)
    if shape is None or len(tuple(shape)) != 3:
        raise InputError(f"{name}: needs an `input_shape` attribute (C, H, W), got {shape!r}; set it, e.g. "
                         f"{name}.input_shape = (1, 28, 28)")
    if not isinstance(getattr(model, "num_classes", None), int) or model.num_classes < 2:
        raise InputError(f"{name}: needs an integer `num_classes` ≥ 2, got {getattr(model, 'num_classes', None)!r}")
    return model


# --------------------------------------------------------------------------- steps 1-2: base and production

def make_splits(train: TensorData, n_base: int, n_prod: int, seed: int = 0,
                prod_seed: int | None = None) -> tuple[TensorData, TensorData]:
    """Steps 1-2's data: disjoint, class-stratified base and production portions of a training set.
    The base portion is ``n_base`` images drawn with ``seed``; the production portion ``n_prod`` of
    the images *not* in it, drawn with ``prod_seed`` (default ``seed``) — so each production model
    (a no-drift control or a drifted one) can get its own draw from the base data's distribution
    while the base portion stays the same (the draws differ when the rest holds more than
    ``n_prod`` images)."""
    check_positive(n_base, "n_base", integer=True)
    check_positive(n_prod, "n_prod", integer=True)
    if n_base + n_prod > len(train):
        raise InputError(f"{train.name}: base {n_base} + production {n_prod} > {len(train)} training images; "
                         "ask for smaller portions")
    from sklearn.model_selection import train_test_split
    y = train.y.numpy()
    idx = np.arange(len(y))
    ib, rest = train_test_split(idx, train_size=n_base, stratify=y, random_state=seed)
    ps = seed if prod_seed is None else int(prod_seed)
    ip = rest if n_prod == len(rest) else train_test_split(rest, train_size=n_prod, stratify=y[rest],
                                                           random_state=ps)[0]
    ib, ip = torch.as_tensor(np.sort(ib)), torch.as_tensor(np.sort(ip))
    return (TensorData(train.x[ib], train.y[ib], train.classes, train.name, "base"),
            TensorData(train.x[ip], train.y[ip], train.classes, train.name, "production"))


def train_model(dataset: str, data: TensorData, profile, *, tag: str, seed: int = 0, epochs: int | None = None,
                channels_last: bool = False):
    """Step 1 or 2: the papers' CNN on one portion, trained once and cached (core ``get_classifier``;
    ``channels_last``: its memory format for training); ``tag`` names the portion in the cache key.
    Returns ``(model, info)``."""
    return get_classifier(dataset, profile, train_data=data, tag=tag, seed=seed, epochs=epochs,
                          channels_last=channels_last)


# --------------------------------------------------------------------------- ART wrapping

class _Softmax(nn.Module):
    """A logits model with a softmax on top (and, for ART's synthetic shadow data, flat inputs reshaped)."""

    def __init__(self, model: nn.Module, flat: bool = False):
        super().__init__()
        self.model, self.flat = model, flat

    def forward(self, x):
        if self.flat:
            x = x.reshape(-1, *self.model.input_shape)
        return self.model(x).softmax(1)


def art_classifier(model: PaperCNN, probabilities: bool = True, flat: bool = False):
    """An ART ``PyTorchClassifier`` around a frozen model, clip values [0, 1]. With ``probabilities``
    the network outputs softmax probabilities (what ``MIFace``'s stop rule ``1 - p(target) ≤
    threshold`` and the attacks assume); ``flat`` takes flattened records (ART's hill climbing)."""
    from art.estimators.classification import PyTorchClassifier
    check_model(model)
    net = _Softmax(model, flat) if (probabilities or flat) else model
    net.eval()
    shape = (int(np.prod(model.input_shape)),) if flat else tuple(model.input_shape)
    dev = "gpu" if get_device().type == "cuda" else "cpu"
    return PyTorchClassifier(model=net, loss=nn.CrossEntropyLoss(), input_shape=shape,
                             nb_classes=model.num_classes, clip_values=(0.0, 1.0), device_type=dev)


# --------------------------------------------------------------------------- steps 3-4: gray data

@dataclass
class GrayData:
    """Gray data of one model: images, intended labels, and the model's own view of them."""
    x: torch.Tensor
    y: torch.Tensor
    method: str
    own_pred: torch.Tensor | None = None
    own_conf: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.x)

    @property
    def own_accuracy(self) -> float:
        """Share classified as intended by the model that made them."""
        return float((self.own_pred == self.y).float().mean()) if self.own_pred is not None else float("nan")


def _labels(num_classes: int, n_per_class: int) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(n_per_class)


def _finish(model, x, y, method, **info) -> GrayData:
    x = x.detach().float().clamp(0, 1).cpu()
    p = predict_logits(model, x, cache=True).softmax(1)
    conf, pred = p.max(1)
    return GrayData(x, y.cpu(), method, pred, conf, info)


def gray_miface(model: PaperCNN, n_per_class: int = 1, *, max_iter: int = 100, learning_rate: float = 1.0,
                window_length: int = 50, threshold: float = 0.99) -> GrayData:
    """Model inversion by ART's ``MIFace`` (Fredrikson et al. 2015) from a grey (all 0.5) start, as in
    ART's MNIST example — our reading of the slides' "model inversion" and "gray data" (they name
    neither ART, MIFace nor a start image). Each step adds ``learning_rate`` × the gradient of
    p(y | x) to the records still active, clipped to [0, 1]; with ``cost = 1 - p(y | x)`` ART 1.20
    then sets ``active = (cost <= threshold) + (cost >= max(window))`` (``window``: the last
    ``window_length`` costs, starting at +∞). So a record the model gives p(y) ≥ 1 - ``threshold``
    (0.01 at the default 0.99) is updated until ``max_iter``, and one below that stops as soon as its
    cost is below the window's maximum (at the first step, as the window starts at +∞) — the
    reverse of "stop once good enough or no longer improving". On a softmax output (with logits
    the cost is meaningless). MIFace is deterministic: from one grey start every sample of a class
    is identical, so one inversion per class is computed and repeated ``n_per_class`` times."""
    from art.attacks.inference.model_inversion import MIFace
    check_model(model)
    check_positive(n_per_class, "n_per_class", integer=True)
    est = art_classifier(model, probabilities=True)
    attack = MIFace(est, max_iter=int(max_iter), window_length=int(window_length), threshold=float(threshold),
                    learning_rate=float(learning_rate), batch_size=model.num_classes, verbose=False)
    y1 = np.arange(model.num_classes)
    x0 = np.full((model.num_classes, *model.input_shape), 0.5, dtype=np.float32)
    with cpu_threads(1):              # one small batch, many tiny steps: threads only add overhead
        x1 = torch.as_tensor(attack.infer(x0, y1))
    x = x1.repeat_interleave(n_per_class, 0)
    return _finish(model, x, _labels(model.num_classes, n_per_class), "miface", max_iter=max_iter)


def gray_adam(model: PaperCNN, n_per_class: int = 10, *, steps: int = 100, lr: float = 0.05,
              noise: float = 0.05, seed: int = 0) -> GrayData:
    """Plain model inversion (ours): Adam on the pixels, cross-entropy to the intended class, from
    grey plus a little seeded noise (so samples of a class differ), pixels clipped to [0, 1]. All
    classes are inverted in one batch; on the CPU through a channels-last copy of the model (the
    same inversion up to float rounding, about 1.4× faster). ``info["loss"]``: the loss per step."""
    check_model(model)
    check_positive(n_per_class, "n_per_class", integer=True)
    dev = next(model.parameters()).device
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    net = copy.deepcopy(model).to(memory_format=fmt).eval() if dev.type == "cpu" else model.eval()
    g = torch.Generator().manual_seed(int(seed))
    y = _labels(model.num_classes, n_per_class)
    x = (0.5 + noise * torch.randn(len(y), *model.input_shape, generator=g)).clamp(0, 1).to(dev)
    x = x.to(memory_format=fmt).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    yd, losses = y.to(dev), []
    for _ in range(int(steps)):
        loss = F.cross_entropy(net(x), yd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        losses.append(float(loss.detach()))
    return _finish(model, x.contiguous(), y, "adam", steps=steps, lr=lr, loss=losses)


def gray_generator(model: PaperCNN, dataset: str, profile, n_per_class: int = 10, *, tag: str, seed: int = 0,
                   **overrides) -> GrayData:
    """Gray data from chapter 1's conditioned generator trained against ``model`` in counterfeit
    mode (ours), through chapter 1's public ``get_generator`` / ``sample``."""
    check_model(model)
    gen, info = counterfeits.get_generator(model, dataset, profile, mode="counterfeit", seed=seed,
                                           tag=f"drift-{tag}", **overrides)
    s = counterfeits.sample(gen, model, n_per_class, seed=seed)
    return _finish(model, torch.as_tensor(s["x"]).float(), torch.as_tensor(s["y"]).long(), "generator",
                   from_cache=bool(info.get("from_cache", False)))


def gray_data(model: PaperCNN, method: str, n_per_class: int, S: dict | None = None, *, seed: int = 0,
              dataset: str | None = None, profile=None, tag: str = "", cache: bool = True) -> GrayData:
    """Steps 3-4 for one model with one inversion method and settings ``S`` (see ``GRAY_DEFAULTS``).
    MIFace and Adam gray data are cached under the model's :func:`fingerprint`, the method, its
    settings, ``n_per_class`` and the seed (the generator has its own checkpoint cache)."""
    check_model(model)
    check_choice(method, "method", GRAY_METHODS)
    check_positive(n_per_class, "n_per_class", integer=True)
    S = {**GRAY_DEFAULTS, **(S or {})}
    if method == "generator":
        if dataset is None or not tag:
            raise InputError("gray_data(method='generator') needs dataset= and tag= (chapter 1's generator cache key)")
        return gray_generator(model, dataset, profile, n_per_class, tag=tag, seed=seed,
                              **dict(S.get("generator_overrides") or {}))

    def compute():
        if method == "miface":
            g = gray_miface(model, n_per_class, max_iter=S["miface_max_iter"], learning_rate=S["miface_lr"],
                            window_length=S["miface_window"], threshold=S["miface_threshold"])
        else:
            g = gray_adam(model, n_per_class, steps=S["adam_steps"], lr=S["adam_lr"], noise=S["adam_noise"],
                          seed=seed)
        return {"x": g.x, "y": g.y, "loss": torch.tensor(g.info.get("loss", []), dtype=torch.float64)}

    if not cache:
        d = compute()
        return _finish(model, d["x"], d["y"], method, from_cache=False, loss=d["loss"].tolist())
    config = {"model": fingerprint(model), "method": method, "n": int(n_per_class),
              "seed": int(seed) if method == "adam" else 0,
              "settings": {k: S[k] for k in sorted(S) if k.startswith(method)}, "version": 3}
    d = load_or_compute(f"drift-gray-{method}", config, compute)
    return _finish(model, d["x"], d["y"], method, from_cache=d["from_cache"], loss=d["loss"].tolist())


# --------------------------------------------------------------------------- steps 5-6: membership inference

@torch.inference_mode()
def synthetic_shadow_records(target: PaperCNN, n_per_class: int, *, min_confidence: float = 0.4,
                             max_iterations: int = 40, max_rejections: int = 3, max_retries: int = 6,
                             seed: int = 0):
    """Shadow training data "created by feeding random examples [to] the model" (the slides' words; our
    reading of them): the hill-climbing synthesis of Shokri et al. (2017) exactly as ART's
    ``ShadowModels.generate_synthetic_shadow_dataset``
    runs it (``_hill_climbing_synthesis``, ART's defaults), batched over all records instead of one
    record at a time. Per record of target class c: start from a uniformly random image; each step,
    query the target; if p(c) did not drop, keep the record as the best one and accept it when
    p(c) > ``min_confidence``, c is the arg-max and a uniform draw falls below p(c); after more than
    ``max_rejections`` drops in a row halve the number k of pixels re-drawn (k starts at half the
    pixels); re-draw k random pixels of the best record uniformly. A record not accepted within
    ``max_iterations`` steps restarts from a new random image, up to ``max_retries`` times; ART would
    then raise for the whole data set, here the record is counted as failed and left out.

    Returns ``(x, y, failures)``: images N×C×H×W in [0, 1], labels, failed records per class."""
    check_model(target, "target")
    check_positive(n_per_class, "n_per_class", integer=True)
    check_fraction(min_confidence, "min_confidence", open_interval=False)
    dev = next(target.parameters()).device
    g = torch.Generator(device=dev).manual_seed(int(seed))
    k_cls, shape = target.num_classes, tuple(target.input_shape)
    d = int(np.prod(shape))
    y = torch.arange(k_cls, device=dev).repeat_interleave(int(n_per_class))
    n = len(y)

    def rand(*size):
        return torch.rand(*size, generator=g, device=dev)

    x = rand(n, d)
    best_x, best_conf = x.clone(), torch.zeros(n, device=dev)
    k = torch.full((n,), d // 2, device=dev, dtype=torch.long)
    rejections = torch.zeros(n, device=dev, dtype=torch.long)
    steps = torch.zeros(n, device=dev, dtype=torch.long)
    tries = torch.zeros(n, device=dev, dtype=torch.long)
    accepted = torch.zeros(n, device=dev, dtype=torch.bool)
    failed = torch.zeros(n, device=dev, dtype=torch.bool)
    target.eval()
    while True:
        active = ~(accepted | failed)
        if not bool(active.any()):
            break
        p = target(x.reshape(n, *shape)).softmax(1)
        conf = p.gather(1, y[:, None])[:, 0]
        better = active & (conf >= best_conf)
        accept = better & (conf > min_confidence) & (p.argmax(1) == y) & (rand(n) < conf)
        accepted |= accept
        keep = better & ~accept
        best_x[keep], best_conf[keep], rejections[keep] = x[keep], conf[keep], 0
        worse = active & ~better
        rejections[worse] += 1
        shrink = worse & (rejections > max_rejections)
        k[shrink] = torch.clamp((k[shrink] + 1) // 2, min=1)
        rejections[shrink] = 0
        steps[active] += 1
        # a record out of steps restarts from a new random image, or fails after max_retries tries
        out = active & ~accept & (steps >= max_iterations)
        tries[out] += 1
        failed |= out & (tries >= max_retries)
        restart = out & ~failed
        if bool(restart.any()):
            fresh = rand(n, d)
            best_x[restart], x[restart] = fresh[restart], fresh[restart]
            best_conf[restart], k[restart], rejections[restart], steps[restart] = 0.0, d // 2, 0, 0
        # next candidate: k random pixels of the best record re-drawn (records just accepted keep x)
        go = ~(accepted | failed) & ~restart
        noise = rand(n, d)
        kth = noise.sort(1).values.gather(1, (k - 1).clamp(min=0)[:, None])
        mask = (noise <= kth) & go[:, None]
        x = torch.where(go[:, None], best_x, x)
        x = torch.where(mask, rand(n, d), x)
    failures = torch.bincount(y[failed], minlength=k_cls).cpu().numpy()
    return x[accepted].reshape(-1, *shape).cpu(), y[accepted].cpu(), failures


@cached("drift-synthetic-records")
def cached_synthetic_records(target: PaperCNN, n_per_class: int, *, seed: int = 0, **kw):
    """:func:`synthetic_shadow_records` through the checkpoint cache (keyed by the target's
    :func:`fingerprint`, the settings and the seed): the same records either way."""
    return synthetic_shadow_records(target, n_per_class, seed=seed, **kw)


class MembershipAttacks:
    """ART's membership inference against one target (the base model):

    * **rule-based** (``MembershipInferenceBlackBoxRuleBased``): "member" iff the target classifies
      the record as its label — on gray data, the target's accuracy on the other model's intended
      classes;
    * **black-box** (``MembershipInferenceBlackBox``, ART's default attack model: a neural network on
      the probability vector and the label), trained on ``ShadowModels`` — copies of the target's
      architecture trained by ART on half of the shadow data (members) and not on the other half.
      ``shadow="synthetic"`` (our reading of the slides' shadow models) synthesises the shadow data from the target with
      :func:`synthetic_shadow_records`; ``shadow="real"`` (ours) uses ``attack_data`` (real images
      disjoint from the target's training data)."""

    def __init__(self, target: PaperCNN, attack_data: TensorData | None = None, *, shadow: str | None = None,
                 n_shadow: int = 3, shadow_epochs: int = 5, attack_model: str = "nn", n_synthetic_per_class: int = 20,
                 synthetic_min_confidence: float = 0.4, synthetic_max_iterations: int = 40, seed: int = 0):
        from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased
        self.target = check_model(target, "target")
        self.num_classes = target.num_classes
        self.estimator = art_classifier(target, probabilities=True)
        self.rule_based = MembershipInferenceBlackBoxRuleBased(self.estimator)
        self._black_box, self._fit_args, self._key = None, None, None
        self.shadow, self.shadow_info, self.seed = shadow, {}, seed
        if shadow is None and attack_data is not None:
            self.shadow = shadow = "real"
        if shadow is not None:
            check_choice(shadow, "shadow", SHADOW_DATA)
            check_positive(n_shadow, "n_shadow", integer=True)
            check_positive(shadow_epochs, "shadow_epochs", integer=True)
            if shadow == "real":
                if attack_data is None:
                    raise InputError("shadow='real' needs attack_data= (real images, disjoint from the target's "
                                     "training data, with all classes)")
                x = check_images(attack_data.x, "attack_data.x", expected_shape=target.input_shape)
                y = check_labels(attack_data.y, "attack_data.y", n=len(x), num_classes=self.num_classes)
                if len(np.unique(y.numpy())) != self.num_classes:
                    raise InputError(f"attack_data must hold all {self.num_classes} classes (has "
                                     f"{len(np.unique(y.numpy()))}): ART one-hot encodes labels from the labels present")
            else:
                x, y, fail = cached_synthetic_records(target, n_synthetic_per_class, seed=seed,
                                                      min_confidence=synthetic_min_confidence,
                                                      max_iterations=synthetic_max_iterations)
                self.shadow_info["synthesis_failures_per_class"] = fail.tolist()
                self.shadow_info["n_synthesised"] = len(x)
                if len(x) < 4:
                    raise ShadowSynthesisError(f"ART's hill climbing synthesised only {len(x)} shadow records from "
                                               f"random examples (failures per class {fail.tolist()}); raise "
                                               "synthetic_max_iterations or use shadow='real'", len(x), fail.tolist())
            self._shadow_dataset(x, y, int(n_shadow), int(shadow_epochs), attack_model, seed)

    def _shadow_dataset(self, x, y, n_shadow, shadow_epochs, attack_model, seed):
        """ART's shadow models trained on the shadow records (cached: their members' and
        non-members' records and predictions); the attack model is fitted on them when first used."""
        from art.attacks.inference.membership_inference import ShadowModels
        from art.estimators.classification import PyTorchClassifier
        set_seed(seed)
        cfg = CNNConfig(**{k: v for k, v in self.target.config.to_dict().items() if k != "widths"},
                        widths=tuple(self.target.config.widths))
        template_net = PaperCNN(cfg)

        class _Shadow(PyTorchClassifier):      # ART's ShadowModels calls fit(x, y) with nb_epochs=10
            def fit(self, x, y, batch_size=128, nb_epochs=shadow_epochs, **kw):
                return super().fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, **kw)

        dev = "gpu" if get_device().type == "cuda" else "cpu"
        template = _Shadow(template_net, nn.CrossEntropyLoss(), tuple(self.target.input_shape), self.num_classes,
                           optimizer=torch.optim.Adam(template_net.parameters(), lr=1e-3),
                           clip_values=(0.0, 1.0), device_type=dev)
        onehot = np.eye(self.num_classes, dtype=np.float32)[y.numpy()]     # all classes, present or not

        def shadow_dataset():                  # ART trains the shadow models; their outputs are cached
            shadows = ShadowModels(template, num_shadow_models=n_shadow, random_state=seed)
            (mx, my, mpred), (nx, ny, npred) = shadows.generate_shadow_dataset(x.numpy().astype(np.float32), onehot,
                                                                                member_ratio=0.5)
            return {"mx": torch.as_tensor(mx), "my": torch.as_tensor(my), "nx": torch.as_tensor(nx),
                    "ny": torch.as_tensor(ny),
                    "mprob": torch.as_tensor(mpred).float().softmax(1),      # shadow CNNs output logits
                    "nprob": torch.as_tensor(npred).float().softmax(1)}

        key = {"target": fingerprint(self.target), "records": fingerprint((x, y)), "n_shadow": n_shadow,
               "shadow_epochs": shadow_epochs, "seed": int(seed), "device": get_device().type, "version": 1}
        d = load_or_compute("drift-shadow-dataset", key, shadow_dataset)
        self._fit_args = (d, attack_model, seed)
        self._key = {**key, "attack_model": attack_model}
        self.shadow_info.update({"n_shadow": n_shadow, "shadow_epochs": shadow_epochs, "n_records": len(x),
                                 "n_members": len(d["mx"]), "n_nonmembers": len(d["nx"]), "attack_model": attack_model})

    @property
    def has_black_box(self) -> bool:
        """Whether a black-box attack was set up (shadow data given or synthesised)."""
        return self._fit_args is not None

    @property
    def black_box(self):
        """ART's ``MembershipInferenceBlackBox`` fitted on the shadow dataset (None without one):
        fitted on first use, seeded and on its own random stream."""
        if self._black_box is None and self._fit_args is not None:
            from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
            d, attack_model, seed = self._fit_args
            mx, my, nx, ny, mprob, nprob = (d[k].numpy() for k in ("mx", "my", "nx", "ny", "mprob", "nprob"))
            bb = MembershipInferenceBlackBox(self.estimator, input_type="prediction", attack_model_type=attack_model)
            if hasattr(bb.attack_model, "random_state"):     # ART builds sklearn models unseeded
                bb.attack_model.set_params(random_state=seed)
            with rng_isolated():
                set_seed(seed)
                bb.fit(x=mx, y=my, test_x=nx, test_y=ny, pred=mprob, test_pred=nprob)   # one-hot: all classes
            self._black_box = bb
        return self._black_box

    def infer(self, x, y, which: str = "rule") -> np.ndarray:
        """1 = member, 0 = non-member, per record (``which`` = ``"rule"`` or ``"black"``)."""
        check_choice(which, "which", ("rule", "black"))
        x = check_images(x, "x", expected_shape=self.target.input_shape)
        y = check_labels(y, "y", n=len(x), num_classes=self.num_classes)
        if which == "black" and self._fit_args is None:
            raise InputError("no black-box attack: build MembershipAttacks with shadow='synthetic' or attack_data=")
        xn, yn = x.numpy().astype(np.float32), np.eye(self.num_classes, dtype=np.float32)[y.numpy()]

        def compute():
            att = self.rule_based if which == "rule" else self.black_box
            return {"member": torch.as_tensor(np.asarray(att.infer(xn, yn)).ravel().astype(np.int64))}

        # the verdicts are cached: by the target (rule-based) or the attack's shadow dataset (black-box)
        key = {"attack": which, "of": fingerprint(self.target) if which == "rule" else self._key,
               "x": fingerprint(x), "y": fingerprint(y), "version": 1}
        return load_or_compute("drift-membership", key, compute)["member"].numpy().astype(int)

    def score(self, gray: GrayData, which: str = "rule") -> tuple[float, np.ndarray]:
        """The drift score: the share of gray records called "member", overall and per intended class
        (NaN for a class without records)."""
        m = self.infer(gray.x, gray.y, which)
        y = gray.y.numpy()
        per_class = np.array([m[y == c].mean() if (y == c).any() else np.nan for c in range(self.num_classes)])
        return float(m.mean()), per_class

    def member_rates(self, members: TensorData, nonmembers: TensorData, which: str = "rule",
                     n: int | None = None, seed: int = 0) -> tuple[float, float]:
        """The attack on real data: member rate on the target's own training images and on unseen
        images of the same distribution. Equal rates = the attack cannot tell them apart."""
        m, o = members.subset(n, seed), nonmembers.subset(n, seed)
        return float(self.infer(m.x, m.y, which).mean()), float(self.infer(o.x, o.y, which).mean())


# --------------------------------------------------------------------------- step 7: the decision

DECISION_RULES = ("beta-binomial", "t-interval")


@dataclass
class DriftDecision:
    """Step 7's verdict for one attack, with its uncertainty, and the classes it flags."""
    drift: bool
    score: float                 # production drift score
    reference: float             # mean no-drift control score (or the base gray score: the slides' rule)
    spread: float                # standard deviation of the control scores (0 with < 2 controls)
    n_controls: int              # 0 = the slides' rule (base gray data as the reference)
    threshold: float             # the slides' rule and "t-interval": the model-level test fires iff score < threshold
    p_value: float               # smallest corrected p-value of a test whose drop exceeds the margin (1: none); drift iff < α
    flagged_classes: tuple = ()  # classes whose test fires: corrected p-value < α and drop > margin
    class_p_values: tuple = ()   # per class: the p-value against the class's own controls (NaN: no test)
    class_p_corrected: tuple = ()  # ... corrected in the family (Holm over the model and the K classes)
    model_p_value: float = float("nan")   # the model-level test's own p-value, uncorrected
    rule: str = "beta-binomial"

    def to_dict(self) -> dict:
        return asdict(self)


def family_test(counts, control_counts, records: int, *, margin: float = 0.1, correction: str = "holm"):
    """Step 7's beta-binomial family, vectorised: ``counts`` (..., K) gray records per class called
    member of ``records`` per class, ``control_counts`` (..., n, K) the same for n no-drift controls.
    Returns ``(p_class, p_model, adjusted, beyond)``: the p-values of
    :func:`ccc_lib.metrics.betabinom_p_values` (per class, and for the model-level count, the sum), and
    for the family [model, class 0, …, class K-1] the Holm-corrected p-values and whether each drop
    below the controls' mean share exceeds ``margin``. A test fires iff ``adjusted < α`` and ``beyond``;
    the margin only removes alarms, so the family-wise false-alarm rate is at most that of the
    p-values (chapter 4 simulates it)."""
    k0, kc = np.asarray(counts), np.asarray(control_counts)
    p_class, p_model = betabinom_p_values(k0, kc, records)
    share, ctrl = k0 / records, kc / records
    drops = np.concatenate([(ctrl.mean((-2, -1)) - share.mean(-1))[..., None], ctrl.mean(-2) - share], -1)
    adjusted = holm(np.concatenate([p_model[..., None], p_class], -1), correction)
    return p_class, p_model, adjusted, drops > margin + 1e-9


def _counts(shares, records: int, what: str) -> np.ndarray:
    k = np.asarray(shares, float) * records
    if np.abs(k - np.round(k)).max(initial=0) > 1e-6:
        raise InputError(f"{what} × records is not a whole number of records (records={records}): pass records= "
                         "the number of gray records per class the scores were computed on")
    return np.round(k).astype(np.int64)


def drift_decision(score: float, control_scores, *, margin: float = 0.1, alpha: float = 0.05, per_class=None,
                   control_per_class=None, records: int | None = None, correction: str = "holm",
                   rule: str = "beta-binomial") -> DriftDecision:
    """Step 7, "production drift score ≪ base drift score", made a test of the model *and* of each class.

    ``control_scores`` are the drift scores of n no-drift production models (ours: each trained on
    its own production portion of the base data's distribution) — or one number, the base gray
    data's score (the slides' rule, n = 0): with fewer than 2 controls there is no spread, drift iff
    ``score < reference - margin``, no p-value (NaN) and no class test.

    **The family (``rule="beta-binomial"``, the decision).** A score is a share of gray records
    (``records`` per class) called member. Each class's count and the model-level count (their sum)
    are judged against the controls' counts by :func:`family_test` (the beta-binomial predictive
    p-values of :func:`ccc_lib.metrics.betabinom_p_values`), K + 1 tests corrected together (Holm, or
    Bonferroni). A test fires when its corrected p-value is < α **and** its share lies more than
    ``margin`` below the controls' mean: ``margin`` (ours, our reading of "≪") is the smallest drop
    called drift — no drop of at most the margin is, however significant. Drift iff a test fires;
    ``p_value`` is the smallest corrected p-value among the tests whose drop exceeds the margin (1.0
    if none), so drift iff ``p_value < α``. A drift confined to one class (which moves the model-level
    score by at most 1/K of its range) is seen by its class test. The family-wise false-alarm rate is
    ≤ α under beta-binomial shares as far as chapter 4's simulation shows (base rates 0.5-0.95,
    over-dispersion 0-0.3, 20 records per class, 10 controls); it is no theorem. Without
    ``per_class`` the model-level score alone is tested (``records`` then counts all its records).

    **The previous rule (``rule="t-interval"``, kept to compare).** Each score against the controls'
    Student-t prediction interval on the share scale (:func:`ccc_lib.metrics.prediction_interval_p`,
    σ floored at ``margin / t_{1-α, n-1}``), K + 1 p-values Holm-corrected, drift iff one is < α. Its
    family-wise false-alarm rate exceeds α under beta-binomial shares of 20 records (chapter 4), and
    with controls that agree exactly it is a fixed threshold (a drop of about 1.9 × ``margin`` for
    K = 10), not the margin."""
    check_fraction(score, "score", open_interval=False)
    check_positive(margin, "margin", allow_zero=True)
    check_fraction(alpha, "alpha")
    check_choice(correction, "correction", ("holm", "bonferroni"))
    check_choice(rule, "rule", DECISION_RULES)
    ctrl = np.atleast_1d(np.asarray(control_scores, float))
    if ctrl.ndim != 1 or ctrl.size == 0 or not np.isfinite(ctrl).all() or (ctrl < 0).any() or (ctrl > 1).any():
        raise InputError(f"control_scores must be one or more drift scores in [0, 1], got {control_scores!r}")
    n = 0 if np.ndim(control_scores) == 0 else len(ctrl)
    pc, cpc = check_class_scores(per_class, control_per_class, n)
    m, s = float(ctrl.mean()), float(ctrl.std(ddof=1)) if n >= 2 else 0.0
    nan_k = tuple(float("nan") for _ in range(0 if pc is None else len(pc)))
    if n < 2:
        return DriftDecision(bool(score < m - margin), float(score), m, 0.0, n, float(m - margin), float("nan"), (),
                             nan_k, nan_k, float("nan"), rule)
    if rule == "t-interval":
        _, _, half, p_model = prediction_interval_p(score, ctrl, margin, alpha)
        raw = raw_class_p(pc, cpc, margin, alpha) if pc is not None else np.empty(0)
        adj = holm(np.r_[p_model, raw], correction)
        fires, threshold = np.nan_to_num(adj, nan=1.0) < alpha, m - max(margin, half)
    else:
        if records is None:
            raise InputError("rule='beta-binomial' needs records= (the gray records per class behind the shares), "
                             "or rule='t-interval'")
        check_positive(records, "records", integer=True)
        k = len(nan_k)
        raw, adj, beyond = np.full(k, np.nan), np.full(k + 1, np.nan), np.zeros(k + 1, bool)
        ok = (np.isfinite(pc) & np.isfinite(cpc).all(0)) if pc is not None else np.zeros(0, bool)
        if ok.any():             # the model-level count is the sum over the classes tested
            p_cls, p_model, a, b = family_test(_counts(pc[ok], records, "per_class"),
                                               _counts(cpc[:, ok], records, "control_per_class"), records,
                                               margin=margin, correction=correction)
            raw[ok], idx = p_cls, np.r_[0, 1 + np.flatnonzero(ok)]
            adj[idx], beyond[idx] = a, b
        else:                    # the model-level score alone (``records``: all its records), one test
            p_model = betabinom_p_values(_counts([score], records, "score"),
                                         _counts(ctrl[:, None], records, "control_scores"), records)[0][0]
            adj[0], beyond[0] = p_model, m - score > margin + 1e-9
        fires, threshold, p_model = (np.nan_to_num(adj, nan=1.0) < alpha) & beyond, float("nan"), float(p_model)
    # the decision's p-value: the smallest corrected one among the tests allowed to fire
    allowed = np.isfinite(adj) & (beyond if rule == "beta-binomial" else True)
    p = float(np.min(np.where(allowed, adj, 1.0), initial=1.0))
    flagged = tuple(int(c) for c in np.flatnonzero(fires[1:]))
    return DriftDecision(bool(fires.any()), float(score), m, s, n, float(threshold), p, flagged,
                         tuple(float(v) for v in raw), tuple(float(v) for v in adj[1:]), float(p_model), rule)


@dataclass
class DriftReport:
    """What :func:`detect_drift` returns: per attack, the base and production drift scores, the
    production score per class and the decision."""
    method: str
    base_score: dict
    production_score: dict
    per_class: dict
    decision: dict               # attack -> DriftDecision
    gray_base: GrayData | None = None
    gray_production: GrayData | None = None

    @property
    def drift(self) -> bool:
        """The rule-based attack's verdict (the one the chapter validates)."""
        return bool(self.decision["rule"].drift)

    def to_dict(self) -> dict:
        return {"method": self.method, "base_score": self.base_score, "production_score": self.production_score,
                "per_class": {k: [float(v) for v in a] for k, a in self.per_class.items()},
                "decision": {k: d.to_dict() for k, d in self.decision.items()}}

    def __repr__(self):
        d = {k: (v.drift, round(v.p_value, 4) if v.p_value == v.p_value else None) for k, v in self.decision.items()}
        return (f"DriftReport({self.method}: base {self.base_score}, production {self.production_score}, "
                f"(drift, p) {d}, flagged {self.decision['rule'].flagged_classes})")


def detect_drift(base_model: PaperCNN, production_model: PaperCNN, *, controls=(), method: str = "adam",
                 n_per_class: int = 10, attacks: MembershipAttacks | None = None,
                 attack_data: TensorData | None = None, margin: float = 0.1, alpha: float = 0.05,
                 correction: str = "holm", rule: str = "beta-binomial", gray_settings: dict | None = None,
                 seed: int = 0, dataset: str | None = None, profile=None) -> DriftReport:
    """Steps 3-7 for trained models: gray data of the base model, of the production model and of
    each no-drift ``controls`` model (production models each trained on its own draw from the base
    data's distribution) by ``method``; membership inference against the base model (rule-based; black-box
    too when ``attacks`` has one or ``attack_data`` is given); :func:`drift_decision` with the
    controls' scores as reference. Without controls the reference is the base gray data's score —
    the slides' rule, which has no measure of its uncertainty (``p_value`` NaN) and flags no class
    (a class test needs ≥ 2 controls). ``rule``: :func:`drift_decision`'s."""
    check_model(base_model, "base_model")
    check_model(production_model, "production_model")
    controls = list(controls)
    for i, c in enumerate(controls):
        check_model(c, f"controls[{i}]")
    for name, m in [("production_model", production_model)] + [(f"controls[{i}]", c) for i, c in enumerate(controls)]:
        if tuple(m.input_shape) != tuple(base_model.input_shape) or m.num_classes != base_model.num_classes:
            raise InputError(f"{name}: input shape {tuple(m.input_shape)} / {m.num_classes} classes, but the base "
                             f"model has {tuple(base_model.input_shape)} / {base_model.num_classes}; drift is "
                             "measured between models of the same task")
    check_choice(method, "method", GRAY_METHODS)
    check_positive(n_per_class, "n_per_class", integer=True)
    check_choice(correction, "correction", ("holm", "bonferroni"))
    check_choice(rule, "rule", DECISION_RULES)
    if attacks is None:
        attacks = MembershipAttacks(base_model, attack_data, seed=seed)
    elif attacks.target is not base_model:
        raise InputError("attacks must be built against base_model (MembershipAttacks(base_model, ...))")
    which = ("rule", "black") if attacks.has_black_box else ("rule",)
    kw = dict(dataset=dataset, profile=profile)
    gb = gray_data(base_model, method, n_per_class, gray_settings, seed=seed, tag="base", **kw)
    gp = gray_data(production_model, method, n_per_class, gray_settings, seed=seed + 1, tag="production", **kw)
    gc = [gray_data(c, method, n_per_class, gray_settings, seed=seed + 2 + i, tag=f"control{i}", **kw)
          for i, c in enumerate(controls)]
    bs, ps, pcs, dec = {}, {}, {}, {}
    for w in which:
        bs[w], _ = attacks.score(gb, w)
        ps[w], pcs[w] = attacks.score(gp, w)
        cs = [attacks.score(g, w) for g in gc]
        ref = [s for s, _ in cs] if cs else bs[w]
        dec[w] = drift_decision(ps[w], ref, margin=margin, alpha=alpha, per_class=pcs[w],
                                control_per_class=[p for _, p in cs] if cs else None, records=n_per_class,
                                correction=correction, rule=rule)
    return DriftReport(method, bs, ps, pcs, dec, gb, gp)
