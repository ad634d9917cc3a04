"""NeuralFP's fits: one detector per configuration and seed through the checkpoint cache (as a job or in
process), its errors on every image set, the choice of configuration on validation data, and where each
autoencoder bank stopped."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ... import neuralfp as nfp
from ...cache import fingerprint, load_or_compute
from ...checks import InputError, check_fitted
from ...data import TensorData
from ...profiles import get_profile
from ...utils import get_device, to_numpy
from .protocol import PooledActivations, split_validation
from .settings import Config, auroc, settings, tap_set

__all__ = ["errors_from_activations", "FittedConfig", "make_detector", "fit_config", "bank_key", "fit_bank_job",
           "tune_on_validation", "stopping_table", "stopping_sentence"]


@dataclass
class FittedConfig:
    """One fitted NeuralFP configuration and its reconstruction errors on every set."""
    config: Config
    det: nfp.NeuralFP
    errors: dict                     # set name → N×L errors
    val_auroc: dict = field(default_factory=dict)   # combine → AUROC(validation ID, validation OOD)
    val_gap: dict = field(default_factory=dict)     # combine → (mean OOD − mean ID score) / std ID score


@torch.inference_mode()
def errors_from_activations(det: nfp.NeuralFP, acts: dict, batch_size: int = 2000) -> np.ndarray:
    """A fitted detector's N×L errors from :func:`ccc_lib.neuralfp.collect_activations`' (or
    :func:`~.protocol.collect_pooled`'s) output at its pooling: no second pass through the classifier."""
    check_fitted(det, "bank", "NeuralFP")
    missing = [t for t in det.taps if t not in acts]
    if missing:
        raise InputError(f"acts: no activations for taps {missing}; collect them with "
                         f"collect_activations(model, x, {list(det.taps)}, pool_to={det.pool_to})")
    for t in det.taps:
        d = det.bank.aes[t].dim
        if acts[t].ndim != 2 or acts[t].shape[1] != d:
            raise InputError(f"acts[{t!r}]: shape {tuple(acts[t].shape)} but the fingerprint expects N×{d}; "
                             f"collect with pool_to={det.pool_to}")
        if not bool(torch.isfinite(acts[t]).all()):
            raise InputError(f"acts[{t!r}]: non-finite activations (NaN or inf in the input images?)")
    dev = get_device()
    n = len(acts[det.taps[0]])
    out = [to_numpy(det.bank.errors({t: acts[t][i:i + batch_size].to(dev) for t in det.taps})
                    .clamp_min(1e-12)).astype(np.float64) for i in range(0, n, batch_size)]
    return np.concatenate(out) if out else np.empty((0, len(det.taps)))


def make_detector(model, cfg: Config, S: dict, seed: int = 0) -> nfp.NeuralFP:
    """NeuralFP at configuration ``cfg`` with the chapter's settings ``S`` (unfitted)."""
    return nfp.NeuralFP(model, tap_set(cfg.taps, model), cfg.pool_to, epochs=S["epochs"], lr=S["lr"],
                        batch_size=S["batch_size"], alpha=S["alpha"], seed=seed, plateau=S.get("plateau"))


def fit_config(model, cfg: Config, train: TensorData, acts: dict, S: dict, cache_key: dict, seed: int = 0) -> FittedConfig:
    """Fit NeuralFP at ``cfg`` on ``train`` (with the chapter's settings ``S``) and compute its errors
    on every set of ``acts`` (``{set: collect_pooled output}``, best a :class:`PooledActivations`, whose sets are
    computed only where an error is not cached; must hold ``"val_id"`` and ``"val_ood"``)."""
    det = make_detector(model, cfg, S, seed)
    det.fit(train, fit_limit=S["fit_limit"], calib_frac=S["calib_frac"], cache_key=cache_key)
    bank = fingerprint(det.bank)

    def set_errors(name):                # each set's errors through the cache (bank × the set's activations)
        lazy = isinstance(acts, PooledActivations)
        ident = acts.key(name) if lazy else fingerprint({t: acts[name][cfg.pool_to][t] for t in det.taps})
        key = {"bank": bank, "taps": list(det.taps), "pool_to": cfg.pool_to, "acts": ident, "version": 2}
        return load_or_compute("neuralfp-set-errors", key, lambda: {
            "errors": torch.as_tensor(errors_from_activations(det, acts[name][cfg.pool_to]))})["errors"].numpy()

    errors = {name: set_errors(name) for name in acts}
    val, gap = {}, {}
    for c in nfp.COMBINES:
        s_in, s_out = det.score_errors(errors["val_id"], c), det.score_errors(errors["val_ood"], c)
        val[c] = auroc(s_in, s_out)
        gap[c] = float((s_out.mean() - s_in.mean()) / max(s_in.std(), 1e-12))
    return FittedConfig(cfg, det, errors, val, gap)


def bank_key(model, ds: str, profile, S: dict, val_from: str) -> dict:
    """The cache key naming what a model's NeuralFP autoencoders in this chapter are fitted on: the
    classifier (its weights' fingerprint), the dataset, the profile and the validation split."""
    return {"classifier": fingerprint(model), "dataset": ds, "profile": get_profile(profile).name,
            "val_n": S["val_n"], "val_from": val_from}


def fit_bank_job(ds: str, profile: str, taps: str, pool_to, seed: int, clf_seed: int = 0, alpha=None) -> dict:
    """One NeuralFP fit as an independent job for :func:`ccc_lib.parallel.run_jobs`: load the classifier
    and the chapter's split exactly as the chapter does (:func:`split_validation`), fit the autoencoders
    of configuration (``taps``, ``pool_to``) with ``seed`` through the checkpoint cache (key
    :func:`bank_key`) and return a summary. The chapter then reads every bank from the cache."""
    from ...train import get_classifier
    P = get_profile(profile)
    S = settings(P, alpha=alpha)
    model, info = get_classifier(ds, P, seed=clf_seed)
    split = split_validation(info["train_data"], info["test_data"], S["val_n"], S["test_limit"], seed=clf_seed)
    cfg = Config(taps, pool_to)
    det = make_detector(model, cfg, S, seed)
    det.fit(split["fit"], fit_limit=S["fit_limit"], calib_frac=S["calib_frac"],
            cache_key=bank_key(model, ds, P, S, split["source"]))
    return {"model": ds, "configuration": cfg.label, "seed": seed, "from_cache": bool(det.fit_info["from_cache"]),
            "train_seconds": det.fit_info.get("train_seconds", 0.0)}


def tune_on_validation(scores: dict, tiebreak: dict | None = None) -> object:
    """The key with the highest validation AUROC (``{key: auroc}``, compared at 4 decimals). Ties (e.g.
    every candidate at 1.0 on an easy validation set) go to the highest ``tiebreak`` value (e.g. the
    standardised score gap between validation OOD and ID), then to the first in order."""
    r = {k: round(float(v), 4) for k, v in scores.items()}
    best = max(r.values())
    tied = [k for k, v in r.items() if v == best]
    if tiebreak is not None and len(tied) > 1:
        return max(tied, key=lambda k: tiebreak[k])       # max keeps the first of equal values
    return tied[0]


def stopping_table(fit_infos: dict) -> pd.DataFrame:
    """Where each autoencoder bank stopped (``{(model, configuration, seed): NeuralFP.fit_info}``): epochs
    run of the cap, whether the plateau test stopped it early, how many layers' loss curves pass the test
    at the end and the largest relative improvement over the last window (the plateau test's number)."""
    rows = []
    for (ds, cfg, seed), fi in fit_infos.items():
        tests = fi.get("plateau_tests") or {}
        imp = [float(v["improvement"]) for v in tests.values()]
        rows.append({"model": ds, "configuration": cfg, "seed": seed,
                     "epochs run": int(fi.get("epochs_run", fi["epochs"])), "cap": int(fi["epochs"]),
                     "stopped early (plateau)": bool(fi.get("stopped_early", False)),
                     "layers plateaued": f"{sum(bool(v['plateaued']) for v in tests.values())}/{len(tests)}",
                     "largest improvement, last window": max(imp) if imp else np.nan})
    return pd.DataFrame(rows).set_index(["model", "configuration", "seed"])


def stopping_sentence(table: pd.DataFrame) -> str:
    """One sentence from :func:`stopping_table`: how many banks the plateau test stopped before their cap,
    and, for those that ran to it, how much their loss still fell over the last window."""
    early = table[table["stopped early (plateau)"]]
    full = table[~table["stopped early (plateau)"]]
    parts = []
    if len(early):
        parts.append(f"{len(early)} of {len(table)} autoencoder banks passed the plateau test before their cap and "
                     f"stopped after {int(early['epochs run'].min())}–{int(early['epochs run'].max())} epochs")
    if len(full):
        imp = full["largest improvement, last window"]
        parts.append(f"{len(full)} of {len(table)} banks trained to their cap of {int(full['cap'].max())} epochs without "
                     f"passing it: at the cap the mean loss of the last window was still {imp.min():.1%}–{imp.max():.1%} "
                     "below the window before in the layer still falling fastest, although the cosine learning rate reaches zero "
                     "there — these autoencoders are bounded by the budget, not converged by the test")
    return "; ".join(parts) + "."
