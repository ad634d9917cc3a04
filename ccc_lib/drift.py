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
(overall and per intended class). The inversion algorithms live in :mod:`ccc_lib.drift_inversion`,
the plumbing around ART (its classifier wrapper, the shadow data and models, the black-box attack
model) in :mod:`ccc_lib.drift_art`, the p-value machinery (generic statistics) in :mod:`ccc_lib.metrics`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .cache import fingerprint, load_or_compute
from .metrics import (holm, prediction_interval_p, raw_class_p, class_p_values,   # step 7's statistics
                      check_class_scores, betabinom_p_values)
from .checks import InputError, check_choice, check_fraction, check_images, check_labels, check_positive
from .data import TensorData
from .drift_art import (ShadowSynthesisError, art_classifier, check_model, fit_black_box,  # ART plumbing
                        shadow_dataset, shadow_records, synthetic_shadow_records)
from .drift_inversion import GrayData, finish_gray, gray_adam, gray_generator, gray_miface   # steps 3-4's algorithms
from .models import PaperCNN
from .train import get_classifier

__all__ = ["ShadowSynthesisError", "GRAY_METHODS", "SHADOW_DATA", "make_splits", "train_model", "art_classifier", "GrayData", "gray_miface",
           "gray_adam", "gray_generator", "gray_data", "MembershipAttacks", "synthetic_shadow_records",
           "DriftDecision", "DECISION_RULES", "holm", "class_p_values", "family_test", "drift_decision", "DriftReport", "detect_drift", "check_model"]

GRAY_METHODS = ("miface", "adam", "generator")
SHADOW_DATA = ("synthetic", "real")

#: the inversion settings :func:`gray_data` reads (the chapter's SETTINGS hold them per profile)
GRAY_DEFAULTS = {"miface_max_iter": 100, "miface_lr": 1.0, "miface_window": 50, "miface_threshold": 0.99,
                 "adam_steps": 100, "adam_lr": 0.05, "adam_noise": 0.05, "adam_plateau_tol": None,
                 "generator_overrides": {}}


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


# --------------------------------------------------------------------------- steps 3-4: gray data

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
                          seed=seed, plateau_tol=S["adam_plateau_tol"])
        return {"x": g.x, "y": g.y, "loss": torch.tensor(g.info.get("loss", []), dtype=torch.float64)}

    if not cache:
        d = compute()
        return finish_gray(model, d["x"], d["y"], method, from_cache=False, loss=d["loss"].tolist())
    config = {"model": fingerprint(model), "method": method, "n": int(n_per_class),
              "seed": int(seed) if method == "adam" else 0,
              "settings": {k: S[k] for k in sorted(S) if k.startswith(method)}, "version": 3}
    d = load_or_compute(f"drift-gray-{method}", config, compute)
    return finish_gray(model, d["x"], d["y"], method, from_cache=d["from_cache"], loss=d["loss"].tolist())


# --------------------------------------------------------------------------- steps 5-6: membership inference

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
        if shadow is not None:             # the black-box attack: shadow records, ART's shadow models
            check_choice(shadow, "shadow", SHADOW_DATA)
            check_positive(n_shadow, "n_shadow", integer=True)
            check_positive(shadow_epochs, "shadow_epochs", integer=True)
            x, y, self.shadow_info = shadow_records(target, shadow, attack_data, n_synthetic_per_class, seed=seed,
                                                    min_confidence=synthetic_min_confidence,
                                                    max_iterations=synthetic_max_iterations)
            d, key = shadow_dataset(target, x, y, int(n_shadow), int(shadow_epochs), seed)
            self._fit_args, self._key = (d, attack_model, seed), {**key, "attack_model": attack_model}
            self.shadow_info.update({"n_shadow": n_shadow, "shadow_epochs": shadow_epochs, "n_records": len(x),
                                     "n_members": len(d["mx"]), "n_nonmembers": len(d["nx"]),
                                     "attack_model": attack_model})

    @property
    def has_black_box(self) -> bool:
        """Whether a black-box attack was set up (shadow data given or synthesised)."""
        return self._fit_args is not None

    @property
    def black_box(self):
        """ART's ``MembershipInferenceBlackBox`` fitted on the shadow dataset (None without one):
        fitted on first use, seeded and on its own random stream."""
        if self._black_box is None and self._fit_args is not None:
            self._black_box = fit_black_box(self.estimator, *self._fit_args)
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

    ``control_scores``: the drift scores of n no-drift production models (ours: each on its own
    production portion) — or one number, the base gray data's score (the slides' rule, n = 0); with
    fewer than 2 controls drift iff ``score < reference - margin``, no p-value (NaN), no class test.

    **The family (``rule="beta-binomial"``, the decision).** A score is a share of ``records`` gray
    records per class called member. Each class's count and the model-level count (their sum) are
    judged against the controls' counts by :func:`family_test` (beta-binomial predictive p-values), K + 1
    tests corrected together (Holm, or Bonferroni). A test fires when its corrected p-value is < α
    **and** its share lies more than ``margin`` below the controls' mean: ``margin`` (ours, our reading
    of "≪") is the smallest drop called drift. Drift iff a test fires; ``p_value``: the smallest
    corrected p-value among the tests beyond the margin (1.0 if none), so drift iff ``p_value < α``. A
    drift confined to one class (≤ 1/K of the model-level range) is seen by its class test. The
    family-wise false-alarm rate is ≤ α under beta-binomial shares as far as chapter 4's simulation
    shows — no theorem. Without ``per_class`` the model-level score alone is tested (``records``: all
    its records).

    **The rule it replaced (``rule="t-interval"``, kept to compare).** Each share against the controls'
    Student-t prediction interval (:func:`ccc_lib.metrics.prediction_interval_p`, σ floored at
    ``margin / t_{1-α, n-1}``), K + 1 p-values Holm-corrected, drift iff one is < α: under beta-binomial
    shares of 20 records its family-wise false-alarm rate exceeds α, and with controls that agree
    exactly it is a fixed threshold (a drop of about 1.9 × ``margin`` for K = 10), not the margin."""
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
