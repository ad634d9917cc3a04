"""Intervals and verdicts for the book's numbers. Every function returns an :class:`Interval`
(``str(interval)`` is how the book prints it: ``0.9935 [0.991, 0.996]``) or a verdict read from one.

AUROC follows :func:`ccc_lib.metrics.ood_metrics`: OOD is the positive class and a higher score means
"more OOD", so ``AUROC = P(s_out > s_in) + ½ P(s_out = s_in)`` (the Mann-Whitney statistic).

Which function for what:

* :func:`auroc_ci` — one detector: DeLong, DeLong & Clarke-Pearson (1988)'s variance, computed with Sun &
  Xu (2014)'s algorithm from midranks, the interval on the logit scale (Qin & Hotilovac 2008). At AUROC
  exactly 0 or 1 (DeLong's variance 0) the one-sided bound for "no misordered pair seen": with ``k`` the
  smaller side, ``ε ≤ 1 − (α/2)^(1/k)`` (≈ 3.7/k at 95 %, the "rule of three").
* :func:`auroc_diff_ci` — the PAIRED difference of two detectors on the same images: DeLong's covariance;
  by default MOVER (Zou & Donner 2008, *Stat Med* 27: 1693) on the two logit-scale intervals, which covers
  near AUROC 1 at small n where the symmetric interval does not (``method="wald"`` for that one).
* :func:`class_mean_ci` — the mean over one-vs-rest classes of an AUROC or of a paired difference, the
  classes sharing their test images: DeLong's components pooled per image (``auroc.py``'s docstring).
* :func:`difference_verdict` — "wins" / "loses" / "tie within uncertainty" from the interval of A − B.
* :func:`equivalence` — "A matches B" with a margin δ declared before the run: two one-sided tests
  (Schuirmann 1987) on the 90 % interval; "holds" only inside [−δ, δ]. A tie is never a match.
* :func:`versus_every` — A against EVERY baseline on the same images: "wins" only when it beats each
  (intersection-union, Berger 1982), "loses" when behind one after Holm (1979); per-baseline intervals
  and adjusted p-values.
* :func:`wilson` — Wilson's score interval for a share ``k/n`` (Wilson 1927; Newcombe 1998).
* :func:`bootstrap_ci` — :func:`scipy.stats.bootstrap` (percentile, or BCa — Efron 1987 — on request);
  never silently widened to include the estimate (``outside=``).
* :func:`mean_ci` — Student's t interval for a mean.
* :func:`over_seeds` — mean over training seeds, seed and sampling variation combined; one seed is
  labelled "one model" (:attr:`Interval.one_model`), never an interval over seeds.
* :func:`p_value`, :func:`rescale` — an interval read back as a p-value, or at another level.

Input checks (:class:`~ccc_lib.checks.InputError`, naming the cause and the fix): fewer than
:data:`MIN_PER_SIDE` scores on a side, a non-finite score, a detector that gives every image the same
score, paired scores of different lengths, a level outside (0, 1).

Cost, 10,000 vs 10,000 scores, measured on 2 Dec 2026 on the 2-core development machine (load about 12):
:func:`auroc_ci` 0.014 s, :func:`auroc_diff_ci` 0.026 s; the same AUROC's interval through
:func:`bootstrap_ci` (vectorised :func:`auroc`, ``batch=50``) 24-30 s with 2,000 percentile resamples.
Hence DeLong for AUROCs and their differences, the bootstrap for statistics without a closed form.

Coverage, measured by the tests (``tests/test_stats.py``, ``tests/test_stats_verdicts.py``) on simulations
with a known truth; the figures are in those tests' docstrings.

References (book/references.bib where listed): ``delong1988auc``, ``sun2014fastdelong``, ``qin2008aucci``,
``wilson1927``, ``newcombe1998proportion``, ``efron1987bca``; Zou G.Y. & Donner A. (2008), Construction of
confidence limits about effect measures: a general approach, *Statistics in Medicine* 27: 1693-1702;
Schuirmann D.J. (1987), *J Pharmacokinet Biopharm* 15: 657-680; Berger R.L. (1982), *Technometrics* 24:
295-300; Holm S. (1979), *Scand J Statist* 6: 65-70."""
from .auroc import auroc, auroc_ci, auroc_diff_ci, class_mean_ci
from .core import (MIN_PER_SIDE, ONE_MODEL, Interval, bootstrap_ci, mean_ci, over_seeds, p_value, rescale,
                   wilson)
from .verdicts import (EQUIVALENCE_LEVEL, Equivalence, VersusEvery, as_difference, difference_verdict,
                       equivalence, versus_every)

__all__ = ["Interval", "MIN_PER_SIDE", "ONE_MODEL", "auroc", "auroc_ci", "auroc_diff_ci", "class_mean_ci",
           "difference_verdict", "equivalence", "Equivalence", "EQUIVALENCE_LEVEL", "versus_every", "VersusEvery",
           "as_difference", "wilson", "bootstrap_ci", "mean_ci", "over_seeds", "p_value", "rescale"]
