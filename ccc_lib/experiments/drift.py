"""Chapter 4's experiment around the method of :mod:`ccc_lib.drift`: settings and claim bounds per
profile, the injected drifts (ours), the production models (no-drift controls and drifted models,
each over several seeds), the scoring of every (model, gray-data method, attack), the decisions,
the reproduction of the slides' Table 2 and the standard input-drift tests beside it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from .. import drift as D
from ..checks import InputError, check_choice, check_fraction
from ..data import TensorData
from ..cache import cached
from ..metrics import ks_test, mmd_test
from ..models import PaperCNN
from ..profiles import Profile, chapter_settings
from ..train import profile_data

__all__ = ["SETTINGS", "CLAIM_BOUNDS", "SLIDES_TABLE1", "SLIDES_TABLE2", "DRIFT_KINDS", "settings", "per_dataset",
           "affected_classes", "apply_drift", "portion_seed", "model_tag", "portions", "get_model", "Production",
           "train_production", "production_models", "build_attacks", "Score", "score_productions", "add_decisions",
           "frame", "headline_table", "EMNIST_SPLITS", "table2_granularity", "where_we_differ", "InputTest", "input_drift_test", "ClassAccuracy", "class_accuracy", "accuracy_changes"]

DRIFT_KINDS = ("none", "swap", "rotate", "new", "rotate-one", "new-one")

#: the slides' numbers ("results averaged from three experiments")
SLIDES_TABLE1 = {"cifar10": (0.5738, 0.5969), "emnist": (0.8200, 0.8246)}     # base, production test accuracy
SLIDES_TABLE2 = {"cifar10": {"rule": (1.0, 0.6666), "black": (1.0, 0.3611)},   # base gray, production gray
                 "emnist": {"rule": (1.0, 0.5352), "black": (0.9516, 0.1713)}}

_COMMON = {
    **D.GRAY_DEFAULTS,
    "headline_method": "miface",          # our reading of the slides' "model inversion" (they name none)
    "variant_methods": ("adam", "generator"),
    "decision_method": "adam",            # gray data of the decision experiment (many samples per class)
    "margin": 0.10, "alpha": 0.05, "correction": "holm",   # ours: "≪" made a test (see drift_decision)
    "decision_rule": "family",            # model + K classes, one Holm correction ("gated": the previous rule)
    "attack_model": "nn",                 # ART's default attack model
    "n_shadow": 3, "shadow_epochs": 5,
    "n_synthetic_per_class": 10, "synthetic_min_confidence": 0.4, "synthetic_max_iterations": 40,
    "drift_kinds": ("swap", "rotate", "new", "rotate-one", "new-one"), "severity": 1.0,
    "new_source": {"mnist5k": "fashion_mnist", "fashion_mnist": "mnist5k", "cifar10": "svhn", "emnist": "fashion_mnist",
                   "mnist": "fashion_mnist", "*": "fashion_mnist"},
    "mmd_permutations": 200, "n_input_test": 300,
    "n_accuracy_test": 3000,              # test images for the per-class recall / precision of every model
}

SETTINGS = {
    "smoke": {**_COMMON,
              "datasets": ("mnist5k",),
              "n_base": {"*": 800}, "n_prod": {"*": 600}, "n_attack": 300, "epochs": {"*": 6},
              "control_seeds": (1, 2, 3), "drift_seeds": (1,), "headline_seeds": 2,
              "n_per_class": 4, "miface_max_iter": 30, "adam_steps": 40, "n_shadow": 2, "shadow_epochs": 2,
              "n_synthetic_per_class": 4, "mmd_permutations": 50, "n_input_test": 100, "n_accuracy_test": 500,
              "generator_overrides": {"steps": 60}},
    "default": {**_COMMON,
                "datasets": ("mnist5k", "fashion_mnist"),
                # mnist5k has 4,000 training images: 1,500 + 1,500 leaves each production draw 1,500 of 2,500
                "n_base": {"mnist5k": 1500, "*": 2000}, "n_prod": {"mnist5k": 1500, "*": 2000}, "n_attack": 1000,
                "epochs": {"*": 4},
                "control_seeds": tuple(range(1, 11)), "drift_seeds": (1, 2, 3), "headline_seeds": 3,
                "n_per_class": 20, "adam_steps": 60, "generator_overrides": {"steps": 200, "batch_size": 60}},
    "full": {**_COMMON,
             "datasets": ("cifar10", "emnist"),
             "n_base": {"*": 20000}, "n_prod": {"*": 20000}, "n_attack": 5000, "epochs": {"cifar10": 30, "*": 10},
             "control_seeds": tuple(range(1, 11)), "drift_seeds": (1, 2, 3), "headline_seeds": 3,
             "n_per_class": 50, "miface_max_iter": 1000, "adam_steps": 500, "n_shadow": 3, "shadow_epochs": 10,
             "mmd_permutations": 500, "n_input_test": 1000},
    "full_dry": {"n_base": {"*": 120}, "n_prod": {"*": 120}, "n_attack": 1000, "epochs": {"*": 1},
                 "control_seeds": (1, 2, 3), "drift_seeds": (1,), "headline_seeds": 2,
                 "n_per_class": 1, "miface_max_iter": 5, "adam_steps": 5, "n_shadow": 1, "shadow_epochs": 1,
                 "n_synthetic_per_class": 1, "synthetic_min_confidence": 0.0, "synthetic_max_iterations": 10,
                 "mmd_permutations": 20, "n_input_test": 50, "n_accuracy_test": 200, "generator_overrides": {"steps": 3, "batch_size": 47}},
}

#: per-profile bounds of the chapter's claims (set before the run; see the notebook's claims section)
#: false alarms are bounded by the ``false_alarm_quantile`` quantile of Binomial(n controls, α): no more
#: than a detector whose false-alarm rate is α raises with that probability
CLAIM_BOUNDS = {
    "smoke": {"own_gray": 0.9, "false_alarm_quantile": 0.95, "member_balanced_accuracy": 0.6, "min_synthetic_records": 4},
    "default": {"own_gray": 0.9, "false_alarm_quantile": 0.95, "member_balanced_accuracy": 0.6, "min_synthetic_records": 4},
    "full": {"own_gray": 0.9, "false_alarm_quantile": 0.95, "member_balanced_accuracy": 0.6, "min_synthetic_records": 4},
}


def settings(profile: str | Profile | None = None, **overrides) -> dict:
    return chapter_settings(SETTINGS, profile, **overrides)


def per_dataset(value, dataset: str):
    """Settings given per dataset (``{"mnist5k": 2000, "*": 600}``) or as one value."""
    if isinstance(value, dict):
        return value.get(dataset, value.get("*"))
    return value


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
    model, info = D.train_model(dataset, data, profile, tag=tag, seed=seed, epochs=per_dataset(S["epochs"], dataset))
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
    from ..parallel import run_jobs
    specs = [(f"no drift, seed {sd}", "none", 0.0, sd) for sd in S["control_seeds"]]
    specs += [(f"{k}, seed {sd}", k, float(S["severity"]), sd) for k in S["drift_kinds"] for sd in S["drift_seeds"]]
    run_jobs(train_production, [dict(dataset=dataset, profile=profile, S=S, kind=kind, severity=sev, seed=sd)
                                for _, kind, sev, sd in specs], n_jobs=n_jobs, when_done="skip")
    out = []
    for name, kind, sev, sd in specs:
        m, info, data = get_model(dataset, profile, S, "production", kind, sev, sd)
        out.append(Production(name, kind, float(sev), int(sd), m, data, float(info["test_accuracy"])))
    return out


# --------------------------------------------------------------------------- attacks and scores

def build_attacks(base_model: PaperCNN, attack_data: TensorData, S: dict, seed: int = 0) -> tuple[dict, dict]:
    """The rule-based attack and the black-box attack with shadow models built as we read the slides
    (synthetic records from random examples) and ours (real images). Returns ``({name: (attacks,
    which)}, {name: error})`` — a black-box attack whose shadow data could not be synthesised is
    left out and its :class:`~ccc_lib.drift.ShadowSynthesisError` returned (the chapter reports it)."""
    out, errors = {}, {}
    kw = dict(n_shadow=S["n_shadow"], shadow_epochs=S["shadow_epochs"], attack_model=S["attack_model"], seed=seed)
    real = D.MembershipAttacks(base_model, attack_data, shadow="real", **kw)
    out["rule-based"] = (real, "rule")
    try:
        syn = D.MembershipAttacks(base_model, shadow="synthetic", n_synthetic_per_class=S["n_synthetic_per_class"],
                                  synthetic_min_confidence=S["synthetic_min_confidence"],
                                  synthetic_max_iterations=S["synthetic_max_iterations"], **kw)
        out["black-box, synthetic shadows"] = (syn, "black")
    except D.ShadowSynthesisError as exc:
        errors["black-box, synthetic shadows"] = exc
    out["black-box, real shadows"] = (real, "black")
    return out, errors


@dataclass
class Score:
    """One (production model, gray-data method, attack) of the experiment, and step 7's decision."""
    dataset: str
    method: str
    attack: str
    production: str
    kind: str
    severity: float
    seed: int
    base_score: float            # the attack's score on the base model's own gray data
    prod_score: float            # ... on the production model's gray data
    per_class: list
    own_accuracy: float          # production model on its own gray data
    affected: tuple = ()
    # filled by add_decisions
    drift: bool | None = None
    reference: float = float("nan")
    spread: float = float("nan")
    threshold: float = float("nan")
    p_value: float = float("nan")
    n_controls: int = 0
    flagged: tuple = ()
    class_p: tuple = ()          # per class: the p-value corrected in the family (drift_decision)
    model_p: float = float("nan")     # the model-level test's own p-value
    drift_gated: bool | None = None   # the previous rule (model-level test; classes only if it fires)
    flagged_gated: tuple = ()
    slides_rule_drift: bool | None = None

    @property
    def classes_exact(self) -> bool:
        return set(self.flagged) == set(self.affected)

    @property
    def classes_exact_gated(self) -> bool:
        return set(self.flagged_gated) == set(self.affected)


def score_productions(attacks: dict, base_model: PaperCNN, prods: list[Production], method: str, S: dict, *,
                      dataset: str, profile) -> tuple[list[Score], dict]:
    """Steps 3-6 for every production model with one gray-data method and every attack in
    ``attacks``. The gray-data seed is 0 for the base model and 1 + the training seed for a
    production model (each model has its own generator). Returns the scores and the gray data."""
    n = int(S["n_per_class"])
    nb = per_dataset(S["n_base"], dataset)
    grays = {"base": D.gray_data(base_model, method, n, S, seed=0, dataset=dataset, profile=profile,
                                 tag=f"{dataset}-{model_tag('base', nb)}-s0")}
    base = {a: att.score(grays["base"], w)[0] for a, (att, w) in attacks.items()}
    out = []
    for p in prods:
        g = D.gray_data(p.model, method, n, S, seed=1 + p.seed, dataset=dataset, profile=profile,
                        tag=f"{dataset}-{model_tag('production', len(p.data), p.kind, p.severity)}-s{p.seed}")
        grays[p.name] = g
        for a, (att, w) in attacks.items():
            s, pc = att.score(g, w)
            out.append(Score(dataset, method, a, p.name, p.kind, p.severity, p.seed, base[a], s, pc.tolist(),
                             g.own_accuracy, affected_classes(p.kind, base_model.num_classes)))
    return out, grays


def add_decisions(scores: list[Score], S: dict) -> list[Score]:
    """Step 7 for every score: the reference is the no-drift controls of the same dataset, method
    and attack — leaving the row's own model out when it is a control, so that a control's alarm is
    a genuine false alarm. The decision is ``drift_decision`` with ``S["decision_rule"]`` (the family
    of the model-level and the K class tests, Holm-corrected together); beside it the previous,
    gated rule (``drift_gated``, ``flagged_gated``) and the slides' rule (``slides_rule_drift``:
    reference = the base gray data's score, same margin)."""
    out = []
    for r in scores:
        ctrl = [c for c in scores if c.kind == "none" and (c.dataset, c.method, c.attack) == (r.dataset, r.method, r.attack)
                and c.production != r.production]
        kw = dict(margin=S["margin"], alpha=S["alpha"], per_class=r.per_class, correction=S["correction"],
                  control_per_class=[c.per_class for c in ctrl] if ctrl else None)
        ref = [c.prod_score for c in ctrl] if ctrl else r.base_score
        d = D.drift_decision(r.prod_score, ref, rule=S["decision_rule"], **kw)
        g = D.drift_decision(r.prod_score, ref, rule="gated", **kw)
        slides = D.drift_decision(r.prod_score, r.base_score, margin=S["margin"])
        out.append(replace(r, drift=d.drift, reference=d.reference, spread=d.spread, threshold=d.threshold,
                           p_value=d.p_value, n_controls=d.n_controls, flagged=d.flagged_classes,
                           class_p=d.class_p_corrected, model_p=d.model_p_value, drift_gated=g.drift,
                           flagged_gated=g.flagged_classes, slides_rule_drift=slides.drift))
    return out


def frame(scores: list[Score]) -> pd.DataFrame:
    """The scores as a table (one row per score; ``classes_exact`` added)."""
    df = pd.DataFrame([asdict(s) for s in scores])
    if len(df):
        df["classes_exact"] = [s.classes_exact for s in scores]
        df["classes_exact_gated"] = [s.classes_exact_gated for s in scores]
    return df


def headline_table(df: pd.DataFrame, seeds: int) -> pd.DataFrame:
    """The slides' Table 2 for our runs: per dataset, gray-data method and attack, the mean ± standard
    deviation over the first ``seeds`` no-drift production models (the slides' production model we
    read as one without drift: they do not say whether theirs was "perturbed or manipulated") of the
    base-gray and the production-gray scores, and how often the slides' rule called drift."""
    rows = []
    ctrl = df[df.kind == "none"]
    for (ds, method, attack), g in ctrl.groupby(["dataset", "method", "attack"], sort=False):
        g = g.sort_values("seed").head(seeds)
        rows.append({"dataset": ds, "gray data": method, "attack": attack, "seeds": len(g),
                     "base gray": g.base_score.mean(), "base gray sd": g.base_score.std(ddof=1) if len(g) > 1 else 0.0,
                     "production gray": g.prod_score.mean(),
                     "production gray sd": g.prod_score.std(ddof=1) if len(g) > 1 else 0.0,
                     "slides' rule: drift": int(g.slides_rule_drift.sum())})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the standard input-drift tests

@dataclass
class InputTest:
    mmd2: float
    mmd_p: float
    ks_p: float
    mmd_drift: bool
    ks_drift: bool


@torch.no_grad()
def _features(model: PaperCNN, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    dev = next(model.parameters()).device
    return torch.cat([model.features(x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)]).numpy()


@cached("drift-input-test")
def input_drift_test(base_model: PaperCNN, reference: TensorData, production: TensorData, *, n: int = 300,
                     n_permutations: int = 200, alpha: float = 0.05, seed: int = 0) -> InputTest:
    """Does the production *input* distribution differ from the reference one? An MMD permutation
    test and Bonferroni-corrected KS tests on the base model's penultimate features of ``n`` images
    from each (labels are not used)."""
    D.check_model(base_model, "base_model")
    r, p = reference.subset(n, seed), production.subset(n, seed + 1)
    fa, fb = _features(base_model, r.x), _features(base_model, p.x)
    mmd = mmd_test(fa, fb, n_permutations, seed)
    ks = ks_test(fa, fb)
    return InputTest(mmd["mmd2"], mmd["p_value"], ks["p_value"], mmd["p_value"] < alpha, ks["p_value"] < alpha)


# --------------------------------------------------------------------------- beyond the drifted classes

@dataclass
class ClassAccuracy:
    """One production model's per-class behaviour on the untouched test set, beside the no-drift
    controls: did the model's idea of a class change — also of a class whose data were not touched?"""
    dataset: str
    production: str
    kind: str
    seed: int
    recall: list                 # per class c: share of the test images of c predicted c
    precision: list              # per class c: share of the test images predicted c that are c (NaN: none)
    recall_fell: tuple = ()      # classes whose recall fell below the controls' (Holm over 2K tests)
    precision_fell: tuple = ()   # ... whose precision fell

    @property
    def changed(self) -> tuple:
        """Classes whose recall or precision on the test set fell beyond the controls' spread."""
        return tuple(sorted(set(self.recall_fell) | set(self.precision_fell)))


def class_accuracy(model: PaperCNN, test: TensorData) -> tuple[np.ndarray, np.ndarray]:
    """Per-class recall and precision of ``model`` on ``test``."""
    from ..train import predict_logits
    D.check_model(model)
    pred = predict_logits(model, test.x, cache=True).argmax(1).numpy()
    y, k = test.y.numpy(), model.num_classes
    recall = np.array([(pred[y == c] == c).mean() if (y == c).any() else np.nan for c in range(k)])
    precision = np.array([(y[pred == c] == c).mean() if (pred == c).any() else np.nan for c in range(k)])
    return recall, precision


def accuracy_changes(prods: list[Production], test: TensorData, S: dict) -> list[ClassAccuracy]:
    """Per production model, the classes whose test recall or precision fell: each class's value
    against the no-drift controls' values for that class (the row's own model left out), by the
    per-class test of step 7 (:func:`~ccc_lib.drift.class_p_values`, same margin and α), Holm over
    the 2K tests of a model (recall and precision of K classes). A control with fewer than 2 other
    controls is not tested (nothing fell)."""
    if sum(p.kind == "none" for p in prods) < 2:
        raise InputError("accuracy_changes needs ≥ 2 no-drift controls among the production models")
    acc = {p.name: class_accuracy(p.model, test) for p in prods}
    out = []
    for p in prods:
        ctrl = [q.name for q in prods if q.kind == "none" and q.name != p.name]
        rec, prec = acc[p.name]
        k = len(rec)
        if len(ctrl) < 2:
            out.append(ClassAccuracy(test.name, p.name, p.kind, p.seed, rec.tolist(), prec.tolist()))
            continue
        raw = np.concatenate([D.class_p_values(v, [acc[c][i] for c in ctrl], margin=S["margin"], alpha=S["alpha"])[0]
                              for i, v in enumerate((rec, prec))])
        fell = np.nan_to_num(D.holm(raw, S["correction"]), nan=1.0) < S["alpha"]
        out.append(ClassAccuracy(test.name, p.name, p.kind, p.seed,
                                 rec.tolist(), prec.tolist(), tuple(int(c) for c in np.flatnonzero(fell[:k])),
                                 tuple(int(c) for c in np.flatnonzero(fell[k:]))))
    return out


# --------------------------------------------------------------------------- where we differ from the slides

#: EMNIST's splits and their class counts (the slides name EMNIST, not the split)
EMNIST_SPLITS = {"digits": 10, "letters": 26, "balanced": 47, "bymerge": 47, "byclass": 62}


def table2_granularity(n_runs: int = 3) -> pd.DataFrame:
    """Can the slides' Table 2 come from one deterministic gray image per class, scored by a
    deterministic attack and averaged over ``n_runs`` runs? Then every value is a multiple of
    1/(n_runs · K). Per value: value × n_runs · K for K = 10 (CIFAR-10) and every EMNIST split's K,
    the distance to the nearest integer, and whether it is within what writing it with 4 decimals
    (rounded or cut: ± 0.0001 × n_runs · K) allows."""
    rows = []
    for ds, att in SLIDES_TABLE2.items():
        ks = {"CIFAR-10": 10} if ds == "cifar10" else {f"EMNIST {k}": v for k, v in EMNIST_SPLITS.items()}
        for attack, vals in att.items():
            for which, v in zip(("base gray", "production gray"), vals):
                for kname, k in ks.items():
                    x = v * n_runs * k
                    rows.append({"dataset": ds, "attack": "rule-based" if attack == "rule" else "black-box",
                                 "value": which, "slides": v, "classes": f"{kname} (K = {k})",
                                 f"value × {n_runs}K": round(x, 2), "off an integer by": round(abs(x - round(x)), 3),
                                 f"a multiple of 1/({n_runs}K)": bool(abs(x - round(x)) <= 1e-4 * n_runs * k + 1e-9)})
    return pd.DataFrame(rows)


def where_we_differ(S: dict, P) -> pd.DataFrame:
    """The "where we differ from the slides" table, generated from the settings ``S`` of profile
    ``P``: every element of the slides' seven steps, the slides' wording (or "not stated"), this
    run's choice, and whose it is — "the slides'", "ours" or "our reading of the slides"."""
    ds = ", ".join(S["datasets"])
    nb = "; ".join(f"{d}: {per_dataset(S['n_base'], d):,} + {per_dataset(S['n_prod'], d):,}" for d in S["datasets"])
    ep = "; ".join(f"{d}: {per_dataset(S['epochs'], d)}" for d in S["datasets"])
    kinds = ", ".join(S["drift_kinds"])
    full = P.name in ("full", "full_dry")
    rows = [
        ("datasets", "CIFAR-10 and EMNIST (Tables 1-2; EMNIST's split not stated)", ds,
         "the slides' (EMNIST balanced: ours)" if full else "ours (the slides' datasets at full)"),
        ("steps 1-2: the split", '"Split training data in original dataset into base data and production data"; '
         "sizes not stated", f"disjoint, class-stratified; base + production images {nb}; the base portion fixed "
         "(seed 0), each production model its own draw of the rest", "the slides' (the sizes and draws: ours)"),
        ("steps 1-2: production data", 'concept drift: data "perturbed or manipulated in some way"; whether their '
         "production data was is not stated",
         f"{len(S['control_seeds'])} no-drift controls and the injected drifts {kinds} (each over "
         f"{len(S['drift_seeds'])} seeds); Table 2 reproduced on the no-drift controls", "ours"),
        ("steps 1-2: the models", '"Create base model" / "production model": architecture and training not stated',
         f"the papers' CNN (chapter 0), Adam, epochs {ep}", "ours"),
        ("steps 3-4: model inversion", '"Run a model inversion attack" to generate "gray data"; method, library and '
         "start image not stated",
         f"ART's MIFace from a grey (0.5) image, max_iter {S['miface_max_iter']}, learning rate {S['miface_lr']}, "
         f"window {S['miface_window']}, threshold {S['miface_threshold']} (one image per class); beside it "
         f"Adam inversion ({S['adam_steps']} steps, {S['n_per_class']} per class) and chapter 1's generator",
         "our reading of the slides (MIFace, grey start); the settings and variants ours"),
        ("steps 5-6: membership inference", '"Rule-Based" and "Black-Box Membership Inference Attacks"; shadow '
         'models "created by feeding random examples [to] the model"',
         f"ART's rule-based attack and its black-box attack (attack model '{S['attack_model']}') on "
         f"{S['n_shadow']} shadow CNNs ({S['shadow_epochs']} epochs) trained on ART's hill-climbing synthesis "
         f"({S['n_synthetic_per_class']} records per class); beside it shadow models on real images",
         "our reading of the slides (ART); the settings and the real-image variant ours"),
        ("drift score", '"accuracy with base gray data" / "base drift score"; how it is computed not stated',
         "the share of gray records the attack calls member of the base model's training data",
         "our reading of the slides"),
        ("step 7: the decision", '"If production drift accuracy score << base drift accuracy score, then concept '
         'drift confirmed"; "<<" not quantified',
         f"the slides' rule with a margin of {S['margin']} for \"<<\"; our decision: the model-level and the K "
         f"per-class scores against the no-drift controls' prediction intervals (leave-one-out), Holm across the "
         f"K + 1 tests at α = {S['alpha']}; flagged classes from the class tests",
         "ours (the margin: our reading of \"<<\")"),
        ("repetitions", '"results averaged from three experiments"; what varies between them not stated',
         f"Table 2: {S['headline_seeds']} no-drift production models (own portion, training and gray-data seed); "
         f"decisions: {len(S['control_seeds'])} controls, {len(S['drift_seeds'])} seeds per drift",
         "the slides' three; what varies: ours"),
        ("implementation", '"our notebook published in the git project repository" (not named)',
         "ccc_lib with IBM's Adversarial Robustness Toolbox 1.20 (ART)", "ours"),
    ]
    return pd.DataFrame(rows, columns=["element", "slides", "this run", "whose"]).set_index("element")
