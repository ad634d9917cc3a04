"""Intervals (ccc_lib.stats): coverage on scores with a known AUROC, the paired difference against a
brute-force computation, Wilson and the seed aggregation against hand-computed values, the input checks."""
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from ccc_lib.checks import InputError
from ccc_lib.metrics import ood_metrics
from ccc_lib.stats import (MIN_PER_SIDE, Interval, auroc, auroc_ci, auroc_diff_ci, bootstrap_ci,
                           difference_verdict, mean_ci, over_seeds, wilson)


def _binormal(rng, reps, n_in, n_out, d, rho=0.0, d2=None):
    """``reps`` data sets: in-distribution N(0, 1), OOD N(d, 1) (true AUROC Φ(d/√2)); with ``d2`` a second
    detector whose noise has correlation ``rho`` with the first's on every image."""
    def noise(n):
        z1 = rng.standard_normal((reps, n))
        return z1, rho * z1 + math.sqrt(1 - rho ** 2) * rng.standard_normal((reps, n))
    a_in, b_in = noise(n_in)
    a_out, b_out = noise(n_out)
    return a_in, a_out + d, b_in, b_out + (d2 if d2 is not None else d)


@pytest.mark.parametrize("d", [1.0, 2.5])          # true AUROC 0.760 and 0.961
def test_auroc_ci_covers_the_truth(d):
    rng = np.random.default_rng(24)
    truth = norm.cdf(d / math.sqrt(2))
    a_in, a_out, _, _ = _binormal(rng, 200, 150, 100, d)
    ivs = [auroc_ci(a_in[r], a_out[r]) for r in range(200)]
    cover = np.mean([iv.lo <= truth <= iv.hi for iv in ivs])
    assert cover >= 0.90, f"95% DeLong intervals covered the true AUROC {truth:.3f} in {cover:.1%} of 200 runs"
    assert cover <= 0.995                               # not vacuously wide either
    assert all(iv.method == "DeLong (logit)" and iv.level == 0.95 for iv in ivs)


def test_auroc_diff_ci_covers_the_true_difference():
    rng = np.random.default_rng(7)
    da, db = 1.5, 1.0
    truth = norm.cdf(da / math.sqrt(2)) - norm.cdf(db / math.sqrt(2))      # 0.856 − 0.760 = 0.096
    a_in, a_out, b_in, b_out = _binormal(rng, 200, 150, 100, da, rho=0.6, d2=db)
    ivs = [auroc_diff_ci(a_in[r], a_out[r], b_in[r], b_out[r]) for r in range(200)]
    cover = np.mean([iv.lo <= truth <= iv.hi for iv in ivs])
    assert cover >= 0.90, f"paired DeLong covered the true difference {truth:.3f} in {cover:.1%} of 200 runs"
    # pairing matters: with correlated detectors the paired interval is narrower than the unpaired one
    w_paired = np.mean([iv.width for iv in ivs])
    w_unpaired = np.mean([2 * 1.96 * math.hypot(auroc_ci(a_in[r], a_out[r]).width / 3.92,
                                                auroc_ci(b_in[r], b_out[r]).width / 3.92) for r in range(20)])
    assert w_paired < 0.8 * w_unpaired


def _delong_brute(pos, neg):
    """DeLong et al. (1988) from the definition: ψ(x, y) = 1 if x > y, ½ if equal; O(m·n)."""
    psi = [(p[:, None] > q[None, :]) + 0.5 * (p[:, None] == q[None, :]) for p, q in zip(pos, neg)]
    v10 = np.array([s.mean(1) for s in psi])
    v01 = np.array([s.mean(0) for s in psi])
    return v10.mean(1), np.cov(v10) / pos.shape[1] + np.cov(v01) / neg.shape[1]


def test_paired_difference_matches_the_definition_sklearn_and_a_bootstrap():
    rng = np.random.default_rng(3)
    a_in, a_out, b_in, b_out = (x[0] for x in _binormal(rng, 1, 60, 40, 1.2, rho=0.5, d2=0.8))
    a_in, b_out = np.round(a_in, 1), np.round(b_out, 1)                 # ties, to exercise the midranks
    iv = auroc_diff_ci(a_in, a_out, b_in, b_out, method="wald")
    y = np.r_[np.zeros(60), np.ones(40)]
    sk = roc_auc_score(y, np.r_[a_in, a_out]) - roc_auc_score(y, np.r_[b_in, b_out])
    assert math.isclose(iv.estimate, sk, abs_tol=1e-12)
    aucs, cov = _delong_brute(np.stack([a_out, b_out]), np.stack([a_in, b_in]))
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert math.isclose(iv.hi - iv.estimate, norm.ppf(0.975) * se, rel_tol=1e-9)
    # the default (MOVER on the logit-scale intervals) has the same estimate and, away from AUROC 1, about
    # the same width (its ends move towards the side with room)
    mv = auroc_diff_ci(a_in, a_out, b_in, b_out)
    assert mv.estimate == iv.estimate and "MOVER" in mv.method and abs(mv.width / iv.width - 1) < 0.1
    single = auroc_ci(a_in, a_out)
    assert math.isclose(single.estimate, aucs[0]) and math.isclose(single.estimate, ood_metrics(a_in, a_out)["auroc"])
    # a paired bootstrap over images (in and OOD resampled separately, same indices for A and B) agrees
    i, j = rng.integers(0, 60, (2000, 60)), rng.integers(0, 40, (2000, 40))
    boot = auroc(a_in[i], a_out[j]) - auroc(b_in[i], b_out[j])
    assert math.isclose(np.std(boot), se, rel_tol=0.15)


def test_single_auroc_standard_error_matches_the_definition():
    rng = np.random.default_rng(5)
    s_in, s_out = rng.normal(size=30), rng.normal(1, 1, size=25)
    iv = auroc_ci(s_in, s_out)
    a, var = _delong_brute(s_out[None], s_in[None])
    se_logit = math.sqrt(var) / (a[0] * (1 - a[0]))
    assert math.isclose(math.log(iv.hi / (1 - iv.hi)) - math.log(a[0] / (1 - a[0])), 1.959964 * se_logit, rel_tol=1e-5)


def test_perfect_separation_gets_the_exact_bound_not_a_zero_width():
    s_in, s_out = np.arange(20.0), np.arange(100.0, 150.0)
    iv = auroc_ci(s_in, s_out)
    assert iv.estimate == 1.0 and iv.hi == 1.0 and iv.method.startswith("no misordered pair")
    assert math.isclose(iv.lo, 0.025 ** (1 / 20))                        # 1 − ε, (1 − ε)^20 = 0.025
    assert auroc_ci(s_out, s_in).hi == pytest.approx(1 - 0.025 ** (1 / 20))   # AUROC 0: mirrored
    d = auroc_diff_ci(s_in, s_out, s_in * 2, s_out * 2)                    # both perfect: diff 0, not certain
    assert d.estimate == 0 and d.lo < 0 < d.hi and "single intervals" in d.method


def test_interval_formatting_and_serialisation():
    iv = Interval(0.99354, 0.99137, 0.99582, 0.95, "DeLong (logit)", 500)
    assert str(iv) == "0.9935 [0.991, 0.996]"
    assert str(Interval(0.0016, -0.0021, 0.0053)) == "0.0016 [-0.003, 0.006]"    # bounds rounded outwards
    assert str(Interval(1.9, 1.52, 2.31)) == "1.90 [1.5, 2.4]"
    assert iv.excludes(0.99) and not iv.excludes(0.993) and Interval(0.01, 0.002, 0.02).excludes(0)
    assert Interval.from_dict(iv.to_dict()) == iv
    with pytest.raises(InputError, match="lo"):
        Interval(0.5, 0.6, 0.4)


def test_difference_verdict_needs_the_interval_to_exclude_zero():
    assert difference_verdict(Interval(0.01, 0.001, 0.02)) == "wins"
    assert difference_verdict(Interval(-0.01, -0.02, -0.001)) == "loses"
    assert difference_verdict(Interval(0.0016, -0.0021, 0.0053)) == "tie within uncertainty"
    assert difference_verdict(Interval(0.01, 0.0, 0.02)) == "tie within uncertainty"
    with pytest.raises(InputError, match="Interval of A − B"):
        difference_verdict(0.01)


def test_wilson_against_known_values():
    iv = wilson(81, 263)                          # Newcombe (1998), Stat Med 17: 857-872, Table I example
    assert (round(iv.lo, 4), round(iv.hi, 4)) == (0.2553, 0.3662)
    full = wilson(100, 100)                       # all successes: upper bound 1, lower n/(n + z²)
    assert full.hi == 1.0 and math.isclose(full.lo, 100 / (100 + 1.959964 ** 2), rel_tol=1e-6)
    assert wilson(0, 10).lo == 0.0


def test_over_seeds_on_a_known_case():
    est, lo, hi = [0.90, 0.92, 0.94], [0.88, 0.90, 0.92], [0.92, 0.94, 0.96]
    iv = over_seeds(est, lo, hi)
    h_seed = 4.302653 * 0.02 / math.sqrt(3)        # t_{2, 0.975} · s / √k, s = 0.02
    assert math.isclose(iv.estimate, 0.92) and math.isclose(iv.spread, 0.02) and iv.n == 3
    assert math.isclose(iv.hi - 0.92, math.hypot(h_seed, 0.02), rel_tol=1e-6)
    assert math.isclose(over_seeds(est).hi - 0.92, h_seed, rel_tol=1e-6)
    assert over_seeds([Interval(e, l, h) for e, l, h in zip(est, lo, hi)]) == iv           # per-seed Intervals
    one = over_seeds([0.9], [0.85], [0.93])
    assert (one.lo, one.hi) == (0.85, 0.93) and one.method.startswith("one model") and one.one_model
    assert one.seeds == 1 and one.label == "one model" and iv.seeds == 3 and not iv.one_model and iv.label == ""
    assert Interval.from_dict(one.to_dict()) == one
    t = mean_ci([1.0, 2.0, 3.0])
    assert math.isclose(t.hi, 2 + 4.302653 / math.sqrt(3), rel_tol=1e-6)


def test_over_seeds_covers_the_mean_over_seeds_on_a_shared_test_set():
    """Three seeds of a detector whose separation varies by seed (d_i ~ N(1.5, 0.1²)) scored on ONE shared
    test set, plus per-seed noise η: the target, the AUROC averaged over seeds, is Φ(d / sqrt(2(1+η²) + τ²)).
    The combined interval covers it; the t interval over seeds alone does not (it ignores the shared
    test set's sampling error)."""
    rng = np.random.default_rng(1)
    d, tau, eta, k, reps = 1.5, 0.1, 0.3, 3, 200
    truth = norm.cdf(d / math.sqrt(2 * (1 + eta ** 2) + tau ** 2))
    z_in, z_out = rng.standard_normal((reps, 150)), rng.standard_normal((reps, 100))
    shift = d + tau * rng.standard_normal((reps, k))
    n_in, n_out = eta * rng.standard_normal((reps, k, 150)), eta * rng.standard_normal((reps, k, 100))
    both, t_only = [], []
    for r in range(reps):
        ivs = [auroc_ci(z_in[r] + n_in[r, s], z_out[r] + shift[r, s] + n_out[r, s]) for s in range(k)]
        c, t = over_seeds(ivs), over_seeds([i.estimate for i in ivs])
        both.append(c.lo <= truth <= c.hi)
        t_only.append(t.lo <= truth <= t.hi)
    assert np.mean(both) >= 0.90, f"over_seeds covered the seed-averaged AUROC in {np.mean(both):.1%} of {reps} runs"
    assert np.mean(t_only) < 0.85                       # why the sampling half-width is added


def test_bootstrap_ci_wraps_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 200)
    iv = bootstrap_ci(np.mean, x, n_resamples=999, seed=1)
    t = mean_ci(x)
    assert iv.method.startswith("bootstrap percentile") and abs(iv.lo - t.lo) < 0.03 and abs(iv.hi - t.hi) < 0.03
    assert bootstrap_ci(np.mean, x, n_resamples=999, seed=1) == iv                  # seeded
    s_in, s_out = rng.normal(size=80), rng.normal(1, 1, size=60)
    b = bootstrap_ci(auroc, s_in, s_out, vectorized=True, n_resamples=999, method="BCa")
    d = auroc_ci(s_in, s_out)
    assert b.method.startswith("bootstrap BCa") and b.estimate == d.estimate and abs(b.lo - d.lo) < 0.03
    same = bootstrap_ci(np.mean, np.ones(20), method="BCa")                          # degenerate: percentile
    assert "BCa undefined" in same.method and same.lo == same.hi == 1.0
    pd_ = bootstrap_ci(lambda a, b: np.mean(a - b), x, x + 0.1, paired=True, n_resamples=99)
    assert math.isclose(pd_.lo, -0.1) and math.isclose(pd_.hi, -0.1)               # paired: the shift is exact


def _ok(n=MIN_PER_SIDE):
    return np.linspace(0, 1, n)


@pytest.mark.parametrize("call, match", [
    (lambda: auroc_ci(_ok(5), _ok()), "at least 10 per side"),
    (lambda: auroc_ci(np.ones(20), np.ones(30)), "same score"),
    (lambda: auroc_ci(np.r_[_ok(), np.nan], _ok()), "non-finite"),
    (lambda: auroc_ci(_ok(), _ok(), level=95), "level must lie"),
    (lambda: auroc_diff_ci(_ok(), _ok(), _ok(11), _ok()), "same images in the same order"),
    (lambda: auroc_diff_ci(_ok(), _ok() + 1, np.zeros(10), np.zeros(10)), "detector B"),
    (lambda: wilson(5, 3), "0 ≤ k ≤ n"),
    (lambda: wilson(1.5, 3), "whole counts"),
    (lambda: over_seeds([0.9]), "one seed and no interval"),
    (lambda: over_seeds([0.9, 0.8], [0.85]), "both lows and highs"),
    (lambda: over_seeds([0.9, 0.8], [0.85, 0.9], [0.95, 0.9]), "outside its own"),
    (lambda: bootstrap_ci(np.mean, _ok(), _ok(12), paired=True), "one length"),
])
def test_bad_input_names_the_cause(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_over_seeds_bounds_cut_the_interval_to_the_quantitys_range():
    from ccc_lib.stats import over_seeds
    raw = over_seeds([0.99, 0.995, 0.999], [0.98, 0.99, 0.995], [0.999, 0.9995, 1.0])
    cut = over_seeds([0.99, 0.995, 0.999], [0.98, 0.99, 0.995], [0.999, 0.9995, 1.0], bounds=(0.0, 1.0))
    assert raw.hi > 1.0 and cut.hi == 1.0 and cut.lo == raw.lo and cut.estimate == raw.estimate
    with pytest.raises(InputError, match="bounds"):
        over_seeds([0.5, 0.6], bounds=(1.0, 0.0))
