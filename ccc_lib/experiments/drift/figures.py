"""Chapter 4's figures and its precomputed α panel, from a :class:`~.chapter.Run`."""
from __future__ import annotations

import numpy as np

from ...plots import PanelKnob, fig_png, image_grid, stack_figures
from .chapter import NAMES, Run
from .models import affected_classes
from .scores import add_decisions, frame

__all__ = ["training_curves", "drift_examples", "gray_examples", "class_heatmap", "alpha_knobs"]


def training_curves(run: Run):
    """Every CNN's training loss per epoch (the cap: the profile's epochs) and every decision model's
    inversion loss per Adam step, per dataset: where training stopped, and whether it had flattened."""
    import matplotlib.pyplot as plt
    ds_list = run.S["datasets"]
    fig, axes = plt.subplots(2, len(ds_list), figsize=(5.2 * len(ds_list), 5.6), squeeze=False)
    for j, ds in enumerate(ds_list):
        ax = axes[0, j]
        curves = [run.base_info[ds].get("epoch_losses", [])] + [p.epoch_losses for p in run.prods[ds]]
        for c in curves:
            ax.plot(range(1, len(c) + 1), c, color="C0", alpha=0.35, lw=1)
        ax.set(title=f"{ds}: CNN training loss ({len(curves)} models)", xlabel="epoch (the last: the cap)",
               ylabel="cross-entropy")
        ax = axes[1, j]
        grays = run.grays.get((ds, run.S["decision_method"]), {})
        for g in grays.values():
            loss = g.info.get("loss") or []
            ax.plot(range(1, len(loss) + 1), loss, color="C1", alpha=0.35, lw=1)
        ax.set(title=f"{ds}: {NAMES[run.S['decision_method']]} loss ({len(grays)} models)", xlabel="step",
               ylabel="cross-entropy", yscale="log")
    fig.tight_layout()
    return fig


def drift_examples(run: Run):
    """The first dataset's base portion and each drifted portion, two images per affected class."""
    ds = run.S["datasets"][0]
    base, figs = run.base_portions[ds], []
    for kind in run.S["drift_kinds"]:
        p = min((p for p in run.prods[ds] if p.kind == kind), key=lambda p: p.seed)
        aff = affected_classes(kind, run.base_models[ds].num_classes)
        idx = np.concatenate([np.flatnonzero(base.y.numpy() == c)[:2] for c in aff[:5]])
        pidx = np.concatenate([np.flatnonzero(p.data.y.numpy() == c)[:2] for c in aff[:5]]) if kind != "swap" else idx
        x = np.concatenate([base.x[idx].numpy(), p.data.x[pidx].numpy()])
        titles = [f"base, {int(base.y[i])}" for i in idx] + [f"prod., {int(p.data.y[i])}" for i in pidx]
        figs.append(image_grid(x, titles=titles, ncol=len(idx), size=1.0,
                               suptitle=f"{ds}, drift '{kind}' on classes {aff}: base portion (top) and production "
                                        "portion (bottom), with labels"))
    return stack_figures(figs)


def gray_examples(run: Run):
    """The headline gray data (one image per class) of each base model and the first no-drift models."""
    figs = []
    for ds in run.S["datasets"]:
        g = run.grays[(ds, run.S["headline_method"])]
        show = ["base"] + [p.name for p in run.prods[ds] if p.kind == "none"][:2]
        k = min(run.base_models[ds].num_classes, 10)
        x = np.concatenate([g[name].x[:: max(1, len(g[name]) // run.base_models[ds].num_classes)][:k].numpy()
                            for name in show])
        figs.append(image_grid(x, titles=[str(c) for c in range(k)] * len(show), ncol=k, size=0.9,
                               suptitle=f"{ds}, {NAMES[run.S['headline_method']]} gray data (one image per class) of: "
                                        + " | ".join(show)))
    return stack_figures(figs)


def class_heatmap(run: Run):
    """The rule-based score per class of every model of the decision experiment."""
    import matplotlib.pyplot as plt
    sub, ds_list = run.rb, run.S["datasets"]
    fig, axes = plt.subplots(1, len(ds_list), figsize=(5.5 * len(ds_list), 0.28 * len(sub) / len(ds_list) + 1.6),
                             squeeze=False)
    for ax, ds in zip(axes[0], ds_list):
        d = sub[sub.dataset == ds]
        ax.imshow(np.array(list(d.per_class)), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_yticks(range(len(d)), list(d.production), fontsize=8)
        ax.set_xlabel("class")
        ax.set_title(f"{ds}: rule-based score per class ({NAMES[run.S['decision_method']]})", fontsize=9)
    fig.tight_layout()
    return fig


def alpha_knobs(run: Run, alphas=(0.001, 0.01, 0.05, 0.1, 0.2)) -> list:
    """Step 7 re-run on this run's scores at several significance levels α (no model retrained, no gray
    data regenerated): per dataset, a knob over α with the matrix of declared drift (rows: models,
    columns: attacks) and the false alarms and detections counted."""
    import matplotlib.pyplot as plt
    S = run.S
    alphas = sorted(set(alphas) | {float(S["alpha"])})
    by = {a: (lambda f: f[f.method == S["decision_method"]])(frame(add_decisions(run.scores, {**S, "alpha": a})))
          for a in alphas}
    knobs = []
    for ds in S["datasets"]:
        pngs, htmls = [], []
        for a, f in by.items():
            d = f[f.dataset == ds]
            m = d.pivot_table(index="production", columns="attack", values="drift", aggfunc="max", sort=False).astype(float)
            fig, ax = plt.subplots(figsize=(1.6 + 1.5 * m.shape[1], 0.7 + 0.24 * m.shape[0]))
            ax.imshow(m.values, vmin=0, vmax=1, cmap="RdYlGn_r", aspect="auto")
            ax.grid(False)
            ax.set_yticks(range(m.shape[0]), list(m.index), fontsize=7)
            ax.set_xticks(range(m.shape[1]), [c.replace(", ", ",\n") for c in m.columns], fontsize=7)
            ax.set_title(f"{ds}: declared drift (red) at α = {a:g}", fontsize=9)
            pngs.append(fig_png(fig))
            ctrl, dr = d[d.kind == "none"], d[d.kind != "none"]
            flag = sorted({f"{p} {list(fl)}" for p, fl, x in zip(dr.production, dr.flagged, dr.drift) if x and len(fl)})
            htmls.append(f"<b>α = {a:g}</b> (model × attack pairs): false alarms (controls declared drifted) "
                         f"<b>{int(ctrl.drift.sum())} of {len(ctrl)}</b>; drifted models detected "
                         f"<b>{int(dr.drift.sum())} of {len(dr)}</b>" + (f"; flagged classes: {'; '.join(flag[:6])}" if flag else ""))
        knobs.append(PanelKnob(f"{ds}: α", [f"{a:g}" for a in alphas], pngs, htmls, start=alphas.index(float(S["alpha"]))))
    return knobs
