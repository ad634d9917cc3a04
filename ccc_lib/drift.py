"""Chapter 4: model drift detection with *gray data* (model inversion) and membership inference.

The slides' seven steps, each a visible function:

1-2. :func:`make_splits` cuts a training set into a *base* and a *production* portion;
     :func:`apply_drift` puts a controllable concept drift on the production portion (``kind`` =
     ``"none"``, ``"swap"`` — labels of paired classes exchanged —, ``"rotate"`` — images of some
     classes turned by 90° —, ``severity`` = the share of the affected classes' images that drift);
     :func:`train_model` trains the papers' CNN on a portion through the core's cached
     ``get_classifier``.
3-4. :func:`gray_data` inverts a model: ``"miface"`` (ART's ``MIFace`` from a grey start, the slides'
     method), ``"adam"`` (plain Adam on the pixels from a grey start with a little noise) or
     ``"generator"`` (chapter 1's conditioned generator, counterfeit mode, through
     :mod:`ccc_lib.counterfeits`).
5-6. :class:`MembershipAttacks` runs ART's ``MembershipInferenceBlackBoxRuleBased`` and
     ``MembershipInferenceBlackBox`` (attack model trained on ``ShadowModels``) against the base
     model; :meth:`MembershipAttacks.score` gives the share of gray samples called "member" (overall
     and per class); :meth:`MembershipAttacks.real_member_check` is the sanity check on real
     members vs non-members.
7.   :func:`drift_decision`: drift when the production score is below a *no-drift reference* by more
     than ``margin``; a class is flagged when its score is at most ``class_threshold``.

:func:`detect_drift` is the one call for use outside the notebook: two models (+ attack data) in,
a :class:`DriftReport` out. :func:`input_drift_test` is the standard comparison (MMD permutation
test and Bonferroni-corrected KS tests on the base model's penultimate features).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import TensorData
from .models import CNNConfig, PaperCNN
from .profiles import Profile, chapter_settings, get_profile
from .train import get_classifier, predict_logits
from .utils import cpu_threads, get_device, set_seed

__all__ = ["SETTINGS", "settings", "DRIFT_KINDS", "GRAY_METHODS", "make_splits", "apply_drift", "model_tag", "portions", "get_model", "per_dataset",
           "affected_classes", "train_model", "gray_data", "gray_miface", "gray_adam", "gray_generator",
           "art_classifier", "MembershipAttacks", "cached_gray_data", "production_models", "score_productions", "add_decisions", "drift_decision", "DriftReport", "detect_drift",
           "mmd_test", "ks_test", "input_drift_test", "generator_available"]

DRIFT_KINDS = ("none", "swap", "rotate")
GRAY_METHODS = ("miface", "adam", "generator")

# --------------------------------------------------------------------------- settings

_COMMON = {
    "gray_methods": ("miface", "adam", "generator"),
    "miface_max_iter": 100, "miface_lr": 1.0, "miface_window": 50, "miface_threshold": 0.99,
    "adam_steps": 100, "adam_lr": 0.05, "adam_noise": 0.05,
    "margin": 0.10,            # drift when score < reference - margin
    "class_threshold": 0.5,    # a class is flagged when its score is at most this
    "attack_model": "rf",      # the black-box attack's model (ART attack_model_type)
    "n_shadow": 3,             # ART ShadowModels
    "shadow_epochs": 5,
    "mmd_permutations": 200, "n_input_test": 300, "alpha": 0.05,
    "generator_overrides": {},
}

SETTINGS = {
    "smoke": {**_COMMON,
              "datasets": ("mnist5k",),
              "n_base": {"*": 600}, "n_prod": {"*": 600}, "n_attack": 300, "epochs": {"*": 3},
              "control_seeds_per_dataset": {"*": (1, 2)}, "drifts": (("swap", 1.0), ("rotate", 1.0)),
              "sweep_dataset": "mnist5k", "sweep_kinds": (), "sweep_severities": (), "sweep_methods": ("adam",),
              "n_per_class": 4, "miface_max_iter": 30, "adam_steps": 40, "n_shadow": 2, "shadow_epochs": 2,
              "mmd_permutations": 50, "n_input_test": 100,
              "generator_overrides": {"steps": 60}},
    "default": {**_COMMON,
                "datasets": ("mnist5k", "fashion_mnist"),
                "control_seeds_per_dataset": {"mnist5k": (1, 2, 3), "fashion_mnist": (1, 2)},
                "n_base": {"mnist5k": 2000, "fashion_mnist": 3000}, "n_prod": {"mnist5k": 2000, "fashion_mnist": 3000},
                "n_attack": 1000, "epochs": {"mnist5k": 8, "fashion_mnist": 6},
                "drifts": (("swap", 1.0), ("rotate", 1.0)),
                "sweep_dataset": "mnist5k", "sweep_kinds": ("swap", "rotate"), "sweep_severities": (0.25, 0.5),
                "sweep_methods": ("generator", "adam"),
                "n_per_class": 20, "adam_steps": 60, "generator_overrides": {"steps": 200, "batch_size": 60}},
    "full": {**_COMMON,
             "datasets": ("cifar10", "emnist"),
             "n_base": {"*": 20000}, "n_prod": {"*": 20000}, "n_attack": 5000, "epochs": {"cifar10": 30, "*": 10},
             "control_seeds_per_dataset": {"*": (1, 2, 3, 4, 5, 6)}, "drifts": (("swap", 1.0), ("rotate", 1.0)),
             "sweep_dataset": "cifar10", "sweep_kinds": ("swap", "rotate"), "sweep_severities": (0.25, 0.5, 0.75),
             "sweep_methods": ("generator", "adam", "miface"),
             "n_per_class": 50, "miface_max_iter": 1000, "adam_steps": 500, "n_shadow": 3, "shadow_epochs": 10,
             "mmd_permutations": 500, "n_input_test": 1000},
}


def settings(profile: str | Profile | None = None, **overrides) -> dict:
    return chapter_settings(SETTINGS, profile, **overrides)


def per_dataset(value, dataset: str):
    """Settings given per dataset (``{"mnist5k": 2000, "*": 600}``) or as one value."""
    if isinstance(value, dict):
        return value.get(dataset, value.get("*"))
    return value


# --------------------------------------------------------------------------- steps 1-2: portions, drift, models

def make_splits(train: TensorData, n_base: int, n_prod: int, seed: int = 0) -> tuple[TensorData, TensorData]:
    """Disjoint, class-stratified base and production portions of a training set."""
    if n_base + n_prod > len(train):
        raise ValueError(f"{train.name}: base {n_base} + production {n_prod} > {len(train)} training images")
    from sklearn.model_selection import train_test_split
    y = train.y.numpy()
    idx = np.arange(len(y))
    if n_base + n_prod < len(y):
        idx, _ = train_test_split(idx, train_size=n_base + n_prod, stratify=y, random_state=seed)
    ib, ip = train_test_split(idx, train_size=n_base, test_size=n_prod, stratify=y[idx], random_state=seed + 1)
    ib, ip = torch.as_tensor(np.sort(ib)), torch.as_tensor(np.sort(ip))
    return (TensorData(train.x[ib], train.y[ib], train.classes, train.name, "base"),
            TensorData(train.x[ip], train.y[ip], train.classes, train.name, "production"))


def affected_classes(kind: str, num_classes: int = 10) -> tuple[int, ...]:
    """The classes a drift of ``kind`` changes: ``swap`` exchanges 3↔5 (the issue's trial; for other
    class counts the 4th and 6th class), ``rotate`` turns the first half of the classes by 90°."""
    if kind == "none":
        return ()
    if kind == "swap":
        return (3, 5) if num_classes > 5 else (0, 1)
    if kind == "rotate":
        return tuple(range(max(1, num_classes // 2)))
    raise ValueError(f"unknown drift kind {kind!r}; valid: {DRIFT_KINDS}")


def apply_drift(data: TensorData, kind: str = "none", severity: float = 1.0, seed: int = 0) -> TensorData:
    """The production portion with a concept drift of ``kind`` on :func:`affected_classes`;
    ``severity`` ∈ [0, 1] is the share of those classes' images that drift (seeded choice)."""
    if kind not in DRIFT_KINDS:
        raise ValueError(f"unknown drift kind {kind!r}; valid: {DRIFT_KINDS}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    x, y = data.x.clone(), data.y.clone()
    classes = affected_classes(kind, data.num_classes)
    rng = np.random.default_rng(seed)
    for c in classes:
        idx = np.flatnonzero(data.y.numpy() == c)
        k = int(round(severity * len(idx)))
        pick = torch.as_tensor(np.sort(rng.choice(idx, size=k, replace=False)), dtype=torch.long)
        if len(pick) == 0:
            continue
        if kind == "swap":
            a, b = classes
            y[pick] = b if c == a else a
        elif kind == "rotate":
            x[pick] = torch.rot90(data.x[pick], 1, dims=(2, 3))
    tag = "none" if kind == "none" else f"{kind}{severity:g}"
    return TensorData(x, y, data.classes, data.name, f"production-{tag}")


def train_model(dataset: str, data: TensorData, profile, *, tag: str, seed: int = 0, epochs: int | None = None):
    """The papers' CNN on one portion, trained once and cached (core ``get_classifier``)."""
    return get_classifier(dataset, profile, train_data=data, tag=tag, seed=seed, epochs=epochs)


def model_tag(role: str, n: int, kind: str = "none", severity: float = 0.0) -> str:
    """The cache tag naming a portion: ``drift-base-n2000`` or ``drift-prod-n2000-swap0.5``."""
    return f"drift-base-n{n}" if role == "base" else f"drift-prod-n{n}-{kind}{severity:g}"


def portions(dataset: str, profile, S: dict) -> tuple[TensorData, TensorData]:
    """The base and production portions of ``dataset``'s training set at this profile."""
    from .train import profile_data
    train = profile_data(dataset, "train", profile)
    return make_splits(train, per_dataset(S["n_base"], dataset), per_dataset(S["n_prod"], dataset), seed=0)


def get_model(dataset: str, profile, S: dict, role: str = "production", kind: str = "none",
              severity: float = 1.0, seed: int = 0):
    """Step 1 (``role="base"``) or 2 (production, with a drift of ``kind`` and ``severity``; the drift's
    random choice of images uses ``seed`` too): ``(model, info, training portion)``."""
    base, prod = portions(dataset, profile, S)
    if role == "base":
        data, tag = base, model_tag("base", len(base))
    else:
        severity = 0.0 if kind == "none" else severity
        data, tag = apply_drift(prod, kind, severity, seed=seed), model_tag("production", len(prod), kind, severity)
    model, info = train_model(dataset, data, profile, tag=tag, seed=seed, epochs=per_dataset(S["epochs"], dataset))
    return model, info, data


# --------------------------------------------------------------------------- ART wrapping

class _Softmax(nn.Module):
    """A logits model with a softmax on top: ART's MIFace and the attacks expect probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(1)


def art_classifier(model: PaperCNN, probabilities: bool = True):
    """An ART ``PyTorchClassifier`` around a (frozen) model, input shape NCHW, clip values [0, 1].

    With ``probabilities`` the wrapped network outputs softmax probabilities (what ``MIFace``'s stop
    rule ``1 - p(target) ≤ threshold`` and the attacks assume); without, the raw logits."""
    from art.estimators.classification import PyTorchClassifier
    net = _Softmax(model) if probabilities else model
    net.eval()
    dev = "gpu" if get_device().type == "cuda" else "cpu"
    return PyTorchClassifier(model=net, loss=nn.CrossEntropyLoss(), input_shape=tuple(model.input_shape),
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
    p = predict_logits(model, x).softmax(1)
    conf, pred = p.max(1)
    return GrayData(x, y.cpu(), method, pred, conf, info)


def gray_miface(model: PaperCNN, n_per_class: int = 1, *, max_iter: int = 200, learning_rate: float = 0.1,
                window_length: int = 50, threshold: float = 0.99, probabilities: bool = True) -> GrayData:
    """ART's ``MIFace`` from a grey (all 0.5) start, as in ART's MNIST example and the slides.

    MIFace is deterministic: from one grey start every sample of a class comes out identical, so one
    inversion per class is computed and repeated ``n_per_class`` times."""
    from art.attacks.inference.model_inversion import MIFace
    est = art_classifier(model, probabilities=probabilities)
    attack = MIFace(est, max_iter=int(max_iter), window_length=int(window_length), threshold=float(threshold),
                    learning_rate=float(learning_rate), batch_size=model.num_classes, verbose=False)
    y1 = np.arange(model.num_classes)
    x0 = np.full((model.num_classes, *model.input_shape), 0.5, dtype=np.float32)
    with cpu_threads(1):              # one small batch, many tiny steps: threads only add overhead
        x1 = torch.as_tensor(attack.infer(x0, y1))
    x = x1.repeat_interleave(n_per_class, 0)
    return _finish(model, x, _labels(model.num_classes, n_per_class), "miface",
                   probabilities=probabilities, max_iter=max_iter)


def gray_adam(model: PaperCNN, n_per_class: int = 10, *, steps: int = 200, lr: float = 0.05,
              noise: float = 0.05, seed: int = 0) -> GrayData:
    """Plain model inversion: Adam on the pixels, cross-entropy to the intended class, from grey
    plus a little seeded noise (so samples of a class differ), pixels clipped to [0, 1]."""
    dev = get_device()
    g = torch.Generator().manual_seed(seed)
    y = _labels(model.num_classes, n_per_class)
    x = (0.5 + noise * torch.randn(len(y), *model.input_shape, generator=g)).clamp(0, 1).to(dev)
    x.requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    yd = y.to(dev)
    model.eval()
    for _ in range(int(steps)):
        loss = F.cross_entropy(model(x), yd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return _finish(model, x, y, "adam", steps=steps, lr=lr)


def generator_available() -> tuple[bool, str]:
    """Is chapter 1's conditioned generator (``ccc_lib.counterfeits``) importable?"""
    try:
        from . import counterfeits   # noqa: F401
    except Exception as exc:          # not written yet, or broken
        return False, f"{type(exc).__name__}: {exc}"
    missing = [f for f in ("get_generator", "sample") if not hasattr(counterfeits, f)]
    if missing:
        return False, f"ccc_lib.counterfeits lacks {missing}"
    return True, "ok"


def gray_generator(model: PaperCNN, dataset: str, profile, n_per_class: int = 10, *, tag: str, seed: int = 0,
                   **overrides) -> GrayData:
    """Gray data from chapter 1's conditioned generator trained against ``model`` (counterfeit mode),
    through its public contract ``counterfeits.get_generator`` / ``counterfeits.sample``."""
    from . import counterfeits
    gen, info = counterfeits.get_generator(model, dataset, profile, mode="counterfeit", seed=seed,
                                           tag=f"drift-{tag}", **overrides)
    s = counterfeits.sample(gen, model, n_per_class, seed=seed)
    x = torch.as_tensor(np.asarray(s["x"])) if not isinstance(s["x"], torch.Tensor) else s["x"]
    y = torch.as_tensor(np.asarray(s["y"])) if not isinstance(s["y"], torch.Tensor) else s["y"]
    return _finish(model, x.float(), y.long(), "generator",
                   from_cache=bool(info.get("from_cache", False)) if isinstance(info, dict) else None)


def gray_data(model: PaperCNN, method: str, n_per_class: int, S: dict, *, seed: int = 0,
              dataset: str | None = None, profile=None, tag: str = "") -> GrayData:
    """Steps 3-4 for one model with one inversion method and the chapter settings ``S``."""
    if method == "miface":
        return gray_miface(model, n_per_class, max_iter=S["miface_max_iter"], learning_rate=S["miface_lr"],
                           window_length=S["miface_window"], threshold=S["miface_threshold"])
    if method == "adam":
        return gray_adam(model, n_per_class, steps=S["adam_steps"], lr=S["adam_lr"], noise=S["adam_noise"], seed=seed)
    if method == "generator":
        if dataset is None or not tag:
            raise ValueError("gray_data(method='generator') needs dataset= and tag= (the generator cache key)")
        return gray_generator(model, dataset, profile, n_per_class, tag=tag, seed=seed,
                              **dict(S.get("generator_overrides") or {}))
    raise ValueError(f"unknown gray-data method {method!r}; valid: {GRAY_METHODS}")


# --------------------------------------------------------------------------- steps 5-6: membership inference

class MembershipAttacks:
    """ART's rule-based and black-box (shadow-model) membership inference against one target model.

    * rule-based (``MembershipInferenceBlackBoxRuleBased``): "member" iff the target classifies the
      record as its label. On gray data its score is the target's accuracy on the other model's
      intended labels.
    * black-box (``MembershipInferenceBlackBox`` with a random forest by default): an attack model
      on (probability vector, label) trained on ``ShadowModels`` — copies of the papers' CNN trained
      by ART on half of the attacker's data (members) and not on the other half (non-members)."""

    def __init__(self, target: PaperCNN, attack_data: TensorData | None = None, *, n_shadow: int = 3,
                 shadow_epochs: int = 5, attack_model: str = "rf", seed: int = 0):
        from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased
        self.target = target
        self.num_classes = target.num_classes
        self.estimator = art_classifier(target, probabilities=True)
        self.rule_based = MembershipInferenceBlackBoxRuleBased(self.estimator)
        self.black_box = None
        self.seed = seed
        if attack_data is not None:
            self.black_box = self._fit_black_box(attack_data, n_shadow, shadow_epochs, attack_model, seed)

    def _fit_black_box(self, data: TensorData, n_shadow, shadow_epochs, attack_model, seed):
        from art.attacks.inference.membership_inference import MembershipInferenceBlackBox, ShadowModels
        from art.estimators.classification import PyTorchClassifier
        set_seed(seed)
        present = np.unique(data.y.numpy())
        if len(present) != self.num_classes:
            raise ValueError(f"attack data must hold all {self.num_classes} classes (has {len(present)}): "
                             "ART one-hot encodes labels from the labels present")
        cfg = CNNConfig(**{k: v for k, v in self.target.config.to_dict().items() if k != "widths"},
                        widths=tuple(self.target.config.widths))
        template_net = PaperCNN(cfg)
        epochs = int(shadow_epochs)

        class _Shadow(PyTorchClassifier):      # ART's ShadowModels calls fit(x, y) with nb_epochs=10
            def fit(self, x, y, batch_size=128, nb_epochs=epochs, **kw):
                return super().fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, **kw)

        dev = "gpu" if get_device().type == "cuda" else "cpu"
        template = _Shadow(template_net, nn.CrossEntropyLoss(), tuple(self.target.input_shape), self.num_classes,
                           optimizer=torch.optim.Adam(template_net.parameters(), lr=1e-3),
                           clip_values=(0.0, 1.0), device_type=dev)
        shadows = ShadowModels(template, num_shadow_models=int(n_shadow), random_state=seed)
        x, y = data.x.numpy().astype(np.float32), data.y.numpy()
        (mx, my, mpred), (nx, ny, npred) = shadows.generate_shadow_dataset(x, y, member_ratio=0.5)
        # the shadow CNNs output logits; the attack sees probabilities, as from the target's estimator
        mprob = torch.as_tensor(mpred).float().softmax(1).numpy()
        nprob = torch.as_tensor(npred).float().softmax(1).numpy()
        bb = MembershipInferenceBlackBox(self.estimator, input_type="prediction", attack_model_type=attack_model)
        if hasattr(bb.attack_model, "random_state"):     # ART builds the sklearn model unseeded
            bb.attack_model.set_params(random_state=seed)
        bb.fit(x=mx, y=my, test_x=nx, test_y=ny, pred=mprob, test_pred=nprob)
        self.shadow_info = {"n_shadow": int(n_shadow), "shadow_epochs": epochs, "n_members": len(mx),
                            "n_nonmembers": len(nx)}
        return bb

    def infer(self, x, y, which: str = "rule") -> np.ndarray:
        """1 = member, 0 = non-member, per record."""
        x = x.numpy().astype(np.float32) if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)
        y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if len(np.unique(y)) != self.num_classes:
            raise ValueError(f"labels must cover all {self.num_classes} classes: ART one-hot encodes from the labels present")
        if which == "rule":
            return np.asarray(self.rule_based.infer(x, y)).ravel().astype(int)
        if which == "black":
            if self.black_box is None:
                raise RuntimeError("no black-box attack: pass attack_data= to MembershipAttacks")
            return np.asarray(self.black_box.infer(x, y)).ravel().astype(int)
        raise ValueError("which must be 'rule' or 'black'")

    def score(self, gray: GrayData, which: str = "rule") -> dict:
        """Attack accuracy on gray data = the share called "member", overall and per intended class."""
        m = self.infer(gray.x, gray.y, which)
        y = gray.y.numpy()
        per_class = np.array([m[y == c].mean() if (y == c).any() else np.nan for c in range(self.num_classes)])
        return {"score": float(m.mean()), "per_class": per_class}

    def real_member_check(self, members: TensorData, nonmembers: TensorData, n: int = 1000, seed: int = 0) -> dict:
        """The attacks on real data: members (the target's own training images) vs non-members (same
        distribution, never seen). Balanced accuracy 0.5 = the attack cannot tell them apart."""
        m, o = members.subset(n, seed), nonmembers.subset(n, seed)
        out = {}
        for which in (("rule", "black") if self.black_box is not None else ("rule",)):
            tpr = float(self.infer(m.x, m.y, which).mean())
            fpr = float(self.infer(o.x, o.y, which).mean())
            out[which] = {"member_rate_members": tpr, "member_rate_nonmembers": fpr,
                          "balanced_accuracy": 0.5 * (tpr + 1 - fpr)}
        return out


# --------------------------------------------------------------------------- step 7: the decision

def drift_decision(prod_score: float, reference: float, margin: float = 0.1, per_class=None,
                   class_threshold: float = 0.5) -> dict:
    """Drift iff ``prod_score < reference - margin`` ("production ≪ reference", the reference being a
    no-drift control's score); classes whose score is ≤ ``class_threshold`` are flagged."""
    out = {"drift": bool(prod_score < reference - margin), "score": float(prod_score),
           "reference": float(reference), "margin": float(margin), "threshold": float(reference - margin)}
    if per_class is not None:
        pc = np.asarray(per_class, float)
        out["flagged_classes"] = [int(c) for c in np.flatnonzero(pc <= class_threshold)]
    return out


@dataclass
class DriftReport:
    """What :func:`detect_drift` returns."""
    method: str
    base_score: dict            # {"rule": .., "black": ..} on the base model's own gray data
    production_score: dict      # same on the production model's gray data
    per_class: dict             # {"rule": array, "black": array} for the production gray data
    decision: dict              # {"rule": drift_decision(...), "black": ...}
    reference: dict
    gray_base: GrayData | None = None
    gray_production: GrayData | None = None

    @property
    def drift(self) -> bool:
        return bool(self.decision["rule"]["drift"])

    def to_dict(self) -> dict:
        return {"method": self.method, "base_score": self.base_score, "production_score": self.production_score,
                "per_class": {k: [float(v) for v in a] for k, a in self.per_class.items()},
                "decision": self.decision, "reference": self.reference}

    def __repr__(self):
        r, d = self.production_score, self.decision
        return (f"DriftReport({self.method}: base {self.base_score}, production {r}, "
                f"drift={ {k: v['drift'] for k, v in d.items()} }, flagged={d['rule'].get('flagged_classes')})")


def detect_drift(base_model: PaperCNN, production_model: PaperCNN, *, method: str = "adam",
                 attacks: MembershipAttacks | None = None, attack_data: TensorData | None = None,
                 reference: dict | float | None = None, settings_: dict | None = None, n_per_class: int | None = None,
                 seed: int = 0, dataset: str | None = None, profile=None, tags: tuple[str, str] = ("", ""),
                 gray_base: GrayData | None = None, gray_production: GrayData | None = None) -> DriftReport:
    """The seven steps for two trained models: gray data of both (``method``), membership inference
    against the base model (rule-based; black-box when ``attack_data`` or ``attacks`` with shadow
    models is given), and the decision against ``reference`` (a no-drift control's score: a float for
    both attacks or ``{"rule": .., "black": ..}``; ``None`` = the base gray data's score, which is the
    slides' rule but no control — see the chapter)."""
    S = settings_ or settings(profile)
    n = int(n_per_class or S["n_per_class"])
    if attacks is None:
        attacks = MembershipAttacks(base_model, attack_data, n_shadow=S["n_shadow"], shadow_epochs=S["shadow_epochs"],
                                    attack_model=S["attack_model"], seed=seed)
    gb = gray_base or gray_data(base_model, method, n, S, seed=seed, dataset=dataset, profile=profile, tag=tags[0])
    gp = gray_production or gray_data(production_model, method, n, S, seed=seed, dataset=dataset, profile=profile,
                                      tag=tags[1])
    which = ("rule", "black") if attacks.black_box is not None else ("rule",)
    bs, ps, pc, dec, ref = {}, {}, {}, {}, {}
    for w in which:
        b = attacks.score(gb, w)
        p = attacks.score(gp, w)
        bs[w], ps[w], pc[w] = b["score"], p["score"], p["per_class"]
        r = reference.get(w) if isinstance(reference, dict) else reference
        ref[w] = float(b["score"] if r is None else r)
        dec[w] = drift_decision(p["score"], ref[w], S["margin"], p["per_class"], S["class_threshold"])
    return DriftReport(method, bs, ps, pc, dec, ref, gb, gp)


# --------------------------------------------------------------------------- the standard input-drift tests

def _rbf_mmd2(k: torch.Tensor, n: int) -> torch.Tensor:
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    m = k.shape[0] - n
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kxy.mean())


def mmd_test(a, b, n_permutations: int = 200, seed: int = 0) -> dict:
    """Unbiased MMD² with an RBF kernel (median-heuristic bandwidth) and a permutation p-value."""
    a = torch.as_tensor(np.asarray(a), dtype=torch.float64).flatten(1)
    b = torch.as_tensor(np.asarray(b), dtype=torch.float64).flatten(1)
    z = torch.cat([a, b])
    d2 = torch.cdist(z, z).pow(2)
    bw = d2[d2 > 0].median()
    k = torch.exp(-d2 / bw)
    n = len(a)
    stat = float(_rbf_mmd2(k, n))
    g = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(int(n_permutations)):
        p = torch.randperm(len(z), generator=g)
        null.append(float(_rbf_mmd2(k[p][:, p], n)))
    pval = (1 + sum(v >= stat for v in null)) / (1 + len(null))
    return {"mmd2": stat, "p_value": float(pval)}


def ks_test(a, b) -> dict:
    """Two-sample KS test per feature, Bonferroni-corrected (the smallest p-value × #features)."""
    from scipy.stats import ks_2samp
    a, b = np.asarray(a, float).reshape(len(a), -1), np.asarray(b, float).reshape(len(b), -1)
    ps = np.array([ks_2samp(a[:, j], b[:, j]).pvalue if np.ptp(np.r_[a[:, j], b[:, j]]) > 0 else 1.0
                   for j in range(a.shape[1])])
    return {"p_value": float(min(1.0, ps.min() * len(ps))), "n_features": int(len(ps))}


@torch.no_grad()
def _features(model: PaperCNN, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    dev = get_device()
    return torch.cat([model.features(x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)]).numpy()


def input_drift_test(base_model: PaperCNN, reference: TensorData, production: TensorData, *, n: int = 300,
                     n_permutations: int = 200, alpha: float = 0.05, seed: int = 0) -> dict:
    """Does the production *input* distribution differ from the reference one? MMD and KS tests on the
    base model's 256-d penultimate features of ``n`` images from each (labels are not used)."""
    r, p = reference.subset(n, seed), production.subset(n, seed + 1)
    fa, fb = _features(base_model, r.x), _features(base_model, p.x)
    mmd = mmd_test(fa, fb, n_permutations, seed)
    ks = ks_test(fa, fb)
    return {"mmd_p": mmd["p_value"], "mmd2": mmd["mmd2"], "ks_p": ks["p_value"],
            "mmd_drift": mmd["p_value"] < alpha, "ks_drift": ks["p_value"] < alpha}


# --------------------------------------------------------------------------- the chapter's experiment

@dataclass
class Production:
    """One production model of an experiment."""
    name: str
    kind: str
    severity: float
    seed: int
    model: PaperCNN
    data: TensorData
    test_accuracy: float


def production_models(dataset: str, profile, S: dict, sweep: bool = False) -> list[Production]:
    """The no-drift controls (one per control seed), the drifts of ``S["drifts"]`` and, with
    ``sweep``, the severity sweep's models (seed 0)."""
    specs = [(f"no drift (seed {sd})", "none", 0.0, sd) for sd in per_dataset(S["control_seeds_per_dataset"], dataset)]
    specs += [(f"{k} {sev:g}", k, sev, 0) for k, sev in S["drifts"]]
    if sweep:
        specs += [(f"{k} {sev:g}", k, sev, 0) for k in S["sweep_kinds"] for sev in S["sweep_severities"]]
    out = []
    for name, kind, sev, sd in specs:
        m, info, data = get_model(dataset, profile, S, "production", kind, sev, sd)
        out.append(Production(name, kind, float(sev), int(sd), m, data, float(info["test_accuracy"])))
    return out


_GRAY_MEMO: dict = {}


def _memo_gray(model, method, n, S, *, seed, dataset, profile, tag) -> GrayData:
    """gray_data, remembered per (model object, method, n, seed, settings) within a process, so that
    the severity sweep reuses the gray data of the base model and the controls."""
    key = (id(model), method, n, seed, tag, repr(sorted((k, str(v)) for k, v in S.items())))
    if key not in _GRAY_MEMO:
        _GRAY_MEMO[key] = cached_gray_data(model, method, n, S, seed=seed, dataset=dataset, profile=profile, tag=tag)
    return _GRAY_MEMO[key]


def cached_gray_data(model, method, n, S, *, seed, dataset, profile, tag) -> GrayData:
    """:func:`gray_data` through a small disk cache (``<cache>/drift-gray``), keyed by a hash of the
    model's weights, the method, its settings, ``n`` and the seed (the generator has its own cache)."""
    import hashlib
    import json
    from .utils import atomic_write_bytes, cache_dir
    if method == "generator":
        return gray_data(model, method, n, S, seed=seed, dataset=dataset, profile=profile, tag=tag)
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode()); h.update(v.detach().cpu().numpy().tobytes())
    keys = sorted(k for k in S if k.startswith(method))
    blob = json.dumps({"w": h.hexdigest(), "m": method, "n": int(n), "seed": int(seed),
                       "s": {k: S[k] for k in keys}, "v": 1}, sort_keys=True, default=str)
    path = cache_dir() / "drift-gray" / f"{method}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            return _finish(model, d["x"], d["y"], method, from_cache=True)
        except Exception as exc:      # corrupt file: recompute
            warnings.warn(f"gray-data cache {path} unusable ({exc}); recomputing", RuntimeWarning)
    g = gray_data(model, method, n, S, seed=seed, dataset=dataset, profile=profile, tag=tag)
    import io
    buf = io.BytesIO()
    torch.save({"x": g.x, "y": g.y}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return g


def score_productions(attacks: MembershipAttacks, base_model: PaperCNN, prods: list[Production], method: str,
                      S: dict, *, dataset: str, profile, n_per_class: int | None = None) -> tuple[list[dict], dict]:
    """Gray data of the base model and of every production model by ``method``, scored by the
    attacks against the base model. Returns one row per (production model, attack) and the gray data
    (``{"base": GrayData, name: GrayData}``). The gray-data seed is 0 for the base model and
    1 + the training seed for a production model (and each model has its own generator)."""
    n = int(n_per_class or S["n_per_class"])
    which = ("rule", "black") if attacks.black_box is not None else ("rule",)
    nb = per_dataset(S["n_base"], dataset)
    grays = {"base": _memo_gray(base_model, method, n, S, seed=0, dataset=dataset, profile=profile,
                                tag=f"{dataset}-{model_tag('base', nb)}-s0")}
    base_scores = {w: attacks.score(grays["base"], w)["score"] for w in which}
    rows = []
    for p in prods:
        tag = f"{dataset}-{model_tag('production', len(p.data), p.kind, p.severity)}-s{p.seed}"
        g = _memo_gray(p.model, method, n, S, seed=1 + p.seed, dataset=dataset, profile=profile, tag=tag)
        grays[p.name] = g
        for w in which:
            s = attacks.score(g, w)
            rows.append({"dataset": dataset, "method": method, "attack": w, "production": p.name, "kind": p.kind,
                         "severity": p.severity, "seed": p.seed, "base_score": base_scores[w],
                         "prod_score": s["score"], "per_class": s["per_class"], "own_accuracy": g.own_accuracy,
                         "base_own_accuracy": grays["base"].own_accuracy})
    return rows, grays


def add_decisions(rows: list[dict], S: dict) -> list[dict]:
    """Step 7 for every row: the reference is the mean score of the no-drift controls of the same
    dataset, method and attack — leaving the row's own model out when it is a control, so that a
    control's alarm is a genuine false alarm."""
    out = []
    for r in rows:
        ctrl = [c for c in rows if c["kind"] == "none" and c["dataset"] == r["dataset"]
                and c["method"] == r["method"] and c["attack"] == r["attack"] and c is not r]
        ref = float(np.mean([c["prod_score"] for c in ctrl])) if ctrl else float("nan")
        ref_pc = np.mean([c["per_class"] for c in ctrl], 0) if ctrl else np.full(len(r["per_class"]), np.nan)
        d = drift_decision(r["prod_score"], ref, S["margin"], r["per_class"], S["class_threshold"])
        aff = set(affected_classes(r["kind"], len(r["per_class"])))
        flagged = set(d["flagged_classes"])
        out.append({**r, "reference": ref, "reference_per_class": ref_pc, "drift": d["drift"],
                    "flagged": sorted(flagged), "affected": sorted(aff),
                    "class_hits": len(flagged & aff), "class_false_flags": len(flagged - aff)})
    return out
