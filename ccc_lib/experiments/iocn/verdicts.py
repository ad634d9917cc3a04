"""Chapter 3's verdicts, on the shared statistics of :mod:`ccc_lib.stats`: the IOCN against the FLOW (over the
INNs' seeds), against EVERY baseline run on every class (no best row picked on the test set: "wins" only when
it beats each, "loses" when behind one after Holm) and the paper's "matches" as equivalence with the row the
paper matched, fixed before the run (its 90 % interval inside ±δ). Class means over the shared test images
(:func:`ccc_lib.stats.class_mean_ci`); per-class paired intervals for the forest plots."""
from __future__ import annotations

import numpy as np

from ...stats import EQUIVALENCE_LEVEL, auroc_diff_ci, class_mean_ci, over_seeds, versus_every


def class_mean_diff(res_a, a: str, res_b, b: str, level: float = 0.95, classes=None) -> tuple:
    """A − B in AUROC on the same test images: the mean over the classes (``classes``: default every class of
    ``res_a``) with the interval of :func:`~ccc_lib.stats.class_mean_ci` (the classes share their test images),
    and per class DeLong's paired interval (:func:`~ccc_lib.stats.auroc_diff_ci`). ``res_a`` and ``res_b`` may
    be runs with different seeds (same test set). Returns ``(Interval of the mean, {class: Interval})``."""
    y = res_a.y_test
    classes = tuple(res_a.inliers if classes is None else classes)
    per = {}
    for c in classes:
        sa, sb = res_a.scores[a][c], res_b.scores[b][c]
        inl = y == c
        per[c] = auroc_diff_ci(sa[inl], sa[~inl], sb[inl], sb[~inl], level)
    iv = class_mean_ci({c: res_a.scores[a][c] for c in classes}, y, {c: res_b.scores[b][c] for c in classes},
                       classes=list(classes), level=level)
    return iv, per


def diff_over_seeds(runs: dict, a: str, b: str, base=None, level: float = 0.95, classes=None) -> tuple:
    """A − B (mean over classes) over the seeds of ``runs`` (``{seed: OneVsRest}`` holding A, and B unless
    ``base`` is given: then B's scores come from ``base`` for every seed — a row run as one model).
    Returns ``(Interval over seeds (ccc_lib.stats.over_seeds of the per-seed class-mean intervals; one seed:
    that seed's own interval, labelled "one model"), {seed: Interval}, {seed: {class: Interval}})``."""
    per_seed, per_class = {}, {}
    for seed, r in runs.items():
        per_seed[seed], per_class[seed] = class_mean_diff(r, a, base if base is not None else r, b, level, classes)
    return over_seeds(list(per_seed.values()), level=level, bounds=(-1.0, 1.0)), per_seed, per_class


def baselines_of(res) -> list:
    """The rows IOCN is compared with: every baseline of the paper's Table 1 in the block (PyOD and deepOD; not
    the FLOW, the norm-only row or a labelled side row), each on the classes it ran on."""
    from .table1 import GOAD_PATCHED, NORM_ROW
    return [m for m in res.methods if m not in ("IOCN", "FLOW", NORM_ROW, GOAD_PATCHED) and res.auroc.get(m)]


def classes_of(res, m: str) -> tuple:
    """The inlier classes row ``m`` ran on in the block."""
    return tuple(c for c in res.inliers if c in res.auroc.get(m, {}))


def versus_baselines(runs: dict, base, level: float = 0.95):
    """IOCN (over the seeds of ``runs``) against every baseline of :func:`baselines_of` (one model each, from
    ``base``), each difference a mean over the classes that baseline ran on: :func:`ccc_lib.stats.versus_every`.
    Returns the VersusEvery."""
    return versus_every({m: diff_over_seeds(runs, "IOCN", m, base=base, level=level, classes=classes_of(base, m))[0]
                         for m in baselines_of(base)}, level=level)


def match_interval(runs: dict, base, ref: str, level: float = EQUIVALENCE_LEVEL) -> tuple:
    """IOCN − ``ref`` (the row the paper says the IOCN matches) at the equivalence level (90 %), over the
    classes ``ref`` ran on: ``(Interval, classes)``."""
    classes = classes_of(base, ref)
    return diff_over_seeds(runs, "IOCN", ref, base=base, level=level, classes=classes)[0], classes


def plot_forest(rows: dict, ax, title: str = "", margin: float | None = None) -> None:
    """A forest plot: one line per label with its interval (``{label: Interval}``, AUROC points ×100), the
    zero line and, with ``margin``, the equivalence margin ±δ."""
    labels = list(rows)
    for i, lab in enumerate(labels):
        iv = rows[lab]
        ax.errorbar(100 * iv.estimate, i, xerr=[[100 * (iv.estimate - iv.lo)], [100 * (iv.hi - iv.estimate)]],
                    fmt="s" if lab.startswith("mean") else "o", color="k" if lab.startswith("mean") else "C0", capsize=3)
    ax.axvline(0, color="C3", lw=1)
    if margin:
        for m in (-margin, margin):
            ax.axvline(100 * m, color="C2", lw=0.8, ls="--")
    ax.set_yticks(range(len(labels))); ax.set_yticklabels(labels, fontsize=7); ax.invert_yaxis()
    ax.set_xlabel("AUROC difference ×100 (interval)"); ax.set_title(title, fontsize=9)


def np_mean(values) -> float:
    return float(np.mean(list(values)))
