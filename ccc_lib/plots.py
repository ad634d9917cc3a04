"""Plotting helpers shared by the chapters (matplotlib + seaborn, one look for the whole book)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .metrics import reliability_bins, roc
from .utils import to_numpy

__all__ = ["setup_style", "image_grid", "stack_figures", "reliability_diagram", "confusion_heatmap", "roc_curves",
           "loss_curves"]


def setup_style() -> None:
    """The book's look, set by every chapter's set-up cell: seaborn's white grid on an opaque white
    figure (so a figure reads the same on the book's light and dark themes, where the CSS puts it on a
    light card) and, in a notebook kernel, the book's one table style for every DataFrame shown
    (:func:`ccc_lib.tables.install_formatter`: rounded numbers, ✓/✗, readable names, scrolling boxes)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "axes.titlesize": 10,
                         "image.cmap": "gray", "figure.facecolor": "white", "savefig.facecolor": "white",
                         "savefig.transparent": False})
    from .tables import install_formatter
    install_formatter()


def _img(a):
    a = to_numpy(a)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return np.clip(a, 0, 1)


def image_grid(images, titles=None, nrow: int | None = None, ncol: int = 10, size: float = 1.1,
               row_labels=None, suptitle: str | None = None, title_colors=None):
    """Show N×C×H×W images in a grid; ``titles`` is a flat list (one per image)."""
    images = to_numpy(images)
    n = len(images)
    nrow = nrow or int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * size, nrow * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]); ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        if i < n:
            ax.imshow(_img(images[i]), cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                kw = {} if title_colors is None else {"color": title_colors[i]}
                ax.set_title(titles[i], fontsize=7, **kw)
    if row_labels is not None:
        for r, lab in enumerate(row_labels):
            axes[r, 0].set_ylabel(lab, fontsize=8, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def stack_figures(figs, dpi: int | None = None):
    """One figure holding ``figs`` rendered one below the other (each closed afterwards). A book
    figure (a cell with a caption and a label) must show exactly one image; a loop over datasets that
    draws one figure each passes them here."""
    figs = [f for f in figs if f is not None]
    if not figs:
        return None
    dpi = dpi or plt.rcParams["figure.dpi"]
    arrays = []
    for f in figs:
        f.set_dpi(dpi)
        f.canvas.draw()
        arrays.append(np.asarray(f.canvas.buffer_rgba())[..., :3].copy())
        plt.close(f)
    width = max(a.shape[1] for a in arrays)
    rows = []
    for a in arrays:                         # centre narrower figures on a white background
        pad = width - a.shape[1]
        rows.append(np.pad(a, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)), constant_values=255))
    img = np.concatenate(rows, 0)
    fig = plt.figure(figsize=(img.shape[1] / dpi, img.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(img, interpolation="none")
    ax.axis("off")
    return fig


def reliability_diagram(probs, labels, ax=None, n_bins: int = 15, title: str = ""):
    b = reliability_bins(probs, labels, n_bins)
    ax = ax or plt.gca()
    centres = (b["edges"][:-1] + b["edges"][1:]) / 2
    width = b["edges"][1] - b["edges"][0]
    has = b["count"] > 0
    ax.bar(centres[has], b["accuracy"][has], width=width * 0.95, alpha=0.8, label="accuracy", edgecolor="k", lw=0.3)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlabel("confidence (max softmax)"); ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1); ax.set_ylim(0, 1); ax.set_title(title); ax.legend(loc="upper left", fontsize=8)
    return ax


def confusion_heatmap(cm, classes, ax=None, title: str = ""):
    ax = ax or plt.gca()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    sns.heatmap(norm, ax=ax, cmap="Blues", vmin=0, vmax=1, square=True, cbar=False,
                annot=cm.astype(int), fmt="d", annot_kws={"fontsize": 6},
                xticklabels=classes, yticklabels=classes)
    ax.set_xlabel("predicted"); ax.set_ylabel("true"); ax.set_title(title)
    ax.tick_params(labelsize=7)
    return ax


def roc_curves(curves: dict, ax=None, title: str = ""):
    """``curves``: label → (scores_in, scores_out)."""
    ax = ax or plt.gca()
    for lab, (s_in, s_out) in curves.items():
        fpr, tpr = roc(s_in, s_out)
        ax.plot(fpr, tpr, label=lab, lw=1.3)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false-positive rate (in-distribution flagged)")
    ax.set_ylabel("true-positive rate (OOD flagged)")
    ax.set_title(title); ax.legend(fontsize=8)
    return ax


def loss_curves(history: dict, ax=None, title: str = "", logy: bool = True, smooth: int = 1):
    """``history``: name → list of values per step."""
    ax = ax or plt.gca()
    for name, vals in history.items():
        v = np.asarray(vals, dtype=float)
        if smooth > 1 and len(v) >= smooth:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
        ax.plot(v, label=name, lw=1.2)
    if logy:
        ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("step"); ax.set_title(title); ax.legend(fontsize=8)
    return ax


# --------------------------------------------------------------------------- precomputed slider panels
from dataclasses import dataclass, field  # noqa: E402


@dataclass
class PanelKnob:
    """One knob of a :func:`precomputed_panel`: its ``label``, the ``values`` the slider offers (shown as
    text), and per value a PNG (``pngs``, bytes) and an HTML snippet of numbers (``htmls``); ``start`` is
    the index shown first (the chapter's own setting)."""
    label: str
    values: list
    pngs: list = field(repr=False)
    htmls: list = field(repr=False)
    start: int = 0

    def __post_init__(self):
        from .checks import InputError
        n = len(self.values)
        if n == 0 or len(self.pngs) != n or len(self.htmls) != n:
            raise InputError(f"knob {self.label!r}: need as many PNGs and HTML snippets as values "
                             f"(values {n}, PNGs {len(self.pngs)}, HTML {len(self.htmls)}), at least one")
        if not all(isinstance(p, (bytes, bytearray)) and bytes(p[:8]) == b"\x89PNG\r\n\x1a\n" for p in self.pngs):
            raise InputError(f"knob {self.label!r}: every image must be PNG bytes (use plots.fig_png(fig))")
        if not 0 <= int(self.start) < n:
            raise InputError(f"knob {self.label!r}: start {self.start} is not an index of its {n} values")


def fig_png(fig, dpi: int = 80) -> bytes:
    """A matplotlib figure as PNG bytes (closed afterwards), for a :class:`PanelKnob`."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def precomputed_panel(knobs, slider_width: str = "420px", label_width: str = "110px"):
    """A panel that works in the static book, with no kernel: per knob a ``SelectionSlider`` jslinked
    (in the browser) to a ``Stack`` of (image, numbers) children, one knob per row, each row a VBox of
    class ``ccc-precomputed`` (what the browser test drives). Pure widgets: the notebook's saved widget
    state carries every precomputed image and number into the HTML."""
    import ipywidgets as widgets
    knobs = list(knobs)
    if not knobs or not all(isinstance(k, PanelKnob) for k in knobs):
        from .checks import InputError
        raise InputError("precomputed_panel needs a non-empty list of plots.PanelKnob")
    rows = []
    for k in knobs:
        opts = [(str(v), i) for i, v in enumerate(k.values)]
        slider = widgets.SelectionSlider(options=opts, value=int(k.start), description=k.label,
                                         continuous_update=True, style={"description_width": label_width},
                                         layout=widgets.Layout(width=slider_width))
        stack = widgets.Stack([widgets.VBox([widgets.Image(value=bytes(p), format="png"), widgets.HTML(h)])
                               for p, h in zip(k.pngs, k.htmls)], selected_index=int(k.start))
        widgets.jslink((slider, "index"), (stack, "selected_index"))
        box = widgets.VBox([slider, stack])
        box.add_class("ccc-precomputed")
        rows.append(box)
    return widgets.VBox(rows)
