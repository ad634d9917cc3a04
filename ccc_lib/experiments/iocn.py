"""Chapter 3's experiments around the IOCN (the method itself is :mod:`ccc_lib.iocn`).

* settings per profile (:data:`SETTINGS`) and the claims' bounds (:data:`CLAIM_BOUNDS`);
* features: :func:`fashion_features` / :func:`encode_images` (the MNIST-5k CNN's penultimate
  features, an ImageNet ResNet-18's, or raw pixels) and :func:`one_class_split` (per-class PCA);
* the one-vs-rest table (:func:`one_vs_rest` → :class:`OneVsRest`), the decision rules as a user
  would apply them (:func:`decision_rates`), Table 2 (:func:`confusion_auroc`), Figure 3
  (:func:`extreme_examples`), the budget curves (:func:`budget_table`);
* chapter 1's counterfeits scored by the one-class detectors (:func:`score_counterfeits`);
* toy data: Figure 1 (:func:`toy_2d`, :func:`fit_toy`, :func:`plot_toy`), the 1-D example of
  Figure 2 (:class:`Monotone1D`, :func:`train_1d`, :func:`plot_1d`), the simply-connected limitation
  (:func:`hole_study`), and the stop-gradient ablation (:func:`stopgrad_ablation`)."""
from __future__ import annotations

import functools

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..baselines import make_oneclass_baseline
from ..cache import fingerprint, load_or_compute
from ..checks import InputError, check_choice, check_features, check_fraction
from ..iocn import IOCN, FlowDetector, INNConfig, TrainConfig, iocn_score, pull_f
from ..metrics import ood_metrics
from ..profiles import Profile, chapter_settings, get_profile
from ..utils import cpu_threads, get_device, set_seed, to_numpy

# --------------------------------------------------------------------------- settings per profile

SETTINGS = {
    # INN: the paper's 12 AllInOneBlocks with width-128 subnets; affine clamping 1.0 (at 2.0 the
    # inverse blew up here, see the chapter). Training: Adam, lr 1e-3 with 50 warm-up steps and a
    # cosine decay, gradient-norm clipping 1.0, batch 128 (+128 cube samples for IOCN), Gaussian
    # noise of std `noise` added to each training batch of both INN methods. Inputs are standardised
    # per feature and divided by `divisor` (3: most training points start inside the cube).
    # deepOD: `deepod` lists the deepOD rows, `deepod_epochs`/`deepod_epoch_steps`/`deepod_n_train` their
    # budget (None = deepOD's defaults: 100 epochs, whole epochs, all training inliers), applied alike to
    # every deepOD row; `deepod_feature_sets` the blocks they run on. Their test scores are cached.
    "smoke": {
        "dataset": "fashion_mnist",
        "classes": (0, 1, 7),          # three Fashion-MNIST classes as inliers (T-shirt, Trouser, Sneaker)
        "n_train": 200,
        "feature_dim": 8,
        "feature_sets": ("cnn_mnist5k", "pixels"),
        "baselines": ("KNN", "KDE", "PCA", "COPOD", "IForest"),
        "deepod": ("DeepSVDD", "SLAD"), "deepod_epochs": 1, "deepod_epoch_steps": 5,
        "deepod_feature_sets": ("cnn_mnist5k",),
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
        # Reduced deepOD budgets (deepOD's default is 100 epochs on all rows), per method so that each
        # row is trained enough to mean something: an earlier uniform budget of 2 epochs on 500 images
        # left DeepSVDD, GOAD and SLAD below chance (AUROC 0.20-0.43: barely moved from their random
        # initialisation). GOAD trains on 256 transformed copies of every row (one epoch of 500 rows
        # ≈ 15 s here), so it alone sees a random 500 of the class's images. Scores are cached.
        "deepod": ("DeepSVDD", "RCA", "ICL", "GOAD", "SLAD"),
        "deepod_epochs": {"DeepSVDD": 10, "RCA": 5, "ICL": 1, "GOAD": 2, "SLAD": 5}, "deepod_epoch_steps": None,
        "deepod_n_train": {"GOAD": 500},
        "deepod_feature_sets": ("cnn_mnist5k",),
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
        "deepod": ("DeepSVDD", "RCA", "ICL", "GOAD", "SLAD"), "deepod_epochs": None, "deepod_epoch_steps": None,
        "deepod_feature_sets": ("resnet18_imagenet", "pixels"),
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
        "deepod_epochs": 1, "deepod_epoch_steps": 2,
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
    Returns ``{"train": (x, y), "test": (x, y), "classes": [...]}``."""
    from ..train import profile_data
    _check_kind(kind)
    prof = get_profile(profile)
    out = {}
    for split in ("train", "test"):
        data = profile_data(dataset, split, prof)
        out["classes"] = list(data.classes)
        out[split] = (_cached_encoding(kind, data, prof, batch_size), data.y.numpy())
    out["image_shape"] = tuple(data.shape)
    return out


def _cached_encoding(kind: str, data, prof: Profile, batch_size: int) -> np.ndarray:
    """:func:`encode_images` of a whole split, through the tensor cache for the learned encoders (keyed by
    the encoder's identity and a fingerprint of the images), so a warm rebuild does not re-encode the
    training set; the pixels are the data themselves and are not cached."""
    if kind == "pixels":
        return encode_images(kind, data, prof, batch_size)
    if kind == "cnn_mnist5k":
        from ..train import get_classifier
        encoder = fingerprint(get_classifier("mnist5k", prof)[0])
    else:
        encoder = f"resnet18-{'random' if prof.dry_run else 'imagenet'}-{64 if prof.dry_run else 224}"
    key = {"kind": kind, "encoder": encoder, "images": fingerprint(data.x), "profile": prof.name}
    out = load_or_compute("iocn-features", key,
                          lambda: {"x": torch.as_tensor(encode_images(kind, data, prof, batch_size))})
    return out["x"].numpy()


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
    """One-vs-rest data for one inlier class: PCA-reduced training inliers and the whole test set."""
    inlier: int
    train: np.ndarray
    test: np.ndarray
    is_out: np.ndarray          # 1 = outlier (another class)
    pca: object
    explained_variance: float


def one_class_split(feats: dict, inlier: int, dim: int, n_train: int | None = None, seed: int = 0) -> Split:
    """PCA to ``dim`` components fitted on the inlier class's training rows only (``n_train`` of them),
    applied to the whole test set; labels 1 = outlier."""
    from sklearn.decomposition import PCA
    xtr, ytr = feats["train"]
    xte, yte = feats["test"]
    idx = np.flatnonzero(ytr == inlier)
    if len(idx) < 2:
        raise InputError(f"class {inlier}: {len(idx)} training row(s); need at least 2")
    if n_train is not None and n_train < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, n_train, replace=False))
    dim = min(dim, len(idx), xtr.shape[1])
    pca = PCA(n_components=dim, random_state=seed).fit(xtr[idx])
    return Split(inlier, pca.transform(xtr[idx]).astype(np.float32), pca.transform(xte).astype(np.float32),
                 (yte != inlier).astype(int), pca, float(pca.explained_variance_ratio_.sum()))


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

    def mean_auroc(self) -> dict:
        return {m: float(np.mean(list(v.values()))) for m, v in self.auroc.items()}


def deepod_budget(S: dict) -> dict:
    """The deepOD rows' budget at this profile: ``epochs`` (None = deepOD's default of 100; an int or a
    per-method dict), ``epoch_steps`` (None = whole epochs) and ``n_train`` (None = all the training
    inliers the other rows see; else a random subsample of that many; an int or a per-method dict)."""
    return {"epochs": S.get("deepod_epochs"), "epoch_steps": S.get("deepod_epoch_steps"),
            "n_train": S.get("deepod_n_train")}


def deepod_train_rows(train: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """The training rows a deepOD row sees: all of ``train``, or a seeded random subsample of ``n``."""
    if n is None or n >= len(train):
        return train
    return train[np.sort(np.random.default_rng(seed + 4242).choice(len(train), int(n), replace=False))]


def _scores_cached(kind: str, key: dict, fit_score, cache: bool) -> tuple[np.ndarray, bool, float]:
    """``fit_score()`` (fit a baseline, score the test set) through the tensor cache under ``key``;
    returns ``(scores, from_cache, seconds it took when computed)``."""
    def compute():
        t0 = time.perf_counter()
        s = fit_score()
        return {"scores": torch.as_tensor(np.asarray(s, dtype=np.float64)), "meta": {"seconds": time.perf_counter() - t0}}
    out = load_or_compute(kind, key, compute) if cache else {**compute(), "from_cache": False}
    return out["scores"].numpy(), bool(out["from_cache"]), float(out["meta"].get("seconds", float("nan")))


def _deepod_scores(name: str, sp: Split, S: dict, seed: int, cache: bool) -> tuple[np.ndarray, bool, float]:
    """Fit a deepOD row on ``sp.train`` (or the subsample :func:`deepod_budget` names) and score
    ``sp.test``; the scores are cached (keyed by the method, its budget and a fingerprint of the
    data), so a warm rebuild does not retrain."""
    kw = {}
    b = deepod_budget(S)
    epochs, n_train = b["epochs"], b["n_train"]
    if isinstance(epochs, dict):
        epochs = epochs[name[:-len(" (deepOD)")]]
    if isinstance(n_train, dict):
        n_train = n_train.get(name[:-len(" (deepOD)")])
    if b["epoch_steps"]:
        kw["epoch_steps"] = int(b["epoch_steps"])
    train = deepod_train_rows(sp.train, n_train, seed)
    key = {"method": name, "epochs": epochs, "kw": kw, "seed": seed,
           "train": fingerprint(torch.as_tensor(train)), "test": fingerprint(torch.as_tensor(sp.test))}
    return _scores_cached("iocn-deepod-scores", key,
                          lambda: make_oneclass_baseline(name, deepod_epochs=epochs, **kw).fit(train, seed=seed).score(sp.test),
                          cache)


class LazyBaseline:
    """A PyOD row whose test scores came from the cache: fitted (on the same rows, with the same seed)
    only if something else asks it to score, e.g. chapter 1's counterfeits."""

    def __init__(self, name: str, train: np.ndarray, seed: int):
        self.name, self.train, self.seed, self.det = name, train, seed, None

    def score(self, x) -> np.ndarray:
        """Scores of ``x``, through the tensor cache (keyed by the method, its training rows, the seed
        and ``x``): a warm rebuild fits nothing."""
        def compute():
            if self.det is None:
                self.det = make_oneclass_baseline(self.name).fit(self.train, seed=self.seed)
            return {"scores": torch.as_tensor(np.asarray(self.det.score(x), dtype=np.float64))}
        key = {"method": self.name, "train": fingerprint(torch.as_tensor(self.train)), "seed": self.seed,
               "x": fingerprint(torch.as_tensor(np.asarray(x)))}
        return load_or_compute("iocn-baseline-scores", key, compute)["scores"].numpy()


def one_vs_rest(feature_kind: str, S: dict, profile: str | Profile | None = None, methods=None,
                seed: int = 0, cache: bool = True, verbose: bool = False) -> OneVsRest:
    """Train every method on each inlier class of ``S["classes"]`` and score the whole test set.

    Methods: the PyOD rows ``S["baselines"]``, the deepOD rows ``S["deepod"]`` (on the blocks in
    ``S["deepod_feature_sets"]``), FLOW and IOCN. The INN methods record their AUROC at the steps
    ``S["eval_at"]`` (the budget curves)."""
    prof = get_profile(profile)
    feats = fashion_features(feature_kind, prof, dataset=S.get("dataset", "fashion_mnist"))
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
        xte_t = torch.as_tensor(sp.test)

        def eval_fn(model, obj):
            det = IOCN() if obj == "iocn" else FlowDetector()
            det.model, det.inn_cfg = model, model.cfg
            s = det.score(xte_t)
            ev = {"auroc": ood_metrics(s[y == 0], s[y == 1])["auroc"]}
            if obj == "iocn":
                ev["inside_train"] = float((det.score(sp.train) < 0).mean())
            return ev

        for m in methods:
            t0 = time.perf_counter()
            det, cached = None, False
            if m in ("IOCN", "FLOW"):
                obj = m.lower()
                tc = TrainConfig(objective=obj, steps=S["steps"] if m == "IOCN" else S["flow_steps"], lr=S["lr"],
                                 batch_size=S["batch_size"], noise=S["noise"], seed=seed, eval_at=tuple(S["eval_at"]))
                cls = IOCN if m == "IOCN" else FlowDetector
                det = cls(INNConfig(dim=sp.train.shape[1], n_blocks=S["n_blocks"], clamp=S["clamp"], seed=seed), tc,
                          standardise_divisor=S["divisor"],
                          cache_tag=f"fashion-{feature_kind}-{prof.name}-class{c}" if cache else None)
                det.fit(sp.train, eval_fn=lambda mod, o=obj: eval_fn(mod, o), desc=f"{m} class {c}")
                res.evals.setdefault(m, {})[c] = det.meta.get("evals", [])
                res.seconds_per_step.setdefault(m, {})[c] = det.meta["seconds_per_step"]
                cached = bool(det.meta.get("from_cache"))
                s = det.score(sp.test)
            elif m.endswith(" (deepOD)"):
                s, cached, _ = _deepod_scores(m, sp, S, seed, cache)
            else:
                key = {"method": m, "seed": seed, "train": fingerprint(torch.as_tensor(sp.train)),
                       "test": fingerprint(torch.as_tensor(sp.test))}
                det = LazyBaseline(m, sp.train, seed)
                s, cached, _ = _scores_cached("iocn-pyod-scores", key, lambda: det.score(sp.test), cache)
            res.fit_seconds[m][c] = time.perf_counter() - t0
            res.auroc[m][c] = ood_metrics(s[y == 0], s[y == 1])["auroc"]
            res.scores[m][c] = s
            res.detectors[m][c] = det
            res.from_cache[m][c] = cached
            if m == "IOCN":
                res.inside_train[c] = share_inside_cube(det, sp.train)
                res.recon[c] = float(max(reconstruction_error(det, sp.train).max(),
                                         reconstruction_error(det, sp.test).max()))
            if verbose:
                print(f"class {c} {m:18s} AUROC {res.auroc[m][c]:.4f}  {time.perf_counter() - t0:.1f}s", flush=True)
    return res


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
        for m, dets in res.detectors.items():
            if dets.get(c) is None:
                continue
            sc, s_in = dets[c].score(z), res.scores[m][c][res.y_test == c]
            row = {"method": m, "class": res.class_names[c], "counterfeits": int(m_c.sum()),
                   "AUROC (test inliers vs counterfeits)": ood_metrics(s_in, sc)["auroc"],
                   f"flagged at {alpha:.0%} false alarms": float((sc > np.quantile(s_in, 1 - alpha)).mean())}
            if m == "IOCN":
                row["outside the cube: counterfeits"] = float((sc > 0).mean())
                row["outside the cube: test inliers"] = float((s_in > 0).mean())
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- 2D toy data (Figure 1)

TOY_SETS = ("moons", "circles", "two_gaussians", "annulus")


def toy_2d(name: str, n: int = 2000, seed: int = 0) -> np.ndarray:
    """The 2D sets of Figure 1 (scikit-learn's moons and circles, two Gaussians) and an annulus
    (a support with a hole, for the simply-connected limitation)."""
    from sklearn import datasets
    check_choice(name, "name", TOY_SETS)
    rng = np.random.default_rng(seed)
    if name == "moons":
        x, _ = datasets.make_moons(n, noise=0.08, random_state=seed)
    elif name == "circles":
        x, _ = datasets.make_circles(n, noise=0.06, factor=0.5, random_state=seed)
    elif name == "two_gaussians":
        c = rng.integers(0, 2, n)
        x = rng.standard_normal((n, 2)) * 0.5 + np.where(c[:, None] == 0, [-2.0, 0.0], [2.0, 0.0])
    else:
        x = _ring(rng, n, 1.0, 1.6)
    return x.astype(np.float32)


def _ring(rng, n, r0, r1):
    """n points uniform (by area) in the ring r0 ≤ r ≤ r1."""
    phi = rng.uniform(0, 2 * np.pi, n)
    r = np.sqrt(rng.uniform(r0 ** 2, r1 ** 2, n))
    return np.c_[r * np.cos(phi), r * np.sin(phi)]


def decision_boundary(det: IOCN, n: int = 2000) -> np.ndarray:
    """The surface of the cube [-1, 1]^2 mapped back through INN⁻¹ (a closed curve in data space)."""
    t = np.linspace(-1, 1, n // 4, endpoint=False)
    one = np.ones_like(t)
    edge = np.concatenate([np.c_[t, -one], np.c_[one, t], np.c_[-t, one], np.c_[-one, -t]])
    edge = np.vstack([edge, edge[:1]])
    with torch.no_grad(), cpu_threads(1):
        x = det.model.inverse(torch.as_tensor(edge, dtype=torch.float32, device=get_device()))
    return to_numpy(x)


def fit_toy(name: str, S: dict, seed: int = 0, cache: bool = True, steps: int | None = None, n: int | None = None,
            x: np.ndarray | None = None, stop_gradient: bool = True) -> tuple:
    """Train an IOCN on one 2D set; returns ``(detector, data)``."""
    x = toy_2d(name, n or S["toy_n"], seed) if x is None else x
    tc = TrainConfig(objective="iocn", steps=steps or S["toy_steps"], lr=S["lr"], batch_size=256, noise=0.0,
                     seed=seed, stop_gradient=stop_gradient)
    det = IOCN(INNConfig(dim=2, n_blocks=S["toy_blocks"], clamp=S["clamp"], seed=seed), tc,
               standardise_divisor=S["toy_divisor"], cache_tag=f"toy-{name}" if cache else None)
    det.fit(x, desc=f"IOCN {name}")
    return det, x


def plot_toy(det: IOCN, x: np.ndarray, axes, title: str = "", grid: int = 150, extra=None):
    """Three panels for one 2D set: the data, its latent codes with the cube, and the score s(x) over
    the plane with the decision boundary (the cube's surface mapped back). ``extra``: further points
    ``(label, array)`` drawn in red in the data and latent panels (e.g. points in a hole)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm
    z = to_numpy(det.latent(x))
    lo, hi = x.min(0), x.max(0)
    pad = 0.35 * (hi - lo)
    gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid))
    s = det.score(np.c_[gx.ravel(), gy.ravel()].astype(np.float32)).reshape(gx.shape)
    b = decision_boundary(det)
    axes[0].scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
    axes[0].set_title(f"{title}: data")
    axes[1].scatter(z[:, 0], z[:, 1], s=2, alpha=0.5, c="C1")
    if extra is not None:
        lab, xe = extra
        ze = to_numpy(det.latent(xe))
        axes[0].scatter(xe[:, 0], xe[:, 1], s=4, c="C3", label=lab)
        axes[1].scatter(ze[:, 0], ze[:, 1], s=4, c="C3", label=lab)
        axes[0].legend(fontsize=7, loc="upper right")
    axes[1].plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "k-", lw=1)
    lim = max(1.3, float(np.quantile(np.abs(z), 0.995)) * 1.1)
    axes[1].set_xlim(-lim, lim); axes[1].set_ylim(-lim, lim); axes[1].set_aspect("equal")
    axes[1].set_title(f"latent INN(x), {(iocn_score(torch.as_tensor(z)) < 0).float().mean():.0%} inside")
    im = axes[2].pcolormesh(gx, gy, np.clip(s, -1, 2), cmap="coolwarm", shading="auto",
                            norm=TwoSlopeNorm(vmin=-1, vcenter=0, vmax=2))
    axes[2].scatter(x[:, 0], x[:, 1], s=1, c="k", alpha=0.3)
    axes[2].plot(b[:, 0], b[:, 1], "k-", lw=1.5)
    axes[2].set_xlim(gx.min(), gx.max()); axes[2].set_ylim(gy.min(), gy.max())
    axes[2].set_title("score s(x), boundary = INN⁻¹(cube surface)")
    plt.colorbar(im, ax=axes[2], fraction=0.046)
    return axes


@dataclass
class HoleResult:
    """The simply-connected limitation on an annulus: where points in its hole end up."""
    detector: IOCN
    train: np.ndarray
    hole: np.ndarray            # probe points inside the hole (radius < hole_radius)
    far: np.ndarray             # probe points far outside the ring
    inside_train: float
    inside_hole: float
    inside_far: float
    auroc_hole: float           # training ring vs hole points (higher = hole points scored more outlying)


def hole_study(S: dict, seed: int = 0, cache: bool = True, hole_radius: float = 0.5) -> HoleResult:
    """Train an IOCN on an annulus (radius 1 to 1.6, a support with a hole) and measure the share of
    training points, of points in the hole (radius < ``hole_radius``) and of points far outside
    (radius 2.5 to 3) that the IOCN maps inside the cube. The INN is a homeomorphism and the cube is
    simply connected, so the inlier region cannot have a hole: expect hole points inside."""
    rng = np.random.default_rng(seed + 7)
    det, x = fit_toy("annulus", S, seed=seed, cache=cache, steps=S["hole_steps"], n=S["hole_n"])
    hole = _ring(rng, 500, 0.0, hole_radius).astype(np.float32)
    far = _ring(rng, 500, 2.5, 3.0).astype(np.float32)
    s_tr, s_h = det.score(x), det.score(hole)
    return HoleResult(det, x, hole, far, float((s_tr < 0).mean()), float((s_h < 0).mean()),
                      float((det.score(far) < 0).mean()), ood_metrics(s_tr, s_h)["auroc"])


# --------------------------------------------------------------------------- stop-gradient ablation

@dataclass
class AblationRun:
    stop_gradient: bool
    auroc: float                 # on the test set of the split
    inside_train: float          # share of training inliers inside the cube
    inside_test_out: float       # share of test outliers inside the cube
    code_size: float             # median over training points of max_k |INN(x)_k|
    steps_done: int
    diverged: str = ""           # the INNTrainingError message, if training stopped
    curve: list = field(default_factory=list)   # [{step, auroc, code_size, inside_train}]


def stopgrad_ablation(sp: Split, S: dict, seed: int = 0, steps: int | None = None, cache: bool = True) -> list:
    """Train the IOCN of one split with and without Algorithm 1's stop-gradient (same seed, data,
    settings). Without it INN(INN⁻¹(z)) = z, the push term has no gradient, and only the pull acts:
    the codes of the data shrink towards the origin (collapse). Returns two :class:`AblationRun`; with
    ``cache`` their numbers are stored under the settings and a fingerprint of the split (a warm
    rebuild does not retrain)."""
    steps = steps or S["ablation_steps"]
    if not cache:
        return _stopgrad_ablation(sp, S, seed, steps)
    key = {"v": 1, "steps": steps, "seed": seed, **{k: S[k] for k in ("lr", "batch_size", "noise", "n_blocks", "clamp", "divisor")},
           "train": fingerprint(torch.as_tensor(sp.train)), "test": fingerprint(torch.as_tensor(sp.test)),
           "is_out": fingerprint(np.asarray(sp.is_out))}
    out = load_or_compute("iocn-stopgrad-ablation", key,
                          lambda: {"meta": {"runs": [vars(r) for r in _stopgrad_ablation(sp, S, seed, steps)]}})
    return [AblationRun(**r) for r in out["meta"]["runs"]]


def _stopgrad_ablation(sp: Split, S: dict, seed: int, steps: int) -> list:
    from ..iocn import INNTrainingError
    eval_at = tuple(sorted({max(1, steps // 4), max(1, steps // 2), steps}))
    y = sp.is_out
    out = []
    for sg in (True, False):
        curve = []

        def eval_fn(model):
            with torch.no_grad(), cpu_threads(1):
                z_tr = model(torch.as_tensor(sp.train).to(get_device()))[0]
                z_te = model(torch.as_tensor(sp.test).to(get_device()))[0]
            s = to_numpy(iocn_score(z_te))
            ev = {"auroc": ood_metrics(s[y == 0], s[y == 1])["auroc"],
                  "code_size": float(z_tr.abs().amax(1).median()),
                  "inside_train": float((iocn_score(z_tr) < 0).float().mean()),
                  "inside_test_out": float((s[y == 1] < 0).mean())}
            curve.append(ev)
            return ev

        tc = TrainConfig(objective="iocn", steps=steps, lr=S["lr"], batch_size=S["batch_size"], noise=S["noise"],
                         seed=seed, eval_at=eval_at, stop_gradient=sg)
        det = IOCN(INNConfig(dim=sp.train.shape[1], n_blocks=S["n_blocks"], clamp=S["clamp"], seed=seed), tc,
                   standardise_divisor=S["divisor"])
        msg = ""
        try:
            det.fit(sp.train, eval_fn=eval_fn, desc=f"IOCN stopgrad={sg}")
            done = steps
        except INNTrainingError as exc:
            msg = str(exc)
            done = int(msg.split("step ")[1].split(" ")[0]) if "step " in msg else 0
        last = curve[-1] if curve else {"auroc": float("nan"), "code_size": float("nan"),
                                        "inside_train": float("nan"), "inside_test_out": float("nan")}
        steps_seen = [s for s in eval_at if s <= done] if msg else list(eval_at)
        out.append(AblationRun(sg, last["auroc"], last["inside_train"], last["inside_test_out"], last["code_size"],
                               done, msg, [{"step": st, **ev} for st, ev in zip(steps_seen, curve)]))
    return out


# --------------------------------------------------------------------------- the 1-D example (Figure 2)

class Monotone1D(nn.Module):
    """An exactly invertible 1-D map (an INN in one dimension), strictly increasing:
    ``f(u) = e^a·u + b + Σ_k softplus(w_k)·tanh(e^{s_k}(u − c_k))``. Its inverse is found by bisection
    (to float precision): ``f'(u) ≥ e^a`` bounds the bracket."""

    def __init__(self, n_bumps: int = 8, span: float = 3.0):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))
        self.w = nn.Parameter(torch.full((n_bumps,), -1.0))
        self.s = nn.Parameter(torch.zeros(n_bumps))
        self.c = nn.Parameter(torch.linspace(-span, span, n_bumps))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        bumps = nn.functional.softplus(self.w) * torch.tanh(self.s.exp() * (u[:, None] - self.c))
        return self.a.exp() * u + self.b + bumps.sum(1)

    @torch.no_grad()
    def inverse(self, z: torch.Tensor, iters: int = 60) -> torch.Tensor:
        W = float(nn.functional.softplus(self.w).sum())
        ea = float(self.a.exp())
        lo, hi = (z - self.b - W) / ea, (z - self.b + W) / ea
        for _ in range(iters):
            mid = (lo + hi) / 2
            up = self(mid) < z
            lo, hi = torch.where(up, mid, lo), torch.where(up, hi, mid)
        return (lo + hi) / 2


def toy_1d(n: int, seed: int = 0) -> np.ndarray:
    """A bimodal 1-D data set: 60 % N(−1.5, 0.4²), 40 % N(1.5, 0.6²)."""
    rng = np.random.default_rng(seed)
    c = rng.random(n) < 0.6
    return np.where(c, rng.normal(-1.5, 0.4, n), rng.normal(1.5, 0.6, n)).astype(np.float32)


@dataclass
class OneDRun:
    data: np.ndarray
    snapshots: dict              # step -> state_dict of the map
    loss: list
    model: Monotone1D


def train_1d(S: dict, seed: int = 0, lr: float = 3e-2, batch_size: int = 256, cache: bool = True) -> OneDRun:
    """Algorithm 1 in one dimension (f(z) = |z|): pull |f(x)| down on data, push |f(stopgrad(f⁻¹(z)))|
    up for z ~ U[-1, 1]; snapshots of the map at the steps ``S["oned_snapshots"]`` (with ``cache``,
    stored under these settings: a warm rebuild does not retrain)."""
    if not cache:
        return _train_1d(S, seed, lr, batch_size)
    key = {"v": 1, "n": S["oned_n"], "steps": S["oned_steps"], "snapshots": list(S["oned_snapshots"]), "seed": seed,
           "lr": lr, "batch_size": batch_size}

    def compute():
        run = _train_1d(S, seed, lr, batch_size)
        t = {f"s{step}.{k}": v for step, sd in run.snapshots.items() for k, v in sd.items()}
        return {**t, "data": torch.as_tensor(run.data), "meta": {"loss": run.loss}}
    out = load_or_compute("iocn-1d", key, compute)
    snaps = {}
    for name, v in out.items():
        if name.startswith("s") and "." in name:
            step, k = name[1:].split(".", 1)
            snaps.setdefault(int(step), {})[k] = v
    model = Monotone1D()
    model.load_state_dict(snaps[max(snaps)])
    return OneDRun(out["data"].numpy(), dict(sorted(snaps.items())), list(out["meta"]["loss"]), model)


def _train_1d(S: dict, seed: int, lr: float, batch_size: int) -> OneDRun:
    set_seed(seed)
    x = torch.as_tensor(toy_1d(S["oned_n"], seed))
    model = Monotone1D()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    snaps, losses = {}, []
    keep = set(S["oned_snapshots"])
    for step in range(S["oned_steps"] + 1):
        if step in keep:
            snaps[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step == S["oned_steps"]:
            break
        xb = x[torch.randint(len(x), (batch_size,), generator=g)]
        zc = torch.rand(batch_size, generator=g) * 2 - 1
        x_tilde = model.inverse(zc)                       # no gradient: the stop-gradient
        loss = pull_f(model(xb)[:, None]).mean() - pull_f(model(x_tilde)[:, None]).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(float(loss.detach()))
    return OneDRun(x.numpy(), snaps, losses, model)


def plot_1d(run: OneDRun, axes, n_bins: int = 24, seed: int = 0):
    """Figure 2: per snapshot (columns) the data space (top: the data and the pre-images of cube samples)
    and the latent space (bottom: the codes of the data against the uniform density on [−1, 1]), with
    arrows: the net loss gradient on the latent at each bin of x — data pull towards 0, pre-images of
    cube samples push outwards — which vanishes where the two coincide."""
    m = Monotone1D()
    zc = torch.rand(len(run.data), generator=torch.Generator().manual_seed(seed + 1)) * 2 - 1
    x = torch.as_tensor(run.data)
    edges = np.linspace(float(x.min()) - 0.5, float(x.max()) + 0.5, n_bins + 1)
    centres = (edges[1:] + edges[:-1]) / 2
    for col, (step, state) in enumerate(sorted(run.snapshots.items())):
        m.load_state_dict(state)
        with torch.no_grad():
            z = m(x).numpy()
            xt = m.inverse(zc).numpy()
            zcen = m(torch.as_tensor(centres, dtype=torch.float32)).numpy()
        top, bot = axes[0][col], axes[1][col]
        top.hist(run.data, bins=edges, alpha=0.6, label="data x", density=True)
        top.hist(np.clip(xt, edges[0], edges[-1]), bins=edges, alpha=0.6, label="INN⁻¹(z), z ~ U[−1, 1]", density=True)
        top.set_title(f"step {step}: data space", fontsize=9)
        n_data = np.histogram(run.data, edges)[0] / len(run.data)
        n_push = np.histogram(xt, edges)[0] / len(xt)
        force = (n_data - n_push) * -np.sign(zcen)          # net −∂L/∂z per bin: pull minus push
        bot.hist(z, bins=30, alpha=0.6, density=True, color="C0", label="INN(x)")
        bot.plot([-1, -1, 1, 1], [0, 0.5, 0.5, 0], "k-", lw=1, label="U[−1, 1]")
        bot.quiver(zcen, np.full_like(zcen, 0.05), force, np.zeros_like(force), angles="xy", scale_units="xy",
                   scale=0.25, width=0.006, color="k")
        bot.set_title(f"step {step}: latent space", fontsize=9); bot.set_xlabel("z")
        lim = max(1.5, float(np.quantile(np.abs(z), 0.99)) * 1.1)
        bot.set_xlim(-lim, lim)
        if col == 0:
            top.legend(fontsize=7); bot.legend(fontsize=7)
    return axes


#: Table 1 of the paper: mean one-vs-rest AUROC (×100) over the CIFAR-10 classes, MoCo features.
#: Keys are this book's row names.
PAPER_TABLE1_MEAN = {
    "COPOD": 89.6, "IForest": 92.1, "KDE": 95.0, "PCA": 95.2, "KNN": 95.9,
    "DeepSVDD (deepOD)": 90.1, "GOAD (deepOD)": 94.9, "ICL (deepOD)": 95.6, "RCA (deepOD)": 96.2,
    "SLAD (deepOD)": 96.5, "FLOW": 95.2, "IOCN": 96.5,
}
