"""Chapter 3's deep baselines (deepOD's DeepSVDD, RCA, ICL, GOAD, SLAD at their defaults): the budget rule
(deepOD's 100 epochs as a cap, stopped once the scores have settled), the scores through the cache, the
evidence of training (loss per epoch, the settling check, where each row stopped) and what a row measures
(its score against the input's norm: the scaling test and the correlation)."""
from __future__ import annotations

import time

import numpy as np
import torch

from ...baselines import DeepODDetector, deepod_version
from ...cache import fingerprint, load_or_compute
from ...metrics import ood_metrics

#: the scaling test's rows: the test inliers (the inlier class's test images)
SCALE_ROWS = "test inliers"


def deepod_default(method: str, arg: str):
    """A default argument of a deepOD detector's constructor (e.g. its ``batch_size``)."""
    import inspect
    import deepod.models.tabular as tab
    return inspect.signature(getattr(tab, method).__init__).parameters[arg].default


def deepod_budget(S: dict) -> dict:
    """The deepOD rows' budget rule at these settings: deepOD's defaults, its ``epochs`` as the cap
    (``S["deepod_epochs"]``: 100, deepOD's default, at ``default`` and ``full``), a check every ``every``
    epochs that stops a row once its scores of the probe rows have settled (Spearman ρ between two checks
    ≥ ``settle``), and the classes each row runs on (``S["deepod_classes"]``: all unless listed)."""
    return {"cap": int(S["deepod_epochs"]), "every": int(S["deepod_every"]), "settle": float(S["deepod_settle"]),
            "classes": dict(S.get("deepod_classes") or {}), "init_patch_classes": tuple(S.get("goad_init_patch_classes", ()))}


def deepod_classes(method: str, S: dict, inputs: str | None = None) -> tuple:
    """The inlier classes deepOD row ``method`` (a name without " (deepOD)") runs on at these settings, on the
    input setting ``inputs`` (default: the headline): ``S["deepod_classes"]`` lists them per row where a profile
    restricts them; on the other input settings ``S["variant_deepod_classes"]`` (where set) restricts further."""
    cl = tuple(deepod_budget(S)["classes"].get(method, S["classes"]))
    var = S.get("variant_deepod_classes")
    if inputs is not None and inputs != S["inputs"][0] and var is not None:
        cl = tuple(c for c in cl if c in var)
    return cl


def settle_monitor(probe: np.ndarray, probe_is_out: np.ndarray, every: int, settle: float):
    """The deep rows' training check, for :class:`~ccc_lib.baselines.DeepODDetector`'s ``monitor``: every
    ``every`` epochs the probe rows (training-split rows: held-out inliers and other classes' rows) are
    scored; the training stops once Spearman's ρ between these scores and those of the previous check is
    ≥ ``settle`` (the ranking no longer changes). The probe AUROC (inliers vs the other classes' training
    rows) is recorded beside it — shown, never used to stop or to choose."""
    from scipy.stats import spearmanr
    prev = {}

    def monitor(epoch: int, score):
        if epoch % every:
            return None
        s = score(probe)
        rho = None if "s" not in prev or np.ptp(s) == 0 or np.ptp(prev["s"]) == 0 else float(spearmanr(prev["s"], s)[0])
        prev["s"] = s
        auc = (ood_metrics(s[probe_is_out == 0], s[probe_is_out == 1])["auroc"]
               if probe_is_out.min() == 0 and probe_is_out.max() == 1 else float("nan"))
        return {"rho": rho, "probe_auroc": float(auc), "stop": rho is not None and rho >= settle}
    return monitor


def deepod_scores(name: str, sp, S: dict, seed: int = 0, cache: bool = True, init_patch: bool = False, **kw) -> dict:
    """Fit deepOD row ``name`` ("<method> (deepOD)") on the split ``sp`` under :func:`deepod_budget`'s rule and
    score its test rows; through the tensor cache (keyed by the method, the rule, the fixes, the seed, deepOD's
    version and what the split is), so a warm rebuild does not retrain. Also records the scaling test: the
    mean score of the test inliers scaled by each factor of ``S["goad_scaling"]``. Returns ``{"scores",
    "history" (loss per epoch, epochs, steps, seconds, the checks), "fixes", "score_seconds", "scaling",
    "from_cache"}``. ``kw``: deepOD hyper-parameters other than its defaults (a labelled side row)."""
    method = name[:-len(" (deepOD)")]
    b = deepod_budget(S)
    if method == "GOAD" and S.get("goad_n_trans"):
        kw.setdefault("n_trans", int(S["goad_n_trans"]))
    factors = tuple(float(f) for f in S.get("goad_scaling", ()))
    key = {"v": 3, "method": name, "cap": b["cap"], "every": b["every"], "settle": b["settle"], "init_patch": bool(init_patch),
           "seed": seed, "deepod": deepod_version(), "data": sp.key, "scaling": list(factors),
           **({"kwargs": dict(sorted(kw.items()))} if kw else {})}
    inl = sp.is_out == 0

    def compute():
        mon = settle_monitor(sp.probe, sp.probe_is_out, b["every"], b["settle"])
        det = DeepODDetector(method, epochs=b["cap"], goad_init_patch=init_patch, monitor=mon, **kw).fit(sp.train, seed=seed)
        t0 = time.process_time()
        s = det.score(sp.test)
        score_s = time.process_time() - t0
        scaling = {str(f): float(np.mean(det.score(f * sp.test[inl]))) for f in factors}
        return {"scores": torch.as_tensor(np.asarray(s, dtype=np.float64)),
                "meta": {"history": det.history, "fixes": det.fixes, "score_seconds": score_s, "scaling": scaling}}
    out = load_or_compute("iocn-deepod-scores", key, compute) if cache else {**compute(), "from_cache": False}
    return {"scores": out["scores"].numpy(), **out["meta"], "from_cache": bool(out["from_cache"])}


def norm_evidence(scores: np.ndarray, x: np.ndarray, is_out: np.ndarray) -> dict:
    """What a row's score has to do with the input's norm, on the test rows: Spearman's ρ of score and ‖x‖, the
    inliers' and outliers' mean ‖x‖ and the AUROC of ‖x‖ alone."""
    from scipy.stats import spearmanr
    n = np.linalg.norm(x, axis=1)
    return {"corr(score, ‖x‖)": float(spearmanr(scores, n)[0]), "mean ‖x‖ inliers": float(n[is_out == 0].mean()),
            "mean ‖x‖ outliers": float(n[is_out == 1].mean()),
            "AUROC of ‖x‖": ood_metrics(n[is_out == 0], n[is_out == 1])["auroc"]}


def _stop_text(h: dict, cap: int) -> str:
    return (f"settled at {h['epochs']}" if h.get("stopped_early") else f"cap {cap}, not settled"
            if h["epochs"] >= cap else f"{h['epochs']}")


def deepod_training_table(results: dict, S: dict) -> "object":
    """Per block and deepOD row: the classes run, where the rows stopped (epochs: min–max over classes; settled
    by the check or at the cap), the gradient steps and training seconds per class (as recorded when trained),
    the last check's ρ, the first and last epoch's loss (GOAD's also ÷ chance, ln of its transformations),
    the fixes applied and the mean AUROC over its classes."""
    import pandas as pd
    rows = []
    cap = deepod_budget(S)["cap"]
    for block, res in results.items():
        for m, per in res.deepod.items():
            h = [v["history"] for v in per.values()]
            ep = [x["epochs"] for x in h]
            settled = sum(bool(x.get("stopped_early")) for x in h)
            rhos = [x["monitor"][-1].get("rho") for x in h if x.get("monitor")]
            row = {"block": block, "row": m, "classes": len(per),
                   "epochs (min–max)": f"{min(ep)}–{max(ep)}", "settled before the cap": f"{settled}/{len(per)}",
                   "steps per class": float(np.mean([x["steps"] for x in h])),
                   "train s per class": float(np.mean([x["train_seconds"] for x in h])),
                   "last check ρ (min)": float(np.nanmin([r for r in rhos if r is not None])) if any(r is not None for r in rhos) else float("nan"),
                   "loss, first epoch": float(np.mean([x["loss"][0] for x in h])),
                   "loss, last epoch": float(np.mean([x["loss"][-1] for x in h]))}
            if m.startswith("GOAD"):
                n_trans = S.get("goad_n_trans") or deepod_default("GOAD", "n_trans")
                row["last loss ÷ chance (ln n_trans)"] = row["loss, last epoch"] / float(np.log(n_trans))
            row["fixes"] = "; ".join(sorted({f.split(" (")[0] for v in per.values() for f in v["fixes"]})) or "none"
            row["mean AUROC"] = float(np.mean(list(res.auroc[m].values())))
            rows.append(row)
    return pd.DataFrame(rows).set_index(["block", "row"]) if rows else pd.DataFrame()


def plot_deepod_curves(res, axes, cap: int) -> None:
    """One panel per deepOD row of a block: its training loss per epoch, one line per inlier class, each divided
    by its first epoch's loss (so classes share a scale); a dot where a row stopped because its scores settled,
    the cap as a dotted line."""
    for ax, (m, per) in zip(np.ravel(axes), res.deepod.items()):
        for c, v in per.items():
            loss = np.asarray(v["history"]["loss"], dtype=float)
            if len(loss):
                line, = ax.plot(np.arange(1, len(loss) + 1), loss / loss[0], lw=1, label=res.class_names[c])
                if v["history"].get("stopped_early"):
                    ax.plot(len(loss), loss[-1] / loss[0], "o", color=line.get_color(), ms=4)
        ax.axvline(cap, color="k", ls=":", lw=0.8)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("epoch")
    np.ravel(axes)[0].set_ylabel("training loss / first epoch's")


def goad_table(results: dict, S: dict) -> "object":
    """GOAD explained: per block and GOAD row (with and without the initialisation patch) and class, the AUROC,
    where it stopped, its last loss ÷ chance, the scaling test (mean score of the test inliers scaled by each
    factor) and the score's relation to the input's norm (:func:`norm_evidence`)."""
    import pandas as pd
    rows = []
    n_trans = S.get("goad_n_trans") or deepod_default("GOAD", "n_trans")
    for block, res in results.items():
        for m, per in res.deepod.items():
            if not m.startswith("GOAD"):
                continue
            for c, v in per.items():
                h = v["history"]
                sp_x = res.inputs_test[c]
                row = {"block": block, "row": m, "class": res.class_names[c], "AUROC": res.auroc[m][c],
                       "epochs": h["epochs"], "stopped": _stop_text(h, deepod_budget(S)["cap"]),
                       "last loss ÷ chance": h["loss"][-1] / float(np.log(n_trans))}
                row.update({f"mean score ×{f}": s for f, s in v.get("scaling", {}).items()})
                row.update(norm_evidence(res.scores[m][c], sp_x, (res.y_test != c).astype(int)))
                rows.append(row)
    return pd.DataFrame(rows).set_index(["block", "row", "class"]) if rows else pd.DataFrame()


def data_fingerprint(x) -> str:
    """A fingerprint of rows (for keys of side computations on arrays that are not a split)."""
    return fingerprint(torch.as_tensor(np.asarray(x)))
