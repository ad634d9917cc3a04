"""Chapter 2's figures, each from a fitted :class:`~.chapter.Chapter` (the notebook shows them): the
autoencoders' loss curves, the slides' motivating histograms, the literal rule's false alarms as layers are
added, NeuralFP against every baseline, ROC curves, chapter 1's counterfeits, and the precomputed panel of the
joint rule's false-alarm budget."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...plots import PanelKnob, fig_png, image_grid, loss_curves, roc_curves, stack_figures

__all__ = ["loss_curve_figure", "error_histograms", "false_alarm_curves", "versus_figure", "roc_figure",
           "counterfeit_grid", "alpha_knobs"]


def loss_curve_figure(ch):
    """Each model's chosen autoencoder bank: loss per epoch and layer."""
    fig, axes = plt.subplots(1, len(ch.dets), figsize=(5.5 * len(ch.dets), 3.4), squeeze=False)
    for ax, (ds, det) in zip(axes[0], ch.dets.items()):
        hist = det.fit_info.get("epoch_losses", {})
        if hist:
            loss_curves(hist, ax=ax, title=f"{ds}: autoencoder loss per epoch", logy=True)
            ax.set_xlabel("epoch")
            if len(hist) > 10:
                ax.legend().set_visible(False)
        else:
            ax.set_visible(False)
    fig.tight_layout()
    return fig


def error_histograms(ch) -> list:
    """Per model, one panel per tap: log reconstruction errors of the ID test images and the other dataset."""
    figs = []
    for ds, det in ch.dets.items():
        other, L = ch.FAR[ds][0], len(det.taps)
        ncol = min(6, L)
        nrow = int(np.ceil(L / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.4 * nrow), squeeze=False)
        for j, (ax, tap) in enumerate(zip(axes.flat, det.taps)):
            li, lo = np.log10(ch.ERR[ds]["test"][:, j]), np.log10(ch.ERR[ds][other][:, j])
            bins = np.linspace(min(li.min(), lo.min()), max(li.max(), lo.max()) + 1e-9, 40)
            ax.hist(li, bins=bins, alpha=0.6, density=True, label=f"{ds} test")
            ax.hist(lo, bins=bins, alpha=0.6, density=True, label=other)
            ax.set_title(f"layer {j + 1}: {tap}", fontsize=8); ax.set_yticks([])
            ax.set_xlabel("log10 error", fontsize=7)
        for ax in list(axes.flat)[L:]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize=6)
        fig.suptitle(f"{ds} model: reconstruction errors, in-distribution vs {other}")
        fig.tight_layout()
        figs.append(fig)
    return figs


def false_alarm_curves(ch):
    """Our literal reading's false alarms on ID test images as the first L taps are used, against the
    independent-layers bound and the joint rule."""
    S = ch.S
    fig, axes = plt.subplots(1, len(ch.dets), figsize=(5.2 * len(ch.dets), 3.6), squeeze=False)
    for ax, (ds, det) in zip(axes[0], ch.dets.items()):
        det.set_rule("literal", S["alpha"])
        flags = det.flags_from_errors(ch.ERR[ds]["test"])
        det.set_rule("joint", S["alpha"])
        ks = np.arange(1, len(det.taps) + 1)
        ax.plot(ks, [flags[:, :k].any(1).mean() for k in ks], "o-", label="our literal reading (per-layer α/2, 1 − α/2)")
        ax.plot(ks, 1 - (1 - S["alpha"]) ** ks, "k:", label="1 − (1 − α)^L (independent layers)")
        ax.axhline(S["alpha"], color="g", ls="--", lw=1, label=f"budget α = {S['alpha']}")
        j = ch.fa[ds].loc["joint", "false alarms (ID test)"]
        ax.plot([ks[-1]], [j], "s", color="C3", ms=8, label=f"joint rule, all layers: {j:.3f}")
        ax.set_xlabel("layers used (first L taps)"); ax.set_ylabel("false alarms on ID test")
        ax.set_title(f"{ds} model"); ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def versus_figure(ch):
    """Per (model, OOD set): NeuralFP minus the closest of every baseline (the interval the verdict reads),
    coloured by the verdict against every baseline."""
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.32 * len(ch.vs)))
    ys = np.arange(len(ch.vs))[::-1]
    colour = {"wins": "tab:green", "loses": "tab:red"}
    for y, r in zip(ys, ch.vs.values()):
        d = r.summary
        ax.errorbar(d.estimate, y, xerr=[[d.estimate - d.lo], [d.hi - d.estimate]], fmt="o", capsize=3,
                    color=colour.get(r.verdict, "tab:gray"))
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{ds} vs {o} (closest: {r.closest})" for (ds, o), r in ch.vs.items()], fontsize=7)
    ax.set_xlabel("AUROC difference NeuralFP (one-out) − the closest of every baseline")
    ax.set_title("green: NeuralFP wins, red: loses, grey: tie within uncertainty", fontsize=8)
    fig.tight_layout()
    return fig


def roc_figure(ch):
    """Every detector's ROC curve, each model against its first other dataset (log false-positive axis)."""
    fig, axes = plt.subplots(1, len(ch.models), figsize=(5.5 * len(ch.models), 4.4), squeeze=False)
    for ax, ds in zip(axes[0], ch.models):
        o = ch.FAR[ds][0]
        roc_curves({m: (sc["test"], sc[o]) for m, sc in ch.scores[ds].items()}, ax=ax, title=f"{ds} model vs {o}")
        ax.set_xscale("log"); ax.set_xlim(1e-3, 1)
    fig.tight_layout()
    return fig


def counterfeit_grid(images: dict):
    """The first counterfeits of the paper's generator per model (``images``: ``{model: images}``)."""
    return stack_figures([image_grid(x[:20], ncol=10, size=0.9, suptitle=f"{ds} model: counterfeits with confidence "
                                     "≥ 0.99") for ds, x in images.items() if len(x)])


def alpha_knobs(ch) -> list:
    """The precomputed panel's knobs: per model, the joint one-out rule at each false-alarm budget α → the
    share of each set flagged. Only the threshold moves (set_rule); nothing is retrained. The rule is set
    back to the chapter's α afterwards."""
    alphas = sorted({0.005, 0.01, 0.02, 0.05, 0.1, 0.2, float(ch.S["alpha"])})
    knobs = []
    for ds, det in ch.dets.items():
        names = {"test": f"{ds} test (in-distribution)", **{o: o for o in ch.OOD[ds]}}
        pngs, htmls = [], []
        for a in alphas:
            det.set_rule("joint", a)
            share = {lab: float(det.is_outlier(errors=ch.ERR[ds][k]).mean()) for k, lab in names.items()}
            fig, ax = plt.subplots(figsize=(4.6, 0.5 + 0.42 * len(share)))
            ax.barh(list(share)[::-1], list(share.values())[::-1], color=["tab:orange"] * (len(share) - 1) + ["tab:blue"])
            ax.axvline(a, color="k", lw=0.8, ls="--")
            ax.set_xlim(0, 1); ax.set_xlabel("share flagged"); ax.set_title(f"{ds} model, joint rule, α = {a:g}")
            pngs.append(fig_png(fig))
            htmls.append(f"<b>α = {a:g}</b>: flagged " + ", ".join(f"<b>{lab}</b> {v:.3f}" for lab, v in share.items()))
        knobs.append(PanelKnob(f"{ds}: α", [f"{a:g}" for a in alphas], pngs, htmls, start=alphas.index(float(ch.S["alpha"]))))
        det.set_rule("joint", ch.S["alpha"])
    return knobs
