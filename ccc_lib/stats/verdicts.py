"""Verdicts from intervals: A vs B (:func:`difference_verdict`), "A matches B" as equivalence declared
before the run (:func:`equivalence`, two one-sided tests), and A against EVERY baseline on the same
images (:func:`versus_every`: intersection-union for a win, Holm for a loss), so that no baseline is
picked on the test set (issue 38)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..checks import InputError
from .core import Interval, check_level, mean_ci, over_seeds, p_value, rescale

__all__ = ["difference_verdict", "equivalence", "Equivalence", "versus_every", "VersusEvery", "EQUIVALENCE_LEVEL",
           "as_difference"]

#: the level of the interval a TOST reads: 90 % two-sided = two one-sided tests at 5 % each
EQUIVALENCE_LEVEL = 0.90


def difference_verdict(diff: Interval) -> str:
    """The one rule for "A vs B" from the interval of A − B: "wins" when it lies above 0, "loses" when
    below, "tie within uncertainty" when it contains 0 (:meth:`ccc_lib.claims.Claims.compare` uses it).
    A tie is never a match: equivalence needs :func:`equivalence` and a margin declared before the run."""
    if not isinstance(diff, Interval):
        raise InputError(f"difference_verdict: pass the Interval of A − B (e.g. auroc_diff_ci(...)), got "
                         f"{type(diff).__name__}")
    return "wins" if diff.lo > 0 else "loses" if diff.hi < 0 else "tie within uncertainty"


def as_difference(x, level: float, what: str = "difference") -> Interval:
    """An :class:`Interval` of a difference at ``level`` from: an Interval (rescaled to ``level`` when
    given at another, said in its method), per-seed Intervals (:func:`over_seeds`, cut to [−1, 1]), or
    per-unit numbers (per seed or per class: Student's t over them, :func:`mean_ci`)."""
    if isinstance(x, Interval):
        return rescale(x, level)
    items = list(x) if not isinstance(x, np.ndarray) else list(x.ravel())
    if items and all(isinstance(i, Interval) for i in items):
        return over_seeds([rescale(i, level) for i in items], level=level, bounds=(-1.0, 1.0))
    if len(items) < 2:
        raise InputError(f"{what}: give an Interval of the difference, per-seed Intervals, or ≥ 2 per-seed "
                         f"(or per-class) differences, got {x!r}")
    return mean_ci(items, level)


# --------------------------------------------------------------------------- equivalence (TOST)

@dataclass(frozen=True)
class Equivalence:
    """The outcome of :func:`equivalence`: ``verdict`` ("holds", "does not hold", "not resolved"), the
    difference's ``interval`` at ``interval.level`` (90 %), the ``margin`` δ, and the TOST p-value ``p``
    (the larger of the two one-sided p-values: equivalence at 5 % when p < 0.05)."""
    verdict: str
    interval: Interval
    margin: float
    p: float

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "interval": self.interval.to_dict(), "margin": self.margin, "p": self.p}


def equivalence(diff, margin: float, level: float = EQUIVALENCE_LEVEL) -> Equivalence:
    """"A matches B" as two one-sided tests (Schuirmann 1987) on the difference A − B with the margin δ
    declared before the run (a chapter setting, never read off the results):

    * "holds" only when the ``level`` (90 %) interval lies inside [−δ, δ] (each one-sided test at 5 %);
    * "does not hold" when it lies wholly outside [−δ, δ] (the difference exceeds the margin);
    * "not resolved" otherwise — in particular every tie whose interval reaches past ±δ. A difference
      whose interval contains 0 is never a match on that ground alone.

    ``diff``: the :class:`Interval` of A − B (computed at ``level`` best, e.g. ``auroc_diff_ci(...,
    level=0.90)``; one at another level is rescaled, said in its method), per-seed Intervals or per-seed
    differences (:func:`as_difference`)."""
    level = check_level(level)
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating)) or not (margin > 0) \
            or not math.isfinite(margin):
        raise InputError(f"equivalence: the margin δ must be a positive number declared in the chapter's "
                         f"settings (e.g. 0.01 AUROC), got {margin!r}")
    iv = as_difference(diff, level, "equivalence")
    d = float(margin)
    if -d <= iv.lo and iv.hi <= d:
        verdict = "holds"
    elif iv.lo > d or iv.hi < -d:
        verdict = "does not hold"
    else:
        verdict = "not resolved"
    p_lo = p_value(iv, -d) / 2 if iv.estimate > -d else 1 - p_value(iv, -d) / 2   # H0: diff ≤ −δ
    p_hi = p_value(iv, d) / 2 if iv.estimate < d else 1 - p_value(iv, d) / 2       # H0: diff ≥ +δ
    return Equivalence(verdict, iv, d, float(max(p_lo, p_hi)))


# --------------------------------------------------------------------------- against every baseline

@dataclass(frozen=True)
class VersusEvery:
    """The outcome of :func:`versus_every`.

    verdict : "wins" (ahead of EVERY baseline: each interval above 0, an intersection-union test, no
              adjustment needed), "loses" (behind at least one after Holm over the K baselines), else
              "tie within uncertainty"
    summary : A − the closest baseline, ``[min_b lo_b, min_b hi_b']`` with ``hi_b'`` at level
              1 − α/K: an interval for the smallest of the K differences (its lower end at the nominal
              level for the unknown closest baseline, its upper end Bonferroni over the K), so "wins" ⇔
              ``summary.lo > 0`` and "loses" ⇔ ``summary.hi < 0``
    rows    : per baseline ``{"baseline", "interval" (Interval), "p" (two-sided), "p_holm", "verdict"}``;
              ``p_holm`` is the Holm-adjusted p-value of "A loses to this baseline" over the K baselines
              (two-sided scale; 1 where A is ahead), "verdict" the pair's own, unadjusted"""
    verdict: str
    summary: Interval
    rows: tuple = field(default_factory=tuple)
    level: float = 0.95

    @property
    def closest(self) -> str:
        """The baseline A is least ahead of (smallest estimated difference)."""
        return min(self.rows, key=lambda r: r["interval"].estimate)["baseline"]

    def table(self):
        import pandas as pd
        return pd.DataFrame([{"baseline": r["baseline"], "difference": str(r["interval"]), "p": r["p"],
                              "p (Holm)": r["p_holm"], "verdict": r["verdict"]} for r in self.rows]).set_index("baseline")

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "summary": self.summary.to_dict(), "level": self.level,
                "baselines": [{**r, "interval": r["interval"].to_dict()} for r in self.rows]}


def versus_every(diffs: dict, level: float = 0.95) -> VersusEvery:
    """One method A against EVERY baseline, all on the same test images — no baseline picked by its test
    score. ``diffs``: ``{baseline name: A − baseline}``, each an :class:`Interval` (e.g.
    :func:`auroc_diff_ci`, :func:`class_mean_ci` with ``scores_b``, :func:`over_seeds`), per-seed Intervals,
    or per-seed / per-class differences (:func:`as_difference`). Returns :class:`VersusEvery`: "wins" only
    when A beats each baseline (intersection-union: every interval above 0), "loses" when A is behind at
    least one after Holm's correction over the K baselines, else "tie within uncertainty"."""
    level = check_level(level)
    if not isinstance(diffs, dict) or not diffs:
        raise InputError("versus_every: pass {baseline name: interval (or per-seed values) of A − baseline}, "
                         "one entry per baseline run on the same images")
    from ..metrics import holm
    ivs = {str(k): as_difference(v, level, f"versus_every[{k!r}]") for k, v in diffs.items()}
    names, K = list(ivs), len(ivs)
    p = np.array([p_value(ivs[b]) for b in names])
    behind = np.array([ivs[b].estimate < 0 for b in names])
    p_holm = holm(np.where(behind, p, 1.0))
    alpha = 1 - level
    rows = tuple({"baseline": b, "interval": ivs[b], "p": float(p[i]), "p_holm": float(p_holm[i]),
                  "verdict": difference_verdict(ivs[b])} for i, b in enumerate(names))
    if all(iv.lo > 0 for iv in ivs.values()):
        verdict = "wins"
    elif (p_holm < alpha).any():
        verdict = "loses"
    else:
        verdict = "tie within uncertainty"
    wide = {b: rescale(ivs[b], 1 - alpha / K) for b in names}
    est = min(iv.estimate for iv in ivs.values())
    lo, hi = min(iv.lo for iv in ivs.values()), min(iv.hi for iv in wide.values())
    summary = Interval(est, min(lo, est), max(hi, est), level,
                       f"A − closest of {K} baselines (intersection-union; upper end Bonferroni over {K})",
                       min((iv.n for iv in ivs.values() if iv.n), default=None))
    seeds = {iv.seeds for iv in ivs.values()}
    if seeds == {1}:
        summary = replace(summary, seeds=1)
    return VersusEvery(verdict, summary, rows, level)
