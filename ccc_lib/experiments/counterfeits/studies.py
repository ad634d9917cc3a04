"""The chapter's studies: the ablation (each term removed, ours, inversion mode), the other
classifier architectures with the same settings, and the budget the paper's generator needs against
the residual CNN."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ... import counterfeits as cf
from ...profiles import get_profile
from .headline import generator, pretrain
from .measures import RealStats, diversity_stats, features, summarise
from .settings import ARCHITECTURES, arch_settings

__all__ = ["ABLATION", "run_ablation", "other_classifier", "architecture_rows", "plateaued", "budget_study"]


ABLATION = {
    "paper's loss (α·KL + β·CE + γ·Cos + δ·Ortho)": ("paper", "counterfeit", {}),
    "paper's loss − KL (α = 0)": ("paper", "counterfeit", {"alpha": 0.0}),
    "paper's loss − CE (β = 0)": ("paper", "counterfeit", {"beta": 0.0}),
    "paper's loss − Cosine (γ = 0)": ("paper", "counterfeit", {"gamma": 0.0}),
    "paper's loss − Ortho (δ = 0)": ("paper", "counterfeit", {"delta": 0.0}),
    "ours: paper's loss + ε·Div (features)": ("ours", "counterfeit", {}),
    "inversion mode (soft conditioning)": ("paper", "inversion", {}),
}


def run_ablation(classifier, dataset: str, profile, real: RealStats, *, seed: int = 0, steps: int | None = None,
                 n_per_class: int = 50, variants: dict | None = None, train_x: torch.Tensor | None = None,
                 dropout: bool | None = None, ours_overrides: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Train (or load) one generator per variant, each until the plateau test passes with ``steps``
    as the cap (equal caps), and summarise each, sampled with dropout as the settings say (the
    paper's ``sample_dropout`` for every row, so the rows differ only in the loss). ``ours_overrides``
    (ε and τ chosen by the selection) apply to the rows of our variant: at equal steps that row is the
    selection's chosen candidate, read from the cache. Returns the table (with the steps each row
    trained) and name → samples."""
    s0 = cf.settings(profile)
    steps = int(steps or s0["ablation_steps"])
    dropout = s0["sample_dropout"] if dropout is None else dropout
    rows_in = [(name, variant, mode, {**(ours_overrides or {}), **ov} if variant == "ours" else ov)
               for name, (variant, mode, ov) in (variants or ABLATION).items()]
    pretrain([{"classifier": classifier, "dataset": dataset, "profile": get_profile(profile).name, "variant": v,
               "seed": seed, "mode": mode, "overrides": {"steps": steps, **ov}} for _, v, mode, ov in rows_in])
    rows, samples = [], {}
    for name, variant, mode, ov in rows_in:
        gen, info = generator(classifier, dataset, profile, variant=variant, mode=mode, seed=seed, steps=steps, **ov)
        s = cf.sample(gen, classifier, n_per_class, seed=seed + 1, dropout=dropout)
        samples[name] = s
        rows.append({"variant": name, **summarise(classifier, s, real, train_x).row(),
                     "steps trained": int(info["stopped_at"]), "train s": info.get("train_seconds", float("nan")),
                     "from cache": info["from_cache"]})
    return pd.DataFrame(rows).set_index("variant"), samples


def other_classifier(arch: str, dataset: str, profile, *, seed: int = 0, train_data=None, test_data=None):
    """A classifier of architecture ``arch`` (:data:`ARCHITECTURES`) trained on ``dataset`` as chapter
    0 trains the papers' CNN (:func:`ccc_lib.train.train_classifier`: the profile's epochs and batch,
    Adam 1e-3, seeded), cached by :func:`ccc_lib.cache.load_or_train`. Returns ``(model, test accuracy,
    info)``; the model is frozen, in eval mode, on the device."""
    from ...checks import check_choice
    from ...models import build_model
    from ...profiles import get_profile
    from ...train import accuracy_of, profile_data, train_classifier
    from ...utils import get_device, rng_isolated, seed_everything
    from ...cache import load_or_train
    check_choice(arch, "arch", ARCHITECTURES)
    prof = get_profile(profile)
    train = train_data if train_data is not None else profile_data(dataset, "train", prof)
    test = test_data if test_data is not None else profile_data(dataset, "test", prof)
    c, h, _ = train.shape
    with rng_isolated():
        seed_everything(seed)
        model = build_model(arch, in_channels=c, image_size=h, num_classes=train.num_classes)
    ep = prof.epochs_for(dataset)
    key = {"model": model.config.to_dict(), "arch": arch, "dataset": dataset, "profile": prof.name,
           "train_limit": prof.train_limit, "epochs": ep, "seed": seed, "lr": 1e-3,
           "batch_size": prof.batch_size, "init": "seeded"}
    info = load_or_train(model, f"classifier-{arch}-{dataset}", key,
                         lambda m: train_classifier(m, train, epochs=ep, batch_size=prof.batch_size, seed=seed,
                                                    desc=f"{dataset} {arch}"))
    model.to(get_device()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, accuracy_of(model, test), info


def architecture_rows(arch: str, classifier, dataset: str, profile, test, ours_overrides: dict, *,
                      seed: int = 0, n_per_class: int | None = None, accuracy: float | None = None) -> list:
    """The paper's generator and ours (with ``ours_overrides``, the ε and τ chosen for the papers' CNN:
    no retuning) trained with the chapter's settings against ``classifier``, each sampled as the
    chapter samples it and measured against real ``test`` images in that classifier's feature space.
    One row per generator (readable column names)."""
    s = cf.settings(profile)
    n = int(n_per_class or s["n_per_class"])
    tsub = test.subset(min(len(test), n * test.num_classes), seed=seed)
    fte = features(classifier, tsub.x)
    real = RealStats(pixel_diversity=diversity_stats(tsub.x, tsub.y, 500, seed)["mean"],
                     feature_diversity=diversity_stats(fte, tsub.y, 500, seed)["mean"],
                     median_nn_pixel=float("nan"), median_nn_feature=float("nan"))
    pretrain([{"classifier": classifier, "dataset": dataset, "profile": get_profile(profile).name, "variant": v,
               "seed": seed, "tag": f"arch-{arch}", "overrides": ours_overrides if v == "ours" else {}}
              for v in cf.VARIANTS])
    rows = []
    for v in cf.VARIANTS:
        ov = ours_overrides if v == "ours" else {}
        gen, info = generator(classifier, dataset, profile, variant=v, seed=seed, tag=f"arch-{arch}", **ov)
        smp = cf.sample(gen, classifier, n, seed=seed + 1, dropout=cf.sample_dropout(v, s))
        sm = summarise(classifier, smp, real)
        rows.append({"architecture": arch, "dataset": dataset, "test accuracy": accuracy,
                     "generator": "paper's generator" if v == "paper" else "ours: + ε·Div",
                     "mean confidence": sm.mean_confidence, "worst class: share ≥ 0.99": sm.worst_class_share_099,
                     "share ≥ 0.99": sm.share_099, "feature diversity / real": sm.feature_diversity_ratio,
                     "pixel diversity / real": sm.pixel_diversity_ratio, "steps trained": int(info["stopped_at"]),
                     "train s": info.get("train_seconds", float("nan")), "from cache": info["from_cache"]})
    return rows


#: the plateau test on one curve (:func:`ccc_lib.counterfeits.plateaued`)
plateaued = cf.plateaued


def budget_study(arch: str, classifier, dataset: str, profile, *, seed: int = 0, n_per_class: int | None = None,
                 bound: float = 0.99) -> tuple[pd.DataFrame, dict]:
    """The paper's generator against ``classifier`` (architecture ``arch``) at each (steps, lr) of
    :data:`ARCH_SETTINGS`' ``budget`` grid, every other setting the chapter's (the plateau test
    included, the grid's steps the cap): per budget the steps it trained, the worst-class mean
    confidence and share at ≥ 0.99 of its samples (sampled as the paper samples), whether it meets the
    confidence claim (worst-class mean ≥ ``bound``), and whether it stopped on the plateau test. Per
    learning rate one run to the largest cap: the smaller caps are its weights at their step (the same
    as training them on their own). Returns the table and (steps, lr) → confidence curve."""
    s, a = cf.settings(profile), arch_settings(profile)
    n = int(n_per_class or s["n_per_class"])
    caps = {}
    for st, lr in a["budget"]:
        caps.setdefault(float(lr), []).append(int(st))
    pretrain([{"classifier": classifier, "dataset": dataset, "profile": get_profile(profile).name, "variant": "paper",
               "seed": seed, "tag": f"arch-{arch}", "overrides": {"steps": max(c), "lr": lr},
               "also_at": tuple(sorted(set(c) - {max(c)}))} for lr, c in caps.items()])
    rows, curves = [], {}
    for steps, lr in a["budget"]:
        gen, info = generator(classifier, dataset, profile, variant="paper", seed=seed, tag=f"arch-{arch}",
                              steps=int(steps), lr=float(lr))
        smp = cf.sample(gen, classifier, n, seed=seed + 1, dropout=cf.sample_dropout("paper", s))
        conf, y = smp["confidence"].numpy(), smp["y"].numpy()
        worst = min(float(conf[y == c].mean()) for c in np.unique(y))
        curve = info["history"]["confidence"]
        curves[int(steps), float(lr)] = curve
        rows.append({"architecture": arch, "dataset": dataset, "steps": int(steps), "lr": float(lr),
                     "steps trained": int(info["stopped_at"]), "worst class: mean confidence": worst,
                     "worst class: share ≥ 0.99": min(float((conf[y == c] >= 0.99).mean()) for c in np.unique(y)),
                     "share ≥ 0.99": float((conf >= 0.99).mean()), "meets the claim": worst >= bound,
                     "curve plateaued": bool(info["plateau_reached"]),
                     "train s": info.get("train_seconds", float("nan"))})
    return pd.DataFrame(rows).set_index(["steps", "lr"]), curves
