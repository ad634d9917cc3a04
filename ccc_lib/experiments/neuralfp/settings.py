"""Chapter 2's settings and claim bounds per profile, the configurations NeuralFP is tuned over, the
validation OOD set's make-up, and the small helpers every part of the chapter uses."""
from __future__ import annotations

from dataclasses import dataclass

from ... import neuralfp as nfp
from ...checks import InputError
from ...metrics import ood_metrics
from ...profiles import chapter_settings, get_profile

__all__ = ["PLATEAU", "SETTINGS", "CLAIM_BOUNDS", "VALIDATION_OOD", "settings", "claim_bounds", "family",
           "chapter_models", "Config", "tap_set", "auroc"]


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


def auroc(s_in, s_out) -> float:
    return float(ood_metrics(s_in, s_out)["auroc"])
