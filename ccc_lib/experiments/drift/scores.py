"""Chapter 4's steps 3-7 over the experiment: the attacks against the base model, every (model, gray-data
method, attack) scored, step 7's decisions, and the slides' Table 2 for our runs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import pandas as pd

from ... import drift as D
from ...data import TensorData
from ...models import PaperCNN
from .models import Production, affected_classes, model_tag
from .settings import per_dataset

__all__ = ["build_attacks", "Score", "score_productions", "add_decisions", "frame", "headline_table"]

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
    drift_before: bool | None = None  # the rule it replaced (t prediction intervals on the shares)
    flagged_before: tuple = ()
    slides_rule_drift: bool | None = None

    @property
    def classes_exact(self) -> bool:
        return set(self.flagged) == set(self.affected)

    @property
    def classes_exact_before(self) -> bool:
        return set(self.flagged_before) == set(self.affected)


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
    of the model-level and the K class tests, Holm-corrected together, on the ``S["n_per_class"]``
    gray records per class); beside it the rule it replaced, ``"t-interval"`` (``drift_before``,
    ``flagged_before``), and the slides' rule (``slides_rule_drift``: reference = the base gray data's
    score, same margin)."""
    out = []
    for r in scores:
        ctrl = [c for c in scores if c.kind == "none" and (c.dataset, c.method, c.attack) == (r.dataset, r.method, r.attack)
                and c.production != r.production]
        kw = dict(margin=S["margin"], alpha=S["alpha"], per_class=r.per_class, correction=S["correction"],
                  control_per_class=[c.per_class for c in ctrl] if ctrl else None, records=int(S["n_per_class"]))
        ref = [c.prod_score for c in ctrl] if ctrl else r.base_score
        d = D.drift_decision(r.prod_score, ref, rule=S["decision_rule"], **kw)
        g = D.drift_decision(r.prod_score, ref, rule="t-interval", **kw)
        slides = D.drift_decision(r.prod_score, r.base_score, margin=S["margin"])
        out.append(replace(r, drift=d.drift, reference=d.reference, spread=d.spread, threshold=d.threshold,
                           p_value=d.p_value, n_controls=d.n_controls, flagged=d.flagged_classes,
                           class_p=d.class_p_corrected, model_p=d.model_p_value, drift_before=g.drift,
                           flagged_before=g.flagged_classes, slides_rule_drift=slides.drift))
    return out


def frame(scores: list[Score]) -> pd.DataFrame:
    """The scores as a table (one row per score; ``classes_exact`` added)."""
    df = pd.DataFrame([asdict(s) for s in scores])
    if len(df):
        df["classes_exact"] = [s.classes_exact for s in scores]
        df["classes_exact_before"] = [s.classes_exact_before for s in scores]
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
