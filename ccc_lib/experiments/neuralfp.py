"""Chapter 2's experiment code: settings and claim bounds per profile, the data protocol (validation
split, validation OOD set, near-OOD spatial shifts), the configurations NeuralFP is tuned over, the
baselines' tuning on validation data, and the chapter's tables (per-layer AUROC, false alarms of the
one-out rule's thresholdings, "where we differ from the slides").

The method itself (fingerprints, one-out rule, score) is :mod:`ccc_lib.neuralfp`; the pytorch-ood
baselines are :mod:`ccc_lib.baselines`.

**Fair comparison.** Every detector's free parameters are chosen the same way, by AUROC on held-out
*validation* data: in-distribution images split off the training set (never used to fit anything)
against :data:`VALIDATION_OOD` (crops from the *left* halves of scikit-image's photographs — the test
crops come from the right halves —, Gaussian noise and scikit-learn's upsampled 8×8 digits; none of them
is a test OOD set). NeuralFP's
configuration (tap set × pooling), ODIN's temperature and ε and Mahalanobis' ε are picked there;
the choice is then evaluated on the complete test sets of the profile."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import baselines as bl
from .. import neuralfp as nfp
from ..cache import fingerprint, load_or_compute
from ..checks import InputError, check_images
from ..data import TensorData
from ..metrics import ood_metrics
from ..profiles import chapter_settings, get_profile
from ..train import profile_data

__all__ = ["SETTINGS", "CLAIM_BOUNDS", "settings", "claim_bounds", "SLIDES_AUROC", "VALIDATION_OOD",
           "Config", "family", "chapter_models", "validation_split", "validation_ood", "spatial_shifts",
           "tap_set", "collect_pooled", "taps_by_pool", "auroc", "fit_config", "FittedConfig", "tune_on_validation",
           "BaselineChoice", "tune_baselines", "sweep_cached", "PooledActivations", "per_layer_auroc", "false_alarm_table",
           "where_we_differ"]

_SLIDES_EPS = (0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01)

SETTINGS = {
    # configs: the (tap set, pool_to) NeuralFP is tuned over on validation data ("cnn" = DEFAULT_TAPS,
    # "every_module" = after every conv, BN, activation, pooling and linear layer; pool_to None = full map).
    # val_n: in-distribution validation images split off the training set; val_ood_n: validation OOD
    # images; fit_limit: training images whose activations train the autoencoders (calib_frac of them
    # held out to calibrate); test_limit / ood_limit / shift_n: images per test set (None = all);
    # temperatures x eps_grid: ODIN's grid (eps 0 included), eps_grid: Mahalanobis' grid (0 included).
    "smoke": {"configs": (("cnn", 1), ("cnn", 2), ("every_module", 2)), "epochs": 3, "fit_limit": 1000,
              "calib_frac": 0.25, "lr": 2e-3, "batch_size": 256, "alpha": 0.05, "val_n": 150, "val_ood_n": 150,
              "test_limit": 300, "ood_limit": 150, "shift_n": 100, "shift_px": 6,
              "temperatures": (1.0, 1000.0), "eps_grid": (0.0,) + _SLIDES_EPS, "maha_fit_limit": 2000,
              "bench_n": 500, "counterfeits_n_per_class": 10},
    "default": {"configs": (("cnn", 1), ("cnn", 2), ("cnn", 4), ("every_module", 2)), "epochs": 10,
                "fit_limit": 6000, "calib_frac": 0.2, "lr": 2e-3, "batch_size": 256, "alpha": 0.05,
                "val_n": 500, "val_ood_n": 500, "test_limit": 2000, "ood_limit": 1000, "shift_n": 500,
                "shift_px": 6, "temperatures": (1.0, 1000.0), "eps_grid": (0.0,) + _SLIDES_EPS,
                "maha_fit_limit": 10000, "bench_n": 2000, "counterfeits_n_per_class": 30},
    "full": {"configs": (("cnn", 1), ("cnn", 2), ("cnn", 4), ("cnn", 7), ("every_module", 2), ("every_module", 4)),
             "epochs": 20, "fit_limit": None, "calib_frac": 0.1, "lr": 2e-3, "batch_size": 256, "alpha": 0.05,
             "val_n": 5000, "val_ood_n": 5000, "test_limit": None, "ood_limit": None, "shift_n": None,
             "shift_px": 6, "temperatures": (1.0, 10.0, 100.0, 1000.0), "eps_grid": (0.0,) + _SLIDES_EPS,
             "maha_fit_limit": None, "bench_n": 10000, "counterfeits_n_per_class": 100},
    # full's code paths on generated files: every size shrunk
    "full_dry": {"epochs": 1, "fit_limit": 200, "val_n": 40, "val_ood_n": 40, "test_limit": 100, "ood_limit": 60,
                 "shift_n": 40, "maha_fit_limit": 200, "bench_n": 100, "counterfeits_n_per_class": 2,
                 "configs": (("cnn", 2), ("cnn", 7), ("every_module", 2))},
}

#: per-profile bounds of the chapter's claims (set before the run; ``smoke`` trains for seconds on
#: tiny subsets, so its bounds only catch a broken pipeline). ``auroc_mnist_other``: the MNIST model's
#: combined AUROC against the other dataset (engineering row; the slides' 0.9826 is its own row);
#: ``fa_slack``: how far above alpha the joint rule's false alarms on fresh test images may lie.
CLAIM_BOUNDS = {
    "smoke": {"auroc_mnist_other": 0.80, "fa_slack": 0.10},
    "default": {"auroc_mnist_other": 0.95, "fa_slack": 0.03},
    "full": {"auroc_mnist_other": 0.97, "fa_slack": 0.02},
}

#: the slides' combined AUROC (model family, OOD family) → AUROC ("AUCs of detecting various OOD records")
SLIDES_AUROC = {("mnist", "fashion_mnist"): 0.9826, ("mnist", "cifar10"): 0.9921, ("mnist", "svhn"): 0.9921,
                ("fashion_mnist", "mnist"): 0.9498, ("fashion_mnist", "cifar10"): 0.9442,
                ("fashion_mnist", "svhn"): 0.9809}

#: the validation OOD set (never a test set): what it is made of
VALIDATION_OOD = ("natural_patches, train split (crops of the left half of each photograph)",
                  "gaussian_noise, train split", "digits, train split (scikit-learn's 8×8 digits upsampled to 28×28)")


def settings(profile=None, **overrides) -> dict:
    """This chapter's settings for a profile (see :data:`SETTINGS`)."""
    return chapter_settings(SETTINGS, profile, **overrides)


def claim_bounds(profile=None) -> dict:
    """The claim bounds of :data:`CLAIM_BOUNDS` for a profile (``full_dry`` takes ``full``'s)."""
    return dict(CLAIM_BOUNDS[get_profile(profile).scale])


def family(ds: str) -> str:
    """The slides' name for a dataset (``mnist5k`` is an MNIST subset)."""
    return "mnist" if ds in ("mnist", "mnist5k") else ds


def chapter_models(P) -> tuple[list, dict]:
    """The in-distribution models this chapter runs (those with OOD sets in the profile, as the slides
    use MNIST and Fashion-MNIST models) and ``{dataset: reason}`` for the classifiers it skips."""
    run = [ds for ds in P.classifier_datasets if P.ood_sets.get(ds)]
    skipped = {ds: "the slides evaluate MNIST and Fashion-MNIST models only; this classifier serves as an OOD "
                   "set here, not as an in-distribution model" for ds in P.classifier_datasets if ds not in run}
    if not run:
        raise InputError(f"profile {P.name!r} defines no OOD sets for any of its classifiers "
                         f"{list(P.classifier_datasets)}; chapter 2 needs at least one")
    return run, skipped


@dataclass(frozen=True)
class Config:
    """One NeuralFP configuration: which taps and how conv maps are pooled."""
    taps: str = "cnn"
    pool_to: int | None = 2

    @property
    def label(self) -> str:
        pool = "full map" if self.pool_to is None else f"{self.pool_to}×{self.pool_to}"
        return f"{'every module' if self.taps == 'every_module' else 'CNN taps'}, pool {pool}"


def tap_set(name: str, model) -> tuple:
    if name == "cnn":
        return nfp.DEFAULT_TAPS
    if name == "every_module":
        return nfp.every_module_taps(model)
    raise InputError(f"tap set {name!r} is not 'cnn' or 'every_module'")


# --------------------------------------------------------------------------- data protocol

def validation_split(data: TensorData, n_val: int | None, seed: int = 0) -> tuple[TensorData, TensorData]:
    """Split ``n_val`` in-distribution validation images off ``data`` (stratified where every class
    can be represented, seeded): ``(rest, val)``; the two are disjoint."""
    from sklearn.model_selection import train_test_split
    n_val = min(int(n_val or 0), len(data) // 4)
    if n_val < 10:
        raise InputError(f"validation_split: {len(data)} training images leave {n_val} for validation; need ≥ 10")
    y = data.y.numpy()
    strat = y if (y >= 0).all() and 1 < len(np.unique(y)) <= n_val else None
    _, val_idx = train_test_split(np.arange(len(y)), test_size=n_val, stratify=strat, random_state=seed)
    val = torch.zeros(len(y), dtype=torch.bool)
    val[torch.as_tensor(val_idx)] = True
    return data.where(~val), data.where(val)


def validation_ood(shape, n: int, profile, seed: int = 0) -> torch.Tensor:
    """The validation OOD images (:data:`VALIDATION_OOD`), a third each: natural-image crops from the
    photos' left halves (the test crops come from the right halves), Gaussian noise, and scikit-learn's
    8×8 digits upsampled (blurry, thick strokes: near-OOD for an MNIST model), in ``shape``. None of
    them is a test OOD set."""
    P = get_profile(profile)
    parts = [profile_data(name, "train", P, shape=shape).x for name in ("natural_patches", "gaussian_noise", "digits")]
    g = torch.Generator().manual_seed(seed)
    sizes = [n // 3, n // 3, n - 2 * (n // 3)]
    return torch.cat([p[torch.randperm(len(p), generator=g)[:k]] for p, k in zip(parts, sizes)])


def spatial_shifts(x: torch.Tensor, shift_px: int = 6) -> dict:
    """Near-OOD sets that live in the *spatial layout* of in-distribution images: flipped left-right,
    flipped upside-down, rotated by 90° and translated by ``shift_px`` pixels right and down (zero fill).
    Averaging a conv map over space discards exactly this information."""
    x = check_images(x, "x")
    shifted = F.pad(x, (shift_px, 0, shift_px, 0))[..., :x.shape[2], :x.shape[3]]
    return {"flipped left-right": x.flip(-1), "flipped upside-down": x.flip(-2),
            "rotated 90°": x.rot90(1, (2, 3)), f"shifted {shift_px} px": shifted}


@torch.no_grad()
def collect_pooled(model, x, taps_by_pool: dict, batch_size: int = 500) -> dict:
    """One forward pass over images ``x``, each pooling's taps reduced at that pooling
    (``taps_by_pool``: ``{pool_to: taps}``): ``{pool_to: {tap: N×d}}`` plus ``"_logits"`` and
    ``"_features"`` (see :func:`ccc_lib.neuralfp.collect_activations`)."""
    x = check_images(x, "x", expected_shape=getattr(model, "input_shape", None))
    dev = next(model.parameters()).device
    names = {t for taps in taps_by_pool.values() for t in taps} | {model.feature_layer}
    out = {p: {t: [] for t in dict.fromkeys(taps)} for p, taps in taps_by_pool.items()}
    logits_all, feats = [], []
    for i in range(0, len(x), batch_size):
        logits, acts = model.forward_with(x[i:i + batch_size].to(dev), names)
        for p, d in out.items():
            for t in d:
                d[t].append(nfp.reduce_activation(acts[t], p).float().cpu())
        logits_all.append(logits.float().cpu())
        feats.append(acts[model.feature_layer].float().cpu())
    res = {p: {t: torch.cat(v) for t, v in d.items()} for p, d in out.items()}
    res["_logits"], res["_features"] = torch.cat(logits_all), torch.cat(feats)
    return res


class PooledActivations(Mapping):
    """``{set name: collect_pooled(model, images, taps_by_pool)}``, each computed on first use and kept
    for the object's life; ``key(name)`` identifies a set's activations without computing them (the
    model's and the images' fingerprints), so errors cached under it need no pass at all."""

    def __init__(self, model, images: dict, taps_by_pool: dict):
        self.model, self.images, self.taps_by_pool, self._acts = model, dict(images), dict(taps_by_pool), {}
        self._model_fp = fingerprint(model)

    def __getitem__(self, name):
        if name not in self._acts:
            self._acts[name] = collect_pooled(self.model, self.images[name], self.taps_by_pool)
        return self._acts[name]

    def __iter__(self):
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def key(self, name) -> dict:
        return {"model": self._model_fp, "images": fingerprint(self.images[name]),
                "taps_by_pool": {str(p): list(t) for p, t in self.taps_by_pool.items()}}


def taps_by_pool(model, configs) -> dict:
    """``{pool_to: union of the tap sets used at that pooling}`` for :func:`collect_pooled`."""
    out: dict = {}
    for c in configs:
        c = c if isinstance(c, Config) else Config(*c)
        out.setdefault(c.pool_to, {}).update(dict.fromkeys(tap_set(c.taps, model)))
    return {p: tuple(t) for p, t in out.items()}


def auroc(s_in, s_out) -> float:
    return float(ood_metrics(s_in, s_out)["auroc"])


# --------------------------------------------------------------------------- NeuralFP, tuned on validation

@dataclass
class FittedConfig:
    """One fitted NeuralFP configuration and its reconstruction errors on every set."""
    config: Config
    det: nfp.NeuralFP
    errors: dict                     # set name → N×L errors
    val_auroc: dict = field(default_factory=dict)   # combine → AUROC(validation ID, validation OOD)
    val_gap: dict = field(default_factory=dict)     # combine → (mean OOD − mean ID score) / std ID score


def fit_config(model, cfg: Config, train: TensorData, acts: dict, S: dict, cache_key: dict, seed: int = 0) -> FittedConfig:
    """Fit NeuralFP at ``cfg`` on ``train`` (with the chapter's settings ``S``) and compute its errors
    on every set of ``acts`` (``{set: collect_pooled output}``, best a :class:`PooledActivations`, whose sets are
    computed only where an error is not cached; must hold ``"val_id"`` and ``"val_ood"``)."""
    det = nfp.NeuralFP(model, tap_set(cfg.taps, model), cfg.pool_to, epochs=S["epochs"], lr=S["lr"],
                       batch_size=S["batch_size"], alpha=S["alpha"], seed=seed)
    det.fit(train, fit_limit=S["fit_limit"], calib_frac=S["calib_frac"], cache_key=cache_key)
    bank = fingerprint(det.bank)

    def set_errors(name):                # each set's errors through the cache (bank × the set's activations)
        lazy = isinstance(acts, PooledActivations)
        ident = acts.key(name) if lazy else fingerprint({t: acts[name][cfg.pool_to][t] for t in det.taps})
        key = {"bank": bank, "taps": list(det.taps), "pool_to": cfg.pool_to, "acts": ident, "version": 2}
        return load_or_compute("neuralfp-set-errors", key, lambda: {
            "errors": torch.as_tensor(det.errors_from_activations(acts[name][cfg.pool_to]))})["errors"].numpy()

    errors = {name: set_errors(name) for name in acts}
    val, gap = {}, {}
    for c in nfp.COMBINES:
        s_in, s_out = det.score_errors(errors["val_id"], c), det.score_errors(errors["val_ood"], c)
        val[c] = auroc(s_in, s_out)
        gap[c] = float((s_out.mean() - s_in.mean()) / max(s_in.std(), 1e-12))
    return FittedConfig(cfg, det, errors, val, gap)


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


# --------------------------------------------------------------------------- baselines, tuned on validation

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
        cfg["maha"] = fingerprint([detector.detector._base.mu, detector.detector._base.precision])
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


# --------------------------------------------------------------------------- tables

def per_layer_auroc(det: nfp.NeuralFP, err_in: np.ndarray, err_out: np.ndarray) -> pd.DataFrame:
    """One row per tapped layer: the AUROC of its two-sided score ``|z_l|`` (what the one-out rule
    uses) and of its raw error ``e_l`` (one-sided; below 0.5: OOD errors are *lower*), then one row
    per combined score."""
    zi, zo = det.layer_z(errors=err_in), det.layer_z(errors=err_out)
    rows = {f"layer {j + 1}: {t}": {"|z_l|": auroc(np.abs(zi[:, j]), np.abs(zo[:, j])),
                                    "raw e_l": auroc(err_in[:, j], err_out[:, j])} for j, t in enumerate(det.taps)}
    for c in nfp.COMBINES:
        rows[f"combined: {c}"] = {"|z_l|": auroc(det.score_errors(err_in, c), det.score_errors(err_out, c)),
                                  "raw e_l": np.nan}
    return pd.DataFrame(rows).T


def false_alarm_table(det: nfp.NeuralFP, err_in: np.ndarray, err_outs: dict, alpha: float | None = None,
                      rules=("literal", "bonferroni", "joint", "upper", "mahalanobis")) -> pd.DataFrame:
    """For each thresholding rule: the share of (fresh) in-distribution inputs flagged (false alarms)
    and of each OOD set flagged. ``"literal"``, ``"bonferroni"``, ``"joint"``: the one-out rule with
    different per-layer thresholds; ``"upper"`` / ``"mahalanobis"``: our variants (joint calibration).
    Restores the detector's rule and combination afterwards."""
    keep = (det.rule, det.alpha, det.combine)
    rows = []
    try:
        for rule in rules:
            det.combine = rule if rule in ("upper", "mahalanobis") else "max"
            det.set_rule("joint" if rule in ("upper", "mahalanobis") else rule, alpha)
            row = {"rule": rule, "alpha": det.alpha,
                   "false alarms (ID test)": float(det.is_outlier(errors=err_in).mean()),
                   "mean layers flagged (ID)": (float(det.flags_from_errors(err_in).sum(1).mean())
                                                if det.combine != "mahalanobis" else np.nan)}
            for name, e in err_outs.items():
                row[f"detected: {name}"] = float(det.is_outlier(errors=e).mean())
            rows.append(row)
    finally:
        det.combine = keep[2]
        det.set_rule(keep[0], keep[1])
    return pd.DataFrame(rows).set_index("rule")


def where_we_differ(S: dict, P, chosen: dict) -> pd.DataFrame:
    """The "where we differ from the slides" table, generated from the settings and the choices made
    on validation data (``chosen``: ``{dataset: Config}``)."""
    cfgs = ", ".join(Config(*c).label for c in S["configs"])
    pick = "; ".join(f"{ds}: {c.label}" for ds, c in chosen.items())
    rows = [
        ("classifier", "models with 7 (MNIST) and 11 (Fashion-MNIST) layers in the per-layer tables; "
         "architecture not given",
         "the papers' 3-block CNN for both (chapter 0)"),
        ("tapped layers", "layers 1-7 and 1-11 of those models (which modules count as a layer: not given)",
         f"tuned on validation over: {cfgs}; chosen: {pick}"),
        ("fingerprint model", "autoencoders (shape not given)", "MLP d → h → k → h → d, k = max(2, d/8), Adam, MSE, "
         f"{S['epochs']} epochs"),
        ("thresholds τ_l, μ_l", "not given", f"joint rule: one t on max_l |z_l| for a {S['alpha']:.0%} "
         "false-alarm budget on held-out training images"),
        ("score behind the ROC", "not given", "max_l |z_l| (the one-out rule as its threshold t moves)"),
        ("OOD images for the MNIST/Fashion models", "CIFAR-10, SVHN, the other dataset (conversion not given)",
         f"{', '.join(sorted({o for v in P.ood_sets.values() for o in v}))}; colour images converted by us to "
         "grey-scale (luminance) and resized to the model's input"),
        ("near-OOD spatial shifts", "not in the slides", "flips, 90° rotation, translation of ID test images (ours)"),
        ("baselines' parameters", "ε grid shown per OOD set, T not given",
         f"ODIN T ∈ {list(S['temperatures'])} and ε, Mahalanobis ε ∈ {list(S['eps_grid'])}, chosen on validation"),
        ("training images", "not given", "all but the validation split" if S["fit_limit"] is None else f"at most {S['fit_limit']:,} for the autoencoders"),
    ]
    return pd.DataFrame(rows, columns=["what", "slides", "this chapter"]).set_index("what")
