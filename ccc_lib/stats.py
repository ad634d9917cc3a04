"""Intervals for the book's numbers: AUROC and the paired difference of two AUROCs (DeLong), shares
(Wilson), any statistic (bootstrap) and the spread over training seeds. Every function returns an
:class:`Interval`; ``str(interval)`` is how the book prints it: ``0.9935 [0.991, 0.996]``.

AUROC follows :func:`ccc_lib.metrics.ood_metrics`: OOD is the positive class and a higher score means
"more OOD", so ``AUROC = P(s_out > s_in) + ½ P(s_out = s_in)`` (the Mann-Whitney statistic).

* :func:`auroc_ci` — DeLong, DeLong & Clarke-Pearson (1988)'s variance of the AUROC, computed with
  Sun & Xu (2014)'s fast algorithm from midranks (O(N log N) instead of O(m·n)). The interval is
  built on the logit scale, ``logit(A) ± z·se/(A(1-A))``, mapped back (it stays inside [0, 1] and
  covers better near 1 than ``A ± z·se``; Qin & Hotilovac 2008).
* :func:`auroc_diff_ci` — the **paired** difference A − B of two detectors that scored the *same*
  images: DeLong's covariance of the two AUROCs, ``var(A−B) = var A + var B − 2 cov(A, B)``, interval
  ``(A−B) ± z·se`` clipped to [-1, 1].
* Perfect separation (AUROC exactly 0 or 1) gives DeLong a zero variance, which would claim certainty
  from a finite sample. Then the bound on the side away from the boundary is the one-sided bound
  for "no misordered pair seen" in the worst case, where every misordered pair involves a share ε of
  one side's images lying beyond all of the other side's: the chance of seeing none among ``k`` of them
  is ``(1-ε)^k``; with ``k`` the smaller side (the most conservative), ``ε ≤ 1 - (α/2)^(1/k)`` (≈ 3.7/k
  at 95 %, the "rule of three"). A paired difference whose DeLong variance is zero (both perfect, or identical rankings)
  falls back to ``[lo_A - hi_B, hi_A - lo_B]`` from the two single intervals. ``method`` says which.
* :func:`wilson` — Wilson's score interval for a share ``k/n`` (Wilson 1927).
* :func:`bootstrap_ci` — :func:`scipy.stats.bootstrap`, the percentile interval by default; BCa on
  request (its jackknife evaluates the statistic once per observation: O(N²) for an AUROC), falling
  back to percentile when BCa is undefined (a degenerate bootstrap distribution); ``method`` says which.
* :func:`mean_ci` — Student's t interval for a mean.
* :func:`over_seeds` — mean and spread over training seeds, with an interval that combines the
  variation between seeds and the sampling variation within one (formula in its docstring).

Input checks (:class:`~ccc_lib.checks.InputError`, naming the cause and the fix): fewer than
:data:`MIN_PER_SIDE` scores on a side, a non-finite score, a detector that gives every image the same
score, paired scores of different lengths, a level outside (0, 1).

Cost, 10,000 vs 10,000 scores, measured on 2 Dec 2026 on the 2-core development machine (load
about 12 from other work): :func:`auroc_ci` 0.014 s, :func:`auroc_diff_ci` 0.026 s; the same AUROC's
interval through :func:`bootstrap_ci` (vectorised :func:`auroc`, ``batch=50``) 24-30 s with 2,000
percentile resamples, 161 s with 10,000, and about 300 s with 2,000 BCa resamples (the jackknife). Hence
DeLong for AUROCs and their differences, the bootstrap for statistics without a closed form.

References (book/references.bib): ``delong1988auc``, ``sun2014fastdelong``, ``qin2008aucci``,
``wilson1927``, ``newcombe1998proportion`` (the Wilson test value), ``efron1987bca``."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as _st

from .checks import InputError

__all__ = ["Interval", "MIN_PER_SIDE", "auroc", "auroc_ci", "auroc_diff_ci", "difference_verdict", "wilson",
           "bootstrap_ci", "mean_ci", "over_seeds"]

#: fewest scores per side (in-distribution, OOD) for an AUROC interval: DeLong's normal approximation
#: needs both sides; below this the interval says more than the data can.
MIN_PER_SIDE = 10


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided confidence interval ``[lo, hi]`` at ``level`` (e.g. 0.95).

    method : how it was computed (e.g. "DeLong (logit)", "Wilson", "bootstrap BCa")
    n      : the sample size behind it (images, trials or seeds), when one number says it
    spread : the standard deviation over seeds (:func:`over_seeds` only)"""
    estimate: float
    lo: float
    hi: float
    level: float = 0.95
    method: str = ""
    n: int | None = None
    spread: float | None = None

    def __post_init__(self):
        for name in ("estimate", "lo", "hi", "level"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.n is not None:
            object.__setattr__(self, "n", int(self.n))
        if self.spread is not None:
            object.__setattr__(self, "spread", float(self.spread))
        if not 0 < self.level < 1:
            raise InputError(f"Interval: level must lie in (0, 1), got {self.level!r} (e.g. 0.95)")
        if not (self.lo <= self.hi) and not (math.isnan(self.lo) or math.isnan(self.hi)):
            raise InputError(f"Interval: lo {self.lo!r} > hi {self.hi!r}; pass the bounds in order")

    # ------------------------------------------------------------------ reading
    @property
    def width(self) -> float:
        return self.hi - self.lo

    def excludes(self, x: float) -> bool:
        """True when ``x`` lies outside ``[lo, hi]`` (e.g. ``diff.excludes(0)``: a real difference)."""
        return bool(x < self.lo or x > self.hi)

    def decimals(self) -> int:
        """Decimals for the bounds: enough to show the interval's width with one significant digit
        (0 to 6); the estimate gets one more."""
        w = self.width
        if not math.isfinite(w) or w <= 0:
            return 3
        return int(min(6, max(0, -math.floor(math.log10(w)))))

    def fmt(self, decimals: int | None = None) -> str:
        """``"0.9935 [0.991, 0.996]"``: the bounds rounded *outwards* (the printed interval is never
        narrower than the computed one), the estimate with one more decimal."""
        d = self.decimals() if decimals is None else int(decimals)
        if not all(math.isfinite(v) for v in (self.estimate, self.lo, self.hi)):
            return f"{self.estimate:.{d + 1}f} [{self.lo:.{d}f}, {self.hi:.{d}f}]"
        q = 10.0 ** d
        lo = math.floor(round(self.lo * q, 6)) / q           # round(…, 6): 0.996 stays 0.996, not 0.995
        hi = math.ceil(round(self.hi * q, 6)) / q
        return f"{self.estimate:.{d + 1}f} [{lo:.{d}f}, {hi:.{d}f}]"

    def __str__(self) -> str:
        return self.fmt()

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi, "level": self.level,
                "method": self.method, "n": self.n, "spread": self.spread}

    @classmethod
    def from_dict(cls, d: dict) -> "Interval":
        return cls(**{k: d.get(k) for k in ("estimate", "lo", "hi", "level", "method", "n", "spread")
                      if d.get(k) is not None})


# --------------------------------------------------------------------------- checks

def _level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise InputError(f"level must lie in (0, 1), got {level!r}; e.g. level=0.95 for a 95 % interval")
    return float(level)


def _z(level: float) -> float:
    return float(_st.norm.ppf(0.5 + level / 2))


def _scores(x, name: str, minimum: int = MIN_PER_SIDE) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=float).ravel()
    bad = ~np.isfinite(a)
    if bad.any():
        raise InputError(f"{name}: {int(bad.sum())} non-finite score(s) (NaN or inf) at positions "
                         f"{np.flatnonzero(bad)[:5].tolist()}; fix the detector or drop those images from "
                         f"both sides of the comparison first")
    if len(a) < minimum:
        raise InputError(f"{name}: {len(a)} score(s), but an interval needs at least {minimum} per side; "
                         f"score more images (the interval would claim more than {len(a)} can show)")
    return a


def _not_constant(s_in, s_out, who: str) -> None:
    if np.ptp(np.r_[s_in, s_out]) == 0:
        raise InputError(f"{who}: every image got the same score ({s_in[0]:g}); the detector does not rank "
                         f"the images, so its AUROC (0.5) has no interval. Check that it was fitted and that "
                         f"its scores are not saturated (e.g. a softmax rounded to 1.0)")


# --------------------------------------------------------------------------- AUROC

def auroc(scores_in, scores_out, axis: int = -1):
    """AUROC (OOD positive, higher = more OOD) from midranks, vectorised along ``axis``: the statistic
    :func:`bootstrap_ci` resamples (equal to :func:`ccc_lib.metrics.ood_metrics`' AUROC)."""
    s_in, s_out = np.moveaxis(np.asarray(scores_in, float), axis, -1), np.moveaxis(np.asarray(scores_out, float), axis, -1)
    n, m = s_in.shape[-1], s_out.shape[-1]
    ranks = _st.rankdata(np.concatenate([s_out, s_in], axis=-1), axis=-1)
    return (ranks[..., :m].sum(-1) - m * (m + 1) / 2) / (m * n)


def _delong(pos: np.ndarray, neg: np.ndarray):
    """Fast DeLong (Sun & Xu 2014): ``pos`` k×m (OOD scores of k detectors), ``neg`` k×n (in-distribution).
    Returns the k AUROCs and their k×k covariance.

    With midranks T_z over the pooled m+n scores, T_x within the positives and T_y within the negatives,
    the structural components are V10_i = (T_z,i − T_x,i)/n (share of negatives below positive i, ties
    ½) and V01_j = 1 − (T_z,j − T_y,j)/m (share of positives above negative j); AUROC = mean V10 and
    cov = S10/m + S01/n with S10, S01 the sample covariances (over images) of V10 and V01."""
    k, m = pos.shape
    n = neg.shape[1]
    tz = _st.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    tx, ty = _st.rankdata(pos, axis=1), _st.rankdata(neg, axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    aucs = v10.mean(1)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def _perfect_bound(level: float, m: int, n: int) -> float:
    """Largest misordered-pair share ε compatible with seeing none: ε = 1 − (α/2)^(1/min(m, n))."""
    return 1.0 - ((1 - level) / 2) ** (1.0 / min(m, n))


def auroc_ci(scores_in, scores_out, level: float = 0.95) -> Interval:
    """AUROC of a detector (higher score = more OOD; OOD positive) with DeLong's interval on the logit
    scale; at AUROC 0 or 1 the exact "no misordered pair" bound (module docstring). ``n`` is the
    smaller side's size."""
    level = _level(level)
    s_in, s_out = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    _not_constant(s_in, s_out, "auroc_ci")
    aucs, cov = _delong(s_out[None], s_in[None])
    a, var = float(aucs[0]), float(cov[0, 0])
    m, n = len(s_out), len(s_in)
    if a >= 1.0 or a <= 0.0 or var <= 0:
        eps = _perfect_bound(level, m, n)
        lo, hi = (1.0 - eps, 1.0) if a >= 0.5 else (0.0, eps)
        return Interval(a, min(lo, a), max(hi, a), level, "no misordered pair: exact bound", min(m, n))
    z, se = _z(level), math.sqrt(var)
    lg, se_lg = math.log(a / (1 - a)), se / (a * (1 - a))
    lo, hi = (1 / (1 + math.exp(-(lg + s * z * se_lg))) for s in (-1, 1))
    return Interval(a, lo, hi, level, "DeLong (logit)", min(m, n))


def auroc_diff_ci(a_in, a_out, b_in, b_out, level: float = 0.95) -> Interval:
    """Paired difference AUROC(A) − AUROC(B) of two detectors that scored the SAME images in the SAME
    order (``a_in[i]`` and ``b_in[i]`` belong to one image): DeLong's covariance, interval
    ``(A−B) ± z·sqrt(var A + var B − 2 cov(A, B))`` clipped to [-1, 1] (module docstring for the
    zero-variance case). A difference is a real one only when the interval excludes 0."""
    level = _level(level)
    a_in, a_out = _scores(a_in, "a_in"), _scores(a_out, "a_out")
    b_in, b_out = _scores(b_in, "b_in"), _scores(b_out, "b_out")
    if len(a_in) != len(b_in) or len(a_out) != len(b_out):
        raise InputError(f"auroc_diff_ci: detector A scored {len(a_in)} in-distribution and {len(a_out)} OOD "
                         f"images, detector B {len(b_in)} and {len(b_out)}; a paired difference needs both "
                         f"detectors' scores on the same images in the same order (for different image sets, "
                         f"compare two auroc_ci intervals instead)")
    _not_constant(a_in, a_out, "auroc_diff_ci (detector A)")
    _not_constant(b_in, b_out, "auroc_diff_ci (detector B)")
    aucs, cov = _delong(np.stack([a_out, b_out]), np.stack([a_in, b_in]))
    d = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    m, n = len(a_out), len(a_in)
    if var <= 1e-15:
        ia, ib = auroc_ci(a_in, a_out, level), auroc_ci(b_in, b_out, level)
        return Interval(d, min(ia.lo - ib.hi, d), max(ia.hi - ib.lo, d), level,
                        "paired DeLong variance 0: difference of single intervals", min(m, n))
    h = _z(level) * math.sqrt(var)
    return Interval(d, max(-1.0, d - h), min(1.0, d + h), level, "paired DeLong", min(m, n))


def difference_verdict(diff: Interval) -> str:
    """The one rule for "A vs B" from the interval of A − B: "wins" when it lies above 0, "loses" when
    below, "tie within uncertainty" when it contains 0 (:meth:`ccc_lib.claims.Claims.compare` uses it)."""
    if not isinstance(diff, Interval):
        raise InputError(f"difference_verdict: pass the Interval of A − B (e.g. auroc_diff_ci(...)), got "
                         f"{type(diff).__name__}")
    return "wins" if diff.lo > 0 else "loses" if diff.hi < 0 else "tie within uncertainty"


# --------------------------------------------------------------------------- shares, means, bootstrap

def wilson(k, n, level: float = 0.95) -> Interval:
    """Wilson's score interval for a share ``k/n`` (e.g. the share of counterfeits classified with
    confidence ≥ 0.99): centre ``(p + z²/2n)/(1 + z²/n)``, half-width
    ``z·sqrt(p(1−p)/n + z²/4n²)/(1 + z²/n)``."""
    level = _level(level)
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise InputError(f"wilson: k and n must be whole counts, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise InputError(f"wilson: need 0 ≤ k ≤ n and n ≥ 1, got k={k}, n={n}; pass the count of successes "
                         f"and the number of trials")
    z, p = _z(level), k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), level, "Wilson", n)


def mean_ci(x, level: float = 0.95) -> Interval:
    """Mean with Student's t interval ``x̄ ± t_{n−1}·s/√n`` (at least 2 finite values)."""
    level = _level(level)
    x = _scores(x, "x", minimum=2)
    s = float(np.std(x, ddof=1))
    h = float(_st.t.ppf(0.5 + level / 2, len(x) - 1)) * s / math.sqrt(len(x))
    return Interval(float(x.mean()), float(x.mean()) - h, float(x.mean()) + h, level, "t", len(x), s)


def bootstrap_ci(statistic, *samples, level: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                 paired: bool = False, method: str = "percentile", vectorized: bool = False, batch=None) -> Interval:
    """Bootstrap interval of ``statistic(*samples)`` through :func:`scipy.stats.bootstrap`.

    method    : "percentile" (the default) or "BCa" (bias-corrected and accelerated; its jackknife costs
                one evaluation of ``statistic`` per observation — minutes for an AUROC on 20,000 scores);
                when BCa is undefined (a degenerate bootstrap distribution) the percentile interval is
                returned and ``method`` says so.
    paired    : resample the same indices in every sample (e.g. two detectors' scores of the same
                images); otherwise each sample is resampled on its own (e.g. in- and out-distribution).
    vectorized: ``statistic`` takes an ``axis`` keyword (e.g. :func:`auroc`); much faster.
    The estimate is ``statistic`` on the original samples."""
    level = _level(level)
    if method not in ("BCa", "percentile"):
        raise InputError(f"bootstrap_ci: method must be 'BCa' or 'percentile', got {method!r}")
    if not samples:
        raise InputError("bootstrap_ci: pass at least one sample after the statistic")
    data = [_scores(s, f"sample {i}", minimum=2) for i, s in enumerate(samples)]
    if paired and len({len(s) for s in data}) > 1:
        raise InputError(f"bootstrap_ci: paired=True needs samples of one length, got {[len(s) for s in data]}; "
                         f"pair the observations first or pass paired=False")
    est = float(statistic(*data))
    if not math.isfinite(est):
        raise InputError(f"bootstrap_ci: the statistic is {est} on the data itself; check it and the samples")
    rng = np.random.default_rng(seed)
    kw = dict(confidence_level=level, n_resamples=int(n_resamples), paired=paired, vectorized=vectorized,
              batch=batch, random_state=rng)
    import warnings
    used = method
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                       # BCa's degenerate-distribution warning
        res = _st.bootstrap(tuple(data), statistic, method=method, **kw)
        lo, hi = res.confidence_interval
        if method == "BCa" and not (np.isfinite(lo) and np.isfinite(hi)):
            res = _st.bootstrap(tuple(data), statistic, method="percentile",
                                **{**kw, "random_state": np.random.default_rng(seed)})
            lo, hi = res.confidence_interval
            used = "percentile (BCa undefined)"
    lo, hi = float(lo), float(hi)
    return Interval(est, min(lo, est), max(hi, est), level, f"bootstrap {used}, {int(n_resamples)} resamples",
                    min(len(s) for s in data))


# --------------------------------------------------------------------------- seeds

def over_seeds(estimates, lows=None, highs=None, level: float = 0.95, bounds=None) -> Interval:
    """Mean over k training seeds with an interval combining seed and sampling variation.

    ``estimates``: one number per seed (e.g. an AUROC); ``lows``/``highs``: each seed's own interval
    (sampling variation on the test images, at the same ``level``), optional; or ``estimates`` as a
    list of per-seed :class:`Interval` s (e.g. one :func:`auroc_ci` per seed). With ``x̄`` the mean,
    ``s`` the standard deviation over seeds (``spread``, ddof=1) and ``h_i = (hi_i − lo_i)/2`` the
    seeds' sampling half-widths::

        seed half-width      h_seed = t_{k−1, (1+level)/2} · s / √k
        sampling half-width  h_samp = mean_i h_i             (0 without lows/highs)
        interval             x̄ ± sqrt(h_seed² + h_samp²)

    ``h_samp`` is not divided by √k: the seeds are usually scored on the SAME test images, so their
    sampling errors do not average out (with independent test sets this is conservative). With one
    seed the interval is that seed's own (sampling only; ``method`` says so); without ``lows``/``highs``
    it needs k ≥ 2 and is the t interval over seeds. ``bounds=(lo, hi)`` cuts the interval to the range
    the quantity can take (an AUROC lies in [0, 1], a difference of two in [−1, 1]): the half-widths are
    added symmetrically and may step outside it."""
    level = _level(level)
    if bounds is not None:
        b_lo, b_hi = bounds
        if not b_lo < b_hi:
            raise InputError(f"over_seeds: bounds must be (low, high) with low < high, got {bounds!r}")
        iv = over_seeds(estimates, lows, highs, level)
        return replace(iv, lo=max(iv.lo, b_lo), hi=min(iv.hi, b_hi))
    estimates = list(estimates) if not isinstance(estimates, np.ndarray) else estimates
    if len(estimates) and all(isinstance(e, Interval) for e in estimates):
        if lows is not None or highs is not None:
            raise InputError("over_seeds: the estimates are Intervals already; do not pass lows/highs as well")
        lows, highs = [e.lo for e in estimates], [e.hi for e in estimates]
        estimates = [e.estimate for e in estimates]
    x = _scores(estimates, "estimates", minimum=1)
    k = len(x)
    if (lows is None) != (highs is None):
        raise InputError("over_seeds: give both lows and highs (each seed's interval) or neither")
    h_samp = 0.0
    if lows is not None:
        lo_, hi_ = _scores(lows, "lows", minimum=1), _scores(highs, "highs", minimum=1)
        if not len(lo_) == len(hi_) == k:
            raise InputError(f"over_seeds: {k} estimates, {len(lo_)} lows and {len(hi_)} highs; give one "
                             f"interval per seed")
        if (lo_ > x + 1e-12).any() or (hi_ < x - 1e-12).any():
            raise InputError("over_seeds: some seed's estimate lies outside its own [low, high]; pass the "
                             "lows and highs in the estimates' order")
        h_samp = float(np.mean((hi_ - lo_) / 2))
    elif k < 2:
        raise InputError("over_seeds: one seed and no interval says nothing about the variation; run ≥ 2 "
                         "seeds or pass that seed's interval as lows=[lo], highs=[hi]")
    mean = float(x.mean())
    if k == 1:
        return Interval(mean, float(lo_[0]), float(hi_[0]), level, "one seed: sampling interval only", 1, None)
    s = float(np.std(x, ddof=1))
    h_seed = float(_st.t.ppf(0.5 + level / 2, k - 1)) * s / math.sqrt(k)
    h = math.hypot(h_seed, h_samp)
    what = "seeds (t) ⊕ sampling (mean half-width)" if lows is not None else "seeds (t)"
    return Interval(mean, mean - h, mean + h, level, f"{k} {what}", k, s)
