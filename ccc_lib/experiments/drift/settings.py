"""Chapter 4's settings and claim bounds per profile, the slides' numbers, and the tables that set our
run beside the slides (where we differ, what their Table 2 can be)."""
from __future__ import annotations

import pandas as pd

from ... import drift as D
from ...profiles import Profile, chapter_settings

__all__ = ["SETTINGS", "CLAIM_BOUNDS", "SLIDES_TABLE1", "SLIDES_TABLE2", "DRIFT_KINDS", "settings", "per_dataset", "EMNIST_SPLITS", "table2_granularity", "where_we_differ"]

DRIFT_KINDS = ("none", "swap", "rotate", "new", "rotate-one", "new-one")

#: the slides' numbers ("results averaged from three experiments")
SLIDES_TABLE1 = {"cifar10": (0.5738, 0.5969), "emnist": (0.8200, 0.8246)}     # base, production test accuracy
SLIDES_TABLE2 = {"cifar10": {"rule": (1.0, 0.6666), "black": (1.0, 0.3611)},   # base gray, production gray
                 "emnist": {"rule": (1.0, 0.5352), "black": (0.9516, 0.1713)}}

_COMMON = {
    **D.GRAY_DEFAULTS,
    "headline_method": "miface",          # our reading of the slides' "model inversion" (they name none)
    "variant_methods": ("adam", "generator"),
    "variant_seeds": 1,                   # no-drift models the variant methods also run on (the first ones)
    "decision_method": "adam",            # gray data of the decision experiment (many samples per class)
    "margin": 0.10, "alpha": 0.05, "correction": "holm",   # ours: "≪" made a test (see drift_decision)
    "decision_rule": "beta-binomial",     # model + K classes, one Holm correction ("t-interval": the rule it replaced)
    "attack_model": "nn",                 # ART's default attack model
    "n_shadow": 3, "shadow_epochs": 5,
    "adam_plateau_tol": 0.01,             # Adam inversion: stop once the mean confidence rose < 0.01 in 10 steps (cap adam_steps)
    "channels_last": True,                # train the CNNs channels-last (same models up to float rounding, ~1.5× on a CPU)
    # step 7's false-alarm simulation (beta-binomial shares; records and controls: this run's); the claim is
    # judged over the settings with ρ ≤ sim_rho_claim, the larger ρ shown
    "sim_base_rates": (0.5, 0.7, 0.9, 0.95, "0.5-0.95"), "sim_rhos": (0.0, 0.1, 0.3, 0.5), "sim_rho_claim": 0.3,
    "sim_reps": 2000,
    # the decision's design target, which sets the number of controls: a class falling to this share of its
    # records where every control keeps all of them is called drift in the family at level α
    "design_drop_to": 0.1,
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
              "sim_base_rates": (0.7, 0.95), "sim_rhos": (0.0, 0.3), "sim_reps": 200,
              "n_per_class": 4, "miface_max_iter": 30, "adam_steps": 40, "n_shadow": 2, "shadow_epochs": 2,
              "n_synthetic_per_class": 4, "mmd_permutations": 50, "n_input_test": 100, "n_accuracy_test": 500,
              "generator_overrides": {"steps": 60}},
    "default": {**_COMMON,
                "datasets": ("mnist5k", "fashion_mnist"),
                # mnist5k has 4,000 training images: 1,500 + 1,500 leaves each production draw 1,500 of 2,500
                "n_base": {"mnist5k": 1500, "*": 2000}, "n_prod": {"mnist5k": 1500, "*": 2000}, "n_attack": 1000,
                "epochs": {"*": 4},
                # six controls: what the design target needs (the chapter computes it); two seeds per drift
                "control_seeds": tuple(range(1, 7)), "drift_seeds": (1, 2), "headline_seeds": 3,
                "n_per_class": 20, "adam_steps": 60, "generator_overrides": {"steps": 200, "batch_size": 60},
                "variant_methods": ("adam",)},     # chapter 1's generator as gray data: at smoke and full only
    "full": {**_COMMON,
             "datasets": ("cifar10", "emnist"),
             "n_base": {"*": 20000}, "n_prod": {"*": 20000}, "n_attack": 5000, "epochs": {"cifar10": 30, "*": 10},
             # 18 controls: what the design target needs for EMNIST's 47 classes at 50 records (controls_needed)
             "control_seeds": tuple(range(1, 19)), "drift_seeds": (1, 2, 3), "headline_seeds": 3, "variant_seeds": 3,
             "n_per_class": 50, "miface_max_iter": 1000, "adam_steps": 500, "n_shadow": 3, "shadow_epochs": 10,
             "mmd_permutations": 500, "n_input_test": 1000},
    "full_dry": {"n_base": {"*": 120}, "n_prod": {"*": 120}, "n_attack": 1000, "epochs": {"*": 1},
                 "control_seeds": (1, 2, 3), "drift_seeds": (1,), "headline_seeds": 2, "variant_seeds": 1,
                 "sim_base_rates": (0.7, 0.95), "sim_rhos": (0.0, 0.3), "sim_reps": 100,
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
    others = [m for m in S["variant_methods"] if m != S["decision_method"]]
    from .decision import controls_needed

    def need(d):                  # the book's datasets have 10 classes, EMNIST (balanced) 47
        k = EMNIST_SPLITS["balanced"] if d == "emnist" else 10
        return controls_needed(int(S["n_per_class"]), k, S["alpha"], S["design_drop_to"])
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
         f"Adam inversion (at most {S['adam_steps']} steps"
         + (f", stopped earlier once the records' mean confidence rose by less than {S['adam_plateau_tol']:g} in "
            "10 steps" if S.get("adam_plateau_tol") else "") + f"; {S['n_per_class']} per class)"
         + (" and chapter 1's generator" if "generator" in S["variant_methods"] else ""),
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
         f"per-class counts of member records against the no-drift controls' counts (beta-binomial predictive "
         f"p-values, leave-one-out), Holm across the K + 1 tests at α = {S['alpha']}, a test firing only on a drop "
         f"larger than the margin; its false-alarm rate simulated", "ours (the margin: our reading of \"<<\")"),
        ("repetitions", '"results averaged from three experiments"; what varies between them not stated',
         f"Table 2: {S['headline_seeds']} no-drift production models (own portion, training and gray-data seed); "
         + (f"the variant gray data other than the decision's ({', '.join(others)}) on {S['variant_seeds']} of them"
            f"{' (one model)' if S['variant_seeds'] == 1 else ''}" if others else
            "chapter 1's generator as gray data not run at this profile (smoke and full run it)")
         + f"; decisions: {len(S['control_seeds'])} controls (the decision's design target needs "
         f"{', '.join(f'{need(d)} ({d})' for d in S['datasets'])}), {len(S['drift_seeds'])} seeds per drift"
         + ("" if full else f" (full: {len(SETTINGS['full']['control_seeds'])} controls, "
                            f"{len(SETTINGS['full']['drift_seeds'])} seeds)"), "the slides' three; what varies: ours"),
        ("implementation", '"our notebook published in the git project repository" (not named)',
         "ccc_lib with IBM's Adversarial Robustness Toolbox 1.20 (ART)", "ours"),
    ]
    return pd.DataFrame(rows, columns=["element", "slides", "this run", "whose"]).set_index("element")
