"""Chapter 2's experiment code: settings and claim bounds per profile, the data protocol (validation
split, validation OOD set, near-OOD spatial shifts), the configurations NeuralFP is tuned over, the
baselines' tuning on validation data, and the chapter's tables (per-layer AUROC, false alarms of the
one-out rule's thresholdings, "where we differ from the slides").

The method itself (fingerprints, one-out rule, score) is :mod:`ccc_lib.neuralfp`; the pytorch-ood
baselines are :mod:`ccc_lib.baselines`.

**Fair comparison.** Every detector's free parameters are chosen the same way, by AUROC on held-out
*validation* data: in-distribution images the classifier did not train on where that is cheap (a part of
the test split kept apart from the evaluation images, :func:`split_validation`), else split off the training
set (never used to fit anything), against :data:`VALIDATION_OOD` (crops from the *left* halves of scikit-image's photographs — the test
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
           "where_we_differ", "SLIDES_SOURCES", "SLIDES_PER_LAYER", "SLIDES_EPS_PRINTED", "SLIDES_BASELINES",
           "SLIDES_TEXT", "RAW", "ZABS", "combined_vs_layers", "combined_vs_layers_ci", "comparable", "slides_label", "slides_per_layer",
           "slides_eps_table", "per_layer_with_slides", "eps_with_slides", "slides_checks", "slides_contradictions_text",
           "flag_share", "held_out", "bank_key", "fit_bank_job", "validation_from_test", "split_validation", "auroc_over_seeds", "versus_baseline",
           "versus_baselines", "best_of_test_verdicts", "winners_table", "stopping_table", "stopping_sentence", "make_detector", "PLATEAU"]

#: the noise magnitudes ε of the slides' ODIN and Mahalanobis tables, every value as printed: three tables
#: print the rows 0.0005, 0.001, **0.014**, 0.002, 0.005, 0.01 and the Fashion-MNIST Mahalanobis table prints
#: 0.0014 in that place. We run both 0.0014 and 0.014 and put each slides number at the ε printed beside it.
_SLIDES_EPS = (0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01, 0.014)

#: the autoencoders' stopping rule (the same for every profile; the epochs setting is its cap)
PLATEAU = {"tol": 0.01, "frac": 0.2, "min_epochs": 3}

SETTINGS = {
    # configs: the (tap set, pool_to) NeuralFP is tuned over on validation data ("cnn" = DEFAULT_TAPS,
    # "every_module" = after every conv, BN, activation, pooling and linear layer; pool_to None = full map).
    # val_n: in-distribution validation images split off the training set; val_ood_n: validation OOD
    # images; fit_limit: training images whose activations train the autoencoders (calib_frac of them
    # held out to calibrate); test_limit / ood_limit / shift_n: images per test set (None = all);
    # temperatures x eps_grid: ODIN's grid (eps 0 included), eps_grid: Mahalanobis' grid (0 included);
    # nfp_seeds: autoencoder seeds of NeuralFP at the chosen configuration for the comparison with the baselines.
    # epochs: the autoencoders' cap; plateau: their stopping rule (every layer's loss curve passes
    # ccc_lib.baselines.plateau: the mean loss of the last `frac` of the epochs improved by less than `tol`).
    "smoke": {"configs": (("cnn", 1), ("cnn", 2), ("every_module", 2)), "epochs": 3, "fit_limit": 1000,
              "calib_frac": 0.25, "lr": 2e-3, "batch_size": 256, "alpha": 0.05, "val_n": 150, "val_ood_n": 150,
              "test_limit": 300, "ood_limit": 150, "shift_n": 100, "shift_px": 6,
              "temperatures": (1.0, 1000.0), "eps_grid": (0.0,) + _SLIDES_EPS, "maha_fit_limit": 2000,
              "bench_n": 500, "counterfeits_n_per_class": 10, "nfp_seeds": 3,
              "plateau": PLATEAU},
    "default": {"configs": (("cnn", 1), ("cnn", 2), ("cnn", 4), ("every_module", 2)), "epochs": 10,
                "fit_limit": 6000, "calib_frac": 0.2, "lr": 2e-3, "batch_size": 256, "alpha": 0.05,
                "val_n": 500, "val_ood_n": 500, "test_limit": 2000, "ood_limit": 1000, "shift_n": 500,
                "shift_px": 6, "temperatures": (1.0, 1000.0), "eps_grid": (0.0,) + _SLIDES_EPS,
                "maha_fit_limit": 10000, "bench_n": 2000, "counterfeits_n_per_class": 30, "nfp_seeds": 3,
                "plateau": PLATEAU},
    "full": {"configs": (("cnn", 1), ("cnn", 2), ("cnn", 4), ("cnn", 7), ("every_module", 2), ("every_module", 4)),
             "epochs": 20, "fit_limit": None, "calib_frac": 0.1, "lr": 2e-3, "batch_size": 256, "alpha": 0.05,
             "val_n": 5000, "val_ood_n": 5000, "test_limit": None, "ood_limit": None, "shift_n": None,
             "shift_px": 6, "temperatures": (1.0, 10.0, 100.0, 1000.0), "eps_grid": (0.0,) + _SLIDES_EPS,
             "maha_fit_limit": None, "bench_n": 10000, "counterfeits_n_per_class": 100, "nfp_seeds": 3,
             "plateau": PLATEAU},
    # full's code paths on generated files: every size shrunk
    "full_dry": {"epochs": 1, "fit_limit": 200, "val_n": 40, "val_ood_n": 40, "test_limit": 100, "ood_limit": 60,
                 "shift_n": 40, "maha_fit_limit": 200, "bench_n": 100, "counterfeits_n_per_class": 2, "nfp_seeds": 2,
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

#: the caption of the slides' table each transcribed number comes from
SLIDES_SOURCES = {
    "combined": "slides, 'AUCs of detecting various OOD records'",
    ("per_layer", "mnist"): "slides, 'AUCs for different layer under MNIST model'",
    ("per_layer", "fashion_mnist"): "slides, 'AUCs for different layer under Fashion-MNIST model'",
    ("ODIN", "mnist"): "slides, 'AUCs by using ODIN [1] under MNIST model'",
    ("ODIN", "fashion_mnist"): "slides, 'AUCs by using ODIN [1] under Fashion-MNIST model'",
    ("Mahalanobis", "mnist"): "slides, 'AUCs by using Mahalanobis [4] under MNIST model'",
    ("Mahalanobis", "fashion_mnist"): "slides, 'AUCs by using Mahalanobis [4] under Fashion-MNIST model'",
}

#: the slides' per-layer AUROC, transcribed as printed (model family → OOD family → layers 1, 2, ...;
#: sources in :data:`SLIDES_SOURCES`). Values below 0.5 occur (Fashion model, layer 10 vs MNIST: 0.1961),
#: so they are one-sided AUROCs of the raw reconstruction error (larger error = OOD).
SLIDES_PER_LAYER = {
    "mnist": {"fashion_mnist": (0.7298, 0.8260, 0.6893, 0.4190, 0.4298, 0.8678, 0.8741),
              "cifar10": (0.8817, 0.8848, 0.8394, 0.5340, 0.4821, 0.8902, 0.8955),
              "svhn": (0.8821, 0.8850, 0.8634, 0.7661, 0.6927, 0.8899, 0.8944)},
    "fashion_mnist": {"mnist": (0.5280, 0.5995, 0.6013, 0.8163, 0.8236, 0.7980, 0.8009, 0.6668, 0.6446, 0.1961, 0.3826),
                      "cifar10": (0.6983, 0.7178, 0.7146, 0.7851, 0.8062, 0.7868, 0.7523, 0.3737, 0.2530, 0.5216,
                                  0.5893),
                      "svhn": (0.7499, 0.7606, 0.7546, 0.7801, 0.8447, 0.8217, 0.8064, 0.3797, 0.2418, 0.5369, 0.4637)},
}

#: the ε rows of the slides' baseline tables in the order and with the values printed (see ``_SLIDES_EPS``)
SLIDES_EPS_PRINTED = {
    ("ODIN", "mnist"): (0.0005, 0.001, 0.014, 0.002, 0.005, 0.01),
    ("ODIN", "fashion_mnist"): (0.0005, 0.001, 0.014, 0.002, 0.005, 0.01),
    ("Mahalanobis", "mnist"): (0.0005, 0.001, 0.014, 0.002, 0.005, 0.01),
    ("Mahalanobis", "fashion_mnist"): (0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01),
}

#: the slides' baseline AUROC, transcribed as printed: (method, model family) → OOD family → one value per
#: ε row of :data:`SLIDES_EPS_PRINTED`. The slides' "ODIN [1]" cites, as their reference [1], Hendrycks &
#: Gimpel's maximum-softmax baseline; their temperature is not given.
SLIDES_BASELINES = {
    ("ODIN", "mnist"): {"fashion_mnist": (0.9289, 0.9286, 0.9285, 0.9284, 0.9276, 0.9270),
                        "cifar10": (0.9650, 0.9649, 0.9650, 0.9650, 0.9657, 0.9677),
                        "svhn": (0.9858, 0.9858, 0.9859, 0.9860, 0.9870, 0.9891)},
    ("ODIN", "fashion_mnist"): {"mnist": (0.6193, 0.6193, 0.6193, 0.6190, 0.6147, 0.6019),
                                "cifar10": (0.5945, 0.5878, 0.5830, 0.5767, 0.5575, 0.5538),
                                "svhn": (0.5195, 0.5150, 0.5128, 0.5114, 0.5251, 0.5830)},
    ("Mahalanobis", "mnist"): {"fashion_mnist": (0.4566, 0.5046, 0.5139, 0.5048, 0.4659, 0.4437),
                               "cifar10": (0.6472, 0.9145, 0.9846, 0.974, 0.9295, 0.9165),
                               "svhn": (0.5088, 0.9621, 0.9788, 0.9684, 0.9304, 0.9006)},
    ("Mahalanobis", "fashion_mnist"): {"mnist": (0.5179, 0.5205, 0.5209, 0.5212, 0.5214, 0.5215),
                                       "cifar10": (0.7791, 0.4409, 0.7617, 0.9608, 0.9485, 0.9177),
                                       "svhn": (0.6841, 0.7222, 0.9147, 0.9908, 0.9734, 0.9377)},
}

#: the slides' text about those tables, quoted
SLIDES_TEXT = {
    "maha": "outperforms Mahalanobis [4] for all scenarios",
    "odin": "outperforms ODIN [1] for all scenarios except for detecting SVHN data on the MNIST model",
    "high": "The high AUC scores (over 0.94 for all cases)",
    "layers": "the overall detection performance is significantly enhanced (with greater AUC scores) as compared "
              "to that of an individual layer",
}

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


def validation_from_test(n_test: int, test_limit: int | None, n_val: int | None) -> bool:
    """Is it cheap to draw the in-distribution validation images from the *test* split (images the
    classifier never trained on)? Yes when the test split holds ``n_val`` images beyond the
    ``test_limit`` evaluated, so the evaluation keeps its size; else they come from the training split."""
    return test_limit is not None and n_test - int(n_val or 0) >= int(test_limit)


def split_validation(train: TensorData, test: TensorData, n_val: int | None, test_limit: int | None,
                     seed: int = 0) -> dict:
    """The chapter's split of one model's images: ``{"fit": training images for the detectors,
    "val": validation ID images, "test": evaluation ID images, "source": "test" | "train"}``. Where
    :func:`validation_from_test` says it is cheap, the validation images are a stratified part of the
    test split kept apart from the evaluation images (drawn first; the evaluation images are then
    ``test_limit`` of the rest); else they are split off the training split (see :func:`validation_split`)."""
    if validation_from_test(len(test), test_limit, n_val):
        rest, val = validation_split(test, n_val, seed=seed)
        return {"fit": train, "val": val, "test": rest.subset(test_limit, seed=seed), "source": "test"}
    fit, val = validation_split(train, n_val, seed=seed)
    return {"fit": fit, "val": val, "test": test.subset(test_limit, seed=seed), "source": "train"}


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


@torch.inference_mode()
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
            "errors": torch.as_tensor(det.errors_from_activations(acts[name][cfg.pool_to]))})["errors"].numpy()

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
    from ..train import get_classifier
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


# --------------------------------------------------------------------------- tables

#: the two per-layer quantities: the slides' (one-sided AUROC of the raw error, larger error = OOD, so
#: values below 0.5 mean OOD errors are *lower*) and ours (the two-sided |z_l| the one-out rule thresholds)
RAW, ZABS = "raw e_l (one-sided, the slides' quantity)", "|z_l| (two-sided, ours)"


def per_layer_auroc(det: nfp.NeuralFP, err_in: np.ndarray, err_out: np.ndarray) -> pd.DataFrame:
    """One row per tapped layer with two AUROCs: of its raw error ``e_l`` one-sided (:data:`RAW`, the
    slides' quantity, below 0.5 allowed) and of its two-sided score ``|z_l|`` (:data:`ZABS`, what the
    one-out rule thresholds), then one row per combined score (its AUROC in both columns: the number
    each column's layers are compared with)."""
    zi, zo = det.layer_z(errors=err_in), det.layer_z(errors=err_out)
    rows = {f"layer {j + 1}: {t}": {RAW: auroc(err_in[:, j], err_out[:, j]),
                                    ZABS: auroc(np.abs(zi[:, j]), np.abs(zo[:, j]))} for j, t in enumerate(det.taps)}
    for c in nfp.COMBINES:
        v = auroc(det.score_errors(err_in, c), det.score_errors(err_out, c))
        rows[f"combined: {c}"] = {RAW: v, ZABS: v}
    return pd.DataFrame(rows).T


def combined_vs_layers(table: pd.DataFrame, combine: str = "max") -> dict:
    """From :func:`per_layer_auroc`'s table: per quantity, the combined AUROC, the best single layer and
    its AUROC, and the margin combined − best layer (≥ 0: the combination is at least as good as every
    layer, judged on that quantity)."""
    layers = table[table.index.str.startswith("layer ")]
    comb = float(table.loc[f"combined: {combine}", ZABS])
    out = {}
    for q in (RAW, ZABS):
        best = layers[q].idxmax()
        out[q] = {"combined": comb, "best layer": best, "best": float(layers.loc[best, q]),
                  "margin": comb - float(layers.loc[best, q])}
    return out


def combined_vs_layers_ci(det: nfp.NeuralFP, err_in: np.ndarray, err_out: np.ndarray, level: float = 0.95) -> dict:
    """:func:`combined_vs_layers` with, per quantity, ``"diff"``: DeLong's paired interval of AUROC(combined
    one-out score) − AUROC(best single layer) on the same images (the layer scored by its raw error for
    :data:`RAW`, by ``|z_l|`` for :data:`ZABS`). The best layer is picked on these images: the strongest
    single-layer competitor, so the comparison favours the layers."""
    from ..stats import auroc_diff_ci
    t = per_layer_auroc(det, err_in, err_out)
    cv = combined_vs_layers(t)
    c_in, c_out = det.score_errors(err_in, "max"), det.score_errors(err_out, "max")
    zi, zo = np.abs(det.layer_z(errors=err_in)), np.abs(det.layer_z(errors=err_out))
    for q, (li, lo) in ((RAW, (err_in, err_out)), (ZABS, (zi, zo))):
        j = list(t.index).index(cv[q]["best layer"])
        cv[q]["diff"] = auroc_diff_ci(c_in, c_out, li[:, j], lo[:, j], level)
        # the symmetric (Wald) interval of the earlier edition, only to show where the change of method matters
        cv[q]["diff_wald"] = auroc_diff_ci(c_in, c_out, li[:, j], lo[:, j], level, method="wald")
    return cv


def comparable(profile) -> bool:
    """Do the profile's data match the slides' (MNIST, Fashion-MNIST, CIFAR-10, SVHN)? Only ``full``
    (and its dry run's code path). The classifier never matches: the slides do not give theirs."""
    return get_profile(profile).scale == "full"


def slides_label(profile) -> str:
    """The column label of the slides' numbers beside ours at this profile."""
    return "slides (same data, their classifier)" if comparable(profile) else "slides (comparable only at full)"


def slides_per_layer(model_family: str) -> pd.DataFrame:
    """The slides' per-layer table of a model (rows ``layer k``, columns OOD families), as printed."""
    d = SLIDES_PER_LAYER[model_family]
    n = len(next(iter(d.values())))
    return pd.DataFrame(d, index=[f"layer {k + 1}" for k in range(n)])


def slides_eps_table(method: str, model_family: str) -> pd.DataFrame:
    """One of the slides' four ε tables (rows ε as printed, in the printed order; columns OOD families)."""
    key = (method, model_family)
    return pd.DataFrame(SLIDES_BASELINES[key], index=pd.Index(SLIDES_EPS_PRINTED[key], name="ε"))


def per_layer_with_slides(ds: str, tables: dict, taps, profile) -> pd.DataFrame:
    """Per-layer AUROC of model ``ds`` (``tables``: ``{OOD set: per_layer_auroc table}``) in both
    quantities, with the slides' per-layer numbers of the same (model, OOD) pair beside them where the
    slides have that pair (labelled by :func:`slides_label`). Rows are aligned by layer *number* only:
    the slides' layer k and our tap k are different layers of different networks."""
    fam = family(ds)
    sl = slides_per_layer(fam) if fam in SLIDES_PER_LAYER else None
    n = max(len(taps), 0 if sl is None else len(sl))
    index = [f"layer {k + 1}" for k in range(n)] + ["combined (one-out)", "combined − best layer"]
    lab = slides_label(profile)
    cols = {("", "our tap"): [taps[k] if k < len(taps) else "—" for k in range(n)] + ["", ""]}
    for o, t in tables.items():
        cv = combined_vs_layers(t)
        for q in (RAW, ZABS):
            vals = [float(t[q].iloc[k]) if k < len(taps) else np.nan for k in range(n)]
            cols[(o, q)] = vals + [cv[q]["combined"], cv[q]["margin"]]
        if sl is not None and family(o) in sl.columns:
            v = sl[family(o)]
            c = SLIDES_AUROC[(fam, family(o))]
            cols[(o, lab)] = [float(v.iloc[k]) if k < len(v) else np.nan for k in range(n)] + [c, c - float(v.max())]
    out = pd.DataFrame(cols, index=index)
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["OOD", "quantity"])
    return out


def eps_with_slides(ours: pd.DataFrame, method: str, ds: str, profile) -> pd.DataFrame:
    """Our ε table (rows ε, columns OOD sets) with the slides' numbers of the same (model, OOD) pair
    beside ours, each at the ε the slides print (so the printed "0.014" row sits at ε = 0.014)."""
    fam = family(ds)
    key = (method, fam)
    sl = slides_eps_table(method, fam) if key in SLIDES_BASELINES else None
    eps = sorted(set(float(e) for e in ours.index) | (set() if sl is None else set(sl.index)))
    lab = slides_label(profile)
    cols = {}
    for o in ours.columns:
        cols[(o, "ours")] = [float(ours.loc[e, o]) if e in ours.index else np.nan for e in eps]
        if sl is not None and family(o) in sl.columns:
            cols[(o, lab)] = [float(sl.loc[e, family(o)]) if e in sl.index else np.nan for e in eps]
    out = pd.DataFrame(cols, index=pd.Index(eps, name="ε"))
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["OOD", "AUROC"])
    return out


def slides_checks() -> list[dict]:
    """The slides' statements about their own tables, checked on their own transcribed numbers: one
    dict per check (``statement``, ``holds``, ``evidence``: the numbers). Nothing here is ours."""
    nf = SLIDES_AUROC
    name = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "svhn": "SVHN"}
    out = []
    beats = []                              # Mahalanobis at some printed ε above NeuralFP's combined AUROC
    for fam in ("mnist", "fashion_mnist"):
        t = slides_eps_table("Mahalanobis", fam)
        for o in t.columns:
            for e, v in t[o].items():
                if v > nf[(fam, o)]:
                    beats.append(f"{name[fam]} model vs {name[o]}, ε = {e:g}: Mahalanobis {v:.4f} vs NeuralFP "
                                 f"{nf[(fam, o)]:.4f}")
    out.append({"statement": SLIDES_TEXT["maha"], "holds": not beats,
                "evidence": "; ".join(beats) if beats else "no printed Mahalanobis value reaches NeuralFP's"})
    odin_best, odin_beats = {}, []
    for fam in ("mnist", "fashion_mnist"):
        t = slides_eps_table("ODIN", fam)
        for o in t.columns:
            e = t[o].idxmax()
            odin_best[(fam, o)] = (float(t.loc[e, o]), float(e))
            if t.loc[e, o] > nf[(fam, o)]:
                odin_beats.append((fam, o))
    v, e = odin_best[("mnist", "svhn")]
    exc_ok = ("mnist", "svhn") in odin_beats
    others = [p for p in odin_beats if p != ("mnist", "svhn")]
    out.append({"statement": SLIDES_TEXT["odin"], "holds": exc_ok and not others,
                "evidence": (f"MNIST model vs SVHN: ODIN's best printed value {v:.4f} (ε = {e:g}) is "
                             f"{'above' if exc_ok else 'below'} NeuralFP's {nf[('mnist', 'svhn')]:.4f}, so the stated "
                             f"exception {'is' if exc_ok else 'is not'} one"
                             + ("; ODIN also beats NeuralFP on " + ", ".join(f"{name[a]} vs {name[b]}" for a, b in others)
                                if others else ""))})
    lo = min(nf, key=nf.get)
    out.append({"statement": SLIDES_TEXT["high"], "holds": min(nf.values()) > 0.94,
                "evidence": f"lowest: {name[lo[0]]} model vs {name[lo[1]]}, {nf[lo]:.4f}"})
    worst = min(((fam, o) for fam in SLIDES_PER_LAYER for o in SLIDES_PER_LAYER[fam]),
                key=lambda p: nf[p] - max(SLIDES_PER_LAYER[p[0]][p[1]]))
    m = nf[worst] - max(SLIDES_PER_LAYER[worst[0]][worst[1]])
    out.append({"statement": SLIDES_TEXT["layers"], "holds": m > 0,
                "evidence": f"smallest margin combined − best layer: {name[worst[0]]} model vs {name[worst[1]]}, "
                            f"{nf[worst]:.4f} − {max(SLIDES_PER_LAYER[worst[0]][worst[1]]):.4f} = {m:.4f}"})
    return out


def slides_contradictions_text() -> str:
    """A short paragraph, generated from the transcribed constants, listing where the slides' own
    numbers contradict their text (and, briefly, what they confirm)."""
    checks = slides_checks()
    bad = [c for c in checks if not c["holds"]]
    good = [c for c in checks if c["holds"]]
    parts = [f"The slides say NeuralFP \"{c['statement']}\"; their own tables disagree: {c['evidence']}." for c in bad]
    if good:
        parts.append("Their numbers do bear out: " + "; ".join(f"\"{c['statement']}\" ({c['evidence']})" for c in good)
                     + ".")
    return " ".join(parts) if parts else "The slides' own numbers agree with every statement of their text."


def auroc_over_seeds(by_seed: dict, ood: str, level: float = 0.95):
    """AUROC of one detector over autoencoder seeds (``by_seed``: ``{seed: {"test": s_in, ood: s_out}}``):
    each seed's DeLong interval, combined by :func:`ccc_lib.stats.over_seeds` (one seed: its own)."""
    from ..stats import auroc_ci, over_seeds
    cis = [auroc_ci(v["test"], v[ood], level) for v in by_seed.values()]
    return over_seeds(cis, level=level, bounds=(0.0, 1.0))


def versus_baseline(by_seed: dict, base: dict, ood: str, level: float = 0.95) -> dict:
    """NeuralFP (scores per autoencoder seed, ``{seed: {"test": .., ood: ..}}``) minus a baseline (``base``:
    ``{"test": .., ood: ..}``) on the *same* images: each seed's paired DeLong interval of the AUROC
    difference, combined over seeds by :func:`ccc_lib.stats.over_seeds`, and the verdict from that interval."""
    from ..stats import auroc_diff_ci, difference_verdict, over_seeds
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
    from ..stats import versus_every
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


def flag_share(s_val_id: np.ndarray, s_x: np.ndarray, alpha: float) -> dict:
    """A detector's decision at false-alarm budget ``alpha`` with its threshold set on in-distribution
    *validation* scores ``s_val_id`` (the (1 − α) quantile; never on test images): the threshold and the
    share of ``s_x`` above it."""
    s_val_id, s_x = np.asarray(s_val_id, dtype=float), np.asarray(s_x, dtype=float)
    if s_val_id.ndim != 1 or len(s_val_id) < 2:
        raise InputError("flag_share: s_val_id must hold ≥ 2 validation scores (a 1-D array)")
    t = float(np.quantile(s_val_id, 1 - alpha))
    return {"threshold": t, "flagged": float((s_x > t).mean()) if len(s_x) else float("nan")}


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


def held_out(S: dict, counts: dict, val_source: dict | None = None) -> pd.DataFrame:
    """Which images are held out from what: one row per image set of the chapter, saying where it is
    drawn from and whether the classifier, the autoencoders and the choices on validation data saw it.
    ``counts``: ``{set: "n per model"}`` text from the run; ``val_source``: ``{model: "test" | "train"}``
    (:func:`split_validation`), where each model's validation ID images come from."""
    test_m = [m for m, v in (val_source or {}).items() if v == "test"]
    train_m = [m for m, v in (val_source or {}).items() if v != "test"]
    from_test, from_train = "test split, kept apart from the evaluation images", "training split, held out before fitting"
    if test_m and train_m:
        drawn = f"{from_test} ({', '.join(test_m)}); {from_train} ({', '.join(train_m)})"
        seen = f"no ({', '.join(test_m)}); yes, trained on them ({', '.join(train_m)})"
    elif test_m:
        drawn, seen = from_test, "no"
    else:
        drawn, seen = from_train, "yes, trained on them"
    rows = [
        ("autoencoder fit", "training split (minus the validation images where they come from it) minus calibration",
         "yes, trained on them", "yes", "fit the per-layer autoencoders (slides' steps 1-2)"),
        ("calibration", f"training split: {S['calib_frac']:.0%} of the autoencoders' share, held out from them",
         "yes, trained on them", "no", "m_l, s_l and the one-out thresholds (slides' step 3)"),
        ("validation ID", drawn, seen, "no",
         "every detector's free parameters; the counterfeit rows' thresholds"),
        ("validation OOD", "; ".join(VALIDATION_OOD), "no", "no", "every detector's free parameters"),
        ("test ID", "test split", "no", "no", "evaluation only (AUROC, false alarms)"),
        ("test OOD and spatial shifts", "test splits of the OOD sets; shifts of test ID images", "no", "no",
         "evaluation only"),
    ]
    df = pd.DataFrame(rows, columns=["images", "drawn from", "classifier trained on them",
                                     "autoencoders trained on them", "used for"]).set_index("images")
    df["count"] = [counts.get(i, "") for i in df.index]
    return df


def where_we_differ(S: dict, P, chosen: dict, val_source: dict | None = None) -> pd.DataFrame:
    """The "where we differ from the slides" table, generated from the settings and the choices made
    on validation data (``chosen``: ``{dataset: Config}``; ``val_source``: ``{dataset: "test" | "train"}``,
    where each model's validation ID images come from, see :func:`split_validation`)."""
    src = {"test": "a part of the test split kept apart from the evaluation images (unseen by the classifier)",
           "train": "training images held out before fitting (the classifier's own training images)"}
    val_text = ("; ".join(f"{ds}: {src[v]}" for ds, v in val_source.items()) if val_source else src["train"])
    cfgs = ", ".join(Config(*c).label for c in S["configs"])
    pick = "; ".join(f"{ds}: {c.label}" for ds, c in chosen.items())
    rows = [
        ("classifier", "models with 7 (MNIST) and 11 (Fashion-MNIST) layers in the per-layer tables; "
         "architecture not given",
         "the papers' 3-block CNN for both (chapter 0)"),
        ("tapped layers", "layers 1-7 and 1-11 of those models (which modules count as a layer: not given)",
         f"tuned on validation over: {cfgs}; chosen: {pick}"),
        ("fingerprint model", "autoencoders (shape not given)", "MLP d → h → k → h → d, k = max(2, d/8), Adam, MSE, "
         f"cosine learning rate over at most {S['epochs']} epochs"
         + (f", stopped earlier when every layer's loss curve passes the plateau test (mean loss of the last "
            f"{S['plateau']['frac']:.0%} of the epochs {S['plateau']['tol']:.0%} or less below the {S['plateau']['frac']:.0%} "
            f"before, tested from epoch {S['plateau']['min_epochs']} on)" if S.get("plateau") else "")),
        ("step 3: reconstruction errors for the thresholds", "\"compute the reconstruction errors of these "
         "autoencoders applied on training data\"",
         f"on a calibration part of the training images ({S['calib_frac']:.0%}) held out from the autoencoders "
         "(the classifier was trained on them)"),
        ("thresholds τ_l, μ_l", "not given", f"ours: joint rule, one t on max_l |z_l| for a {S['alpha']:.0%} "
         "false-alarm budget on the calibration images; our literal reading (each layer's μ_l, τ_l at its own α/2 "
         "and 1 − α/2 quantiles) and a Bonferroni split are shown beside it"),
        ("score behind the ROC", "not given", "max_l |z_l| (the one-out rule as its threshold t moves)"),
        ("per-layer AUROC", "one-sided AUROC of the raw reconstruction error (values below 0.5 printed, e.g. "
         "0.1961)", "both: the raw error one-sided (the slides' quantity) and |z_l| two-sided (ours, what the "
         "rule thresholds); \"combined ≥ every layer\" judged on each"),
        ("ε grid of the baselines' tables", "rows 0.0005, 0.001, 0.014, 0.002, 0.005, 0.01 (0.0014 in place of "
         "0.014 in the Fashion-MNIST Mahalanobis table)", f"ε ∈ {list(S['eps_grid'])}: both 0.0014 and 0.014 are "
         "run, each slides number is shown at the ε it is printed with"),
        ("\"ODIN [1]\"", "tables titled ODIN [1]; their reference [1] is Hendrycks & Gimpel's baseline (maximum "
         "softmax probability); temperature not given",
         "MSP (Hendrycks & Gimpel) and ODIN (Liang et al.: temperature and input perturbation) as two rows; "
         "the slides' ODIN [1] tables beside our ODIN ε table"),
        ("validation data", "not given", f"ID: {val_text}; against the validation OOD set"),
        ("thresholds of the counterfeit rows", "not in the slides", f"each detector's (1 − α) quantile on the "
         "validation ID images"),
        ("OOD images for the MNIST/Fashion models", "CIFAR-10, SVHN, the other dataset (conversion not given)",
         f"{', '.join(sorted({o for v in P.ood_sets.values() for o in v}))}; colour images converted by us to "
         "grey-scale (luminance) and resized to the model's input"),
        ("near-OOD spatial shifts", "not in the slides", "flips, 90° rotation, translation of ID test images (ours)"),
        ("NeuralFP against the baselines", "\"outperforms\" Mahalanobis and ODIN (their text; no interval)",
         f"the one-out row over {S['nfp_seeds']} autoencoder seeds against EVERY validation-tuned baseline on the "
         "same images: ahead only when ahead of each (every paired interval above 0), behind when behind one after "
         "Holm's correction; no baseline picked by its test AUROC"),
        ("baselines' parameters", "ε grid shown per OOD set, T not given",
         f"ODIN T ∈ {list(S['temperatures'])} and ε, Mahalanobis ε ∈ {list(S['eps_grid'])}, chosen on validation"),
        ("training images", "not given", "all but the validation split" if S["fit_limit"] is None else f"at most {S['fit_limit']:,} for the autoencoders"),
    ]
    return pd.DataFrame(rows, columns=["what", "slides", "this chapter"]).set_index("what")
