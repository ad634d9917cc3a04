"""Metrics shared by the chapters: calibration (ECE, reliability bins) and OOD detection
(AUROC, AUPR, FPR at 95% TPR; OOD is the positive class, higher score = more OOD)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .checks import InputError
from .utils import to_numpy

__all__ = ["reliability_bins", "expected_calibration_error", "ood_metrics", "fpr_at_tpr",
           "pairwise_mean_distance", "nearest_neighbour_distance", "mmd_test", "ks_test", "holm"]


def reliability_bins(probs, labels, n_bins: int = 15) -> dict:
    """Per confidence bin: mean confidence, accuracy and count (equal-width bins on [0, 1])."""
    probs, labels = to_numpy(probs), to_numpy(labels)
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    safe = np.maximum(count, 1)
    return {"edges": edges, "count": count,
            "confidence": np.bincount(idx, conf, n_bins) / safe,
            "accuracy": np.bincount(idx, correct, n_bins) / safe}


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    b = reliability_bins(probs, labels, n_bins)
    w = b["count"] / max(b["count"].sum(), 1)
    return float(np.sum(w * np.abs(b["accuracy"] - b["confidence"])))


def fpr_at_tpr(scores_in, scores_out, tpr: float = 0.95) -> float:
    """False-positive rate on in-distribution data when ``tpr`` of the OOD data is detected."""
    s_in, s_out = np.asarray(scores_in, float), np.asarray(scores_out, float)
    thr = np.quantile(s_out, 1 - tpr)
    return float(np.mean(s_in >= thr))


def ood_metrics(scores_in, scores_out) -> dict:
    """AUROC, AUPR (OOD positive) and FPR@95TPR for scores where higher = more OOD."""
    s_in, s_out = to_numpy(scores_in).astype(float).ravel(), to_numpy(scores_out).astype(float).ravel()
    if not (np.isfinite(s_in).all() and np.isfinite(s_out).all()):
        raise ValueError("scores contain NaN or inf; check the detector")
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    s = np.r_[s_in, s_out]
    return {"auroc": float(roc_auc_score(y, s)), "aupr": float(average_precision_score(y, s)),
            "fpr95": fpr_at_tpr(s_in, s_out)}


def roc(scores_in, scores_out):
    y = np.r_[np.zeros(len(scores_in)), np.ones(len(scores_out))]
    fpr, tpr, _ = roc_curve(y, np.r_[to_numpy(scores_in), to_numpy(scores_out)])
    return fpr, tpr


def pairwise_mean_distance(x) -> float:
    """Mean Euclidean distance between distinct rows (a diversity measure)."""
    import torch
    x = torch.as_tensor(to_numpy(x), dtype=torch.float32).flatten(1)
    if len(x) < 2:
        return 0.0
    d = torch.cdist(x, x)
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def nearest_neighbour_distance(query, reference, batch: int = 1024) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row."""
    import torch
    q = torch.as_tensor(to_numpy(query), dtype=torch.float32).flatten(1)
    r = torch.as_tensor(to_numpy(reference), dtype=torch.float32).flatten(1)
    out = [torch.cdist(q[i:i + batch], r).min(1).values for i in range(0, len(q), batch)]
    return torch.cat(out).numpy() if out else np.empty(0)


# --------------------------------------------------------------------------- two-sample tests (chapter 4)

def _mmd2_of_splits(k, first):
    """Unbiased MMD² for each row of the boolean matrix ``first`` (P×N: which of the N pooled samples
    form the first sample), from the pooled kernel matrix ``k`` (N×N) — all P splits in one product."""
    a = first.to(k.dtype)
    n = a.sum(1)
    m = k.shape[0] - n
    ka = a @ k                                  # P×N: a_pᵀ K
    s_aa = (ka * a).sum(1)                      # a_pᵀ K a_p
    s_a1 = ka.sum(1)                            # a_pᵀ K 1
    tr_a = a @ k.diagonal()
    total, trace = k.sum(), k.diagonal().sum()
    s_bb, tr_b = total - 2 * s_a1 + s_aa, trace - tr_a
    s_ab = s_a1 - s_aa
    return (s_aa - tr_a) / (n * (n - 1)) + (s_bb - tr_b) / (m * (m - 1)) - 2 * s_ab / (n * m)


def mmd_test(a, b, n_permutations: int = 200, seed: int = 0) -> dict:
    """Two-sample test: unbiased MMD² with an RBF kernel (median-heuristic bandwidth) and a
    permutation p-value (Gretton et al. 2012). ``a``, ``b``: N×D and M×D samples. The permutations
    relabel the pooled samples; their statistics are computed together as quadratic forms of the
    pooled kernel matrix."""
    import torch
    a = torch.as_tensor(np.asarray(a), dtype=torch.float64).flatten(1)
    b = torch.as_tensor(np.asarray(b), dtype=torch.float64).flatten(1)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"mmd_test needs at least 2 samples on each side, got {len(a)} and {len(b)}")
    z = torch.cat([a, b])
    d2 = torch.cdist(z, z).pow(2)
    pos = d2[d2 > 0]
    bw = pos.median() if len(pos) else torch.tensor(1.0, dtype=torch.float64)
    k = torch.exp(-d2 / bw)
    n, total = len(a), len(z)
    observed = torch.zeros(1, total, dtype=torch.bool)
    observed[0, :n] = True
    stat = float(_mmd2_of_splits(k, observed)[0])
    g = torch.Generator().manual_seed(int(seed))
    null = torch.empty(0, dtype=torch.float64)
    for start in range(0, int(n_permutations), 256):          # bounded memory: 256 splits at a time
        perms = torch.stack([torch.randperm(total, generator=g)
                             for _ in range(min(256, int(n_permutations) - start))])
        first = torch.zeros(len(perms), total, dtype=torch.bool)
        first.scatter_(1, perms[:, :n], True)
        null = torch.cat([null, _mmd2_of_splits(k, first)])
    pval = (1 + int((null >= stat).sum())) / (1 + len(null))
    return {"mmd2": stat, "p_value": float(pval)}


def ks_test(a, b) -> dict:
    """Two-sample Kolmogorov-Smirnov test per feature, Bonferroni-corrected (smallest p × #features)."""
    from scipy.stats import ks_2samp
    a, b = np.asarray(a, float).reshape(len(a), -1), np.asarray(b, float).reshape(len(b), -1)
    ps = np.array([ks_2samp(a[:, j], b[:, j]).pvalue if np.ptp(np.r_[a[:, j], b[:, j]]) > 0 else 1.0
                   for j in range(a.shape[1])])
    return {"p_value": float(min(1.0, ps.min() * len(ps))), "n_features": int(len(ps))}


def holm(p_values, method: str = "holm") -> np.ndarray:
    """Family-wise corrected p-values over the finite entries of ``p_values`` (NaN stays NaN, and
    does not count in the family of k tests). Bonferroni: ``min(1, k · p_i)``. Holm (step-down):
    with the p-values sorted ``p_(1) ≤ … ≤ p_(k)``, ``p̃_(i) = max_{j ≤ i} min(1, (k - j + 1) · p_(j))``
    — never larger than Bonferroni's, same family-wise error rate."""
    if method not in ("holm", "bonferroni"):
        raise InputError(f"method must be 'holm' or 'bonferroni', got {method!r}")
    p = np.asarray(p_values, float).ravel()
    ok = np.isfinite(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise InputError(f"p_values must lie in [0, 1] (NaN for a missing test), got {p_values!r}")
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(ok)
    k = len(idx)
    if method == "bonferroni":
        out[idx] = np.minimum(1.0, k * p[idx])
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    out[order] = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * p[order]))
    return out
