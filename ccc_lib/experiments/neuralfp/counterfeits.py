"""Chapter 1's confident counterfeits scored by chapter 2's detectors: each detector's threshold is its
(1 − α) quantile on the validation in-distribution images, set before any counterfeit is seen; the AUROC ranks
the counterfeits against the in-distribution test images. The generators come from the checkpoint cache
(chapter 1 trains them; this chapter never does)."""
from __future__ import annotations

from dataclasses import asdict

from ... import baselines as bl
from ... import counterfeits as cf
from ... import stats as st
from ...cache import NotCached, fingerprint
from ...report import CounterfeitRow
from ...train import predict_logits
from .chapter import MAHA_LABEL, ODIN_LABEL, VARIANTS
from .comparison import flag_share, sweep_cached
from .settings import auroc

__all__ = ["CF_VARIANTS", "LOOKS", "JOINT_FLAGGED", "validation_scores", "score_counterfeits"]

#: chapter 1's generators, its headline first
CF_VARIANTS = {"paper": "paper's generator", "ours": "ours: + ε·Div"}
#: what each baseline looks at (NeuralFP: "layers"), for the report's cross-chapter table
LOOKS = {"MSP": "confidence", "Energy": "confidence", ODIN_LABEL: "confidence", MAHA_LABEL: "features"}
#: the column of the joint one-out rule's share flagged (its own calibrated threshold)
JOINT_FLAGGED = "NeuralFP one-out rule (joint, calibrated): flagged"


def validation_scores(ch) -> dict:
    """Every detector's scores on the validation ID images of each model (``ch``: a fitted
    :class:`~.chapter.Chapter` with tuned baselines): the thresholds of the counterfeit rows."""
    out = {}
    for ds, model in ch.models.items():
        xv, choice, mid = ch.val_data[ds]["val_id"], ch.choice[ds], fingerprint(model)
        lv = predict_logits(model, xv, cache=True)
        v = {VARIANTS[c]: ch.dets[ds].score_errors(ch.ERR[ds]["val_id"], c) for c in VARIANTS}
        v["MSP"], v["Energy"] = ch.bases[ds]["MSP"].score_logits(lv), ch.bases[ds]["Energy"].score_logits(lv)
        v[ODIN_LABEL] = sweep_cached(bl.ODIN(model, temperature=choice.odin_T), xv, ch.S["eps_grid"], "odin",
                                     mid)[choice.odin_eps]
        v[MAHA_LABEL] = sweep_cached(bl.MahalanobisODIN(model, base=ch.bases[ds]["Mahalanobis"]), xv, ch.S["eps_grid"],
                                     "maha", mid)[choice.maha_eps]
        out[ds] = v
    return out


def _scores(ch, ds: str, x) -> tuple[dict, object]:
    model, choice, bases, det = ch.models[ds], ch.choice[ds], ch.bases[ds], ch.dets[ds]
    e = det.errors(x)
    sc = {VARIANTS[c]: det.score_errors(e, c) for c in VARIANTS}
    sc["MSP"], sc["Energy"] = bases["MSP"].score(x), bases["Energy"].score(x)
    sc[ODIN_LABEL] = bl.ODIN(model, choice.odin_eps, choice.odin_T).score(x)
    sc[MAHA_LABEL] = bl.MahalanobisODIN(model, choice.maha_eps, base=bases["Mahalanobis"]).score(x)
    return sc, e


def score_counterfeits(ch) -> dict:
    """Score chapter 1's counterfeits (confidence ≥ 0.99, classified as intended) of each model and generator.
    At ``default`` and ``full`` a generator missing from the cache is an error naming the fix; at other profiles
    the row is left out and said so. Returns ``{"rows": one dict per (model, generator), "images": the paper's
    generator's counterfeits per model, "report_rows": CounterfeitRow dicts for chapter 5}``."""
    P, S = ch.P, ch.S
    val = validation_scores(ch)
    rows, images, report_rows = [], {}, []
    for ds, model in ch.models.items():
        for variant, vlabel in CF_VARIANTS.items():
            try:
                s = cf.confident_counterfeits(model, ds, P, S["counterfeits_n_per_class"], seed=ch.seed, variant=variant)
            except NotCached as exc:
                if P.scale in ("default", "full"):
                    raise RuntimeError(f"chapter 1's {vlabel} for {ds} at profile {P.name!r} is not in the cache; run "
                                       f"chapter 1 first: python -m ccc_lib run 1 --profile {P.name}") from exc
                print(f"{ds}, {vlabel}: chapter 1 has not run at this profile ({exc}); left out at {P.name}")
                continue
            x = s["x"]
            if variant == "paper":
                images[ds] = x
            row = {"model": ds, "generator": vlabel, "key": ds if variant == "paper" else f"{ds}_ours",
                   "counterfeits": s["n_sampled"], "confidence ≥ 0.99": len(x)}
            if len(x):
                sc, e = _scores(ch, ds, x)
                for meth, v in sc.items():
                    ref = ch.scores[ds][meth]["test"]
                    row[f"{meth}: flagged"] = flag_share(val[ds][meth], v, S["alpha"])["flagged"]
                    # its interval where both sides have enough images (NeuralFP's rows: one model, the first seed)
                    iv = st.auroc_ci(ref, v) if len(v) >= st.MIN_PER_SIDE else None
                    row[f"{meth}: AUROC"] = auroc(ref, v)
                    report_rows.append(asdict(CounterfeitRow(
                        classifier=ds if variant == "paper" else f"{ds} ({vlabel})", chapter=2, detector=meth,
                        looks_at=LOOKS.get(meth, "layers"), auroc=float(row[f"{meth}: AUROC"]),
                        flagged_share=row[f"{meth}: flagged"], n_counterfeits=int(len(x)), alpha=float(S["alpha"]),
                        auroc_lo=iv.lo if iv else None, auroc_hi=iv.hi if iv else None)))
                row[JOINT_FLAGGED] = float(ch.dets[ds].is_outlier(errors=e).mean())
            rows.append(row)
    return {"rows": rows, "images": images, "report_rows": report_rows}
