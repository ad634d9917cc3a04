"""Metrics shared by the chapters: calibration (ECE, reliability bins), OOD detection (AUROC, AUPR,
FPR at 95% TPR; OOD is the positive class, higher score = more OOD), two-sample tests, a score judged
against control scores (a one-sided prediction interval and its p-value, per class, with a family-wise
correction), and counts of "yes" records judged against control counts (beta-binomial predictive
p-values)."""
from __future__ import annotations

import functools
import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .checks import InputError
from .utils import to_numpy

__all__ = ["reliability_bins", "expected_calibration_error", "ood_metrics", "fpr_at_tpr",
           "pairwise_mean_distance", "nearest_neighbour_distance", "mmd_test", "ks_test", "holm",
           "t_interval_p", "prediction_interval_p", "raw_class_p", "class_p_values", "check_class_scores",
           "BB_PRIOR", "betabinom_p_values", "betabinom_fit"]


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
    does not count in the family of k tests); an N-d array holds one family per row of its last axis.
    Bonferroni: ``min(1, k · p_i)``. Holm (step-down): with the p-values sorted ``p_(1) ≤ … ≤ p_(k)``,
    ``p̃_(i) = max_{j ≤ i} min(1, (k - j + 1) · p_(j))`` — never larger than Bonferroni's, same
    family-wise error rate."""
    if method not in ("holm", "bonferroni"):
        raise InputError(f"method must be 'holm' or 'bonferroni', got {method!r}")
    p = np.atleast_1d(np.asarray(p_values, float))
    ok = np.isfinite(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise InputError(f"p_values must lie in [0, 1] (NaN for a missing test), got {p_values!r}")
    k = ok.sum(-1, keepdims=True)
    if method == "bonferroni":
        return np.where(ok, np.minimum(1.0, k * p), np.nan)
    order = np.argsort(np.where(ok, p, np.inf), axis=-1, kind="stable")     # missing tests last
    ps = np.take_along_axis(p, order, -1)
    j = np.arange(p.shape[-1])
    adj = np.maximum.accumulate(np.where(j < k, np.minimum(1.0, (k - j) * np.nan_to_num(ps)), 0.0), axis=-1)
    out = np.empty_like(p)
    np.put_along_axis(out, order, np.where(j < k, adj, np.nan), -1)
    return out


# --------------------------------------------------------------------------- a score against control scores

def t_interval_p(values, controls, margin: float = 0.0, alpha: float = 0.05) -> np.ndarray:
    """The one-sided p-value of a *low* value against n ≥ 2 control values under a normal model (a
    Student-t prediction interval), vectorised: ``values`` (..., K), ``controls`` (..., n, K) →
    (..., K). With the controls' mean m and standard deviation s per column,

        p = P(T_{n-1} ≤ (value - m) / σ),   σ = max(s · sqrt(1 + 1/n), margin / t_{1-α, n-1}),

    so ``p < α ⇔ value < m - max(margin, t_{1-α, n-1} · s · sqrt(1 + 1/n))``; ``margin`` only sets
    the scale when the controls agree (s = 0). On shares of a few records in [0, 1] the normal model
    does not hold (chapter 4: its family false-alarm rate exceeds α under beta-binomial shares); the
    chapter keeps it only to show the rule it replaced (:func:`betabinom_p_values`)."""
    from scipy import stats
    x, c = np.asarray(values, float), np.asarray(controls, float)
    n = c.shape[-2]
    m, s = c.mean(-2), c.std(-2, ddof=1)
    t = float(stats.t.ppf(1 - alpha, n - 1))
    sigma = np.maximum(s * math.sqrt(1 + 1 / n), margin / t)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = stats.t.cdf((x - m) / np.where(sigma > 0, sigma, 1.0), n - 1)
    return np.where(sigma > 0, p, (x >= m).astype(float))


def prediction_interval_p(score: float, controls, margin: float = 0.0, alpha: float = 0.05):
    """One score against n ≥ 2 control scores by :func:`t_interval_p`: ``(m, s, half, p)`` — the
    controls' mean and standard deviation, the half-width ``t_{1-α, n-1} · s · sqrt(1 + 1/n)`` of the
    one-sided 1 - α prediction interval for one new control score (normal model), and the p-value."""
    from scipy import stats
    ctrl = np.asarray(controls, float).ravel()
    n = len(ctrl)
    if n < 2 or not np.isfinite(ctrl).all():
        raise InputError(f"prediction_interval_p needs n ≥ 2 finite control scores, got {controls!r}")
    if not (0 < alpha < 1) or margin < 0:
        raise InputError(f"alpha must lie in (0, 1) and margin be ≥ 0, got alpha={alpha!r}, margin={margin!r}")
    m, s = float(ctrl.mean()), float(ctrl.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha, n - 1)) * s * math.sqrt(1 + 1 / n)
    return m, s, half, float(t_interval_p([score], ctrl[:, None], margin, alpha)[0])


def check_class_scores(per_class, control_per_class, n: int):
    """Checked ``(per_class, control_per_class)``: K values in [0, 1] (NaN for a class without
    records) and n × K control values; the latter None when n < 2 (no per-class test possible)."""
    if per_class is None:
        if control_per_class is not None:
            raise InputError("control_per_class= given without per_class=: pass the production model's per-class "
                             "scores too")
        return None, None
    pc = np.asarray(per_class, float)
    if pc.ndim != 1 or pc.size == 0 or ((pc[np.isfinite(pc)] < 0) | (pc[np.isfinite(pc)] > 1)).any() \
            or np.isinf(pc).any():
        raise InputError(f"per_class must be K per-class scores in [0, 1] (NaN for a class without records), "
                         f"got {per_class!r}")
    if n < 2:
        return pc, None
    if control_per_class is None:
        raise InputError(f"per_class= with {n} controls needs control_per_class= ({n} × {len(pc)}: each control's "
                         "per-class scores) to test the classes")
    cpc = np.asarray(control_per_class, float)
    if cpc.shape != (n, len(pc)):
        raise InputError(f"control_per_class must have shape ({n}, {len(pc)}) — one row of per-class scores per "
                         f"control — got {cpc.shape}")
    fin = cpc[np.isfinite(cpc)]
    if np.isinf(cpc).any() or (fin < 0).any() or (fin > 1).any():
        raise InputError("control_per_class must hold scores in [0, 1] (NaN for a class without records)")
    return pc, cpc


def raw_class_p(pc: np.ndarray, cpc: np.ndarray | None, margin: float, alpha: float) -> np.ndarray:
    """Per class c: :func:`t_interval_p` of ``pc[c]`` against column c of ``cpc`` (NaN where the
    class has no value, or any control lacks one, or there are no controls)."""
    raw = np.full(len(pc), np.nan)
    if cpc is None:
        return raw
    ok = np.isfinite(pc) & np.isfinite(cpc).all(0)
    if not ok.any():
        return raw
    if len(cpc) < 2 or not (0 < alpha < 1) or margin < 0:
        prediction_interval_p(pc[ok][0], cpc[:, ok][:, 0], margin, alpha)      # raises the clear error
    raw[ok] = t_interval_p(pc[ok], cpc[:, ok], margin, alpha)
    return raw


def class_p_values(per_class, control_per_class, *, margin: float = 0.1, alpha: float = 0.05,
                   correction: str = "holm") -> tuple[np.ndarray, np.ndarray]:
    """Each of K per-class values in [0, 1] (a per-class accuracy) against its n ≥ 2 controls' values
    for that class: ``(p, p̃)``, the one-sided :func:`t_interval_p` p-values (normal model, same
    margin floor) and the same corrected across the K classes (:func:`holm`, or Bonferroni). "Class c
    fell" iff ``p̃_c < α``: family-wise level α as far as the normal model holds (shares of a few
    hundred test images; not for a few gray records, see :func:`betabinom_p_values`)."""
    if correction not in ("holm", "bonferroni"):
        raise InputError(f"correction must be 'holm' or 'bonferroni', got {correction!r}")
    if not (0 < alpha < 1):
        raise InputError(f"alpha must lie in (0, 1), got {alpha!r}")
    if margin < 0:
        raise InputError(f"margin must be ≥ 0, got {margin!r}")
    cpc = np.asarray(control_per_class, float)
    n = len(cpc) if cpc.ndim == 2 else 0
    if n < 2:
        raise InputError(f"control_per_class must be n ≥ 2 rows of per-class values (n × K), got shape {cpc.shape}")
    pc, cpc = check_class_scores(per_class, cpc, n)
    raw = raw_class_p(pc, cpc, margin, alpha)
    return raw, holm(raw, correction)


# --------------------------------------------------------------------------- counts against control counts

#: the prior of :func:`betabinom_p_values`: the mean μ ~ Beta(½, ½) and the over-dispersion ρ with density
#: ∝ ρ^(rho_power - 1) on [rho_min, rho_max], on a grid of n_mu × n_rho points (equal-mass μ, log-spaced ρ)
BB_PRIOR = {"n_mu": 48, "n_rho": 40, "rho_min": 1e-3, "rho_max": 0.7, "rho_power": 0.5}


@functools.lru_cache(maxsize=32)
def _bb_grid(records: int, n_mu: int, n_rho: int, rho_min: float, rho_max: float, rho_power: float):
    """The beta-binomial pmf of 0..records at every grid point ((records + 1) × G) and the log prior (G)."""
    from scipy import stats
    from scipy.special import betaln, gammaln, logsumexp
    mu = stats.beta.ppf((np.arange(n_mu) + 0.5) / n_mu, 0.5, 0.5)
    rho = np.geomspace(rho_min, rho_max, n_rho)
    a, b = (mu[:, None] * (1 / rho - 1)).ravel(), ((1 - mu[:, None]) * (1 / rho - 1)).ravel()
    k = np.arange(records + 1)[:, None]
    logpmf = (gammaln(records + 1) - gammaln(k + 1) - gammaln(records - k + 1)
              + betaln(k + a, records - k + b) - betaln(a, b))
    lprior = np.broadcast_to(rho_power * np.log(rho), (n_mu, n_rho)).ravel()    # log-spaced: ρ^power ⇔ density ρ^(power-1)
    return logpmf, np.exp(logpmf), lprior - logsumexp(lprior)


def betabinom_p_values(counts, control_counts, records: int, prior: dict | None = None):
    """How low is a count of "yes" among ``records`` records, per class and in total, for a model like
    the controls? Vectorised: ``counts`` (..., K) and ``control_counts`` (..., n, K), integers in
    [0, records] → ``(p_class (..., K), p_total (...))``.

    The model: a model's K per-class rates are drawn independently, class c's from a beta distribution
    with mean μ_c and over-dispersion ρ_c (intra-class correlation: the variance of a share of m records
    is μ(1 - μ)(1 + (m - 1)ρ)/m), and its count from the binomial with that rate — beta-binomial counts,
    bounded in [0, records], skewed near 0 and 1. Per class, the posterior of (μ_c, ρ_c) given the n
    controls' counts (prior :data:`BB_PRIOR`: μ ~ Beta(½, ½), ρ with density ∝ 1/√ρ on [0.001, 0.9],
    on a grid) gives the predictive distribution of a new model's count; ``p_class`` is its lower tail
    at the count, ``P(K_new ≤ count | controls)``. ``p_total``: the same for the sum over the K classes
    (the predictive of the sum is the convolution of the classes' predictives). These are not exact
    tests: their calibration is a simulation (chapter 4's ``false_alarm_simulation``: with ρ's prior
    ∝ 1/ρ instead, the family false-alarm rate exceeds α at ρ ≥ 0.15)."""
    from scipy.special import logsumexp
    P = {**BB_PRIOR, **(prior or {})}
    if isinstance(records, bool) or not isinstance(records, (int, np.integer)) or records < 1:
        raise InputError(f"records must be a positive integer (gray records per class), got {records!r}")
    k0, kc = np.asarray(counts), np.asarray(control_counts)
    if kc.ndim < 2 or k0.shape != kc.shape[:-2] + kc.shape[-1:] or kc.shape[-2] < 1:
        raise InputError(f"counts (..., K) and control_counts (..., n, K) do not match: {k0.shape}, {kc.shape}")
    for name, v in (("counts", k0), ("control_counts", kc)):
        if not np.issubdtype(v.dtype, np.integer) or v.min(initial=0) < 0 or v.max(initial=0) > records:
            raise InputError(f"{name} must be integers in [0, {records}] (records called 'yes'), got {v!r}")
    logpmf, pmf, lprior = _bb_grid(int(records), P["n_mu"], P["n_rho"], P["rho_min"], P["rho_max"], P["rho_power"])
    hist = (kc[..., None] == np.arange(records + 1)).sum(-3).astype(float)     # (..., K, records + 1)
    lpost = hist @ logpmf + lprior                                              # (..., K, G)
    post = np.exp(lpost - logsumexp(lpost, axis=-1, keepdims=True))
    f = post @ pmf.T                                                            # predictive pmf (..., K, records + 1)
    p_class = np.take_along_axis(np.cumsum(f, -1), k0[..., None], -1)[..., 0]
    size = f.shape[-2] * records + 1
    nfft = 1 << int(np.ceil(np.log2(size)))
    g = np.fft.irfft(np.prod(np.fft.rfft(f, nfft, axis=-1), axis=-2), nfft, axis=-1)[..., :size].clip(0)
    p_total = np.take_along_axis(np.cumsum(g, -1), k0.sum(-1)[..., None], -1)[..., 0]
    return np.clip(p_class, 0.0, 1.0), np.clip(p_total, 0.0, 1.0)


def betabinom_fit(control_counts, records: int, prior: dict | None = None) -> dict:
    """Per class, what the controls' counts (n × K, integers in [0, records]) say about the beta-binomial
    of :func:`betabinom_p_values` (same prior and grid): the posterior means of the mean μ and of the
    over-dispersion ρ, and ρ's posterior 95 % quantile. Arrays of K values."""
    from scipy.special import logsumexp
    P = {**BB_PRIOR, **(prior or {})}
    kc = np.asarray(control_counts)
    if kc.ndim != 2 or not np.issubdtype(kc.dtype, np.integer) or kc.min(initial=0) < 0 or kc.max(initial=0) > records:
        raise InputError(f"control_counts must be n × K integers in [0, {records}], got {control_counts!r}")
    logpmf, _, lprior = _bb_grid(int(records), P["n_mu"], P["n_rho"], P["rho_min"], P["rho_max"], P["rho_power"])
    from scipy import stats
    mu = np.repeat(stats.beta.ppf((np.arange(P["n_mu"]) + 0.5) / P["n_mu"], 0.5, 0.5), P["n_rho"])
    rho = np.tile(np.geomspace(P["rho_min"], P["rho_max"], P["n_rho"]), P["n_mu"])
    hist = (kc[..., None] == np.arange(records + 1)).sum(0).astype(float)          # K × (records + 1)
    lpost = hist @ logpmf + lprior
    post = np.exp(lpost - logsumexp(lpost, axis=-1, keepdims=True))               # K × G
    order = np.argsort(rho, kind="stable")
    cdf = np.cumsum(post[:, order], -1)
    hi = rho[order][np.minimum((cdf < 0.95).sum(-1), len(rho) - 1)]
    return {"mu": post @ mu, "rho": post @ rho, "rho_hi": hi}
