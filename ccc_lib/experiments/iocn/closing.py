"""The glue of chapter 3's later sections (the notebook's cells call these): the INNs' step cost, the study's
setting run as a labelled row, chapter 1's counterfeits scored by the one-class detectors, and the claims
declared at the end."""
from __future__ import annotations

import numpy as np
import torch

from ...cache import fingerprint
from ...metrics import ood_metrics
from ...profiles import Profile, get_profile
from . import inputs
from .settings import PAPER_TABLE1_MEAN
from .table1 import NORM_ROW, LazyBaseline, OneVsRest, one_vs_rest


def step_cost(results: dict) -> tuple:
    """Per block and INN: its seconds per training step (mean over classes) and whether this run measured it or
    read it from the cache. Returns ``(table, IOCN ÷ FLOW per block, the sources in words)``."""
    import pandas as pd
    rows = []
    for kind, res in results.items():
        for m in ("IOCN", "FLOW"):
            cached = res.from_cache[m]
            n = sum(cached.values())
            rows.append({"block": kind, "method": m,
                         "seconds per step (mean over classes)": float(np.mean(list(res.seconds_per_step[m].values()))),
                         "measured": ("this run" if n == 0 else "from cache (recorded when trained)" if n == len(cached)
                                      else f"{n} of {len(cached)} classes from cache")})
    cost = pd.DataFrame(rows).set_index(["block", "method"])
    col = "seconds per step (mean over classes)"
    ratio = {k: cost.loc[(k, "IOCN"), col] / cost.loc[(k, "FLOW"), col] for k in results}
    return cost, ratio, ", ".join(sorted(set(cost["measured"])))


def study_setting(choice, results: dict, main: str, S: dict, profile: str | Profile | None, seed: int, C) -> tuple:
    """Run the study's chosen configuration (:func:`~.study.study_choice`) on every inlier class of the headline
    block as a labelled, oracle setting (both INNs alike), declare its claim and return ``(table, text)``."""
    import pandas as pd
    if choice is None:
        return pd.DataFrame(), None
    S_study = {**S, **choice.overrides}
    head = results[main]
    res = one_vs_rest(head.feature_kind, S_study, get_profile(profile), head.inputs, methods=["FLOW", "IOCN"], seed=seed)
    lab = f"{choice.axis} = {choice.value}"
    rows = pd.DataFrame({"the chapter's settings": {m: head.mean_auroc()[m] for m in ("FLOW", "IOCN")},
                         f"the study's setting ({lab}; chosen on test data: oracle)": res.mean_auroc()}).T
    rows["IOCN − FLOW"] = rows["IOCN"] - rows["FLOW"]
    gap = float(rows["IOCN − FLOW"].iloc[1])
    C.check("iocn_ge_flow_study_setting", f"IOCN − FLOW, mean AUROC points, at the study's setting {lab} "
            "(oracle: chosen on test data, both INNs alike; learned features, the paper's inputs)", round(100 * gap, 2),
            ">=", 0.0, bound_from="ours", assert_at=())
    mi, mh = res.mean_auroc(), head.mean_auroc()
    text = (f"The study's best such configuration, **{lab}** (IOCN − FLOW {choice.iocn_minus_flow:+.4f} on its classes, "
            f"{choice.seconds_ratio:.2f}× the training time), run here on all {len(S_study['classes'])} inlier classes of the "
            f"headline block as a labelled setting — an *oracle* one, since the study reads test AUROCs; both INNs get it "
            f"alike: IOCN {mi['IOCN']:.4f} against FLOW {mi['FLOW']:.4f}, so the IOCN is "
            + ("at least as good as" if gap >= 0 else "**worse** than") + " the FLOW there on all classes "
            f"(at the chapter's settings: IOCN {mh['IOCN']:.4f}, FLOW {mh['FLOW']:.4f})."
            + (" The IOCN at this setting stays below the FLOW at the chapter's settings: it gains on the FLOW only where "
               "the FLOW drops more." if mi["IOCN"] < mh["FLOW"] else ""))
    return rows, text


def score_counterfeits(res: OneVsRest, x: torch.Tensor, labels, profile: str | Profile | None = None,
                       alpha: float = 0.05):
    """Score images that claim a class — chapter 1's counterfeits, with the class the classifier gave them —
    by the one-class detectors of that class: the counterfeits labelled ``c`` go through the same encoder and
    class-``c`` map as the test set and are scored by every method fitted on class ``c`` (the deepOD rows, whose
    fitted models are not kept, and the norm-only row are left out). Returns one row per (method, class): the
    number of counterfeits, the AUROC of class ``c``'s test inliers vs those counterfeits, the share flagged at
    the threshold that flags ``alpha`` of the test inliers, and for the IOCN the share outside the cube
    (``s > 0``), for the counterfeits and for the test inliers."""
    import pandas as pd
    labels = np.asarray(labels)
    feats = inputs.encode_images(res.feature_kind, x, profile)
    rows, kept = [], {}
    for c, pca in res.pca.items():
        m_c = labels == c
        if not m_c.any():
            continue
        z = pca.transform(feats[m_c]).astype(np.float32)
        z_key = {"images": fingerprint(torch.as_tensor(x)[torch.as_tensor(m_c)]), "kind": res.feature_kind,
                 "inputs": res.inputs}
        for m, dets in res.detectors.items():
            if dets.get(c) is None:
                continue
            det = dets[c]
            sc = det.score(z, x_key=z_key) if isinstance(det, LazyBaseline) else det.score(z)
            s_in = res.scores[m][c][res.y_test == c]
            kept.setdefault(m, {})[c] = np.asarray(sc, dtype=np.float64)
            row = {"method": m, "class": res.class_names[c], "counterfeits": int(m_c.sum()),
                   "AUROC (test inliers vs counterfeits)": ood_metrics(s_in, sc)["auroc"],
                   f"flagged at {alpha:.0%} false alarms": float((sc > np.quantile(s_in, 1 - alpha)).mean())}
            if m == "IOCN":
                row["outside the cube: counterfeits"] = float((sc > 0).mean())
                row["outside the cube: test inliers"] = float((s_in > 0).mean())
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["counterfeit_scores"], out.attrs["labels"] = kept, labels      # for the mean's interval
    return out


def counterfeit_auroc_ci(res: OneVsRest, table, level: float = 0.95, min_per_side: int = 10) -> dict:
    """Per method of :func:`score_counterfeits`' ``table``: the mean over claimed classes of the AUROC (class c's
    test inliers against the counterfeits claiming c) with :func:`ccc_lib.stats.class_mean_ci`'s interval over
    the pool of test images and counterfeits (classes with at least ``min_per_side`` of each only). Returns
    ``{method: Interval}`` (methods with no such class left out)."""
    from ...stats import class_mean_ci
    kept, labels = table.attrs.get("counterfeit_scores", {}), table.attrs.get("labels")
    out = {}
    if labels is None:
        return out
    n_test = len(res.y_test)
    y = np.r_[res.y_test, np.full(len(labels), -1)]
    for m, per in kept.items():
        classes = [c for c in per if (labels == c).sum() >= min_per_side and (res.y_test == c).sum() >= min_per_side]
        if not classes:
            continue
        scores, outl = {}, {}
        for c in classes:
            fill = np.zeros(len(labels))
            fill[labels == c] = per[c]
            scores[c] = np.r_[res.scores[m][c], fill]
            outl[c] = np.r_[np.zeros(n_test, bool), labels == c]
        out[m] = class_mean_ci(scores, y, classes=classes, outliers=outl, level=level)
    return out


def _plain(t):
    """``t`` without its attrs (a shallow copy)."""
    t = t.copy(deep=False)
    t.attrs = {}
    return t


def counterfeits(results: dict, dataset: str, S: dict, profile: str | Profile | None, seed: int = 0) -> dict:
    """Chapter 1's cached counterfeits of ``dataset``'s classifier scored by every block's one-class detectors.
    Returns ``{"fakes", "tables" ({block: per-class table}), "per_method", "cube"}``; ``fakes`` is None (and the
    tables empty) where chapter 1 has not run at a cheap profile; at ``default`` and ``full`` that is an error."""
    import pandas as pd
    from ... import counterfeits as cf
    from ...cache import NotCached
    from ...train import get_classifier
    P = get_profile(profile)
    alpha = S["alpha"]
    out = {"fakes": None, "tables": {}, "per_method": pd.DataFrame(), "cube": pd.DataFrame(), "note": ""}
    classifier, _ = get_classifier(dataset, P)
    try:
        fakes = cf.confident_counterfeits(classifier, dataset, P, cf.settings(P)["n_per_class"], seed=seed)
    except NotCached as exc:
        if P.name in ("default", "full"):
            raise RuntimeError(f"chapter 1's generator for {dataset} is not in the cache at profile {P.name!r}: "
                               f"run chapter 1 first (python -m ccc_lib run 1 --profile {P.name}) ({exc})") from exc
        out["note"] = (f"*** SECTION NOT RUN: chapter 1 has not run at profile {P.name!r}, so its counterfeits are not in "
                       f"the cache ({exc}). At default/full this is an error. ***")
        return out
    ci = {}
    for kind, res in results.items():
        t = score_counterfeits(res, fakes["x"], fakes["y"].numpy(), P, alpha=alpha)
        if len(t):
            out["tables"][kind] = t
            ci[kind] = counterfeit_auroc_ci(res, t)
    if not out["tables"]:
        if P.name in ("default", "full"):
            raise RuntimeError("no counterfeit claims one of this profile's inlier classes")
        out["note"] = f"*** SECTION NOT RUN: none of the counterfeits claims one of the inlier classes {S['classes']} ***"
        return out
    flag = f"flagged at {alpha:.0%} false alarms"
    # the tables carry their scores in attrs (arrays: pandas cannot compare them when it concatenates), so the
    # summary is built from plain copies
    out["per_method"] = pd.concat({kind: _plain(t).groupby("method", sort=False).apply(
        lambda g: pd.Series({"counterfeits": int(g["counterfeits"].sum()),
                             "mean AUROC over classes": g["AUROC (test inliers vs counterfeits)"].mean(),
                             flag: np.average(g[flag], weights=g["counterfeits"])}),
        include_groups=False) for kind, t in out["tables"].items()}, names=["features", "method"]).astype({"counterfeits": int})
    iv = [ci.get(k, {}).get(m) for k, m in out["per_method"].index]
    out["per_method"]["AUROC interval (95 %)"] = [None if v is None else f"[{v.lo:.3f}, {v.hi:.3f}]" for v in iv]
    out["per_method"].attrs["intervals"] = {km: v for km, v in zip(out["per_method"].index, iv) if v is not None}
    out["cube"] = pd.DataFrame({kind: {
        "counterfeits outside the cube": np.average(t.loc[t["method"] == "IOCN", "outside the cube: counterfeits"],
                                                    weights=t.loc[t["method"] == "IOCN", "counterfeits"]),
        "test inliers outside the cube": t.loc[t["method"] == "IOCN", "outside the cube: test inliers"].mean()}
        for kind, t in out["tables"].items()}).T
    out["fakes"] = fakes
    out["note"] = (f"{dataset} classifier: {len(fakes['x'])} of {fakes['n_sampled']} counterfeits with confidence ≥ 0.99 "
                   f"(generator from the cache)")
    return out


def declare_claims(C, results: dict, summary, inside, cube, cube_rule, main: str, B: dict, S: dict, ablation, hole) -> None:
    """The chapter's claims besides the comparisons (:func:`~.chapter.declare_verdicts`): the INNs' mean AUROC and
    the norm-only row's per block (shown), the cube's claims (asserted at default and full), invertibility, the
    stop-gradient collapse, the hole, the paper's rule's false alarms and the counterfeits outside the cube."""
    from .chapter import block_tag
    for kind, res in results.items():
        tag = block_tag(res, S)
        C.report(f"iocn_auroc_{kind}", f"IOCN mean AUROC ×100 ({tag})", round(100 * summary.loc[kind, "IOCN"], 1),
                 paper=PAPER_TABLE1_MEAN["IOCN"])
        C.report(f"flow_auroc_{kind}", f"FLOW mean AUROC ×100 ({tag})", round(100 * summary.loc[kind, "FLOW"], 1),
                 paper=PAPER_TABLE1_MEAN["FLOW"])
        C.report(f"norm_auroc_{kind}", f"norm-only row mean AUROC ×100 ({tag})", round(100 * summary.loc[kind, NORM_ROW], 1))
        C.check(f"inside_train_{kind}", f"share of training inliers inside the cube ({tag})",
                float(inside.loc[kind, "training inliers inside"]), ">=", B["inside_train"])
        C.check(f"inside_in_gt_out_{kind}", f"test inliers inside minus test outliers inside ({tag})",
                float(inside.loc[kind, "test inliers inside"] - inside.loc[kind, "test outliers inside"]), ">", 0.0)
    C.check("recon", "INN reconstruction error, max over all points", float(inside["max reconstruction error"].max()),
            "<=", B["recon"], paper="exact inverse")
    with_sg, without_sg = ablation
    C.check("stopgrad_collapse", "without the stop-gradient: median code size / with it (collapse < 0.5)",
            without_sg.code_size / with_sg.code_size if not without_sg.diverged else 0.0, "<", 0.5,
            paper="collapse (Theorem 3.1)", assert_at=())
    C.check("hole_inside", "annulus: share of points in the hole mapped inside the cube (simply connected)",
            hole.inside_hole, ">", hole.inside_far, paper="the inlier region is simply connected", assert_at=())
    C.report("cube_rule_false_alarms", "paper's rule (outside the cube): false alarms on held-out inliers (learned "
             "features, the paper's inputs)", round(float(cube_rule.loc[main, "false alarms (held-out inliers)"]), 4))
    for kind in cube.index:
        C.check(f"cf_outside_{kind}", f"chapter 1's counterfeits outside the claimed class's cube minus its test inliers "
                f"outside ({kind})", float(cube.loc[kind, "counterfeits outside the cube"]
                                          - cube.loc[kind, "test inliers outside the cube"]), ">", 0.0, assert_at=())



def finish(C, *, results, runs, verdicts, summary, rates, conf, ablation, hole, budgets, inside, cost, dtab, goad_tab,
           S: dict, cfs: dict, counterfeit_rows: list, seconds: float):
    """``C.finish`` with the chapter's metrics (what the report and a reader of the metrics file need)."""
    import pandas as pd
    from ...baselines import deepod_version
    from .chapter import norm_table
    from .deep_baselines import deepod_budget
    fakes, per_method, cube = cfs["fakes"], cfs["per_method"], cfs["cube"]
    budget = {k: (v if not isinstance(v, dict) else {m: list(c) for m, c in v.items()}) for k, v in deepod_budget(S).items()}
    return C.finish(
        counterfeit_rows=counterfeit_rows,
        one_vs_rest_auroc={k: pd.DataFrame(r.auroc).to_dict() for k, r in results.items()},
        mean_auroc=summary.to_dict("index"),
        decision_rates=rates.reset_index().to_dict("records"),
        confusion_auroc_iocn=conf.to_dict(),
        stopgrad_ablation=[dict(vars(r)) for r in ablation],
        hole={"inside_train": hole.inside_train, "inside_hole": hole.inside_hole, "inside_far": hole.inside_far,
              "auroc_ring_vs_hole": hole.auroc_hole},
        budget={k: b.to_dict("records") for k, b in budgets.items()},
        inside_and_reconstruction=inside.to_dict("index"),
        seconds_per_step=cost.reset_index().to_dict("records"),
        verdicts={k: {"flow": v["flow"][0].to_dict(), "every": v["every"].to_dict(),
                      "match": None if v["match"] is None else {"interval": v["match"][0].to_dict(),
                                                                 "classes": list(v["match"][1])}}
                  for k, v in verdicts.items()},
        verdict_seeds={k: list(r) for k, r in runs.items()},
        deepod={"methods": list(S["deepod"]), **budget, "feature_sets": list(S["deepod_feature_sets"]),
                "version": deepod_version(), "training": dtab.reset_index().to_dict("records") if len(dtab) else [],
                "history": {k: {m: {str(c): v["history"] for c, v in per.items()} for m, per in r.deepod.items()}
                            for k, r in results.items()},
                "goad": goad_tab.reset_index().to_dict("records") if len(goad_tab) else []},
        norm_only=norm_table(results).to_dict(),
        counterfeits={"dataset": S["dataset"], "alpha": S["alpha"], "n": 0 if fakes is None else len(fakes["x"]),
                      "per_method": per_method.reset_index().to_dict("records") if len(per_method) else [],
                      "iocn_cube": cube.to_dict("index")},
        notebook_seconds=seconds,
    )
