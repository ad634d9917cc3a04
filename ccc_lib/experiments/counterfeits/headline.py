"""The headline comparison: the paper's generator and ours, every seed trained side by side through
the cache, measured in three spaces with intervals, and compared over seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ... import counterfeits as cf
from ...cache import cached
from ...checks import InputError, check_labels
from ...metrics import nearest_neighbour_distance
from ...profiles import get_profile
from .measures import features

__all__ = ["generator", "generator_job", "headline_jobs", "pretrain", "read_headline", "PairDistances", "diversity_ratio_ci",
           "SeedMeasures", "seed_measures", "headline_spaces", "real_reference", "compare_over_seeds"]


def generator(classifier, dataset: str, profile, **kw):
    """A generator as chapter 1 trains every one: :func:`ccc_lib.counterfeits.get_generator` with the
    plateau test (trained until it passes, the settings' ``steps`` the cap)."""
    return cf.get_generator(classifier, dataset, profile, plateau=True, **kw)


def generator_job(classifier, dataset: str, profile: str, variant: str = "paper", seed: int = 0, tag: str = "",
                  overrides: dict | None = None, mode: str = "counterfeit", also_at=()) -> float:
    """One generator through the checkpoint cache (a job of :func:`pretrain`): trained unless cached.
    Returns its training seconds (0 when read from the cache)."""
    _, info = generator(classifier, dataset, profile, variant=variant, seed=seed, tag=tag, mode=mode,
                        also_at=tuple(also_at), **(overrides or {}))
    return 0.0 if info["from_cache"] else float(info.get("train_seconds", 0.0))


def headline_jobs(classifiers: dict, profile, seeds, overrides: dict) -> list:
    """The :func:`pretrain` jobs of the headline: both generators, every seed, on each dataset of
    ``classifiers`` (name → classifier); ours with ``overrides[name]`` (its chosen ε, τ). The first
    seed's paper generator on the ablation's datasets also keeps its weights at ``ablation_steps``:
    that prefix *is* the ablation's row of the paper's loss (same seed, settings and stream)."""
    s, pname, first = cf.settings(profile), get_profile(profile).name, min(seeds)
    abl = list(classifiers)[: s["ablation_datasets"]]
    return [{"classifier": clf, "dataset": name, "profile": pname, "variant": v, "seed": sd,
             "overrides": overrides[name] if v == "ours" else {},
             "also_at": (int(s["ablation_steps"]),) if (v == "paper" and sd == first and name in abl) else ()}
            for name, clf in classifiers.items() for sd in seeds for v in cf.VARIANTS]


def pretrain(jobs: list) -> list:
    """Train independent generators side by side (:func:`ccc_lib.parallel.run_jobs` over
    :func:`generator_job`; each job a dict of its arguments). The loops that use them then read each
    from the cache with :func:`ccc_lib.counterfeits.get_generator`, so results do not depend on it."""
    from ...parallel import run_jobs
    return run_jobs(generator_job, jobs)


def read_headline(classifiers: dict, profile, seeds, overrides: dict):
    """The headline's generators read back (from the cache :func:`pretrain` filled): both variants, every seed,
    on each dataset of ``classifiers``; ours with ``overrides[name]``. Returns ``(gens, info, stops)``: the first
    seed's generator and info per ``(dataset, variant)``, and a table of where every one stopped."""
    import pandas as pd
    first, steps = min(seeds), cf.settings(profile)["steps"]
    gens, info, stops = {}, {}, []
    for name, clf in classifiers.items():
        for v in cf.VARIANTS:
            for sd in seeds:
                g, i = generator(clf, name, profile, variant=v, seed=sd, **(overrides[name] if v == "ours" else {}))
                stops.append({"dataset": name, "generator": v, "seed": sd, "steps trained": i["stopped_at"],
                              "cap": steps, "stopped on the plateau test": i["plateau_reached"],
                              "train s": round(i.get("train_seconds", float("nan")), 1), "from cache": i["from_cache"]})
                if sd == first:
                    gens[name, v], info[name, v] = g, i
    return gens, info, pd.DataFrame(stops).set_index(["dataset", "generator", "seed"])


def _median_ratio(a, b, axis=-1):
    return np.median(a, axis=axis) / np.median(b, axis=axis)


class PairDistances:
    """All pairwise Euclidean distances of the rows of ``z`` (at most ``cap`` seeded rows per class) and
    their labels: the within-class diversity of any resample of the rows, re-formed from its pairs."""

    def __init__(self, z, y, cap: int = 200, seed: int = 0):
        y = check_labels(y, "y", n=len(z)).numpy()
        g = np.random.default_rng(seed)
        keep = []
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            if len(idx) < 2:
                raise InputError(f"class {int(c)} has {len(idx)} image(s): diversity needs ≥ 2 per class")
            keep.append(np.sort(g.choice(idx, cap, replace=False)) if len(idx) > cap else idx)
        keep = np.concatenate(keep)
        zz = torch.as_tensor(z, dtype=torch.float32).flatten(1)[torch.as_tensor(keep)]
        self.d, self.y = torch.cdist(zz, zz).double().numpy(), y[keep]

    def diversity(self, rows) -> float:
        """Mean over classes of the mean distance between distinct positions of ``rows`` (indices into
        the kept rows, repeats allowed: a repeated image pairs with itself at distance 0, the usual
        bootstrap of a U-statistic)."""
        return float(self.diversity_many(np.asarray(rows)[None])[0])

    def diversity_many(self, rows) -> np.ndarray:
        """:meth:`diversity` of each row of ``rows`` (B × n indices) at once: with ``m`` the counts of
        each kept row in a resample, a class's sum over ordered pairs of positions is ``mᵀ D m`` (the
        diagonal of D is 0), over ``k(k − 1)`` pairs for its ``k`` draws; classes drawn fewer than twice
        are left out of the mean, as in :meth:`diversity`."""
        rows = np.asarray(rows).astype(int)
        b, n = rows.shape[0], len(self.y)
        counts = np.bincount((rows + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n).astype(float)
        total, classes = np.zeros(b), np.zeros(b)
        for c in np.unique(self.y):               # classes, not images: ten matrix products per call
            k = self.y == c
            m = counts[:, k]
            drawn = m.sum(1)
            ok = drawn >= 2
            pair_sum = np.einsum("bi,ij,bj->b", m, self.d[np.ix_(k, k)], m)
            total[ok] += pair_sum[ok] / (drawn[ok] * (drawn[ok] - 1))
            classes += ok
        return total / classes


def diversity_ratio_ci(z_fake, y_fake, z_real, y_real, *, seed: int = 0, n_resamples: int = 1000, cap: int = 200):
    """Within-class diversity (mean pairwise distance, averaged over classes) of generated images
    over that of real images, in the coordinates given (pixels or a model's features), with a
    percentile bootstrap interval: images resampled on each side and every pair re-formed from the
    resample, so the interval carries the pairwise statistic's own variance (resampling per-image
    means would understate it about twofold). At most ``cap`` seeded rows per class on each side."""
    from ...stats import bootstrap_ci
    f, r = PairDistances(z_fake, y_fake, cap, seed), PairDistances(z_real, y_real, cap, seed)
    def ratio(i, j, axis=-1):
        i, j = np.asarray(i), np.asarray(j)
        one = i.ndim == 1
        out = f.diversity_many(np.atleast_2d(i).reshape(-1, i.shape[-1])) / r.diversity_many(
            np.atleast_2d(j).reshape(-1, j.shape[-1]))
        return float(out[0]) if one else out.reshape(i.shape[:-1])
    return bootstrap_ci(ratio, np.arange(len(f.y), dtype=float), np.arange(len(r.y), dtype=float), seed=seed,
                        n_resamples=n_resamples, method="percentile", vectorized=True)


@dataclass
class SeedMeasures:
    """One generator at one seed, sampled as the headline samples: the intervals its rows rest on
    (each an :class:`ccc_lib.stats.Interval` as a dict)."""
    variant: str
    seed: int
    dropout: bool
    share_099: dict
    worst_class_share_099: dict
    worst_class_mean_confidence: float
    feature_diversity_ratio: dict
    independent_diversity_ratio: dict
    nn_ratio: dict          # space → interval dict: median NN distance to training / test images'


@cached("ch1-seed-measures", version=2)   # 2: diversity intervals from re-formed pairs
def seed_measures(smp: dict, variant: str, seed: int, dropout: bool, spaces: dict, real_z: dict,
                  real_y: torch.Tensor, nn_test: dict, train_z: dict) -> SeedMeasures:
    """Measure one generator's samples ``smp``: Wilson intervals for the share at ≥ 0.99 (all and
    the worst class), bootstrap intervals (:func:`diversity_ratio_ci`) for the diversity ratio in
    each space (``spaces``: name → model, ``"pixel"`` → None) against the real test images (``real_z``:
    name → their coordinates there; ``real_y`` their labels), and for the median NN distance to the
    training images ``train_z`` (name → their coordinates) over that of test images (``nn_test``: name
    → test images' NN distances). :func:`real_reference` gives ``real_z``, ``nn_test`` and ``train_z``."""
    from ...stats import bootstrap_ci, wilson
    conf, y = smp["confidence"].numpy(), smp["y"].numpy()
    ok = conf >= 0.99
    worst = min(np.unique(y), key=lambda c: (ok[y == c].mean(), conf[y == c].mean()))
    div, nn = {}, {}
    for name, model in spaces.items():
        z = smp["x"] if model is None else features(model, smp["x"])
        div[name] = diversity_ratio_ci(z, smp["y"], real_z[name], real_y, seed=seed).to_dict()
        d = nearest_neighbour_distance(z, train_z[name])
        nn[name] = bootstrap_ci(_median_ratio, d, nn_test[name], seed=seed, n_resamples=1000, vectorized=True,
                                method="percentile").to_dict()
    return SeedMeasures(
        variant=variant, seed=seed, dropout=dropout, share_099=wilson(int(ok.sum()), len(ok)).to_dict(),
        worst_class_share_099=wilson(int(ok[y == worst].sum()), int((y == worst).sum())).to_dict(),
        worst_class_mean_confidence=min(float(conf[y == c].mean()) for c in np.unique(y)),
        feature_diversity_ratio=div["classifier"], independent_diversity_ratio=div["independent"], nn_ratio=nn)


def headline_spaces(classifier, independent) -> dict:
    """The spaces the headline measures in: pixels, the attacked classifier's penultimate features
    (where the paper's Cos/Ortho and our Div act) and the independent model's (where nothing acts)."""
    return {"pixel": None, "classifier": classifier, "independent": independent}


def real_reference(spaces: dict, test_x: torch.Tensor, test_y: torch.Tensor, train_x: torch.Tensor) -> tuple:
    """Per space: the real test images' coordinates, their labels, their NN distances to ``train_x``,
    and the training images' coordinates (the yardsticks of :func:`seed_measures`, in its order)."""
    rz, nn, tz = {}, {}, {}
    for name, model in spaces.items():
        tz[name] = train_x if model is None else features(model, train_x)
        rz[name] = test_x if model is None else features(model, test_x)
        nn[name] = nearest_neighbour_distance(rz[name], tz[name])
    return rz, test_y, nn, tz


def compare_over_seeds(measures: list, metric: str, level: float = 0.95) -> dict:
    """Per variant the mean of ``metric`` over seeds with :func:`ccc_lib.stats.over_seeds`'s interval,
    and the difference ours − paper (per seed, ours and the paper's generator at the same seed; its
    sampling half-width sqrt(h_ours² + h_paper²) from the two intervals: conservative where both are
    measured against the same real images, whose error then cancels in the difference). ``metric``: a field of
    :class:`SeedMeasures` holding an interval, or ``nn_ratio:<space>``. Returns
    ``{"paper": Interval, "ours": Interval, "diff": Interval, "seeds": k}``. Intervals are cut to the range
    the quantity can take (a share in [0, 1], its difference in [−1, 1], a ratio ≥ 0)."""
    from ...stats import Interval, over_seeds
    share = "share" in metric
    bounds, diff_bounds = ((0.0, 1.0), (-1.0, 1.0)) if share else ((0.0, math.inf), None)

    def get(m):
        if metric.startswith("nn_ratio:"):
            return Interval.from_dict(m.nn_ratio[metric.split(":", 1)[1]])
        return Interval.from_dict(getattr(m, metric))
    by = {v: sorted((m for m in measures if m.variant == v), key=lambda m: m.seed) for v in cf.VARIANTS}
    out = {}
    for v, ms in by.items():
        iv = [get(m) for m in ms]
        out[v] = over_seeds([i.estimate for i in iv], [i.lo for i in iv], [i.hi for i in iv], level=level,
                            bounds=bounds)
    pairs = [(get(o), get(p)) for o, p in zip(by["ours"], by["paper"]) if o.seed == p.seed]
    d = [o.estimate - p.estimate for o, p in pairs]
    h = [math.hypot((o.hi - o.lo) / 2, (p.hi - p.lo) / 2) for o, p in pairs]
    out["diff"] = over_seeds(d, [x - y for x, y in zip(d, h)], [x + y for x, y in zip(d, h)], level=level,
                             bounds=diff_bounds)
    out["seeds"] = len(pairs)
    return out
