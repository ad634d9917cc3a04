"""Our variant's ε and τ, chosen on generated samples alone (training images only set the scale):
the candidates, the rule, and how firm the choice is."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from ... import counterfeits as cf
from ...cache import load_or_compute
from ...checks import check_labels
from ...profiles import get_profile
from .headline import generator, pretrain
from .measures import feature_diversity
from .settings import GOAL

__all__ = ["validation_split", "Candidate", "Selection", "apply_rule", "selection_margin", "select_ours"]


def validation_split(train, n: int, seed: int = 0):
    """The scale images of the selection: a stratified, seeded subset of ``n`` *training* images (a
    :class:`ccc_lib.data.TensorData`). They only scale the candidates' diversity (one number for all),
    so the selection carries no held-out signal; the test set is never looked at."""
    return train.subset(min(int(n), len(train)), seed=seed + 101)


@dataclass
class Candidate:
    """One (ε, τ) of the grid, trained for the selection's steps and measured on its own samples."""
    epsilon: float
    div_target: float
    mean_confidence: float
    share_099: float
    worst_class_share_099: float
    feature_diversity_ratio: float
    qualifies: bool = False
    chosen: bool = False
    steps_trained: int = 0


@dataclass
class Selection:
    """The chosen ε, τ, the rule that chose them, and every candidate."""
    epsilon: float
    div_target: float
    rule: str
    any_qualified: bool
    candidates: list

    def overrides(self) -> dict:
        return {"epsilon": self.epsilon, "div_target": self.div_target}

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"ε": c.epsilon, "τ": c.div_target, "mean confidence": c.mean_confidence,
                              "share ≥ 0.99": c.share_099, "worst class: share ≥ 0.99": c.worst_class_share_099,
                              "feature diversity / training images'": c.feature_diversity_ratio,
                              "steps trained": c.steps_trained, "qualifies": c.qualifies, "chosen": c.chosen}
                             for c in self.candidates])


def _rule_text(min_worst: float) -> str:
    return (f"ranked on generated samples alone: the largest diversity in the attacked classifier's feature space "
            f"(scaled by that of training images, the same number for every candidate) among candidates whose "
            f"worst-class share at confidence ≥ 0.99 is ≥ {min_worst}; if none qualifies, the highest worst-class share")


def apply_rule(cands: list, min_worst: float) -> tuple:
    ok = [c for c in cands if c.worst_class_share_099 >= min_worst]
    best = (max(ok, key=lambda c: (c.feature_diversity_ratio, c.worst_class_share_099)) if ok else
            max(cands, key=lambda c: (c.worst_class_share_099, c.share_099, c.feature_diversity_ratio)))
    for c in cands:
        c.qualifies = c.worst_class_share_099 >= min_worst
        c.chosen = c is best
    return best, bool(ok)


def selection_margin(selections: dict, n_per_class: int) -> str:
    """How firm each dataset's choice is (dataset → :class:`Selection`): where a candidate qualified,
    that it did; where none did, the chosen candidate's worst class against the runner-up's, in images
    at ≥ 0.99 of the ``n_per_class`` per class — a fallback that can rest on a handful of images."""
    out = []
    for name, sel in selections.items():
        if sel.any_qualified:
            out.append(f"{name}: {sum(c.qualifies for c in sel.candidates)} of {len(sel.candidates)} candidates met "
                       "the worst-class rule, the most diverse of them chosen")
            continue
        shares = sorted((c.worst_class_share_099 for c in sel.candidates), reverse=True)
        best, second = (round(v * n_per_class) for v in (shares + shares)[:2])
        out.append(f"{name}: no candidate met the worst-class rule; the chosen one's worst class has {best} of "
                   f"{n_per_class} images at ≥ 0.99, the runner-up's {second}")
    return "; ".join(out) + (". A choice that rests on a few images is fragile: a change that only moves "
                             "floating-point rounding can flip it." if not all(s.any_qualified for s in
                                                                                  selections.values()) else ".")


def select_ours(classifier, dataset: str, profile, val_x: torch.Tensor, val_y: torch.Tensor, *,
                seed: int = 0) -> Selection:
    """Choose our variant's ε (``epsilon``) and τ (``div_target``) on generated samples: every candidate of
    :data:`ccc_lib.counterfeits.SELECTION`'s grid trains from scratch for the same ``steps`` (cached
    per candidate), samples ``n_per_class`` per class as ours samples (its dropout setting), and is
    measured against the feature diversity of the scale images ``val_x`` (training images: one number for
    every candidate, no held-out signal); then the rule of :func:`_rule_text`.
    The result is cached under :func:`ccc_lib.counterfeits.selection_config` (what
    :func:`ccc_lib.counterfeits.ours_choice` reads for the other chapters)."""
    check_labels(val_y, "val_y", n=len(val_x))
    sel = cf.selection_settings(profile)
    s = cf.settings(profile)
    drop = cf.sample_dropout("ours", s)
    min_worst = float(sel.get("min_worst_share", GOAL["share_at_099"]))

    def compute():
        real_fd = feature_diversity(classifier, val_x, val_y, seed=seed)
        pname = get_profile(profile).name
        pretrain([{"classifier": classifier, "dataset": dataset, "profile": pname, "variant": "ours", "seed": seed,
                   "overrides": {"steps": int(sel["steps"]), "epsilon": float(e), "div_target": float(t)}}
                  for e in sel["epsilons"] for t in sel["taus"]])
        cands = []
        for eps in sel["epsilons"]:
            for tau in sel["taus"]:
                gen, info = generator(classifier, dataset, profile, variant="ours", seed=seed, steps=int(sel["steps"]),
                                      epsilon=float(eps), div_target=float(tau))
                smp = cf.sample(gen, classifier, int(sel["n_per_class"]), seed=seed + 7, dropout=drop)
                conf, y = smp["confidence"].numpy(), smp["y"].numpy()
                cands.append(Candidate(
                    epsilon=float(eps), div_target=float(tau), mean_confidence=float(conf.mean()),
                    share_099=float((conf >= 0.99).mean()),
                    worst_class_share_099=min(float((conf[y == c] >= 0.99).mean()) for c in np.unique(y)),
                    feature_diversity_ratio=feature_diversity(classifier, smp["x"], smp["y"], seed=seed) / real_fd,
                    steps_trained=int(info["stopped_at"])))
        best, ok = apply_rule(cands, min_worst)
        return {"meta": {"epsilon": best.epsilon, "div_target": best.div_target, "any_qualified": ok,
                         "candidates": [asdict(c) for c in cands]}}

    out = load_or_compute("ch1-ours-selection", cf.selection_config(classifier, dataset, profile, seed), compute)
    m = out["meta"]
    return Selection(epsilon=float(m["epsilon"]), div_target=float(m["div_target"]), rule=_rule_text(min_worst),
                     any_qualified=bool(m["any_qualified"]), candidates=[Candidate(**c) for c in m["candidates"]])
