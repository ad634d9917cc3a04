"""Figure-2 grids and the precomputed loss-weight sliders of the static book."""
from __future__ import annotations

import copy
import io
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ... import counterfeits as cf
from ...cache import fingerprint, load_or_compute
from .measures import RealStats, summarise

__all__ = ["pick_grid", "show_grid", "grid_png", "KNOBS", "slider_values", "SliderPoint", "precompute_sliders",
           "slider_panel"]


def pick_grid(s: dict, per_class: int, num_classes: int | None = None):
    """The first ``per_class`` samples of each class, arranged row by row (one column per class)."""
    y = s["y"].numpy()
    n = num_classes or int(y.max()) + 1
    idx = [np.flatnonzero(y == c)[:per_class] for c in range(n)]
    order = [idx[c][r] for r in range(per_class) for c in range(n)]
    return s["x"][order], [float(s["confidence"][i]) for i in order], [int(s["pred"][i]) for i in order]


def show_grid(s: dict, classes, per_class: int = 3, title: str = "", size: float = 1.05):
    """Figure-2 style grid: one column per intended class, the confidence above each image (red when
    the classifier's label differs from the intended one or confidence < 0.99)."""
    from ...plots import image_grid
    n = len(classes)
    x, conf, pred = pick_grid(s, per_class, n)
    intended = [c for _ in range(per_class) for c in range(n)]
    titles = [(f"{classes[c][:9]}\n{p:.4f}" if r == 0 else f"{p:.4f}")
              for r in range(per_class) for c, p in zip(range(n), conf[r * n:(r + 1) * n])]
    colors = ["black" if (pr == c and p >= 0.99) else "red" for pr, c, p in zip(pred, intended, conf)]
    return image_grid(x, titles=titles, ncol=n, size=size, suptitle=title or None, title_colors=colors)


def grid_png(s: dict, classes, per_class: int = 2, title: str = "", size: float = 0.8, dpi: int = 60) -> bytes:
    """:func:`show_grid` rendered to PNG bytes (closed, not shown)."""
    import matplotlib.pyplot as plt
    fig = show_grid(s, classes, per_class, title, size)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


KNOBS = {
    "alpha": ("α (KL)", (0.0, 1.0, 4.0, 8.0, 16.0)),
    "beta": ("β (CE)", (0.0, 1.0, 4.0, 8.0, 16.0)),
    "gamma": ("γ (Cosine)", (0.0, 0.5, 2.0, 8.0, 32.0)),
    "delta": ("δ (Ortho)", (0.0, 0.5, 2.0, 8.0, 32.0)),
    "epsilon": ("ε (Div, ours)", (0.0, 1.0, 2.0, 4.0, 8.0)),
    "dropout": ("dropout", (0.0, 0.1, 0.3, 0.5, 0.7)),
}


def slider_values(knob: str, s: dict) -> list:
    """The values one knob's slider offers at settings ``s``: ``slider_points`` spread over the
    candidates, plus the setting itself (sorted)."""
    _, cand = KNOBS[knob]
    idx = np.unique(np.round(np.linspace(0, len(cand) - 1, max(2, int(s["slider_points"])))).astype(int))
    vals = {float(cand[i]) for i in idx} | {float(s[knob])}
    return sorted(vals)


@dataclass
class SliderPoint:
    knob: str
    value: float
    png: bytes
    mean_confidence: float
    share_099: float
    feature_diversity_ratio: float
    from_cache: bool

    def html(self) -> str:
        return (f"<b>{KNOBS[self.knob][0]} = {self.value:g}</b>: mean confidence {self.mean_confidence:.4f}, "
                f"share ≥ 0.99 {self.share_099:.3f}, feature diversity / real {self.feature_diversity_ratio:.3f}")


def _finetune_point(gen, info, classifier, classes, knob, value, s, real, seed):
    g = copy.deepcopy(gen)
    kw = {k: s[k] for k in ("batch_size", "lr", "alpha", "beta", "gamma", "delta", "epsilon", "div_target")}
    if knob == "dropout":
        g.set_dropout(value)
    else:
        kw[knob] = float(value)
    cf.train_generator(g, classifier, steps=int(s["slider_steps"]), seed=seed, desc=f"slider {knob}={value:g}", **kw)
    smp = cf.sample(g, classifier, int(s["slider_n"]), seed=seed + 2, dropout=bool(s["sample_dropout"]))
    summ = summarise(classifier, smp, real)
    png = grid_png(smp, classes, per_class=2)
    return {"png": torch.frombuffer(bytearray(png), dtype=torch.uint8).clone(),
            "meta": {"mean_confidence": summ.mean_confidence, "share_099": summ.share_099,
                     "feature_diversity_ratio": summ.feature_diversity_ratio}}


def precompute_sliders(gen, info: dict, classifier, classes, real: RealStats, *, seed: int = 0,
                       knobs=tuple(KNOBS)) -> dict:
    """For each knob and each of its :func:`slider_values`: fine-tune a copy of ``gen`` (trained with
    ``info["settings"]``) for ``slider_steps`` steps with that one value changed, sample it, and keep
    the grid (PNG) and numbers. Cached under the generator's fingerprint and the knob's value.
    Returns knob → list of :class:`SliderPoint`."""
    s = info["settings"]
    out = {}
    for knob in knobs:
        pts = []
        for v in slider_values(knob, s):
            cfg = {"generator": fingerprint(gen), "classifier": fingerprint(classifier),
                   "knob": knob, "value": v, "settings": {k: s[k] for k in sorted(s)}, "seed": seed,
                   "real": asdict(real), "version": 1}
            r = load_or_compute("ch1-slider", cfg, lambda: _finetune_point(gen, info, classifier, classes, knob,
                                                                            v, s, real, seed))
            pts.append(SliderPoint(knob, v, bytes(r["png"].numpy().tobytes()), r["meta"]["mean_confidence"],
                                   r["meta"]["share_099"], r["meta"]["feature_diversity_ratio"], r["from_cache"]))
        out[knob] = pts
    return out


def slider_panel(points: dict, settings: dict):
    """The static-book panel: per knob a ``SelectionSlider`` jslinked to a ``Stack`` of
    (grid image, numbers) children, one knob per row (:func:`ccc_lib.plots.precomputed_panel`), the
    slider starting at the chapter's setting."""
    from ...plots import PanelKnob, precomputed_panel
    return precomputed_panel([
        PanelKnob(KNOBS[knob][0], [f"{p.value:g}" for p in pts], [p.png for p in pts], [p.html() for p in pts],
                  start=next((i for i, p in enumerate(pts) if p.value == float(settings[knob])), 0))
        for knob, pts in points.items()])
