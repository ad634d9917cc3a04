"""Chapter 4's step 7 judged: the family false-alarm rate of the decision simulated under beta-binomial
shares (the rule and the rule it replaced), the number of controls the decision's design target needs,
and what this run's controls say about each class's spread (the world the simulation must cover)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ... import drift as D
from ...cache import cached
from ...metrics import betabinom_p_values, holm, t_interval_p

__all__ = ["SIM_RULES", "false_alarm_simulation", "fitted_world", "simulation_table", "controls_needed",
           "class_spread"]

SIM_RULES = ("beta-binomial", "beta-binomial, no margin", "t-interval (before)")


def _family_alarms(counts: np.ndarray, records: int, margin: float, alpha: float, correction: str) -> dict:
    """Per rule of :data:`SIM_RULES`, which of the production models (``counts[:, 0]``, against the
    controls ``counts[:, 1:]``) the family calls drifted — the rules as :func:`ccc_lib.drift.drift_decision`
    applies them (its vectorised cores)."""
    prod, ctrl = counts[:, 0], counts[:, 1:]
    _, _, adj, beyond = D.family_test(prod, ctrl, records, margin=margin, correction=correction)
    x, c = prod / records, ctrl / records
    p_t = np.concatenate([t_interval_p(x.mean(-1)[:, None], c.mean(-1)[:, :, None], margin, alpha),
                          t_interval_p(x, c, margin, alpha)], -1)
    return {"beta-binomial": ((adj < alpha) & beyond).any(-1), "beta-binomial, no margin": (adj < alpha).any(-1),
            "t-interval (before)": (holm(p_t, correction) < alpha).any(-1)}


def _world(rate, rho, classes: int):
    """Per-class (means, over-dispersions) of a simulated setting: a base rate for every class, ``"lo-hi"``
    spread evenly over the classes, or explicit per-class tuples."""
    if isinstance(rate, str):
        mus = np.linspace(*map(float, rate.split("-")), classes)
    else:
        mus = np.broadcast_to(np.asarray(rate, float), (classes,))
    return mus, np.broadcast_to(np.asarray(rho, float), (classes,))


@cached("drift-false-alarm-simulation", version=2)
def false_alarm_simulation(base_rates=(0.5, 0.7, 0.9, 0.95, "0.5-0.95"), rhos=(0.0, 0.1, 0.3), *, records: int = 20,
                           n_controls: int = 10, classes: int = 10, reps: int = 2000, alpha: float = 0.05,
                           margin: float = 0.1, correction: str = "holm", worlds: tuple = (), seed: int = 0) -> list:
    """Step 7's family false-alarm rate under beta-binomial shares: ``reps`` times, n + 1 no-drift models
    (``n_controls`` controls and one production model) each get, per class, a rate from a beta
    distribution with the class's base rate as mean and over-dispersion ρ (ρ = 0: binomial) and
    ``records`` gray records called member with that rate; the production model is judged against
    the controls by each rule of :data:`SIM_RULES`. Settings: every base rate × every ρ (a base rate
    ``"lo-hi"`` spreads the classes' rates evenly over [lo, hi]), and each of ``worlds`` —
    ``(label, per-class means, per-class ρ)``, e.g. :func:`fitted_world`. Rows: rule, setting (base
    rate, ρ), false alarms of ``reps``, the rate with its 95 % Wilson interval."""
    from ...stats import wilson
    rng = np.random.default_rng(seed)
    settings = [(str(r), float(rho), *_world(r, rho, classes)) for r in base_rates for rho in rhos]
    settings += [(str(label), float("nan"), *_world(mu, rho, classes)) for label, mu, rho in worlds]
    rows = []
    for label, rho_label, mus, rho in settings:
        alarms = {r: 0 for r in SIM_RULES}
        for start in range(0, reps, 250):
            size = (min(250, reps - start), n_controls + 1, classes)
            ok = (rho > 0) & (mus > 0) & (mus < 1)          # else the rate is the mean (no spread)
            conc = 1 / np.where(ok, rho, 1.0) - 1
            p = np.where(ok, rng.beta(np.where(ok, mus * conc, 1.0), np.where(ok, (1 - mus) * conc, 1.0), size), mus)
            for r, a in _family_alarms(rng.binomial(records, p), records, margin, alpha, correction).items():
                alarms[r] += int(a.sum())
        for r in SIM_RULES:
            w = wilson(alarms[r], reps)
            rows.append({"rule": r, "base rate": label, "rho": rho_label, "reps": int(reps), "false alarms": alarms[r],
                         "rate": alarms[r] / reps, "lo": float(w.lo), "hi": float(w.hi)})
    return rows


def fitted_world(control_per_class, records: int, label: str) -> tuple:
    """A simulation setting fitted to this run's controls: per class, the mean share and the
    method-of-moments over-dispersion ``ρ̂ = (s² / (m̂(1 - m̂)/records) - 1) / (records - 1)`` cut to
    [0, 0.99] (0 where the controls agree exactly). For :func:`false_alarm_simulation`'s ``worlds``."""
    share = np.asarray(control_per_class, float)
    mu = np.nanmean(share, 0)
    var = np.nanvar(share, 0, ddof=1)
    binom = mu * (1 - mu) / records
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(binom > 0, (var / binom - 1) / max(records - 1, 1), 0.0)
    return label, tuple(float(v) for v in mu), tuple(float(v) for v in np.clip(np.nan_to_num(rho), 0.0, 0.99))


def simulation_table(rows: list, alpha: float, rho_claim: float) -> tuple[pd.DataFrame, dict]:
    """The simulation as a table (settings × rules: the false-alarm rate and its Wilson interval) and,
    per rule, the largest rate over the settings with ρ ≤ ``rho_claim`` (the fitted worlds included),
    against α plus two Monte Carlo standard errors."""
    df = pd.DataFrame(rows)
    df["cell"] = [f"{r:.3f} [{lo:.3f}, {hi:.3f}]" for r, lo, hi in zip(df.rate, df.lo, df.hi)]
    df["ρ"] = [f"{v:g}" if v == v else "fitted per class" for v in df.rho]
    table = df.pivot_table(index=["base rate", "ρ"], columns="rule", values="cell", aggfunc="first",
                           sort=False)[list(SIM_RULES)]
    covered = df[(df.rho <= rho_claim + 1e-12) | df.rho.isna()]
    worst = {}
    for rule, g in covered.groupby("rule", sort=False):
        i = g.rate.idxmax()
        reps = int(g.reps.iloc[0])
        worst[rule] = {"rate": float(g.rate[i]), "setting": f"base rate {g['base rate'][i]}, ρ = {g.rho[i]:g}"
                       if g.rho[i] == g.rho[i] else str(g["base rate"][i]),
                       "bound": alpha + 2 * math.sqrt(alpha * (1 - alpha) / reps), "reps": reps}
    return table, worst


def controls_needed(records: int, classes: int, alpha: float, drop_to: float, max_n: int = 40) -> int | None:
    """The smallest number of controls with which a class falling to ``drop_to`` of its ``records``
    (rounded down), where every control keeps all of them, is called drift in the family of
    ``classes`` + 1 tests at level ``alpha`` (its p-value below α / (K + 1), Holm's first step); None
    beyond ``max_n``."""
    k = int(math.floor(drop_to * records))
    for n in range(2, max_n + 1):
        p = betabinom_p_values(np.array([k]), np.full((n, 1), records), records)[0][0]
        if p < alpha / (classes + 1):
            return n
    return None


def class_spread(dec: pd.DataFrame, records: int) -> pd.DataFrame:
    """Per dataset and class, what the no-drift controls score (rule-based attack): the mean share, the
    range, and the method-of-moments over-dispersion ρ̂ (:func:`fitted_world`) — the classes where a
    drop is hard to see are those whose controls already spread."""
    rows = []
    for ds, g in dec[(dec.kind == "none") & (dec.attack == "rule-based")].groupby("dataset", sort=False):
        share = np.array(list(g.per_class), float)
        _, mu, rho = fitted_world(share, records, ds)
        for c in range(share.shape[1]):
            rows.append({"dataset": ds, "class": c, "controls' mean share": mu[c],
                         "range": f"{np.nanmin(share[:, c]):.2f} – {np.nanmax(share[:, c]):.2f}", "ρ̂": rho[c]})
    return pd.DataFrame(rows).set_index(["dataset", "class"])
