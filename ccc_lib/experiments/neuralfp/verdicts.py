"""Chapter 2's claims and the sentences the prose glues, built from a fitted :class:`~.chapter.Chapter` and the
verdicts :class:`ccc_lib.claims.Claims` computes from intervals — never typed: the combined AUROC against the
slides' (over the autoencoder seeds), the engineering bounds, "combined ≥ every single layer" (one model, paired
interval), NeuralFP against every baseline, and chapter 1's counterfeits flagged."""
from __future__ import annotations

import pandas as pd

from ... import stats as st
from .comparison import best_of_test_verdicts
from .counterfeits import JOINT_FLAGGED
from .fitting import stopping_table
from .settings import VALIDATION_OOD, family
from .slides import SLIDES_AUROC, SLIDES_PER_LAYER, comparable, slides_checks
from .studies import RAW, ZABS, combined_vs_layers_ci

__all__ = ["ENG", "QNAME", "declare_claims", "winners_sentence", "rule_change_sentence", "low_error_sentence",
           "metrics", "declare_counterfeits"]

#: profiles at which the engineering bounds are asserted
ENG = ("smoke", "default", "full")
#: the two per-layer quantities: claim-key tag and words
QNAME = {RAW: ("raw", "the raw error e_l, one-sided (the slides' quantity)"), ZABS: ("z", "|z_l|, two-sided (ours)")}
FA = "false alarms (ID test)"


def _fmt(iv) -> str:
    """An interval of a small difference with two decimals more than its width needs, so that a bound near 0
    never prints as 0 on the wrong side (the outward rounding of :meth:`~ccc_lib.stats.Interval.fmt`)."""
    return iv.fmt(iv.decimals() + 2)


def _headline_claims(C, ch, B) -> str:
    """The combined AUROC against the slides' numbers and the engineering bound; returns the MNIST model."""
    P, seeds = ch.P, len(ch.SEEDS)
    for ds in ch.models:
        for o in ch.FAR[ds]:
            paper = SLIDES_AUROC.get((family(ds), family(o)))
            if paper is not None:
                C.check(f"auroc_{ds}_vs_{o}", f"{ds} model vs {o}: combined AUROC of the one-out score over {seeds} "
                        "autoencoder seeds (the slides' number: "
                        + ("same data, their classifier)" if comparable(P) else "comparable only at full)"),
                        ch.nfp_ci[(ds, o)], ">=", paper=paper, assert_at=())
    mnist = next((ds for ds in ch.models if family(ds) == "mnist"), None)
    if mnist is None:
        raise RuntimeError(f"profile {P.name!r} has no MNIST model; chapter 2's headline claim needs one")
    other = ch.FAR[mnist][0]
    C.check("auroc_mnist_other_eng", f"{mnist} model vs {other}: combined AUROC of the one-out score over {seeds} "
            "autoencoder seeds (engineering bound)", ch.nfp_ci[(mnist, other)], ">=", bound=B["auroc_mnist_other"],
            paper=SLIDES_AUROC.get(("mnist", family(other)), "not reported"), bound_from="ours", assert_at=ENG)
    a = ch.S["alpha"]
    for ds in ch.models:
        lit, jnt = float(ch.fa[ds].loc["literal", FA]), float(ch.fa[ds].loc["joint", FA])
        C.check(f"fa_literal_{ds}", f"{ds}: false alarms of our literal reading of the one-out rule (each layer's μ_l, τ_l "
                f"at its own α/2 and 1 − α/2 quantiles; ours, the slides give no thresholds) on fresh ID test images exceed "
                "2α", round(lit, 4), ">", bound=round(2 * a, 4), paper="not in the slides (thresholds not given)",
                assert_at=ENG)
        C.check(f"fa_joint_{ds}", f"{ds}: false alarms of the joint one-out rule on fresh ID test images (ours) within "
                "α + slack", round(jnt, 4), "<=", bound=round(a + B["fa_slack"], 4), paper="—", assert_at=ENG)
    return mnist


def _pair_claims(C, ch) -> tuple[pd.DataFrame, dict, list, int]:
    """Per (model, OOD set): "combined ≥ every single layer" on both quantities (one model) and NeuralFP against
    every baseline. Returns the table, the claim keys per quantity, the judgements the Wald interval would
    read differently, and the number of pairs."""
    P, keys, rows, wald, n_pairs = ch.P, {q: [] for q in QNAME}, [], [], 0
    for ds, det in ch.dets.items():
        for o in ch.OOD[ds]:
            cv = combined_vs_layers_ci(det, ch.ERR[ds]["test"], ch.ERR[ds][o])
            pair = (family(ds), family(o))
            for q, (tag, qtext) in QNAME.items():
                r = cv[q]
                if q == RAW and pair[0] in SLIDES_PER_LAYER and pair[1] in SLIDES_PER_LAYER[pair[0]]:
                    sm = SLIDES_AUROC[pair] - max(SLIDES_PER_LAYER[pair[0]][pair[1]])
                    paper = f"margin {sm:.4f} ≥ 0 ({'same data' if comparable(P) else 'comparable only at full'})"
                else:
                    paper = "> 0 in every slides table" if q == RAW else "not reported (the slides give raw-error AUROCs)"
                key = f"comb_vs_layers_{tag}_{ds}_{o}"
                C.check(key, f"{ds} vs {o}: combined AUROC (one-out) minus the best single layer's ({r['best layer']}), "
                        f"judged on {qtext}; paired DeLong interval, one model", st.over_seeds([r["diff"]], bounds=(-1, 1)),
                        ">=", bound=0.0, paper=paper, assert_at=())
                keys[q].append(key)
                if st.difference_verdict(r["diff_wald"]) != st.difference_verdict(r["diff"]):
                    wald.append(f"{ds} vs {o} on {qtext.split(',')[0]}: {_fmt(r['diff'])} (Wald: {_fmt(r['diff_wald'])})")
                rows.append({"model": ds, "OOD": o, "quantity": q, "combined": r["combined"], "best layer": r["best layer"],
                             "its AUROC": r["best"], "margin": r["margin"], "interval": _fmt(r["diff"]),
                             "verdict": C[key].verdict})
            n_pairs += 1
            C.compare_every(f"nfp_vs_baselines_{ds}_{o}", f"{ds} vs {o}: NeuralFP (one-out, {len(ch.SEEDS)} autoencoder "
                            f"seeds) minus each of the {len(ch.BASELINES[ds])} validation-tuned baselines, AUROC, paired "
                            f"DeLong on the same images ⊕ seeds; interval: the difference to the closest "
                            f"({ch.vs[(ds, o)].closest})", ch.vs[(ds, o)], a=ch.nfp_ci[(ds, o)],
                            paper=("the slides' text says NeuralFP wins, except SVHN on the MNIST model"
                                   if pair in SLIDES_AUROC else "not in the slides"))
    return pd.DataFrame(rows), keys, wald, n_pairs


def declare_claims(C, ch, B) -> tuple[dict, dict]:
    """Declare every claim of the chapter but the counterfeits' (:func:`declare_counterfeits`) and return what
    the prose glues: ``({glue name: markdown sentence}, {glue name: number})``; ``ch.comb_vs_layers`` keeps the
    per-pair table."""
    mnist = _headline_claims(C, ch, B)
    ch.comb_vs_layers, keys, wald, n_pairs = _pair_claims(C, ch)

    def tally(ks):
        v = pd.Series([C[k].verdict for k in ks]).value_counts()
        return ", ".join(f"{w} on {int(v.get(w, 0))}" for w in ("holds", "not resolved", "does not hold"))

    other, a = ch.FAR[mnist][0], ch.S["alpha"]
    rr = ch.comb_vs_layers.set_index(["model", "OOD", "quantity"])
    lines = []
    for ds in ch.models:
        for o in ch.FAR[ds]:
            raw, z = rr.loc[(ds, o, RAW)], rr.loc[(ds, o, ZABS)]
            lines.append(f"* {ds} model vs {o}: combined {raw['combined']:.4f}; best single layer on the raw error "
                         f"{raw['its AUROC']:.4f} ({raw['best layer']}; difference {raw['interval']}: {raw['verdict']}), "
                         f"on |z_l| {z['its AUROC']:.4f} ({z['best layer']}; difference {z['interval']}: {z['verdict']})")
    hk = f"auroc_{mnist}_vs_{other}"
    fa = {r: ", ".join(f"{ch.fa[ds].loc[r, FA]:.3f} ({ds})" for ds in ch.models) for r in ("literal", "joint")}
    values = {"ch2_auroc_mnist_vs_other": round(float(ch.combined["max"].loc[mnist, other]), 4),
              **{f"ch2_fa_{r}_{ds}": round(float(ch.fa[ds].loc[r, FA]), 3) for ds in ch.models for r in ("literal", "joint")}}
    return {
        "ch2_comb_sentence": f"\"combined ≥ every single layer\" (by the paired 95 % interval of combined − best layer) "
                             f"{tally(keys[RAW])} of {n_pairs} (model, OOD set) pairs judged on the raw error (the slides' "
                             f"quantity), and {tally(keys[ZABS])} of {n_pairs} judged on |z_l| (ours)",
        "ch2_comb_list": "\n".join(lines),
        "ch2_interval_change_sentence": "These paired intervals are MOVER intervals built on the logit scale "
            "(`ccc_lib.stats.auroc_diff_ci`), which keep their coverage near an AUROC of 1; the symmetric (Wald) interval "
            "of this chapter's earlier edition would read differently on "
            + (f"{len(wald)} of {2 * n_pairs} judgements: " + "; ".join(wald) + "." if wald else "none of them."),
        "ch2_headline_verdict": f"{mnist} model vs {other}: combined AUROC {C.interval_text('auroc_mnist_other_eng')} over "
            f"{len(ch.SEEDS)} autoencoder seeds (the first seed's alone: {ch.combined['max'].loc[mnist, other]:.4f}; "
            + (f"the slides: {SLIDES_AUROC[('mnist', family(other))]}; judged on the interval: "
               + C.verdict(hk, "reproduced", "not reproduced") + ")" if hk in C.claims else "no slides value for this pair)"),
        "ch2_fa_sentence": "With our literal reading of the thresholds (each layer's μ_l and τ_l at its own α/2 and "
            f"1 − α/2 quantiles, α = {a:g}; the slides do not say how they set them), the one-out rule flags "
            f"{fa['literal']} of fresh in-distribution test images; our joint thresholds, one t calibrated on the "
            f"combined score, flag {fa['joint']}.",
    }, values


def winners_sentence(ch) -> str:
    """NeuralFP against every baseline, counted over the (model, OOD set) pairs, with each pair it is behind on."""
    count = ch.winners["verdict"].value_counts()
    n_win, n_tie, n_loss = (int(count.get(k, 0)) for k in ("wins", "tie within uncertainty", "loses"))
    behind = {k: [b["baseline"] for b in r.rows if b["p_holm"] < 1 - r.level] for k, r in ch.vs.items()}
    lost = [k for k, r in ch.vs.items() if r.verdict == "loses"]
    return (f"With every detector tuned on the same validation data and the paired 95 % intervals of the AUROC "
            f"differences (over {len(ch.SEEDS)} autoencoder seeds) deciding against every baseline, the one-out NeuralFP "
            f"(the slides' rule, scored by our max_l |z_l|) **is ahead of all {len(next(iter(ch.BASELINES.values())))} "
            f"baselines on {n_win}, tied within uncertainty on {n_tie} and behind at least one on {n_loss} of "
            f"{len(ch.winners)}** (model, OOD set) pairs"
            + (". It is behind on " + "; ".join(f"{ds} vs {o} (behind {', '.join(behind[(ds, o)])} after Holm; difference "
                                              f"to the closest, {ch.vs[(ds, o)].closest}: {ch.vs[(ds, o)].summary.fmt(3)})"
                                              for ds, o in lost) + "." if n_loss else "."))


def rule_change_sentence(ch) -> str:
    """Where the earlier edition's rule (the one baseline with the highest test AUROC) would read differently."""
    old = {ds: best_of_test_verdicts(ch.seed_scores[ds], ch.scores[ds], ch.BASELINES[ds], ch.OOD[ds]) for ds in ch.models}
    changed = [(ds, o) for (ds, o), r in ch.vs.items() if old[ds][o][1] != r.verdict]
    return ("Judged instead against the one baseline with the highest test AUROC of each pair (the rule of this "
            "chapter's earlier edition, a pick on the very images judged), the verdict differs on "
            + (f"{len(changed)} of {len(ch.vs)} pairs: " + "; ".join(
                f"{ds} vs {o} ({old[ds][o][1]} against {old[ds][o][0]} alone; {ch.vs[(ds, o)].verdict} against every "
                "baseline)" for ds, o in changed) + "." if changed else f"none of the {len(ch.vs)} pairs."))


def low_error_sentence(low: list, n_combos: int) -> str:
    """The layers whose OOD errors are lower than the in-distribution ones (raw-error AUROC below 0.5)."""
    if low:
        return ("As in the slides, OOD images are not always reconstructed worse: in "
                f"{len(low)} (layer, model, OOD dataset) combinations out of {n_combos} the OOD errors are *lower* than "
                "the in-distribution ones (raw-error AUROC below 0.5: " + "; ".join(low[:6]) + ("; …" if len(low) > 6 else "")
                + "). That is why the rule needs a lower threshold μ_l.")
    return ("Unlike in the slides, no tapped layer reconstructs the other dataset's images better than the "
            "in-distribution ones in this run (every raw-error AUROC is at least 0.5); the lower thresholds μ_l "
            "then only cost false alarms.")


def metrics(ch) -> dict:
    """The chapter's payload for the metrics file (``C.save(**metrics(ch))``)."""
    return dict(
        dry_run=bool(ch.P.dry_run), skipped_models=ch.skipped, chosen={ds: c.label for ds, c in ch.chosen.items()},
        baselines_chosen={ds: {"odin_T": c.odin_T, "odin_eps": c.odin_eps, "maha_eps": c.maha_eps}
                          for ds, c in ch.choice.items()},
        validation_ood=list(VALIDATION_OOD), ablation=ch.ablation.reset_index().to_dict("records"),
        combined_auroc={c: t.round(4).to_dict() for c, t in ch.combined.items()},
        per_layer_auroc={ds: {o: t.round(4).to_dict() for o, t in d.items()} for ds, d in ch.per_layer.items()},
        combined_vs_layers=ch.comb_vs_layers.round(4).to_dict("records"), slides_checks=slides_checks(),
        comparison=ch.comparison.to_dict("records"), winners=ch.winners.reset_index().to_dict("records"),
        versus_every={f"{ds} vs {o}": r.to_dict() for (ds, o), r in ch.vs.items()}, nfp_seeds=ch.SEEDS,
        stopping=stopping_table(ch.stops).reset_index().to_dict("records"), nfp_seed_seconds=ch.seed_seconds,
        eps_tables={k: t.round(4).to_dict() for k, t in ch.eps_tabs.items()},
        validation_tables=ch.val_tables.round(4).to_dict(),
        false_alarms=ch.false_alarm_rows.reset_index().to_dict("records"))


def declare_counterfeits(C, cf_rows: list, alpha: float) -> dict:
    """Per (model, generator): the share of chapter 1's counterfeits the joint one-out rule flags, against its
    false-alarm budget α (shown, not asserted); returns ``{glue name: share}``."""
    out = {}
    for r in cf_rows:
        share = r.get(JOINT_FLAGGED, float("nan"))
        C.check(f"counterfeits_flagged_{r['key']}", f"{r['model']} ({r['generator']}): share of chapter 1's counterfeits "
                "with confidence ≥ 0.99 flagged by the joint one-out rule, above its false-alarm budget α", round(share, 4),
                ">", bound=alpha, paper="not in the slides", assert_at=())
        out[f"ch2_counterfeits_flagged_{r['key']}"] = round(share, 3)
    return out
