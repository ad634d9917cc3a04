"""The glue of chapter 3's notebook: the runs it makes (:func:`run_table1`, :func:`seed_runs`), the claims it
declares from them (:func:`declare_verdicts`) and the sentences it glues (built from the run's numbers and the
Claims' verdicts, never typed), so that the notebook's cells stay short."""
from __future__ import annotations

import numpy as np

from ...profiles import Profile, get_profile
from . import deep_baselines as D
from . import verdicts as V
from .settings import INPUT_LABELS, PAPER_TABLE1_MEAN, block_name, blocks
from .table1 import GOAD_PATCHED, NORM_ROW, auroc_table, one_vs_rest

#: words for a block's place in the chapter (claims' texts: only the headline's says "learned features", which
#: the intro's findings table prefers)
def block_tag(res, S: dict) -> str:
    head = res.inputs == S["inputs"][0]
    kind = "learned features" if res.feature_kind == S["feature_sets"][0] else res.feature_kind
    if head:
        return f"{kind}, {INPUT_LABELS[res.inputs]}"
    return f"{'CNN features' if kind == 'learned features' else kind}, {INPUT_LABELS[res.inputs]}"


def iv_text(iv) -> str:
    """An interval as the prose shows it, with "(one model)" where it rests on one trained model."""
    return str(iv) + (f" ({iv.label})" if getattr(iv, "one_model", False) else "")


def run_table1(S: dict, profile: str | Profile | None = None, seed: int = 0) -> dict:
    """Every block of Table 1 (:func:`~.settings.blocks`: feature kind × input setting, the headline first):
    ``{block name: OneVsRest}``."""
    P = get_profile(profile)
    return {block_name(k, i): one_vs_rest(k, S, P, i, seed=seed) for k, i in blocks(S)}


def seed_runs(results: dict, S: dict, profile: str | Profile | None = None, seed: int = 0) -> dict:
    """The IOCN's and FLOW's further seeds on the learned features: ``S["verdict_seeds"]`` on the headline inputs,
    ``S["variant_seeds"]`` on the others (each seed also redraws the training images and the input map);
    other blocks one seed. Returns ``{block: {seed: OneVsRest}}`` (the given seed's run is ``results``')."""
    P = get_profile(profile)
    out = {}
    for name, res in results.items():
        seeds = ((S["verdict_seeds"] if res.inputs == S["inputs"][0] else S["variant_seeds"])
                 if res.feature_kind == S["feature_sets"][0] else (seed,))
        out[name] = {seed: res, **{s: one_vs_rest(res.feature_kind, S, P, res.inputs, methods=["FLOW", "IOCN"], seed=s)
                                   for s in seeds if s != seed}}
    return out


def table1(results: dict) -> "object":
    """Table 1 (×100) with the paper's mean beside (CIFAR-10, MoCo)."""
    t = auroc_table(results)
    t["paper (mean, CIFAR-10, MoCo)"] = [PAPER_TABLE1_MEAN.get(m, np.nan) for _, m in t.index]
    return t


def declare_verdicts(C, results: dict, runs: dict, S: dict) -> dict:
    """Declare, per block, the claims the chapter's verdicts are: the IOCN against the FLOW (``iocn_vs_flow_*``,
    over the INNs' seeds), against every baseline (``iocn_vs_best_*``: each on the classes it ran, Holm), and the
    paper's "matches SLAD" as equivalence (``iocn_matches_best_*``: 90 % interval inside ±δ, δ from the
    settings). Returns ``{block: {"flow": (Interval, per-seed, per-class), "every": VersusEvery, "match":
    (Interval, classes), "ref": name}}``."""
    out = {}
    paper_flow = round((PAPER_TABLE1_MEAN["IOCN"] - PAPER_TABLE1_MEAN["FLOW"]) / 100, 3)
    ref = S["match_reference"]
    for name, res in results.items():
        rr, tag = runs[name], block_tag(res, S)
        flow = V.diff_over_seeds(rr, "IOCN", "FLOW")
        C.compare(f"iocn_vs_flow_{name}", f"IOCN − FLOW, mean AUROC over classes ({tag}; {len(rr)} seed(s))", flow[0],
                  paper=paper_flow)
        every = V.versus_baselines(rr, res)
        C.compare_every(f"iocn_vs_best_{name}", f"IOCN − each of {len(every.rows)} baselines, mean AUROC over the classes "
                        f"each ran ({tag}; IOCN {len(rr)} seed(s), baselines one model)", every)
        entry = {"flow": flow, "every": every, "ref": ref, "match": None}
        if ref in res.auroc and res.auroc[ref]:
            iv, classes = V.match_interval(rr, res, ref)
            C.matches(f"iocn_matches_best_{name}", f"IOCN matches {ref} (the row the paper matched), mean AUROC over "
                      f"classes {', '.join(map(str, classes))} ({tag}; IOCN {len(rr)} seed(s), {ref} one model)", iv,
                      settings=S, margin_key="match_margin", paper=round((PAPER_TABLE1_MEAN['IOCN'] - PAPER_TABLE1_MEAN[ref]) / 100, 3))
            entry["match"] = (iv, classes)
        out[name] = entry
    return out


def verdict_table(V_: dict, C) -> "object":
    """Per block: each verdict with its interval (the claims' words)."""
    import pandas as pd
    rows = []
    for name, v in V_.items():
        rows.append({"block": name, "comparison": "IOCN − FLOW", "interval (95 %)": iv_text(v["flow"][0]),
                     "verdict": C[f"iocn_vs_flow_{name}"].verdict})
        rows.append({"block": name, "comparison": f"IOCN − each baseline (closest: {v['every'].closest})",
                     "interval (95 %)": iv_text(v["every"].summary), "verdict": C[f"iocn_vs_best_{name}"].verdict})
        if v["match"] is not None:
            rows.append({"block": name, "comparison": f"IOCN ≈ {v['ref']} (±{C[f'iocn_matches_best_{name}'].margin:g})",
                         "interval (95 %)": f"{iv_text(v['match'][0])} (90 %)", "verdict": C[f"iocn_matches_best_{name}"].verdict})
    return pd.DataFrame(rows).set_index(["block", "comparison"])


def every_table(V_: dict) -> "object":
    """Per block and baseline: IOCN − that baseline with its interval, p and Holm's p."""
    import pandas as pd
    return pd.concat({name: v["every"].table() for name, v in V_.items()}, names=["block"])


def norm_table(results: dict) -> "object":
    """Per block: the norm-only row's mean AUROC and, per row, its mean AUROC minus the norm-only row's on the
    same classes (point estimates, ×100)."""
    import pandas as pd
    rows = {}
    for name, res in results.items():
        n = res.auroc[NORM_ROW]
        rows[name] = {m: 100 * float(np.mean([res.auroc[m][c] - n[c] for c in res.auroc[m]]))
                      for m in res.methods if m != NORM_ROW and res.auroc.get(m)}
        rows[name] = {f"{NORM_ROW}: mean AUROC ×100": 100 * float(np.mean(list(n.values()))), **rows[name]}
    return pd.DataFrame(rows)


def norm_text(results: dict, S: dict) -> str:
    """What the norm alone does, per block, in words."""
    parts = []
    for name, res in results.items():
        n = 100 * float(np.mean(list(res.auroc[NORM_ROW].values())))
        below = [m for m in res.methods if m != NORM_ROW and res.auroc.get(m)
                 and np.mean([res.auroc[m][c] - res.auroc[NORM_ROW][c] for c in res.auroc[m]]) < 0]
        parts.append(f"on {INPUT_LABELS[res.inputs]} the norm alone reaches a mean AUROC of {n:.1f}"
                     + (f", and {len(below)} row(s) score below it on their classes ({', '.join(below)})" if below else
                        ", and every row scores above it on its classes"))
    return "; ".join(parts) + "."


def training_text(results: dict, S: dict) -> str:
    """The deep rows' training evidence in words: where they stopped, and how DeepSVDD's probe AUROC moved between
    its first and last check while its loss was near zero (the largest change over its classes), from the run."""
    b = D.deepod_budget(S)
    parts, moves = [], []
    for name, res in results.items():
        for m, per in res.deepod.items():
            h = [v["history"] for v in per.values()]
            settled = [x["epochs"] for x in h if x.get("stopped_early")]
            parts.append(f"{m} ({INPUT_LABELS[res.inputs]}): {len(settled)} of {len(h)} class(es) settled before the cap"
                         + (f" (at epoch {', '.join(map(str, settled))})" if settled else ""))
            if m.startswith("DeepSVDD"):
                for c, v in per.items():
                    mon = [r for r in v["history"].get("monitor", []) if np.isfinite(r.get("probe_auroc", np.nan))]
                    if len(mon) >= 2:
                        moves.append((abs(mon[-1]["probe_auroc"] - mon[0]["probe_auroc"]), res.class_names[c], res.inputs,
                                      mon[0], mon[-1], v["history"]["loss"][-1]))
    text = (f"Checked every {b['every']} epochs (a row stops when Spearman's ρ with the previous check is ≥ "
            f"{b['settle']:g}): " + "; ".join(parts) + ".")
    if moves:
        d, cls, inp, first, last, loss = max(moves, key=lambda t: t[0])
        text += (f" DeepSVDD's probe AUROC (held-out inliers against other classes' training images) moves by up to "
                 f"{d:.3f} between its first and last check ({cls}, {INPUT_LABELS[inp]}: {first['probe_auroc']:.3f} at "
                 f"epoch {first['epoch']}, {last['probe_auroc']:.3f} at epoch {last['epoch']}; last loss {loss:.2g}): a "
                 "rule that stopped it at its first small change would report a DeepSVDD that deepOD's default epochs "
                 "do not give" + (" — the reason the threshold is strict." if d > 0.01 else
                                  "; at this profile the change is small."))
    return text


def goad_text(gt, S: dict) -> str:
    """GOAD explained, in words, from :func:`~.deep_baselines.goad_table` (per block and row: AUROC, the scaling
    test, the correlation of its score with the input's norm, its last loss against chance)."""
    if gt is None or not len(gt):
        return "GOAD did not run at this profile."
    parts = []
    for (block, row, cls), r in gt.iterrows():
        sc = [c for c in r.index if c.startswith("mean score ×")]
        parts.append(f"{row} on {INPUT_LABELS.get(block.rsplit('_', 1)[-1], block)}, {cls}: AUROC {r['AUROC']:.3f}, "
                     f"corr(score, ‖x‖) {r['corr(score, ‖x‖)']:+.2f}, mean score of the test inliers scaled "
                     + " / ".join(f"×{c.split('×')[1]}: {r[c]:.4g}" for c in sc)
                     + f", last loss {r['last loss ÷ chance']:.3f}× chance ({r['stopped']})")
    return "; ".join(parts) + "."


def _classes(cl) -> str:
    return ", ".join(map(str, cl))


def deepod_note(S: dict) -> str:
    """The deepOD rows' budget and classes at this profile, in words."""
    b = D.deepod_budget(S)
    sub = {m: cl for m, cl in b["classes"].items() if m in S.get("deepod", ())}
    note = (f"deepOD's defaults with its {b['cap']} epochs as the cap, a check every {b['every']} epochs"
            + (f"; at this profile {'; '.join(f'{m} on class(es) {_classes(cl)}' for m, cl in sub.items())}" if sub else
               "; every inlier class")
            + (f" (on our variant's inputs class(es) {_classes(S['variant_deepod_classes'])} only)"
               if S.get("variant_deepod_classes") is not None else "")
            + f"; on the {', '.join(S['deepod_feature_sets'])} block only")
    missing = [m for m in PAPER_TABLE1_MEAN if m.endswith("(deepOD)") and m[:-9] not in S.get("deepod", ())]
    if missing:
        note += f"; {', '.join(missing)} not run at this profile"
    return "(" + note + ")"




def setup_text(S: dict, profile: str | Profile | None = None) -> str:
    """What this profile runs, in words built from the settings (the chapter's *Setup*)."""
    from ...train import profile_data
    P = get_profile(profile)
    test = profile_data(S["dataset"], "test", P)
    shape = tuple(test.shape)
    names = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
    ds = names.get(S["dataset"], S["dataset"])
    n_train = "all" if S["n_train"] is None else f"{S['n_train']:,}"
    words = {"cnn_mnist5k": "the 256 penultimate features of the papers' CNN trained on MNIST-5k digits (chapter 0's "
                            f"classifier: it never saw a {ds} image or label)",
             "resnet18_imagenet": "the 512 pooled features of an ImageNet-pretrained ResNet-18 (our stand-in for the paper's "
                                  "MoCo; it never saw a CIFAR-10 label)" + (" — **with random weights in this dry run**" if P.dry_run else ""),
             "pixels": f"the raw pixels ({int(np.prod(shape)):,} values per image)"}
    return (f"This run (profile `{P.name}`) uses **{ds}** with {len(S['classes'])} inlier classes, {n_train} training "
            f"images per class and the whole test set ({len(test):,} images). Features: "
            + "; ".join(words[k] for k in S["feature_sets"]) + ". "
            f"Two input settings for every row: **the paper's** — the features on the unit hypersphere, reduced to "
            f"{S['feature_dim']} dimensions by a truncated SVD fitted on the inlier class's training images and put back "
            f"on the sphere, plus Gaussian noise of std {S['sphere_noise']:g} — the headline; and **our variant** — a PCA "
            f"to {S['feature_dim']} dimensions and a per-feature z-score fitted on the inlier class. "
            f"The INNs have {S['n_blocks']} blocks and train for {S['steps']} steps (batch {S['batch_size']}). "
            + ("The paper's protocol differs: 128-d MoCo features (not available offline), CIFAR-10. " if P.scale != "full" else
               "This is the paper's dataset, but not exactly its protocol: ResNet-18 instead of MoCo features. ")
            + ("This is a smoke test: its numbers only show that the pipeline works." if P.scale == "smoke" else "")
            + ("DRY RUN on generated files: its numbers are not results." if P.dry_run else ""))


def split_of(res, S: dict, profile: str | Profile | None, c: int, seed: int = 0):
    """The split of class ``c`` exactly as block ``res`` used it (its features, input setting, seed)."""
    from .inputs import fashion_features, one_class_split
    feats = fashion_features(res.feature_kind, get_profile(profile), dataset=S["dataset"], train_pool=S.get("train_pool"))
    return one_class_split(feats, c, S["feature_dim"], S["n_train"], seed=seed, inputs=res.inputs,
                           noise=S.get("sphere_noise", 0.0), n_probe=tuple(S.get("probe", (0, 0))))



def glue_conclusion(C, results: dict, verdicts: dict, summary, inside, S: dict, goad_tab) -> None:
    """Glue the conclusion's numbers and verdict words: ``ch3_head_*`` for the headline block, ``ch3_var_*`` for
    the learned features on our variant (the same words as the claims; "—" where a block did not run)."""
    from ...report import glue
    from IPython.display import Markdown
    names = list(results)
    head = names[0]
    var = next((n for n in names if results[n].feature_kind == results[head].feature_kind and n != head), None)
    glue("ch3_match_ref", Markdown(S["match_reference"]))
    glue("ch3_match_margin", float(S["match_margin"]))
    glue("ch3_learned_inside_train", float(inside.loc[head, "training inliers inside"]))
    for tag, name in (("head", head), ("var", var)):
        v = verdicts.get(name)
        if v is None:
            for w in ("verdict_flow", "diff_flow", "verdict_every", "diff_every", "verdict_match", "diff_match"):
                glue(f"ch3_{tag}_{w}", "—")
            glue(f"ch3_{tag}_closest", Markdown("—"))
            for m in ("IOCN", "FLOW", "norm"):
                glue(f"ch3_{tag}_{m}", float("nan"))
            continue
        C.glue_verdict(f"ch3_{tag}_verdict_flow", f"iocn_vs_flow_{name}")
        C.glue_verdict(f"ch3_{tag}_verdict_every", f"iocn_vs_best_{name}")
        glue(f"ch3_{tag}_diff_flow", iv_text(v["flow"][0]))
        glue(f"ch3_{tag}_diff_every", iv_text(v["every"].summary))
        glue(f"ch3_{tag}_closest", Markdown(v["every"].closest))
        if v["match"] is not None:
            C.glue_verdict(f"ch3_{tag}_verdict_match", f"iocn_matches_best_{name}")
            glue(f"ch3_{tag}_diff_match", iv_text(v["match"][0]))
        else:
            glue(f"ch3_{tag}_verdict_match", f"not run ({S['match_reference']} did not run)")
            glue(f"ch3_{tag}_diff_match", "—")
        for m, col in (("IOCN", "IOCN"), ("FLOW", "FLOW"), ("norm", NORM_ROW)):
            glue(f"ch3_{tag}_{m}", float(summary.loc[name, col]))
    glue("ch3_goad_summary", Markdown(goad_summary(goad_tab)))
    for tag, name in (("head", head), ("var", var)):
        g = results[name].auroc.get("GOAD (deepOD)", {}) if name else {}
        glue(f"ch3_goad_{tag}", 100 * float(np.mean(list(g.values()))) if g else float("nan"))
        glue(f"ch3_goad_{tag}_classes", Markdown(", ".join(results[name].class_names[c] for c in g) if g else "—"))


def goad_summary(gt) -> str:
    """One sentence on GOAD's rows, per input setting: its AUROC, its last loss against chance (ln of its
    transformations) and the correlation of its score with ‖x‖; where the loss stayed within 5 % of chance, says so."""
    if gt is None or not len(gt):
        return "GOAD did not run at this profile."
    parts = []
    for (block, row, cls), r in gt.iterrows():
        stuck = r["last loss ÷ chance"] > 0.95
        parts.append(f"{row} on {INPUT_LABELS.get(block.rsplit('_', 1)[-1], block)} ({cls}): AUROC {r['AUROC']:.3f}, last "
                     f"loss {r['last loss ÷ chance']:.3f}× chance" + (" — it does not learn to tell its transformations "
                                                                     "apart on these inputs" if stuck else "")
                     + f", corr(score, ‖x‖) {r['corr(score, ‖x‖)']:+.2f}")
    return "; ".join(parts) + " (the section on GOAD gives the scaling test)."


def counterfeit_text(cube, per_method, fakes, main: str, C) -> str:
    """The counterfeits' paragraph of the conclusion, from the run."""
    if not len(cube):
        return "Chapter 1's counterfeits were not in the cache at this profile, so this run did not score them."
    return (f"Of the {len(fakes['x']):,} counterfeits that chapter 1's generator makes and the classifier labels with "
            f"confidence ≥ 0.99, {cube.loc[main, 'counterfeits outside the cube']:.0%} land outside the cube of the class "
            f"the classifier claims for them (learned features, the paper's inputs), against "
            f"{cube.loc[main, 'test inliers outside the cube']:.0%} of that class's real test images; ranked by AUROC the "
            f"IOCN reaches {per_method.loc[(main, 'IOCN'), 'mean AUROC over classes']:.3f}, and the one-class methods in "
            f"the table lie between {per_method['mean AUROC over classes'].min():.3f} and "
            f"{per_method['mean AUROC over classes'].max():.3f}. The counterfeits "
            + ("are" if C.holds(f"cf_outside_{main}") else "are **not**")
            + " flagged more often than the class's own test images.")


def counterfeit_rows(per_method, dataset: str, main: str, alpha: float) -> list:
    """Chapter 3's rows of the report's counterfeit table (:class:`ccc_lib.report.CounterfeitRow` as dicts)."""
    from dataclasses import asdict
    from ...report import CounterfeitRow
    if not len(per_method):
        return []
    ivs = per_method.attrs.get("intervals", {})
    return [asdict(CounterfeitRow(classifier=dataset, chapter=3,
                                  detector=f"{m} ({'learned features' if kind == main else kind})",
                                  looks_at="one-class model", auroc=float(r["mean AUROC over classes"]),
                                  flagged_share=float(r[f"flagged at {alpha:.0%} false alarms"]),
                                  n_counterfeits=int(r["counterfeits"]), alpha=float(alpha),
                                  auroc_lo=None if (kind, m) not in ivs else float(ivs[(kind, m)].lo),
                                  auroc_hi=None if (kind, m) not in ivs else float(ivs[(kind, m)].hi)))
            for (kind, m), r in per_method.iterrows()]


__all__ = ["iv_text", "setup_text", "split_of", "block_tag", "run_table1", "seed_runs", "table1", "declare_verdicts", "verdict_table", "every_table",
           "norm_table", "norm_text", "training_text", "goad_text", "deepod_note", "glue_conclusion", "goad_summary",
           "counterfeit_text", "counterfeit_rows", "GOAD_PATCHED"]
