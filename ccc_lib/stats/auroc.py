"""AUROC intervals: one detector (:func:`auroc_ci`), the paired difference of two detectors on the same
images (:func:`auroc_diff_ci`), and the mean over one-vs-rest classes that share their test images
(:func:`class_mean_ci`). The package docstring gives the methods and references.

One engine serves all three: DeLong's structural components turned into a per-image influence ψ,
summed over the images. For a detector scoring ``m`` OOD (positive) and ``n`` in-distribution images,
with V10_i the share of negatives below positive i (ties ½) and V01_j the share of positives above
negative j (Sun & Xu 2014, from midranks)::

    ψ(positive i) = (V10_i − A)/sqrt(m(m−1)),   ψ(negative j) = (V01_j − A)/sqrt(n(n−1))

so that Σ ψ² is DeLong's variance of A exactly and Σ ψ_A ψ_B DeLong's covariance of two detectors on
the same images. A mean over K classes whose detectors score the SAME images (one-vs-rest: every test
image is an inlier of one class and an outlier of the K−1 others) has the influence
ψ̄(image) = (1/K) Σ_c ψ_c(image) and the variance Σ_images ψ̄² — the covariances between the classes'
AUROCs through the shared images included, which treating the classes as independent misses."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

from ..checks import InputError
from .core import MIN_PER_SIDE, Interval, check_level, check_ranking, check_scores, z_value

__all__ = ["auroc", "auroc_ci", "auroc_diff_ci", "class_mean_ci"]


def auroc(scores_in, scores_out, axis: int = -1):
    """AUROC (OOD positive, higher = more OOD) from midranks, vectorised along ``axis``: the statistic
    :func:`ccc_lib.stats.bootstrap_ci` resamples (equal to :func:`ccc_lib.metrics.ood_metrics`' AUROC)."""
    s_in, s_out = np.moveaxis(np.asarray(scores_in, float), axis, -1), np.moveaxis(np.asarray(scores_out, float), axis, -1)
    n, m = s_in.shape[-1], s_out.shape[-1]
    ranks = _st.rankdata(np.concatenate([s_out, s_in], axis=-1), axis=-1)
    return (ranks[..., :m].sum(-1) - m * (m + 1) / 2) / (m * n)


# --------------------------------------------------------------------------- the engine (batched)

def _influence(pos: np.ndarray, neg: np.ndarray):
    """``pos`` (..., m) OOD scores, ``neg`` (..., n) in-distribution scores of one detector (any leading
    batch shape). Returns the AUROCs (...) and ψ over the positives (..., m) and the negatives (..., n)."""
    m, n = pos.shape[-1], neg.shape[-1]
    tz = _st.rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    v10 = (tz[..., :m] - _st.rankdata(pos, axis=-1)) / n
    v01 = 1.0 - (tz[..., m:] - _st.rankdata(neg, axis=-1)) / m
    a = v10.mean(-1)
    return a, (v10 - a[..., None]) / math.sqrt(m * (m - 1)), (v01 - a[..., None]) / math.sqrt(n * (n - 1))


def _eps(level, k):
    """Largest misordered-pair share ε compatible with seeing none among k images: 1 − (α/2)^(1/k)."""
    return 1.0 - ((1 - level) / 2) ** (1.0 / np.asarray(k, float))


def _logit_ci(a, var, level, k, floor=None):
    """Vectorised: DeLong's interval on the logit scale ``logit(A) ± z·se/(A(1−A))``; where the variance is
    0 (a perfect or reversed ranking: A = 1 or 0) the exact "no misordered pair" bound ``1 − ε`` for the
    smaller side's ``k`` images (or ``floor``'s ε where given)."""
    a, var = np.asarray(a, float), np.asarray(var, float)
    z = z_value(level)
    eps = _eps(level, k) if floor is None else np.asarray(floor, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.maximum(var, 0)) / (a * (1 - a))
        lg = np.log(a / (1 - a))
        lo, hi = 1 / (1 + np.exp(-(lg - z * se))), 1 / (1 + np.exp(-(lg + z * se)))
    degenerate = (var <= 0) | (a >= 1) | (a <= 0)
    up = a >= 0.5
    lo = np.where(degenerate, np.where(up, np.minimum(1 - eps, a), 0.0), lo)
    hi = np.where(degenerate, np.where(up, 1.0, np.maximum(eps, a)), hi)
    return lo, hi, degenerate


def _mover(a, b, la, ua, lb, ub, r):
    """Zou & Donner's MOVER for A − B from each side's own interval and their correlation ``r``."""
    d = a - b
    lo = d - np.sqrt(np.maximum((a - la) ** 2 + (ub - b) ** 2 - 2 * r * (a - la) * (ub - b), 0))
    hi = d + np.sqrt(np.maximum((ua - a) ** 2 + (b - lb) ** 2 - 2 * r * (ua - a) * (b - lb), 0))
    return np.maximum(lo, -1.0), np.minimum(hi, 1.0)


#: fewest misordered (OOD below in-distribution) pairs on each side for MOVER to use DeLong's correlation
#: of the two AUROCs; with fewer it is not estimable (it rests on a handful of images) and is set to 0,
#: conservative for positively correlated detectors. Chosen on the simulations of tests/test_stats_verdicts.py
#: (.999 vs .99 at n = 50 covered 0.88 with noise correlation 0.95 when r was always used, 0.96 with this rule).
MIN_PAIRS_FOR_CORRELATION = 20


def _diff(a, b, va, vb, cov, level, k_a, k_b, method, floor_a=None, floor_b=None, pairs_a=None, pairs_b=None):
    """Vectorised interval of A − B (paired): "logit" = MOVER on the two logit-scale intervals (covers near
    AUROC 1 at small n; DeLong's correlation used only where each side has at least
    :data:`MIN_PAIRS_FOR_CORRELATION` misordered pairs ``pairs_a``/``pairs_b``), "wald" =
    ``(A−B) ± z·sqrt(va + vb − 2cov)``. A zero variance of the difference (identical rankings, both
    perfect) falls back to the difference of the single intervals."""
    la, ua, da = _logit_ci(a, va, level, k_a, floor_a)
    lb, ub, db = _logit_ci(b, vb, level, k_b, floor_b)
    vd = va + vb - 2 * cov
    if method == "wald":
        h = z_value(level) * np.sqrt(np.maximum(vd, 0))
        lo, hi = np.maximum(a - b - h, -1.0), np.minimum(a - b + h, 1.0)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where((va > 0) & (vb > 0), cov / np.sqrt(va * vb), 0.0)
        if pairs_a is not None:
            r = np.where((pairs_a < MIN_PAIRS_FOR_CORRELATION) | (pairs_b < MIN_PAIRS_FOR_CORRELATION), 0.0, r)
        lo, hi = _mover(a, b, la, ua, lb, ub, np.clip(r, -1, 1))
    flat = vd <= 1e-15
    return np.where(flat, la - ub, lo), np.where(flat, ua - lb, hi), flat


def _pairs(a, mn):
    """Misordered pairs behind an AUROC ``a`` over ``mn`` pairs (the smaller of A and 1 − A, ties ½)."""
    return np.minimum(a, 1 - a) * mn


def _method(method: str) -> str:
    if method not in ("logit", "wald"):
        raise InputError(f"method must be 'logit' (MOVER on logit-scale intervals, the default) or 'wald', "
                         f"got {method!r}")
    return method


# --------------------------------------------------------------------------- one detector, two detectors

def auroc_ci(scores_in, scores_out, level: float = 0.95) -> Interval:
    """AUROC of a detector (higher score = more OOD; OOD positive) with DeLong's interval on the logit
    scale; at AUROC 0 or 1 the exact "no misordered pair" bound. ``n`` is the smaller side's size."""
    level = check_level(level)
    s_in, s_out = check_scores(scores_in, "scores_in"), check_scores(scores_out, "scores_out")
    check_ranking(s_in, s_out, "auroc_ci")
    a, p_out, p_in = _influence(s_out, s_in)
    var = float((p_out ** 2).sum() + (p_in ** 2).sum())
    k = min(len(s_in), len(s_out))
    lo, hi, degenerate = _logit_ci(a, var, level, k)
    what = "no misordered pair: exact bound" if degenerate else "DeLong (logit)"
    return Interval(float(a), float(lo), float(hi), level, what, k)


def auroc_diff_ci(a_in, a_out, b_in, b_out, level: float = 0.95, method: str = "logit") -> Interval:
    """Paired difference AUROC(A) − AUROC(B) of two detectors that scored the SAME images in the SAME
    order (``a_in[i]`` and ``b_in[i]`` belong to one image), DeLong's covariance between them.

    method : "logit" (default): MOVER (Zou & Donner 2008) on the two logit-scale intervals of
             :func:`auroc_ci` with DeLong's correlation — asymmetric near AUROC 1, where the symmetric
             interval under-covers at small n (issue 38: .999 vs .99 with 50 images a side, 0.83);
             "wald": ``(A−B) ± z·sqrt(var A + var B − 2 cov(A, B))`` clipped to [−1, 1].
    A difference whose variance is 0 (both rankings perfect, or identical) gets the difference of the
    two single intervals ``[lo_A − hi_B, hi_A − lo_B]``; ``method`` says which. A difference is a real
    one only when the interval excludes 0."""
    level, method = check_level(level), _method(method)
    a_in, a_out = check_scores(a_in, "a_in"), check_scores(a_out, "a_out")
    b_in, b_out = check_scores(b_in, "b_in"), check_scores(b_out, "b_out")
    if len(a_in) != len(b_in) or len(a_out) != len(b_out):
        raise InputError(f"auroc_diff_ci: detector A scored {len(a_in)} in-distribution and {len(a_out)} OOD "
                         f"images, detector B {len(b_in)} and {len(b_out)}; a paired difference needs both "
                         f"detectors' scores on the same images in the same order (for different image sets, "
                         f"compare two auroc_ci intervals instead)")
    check_ranking(a_in, a_out, "auroc_diff_ci (detector A)")
    check_ranking(b_in, b_out, "auroc_diff_ci (detector B)")
    a, pa_out, pa_in = _influence(a_out, a_in)
    b, pb_out, pb_in = _influence(b_out, b_in)
    pa, pb = np.r_[pa_out, pa_in], np.r_[pb_out, pb_in]
    k = min(len(a_in), len(a_out))
    mn = len(a_in) * len(a_out)
    lo, hi, flat = _diff(a, b, pa @ pa, pb @ pb, pa @ pb, level, k, k, method,
                         pairs_a=_pairs(a, mn), pairs_b=_pairs(b, mn))
    what = ("paired DeLong variance 0: difference of single intervals" if flat else
            "paired DeLong, MOVER on logit-scale intervals" if method == "logit" else "paired DeLong")
    d = float(a - b)
    return Interval(d, min(float(lo), d), max(float(hi), d), level, what, k)


# --------------------------------------------------------------------------- the mean over classes

def _masks(y, classes, outliers, n: int):
    y = np.asarray(y).ravel()
    if len(y) != n:
        raise InputError(f"class_mean_ci: {len(y)} labels for {n} scored images; give one label per image")
    inl = np.stack([y == c for c in classes])
    if outliers is None:
        out = ~inl
    else:
        out = np.stack([np.asarray(outliers[c] if isinstance(outliers, dict) else outliers[i], bool).ravel()
                        for i, c in enumerate(classes)])
        if out.shape != inl.shape:
            raise InputError(f"class_mean_ci: outliers must give one mask of {n} images per class")
        if (out & inl).any():
            raise InputError("class_mean_ci: an image is both an inlier (its label) and an outlier of one class")
    for i, c in enumerate(classes):
        if inl[i].sum() < MIN_PER_SIDE or out[i].sum() < MIN_PER_SIDE:
            raise InputError(f"class_mean_ci: class {c!r} has {int(inl[i].sum())} inliers and {int(out[i].sum())} "
                             f"outliers; an interval needs at least {MIN_PER_SIDE} of each")
    return inl, out


def _stack(scores, classes, name):
    if isinstance(scores, dict):
        classes = list(scores) if classes is None else list(classes)
        missing = [c for c in classes if c not in scores]
        if missing:
            raise InputError(f"class_mean_ci: {name} has no scores for classes {missing}")
        arr = np.stack([np.asarray(scores[c], float).ravel() for c in classes])
    else:
        arr = np.asarray(scores, float)
        if arr.ndim != 2:
            raise InputError(f"class_mean_ci: {name} must be {{class: scores of every image}} or a (classes × "
                             f"images) array, got shape {arr.shape}")
        classes = list(range(len(arr))) if classes is None else list(classes)
        if len(classes) != len(arr):
            raise InputError(f"class_mean_ci: {len(classes)} classes for {len(arr)} rows of {name}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(f"class_mean_ci: {int(bad.sum())} non-finite score(s) in {name}; fix the detector first")
    return arr, classes


def _class_influence(s, inl, out):
    """``s`` (..., K, N) scores; per class c its AUROC (inliers ``inl[c]`` negative, ``out[c]`` positive) and
    ψ over all N images (0 for an image in neither group). Returns (..., K) AUROCs and (..., K, N) ψ."""
    aucs = np.empty(s.shape[:-1])
    psi = np.zeros(s.shape)
    for c in range(s.shape[-2]):
        a, p_out, p_in = _influence(s[..., c, out[c]], s[..., c, inl[c]])
        aucs[..., c] = a
        psi[..., c, out[c]], psi[..., c, inl[c]] = p_out, p_in
    return aucs, psi


def _perfect_floor(aucs, psi, k_c, level):
    """For classes ranked perfectly (ψ ≡ 0, AUROC 0 or 1) the variance their exact bound implies, (ε/z)²
    with ε at level 1 − α/K, summed as if independent and divided by K² (conservative); 0 elsewhere."""
    K = aucs.shape[-1]
    eps = _eps(1 - (1 - level) / K, k_c)
    flat = (psi ** 2).sum(-1) <= 0
    return ((flat * (eps / z_value(level)) ** 2).sum(-1)) / K ** 2, eps


def _class_mean(sa, inl, out, sb=None, level=0.95, method="logit"):
    """Batched core of :func:`class_mean_ci`: ``sa``/``sb`` (..., K, N). Returns (estimate, lo, hi)."""
    k_c = np.minimum(inl.sum(1), out.sum(1))
    mn = inl.sum(1) * out.sum(1)
    aa, pa = _class_influence(sa, inl, out)
    fa, eps_a = _perfect_floor(aa, pa, k_c, level)
    ma, qa = aa.mean(-1), pa.mean(-2)
    va = (qa ** 2).sum(-1) + fa
    floor_a = eps_a.mean()                                 # all K perfect: the Bonferroni exact bound
    if sb is None:
        lo, hi, _ = _logit_ci(ma, va, level, None, floor_a)
        return ma, np.minimum(lo, ma), np.maximum(hi, ma)
    ab, pb = _class_influence(sb, inl, out)
    fb, eps_b = _perfect_floor(ab, pb, k_c, level)
    mb, qb = ab.mean(-1), pb.mean(-2)
    vb = (qb ** 2).sum(-1) + fb
    lo, hi, _ = _diff(ma, mb, va, vb, (qa * qb).sum(-1), level, None, None, method, floor_a, eps_b.mean(),
                      _pairs(aa, mn).sum(-1), _pairs(ab, mn).sum(-1))
    d = ma - mb
    return d, np.minimum(lo, d), np.maximum(hi, d)


def class_mean_ci(scores, y, scores_b=None, *, classes=None, outliers=None, level: float = 0.95,
                  method: str = "logit") -> Interval:
    """The mean over one-vs-rest classes of a detector's AUROC — or, with ``scores_b``, of the paired
    difference AUROC(A) − AUROC(B) — with an interval that accounts for the classes sharing their test
    images (module docstring: DeLong's components pooled per image; Hanley-McNeil-free, no independence
    between classes assumed).

    scores   : ``{class: scores of all N test images}`` from that class's detector (higher = more OOD),
               or a (K × N) array with ``classes`` naming its rows (default 0..K−1)
    y        : the N images' labels; the inliers of class c are ``y == c``
    scores_b : the same for detector B (the same images, same order) for the difference A − B
    outliers : optional ``{class: bool mask of the N images}``: the outliers of each class (default: every
               image not of that class); e.g. chapter 1's counterfeits claiming the class, appended to
               the pool with a label that is no class
    method   : "logit" (default): the mean on the logit scale, a difference by MOVER on the two
               logit-scale intervals; "wald": a symmetric difference (the mean stays on the logit scale)
    A class ranked perfectly adds the variance of its exact bound (conservative). ``n`` is the number of
    images N. Coverage on correlated one-vs-rest simulations: ``tests/test_stats_verdicts.py``."""
    level, method = check_level(level), _method(method)
    sa, classes = _stack(scores, classes, "scores")
    sb = None
    if scores_b is not None:
        sb, _ = _stack(scores_b, classes, "scores_b")
        if sb.shape != sa.shape:
            raise InputError(f"class_mean_ci: scores {sa.shape} and scores_b {sb.shape} must cover the same "
                             f"classes and images")
    inl, out = _masks(y, classes, outliers, sa.shape[1])
    for s, who in ((sa, "A"), (sb, "B")):
        if s is not None:
            for i, c in enumerate(classes):
                check_ranking(s[i, inl[i]], s[i, out[i]], f"class_mean_ci (detector {who}, class {c!r})")
    est, lo, hi = _class_mean(sa[None], inl, out, None if sb is None else sb[None], level, method)
    what = (f"mean over {len(classes)} classes, per-image influence (DeLong components over the shared images), "
            + ("logit" if sb is None else "MOVER on logit-scale intervals" if method == "logit" else "Wald"))
    return Interval(float(est[0]), float(lo[0]), float(hi[0]), level, what, sa.shape[1])
