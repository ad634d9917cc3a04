"""The plumbing of chapter 4's method (:mod:`ccc_lib.drift`) around IBM's Adversarial Robustness
Toolbox (ART): the model check, ART's classifier wrapper, the shadow data "created by feeding random
examples [to] the model" (our reading of the slides: ART's hill climbing, batched), ART's shadow models
and the black-box attack model fitted on them. :mod:`ccc_lib.drift` holds the seven steps."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .cache import cached, fingerprint, load_or_compute
from .checks import InputError, check_fraction, check_images, check_labels, check_positive
from .models import CNNConfig, PaperCNN
from .utils import get_device, rng_isolated, set_seed

__all__ = ["ShadowSynthesisError", "check_model", "art_classifier", "synthetic_shadow_records",
           "cached_synthetic_records", "shadow_records", "shadow_dataset", "fit_black_box"]


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


def shadow_records(target: PaperCNN, shadow: str, attack_data=None, n_per_class: int = 20, *, seed: int = 0,
                   min_confidence: float = 0.4, max_iterations: int = 40) -> tuple:
    """The black-box attack's shadow records: ``shadow="real"`` — ``attack_data``'s images (real, disjoint
    from the target's training data, every class present: ART one-hot encodes the labels present);
    ``"synthetic"`` — :func:`cached_synthetic_records` (:class:`ShadowSynthesisError` below 4 records).
    Returns ``(x, y, info)``."""
    if shadow == "real":
        if attack_data is None:
            raise InputError("shadow='real' needs attack_data= (real images, disjoint from the target's "
                             "training data, with all classes)")
        x = check_images(attack_data.x, "attack_data.x", expected_shape=target.input_shape)
        y = check_labels(attack_data.y, "attack_data.y", n=len(x), num_classes=target.num_classes)
        if len(np.unique(y.numpy())) != target.num_classes:
            raise InputError(f"attack_data must hold all {target.num_classes} classes (has "
                             f"{len(np.unique(y.numpy()))}): ART one-hot encodes labels from the labels present")
        return x, y, {}
    x, y, fail = cached_synthetic_records(target, n_per_class, seed=seed, min_confidence=min_confidence,
                                          max_iterations=max_iterations)
    if len(x) < 4:
        raise ShadowSynthesisError(f"ART's hill climbing synthesised only {len(x)} shadow records from random "
                                   f"examples (failures per class {fail.tolist()}); raise synthetic_max_iterations "
                                   "or use shadow='real'", len(x), fail.tolist())
    return x, y, {"synthesis_failures_per_class": fail.tolist(), "n_synthesised": len(x)}


def shadow_dataset(target: PaperCNN, x: torch.Tensor, y: torch.Tensor, n_shadow: int, shadow_epochs: int,
                   seed: int = 0) -> tuple[dict, dict]:
    """ART's ``ShadowModels``: ``n_shadow`` copies of the target's architecture, each trained by ART for
    ``shadow_epochs`` on half of the shadow records (members) and not on the other half; their members'
    and non-members' records, labels and probabilities, cached under the target, the records and the
    settings. Returns ``(dataset, key)``."""
    from art.attacks.inference.membership_inference import ShadowModels
    from art.estimators.classification import PyTorchClassifier
    set_seed(seed)
    cfg = CNNConfig(**{k: v for k, v in target.config.to_dict().items() if k != "widths"},
                    widths=tuple(target.config.widths))
    template_net = PaperCNN(cfg)

    class _Shadow(PyTorchClassifier):      # ART's ShadowModels calls fit(x, y) with nb_epochs=10
        def fit(self, x, y, batch_size=128, nb_epochs=shadow_epochs, **kw):
            return super().fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, **kw)

    dev = "gpu" if get_device().type == "cuda" else "cpu"
    template = _Shadow(template_net, nn.CrossEntropyLoss(), tuple(target.input_shape), target.num_classes,
                       optimizer=torch.optim.Adam(template_net.parameters(), lr=1e-3),
                       clip_values=(0.0, 1.0), device_type=dev)
    onehot = np.eye(target.num_classes, dtype=np.float32)[y.numpy()]     # all classes, present or not

    def compute():                         # ART trains the shadow models; their outputs are cached
        shadows = ShadowModels(template, num_shadow_models=n_shadow, random_state=seed)
        (mx, my, mpred), (nx, ny, npred) = shadows.generate_shadow_dataset(x.numpy().astype(np.float32), onehot,
                                                                            member_ratio=0.5)
        return {"mx": torch.as_tensor(mx), "my": torch.as_tensor(my), "nx": torch.as_tensor(nx),
                "ny": torch.as_tensor(ny),
                "mprob": torch.as_tensor(mpred).float().softmax(1),      # shadow CNNs output logits
                "nprob": torch.as_tensor(npred).float().softmax(1)}

    key = {"target": fingerprint(target), "records": fingerprint((x, y)), "n_shadow": n_shadow,
           "shadow_epochs": shadow_epochs, "seed": int(seed), "device": get_device().type, "version": 1}
    return load_or_compute("drift-shadow-dataset", key, compute), key


def fit_black_box(estimator, d: dict, attack_model: str, seed: int = 0):
    """ART's ``MembershipInferenceBlackBox`` (attack model ``attack_model``) on the target's ART
    ``estimator``, fitted on a :func:`shadow_dataset` — seeded and on its own random stream."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    mx, my, nx, ny, mprob, nprob = (d[k].numpy() for k in ("mx", "my", "nx", "ny", "mprob", "nprob"))
    bb = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type=attack_model)
    if hasattr(bb.attack_model, "random_state"):     # ART builds sklearn models unseeded
        bb.attack_model.set_params(random_state=seed)
    with rng_isolated():
        set_seed(seed)
        bb.fit(x=mx, y=my, test_x=nx, test_y=ny, pred=mprob, test_pred=nprob)   # one-hot: all classes
    return bb
