"""Chapter 4's production models: the injected drifts (ours), each model's own draw of the production
portion, and the no-drift controls and drifted models trained into the cache."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import drift as D
from ...checks import InputError, check_choice, check_fraction
from ...data import TensorData
from ...models import PaperCNN
from ...train import profile_data
from .settings import DRIFT_KINDS, per_dataset

__all__ = ["affected_classes", "apply_drift", "portion_seed", "model_tag", "portions", "get_model", "Production",
           "train_production", "production_models", "PLATEAU_TOL", "training_table"]

# --------------------------------------------------------------------------- injected drifts (ours)

def affected_classes(kind: str, num_classes: int = 10) -> tuple[int, ...]:
    """The classes a drift of ``kind`` changes: ``swap`` exchanges the 4th and 6th class (3↔5),
    ``rotate`` turns the first half of the classes by 90°, ``new`` replaces the last two classes'
    images by images of another dataset; the drifts confined to one class: ``rotate-one`` turns the
    2nd class (1), ``new-one`` replaces the last class."""
    check_choice(kind, "kind", DRIFT_KINDS)
    if kind == "none":
        return ()
    if kind == "swap":
        return (3, 5) if num_classes > 5 else (0, 1)
    if kind == "rotate":
        return tuple(range(max(1, num_classes // 2)))
    if kind == "rotate-one":
        return (1,)
    if kind == "new-one":
        return (num_classes - 1,)
    return (num_classes - 2, num_classes - 1)


def apply_drift(data: TensorData, kind: str = "none", severity: float = 1.0, seed: int = 0,
                new_images: TensorData | None = None) -> TensorData:
    """The production portion with a drift of ``kind`` on :func:`affected_classes`; ``severity`` ∈
    [0, 1] is the share of those classes' images that drift (seeded choice). ``swap``: labels of the
    pair exchanged (the concept moves, the images do not); ``rotate``: images turned by 90° (labels
    kept); ``new``: images replaced by images of ``new_images`` (another dataset of the same shape;
    class c gets images of its class c mod its class count) — data the base model never saw;
    ``rotate-one`` and ``new-one``: the same on one class."""
    check_choice(kind, "kind", DRIFT_KINDS)
    check_fraction(severity, "severity", open_interval=False)
    if kind in ("new", "new-one"):
        if new_images is None:
            raise InputError("apply_drift(kind='new') needs new_images= (images of another dataset, same shape)")
        if tuple(new_images.shape) != tuple(data.shape):
            raise InputError(f"new_images have shape {tuple(new_images.shape)}, the portion {tuple(data.shape)}; "
                             "convert them with new_images.to_shape(...)")
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
        elif kind in ("rotate", "rotate-one"):
            x[pick] = torch.rot90(data.x[pick], 1, dims=(2, 3))
        else:
            src = np.flatnonzero(new_images.y.numpy() == c % new_images.num_classes)
            if len(src) == 0:
                raise InputError(f"new_images hold no image of class {c % new_images.num_classes}")
            x[pick] = new_images.x[torch.as_tensor(rng.choice(src, size=len(pick), replace=len(src) < len(pick)))]
    tag = "none" if kind == "none" else f"{kind}{severity:g}"
    return TensorData(x, y, data.classes, data.name, f"production-{tag}")


# --------------------------------------------------------------------------- models

def portion_seed(kind: str, seed: int) -> int:
    """The seed of a production model's own draw of the production portion: every no-drift control
    and every drifted model (kind, seed) gets a different one (the base portion is always drawn with
    seed 0)."""
    check_choice(kind, "kind", DRIFT_KINDS)
    return 1000 * DRIFT_KINDS.index(kind) + int(seed)


def model_tag(role: str, n: int, kind: str = "none", severity: float = 0.0, portion: int = 0) -> str:
    """The cache tag naming a portion (version 2 of the split: each production model its own draw):
    ``drift2-base-n2000`` or ``drift2-prod-n2000-p1003-swap1``."""
    return f"drift2-base-n{n}" if role == "base" else f"drift2-prod-n{n}-p{portion}-{kind}{severity:g}"


def portions(dataset: str, profile, S: dict, prod_seed: int = 0) -> tuple[TensorData, TensorData]:
    """Steps 1-2's data: the base portion of ``dataset``'s training set (always the same draw) and
    the production portion drawn with ``prod_seed`` from the rest (:func:`~ccc_lib.drift.make_splits`)."""
    train = profile_data(dataset, "train", profile)
    return D.make_splits(train, per_dataset(S["n_base"], dataset), per_dataset(S["n_prod"], dataset), seed=0,
                         prod_seed=prod_seed)


def _new_images(dataset: str, profile, S: dict, like: TensorData) -> TensorData:
    src = per_dataset(S["new_source"], dataset)
    return profile_data(src, "train", profile, shape=tuple(like.shape))


def get_model(dataset: str, profile, S: dict, role: str = "production", kind: str = "none",
              severity: float = 1.0, seed: int = 0):
    """Step 1 (``role="base"``) or 2 (a production model with a drift of ``kind`` on its own draw of
    the production portion, :func:`portion_seed`; its random choices and training use ``seed``):
    ``(model, info, training portion)``."""
    ps = portion_seed(kind, seed) if role != "base" else 0
    base, prod = portions(dataset, profile, S, prod_seed=ps)
    if role == "base":
        data, tag = base, model_tag("base", len(base))
    else:
        severity = 0.0 if kind == "none" else severity
        new = _new_images(dataset, profile, S, prod) if kind in ("new", "new-one") else None
        data = apply_drift(prod, kind, severity, seed=seed, new_images=new)
        tag = model_tag("production", len(prod), kind, severity, ps) + (f"-{new.name}" if new is not None else "")
    model, info = D.train_model(dataset, data, profile, tag=tag, seed=seed, epochs=per_dataset(S["epochs"], dataset),
                                channels_last=bool(S.get("channels_last", False)))
    return model, info, data


@dataclass
class Production:
    """One production model of the experiment."""
    name: str
    kind: str
    severity: float
    seed: int
    model: PaperCNN
    data: TensorData
    test_accuracy: float
    epoch_losses: tuple = ()

    @property
    def tag(self) -> str:
        return f"{self.kind}{self.severity:g}-s{self.seed}"


def train_production(dataset: str, profile, S: dict, kind: str, severity: float, seed: int) -> float:
    """One production model trained into the cache (a job of :func:`production_models`); returns
    its test accuracy."""
    return float(get_model(dataset, profile, S, "production", kind, severity, seed)[1]["test_accuracy"])


def production_models(dataset: str, profile, S: dict, n_jobs: int | None = None) -> list[Production]:
    """The no-drift controls (one per control seed, each on its own draw of the production portion:
    they carry the variation of the data drawn and of training) and the injected drifts (each kind
    over the drift seeds, each on its own draw too). The models are independent: they are trained
    side by side (:func:`ccc_lib.parallel.run_jobs`, ``n_jobs`` at a time; default ``CCC_JOBS``,
    else the cores) into the checkpoint cache, then read from it in order."""
    from ...parallel import run_jobs
    specs = [(f"no drift, seed {sd}", "none", 0.0, sd) for sd in S["control_seeds"]]
    specs += [(f"{k}, seed {sd}", k, float(S["severity"]), sd) for k in S["drift_kinds"] for sd in S["drift_seeds"]]
    run_jobs(train_production, [dict(dataset=dataset, profile=profile, S=S, kind=kind, severity=sev, seed=sd)
                                for _, kind, sev, sd in specs], n_jobs=n_jobs, when_done="skip")
    out = []
    for name, kind, sev, sd in specs:
        m, info, data = get_model(dataset, profile, S, "production", kind, sev, sd)
        out.append(Production(name, kind, float(sev), int(sd), m, data, float(info["test_accuracy"]),
                              tuple(info.get("epoch_losses", ()))))
    return out


#: the plateau test of a training-loss curve: the last epoch improved the loss by less than ``tol`` (relative)
PLATEAU_TOL = 0.01


def training_table(base_info: dict, prods: list[Production], dataset: str) -> dict:
    """Where each model's training stopped: every CNN trains to the profile's epochs (the cap), and the
    plateau test of its loss curve says whether it had plateaued there (the last epoch's relative
    improvement below :data:`PLATEAU_TOL`) — i.e. whether fewer epochs could have done. A row per dataset."""
    curves = [tuple(base_info.get("epoch_losses", ()))] + [p.epoch_losses for p in prods]
    imp = [(c[-2] - c[-1]) / abs(c[-2]) for c in curves if len(c) >= 2]
    return {"dataset": dataset, "models": len(curves), "epochs (cap)": max((len(c) for c in curves), default=0),
            "plateaued before the cap": sum(i < PLATEAU_TOL for i in imp),
            "last epoch's loss improvement": f"{min(imp):.1%} – {max(imp):.1%}" if imp else "–"}
