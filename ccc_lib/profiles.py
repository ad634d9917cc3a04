"""Run profiles: ``smoke`` (CI), ``default`` (real offline data on CPU), ``full`` (paper scale on a GPU),
``full_dry`` (full's code paths on generated files, tiny sizes, CPU: see :mod:`ccc_lib.dryrun`).

A notebook resolves its profile once, from its papermill parameter, else the
environment variable ``CCC_PROFILE``, else ``default``. Chapter modules keep
their own per-profile settings in a dict keyed by profile name (see
:func:`chapter_settings`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["Profile", "PROFILES", "get_profile", "chapter_settings"]


@dataclass(frozen=True)
class Profile:
    name: str
    #: datasets on which chapter 0 trains the papers' classifier
    classifier_datasets: tuple[str, ...]
    #: epochs of classifier training per dataset
    epochs: dict = field(default_factory=dict)
    #: cap on training images per dataset (None = all)
    train_limit: int | None = None
    #: cap on test images per dataset (None = all)
    test_limit: int | None = None
    #: OOD sets used when a chapter needs them, per in-distribution dataset
    ood_sets: dict = field(default_factory=dict)
    #: may datasets be downloaded?
    download: bool = False
    batch_size: int = 128
    seed: int = 0
    description: str = ""
    #: the profile whose code paths this one takes ("" = itself). ``full_dry`` has base "full":
    #: chapter settings are ``full``'s with the ``full_dry`` entry's overrides on top
    base: str = ""
    #: a dry run: generated files in the real formats, tiny sizes; its outputs are not a result
    dry_run: bool = False

    @property
    def scale(self) -> str:
        """The profile whose code paths to take: ``full`` for ``full`` and ``full_dry``."""
        return self.base or self.name

    def ood_for(self, dataset: str) -> tuple[str, ...]:
        """OOD sets for a classifier trained on ``dataset``: the profile's declared sets (NeuralFP's,
        chapter 2: the MNIST and Fashion models against the other, CIFAR-10 and SVHN at ``full``);
        for a classifier with none declared (SVHN and CIFAR-10 at ``full``, trained for chapter 1's
        32×32 counterfeits and shown in chapter 0) the run's other classifier datasets and uniform
        noise, so every loop over datasets has OOD inputs to show."""
        declared = self.ood_sets.get(dataset)
        if declared:
            return tuple(declared)
        return tuple(d for d in self.classifier_datasets if d != dataset) + ("noise",)

    def epochs_for(self, dataset: str) -> int:
        return int(self.epochs.get(dataset, self.epochs.get("*", 1)))


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        classifier_datasets=("mnist5k", "fashion_mnist"),
        epochs={"*": 4},
        train_limit=2000,
        test_limit=500,
        ood_sets={"mnist5k": ("fashion_mnist", "natural_patches", "noise"),
                  "fashion_mnist": ("mnist5k", "natural_patches", "noise")},
        download=False,
        description="CI: tiny subsets of the offline data, about a minute per notebook on 2 CPU cores.",
    ),
    "default": Profile(
        name="default",
        classifier_datasets=("mnist5k", "fashion_mnist"),
        epochs={"mnist5k": 10, "fashion_mnist": 3, "*": 3},
        train_limit=None,
        test_limit=None,
        ood_sets={"mnist5k": ("fashion_mnist", "natural_patches", "noise"),
                  "fashion_mnist": ("mnist5k", "natural_patches", "noise")},
        download=False,
        description="Real offline data (MNIST-5k, Fashion-MNIST) on a CPU: what the book shows.",
    ),
    "full": Profile(
        name="full",
        classifier_datasets=("mnist", "fashion_mnist", "svhn", "cifar10"),
        epochs={"mnist": 10, "fashion_mnist": 15, "svhn": 15, "cifar10": 30, "emnist": 10, "*": 10},
        train_limit=None,
        test_limit=None,
        ood_sets={"mnist": ("fashion_mnist", "cifar10", "svhn"),
                  "fashion_mnist": ("mnist", "cifar10", "svhn")},
        download=True,
        batch_size=256,
        description="Paper scale on one GPU; downloads MNIST, SVHN, CIFAR-10, EMNIST (python -m ccc_lib "
                    "fetch --profile full prefetches them for offline nodes).",
    ),
    "full_dry": Profile(
        name="full_dry",
        classifier_datasets=("mnist", "fashion_mnist", "svhn", "cifar10"),
        # two epochs of batch 32 on 400 generated images: the classifiers learn the generated classes
        # (measured: test accuracy 0.79 and 0.99 on the MNIST- and CIFAR-10-format files) in seconds
        epochs={"*": 2},
        train_limit=400,
        test_limit=200,
        ood_sets={"mnist": ("fashion_mnist", "cifar10", "svhn"),
                  "fashion_mnist": ("mnist", "cifar10", "svhn")},
        download=False,
        batch_size=32,
        base="full",
        dry_run=True,
        description="DRY RUN of full's code paths on generated files in the real formats (tiny sizes, "
                    "CPU); its numbers are not results.",
    ),
}


def get_profile(name: str | Profile | None = None) -> Profile:
    """Resolve a profile: the argument, else ``CCC_PROFILE``, else ``default``."""
    if isinstance(name, Profile):
        return name
    if name is None or name == "":
        name = os.environ.get("CCC_PROFILE") or "default"
    key = str(name).strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles are: {', '.join(PROFILES)} "
                         "(set it with the papermill parameter 'profile' or CCC_PROFILE)")
    return PROFILES[key]


def chapter_settings(settings: dict, profile: str | Profile | None = None, **overrides) -> dict:
    """Pick a chapter's settings for a profile and apply non-None overrides. A profile with a
    ``base`` (``full_dry``) takes the base's settings with its own entry's keys on top."""
    prof = get_profile(profile)
    if prof.base:
        if prof.base not in settings:
            raise ValueError(f"chapter settings have no entry for profile {prof.base!r}, the base of "
                             f"{prof.name!r} (have {list(settings)})")
        out = {**settings[prof.base], **settings.get(prof.name, {})}
    elif prof.name not in settings:
        raise ValueError(f"chapter settings have no entry for profile {prof.name!r} (have {list(settings)})")
    else:
        out = dict(settings[prof.name])
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in out:
            raise ValueError(f"unknown setting {k!r}; valid settings: {sorted(out)}")
        out[k] = v
    return out
