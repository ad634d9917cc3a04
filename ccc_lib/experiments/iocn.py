"""Chapter 3's experiments around the IOCN (the method itself is :mod:`ccc_lib.iocn`).

* settings per profile (:data:`SETTINGS`) and the claims' bounds (:data:`CLAIM_BOUNDS`);
* features: :func:`fashion_features` / :func:`encode_images` (the MNIST-5k CNN's penultimate
  features, an ImageNet ResNet-18's, or raw pixels) and :func:`one_class_split` (per-class PCA);
* the one-vs-rest table (:func:`one_vs_rest` → :class:`OneVsRest`), the decision rules as a user
  would apply them (:func:`decision_rates`), Table 2 (:func:`confusion_auroc`), Figure 3
  (:func:`extreme_examples`), the budget curves (:func:`budget_table`);
* chapter 1's counterfeits scored by the one-class detectors (:func:`score_counterfeits`);
* the appendix studies (toy 2-D data, the 1-D example, the hole, the stop-gradient ablation) live in
  :mod:`ccc_lib.experiments.iocn_appendix` and are re-exported here (``E.fit_toy`` etc.)."""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..baselines import DEEPOD_FIXES, deepod_version, make_oneclass_baseline, plateau
from ..cache import fingerprint, load_or_compute
from ..checks import InputError, check_features, check_fraction
from ..iocn import IOCN, FlowDetector, INNConfig, TrainConfig
from ..metrics import ood_metrics
from ..profiles import Profile, chapter_settings, get_profile
from ..utils import cpu_threads, get_device, to_numpy

# --------------------------------------------------------------------------- settings per profile

SETTINGS = {
    # INN: the paper's 12 AllInOneBlocks with width-128 subnets; affine clamping 1.0 (at 2.0 the
    # inverse blew up here, see the chapter). Training: Adam, lr 1e-3 with 50 warm-up steps and a
    # cosine decay, gradient-norm clipping 1.0, batch 128 (+128 cube samples for IOCN), Gaussian
    # noise of std `noise` added to each training batch of both INN methods. Inputs are standardised
    # per feature and divided by `divisor` (3: most training points start inside the cube).
    # Every row of Table 1 gets the same inputs (one_class_split: PCA, then a per-feature z-score fitted
    # on the inlier class's training rows); the INNs divide them by `divisor` on top.
    # deepOD: `deepod` lists the deepOD rows, on the blocks `deepod_feature_sets`, all training inliers.
    # Budget rule (deepod_budget): `deepod_epochs` epochs for every row (deepOD's default 100 at default
    # and full; fewer at smoke, a pipeline check), except the rows in `deepod_step_matched`, which get the
    # IOCN's number of gradient steps (`steps`, in whole epochs). No row is step-matched at default or full:
    # with the book's faster GOAD loss and score (tested equal to deepOD's) GOAD's 100 epochs cost minutes
    # per class on a CPU (measured in the chapter; deepOD's own took hours). `deepod_raw` rows are also run
    # on the raw PCA components (no z-score) for the classes `deepod_raw_classes`, to show what the inputs
    # do. Their test scores are cached.
    # `goad_check`: where GOAD is step-matched, is it under-trained? GOAD with `n_trans` transformations
    # (deepOD's default: 256), cheap enough for deepOD's default `epochs`, on `classes`: does its loss settle,
    # and where (chance is ln n_trans)?
    # `stack_inns`: train each method's per-class INNs as one stacked model (ccc_lib.batched; the same weights
    # as one by one, to float rounding): on a GPU one step is launch-bound, so the ten classes cost about one
    # (on at full, and in its dry run); on the CPU profiles the classes run side by side as jobs instead.
    "smoke": {
        "dataset": "fashion_mnist",
        "classes": (0, 1, 7),          # three Fashion-MNIST classes as inliers (T-shirt, Trouser, Sneaker)
        "n_train": 200,
        "feature_dim": 8,
        "feature_sets": ("cnn_mnist5k", "pixels"),
        "baselines": ("KNN", "KDE", "PCA", "COPOD", "IForest"),
        "deepod": ("DeepSVDD", "ICL", "SLAD"), "deepod_epochs": 10, "deepod_step_matched": ("GOAD",),
        "deepod_feature_sets": ("cnn_mnist5k",), "deepod_raw": ("SLAD",), "deepod_raw_classes": (0,),
        "goad_check": {"classes": (0,), "n_trans": 8, "epochs": 10},
        "verdict_seeds": (0, 1),       # IOCN and FLOW seeds behind the verdicts (learned features)
        "stack_inns": False,
        "n_blocks": 4, "clamp": 1.0, "lr": 1e-3, "noise": 0.1, "divisor": 3.0, "batch_size": 64,
        "steps": 40, "flow_steps": 40, "eval_at": (20, 40),
        "alpha": 0.05,                 # target false-alarm rate of the calibrated threshold
        "toy_sets": ("moons", "two_gaussians"), "toy_n": 256, "toy_steps": 60, "toy_blocks": 4, "toy_divisor": 1.0,
        "oned_n": 400, "oned_steps": 150, "oned_snapshots": (0, 20, 150),
        "hole_n": 400, "hole_steps": 60,
        "ablation_steps": 150,
        "figure3_k": 3,
    },
    "default": {
        "dataset": "fashion_mnist",
        "classes": tuple(range(10)),
        "n_train": 2000,
        "feature_dim": 16,
        "feature_sets": ("cnn_mnist5k", "pixels"),
        "baselines": ("KNN", "KDE", "PCA", "COPOD", "IForest"),
        "deepod": ("DeepSVDD", "RCA", "ICL", "GOAD", "SLAD"),
        "deepod_epochs": 100, "deepod_step_matched": (),
        "deepod_feature_sets": ("cnn_mnist5k",), "deepod_raw": ("ICL", "SLAD"), "deepod_raw_classes": (0, 1),
        "goad_check": {"classes": (), "n_trans": 32, "epochs": 100},     # GOAD runs its 100 epochs in Table 1
        "verdict_seeds": (0, 1, 2),
        "stack_inns": False,
        "n_blocks": 12, "clamp": 1.0, "lr": 1e-3, "noise": 0.1, "divisor": 3.0, "batch_size": 128,
        "steps": 300, "flow_steps": 300, "eval_at": (50, 100, 200, 300),
        "alpha": 0.05,
        "toy_sets": ("moons", "two_gaussians", "circles"), "toy_n": 1000, "toy_steps": 800, "toy_blocks": 12, "toy_divisor": 1.0,
        "oned_n": 2000, "oned_steps": 600, "oned_snapshots": (0, 40, 600),
        "hole_n": 1000, "hole_steps": 800,
        "ablation_steps": 300,
        "figure3_k": 5,
    },
    "full": {
        # CIFAR-10 (the paper's data); features: an ImageNet-pretrained ResNet-18's 512-d pooled
        # features on the hypersphere, reduced to 128-d by a per-class PCA (the paper: 128-d MoCo)
        "dataset": "cifar10",
        "classes": tuple(range(10)),
        "n_train": None,                # all 5,000 training images of a class
        "feature_dim": 128,
        "feature_sets": ("resnet18_imagenet", "pixels"),
        "baselines": ("KNN", "KDE", "PCA", "COPOD", "IForest", "DeepSVDD"),
        "deepod": ("DeepSVDD", "RCA", "ICL", "GOAD", "SLAD"), "deepod_epochs": 100, "deepod_step_matched": (),
        "deepod_feature_sets": ("resnet18_imagenet", "pixels"), "deepod_raw": ("ICL", "SLAD"), "deepod_raw_classes": (0, 1),
        "goad_check": {"classes": (), "n_trans": 32, "epochs": 100},     # GOAD runs its 100 epochs in Table 1
        "verdict_seeds": (0, 1, 2),
        "stack_inns": True,
        "n_blocks": 12, "clamp": 1.0, "lr": 1e-3, "noise": 0.1, "divisor": 3.0, "batch_size": 256,
        "steps": 4000, "flow_steps": 4000, "eval_at": (100, 250, 500, 1000, 2000, 4000),
        "alpha": 0.05,
        "toy_sets": ("moons", "two_gaussians", "circles"), "toy_n": 4000, "toy_steps": 4000, "toy_blocks": 12, "toy_divisor": 1.0,
        "oned_n": 4000, "oned_steps": 2000, "oned_snapshots": (0, 100, 2000),
        "hole_n": 4000, "hole_steps": 4000,
        "ablation_steps": 1000,
        "figure3_k": 5,
    },
    "full_dry": {   # full's code paths on generated files, tiny sizes, CPU (≤ ~60 s)
        "classes": (0, 1),
        "feature_dim": 8,
        "deepod_epochs": 1, "deepod_raw_classes": (0,), "verdict_seeds": (0,),
        "goad_check": {"classes": (0,), "n_trans": 4, "epochs": 2},    # the check's code path, tiny
        "n_blocks": 2, "batch_size": 64, "steps": 20, "flow_steps": 20, "eval_at": (10, 20),
        "toy_sets": ("moons",), "toy_n": 200, "toy_steps": 20, "toy_blocks": 2,
        "oned_n": 200, "oned_steps": 20, "oned_snapshots": (0, 5, 20),
        "hole_n": 200, "hole_steps": 20,
        "ablation_steps": 20,
        "figure3_k": 2,
    },
}

#: bounds of the claims, per profile (set before the run; see the chapter's claims section)
CLAIM_BOUNDS = {
    "smoke": {"recon": 1e-3, "inside_train": 0.25},
    "default": {"recon": 1e-3, "inside_train": 0.5},
    "full": {"recon": 1e-3, "inside_train": 0.5},
}


def settings(profile: str | Profile | None = None, **overrides) -> dict:
    return chapter_settings(SETTINGS, profile, **overrides)


def claim_bounds(profile: str | Profile | None = None) -> dict:
    return CLAIM_BOUNDS[get_profile(profile).scale]


# --------------------------------------------------------------------------- features

FEATURE_KINDS = ("cnn_mnist5k", "resnet18_imagenet", "pixels")
FEATURE_DESCRIPTIONS = {
    "cnn_mnist5k": "the 256-d penultimate features of the papers' CNN trained on MNIST-5k digits, on the unit hypersphere",
    "resnet18_imagenet": "the 512-d pooled features of an ImageNet-pretrained ResNet-18, on the unit hypersphere",
    "pixels": "the raw pixel values",
}


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise InputError(f"unknown feature kind {kind!r}; use one of {FEATURE_KINDS}")


def fashion_features(kind: str, profile: str | Profile | None = None, batch_size: int = 1024,
                     dataset: str = "fashion_mnist") -> dict:
    """Train/test features of ``dataset`` (``S["dataset"]``) for the one-vs-rest table.

    ``kind``: ``"cnn_mnist5k"`` — the 256-d penultimate features of the papers' CNN trained on
    **MNIST-5k digits** (chapter 0's classifier; it never saw a Fashion-MNIST image or label), on the
    unit hypersphere as the paper does with its MoCo features; ``"resnet18_imagenet"`` — the 512-d
    pooled features of torchvision's ImageNet-pretrained ResNet-18 (it never saw a CIFAR-10 label),
    on the hypersphere; ``"pixels"`` — the raw pixel values (C·H·W per image).
    Returns ``{"train": (x, y), "test": (x, y), "classes": [...], "key": ...}``; ``key`` names what the
    features are (kind, encoder, images, labels, profile), the identity the chapter's cache keys use."""
    from ..train import profile_data
    _check_kind(kind)
    prof = get_profile(profile)
    out, key = {}, {"v": 1, "dataset": dataset, "profile": prof.name}
    for split in ("train", "test"):
        data = profile_data(dataset, split, prof)
        out["classes"] = list(data.classes)
        x, key[split] = _cached_encoding(kind, data, prof, batch_size)
        key[f"{split}_labels"] = fingerprint(data.y)
        out[split] = (x, data.y.numpy())
    out["image_shape"] = tuple(data.shape)
    out["key"] = key
    return out


def _cached_encoding(kind: str, data, prof: Profile, batch_size: int) -> tuple[np.ndarray, dict]:
    """:func:`encode_images` of a whole split, through the tensor cache for the learned encoders (keyed by
    the encoder's identity and a fingerprint of the images), so a warm rebuild does not re-encode the
    training set; the pixels are the data themselves and are not cached. Returns ``(features, key)``:
    the key names the features by their inputs, not by their (platform-dependent) last bits."""
    if kind == "pixels":
        return encode_images(kind, data, prof, batch_size), {"kind": kind, "images": fingerprint(data.x)}
    if kind == "cnn_mnist5k":
        from ..train import get_classifier
        encoder = fingerprint(get_classifier("mnist5k", prof)[0])
    else:
        encoder = f"resnet18-{'random' if prof.dry_run else 'imagenet'}-{64 if prof.dry_run else 224}"
    key = {"kind": kind, "encoder": encoder, "images": fingerprint(data.x), "profile": prof.name}
    out = load_or_compute("iocn-features", key,
                          lambda: {"x": torch.as_tensor(encode_images(kind, data, prof, batch_size))})
    return out["x"].numpy(), key


@functools.lru_cache(maxsize=4)
def _encoder(kind: str, profile_name: str):
    """The learned encoder of ``kind`` at a profile, built once per process: ``(encode, input shape or
    None)`` — chapter 0's MNIST-5k CNN (from the checkpoint cache) or the pretrained ResNet-18."""
    from ..train import get_classifier
    prof = get_profile(profile_name)
    if kind == "cnn_mnist5k":
        model, _ = get_classifier("mnist5k", prof)
        return model.features, tuple(model.input_shape)
    if prof.dry_run:
        print("DRY RUN: the ResNet-18 encoder has random weights (nothing is downloaded) and sees the "
              "images at 64×64 instead of 224×224 (to save time); its features are not ImageNet features")
    return resnet18_encoder(weights=None if prof.dry_run else "DEFAULT", size=64 if prof.dry_run else 224), None


def encode_images(kind: str, data, profile: str | Profile | None = None, batch_size: int = 1024) -> np.ndarray:
    """The ``kind`` features (see :func:`fashion_features`) of images: a :class:`~ccc_lib.data.TensorData`
    or an N×C×H×W tensor in [0, 1] (converted to the encoder's input shape). Returns float32 rows."""
    from ..data import TensorData
    _check_kind(kind)
    if kind == "pixels":
        x = data.x if isinstance(data, TensorData) else data
        return x.flatten(1).cpu().numpy().astype(np.float32)
    encode, shape = _encoder(kind, get_profile(profile).name)
    if not isinstance(data, TensorData):
        data = TensorData(torch.as_tensor(data).float(), torch.full((len(data),), -1, dtype=torch.long),
                          classes=[], name="images", split="query")
    x = data.x if shape is None or tuple(data.shape) == shape else data.to_shape(shape).x
    if len(x) == 0:
        return np.empty((0, 0), dtype=np.float32)
    dev = get_device()
    with torch.no_grad():
        f = torch.cat([encode(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])
    return torch.nn.functional.normalize(f, dim=1).numpy().astype(np.float32)


def resnet18_encoder(weights="DEFAULT", size: int = 224):
    """ImageNet-pretrained ResNet-18 as a 512-d encoder of N×3×H×W images in [0, 1] (resized to
    ``size`` × ``size``, 224 as in ImageNet training; ImageNet-normalised). ``weights=None`` gives a random network (tests, the dry run). The weights are
    downloaded by torchvision on first use; offline this fails with a message naming the fix."""
    import torchvision
    try:
        net = torchvision.models.resnet18(weights=weights)
    except OSError as exc:
        raise RuntimeError("the ImageNet-pretrained ResNet-18 weights could not be downloaded; the 'full' "
                           "profile needs internet access once (torchvision caches them under ~/.cache/torch), "
                           f"or use the 'cnn_mnist5k'/'pixels' features ({exc})") from exc
    net.fc = torch.nn.Identity()
    net = net.to(get_device()).eval()
    mean = torch.tensor([0.485, 0.456, 0.406], device=get_device()).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=get_device()).view(1, 3, 1, 1)

    def encode(x):
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return net((x - mean) / std)
    return encode


@dataclass
class Split:
    """One-vs-rest data for one inlier class: the training inliers and the whole test set, after the
    chapter's one preprocessing (:func:`one_class_split`), which every row of Table 1 receives."""
    inlier: int
    train: np.ndarray
    test: np.ndarray
    is_out: np.ndarray          # 1 = outlier (another class)
    pca: object                 # the fitted preprocessing (PCA, then z-score): ``pca.transform(features)``
    explained_variance: float
    raw_train: np.ndarray | None = None     # the PCA components before the z-score (for the raw-input table)
    raw_test: np.ndarray | None = None
    key: dict | None = None     # what the split is (its features' key, class, dimension, rows, seed): the cache
                                # keys of the rows trained on it use this, not the split's floating-point bits


def one_class_split(feats: dict, inlier: int, dim: int, n_train: int | None = None, seed: int = 0) -> Split:
    """The chapter's one preprocessing, fitted on the inlier class's training rows only (``n_train`` of
    them) and applied to the whole test set: a PCA to ``dim`` components, then a per-feature z-score
    (mean 0, standard deviation 1 on those training rows). Labels 1 = outlier."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    xtr, ytr = feats["train"]
    xte, yte = feats["test"]
    idx = np.flatnonzero(ytr == inlier)
    if len(idx) < 2:
        raise InputError(f"class {inlier}: {len(idx)} training row(s); need at least 2")
    if n_train is not None and n_train < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, n_train, replace=False))
    dim = min(dim, len(idx), xtr.shape[1])
    # on one BLAS thread, whatever the caller's: a multi-threaded BLAS sums in another order, and the split's
    # last bits go into every cache key of the rows trained on it, so a per-class job (one thread) and the
    # notebook's kernel (all cores) must compute the same bits, or the kernel misses what the jobs trained
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        pca = PCA(n_components=dim, random_state=seed).fit(xtr[idx])
        raw_tr, raw_te = pca.transform(xtr[idx]), pca.transform(xte)
        z = StandardScaler().fit(raw_tr)
        ztr, zte = z.transform(raw_tr), z.transform(raw_te)
    prep = Pipeline([("pca", pca), ("zscore", z)])
    # the split named by its inputs: the PCA's last bits depend on the BLAS, its threads and the process
    # (a notebook kernel and a fresh job have been seen to differ), and must not decide a cache hit
    key = {"split": 1, "features": feats.get("key") or {"train": fingerprint(xtr), "test": fingerprint(xte),
                                                         "train_labels": fingerprint(np.asarray(ytr)),
                                                         "test_labels": fingerprint(np.asarray(yte))},
           "inlier": int(inlier), "dim": int(dim), "n_train": None if n_train is None else int(n_train), "seed": int(seed)}
    return Split(inlier, ztr.astype(np.float32), zte.astype(np.float32),
                 (yte != inlier).astype(int), prep, float(pca.explained_variance_ratio_.sum()),
                 raw_tr.astype(np.float32), raw_te.astype(np.float32), key)


def calibration_mask(y_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed, class-stratified half of the test set (True) held out to *calibrate* thresholds; the
    decision rates are measured on the other half. (AUROCs use the whole test set, as the paper.)"""
    rng = np.random.default_rng(seed + 12345)
    mask = np.zeros(len(y_test), bool)
    for c in np.unique(y_test):
        idx = np.flatnonzero(y_test == c)
        mask[rng.permutation(idx)[:len(idx) // 2]] = True
    return mask


# --------------------------------------------------------------------------- the one-vs-rest table

@dataclass
class OneVsRest:
    """Everything the chapter reads from one block of Table 1 (one feature kind)."""
    feature_kind: str
    class_names: list
    inliers: tuple                                  # the inlier classes run
    methods: list
    y_test: np.ndarray
    calib: np.ndarray                               # the calibration half of the test set
    auroc: dict = field(default_factory=dict)       # method -> {class: AUROC}
    scores: dict = field(default_factory=dict)      # method -> {class: scores of the whole test set}
    detectors: dict = field(default_factory=dict)   # method -> {class: fitted detector}
    evals: dict = field(default_factory=dict)       # INN method -> {class: [{step, train_seconds, auroc}]}
    seconds_per_step: dict = field(default_factory=dict)   # INN method -> {class: s}
    from_cache: dict = field(default_factory=dict)  # method -> {class: bool}
    fit_seconds: dict = field(default_factory=dict)  # method -> {class: s}, this run (0-ish when cached)
    pca: dict = field(default_factory=dict)         # class -> PCA
    inside_train: dict = field(default_factory=dict)  # class -> IOCN share of training inliers inside
    recon: dict = field(default_factory=dict)       # class -> max reconstruction error (IOCN)
    deepod_budget: dict = field(default_factory=dict)   # see deepod_budget()
    deepod: dict = field(default_factory=dict)      # deepOD row -> {class: {"history", "fixes", "score_seconds"}}

    def mean_auroc(self) -> dict:
        return {m: float(np.mean(list(v.values()))) for m, v in self.auroc.items()}


def deepod_budget(S: dict) -> dict:
    """The deepOD rows' budget rule at this profile: every row trains for ``epochs`` whole epochs on all
    the training inliers (``S["deepod_epochs"]``: deepOD's default of 100 at ``default`` and ``full``),
    except the rows in ``step_matched`` (``S["deepod_step_matched"]``), which get as many gradient steps
    as the IOCN per class (``S["steps"]``, rounded up to whole epochs; a cheap profile's option, off at
    ``default`` and ``full``)."""
    return {"epochs": S.get("deepod_epochs"), "step_matched": tuple(S.get("deepod_step_matched", ())),
            "iocn_steps": S["steps"]}


def deepod_default(method: str, arg: str):
    """A default argument of a deepOD detector's constructor (e.g. its ``batch_size``)."""
    import inspect
    import deepod.models.tabular as tab
    return inspect.signature(getattr(tab, method).__init__).parameters[arg].default


def deepod_epochs(method: str, S: dict, n_train: int) -> int:
    """The epochs of deepOD row ``method`` (a name without " (deepOD)") on ``n_train`` rows under
    :func:`deepod_budget`'s rule."""
    b = deepod_budget(S)
    epochs = b["epochs"] if b["epochs"] is not None else deepod_default(method, "epochs")
    if method in b["step_matched"]:
        per_epoch = math.ceil(n_train / deepod_default(method, "batch_size"))
        epochs = max(1, math.ceil(b["iocn_steps"] / per_epoch))
    return int(epochs)


def _scores_cached(kind: str, key: dict, fit_score, cache: bool) -> tuple[np.ndarray, bool, float]:
    """``fit_score()`` (fit a baseline, score the test set) through the tensor cache under ``key``;
    returns ``(scores, from_cache, seconds it took when computed)``."""
    def compute():
        t0 = time.perf_counter()
        s = fit_score()
        return {"scores": torch.as_tensor(np.asarray(s, dtype=np.float64)), "meta": {"seconds": time.perf_counter() - t0}}
    out = load_or_compute(kind, key, compute) if cache else {**compute(), "from_cache": False}
    return out["scores"].numpy(), bool(out["from_cache"]), float(out["meta"].get("seconds", float("nan")))


def deepod_scores(name: str, train: np.ndarray, test: np.ndarray, S: dict, seed: int = 0, cache: bool = True,
                  fixes: bool = True, epochs: int | None = None, data_key: dict | None = None, **kw) -> dict:
    """Fit deepOD row ``name`` ("<method> (deepOD)") on ``train`` under :func:`deepod_budget`'s rule and
    score ``test``; through the tensor cache (keyed by the method, its epochs, the fixes, the seed and
    fingerprints of the data, or ``data_key``: what the data are), so a warm rebuild does not retrain. Returns ``{"scores", "history"
    (loss per epoch, epochs, steps, seconds), "fixes", "score_seconds", "from_cache"}``. ``epochs`` and
    ``kw`` (deepOD hyper-parameters, e.g. ``n_trans``) override the rule and the defaults (a side study)."""
    method = name[:-len(" (deepOD)")]
    epochs = deepod_epochs(method, S, len(train)) if epochs is None else int(epochs)
    key = {"v": 2, "method": name, "epochs": epochs, "fixes": fixes, "seed": seed, "deepod": deepod_version(),
           **({"data": data_key} if data_key is not None else
              {"train": fingerprint(torch.as_tensor(train)), "test": fingerprint(torch.as_tensor(test))})}
    if kw:
        key["kwargs"] = dict(sorted(kw.items()))

    def compute():
        det = make_oneclass_baseline(name, deepod_epochs=epochs, deepod_fixes=fixes, **kw).fit(train, seed=seed)
        t0 = time.perf_counter()
        s = det.score(test)
        return {"scores": torch.as_tensor(np.asarray(s, dtype=np.float64)),
                "meta": {"history": det.history, "fixes": det.fixes, "score_seconds": time.perf_counter() - t0}}
    out = load_or_compute("iocn-deepod-scores", key, compute) if cache else {**compute(), "from_cache": False}
    return {"scores": out["scores"].numpy(), **out["meta"], "from_cache": bool(out["from_cache"])}


class LazyBaseline:
    """A PyOD row whose test scores came from the cache: fitted (on the same rows, with the same seed)
    only if something else asks it to score, e.g. chapter 1's counterfeits."""

    def __init__(self, name: str, train: np.ndarray, seed: int, data_key: dict | None = None):
        self.name, self.train, self.seed, self.det, self.data_key = name, train, seed, None, data_key

    def score(self, x, x_key: dict | None = None) -> np.ndarray:
        """Scores of ``x``, through the tensor cache (keyed by the method, its training rows, the seed
        and ``x``, or ``x_key``: what ``x`` is): a warm rebuild fits nothing."""
        def compute():
            if self.det is None:
                self.det = make_oneclass_baseline(self.name).fit(self.train, seed=self.seed)
            return {"scores": torch.as_tensor(np.asarray(self.det.score(x), dtype=np.float64))}
        key = {"method": self.name, "seed": self.seed,
               **({"data": self.data_key} if self.data_key is not None else {"train": fingerprint(torch.as_tensor(self.train))}),
               "x": x_key if x_key is not None else fingerprint(torch.as_tensor(np.asarray(x)))}
        return load_or_compute("iocn-baseline-scores", key, compute)["scores"].numpy()


def one_vs_rest(feature_kind: str, S: dict, profile: str | Profile | None = None, methods=None,
                seed: int = 0, cache: bool = True, verbose: bool = False) -> OneVsRest:
    """Train every method on each inlier class of ``S["classes"]`` and score the whole test set.

    Methods: the PyOD rows ``S["baselines"]``, the deepOD rows ``S["deepod"]`` (on the blocks in
    ``S["deepod_feature_sets"]``), FLOW and IOCN. The INN methods record their AUROC at the steps
    ``S["eval_at"]`` (the budget curves)."""
    prof = get_profile(profile)
    feats = fashion_features(feature_kind, prof, dataset=S.get("dataset", "fashion_mnist"))   # cached first
    if cache and S.get("stack_inns") and len(S["classes"]) > 1:
        # the per-class INNs of each method trained as one stacked model (ccc_lib.batched.fit_stacked: the
        # same weights as one by one, to float rounding), into the checkpoints the loop below reads
        from ..batched import fit_stacked
        sps = [one_class_split(feats, c, S["feature_dim"], S["n_train"], seed=seed) for c in S["classes"]]
        for m in ("IOCN", "FLOW"):
            if methods is None or m in methods:
                fit_stacked([_inn_detector(m, S, sp, feature_kind, prof, c, seed, cache) for c, sp in zip(S["classes"], sps)],
                            [sp.train for sp in sps], [_inn_eval_fn(sp, m.lower()) for sp in sps])
    if cache and len(S["classes"]) > 1:
        # train the classes side by side (ccc_lib.parallel.run_jobs); each job fills the cache, and the
        # loop below reads every row of every class from it
        from ..parallel import run_jobs
        run_jobs(class_job, [{"feature_kind": feature_kind, "S": {**S, "classes": (c,)}, "profile": prof.name,
                              "methods": None if methods is None else list(methods), "seed": seed}
                             for c in S["classes"]], when_done="skip")
    if methods is None:
        methods = list(S["baselines"])
        if feature_kind in S.get("deepod_feature_sets", ()):
            methods += [f"{m} (deepOD)" for m in S.get("deepod", ())]
        methods += ["FLOW", "IOCN"]
    y_test = feats["test"][1]
    res = OneVsRest(feature_kind, feats["classes"], tuple(S["classes"]), list(methods), y_test,
                    calibration_mask(y_test, seed), deepod_budget=deepod_budget(S))
    for m in methods:
        for d in (res.auroc, res.scores, res.detectors, res.from_cache, res.fit_seconds):
            d[m] = {}
    for c in S["classes"]:
        sp = one_class_split(feats, c, S["feature_dim"], S["n_train"], seed=seed)
        y = sp.is_out
        res.pca[c] = sp.pca
        for m in methods:
            t0 = time.perf_counter()
            det, cached = None, False
            if m in ("IOCN", "FLOW"):
                det = _inn_detector(m, S, sp, feature_kind, prof, c, seed, cache)
                det.fit(sp.train, eval_fn=_inn_eval_fn(sp, m.lower()), desc=f"{m} class {c}")
                res.evals.setdefault(m, {})[c] = det.meta.get("evals", [])
                res.seconds_per_step.setdefault(m, {})[c] = det.meta["seconds_per_step"]
                cached = bool(det.meta.get("from_cache"))
                inn = _inn_numbers(det, sp, m == "IOCN", cache)
                s = inn["scores"]
            elif m.endswith(" (deepOD)"):
                out = deepod_scores(m, sp.train, sp.test, S, seed, cache, data_key=sp.key)
                s, cached = out["scores"], out["from_cache"]
                res.deepod.setdefault(m, {})[c] = {k: out[k] for k in ("history", "fixes", "score_seconds")}
            else:
                key = {"method": m, "seed": seed, "data": sp.key}
                det = LazyBaseline(m, sp.train, seed, sp.key)
                s, cached, _ = _scores_cached("iocn-pyod-scores", key, lambda: det.score(sp.test), cache)
            res.fit_seconds[m][c] = time.perf_counter() - t0
            res.auroc[m][c] = ood_metrics(s[y == 0], s[y == 1])["auroc"]
            res.scores[m][c] = s
            res.detectors[m][c] = det
            res.from_cache[m][c] = cached
            if m == "IOCN":
                res.inside_train[c], res.recon[c] = inn["inside_train"], inn["recon"]
            if verbose:
                print(f"class {c} {m:18s} AUROC {res.auroc[m][c]:.4f}  {time.perf_counter() - t0:.1f}s", flush=True)
    return res


def _inn_detector(m: str, S: dict, sp: Split, feature_kind: str, prof: Profile, c: int, seed: int, cache: bool):
    """Table 1's IOCN or FLOW row for inlier class ``c``, unfitted (its checkpoint tag names the class)."""
    tc = TrainConfig(objective=m.lower(), steps=S["steps"] if m == "IOCN" else S["flow_steps"], lr=S["lr"],
                     batch_size=S["batch_size"], noise=S["noise"], seed=seed, eval_at=tuple(S["eval_at"]))
    cls = IOCN if m == "IOCN" else FlowDetector
    return cls(INNConfig(dim=sp.train.shape[1], n_blocks=S["n_blocks"], clamp=S["clamp"], seed=seed), tc,
               standardise_divisor=S["divisor"], cache_tag=f"fashion-{feature_kind}-{prof.name}-class{c}" if cache else None,
               data_key=sp.key)


def _inn_numbers(det, sp: Split, iocn: bool, cache: bool) -> dict:
    """A fitted INN row's test scores and, for the IOCN, the share of training inliers inside the cube and
    the largest reconstruction error |INN⁻¹(INN(x)) − x| over the training and test rows; through the tensor
    cache (keyed by the model's weights and the split), so a warm rebuild does not run the INN again."""
    def compute():
        out = {"scores": torch.as_tensor(np.asarray(det.score(sp.test), dtype=np.float64)), "meta": {}}
        if iocn:
            out["meta"] = {"inside_train": share_inside_cube(det, sp.train),
                           "recon": float(max(reconstruction_error(det, sp.train).max(),
                                              reconstruction_error(det, sp.test).max()))}
        return out
    if cache:
        out = load_or_compute("iocn-inn-numbers", {"model": fingerprint(det.model), "iocn": iocn, "data": sp.key}, compute)
    else:
        out = compute()
    return {"scores": out["scores"].numpy(), **out["meta"]}


def _inn_eval_fn(sp: Split, obj: str):
    """The budget curve's evaluation during training: test AUROC (and for the IOCN the share of training
    inliers inside the cube) of the model at that step."""
    xte_t, y = torch.as_tensor(sp.test), sp.is_out

    def eval_fn(model):
        det = IOCN() if obj == "iocn" else FlowDetector()
        det.model, det.inn_cfg = model, model.cfg
        s = det.score(xte_t)
        ev = {"auroc": ood_metrics(s[y == 0], s[y == 1])["auroc"]}
        if obj == "iocn":
            ev["inside_train"] = float((det.score(sp.train) < 0).mean())
        return ev
    return eval_fn


def class_job(feature_kind: str, S: dict, profile: str, methods, seed: int) -> dict:
    """One inlier class of :func:`one_vs_rest` (``S["classes"]`` has one entry) through the cache: the
    job :func:`one_vs_rest` runs per class with :func:`ccc_lib.parallel.run_jobs`. Returns the AUROCs."""
    res = one_vs_rest(feature_kind, S, profile, methods=methods, seed=seed, cache=True)
    return {m: v for m, v in res.auroc.items()}


# --------------------------------------------------------------------------- intervals (IOCN vs FLOW, vs the best baseline)

def class_mean_diff(res_a: OneVsRest, a: str, res_b: OneVsRest, b: str, level: float = 0.95) -> tuple:
    """A − B in AUROC, paired on the same test images: per inlier class DeLong's interval of the paired
    difference (:func:`ccc_lib.stats.auroc_diff_ci`), and their mean over the classes with the interval
    mean ± z·sqrt(Σ se_c²)/C (the classes' differences treated as independent). ``res_a`` and ``res_b``
    may be runs with different seeds (same test set). Returns ``(Interval of the mean, {class: Interval})``."""
    from scipy.stats import norm
    from ..stats import Interval, auroc_diff_ci
    y = res_a.y_test
    per = {}
    for c in res_a.inliers:
        sa, sb = res_a.scores[a][c], res_b.scores[b][c]
        inl = y == c
        per[c] = auroc_diff_ci(sa[inl], sa[~inl], sb[inl], sb[~inl], level)
    z = float(norm.ppf(0.5 + level / 2))
    d = float(np.mean([iv.estimate for iv in per.values()]))
    se = math.sqrt(sum(((iv.hi - iv.lo) / (2 * z)) ** 2 for iv in per.values())) / len(per)
    return Interval(d, d - z * se, d + z * se, level, f"mean over {len(per)} classes of paired DeLong", len(per)), per


def diff_over_seeds(runs: dict, a: str, b: str, base: OneVsRest | None = None, level: float = 0.95) -> tuple:
    """A − B (mean over classes) over the seeds of ``runs`` (``{seed: OneVsRest}`` holding A, and B unless
    ``base`` is given: then B's scores come from ``base`` for every seed — a row run with one seed).
    Returns ``(Interval over seeds (ccc_lib.stats.over_seeds of the per-seed class-mean intervals),
    {seed: Interval}, {seed: {class: Interval}})``."""
    from ..stats import over_seeds
    per_seed, per_class = {}, {}
    for seed, r in runs.items():
        per_seed[seed], per_class[seed] = class_mean_diff(r, a, base if base is not None else r, b, level)
    return over_seeds(list(per_seed.values()), level=level, bounds=(-1.0, 1.0)), per_seed, per_class


def plot_forest(rows: dict, ax, title: str = "") -> None:
    """A forest plot: one line per label with its interval (``{label: Interval}``, AUROC points ×100)
    and the zero line."""
    labels = list(rows)
    for i, lab in enumerate(labels):
        iv = rows[lab]
        ax.errorbar(100 * iv.estimate, i, xerr=[[100 * (iv.estimate - iv.lo)], [100 * (iv.hi - iv.estimate)]],
                    fmt="s" if lab.startswith("mean") else "o", color="k" if lab.startswith("mean") else "C0", capsize=3)
    ax.axvline(0, color="C3", lw=1)
    ax.set_yticks(range(len(labels))); ax.set_yticklabels(labels, fontsize=7); ax.invert_yaxis()
    ax.set_xlabel("AUROC difference ×100 (95 % interval)"); ax.set_title(title, fontsize=9)


def auroc_table(results: dict) -> "object":
    """Table 1: one row per (feature kind, method), one column per inlier class and the mean (×100)."""
    import pandas as pd
    blocks = []
    for kind, res in results.items():
        t = pd.DataFrame(res.auroc).T
        t.columns = [res.class_names[c] for c in t.columns]
        t["mean"] = t.mean(axis=1)
        t.index = pd.MultiIndex.from_product([[kind], t.index], names=["features", "method"])
        blocks.append(t)
    return pd.concat(blocks) * 100


def decision_rates(res: OneVsRest, alpha: float = 0.05) -> "object":
    """The decision rules as a user would apply them, on the evaluation half of the test set (the
    calibration half is held out): per method, a threshold at the (1 − ``alpha``) quantile of the
    scores of the held-out inliers of the calibration half, and for the IOCN also the paper's rule
    (outside the cube, s > 0). Rates are means over the inlier classes: false alarms = share of the
    evaluation half's inliers flagged, detection = share of its outliers flagged."""
    import pandas as pd
    check_fraction(alpha, "alpha")
    rows = []
    ev = ~res.calib
    for m, per in res.scores.items():
        rules = {f"calibrated on held-out inliers ({alpha:.0%})": None}
        if m == "IOCN":
            rules = {"the paper's rule: outside the cube (s > 0)": 0.0, **rules}
        for rule, thr in rules.items():
            fa, det = [], []
            for c, s in per.items():
                inl = res.y_test == c
                t = np.quantile(s[res.calib & inl], 1 - alpha) if thr is None else thr
                fa.append(float((s[ev & inl] > t).mean()))
                det.append(float((s[ev & ~inl] > t).mean()))
            rows.append({"method": m, "rule": rule, "false alarms (held-out inliers)": float(np.mean(fa)),
                         "detection (held-out outliers)": float(np.mean(det))})
    return pd.DataFrame(rows)


def confusion_auroc(res: OneVsRest, method: str = "IOCN") -> "object":
    """Table 2: AUROC of the detector trained on class i (row) for class i's test images against class
    j's test images (column); the diagonal is empty."""
    import pandas as pd
    names = [res.class_names[c] for c in res.inliers]
    M = pd.DataFrame(np.nan, index=pd.Index(names, name="trained on"), columns=pd.Index(names, name="tested against"))
    for i in res.inliers:
        s = res.scores[method][i]
        for j in res.inliers:
            if i != j:
                M.loc[res.class_names[i], res.class_names[j]] = ood_metrics(s[res.y_test == i], s[res.y_test == j])["auroc"]
    return M


def extreme_examples(res: OneVsRest, c: int, k: int = 5, method: str = "IOCN") -> dict:
    """Figure 3 for inlier class ``c``: indices into the test set of the ``k`` inliers with the lowest and
    highest scores and the ``k`` outliers with the lowest and highest scores. Named as the paper's
    Figure 3 names them (inliers as the positive class): TP = inliers scored lowest, FN = inliers
    scored highest, FP = outliers scored lowest, TN = outliers scored highest."""
    s = res.scores[method][c]
    inl, out = np.flatnonzero(res.y_test == c), np.flatnonzero(res.y_test != c)
    oi, oo = inl[np.argsort(s[inl], kind="stable")], out[np.argsort(s[out], kind="stable")]
    return {"TP": oi[:k].copy(), "FN": oi[::-1][:k].copy(), "FP": oo[:k].copy(), "TN": oo[::-1][:k].copy()}


def budget_table(res: OneVsRest, methods=("FLOW", "IOCN")) -> "object":
    """Mean over classes of the AUROC (and the IOCN's share inside the cube) at each recorded step."""
    import pandas as pd
    rows = []
    for m in methods:
        ev = res.evals.get(m, {})
        if not ev:
            continue
        steps = [e["step"] for e in next(iter(ev.values()))]
        for i, st in enumerate(steps):
            per = [ev[c][i] for c in ev]
            row = {"method": m, "step": st,
                   "mean AUROC": float(np.mean([e["auroc"] for e in per])),
                   "train seconds (sum over classes)": float(np.sum([e["train_seconds"] for e in per]))}
            if "inside_train" in per[0]:
                row["share of training inliers inside the cube"] = float(np.mean([e["inside_train"] for e in per]))
            rows.append(row)
    return pd.DataFrame(rows)


def time_to_reach(budget, method: str, target: float):
    """Training wall-clock (summed over classes) at the first recorded step where ``method``'s mean
    AUROC reaches ``target``; None if it never does."""
    b = budget[budget["method"] == method].sort_values("step")
    hit = b[b["mean AUROC"] >= target]
    if hit.empty:
        return None
    return float(hit["train seconds (sum over classes)"].iloc[0])


# --------------------------------------------------------------------------- the deep rows' training

#: the plateau test of every deep row's training-loss curve (see :func:`ccc_lib.baselines.plateau`):
#: the mean loss of the last 10 % of the epochs improves on the 10 % before by less than 1 %
PLATEAU = {"frac": 0.1, "tol": 0.01}


def deepod_training_table(res: OneVsRest) -> "object":
    """Per deepOD row: the budget rule's epochs and steps per class, training and scoring seconds per
    class (mean; recorded when trained), the fixes applied, the plateau test per class (how many classes
    plateaued, the largest relative improvement over the last 10 % of epochs) and the mean AUROC."""
    import pandas as pd
    rows = []
    for m, per in res.deepod.items():
        h = [v["history"] for v in per.values()]
        pl = [plateau(x["loss"], **PLATEAU) for x in h]
        imp = [p["improvement"] for p in pl]
        rows.append({"row": m, "epochs": int(np.max([x["epochs"] for x in h])),
                     "steps per class": float(np.mean([x["steps"] for x in h])),
                     "train s per class": float(np.mean([x["train_seconds"] for x in h])),
                     "ms per step": 1000 * float(np.sum([x["train_seconds"] for x in h]) / max(1, np.sum([x["steps"] for x in h]))),
                     "score s per class": float(np.mean([v["score_seconds"] for v in per.values()])),
                     "loss, first epoch": float(np.mean([x["loss"][0] for x in h if x["loss"]])),
                     "loss, last epoch": float(np.mean([x["loss"][-1] for x in h if x["loss"]])),
                     "classes plateaued": f"{sum(bool(p['plateaued']) for p in pl)}/{len(pl)}",
                     "largest improvement, last 10 %": float(np.nanmax(imp)) if np.isfinite(imp).any() else float("nan"),
                     "mean AUROC": float(np.mean(list(res.auroc[m].values()))),
                     "fixes": "; ".join(sorted({f.split(" (")[0] for v in per.values() for f in v["fixes"]})) or "none"})
    return pd.DataFrame(rows).set_index("row")


def plot_deepod_curves(res: OneVsRest, axes) -> None:
    """One panel per deepOD row: its training loss per epoch, one line per inlier class, each divided by
    its first epoch's loss (so classes share a scale), with the last 10 % of the epochs shaded."""
    for ax, (m, per) in zip(np.ravel(axes), res.deepod.items()):
        n = 0
        for c, v in per.items():
            loss = np.asarray(v["history"]["loss"], dtype=float)
            if len(loss):
                ax.plot(np.arange(1, len(loss) + 1), loss / loss[0], lw=1, label=res.class_names[c])
                n = max(n, len(loss))
        if n >= 2:
            ax.axvspan(n - max(1, round(PLATEAU["frac"] * n)) + 0.5, n + 0.5, color="0.85", zorder=0)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("epoch")
    np.ravel(axes)[0].set_ylabel("training loss / first epoch's")


def raw_input_table(feats: dict, res: OneVsRest, S: dict, seed: int = 0, cache: bool = True) -> "object":
    """What the inputs do to the deepOD rows: each row of ``S["deepod_raw"]`` on the classes
    ``S["deepod_raw_classes"]``, trained by the same budget rule on the **raw** PCA components (no
    z-score: per-feature standard deviations as they come) against the same row on the chapter's
    standardised inputs (from ``res``)."""
    import pandas as pd
    rows = []
    for c in S.get("deepod_raw_classes", ()):
        if c not in res.inliers:
            continue
        sp = one_class_split(feats, c, S["feature_dim"], S["n_train"], seed=seed)
        sd = sp.raw_train.std(0)
        for m in S.get("deepod_raw", ()):
            name = f"{m} (deepOD)"
            if name not in res.auroc:
                continue
            out = deepod_scores(name, sp.raw_train, sp.raw_test, S, seed, cache, data_key={**sp.key, "inputs": "raw"})
            y = sp.is_out
            rows.append({"row": name, "class": res.class_names[c],
                         "per-feature std of the raw inputs": f"{sd.min():.2g}–{sd.max():.2g}",
                         "AUROC, raw PCA components": ood_metrics(out["scores"][y == 0], out["scores"][y == 1])["auroc"],
                         "AUROC, standardised (the chapter's inputs)": res.auroc[name][c]})
    return pd.DataFrame(rows)


def goad_check_table(feats: dict, res: OneVsRest, S: dict, seed: int = 0, cache: bool = True) -> "object":
    """Is Table 1's GOAD (step-matched at a cheap profile) under-trained? GOAD with ``S["goad_check"]["n_trans"]`` transformations (a
    step costs a fraction of one with deepOD's 256) trained for ``S["goad_check"]["epochs"]`` epochs (deepOD's
    default: 100) on the classes ``S["goad_check"]["classes"]``, on the chapter's standardised inputs, beside
    Table 1's GOAD on the same classes: epochs, steps, last-epoch loss against chance (ln of the
    transformations: GOAD's loss is a cross-entropy over them plus a small triplet term), the plateau test
    and the AUROC. Empty where the check does not run (GOAD not in Table 1, or no classes)."""
    import pandas as pd
    chk = S.get("goad_check") or {}
    name = "GOAD (deepOD)"
    if name not in res.deepod or not chk.get("classes"):
        return pd.DataFrame()
    rows, curves = [], {}
    for c in chk["classes"]:
        if c not in res.inliers:
            continue
        sp = one_class_split(feats, c, S["feature_dim"], S["n_train"], seed=seed)
        y = sp.is_out
        main = res.deepod[name][c]["history"]
        out = deepod_scores(name, sp.train, sp.test, S, seed, cache, epochs=chk["epochs"], n_trans=chk["n_trans"],
                            data_key=sp.key)
        for label, n_trans, h, auroc in (
                (f"Table 1 ({deepod_default('GOAD', 'n_trans')} transformations, "
                 + ("step-matched" if "GOAD" in deepod_budget(S)["step_matched"] else f"{int(main['epochs'])} epochs") + ")",
                 deepod_default("GOAD", "n_trans"), main, res.auroc[name][c]),
                (f"check ({chk['n_trans']} transformations, {chk['epochs']} epochs)", chk["n_trans"], out["history"],
                 ood_metrics(out["scores"][y == 0], out["scores"][y == 1])["auroc"])):
            pl = plateau(h["loss"], **PLATEAU)
            curves[(res.class_names[c], label)] = np.asarray(h["loss"], dtype=float) / np.log(n_trans)
            rows.append({"class": res.class_names[c], "GOAD": label, "epochs": int(h["epochs"]), "steps": int(h["steps"]),
                         "train s": float(h["train_seconds"]), "loss, last epoch": float(h["loss"][-1]),
                         "chance (ln n)": float(np.log(n_trans)),
                         "last loss / chance": float(h["loss"][-1] / np.log(n_trans)),
                         "improvement, last 10 %": pl["improvement"], "plateaued": pl["plateaued"], "AUROC": float(auroc)})
    table = pd.DataFrame(rows).set_index(["class", "GOAD"])
    table.attrs["curves"] = curves        # (class, GOAD) → loss per epoch ÷ chance, for plot_goad_check
    return table


def plot_goad_check(table, ax) -> None:
    """The GOAD check's training curves: loss per epoch divided by chance (ln of the transformations; 1 =
    cannot tell its transformations apart), Table 1's GOAD and the check's, per class."""
    for (cls, label), curve in table.attrs.get("curves", {}).items():
        ax.plot(np.arange(1, len(curve) + 1), curve, ls="-" if label.startswith("check") else "--",
                marker="" if len(curve) > 12 else "o", ms=3, label=f"{cls}: {label}")
    ax.axhline(1.0, color="k", lw=0.8, ls=":", label="chance (loss = ln n_trans)")
    ax.set_xlabel("epoch"); ax.set_ylabel("GOAD training loss / chance")
    ax.legend(fontsize=7)


# --------------------------------------------------------------------------- where we differ

PAPER_QUOTES = {
    "features": "\"128 dimensional feature vectors extracted by MoCo\"; \"the MoCo network is pretrained on imagenet\"",
    "data": "CIFAR-10; \"features extracted from the 5000 training images\" of the inlier class; all other classes as outliers",
    "preprocessing": "\"normalizing the feature vectors on the hypersphere and adding a small amount of noise to obtain a valid density\"",
    "inn": "\"12 sequential allInOne coupling blocks\"; \"subnetworks with a single hidden layer with a width of 128 and ReLU\"",
    "baselines": "\"All methods are run with the default hyperparameters\" (PyOD; deepOD, version not reported)",
    "flow": "\"a normalizing flow with the same architecture\"; \"the negative log likelihood as outlier score\"",
}


def where_we_differ(S: dict, profile: str | Profile | None = None, seed: int = 0) -> "object":
    """The "where we differ from the paper" table of chapter 3, generated from the settings: per item
    the paper's wording (quoted) or "not reported", this chapter's choice, and which is which."""
    import pandas as pd
    P = get_profile(profile)
    b = deepod_budget(S)
    feat = S["feature_sets"][0]
    n = "all" if S["n_train"] is None else f"{S['n_train']:,}"
    matched = ", ".join(b["step_matched"])
    rows = [
        ("feature extractor", PAPER_QUOTES["features"],
         f"{FEATURE_DESCRIPTIONS[feat]}, then a PCA to {S['feature_dim']} dimensions fitted on the inlier class's "
         "training rows; second block: the raw pixels, reduced the same way", "ours"),
        ("data", PAPER_QUOTES["data"],
         f"{S['dataset']}: {n} training images of the inlier class, the whole test set of this profile", "ours"),
        ("preprocessing, every row", PAPER_QUOTES["preprocessing"] + " (for which rows: not reported)",
         "hypersphere (learned features), PCA, then a per-feature z-score fitted on the inlier class's training "
         "rows only, the same arrays for every row of Table 1 (PyOD, deepOD, FLOW, IOCN)", "ours"),
        ("preprocessing, INNs only", "not reported",
         f"the standardised features divided by {S['divisor']:g} (most training points start inside the cube)", "ours"),
        ("training noise", "\"a small amount of noise\" (level not reported)",
         f"N(0, {S['noise']:g}²) added to each training batch of both INNs in the ÷{S['divisor']:g} space, i.e. "
         f"{S['noise'] * S['divisor']:g} standard deviations per feature; none for the other rows", "ours"),
        ("INN architecture", PAPER_QUOTES["inn"], f"{S['n_blocks']} AllInOneBlocks, subnets with one hidden layer of "
         "width 128 and ReLU; the last layer of each subnet starts at zero", "paper" if S["n_blocks"] == 12 else "ours"),
        ("permutation in each block", "not reported",
         "permute_soft=True: a random rotation from SO(D) (FrEIA's default is a hard permutation, permute_soft=False)",
         "ours"),
        ("affine clamping", "not reported", f"{S['clamp']:g} (FrEIA's and INNConfig's default: 2.0)", "ours"),
        ("INN optimiser and budget", "not reported (Algorithm 1: \"for epoch = 1 to T\")",
         f"Adam, lr {S['lr']:g} with 50 warm-up steps and cosine decay, gradient clipping 1.0, batch "
         f"{S['batch_size']}; {S['steps']} steps (IOCN) and {S['flow_steps']} (FLOW) per class", "ours"),
        ("FLOW", PAPER_QUOTES["flow"], "the same INN by maximum likelihood (standard-normal latent), scored by the "
         "negative log-likelihood per dimension", "paper"),
        ("PyOD rows", PAPER_QUOTES["baselines"], "PyOD defaults; COPOD scored in chunks of ≤ 1 % of the training set "
         "(PyOD's COPOD refits its CDFs on the rows it scores)", "paper (chunks: ours)"),
        ("deepOD rows: budget", PAPER_QUOTES["baselines"],
         f"{b['epochs']} epochs (deepOD's default: 100) on all training inliers"
         + (f"; {matched}: the IOCN's {b['iocn_steps']} gradient steps per class in whole epochs (the cost of its "
            "100 epochs: see the measured seconds per step)" if matched else ""), "paper" if b["epochs"] == 100 and not matched else "ours"),
        ("deepOD rows: library defects", "not reported",
         f"deepOD {deepod_version()}: " + "; ".join(f"{m}: {t}" for m, t in DEEPOD_FIXES.items()), "ours"),
        ("seeds", "not reported", f"one seed for every row ({seed})", "ours"),
    ]
    if P.dry_run:
        rows.append(("this run", "", "DRY RUN on generated files: not a result", "ours"))
    return pd.DataFrame(rows, columns=["what", "paper", "this chapter", "which"]).set_index("what")


# --------------------------------------------------------------------------- the study (benchmarks/iocn_study.py)

def study_overrides(axis: str, value) -> dict:
    """The settings that the study's configuration ``axis = value`` changes (for ``steps`` both INNs'
    budgets and their evaluation points)."""
    ov = {axis: value}
    if axis == "steps":
        ov.update(flow_steps=value, eval_at=tuple(s for s in (value // 4, value // 2, value) if s > 0))
    return ov


@dataclass
class StudyChoice:
    """A configuration of the study under which the IOCN is at least as good as the FLOW and that costs
    no more training time than the chapter's settings: the chapter then runs it as a labelled setting."""
    axis: str
    value: object
    overrides: dict
    iocn_minus_flow: float
    seconds_ratio: float        # (IOCN + FLOW training seconds) of the configuration / of the base


def study_choice(study: dict, max_time_ratio: float = 1.0) -> StudyChoice | None:
    """From the study's results (its JSON), the configuration with the largest IOCN − FLOW among those
    with IOCN ≥ FLOW (mean over seeds) whose training time is at most ``max_time_ratio`` × the base's;
    None if there is none. The study scores the test set, so a row run with this setting is chosen on
    test data for both INNs alike (the chapter labels it so)."""
    rows = study["rows"]
    base = next(r for r in rows if r["axis"] == "base")
    cost = lambda r: r["IOCN"]["train_seconds"] + r["FLOW"]["train_seconds"]  # noqa: E731
    ok = [r for r in rows if r["axis"] != "base" and r["iocn_minus_flow"] >= 0 and cost(r) <= max_time_ratio * cost(base)]
    if not ok:
        return None
    r = max(ok, key=lambda r: r["iocn_minus_flow"])
    return StudyChoice(r["axis"], r["value"], study_overrides(r["axis"], r["value"]), float(r["iocn_minus_flow"]),
                       cost(r) / cost(base))


# --------------------------------------------------------------------------- diagnostics

def reconstruction_error(det, x) -> np.ndarray:
    """max_k |INN⁻¹(INN(x))_k - x_k| per row (in the input's own units)."""
    x = check_features(x, "x", dim=det.inn_cfg.dim).to(get_device())
    with torch.no_grad(), cpu_threads(1):
        z, _ = det.model(x)
        xr = det.model.inverse(z)
    return to_numpy((xr - x).abs().amax(1))


def share_inside_cube(det: IOCN, x) -> float:
    """The share of rows that the IOCN maps inside the cube (s < 0)."""
    return float((det.score(x) < 0).mean())


# --------------------------------------------------------------------------- chapter 1's counterfeits

def score_counterfeits(res: OneVsRest, x: torch.Tensor, labels, profile: str | Profile | None = None,
                       alpha: float = 0.05):
    """Score images that claim a class — chapter 1's counterfeits, with the class the classifier
    gave them — by the one-class detectors of that class: the counterfeits labelled ``c`` go through
    the same encoder and class-``c`` PCA as the test set and are scored by every method fitted on
    class ``c`` (the deepOD rows, whose fitted models are not kept, are left out).

    Returns one row per (method, class): the number of counterfeits, the AUROC of class ``c``'s test
    inliers vs those counterfeits, the share flagged at the threshold that flags ``alpha`` of the
    test inliers, and for the IOCN the share outside the cube (``s > 0``), for the counterfeits and
    for the test inliers."""
    import pandas as pd
    labels = np.asarray(labels)
    feats = encode_images(res.feature_kind, x, profile)
    rows = []
    for c, pca in res.pca.items():
        m_c = labels == c
        if not m_c.any():
            continue
        z = pca.transform(feats[m_c]).astype(np.float32)
        # the rows named by the images they encode (through class c's split, which the detector's key names)
        z_key = {"images": fingerprint(torch.as_tensor(x)[torch.as_tensor(m_c)]), "kind": res.feature_kind}
        for m, dets in res.detectors.items():
            if dets.get(c) is None:
                continue
            det = dets[c]
            sc = det.score(z, x_key=z_key) if isinstance(det, LazyBaseline) else det.score(z)
            s_in = res.scores[m][c][res.y_test == c]
            row = {"method": m, "class": res.class_names[c], "counterfeits": int(m_c.sum()),
                   "AUROC (test inliers vs counterfeits)": ood_metrics(s_in, sc)["auroc"],
                   f"flagged at {alpha:.0%} false alarms": float((sc > np.quantile(s_in, 1 - alpha)).mean())}
            if m == "IOCN":
                row["outside the cube: counterfeits"] = float((sc > 0).mean())
                row["outside the cube: test inliers"] = float((s_in > 0).mean())
            rows.append(row)
    return pd.DataFrame(rows)


#: Table 1 of the paper: mean one-vs-rest AUROC (×100) over the CIFAR-10 classes, MoCo features.
#: Keys are this book's row names.
PAPER_TABLE1_MEAN = {
    "COPOD": 89.6, "IForest": 92.1, "KDE": 95.0, "PCA": 95.2, "KNN": 95.9,
    "DeepSVDD (deepOD)": 90.1, "GOAD (deepOD)": 94.9, "ICL (deepOD)": 95.6, "RCA (deepOD)": 96.2,
    "SLAD (deepOD)": 96.5, "FLOW": 95.2, "IOCN": 96.5,
}


# the appendix studies, re-exported so that ``from ccc_lib.experiments import iocn as E; E.fit_toy`` works
from .iocn_appendix import (AblationRun, HoleResult, Monotone1D, OneDRun, TOY_SETS, decision_boundary,  # noqa: E402,F401
                            fit_toy, hole_study, plot_1d, plot_toy, stopgrad_ablation, toy_1d, toy_2d, train_1d)
