"""What the chapter measures on counterfeits and real images: confidence, within-class diversity in
pixels and in a classifier's penultimate features, distance to the training data, and the
nearest-neighbour view of modes (each cached under its inputs' fingerprints)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from ... import counterfeits as cf
from ...cache import cached
from ...checks import check_labels
from ...metrics import nearest_neighbour_distance, pairwise_mean_distance

__all__ = ["features", "diversity_stats", "feature_diversity", "RealStats", "real_stats", "Summary", "summarise",
           "confidence_table", "Modes", "modes", "distance_stats"]


@cached("ch1-features")
def features(classifier, x: torch.Tensor, batch: int = 1000, feature_layer=None) -> torch.Tensor:
    """Penultimate features of ``x`` (CPU float), classifier in eval mode (scored under inference mode)."""
    tap = cf.FeatureTap(classifier, feature_layer)
    dev = cf.device_of(classifier)
    was = classifier.training
    classifier.eval()
    try:
        with torch.inference_mode():
            f = torch.cat([tap(x[i:i + batch].to(dev))[1].float().cpu() for i in range(0, len(x), batch)])
        return f.clone()                       # an ordinary tensor for the caller
    finally:
        tap.close()
        classifier.train(was)


def diversity_stats(x: torch.Tensor, y: torch.Tensor, per_class: int | None = None, seed: int = 0) -> dict:
    """Within-class mean pairwise Euclidean distance of the rows of ``x`` (images or features), per
    class and averaged over classes; ``per_class`` caps the rows per class (a seeded subset)."""
    y = check_labels(y, "y", n=len(x))
    g = np.random.default_rng(seed)
    out = {}
    for c in np.unique(y.numpy()):
        idx = np.flatnonzero(y.numpy() == c)
        if per_class is not None and len(idx) > per_class:
            idx = g.choice(idx, per_class, replace=False)
        out[int(c)] = pairwise_mean_distance(x[idx])
    return {"per_class": out, "mean": float(np.mean(list(out.values())))}


def feature_diversity(classifier, x: torch.Tensor, y: torch.Tensor, per_class: int | None = 500,
                      seed: int = 0, feature_layer=None) -> float:
    """Within-class diversity in the classifier's penultimate feature space (averaged over classes):
    diversity as the classifier sees it, blind to background pixel noise."""
    return diversity_stats(features(classifier, x, feature_layer=feature_layer), y, per_class, seed)["mean"]


@dataclass
class RealStats:
    """What real held-out images score on the chapter's statistics (the yardstick)."""
    pixel_diversity: float
    feature_diversity: float
    median_nn_pixel: float
    median_nn_feature: float


@cached("ch1-real-stats")
def real_stats(classifier, train_x: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
               per_class: int = 500, seed: int = 0) -> RealStats:
    """Diversity of real test images and their median NN distance to ``train_x`` (pixel, feature)."""
    ftr, fte = features(classifier, train_x), features(classifier, test_x)
    return RealStats(pixel_diversity=diversity_stats(test_x, test_y, per_class, seed)["mean"],
                     feature_diversity=diversity_stats(fte, test_y, per_class, seed)["mean"],
                     median_nn_pixel=float(np.median(nearest_neighbour_distance(test_x, train_x))),
                     median_nn_feature=float(np.median(nearest_neighbour_distance(fte, ftr))))


@dataclass
class Summary:
    """Headline numbers of one set of counterfeits (ratios are against :class:`RealStats`)."""
    mean_confidence: float
    worst_class_mean_confidence: float
    share_099: float
    worst_class_share_099: float
    predicted_as_intended: float
    feature_diversity_ratio: float
    pixel_diversity_ratio: float
    nn_pixel_ratio: float | None = None

    LABELS = {"mean_confidence": "mean confidence", "worst_class_mean_confidence": "worst class: mean confidence",
              "share_099": "share ≥ 0.99", "worst_class_share_099": "worst class: share ≥ 0.99",
              "predicted_as_intended": "classified as intended",
              "feature_diversity_ratio": "feature diversity / real", "pixel_diversity_ratio": "pixel diversity / real",
              "nn_pixel_ratio": "median NN pixel distance / test's"}

    def row(self) -> dict:
        """Readable column names for tables."""
        return {self.LABELS[k]: v for k, v in asdict(self).items() if v is not None}


@cached("ch1-summary")
def summarise(classifier, s: dict, real: RealStats, train_x: torch.Tensor | None = None,
              threshold: float = 0.99) -> Summary:
    """The :class:`Summary` of :func:`ccc_lib.counterfeits.sample`'s output ``s``."""
    conf, y = s["confidence"].numpy(), s["y"].numpy()
    classes = np.unique(y)
    nn_ratio = None
    if train_x is not None:
        nn_ratio = float(np.median(nearest_neighbour_distance(s["x"], train_x))) / real.median_nn_pixel
    return Summary(
        mean_confidence=float(conf.mean()),
        worst_class_mean_confidence=min(float(conf[y == c].mean()) for c in classes),
        share_099=float((conf >= threshold).mean()),
        worst_class_share_099=min(float((conf[y == c] >= threshold).mean()) for c in classes),
        predicted_as_intended=float((s["pred"] == s["y"]).float().mean()),
        feature_diversity_ratio=feature_diversity(classifier, s["x"], s["y"]) / real.feature_diversity,
        pixel_diversity_ratio=diversity_stats(s["x"], s["y"], 500)["mean"] / real.pixel_diversity,
        nn_pixel_ratio=nn_ratio)


def confidence_table(s: dict, classes=None, threshold: float = 0.99) -> pd.DataFrame:
    """Per intended class: mean and minimum confidence, share ≥ ``threshold``, share classified as intended."""
    y, conf, pred = s["y"].numpy(), s["confidence"].numpy(), s["pred"].numpy()
    rows = []
    for c in np.unique(y):
        m = y == c
        rows.append({"class": classes[c] if classes is not None else int(c), "n": int(m.sum()),
                     "mean confidence": float(conf[m].mean()), "min confidence": float(conf[m].min()),
                     f"share ≥ {threshold}": float((conf[m] >= threshold).mean()),
                     "classified as intended": float((pred[m] == c).mean())})
    return pd.DataFrame(rows).set_index("class")


@dataclass
class Modes:
    """The nearest-neighbour class view, in the classifier's feature space: for each image, its nearest
    training image. ``nn_label_agrees``: share whose neighbour has the intended label;
    ``distinct_neighbours``: distinct neighbours per class over images per class (1: every image near
    a different training image, i.e. many modes; near 0: one template)."""
    nn_label_agrees: float
    distinct_neighbours: float


@cached("ch1-modes")
@torch.inference_mode()
def modes(classifier, x: torch.Tensor, y: torch.Tensor, train_x: torch.Tensor, train_y: torch.Tensor,
          batch: int = 500) -> Modes:
    """:class:`Modes` of images ``x`` with intended labels ``y`` against the training set."""
    y, train_y = check_labels(y, "y", n=len(x)), check_labels(train_y, "train_y", n=len(train_x))
    ftr, fx = features(classifier, train_x), features(classifier, x)
    idx = torch.cat([torch.cdist(fx[i:i + batch], ftr).argmin(1) for i in range(0, len(fx), batch)])
    distinct = [len(torch.unique(idx[y == c])) / int((y == c).sum()) for c in torch.unique(y)]
    return Modes(nn_label_agrees=float((train_y[idx] == y).float().mean()),
                 distinct_neighbours=float(np.mean(distinct)))


@cached("ch1-distances")
def distance_stats(classifier, train_x: torch.Tensor, queries: dict, feature_layer=None) -> dict:
    """Nearest-neighbour distance to ``train_x`` of each query set (name → images), in pixel space and
    in the classifier's penultimate feature space: name → {"pixel": array, "feature": array}."""
    ftrain = features(classifier, train_x, feature_layer=feature_layer)
    return {name: {"pixel": nearest_neighbour_distance(q, train_x),
                   "feature": nearest_neighbour_distance(features(classifier, q, feature_layer=feature_layer), ftrain)}
            for name, q in queries.items()}
