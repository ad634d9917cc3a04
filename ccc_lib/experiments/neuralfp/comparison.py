"""The baselines beside NeuralFP: ODIN's and Mahalanobis' parameters tuned on validation data (their ε sweeps
through the cache), NeuralFP's AUROC over its autoencoder seeds, and NeuralFP against every baseline on the
same images (the verdicts), with the earlier edition's best-by-test rule kept only to show what changed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ... import baselines as bl
from ...cache import fingerprint, load_or_compute
from ...checks import InputError
from .fitting import tune_on_validation
from .settings import auroc

__all__ = ["BaselineChoice", "sweep_cached", "tune_baselines", "auroc_over_seeds", "versus_baseline",
           "versus_baselines", "best_of_test_verdicts", "winners_table", "flag_share"]


@dataclass
class BaselineChoice:
    """ODIN's (T, ε) and Mahalanobis' ε chosen on validation data, with the validation tables."""
    odin_T: float
    odin_eps: float
    maha_eps: float
    odin_val: pd.DataFrame           # rows ε, columns T: validation AUROC
    maha_val: pd.Series              # index ε: validation AUROC


def sweep_cached(detector, x: torch.Tensor, eps_grid, what: str, model_id: str) -> dict:
    """``detector.sweep(x, eps_grid)`` through the tensor cache (keyed by the classifier, the images,
    the detector's settings and the grid): a warm rebuild re-reads the perturbation scores."""
    cfg = {"what": what, "model": model_id, "x": fingerprint(x), "eps": [float(e) for e in eps_grid],
           "T": float(getattr(detector, "temperature", 0.0))}
    if isinstance(detector, bl.MahalanobisODIN):
        # the fit named by what it saw (with the classifier, that fixes it), not by its means' and precision's
        # bits, which differ with the BLAS threads (a chapter run side by side with another has fewer)
        cfg["maha"] = detector.fitted_on or fingerprint([detector.detector._base.mu, detector.detector._base.precision])
    res = load_or_compute("neuralfp-sweep", cfg, lambda: {
        f"{e!r}": torch.as_tensor(v) for e, v in detector.sweep(x, eps_grid).items()})
    return {e: res[f"{float(e)!r}"].numpy() for e in eps_grid}


def tune_baselines(model, maha: bl.Mahalanobis, x_val_id, x_val_ood, temperatures, eps_grid, model_id: str) -> BaselineChoice:
    """Pick ODIN's (T, ε) and Mahalanobis' ε by AUROC on validation ID vs validation OOD images."""
    eps_grid = tuple(float(e) for e in eps_grid)
    odin = {}
    for T in temperatures:
        det = bl.ODIN(model, temperature=float(T))
        s_in = sweep_cached(det, x_val_id, eps_grid, "odin", model_id)
        s_out = sweep_cached(det, x_val_ood, eps_grid, "odin", model_id)
        odin[float(T)] = {e: auroc(s_in[e], s_out[e]) for e in eps_grid}
    odin_val = pd.DataFrame(odin)
    odin_val.index.name, odin_val.columns.name = "ε", "T"
    best = tune_on_validation({(T, e): odin_val.loc[e, T] for T in odin_val.columns for e in odin_val.index})
    mo = bl.MahalanobisODIN(model, base=maha)
    s_in = sweep_cached(mo, x_val_id, eps_grid, "maha", model_id)
    s_out = sweep_cached(mo, x_val_ood, eps_grid, "maha", model_id)
    maha_val = pd.Series({e: auroc(s_in[e], s_out[e]) for e in eps_grid}, name="validation AUROC")
    maha_val.index.name = "ε"
    return BaselineChoice(best[0], best[1], tune_on_validation(maha_val.to_dict()), odin_val, maha_val)


def auroc_over_seeds(by_seed: dict, ood: str, level: float = 0.95):
    """AUROC of one detector over autoencoder seeds (``by_seed``: ``{seed: {"test": s_in, ood: s_out}}``):
    each seed's DeLong interval, combined by :func:`ccc_lib.stats.over_seeds` (one seed: its own)."""
    from ...stats import auroc_ci, over_seeds
    cis = [auroc_ci(v["test"], v[ood], level) for v in by_seed.values()]
    return over_seeds(cis, level=level, bounds=(0.0, 1.0))


def versus_baseline(by_seed: dict, base: dict, ood: str, level: float = 0.95) -> dict:
    """NeuralFP (scores per autoencoder seed, ``{seed: {"test": .., ood: ..}}``) minus a baseline (``base``:
    ``{"test": .., ood: ..}``) on the *same* images: each seed's paired DeLong interval of the AUROC
    difference, combined over seeds by :func:`ccc_lib.stats.over_seeds`, and the verdict from that interval."""
    from ...stats import auroc_diff_ci, difference_verdict, over_seeds
    per = {s: auroc_diff_ci(v["test"], v[ood], base["test"], base[ood], level) for s, v in by_seed.items()}
    d = list(per.values())
    comb = over_seeds(d, level=level, bounds=(-1.0, 1.0))
    return {"per_seed": per, "combined": comb, "verdict": difference_verdict(comb)}


def versus_baselines(by_seed: dict, scores: dict, baselines, ood: str, level: float = 0.95):
    """NeuralFP (scores per autoencoder seed) against EVERY validation-tuned baseline in ``baselines``
    (``scores``: ``{baseline: {"test": .., ood: ..}}``, the same images): per baseline the seeds' paired
    interval of the AUROC difference (:func:`versus_baseline`), judged together by
    :func:`ccc_lib.stats.versus_every` — "wins" only when NeuralFP is ahead of each baseline, "loses" when
    it is behind one after Holm's correction, else "tie within uncertainty". No baseline is picked by
    its test AUROC."""
    from ...stats import versus_every
    return versus_every({m: versus_baseline(by_seed, scores[m], ood, level)["combined"] for m in baselines}, level)


def best_of_test_verdicts(by_seed: dict, scores: dict, baselines, oods) -> dict:
    """The earlier edition's rule, kept only to show what the change of rule did: NeuralFP against the ONE
    baseline with the highest *test* AUROC of each OOD set (a pick on the images judged, optimistic for the
    baselines' side by chance), ``{ood: (that baseline, its verdict)}``. Not a verdict of this chapter."""
    out = {}
    for o in oods:
        best = max(baselines, key=lambda m: auroc(scores[m]["test"], scores[m][o]))
        out[o] = (best, versus_baseline(by_seed, scores[best], o)["verdict"])
    return out


def winners_table(results: dict, nfp_ci: dict, n_seeds: int) -> pd.DataFrame:
    """One row per (model, OOD set) from :func:`versus_baselines`' results (``{(model, ood): VersusEvery}``)
    and NeuralFP's own AUROC intervals (``nfp_ci``, same keys): NeuralFP's AUROC over the seeds, its
    difference to each baseline (paired interval ⊕ seeds; Holm-adjusted p of "behind" where behind), the
    closest baseline, the difference to it (``summary``: valid for the smallest of the differences) and
    the verdict against every baseline."""
    rows = []
    for (ds, o), r in results.items():
        row = {"model": ds, "OOD": o, f"NeuralFP (one-out), {n_seeds} seeds": str(nfp_ci[(ds, o)])}
        for b in r.rows:
            row[f"− {b['baseline']}"] = str(b["interval"]) + (f" (Holm p {b['p_holm']:.3g})" if b["p_holm"] < 1 else "")
        row.update({"closest baseline": r.closest, "NeuralFP − closest": r.summary.fmt(3), "verdict": r.verdict})
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "OOD"])


def flag_share(s_val_id: np.ndarray, s_x: np.ndarray, alpha: float) -> dict:
    """A detector's decision at false-alarm budget ``alpha`` with its threshold set on in-distribution
    *validation* scores ``s_val_id`` (the (1 − α) quantile; never on test images): the threshold and the
    share of ``s_x`` above it."""
    s_val_id, s_x = np.asarray(s_val_id, dtype=float), np.asarray(s_x, dtype=float)
    if s_val_id.ndim != 1 or len(s_val_id) < 2:
        raise InputError("flag_share: s_val_id must hold ≥ 2 validation scores (a 1-D array)")
    t = float(np.quantile(s_val_id, 1 - alpha))
    return {"threshold": t, "flagged": float((s_x > t).mean()) if len(s_x) else float("nan")}
