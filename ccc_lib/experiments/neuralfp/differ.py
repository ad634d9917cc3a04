"""Which images are held out from what, and 'where we differ from the slides': both generated from the
settings and the run's choices."""
from __future__ import annotations

import pandas as pd

from .settings import VALIDATION_OOD, Config

__all__ = ["held_out", "where_we_differ"]


def held_out(S: dict, counts: dict, val_source: dict | None = None) -> pd.DataFrame:
    """Which images are held out from what: one row per image set of the chapter, saying where it is
    drawn from and whether the classifier, the autoencoders and the choices on validation data saw it.
    ``counts``: ``{set: "n per model"}`` text from the run; ``val_source``: ``{model: "test" | "train"}``
    (:func:`split_validation`), where each model's validation ID images come from."""
    test_m = [m for m, v in (val_source or {}).items() if v == "test"]
    train_m = [m for m, v in (val_source or {}).items() if v != "test"]
    from_test, from_train = "test split, kept apart from the evaluation images", "training split, held out before fitting"
    if test_m and train_m:
        drawn = f"{from_test} ({', '.join(test_m)}); {from_train} ({', '.join(train_m)})"
        seen = f"no ({', '.join(test_m)}); yes, trained on them ({', '.join(train_m)})"
    elif test_m:
        drawn, seen = from_test, "no"
    else:
        drawn, seen = from_train, "yes, trained on them"
    rows = [
        ("autoencoder fit", "training split (minus the validation images where they come from it) minus calibration",
         "yes, trained on them", "yes", "fit the per-layer autoencoders (slides' steps 1-2)"),
        ("calibration", f"training split: {S['calib_frac']:.0%} of the autoencoders' share, held out from them",
         "yes, trained on them", "no", "m_l, s_l and the one-out thresholds (slides' step 3)"),
        ("validation ID", drawn, seen, "no",
         "every detector's free parameters; the counterfeit rows' thresholds"),
        ("validation OOD", "; ".join(VALIDATION_OOD), "no", "no", "every detector's free parameters"),
        ("test ID", "test split", "no", "no", "evaluation only (AUROC, false alarms)"),
        ("test OOD and spatial shifts", "test splits of the OOD sets; shifts of test ID images", "no", "no",
         "evaluation only"),
    ]
    df = pd.DataFrame(rows, columns=["images", "drawn from", "classifier trained on them",
                                     "autoencoders trained on them", "used for"]).set_index("images")
    df["count"] = [counts.get(i, "") for i in df.index]
    return df


def where_we_differ(S: dict, P, chosen: dict, val_source: dict | None = None) -> pd.DataFrame:
    """The "where we differ from the slides" table, generated from the settings and the choices made
    on validation data (``chosen``: ``{dataset: Config}``; ``val_source``: ``{dataset: "test" | "train"}``,
    where each model's validation ID images come from, see :func:`split_validation`)."""
    src = {"test": "a part of the test split kept apart from the evaluation images (unseen by the classifier)",
           "train": "training images held out before fitting (the classifier's own training images)"}
    val_text = ("; ".join(f"{ds}: {src[v]}" for ds, v in val_source.items()) if val_source else src["train"])
    cfgs = ", ".join(Config(*c).label for c in S["configs"])
    pick = "; ".join(f"{ds}: {c.label}" for ds, c in chosen.items())
    rows = [
        ("classifier", "models with 7 (MNIST) and 11 (Fashion-MNIST) layers in the per-layer tables; "
         "architecture not given",
         "the papers' 3-block CNN for both (chapter 0)"),
        ("tapped layers", "layers 1-7 and 1-11 of those models (which modules count as a layer: not given)",
         f"tuned on validation over: {cfgs}; chosen: {pick}"),
        ("fingerprint model", "autoencoders (shape not given)", "MLP d → h → k → h → d, k = max(2, d/8), Adam, MSE, "
         f"cosine learning rate over at most {S['epochs']} epochs"
         + (f", stopped earlier when every layer's loss curve passes the plateau test (mean loss of the last "
            f"{S['plateau']['frac']:.0%} of the epochs {S['plateau']['tol']:.0%} or less below the {S['plateau']['frac']:.0%} "
            f"before, tested from epoch {S['plateau']['min_epochs']} on)" if S.get("plateau") else "")),
        ("step 3: reconstruction errors for the thresholds", "\"compute the reconstruction errors of these "
         "autoencoders applied on training data\"",
         f"on a calibration part of the training images ({S['calib_frac']:.0%}) held out from the autoencoders "
         "(the classifier was trained on them)"),
        ("thresholds τ_l, μ_l", "not given", f"ours: joint rule, one t on max_l |z_l| for a {S['alpha']:.0%} "
         "false-alarm budget on the calibration images; our literal reading (each layer's μ_l, τ_l at its own α/2 "
         "and 1 − α/2 quantiles) and a Bonferroni split are shown beside it"),
        ("score behind the ROC", "not given", "max_l |z_l| (the one-out rule as its threshold t moves)"),
        ("per-layer AUROC", "one-sided AUROC of the raw reconstruction error (values below 0.5 printed, e.g. "
         "0.1961)", "both: the raw error one-sided (the slides' quantity) and |z_l| two-sided (ours, what the "
         "rule thresholds); \"combined ≥ every layer\" judged on each"),
        ("ε grid of the baselines' tables", "rows 0.0005, 0.001, 0.014, 0.002, 0.005, 0.01 (0.0014 in place of "
         "0.014 in the Fashion-MNIST Mahalanobis table)", f"ε ∈ {list(S['eps_grid'])}: both 0.0014 and 0.014 are "
         "run, each slides number is shown at the ε it is printed with"),
        ("\"ODIN [1]\"", "tables titled ODIN [1]; their reference [1] is Hendrycks & Gimpel's baseline (maximum "
         "softmax probability); temperature not given",
         "MSP (Hendrycks & Gimpel) and ODIN (Liang et al.: temperature and input perturbation) as two rows; "
         "the slides' ODIN [1] tables beside our ODIN ε table"),
        ("validation data", "not given", f"ID: {val_text}; against the validation OOD set"),
        ("thresholds of the counterfeit rows", "not in the slides", "each detector's (1 − α) quantile on the "
         "validation ID images"),
        ("OOD images for the MNIST/Fashion models", "CIFAR-10, SVHN, the other dataset (conversion not given)",
         f"{', '.join(sorted({o for v in P.ood_sets.values() for o in v}))}; colour images converted by us to "
         "grey-scale (luminance) and resized to the model's input"),
        ("near-OOD spatial shifts", "not in the slides", "flips, 90° rotation, translation of ID test images (ours)"),
        ("NeuralFP against the baselines", "\"outperforms\" Mahalanobis and ODIN (their text; no interval)",
         f"the one-out row over {S['nfp_seeds']} autoencoder seeds against EVERY validation-tuned baseline on the "
         "same images: ahead only when ahead of each (every paired interval above 0), behind when behind one after "
         "Holm's correction; no baseline picked by its test AUROC"),
        ("baselines' parameters", "ε grid shown per OOD set, T not given",
         f"ODIN T ∈ {list(S['temperatures'])} and ε, Mahalanobis ε ∈ {list(S['eps_grid'])}, chosen on validation"),
        ("training images", "not given", "all but the validation split" if S["fit_limit"] is None
         else f"at most {S['fit_limit']:,} for the autoencoders"),
    ]
    return pd.DataFrame(rows, columns=["what", "slides", "this chapter"]).set_index("what")
