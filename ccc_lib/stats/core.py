"""The core of :mod:`ccc_lib.stats`: the :class:`Interval` every function returns, the input checks,
Wilson's interval for a share, Student's t interval for a mean, the bootstrap, the spread over training
seeds, and reading an interval back as a p-value or at another level (:func:`p_value`, :func:`rescale`).
The package docstring (``ccc_lib/stats/__init__.py``) says which function to use for what."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as _st

from ..checks import InputError

__all__ = ["Interval", "MIN_PER_SIDE", "wilson", "bootstrap_ci", "mean_ci", "over_seeds", "p_value", "rescale",
           "ONE_MODEL"]

#: the label of an interval from one trained model (one seed): the test images' sampling error only
ONE_MODEL = "one model"

#: fewest scores per side (in-distribution, OOD) for an AUROC interval: DeLong's normal approximation
#: needs both sides; below this the interval says more than the data can.
MIN_PER_SIDE = 10


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided confidence interval ``[lo, hi]`` at ``level`` (e.g. 0.95).

    method : how it was computed (e.g. "DeLong (logit)", "Wilson", "bootstrap BCa")
    n      : the sample size behind it (images, trials or seeds), when one number says it
    spread : the standard deviation over seeds (:func:`over_seeds` only)
    seeds  : how many trained models (seeds) stand behind it, where that matters (:func:`over_seeds`);
             1 is "one model" (:attr:`one_model`): the test images' sampling error only, no seed variation
    df     : the degrees of freedom of its reference distribution (Student's t) where it has one, None for
             the normal (:func:`p_value` and :func:`rescale` read it)"""
    estimate: float
    lo: float
    hi: float
    level: float = 0.95
    method: str = ""
    n: int | None = None
    spread: float | None = None
    seeds: int | None = None
    df: float | None = None

    def __post_init__(self):
        for name in ("estimate", "lo", "hi", "level"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.n is not None:
            object.__setattr__(self, "n", int(self.n))
        for name, kind in (("spread", float), ("seeds", int), ("df", float)):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, kind(getattr(self, name)))
        if not 0 < self.level < 1:
            raise InputError(f"Interval: level must lie in (0, 1), got {self.level!r} (e.g. 0.95)")
        if not (self.lo <= self.hi) and not (math.isnan(self.lo) or math.isnan(self.hi)):
            raise InputError(f"Interval: lo {self.lo!r} > hi {self.hi!r}; pass the bounds in order")

    # ------------------------------------------------------------------ reading
    @property
    def width(self) -> float:
        return self.hi - self.lo

    @property
    def one_model(self) -> bool:
        """True for an interval from one trained model (``seeds == 1``): it carries the test images'
        sampling error only, never the variation between training seeds; the book labels it "one model"."""
        return self.seeds == 1

    @property
    def label(self) -> str:
        """:data:`ONE_MODEL` for a one-model interval, else ""."""
        return ONE_MODEL if self.one_model else ""

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
                "method": self.method, "n": self.n, "spread": self.spread, "seeds": self.seeds, "df": self.df}

    @classmethod
    def from_dict(cls, d: dict) -> "Interval":
        return cls(**{k: d.get(k) for k in _FIELDS if d.get(k) is not None})


_FIELDS = ("estimate", "lo", "hi", "level", "method", "n", "spread", "seeds", "df")


# --------------------------------------------------------------------------- checks

def check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise InputError(f"level must lie in (0, 1), got {level!r}; e.g. level=0.95 for a 95 % interval")
    return float(level)


def z_value(level: float) -> float:
    return float(_st.norm.ppf(0.5 + level / 2))


def _q(level: float, df=None) -> float:
    """Two-sided quantile of the normal (``df`` None) or Student's t with ``df`` degrees of freedom."""
    return z_value(level) if df is None or not math.isfinite(df) else float(_st.t.ppf(0.5 + level / 2, df))


def check_scores(x, name: str, minimum: int = MIN_PER_SIDE) -> np.ndarray:
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


def check_ranking(s_in, s_out, who: str) -> None:
    if np.ptp(np.r_[s_in, s_out]) == 0:
        raise InputError(f"{who}: every image got the same score ({s_in[0]:g}); the detector does not rank "
                         f"the images, so its AUROC (0.5) has no interval. Check that it was fitted and that "
                         f"its scores are not saturated (e.g. a softmax rounded to 1.0)")


# --------------------------------------------------------------------------- shares, means, bootstrap

def wilson(k, n, level: float = 0.95) -> Interval:
    """Wilson's score interval for a share ``k/n`` (e.g. the share of counterfeits classified with
    confidence ≥ 0.99): centre ``(p + z²/2n)/(1 + z²/n)``, half-width
    ``z·sqrt(p(1−p)/n + z²/4n²)/(1 + z²/n)``."""
    level = check_level(level)
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise InputError(f"wilson: k and n must be whole counts, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise InputError(f"wilson: need 0 ≤ k ≤ n and n ≥ 1, got k={k}, n={n}; pass the count of successes "
                         f"and the number of trials")
    z, p = z_value(level), k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), level, "Wilson", n)


def mean_ci(x, level: float = 0.95) -> Interval:
    """Mean with Student's t interval ``x̄ ± t_{n−1}·s/√n`` (at least 2 finite values)."""
    level = check_level(level)
    x = check_scores(x, "x", minimum=2)
    s = float(np.std(x, ddof=1))
    h = float(_st.t.ppf(0.5 + level / 2, len(x) - 1)) * s / math.sqrt(len(x))
    return Interval(float(x.mean()), float(x.mean()) - h, float(x.mean()) + h, level, "t", len(x), s, df=len(x) - 1)


def bootstrap_ci(statistic, *samples, level: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                 paired: bool = False, method: str = "percentile", vectorized: bool = False, batch=None,
                 outside: str = "raise") -> Interval:
    """Bootstrap interval of ``statistic(*samples)`` through :func:`scipy.stats.bootstrap`.

    method    : "percentile" (the default) or "BCa" (bias-corrected and accelerated; its jackknife costs
                one evaluation of ``statistic`` per observation — minutes for an AUROC on 20,000 scores);
                when BCa is undefined (a degenerate bootstrap distribution) the percentile interval is
                returned and ``method`` says so.
    paired    : resample the same indices in every sample (e.g. two detectors' scores of the same
                images); otherwise each sample is resampled on its own (e.g. in- and out-distribution).
    vectorized: ``statistic`` takes an ``axis`` keyword (e.g. :func:`auroc`); much faster.
    outside   : what to do when the estimate (``statistic`` on the original samples) lies outside the
                bootstrap interval (a skewed or biased bootstrap distribution: the percentile interval
                then does not describe the estimate). "raise" (the default): an :class:`InputError` naming
                the fixes; "widen": stretch the interval to the estimate and SAY so in ``method``
                ("widened to include the estimate"); "keep": return the interval as computed, the
                estimate outside it, ``method`` saying so. Never widened silently (issue 38).
    The estimate is ``statistic`` on the original samples."""
    level = check_level(level)
    if method not in ("BCa", "percentile"):
        raise InputError(f"bootstrap_ci: method must be 'BCa' or 'percentile', got {method!r}")
    if not samples:
        raise InputError("bootstrap_ci: pass at least one sample after the statistic")
    if outside not in ("raise", "widen", "keep"):
        raise InputError(f"bootstrap_ci: outside must be 'raise', 'widen' or 'keep', got {outside!r}")
    data = [check_scores(s, f"sample {i}", minimum=2) for i, s in enumerate(samples)]
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
    what = f"bootstrap {used}, {int(n_resamples)} resamples"
    if not lo <= est <= hi:
        if outside == "raise":
            raise InputError(f"bootstrap_ci: the estimate {est:.6g} lies outside the {used} interval "
                             f"[{lo:.6g}, {hi:.6g}] (a skewed or biased bootstrap distribution). Use method='BCa' "
                             f"(bias-corrected), more resamples, or pass outside='widen' (the interval stretched "
                             f"to the estimate, said in its method) or outside='keep' (as computed)")
        if outside == "widen":
            lo, hi, what = min(lo, est), max(hi, est), what + "; widened to include the estimate"
        else:
            what += "; the estimate lies outside this interval"
    return Interval(est, lo, hi, level, what, min(len(s) for s in data))


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
    seed the interval is that seed's own: the test images' sampling error only, labelled "one model"
    (``seeds=1``, :attr:`Interval.one_model`; the claims table and the findings show the label), never an
    interval over seeds — it is narrower than k = 2 would give because it cannot see the seed variation.
    Without ``lows``/``highs`` it needs k ≥ 2 and is the t interval over seeds. ``seeds`` is k; ``df``
    the Welch-Satterthwaite degrees of freedom of the combination (the sampling part counted as normal),
    which :func:`p_value` and :func:`rescale` use. ``bounds=(lo, hi)`` cuts the interval to the range
    the quantity can take (an AUROC lies in [0, 1], a difference of two in [−1, 1]): the half-widths are
    added symmetrically and may step outside it."""
    level = check_level(level)
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
        single_df = estimates[0].df if len(estimates) == 1 else None
        lows, highs = [e.lo for e in estimates], [e.hi for e in estimates]
        estimates = [e.estimate for e in estimates]
    else:
        single_df = None
    x = check_scores(estimates, "estimates", minimum=1)
    k = len(x)
    if (lows is None) != (highs is None):
        raise InputError("over_seeds: give both lows and highs (each seed's interval) or neither")
    h_samp = 0.0
    if lows is not None:
        lo_, hi_ = check_scores(lows, "lows", minimum=1), check_scores(highs, "highs", minimum=1)
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
        return Interval(mean, float(lo_[0]), float(hi_[0]), level,
                        f"{ONE_MODEL}: the test images' sampling interval only, no seed variation", 1, None,
                        seeds=1, df=single_df)
    s = float(np.std(x, ddof=1))
    h_seed = float(_st.t.ppf(0.5 + level / 2, k - 1)) * s / math.sqrt(k)
    h = math.hypot(h_seed, h_samp)
    what = "seeds (t) ⊕ sampling (mean half-width)" if lows is not None else "seeds (t)"
    v_seed, v_samp = s * s / k, (h_samp / z_value(level)) ** 2
    df = (v_seed + v_samp) ** 2 / (v_seed ** 2 / (k - 1)) if v_seed > 0 else None
    return Interval(mean, mean - h, mean + h, level, f"{k} {what}", k, s, seeds=k, df=df)


# --------------------------------------------------------------------------- reading an interval back

def _side_se(iv: Interval, toward: float) -> float:
    """The standard error implied by the half of ``iv`` that faces ``toward`` (its own level and df)."""
    half = (iv.estimate - iv.lo) if toward < iv.estimate else (iv.hi - iv.estimate)
    return max(half, 0.0) / _q(iv.level, iv.df)


def p_value(iv: Interval, null: float = 0.0) -> float:
    """Two-sided p-value of "the quantity equals ``null``" read back from ``iv``: the standard error
    implied by the half of the interval that faces ``null`` (so ``p < 1 − level`` exactly when ``iv``
    excludes ``null``), against the normal or, with ``iv.df``, Student's t. Exact for Wald and t
    intervals; for an asymmetric one (logit, MOVER) the test that the interval inverts at its own level,
    approximated at other levels."""
    if not isinstance(iv, Interval):
        raise InputError(f"p_value: pass an Interval, got {type(iv).__name__}")
    dist = 0.0 if not math.isfinite(iv.estimate) else iv.estimate - float(null)
    se = _side_se(iv, null)
    if dist == 0:
        return 1.0
    if se <= 0:
        return 0.0
    ref = _st.norm if iv.df is None or not math.isfinite(iv.df) else _st.t(iv.df)
    return float(min(1.0, 2 * ref.sf(abs(dist) / se)))


def rescale(iv: Interval, level: float, scale: str = "linear") -> Interval:
    """``iv`` at another ``level``: each half scaled by the ratio of the two quantiles (normal, or t with
    ``iv.df``), on the ``scale`` it was built on — "linear" (Wald, t, over seeds, differences) or "logit"
    (an AUROC or a share in [0, 1]). Exact for symmetric Wald and t intervals; for asymmetric ones the
    same construction approximately. An AUROC at exactly 0 or 1 with the "no misordered pair" bound is
    recomputed at the new level from the same number of images. ``method`` records the rescaling."""
    level = check_level(level)
    if level == iv.level:
        return iv
    f = _q(level, iv.df) / _q(iv.level, iv.df)
    tag = (f"{iv.method}; " if iv.method else "") + f"rescaled from {iv.level:g} to {level:g}"
    if scale == "linear":
        lo, hi = iv.estimate - f * (iv.estimate - iv.lo), iv.estimate + f * (iv.hi - iv.estimate)
        return replace(iv, lo=lo, hi=hi, level=level, method=tag)
    if scale != "logit":
        raise InputError(f"rescale: scale must be 'linear' or 'logit', got {scale!r}")
    a = iv.estimate
    if not 0 <= iv.lo <= a <= iv.hi <= 1:
        raise InputError(f"rescale: a logit-scale interval must lie in [0, 1] around its estimate, got {iv}")
    if a >= 1 or a <= 0:                           # the exact bound: 1 − (α/2)^(1/k) ⇒ k from the old bound
        eps = (1 - iv.lo) if a >= 1 else iv.hi
        if eps <= 0 or eps >= 1:
            raise InputError(f"rescale: cannot read the number of images back from {iv}")
        k = math.log((1 - iv.level) / 2) / math.log(1 - eps)
        e2 = 1 - ((1 - level) / 2) ** (1 / k)
        lo, hi = ((1 - e2, 1.0) if a >= 1 else (0.0, e2))
        return replace(iv, lo=lo, hi=hi, level=level, method=tag)
    lg = math.log(a / (1 - a))

    def back(bound, default):
        if bound <= 0 or bound >= 1:
            return default
        return 1 / (1 + math.exp(-(lg + f * (math.log(bound / (1 - bound)) - lg))))
    return replace(iv, lo=back(iv.lo, 0.0), hi=back(iv.hi, 1.0), level=level, method=tag)
