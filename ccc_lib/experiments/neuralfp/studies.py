"""The chapter's studies of the method itself: per-layer AUROC in the slides' quantity and ours, the
combined score against the best single layer (with its paired interval), and the false alarms of the
one-out rule under each thresholding."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import neuralfp as nfp
from .settings import auroc

__all__ = ["per_layer_auroc", "combined_vs_layers", "combined_vs_layers_ci", "false_alarm_table", "RAW", "ZABS"]


#: the two per-layer quantities: the slides' (one-sided AUROC of the raw error, larger error = OOD, so
#: values below 0.5 mean OOD errors are *lower*) and ours (the two-sided |z_l| the one-out rule thresholds)
RAW, ZABS = "raw e_l (one-sided, the slides' quantity)", "|z_l| (two-sided, ours)"


def per_layer_auroc(det: nfp.NeuralFP, err_in: np.ndarray, err_out: np.ndarray) -> pd.DataFrame:
    """One row per tapped layer with two AUROCs: of its raw error ``e_l`` one-sided (:data:`RAW`, the
    slides' quantity, below 0.5 allowed) and of its two-sided score ``|z_l|`` (:data:`ZABS`, what the
    one-out rule thresholds), then one row per combined score (its AUROC in both columns: the number
    each column's layers are compared with)."""
    zi, zo = det.layer_z(errors=err_in), det.layer_z(errors=err_out)
    rows = {f"layer {j + 1}: {t}": {RAW: auroc(err_in[:, j], err_out[:, j]),
                                    ZABS: auroc(np.abs(zi[:, j]), np.abs(zo[:, j]))} for j, t in enumerate(det.taps)}
    for c in nfp.COMBINES:
        v = auroc(det.score_errors(err_in, c), det.score_errors(err_out, c))
        rows[f"combined: {c}"] = {RAW: v, ZABS: v}
    return pd.DataFrame(rows).T


def combined_vs_layers(table: pd.DataFrame, combine: str = "max") -> dict:
    """From :func:`per_layer_auroc`'s table: per quantity, the combined AUROC, the best single layer and
    its AUROC, and the margin combined − best layer (≥ 0: the combination is at least as good as every
    layer, judged on that quantity)."""
    layers = table[table.index.str.startswith("layer ")]
    comb = float(table.loc[f"combined: {combine}", ZABS])
    out = {}
    for q in (RAW, ZABS):
        best = layers[q].idxmax()
        out[q] = {"combined": comb, "best layer": best, "best": float(layers.loc[best, q]),
                  "margin": comb - float(layers.loc[best, q])}
    return out


def combined_vs_layers_ci(det: nfp.NeuralFP, err_in: np.ndarray, err_out: np.ndarray, level: float = 0.95) -> dict:
    """:func:`combined_vs_layers` with, per quantity, ``"diff"``: DeLong's paired interval of AUROC(combined
    one-out score) − AUROC(best single layer) on the same images (the layer scored by its raw error for
    :data:`RAW`, by ``|z_l|`` for :data:`ZABS`). The best layer is picked on these images: the strongest
    single-layer competitor, so the comparison favours the layers."""
    from ...stats import auroc_diff_ci
    t = per_layer_auroc(det, err_in, err_out)
    cv = combined_vs_layers(t)
    c_in, c_out = det.score_errors(err_in, "max"), det.score_errors(err_out, "max")
    zi, zo = np.abs(det.layer_z(errors=err_in)), np.abs(det.layer_z(errors=err_out))
    for q, (li, lo) in ((RAW, (err_in, err_out)), (ZABS, (zi, zo))):
        j = list(t.index).index(cv[q]["best layer"])
        cv[q]["diff"] = auroc_diff_ci(c_in, c_out, li[:, j], lo[:, j], level)
        # the symmetric (Wald) interval of the earlier edition, only to show where the change of method matters
        cv[q]["diff_wald"] = auroc_diff_ci(c_in, c_out, li[:, j], lo[:, j], level, method="wald")
    return cv


def false_alarm_table(det: nfp.NeuralFP, err_in: np.ndarray, err_outs: dict, alpha: float | None = None,
                      rules=("literal", "bonferroni", "joint", "upper", "mahalanobis")) -> pd.DataFrame:
    """For each thresholding rule: the share of (fresh) in-distribution inputs flagged (false alarms)
    and of each OOD set flagged. ``"literal"``, ``"bonferroni"``, ``"joint"``: the one-out rule with
    different per-layer thresholds; ``"upper"`` / ``"mahalanobis"``: our variants (joint calibration).
    Restores the detector's rule and combination afterwards."""
    keep = (det.rule, det.alpha, det.combine)
    rows = []
    try:
        for rule in rules:
            det.combine = rule if rule in ("upper", "mahalanobis") else "max"
            det.set_rule("joint" if rule in ("upper", "mahalanobis") else rule, alpha)
            row = {"rule": rule, "alpha": det.alpha,
                   "false alarms (ID test)": float(det.is_outlier(errors=err_in).mean()),
                   "mean layers flagged (ID)": (float(det.flags_from_errors(err_in).sum(1).mean())
                                                if det.combine != "mahalanobis" else np.nan)}
            for name, e in err_outs.items():
                row[f"detected: {name}"] = float(det.is_outlier(errors=e).mean())
            rows.append(row)
    finally:
        det.combine = keep[2]
        det.set_rule(keep[0], keep[1])
    return pd.DataFrame(rows).set_index("rule")
