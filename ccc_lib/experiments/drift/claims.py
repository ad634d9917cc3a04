"""Chapter 4's claims (declared before the run, bounds in ``CLAIM_BOUNDS``) and the numbers and verdicts
its prose glues, from a finished :class:`~.chapter.Run`."""
from __future__ import annotations

import numpy as np
from scipy.stats import binom

from ...report import glue, glue_range
from ...stats import wilson
from .chapter import NAMES, Run, rate
from .settings import SLIDES_TABLE1, SLIDES_TABLE2, per_dataset, table2_granularity

__all__ = ["declare_accuracy", "declare_claims", "glue_prose", "finish", "BEFORE_FILE", "versus_before"]


def _md(name: str, text: str) -> None:
    try:
        from IPython.display import Markdown
        glue(name, Markdown(text))
    except ImportError:
        pass


def declare_accuracy(C, run: Run) -> None:
    """The models' test accuracy beside the slides' Table 1 (shown, not judged)."""
    for ds in run.S["datasets"]:
        paper = SLIDES_TABLE1.get(ds, ("not reported", "not reported"))
        C.report(f"{ds}_base_accuracy", f"{ds}: base model test accuracy", run.base_info[ds]["test_accuracy"],
                 paper=paper[0])
        C.report(f"{ds}_control_accuracy", f"{ds}: no-drift production models, mean test accuracy",
                 float(np.mean([p.test_accuracy for p in run.prods[ds] if p.kind == "none"])), paper=paper[1])


def declare_claims(C, run: Run, B: dict):
    """The chapter's claims: (a) the slides' drop on no-drift models (judged, asserted nowhere); (b) the
    base model classifies its own Adam gray data as intended; (c) the decision: its simulated family
    false-alarm rate ≤ α (+ Monte Carlo error), false alarms on the controls within what a rate of α
    gives, enough controls for its design target, the drifts detected and their classes; (d) the attacks
    tell real members from non-members only weakly. Returns the claims table."""
    S, res, head, dec = run.S, run.res, run.tables["head"], run.dec
    hm, dm = S["headline_method"], S["decision_method"]
    for ds in S["datasets"]:
        for attack, key in (("rule-based", "rule"), ("black-box, synthetic shadows", "black")):
            h = head[(head.dataset == ds) & (head["gray data"] == hm) & (head.attack == attack)]
            pa = SLIDES_TABLE2.get(ds, {}).get(key)
            paper = pa[1] if pa else "; ".join(f"{d}: {v[key][1]:g}" for d, v in SLIDES_TABLE2.items())
            if len(h) == 0:
                C.check(f"{ds}_{key}_slides_drop", f"{ds}, {attack}: the attack could be built (MIFace, no drift)",
                        ours=0, op=">=", bound=1, paper=paper, bound_from="ours", assert_at=())
                continue
            h = h.iloc[0]
            C.report(f"{ds}_{key}_base_gray", f"{ds}, {attack}: base gray score (MIFace, mean of {h.seeds})",
                     h["base gray"], paper=pa[0] if pa else "; ".join(f"{d}: {v[key][0]:g}" for d, v in SLIDES_TABLE2.items()))
            C.check(f"{ds}_{key}_slides_drop", f"{ds}, {attack}: production gray score of a no-drift model < base gray "
                    f"score − margin (MIFace, mean of {h.seeds})", ours=h["production gray"], op="<",
                    bound=round(float(h["base gray"]) - S["margin"], 4), paper=paper, bound_from="ours", assert_at=())
            if pa:      # the same dataset as the slides: judged against their number too
                C.check(f"{ds}_{key}_slides_value", f"{ds}, {attack}: production gray score (no drift) ≤ the slides' value",
                        ours=h["production gray"], op="<=", paper=pa[1], assert_at=())
        own = res[(res.dataset == ds) & (res.method == "adam") & (res.attack == "rule-based")]
        C.check(f"{ds}_own_gray", f"{ds}: base model classifies its own Adam gray data as intended",
                float(own.base_score.iloc[0]) if len(own) else float("nan"), ">=", B["own_gray"],
                assert_at=("smoke", "default", "full"))
        d = dec[(dec.dataset == ds) & (dec.attack == "rule-based")]
        ctrl = d[d.kind == "none"]
        fa_bound = int(binom.ppf(B["false_alarm_quantile"], len(ctrl), S["alpha"]))
        C.check(f"{ds}_false_alarms", f"{ds}: false alarms on {len(ctrl)} no-drift controls ({NAMES[dm]}, rule-based, "
                f"{S['decision_rule']} rule, leave-one-out): at most the {B['false_alarm_quantile']:g} quantile of "
                f"Binomial({len(ctrl)}, α = {S['alpha']:g})", int(ctrl.drift.sum()), "<=", fa_bound)
        C.report(f"{ds}_false_alarm_share", f"{ds}: share of the controls with a false alarm (95 % Wilson interval; "
                 f"{len(ctrl)} controls cannot show a rate ≤ α: the simulation does)", wilson(int(ctrl.drift.sum()), len(ctrl)))
        C.report(f"{ds}_false_alarms_before", f"{ds}: false alarms of the t-interval rule it replaced on the same controls",
                 int(ctrl.drift_before.sum()))
        C.report(f"{ds}_false_alarms_slides_rule", f"{ds}: false alarms of the slides' rule on the same controls",
                 int(ctrl.slides_rule_drift.sum()))
        need = run.needed[ds]
        C.check(f"{ds}_controls_enough", f"{ds}: controls the design target needs (a class at "
                f"{S['design_drop_to']:g} of its {S['n_per_class']} records where every control keeps all, called "
                f"drift in the family at α) ≤ the controls this run has", need if need is not None else 10 ** 6,
                "<=", len(S["control_seeds"]), assert_at=("default", "full"))
        for kind in S["drift_kinds"]:
            k = d[d.kind == kind]
            C.check(f"{ds}_{kind}_detected", f"{ds}, {kind}: drifted models detected ({NAMES[dm]}, rule-based)",
                    int(k.drift.sum()), ">=", len(k), assert_at=() if kind.endswith("-one") else ("default", "full"))
            C.report(f"{ds}_{kind}_detection_rate", f"{ds}, {kind}: share detected (95 % Wilson interval)",
                     wilson(int(k.drift.sum()), len(k)).fmt(2) if len(k) else "–")
            C.report(f"{ds}_{kind}_detected_before", f"{ds}, {kind}: the same, by the t-interval rule it replaced",
                     int(k.drift_before.sum()))
            C.check(f"{ds}_{kind}_classes", f"{ds}, {kind}: models whose flagged classes are exactly the drifted ones",
                    int(k.classes_exact.sum()), ">=", len(k), assert_at=())
            C.check(f"{ds}_{kind}_classes_changed", f"{ds}, {kind}: models whose flagged classes all lost test recall or "
                    "precision beyond the controls' spread (flagged ⊆ accuracy fell)",
                    int(sum(set(r.flagged) <= set(run.acc_changes[ds][r.production].changed) for r in k.itertuples())),
                    ">=", len(k), assert_at=())
        bal = max(r["balanced accuracy"] for r in run.member_rows if r["dataset"] == ds)
        C.check(f"{ds}_member_balanced_accuracy", f"{ds}: best balanced accuracy of the attacks on real members",
                bal, "<", B["member_balanced_accuracy"], assert_at=("default",))
        C.report(f"{ds}_synthetic_records", f"{ds}: shadow records synthesised from random examples (ART hill climbing)",
                 int(run.tables["synthesis"].loc[ds, "records synthesised"]))
    w, wb = run.sim_worst["beta-binomial, no margin"], run.sim_worst["t-interval (before)"]
    C.check("false_alarm_simulation", f"simulated family false-alarm rate of the decision (beta-binomial shares, "
            f"{S['n_per_class']} records per class, {len(S['control_seeds']) - 1} controls, ρ ≤ {S['sim_rho_claim']:g} "
            f"and this run's fitted classes; {w['reps']} runs each; largest at {w['setting']}) ≤ α + 2 Monte Carlo SE",
            w["rate"], "<=", round(w["bound"], 4), assert_at=("smoke", "default", "full"))
    C.check("false_alarm_simulation_before", f"the same for the t-interval rule it replaced (largest at {wb['setting']})",
            wb["rate"], "<=", round(wb["bound"], 4), assert_at=())
    return C.glue_table("ch4_paper_vs_ours")


def _one_class(run: Run) -> str:
    """Per one-class drift: detected or not, its share of the class beside the controls' range, and —
    where the share lies inside that range — why no rule judging drops against the controls can see it."""
    parts, spread = [], run.tables["spread"]
    for ds in run.S["datasets"]:
        for kind in [k for k in run.S["drift_kinds"] if k.endswith("-one")]:
            g = run.rb[(run.rb.dataset == ds) & (run.rb.kind == kind)]
            if not len(g):
                continue
            c = int(g.affected.iloc[0][0])
            s, shares = spread.loc[(ds, c)], [p[c] for p in g.per_class]
            other = s["base model's other label"]
            lo = float(s["range"].split(" – ")[0])
            text = (f"{ds}, {kind} (class {c}): detected {int(g.drift.sum())} of {len(g)} (the t-interval rule "
                    f"{int(g.drift_before.sum())}); its share of the class {', '.join(f'{v:.2f}' for v in shares)} "
                    f"against the no-drift controls' {s['range']} (ρ̂ = {s['ρ̂']:.2f}"
                    + (f"; the base model calls {s['its share']:.0%} of the controls' records of the class {other}"
                       if s["its share"] > 0 else "") + ")")
            if all(v >= lo - 1e-9 for v in shares):
                text += (" — inside the controls' own range: a model without drift scores as low on this class, so no "
                         "rule that judges a drop against the controls can call it drift")
            parts.append(text)
    return ". ".join(parts) + "." if parts else "no one-class drift in this run's settings."


def _beyond(run: Run) -> str:
    evidence = run.tables["evidence"]
    n_extra, n_fell = len(evidence), int(evidence["accuracy fell"].sum()) if len(evidence) else 0
    if not n_extra:
        return "in this run no class was flagged beyond the drifted ones."
    e = evidence.reset_index().loc[evidence.reset_index()["precision drop"].fillna(-np.inf).idxmax()]
    example = (f" The largest: class {e['class']} of the model '{e['production']}' ({e['dataset']}), precision "
               f"{e['precision']:.3f} against the controls' {e['precision, controls']} (recall {e['recall']:.3f} "
               f"against {e['recall, controls']}).")
    verdict = (" Every flag beyond the drifted classes is on a class whose behaviour did change: the drift reaches "
               "beyond the classes whose data were replaced." if n_fell == n_extra else
               (" Where a flag beyond the drifted classes is on such a class, the drift does reach beyond the classes "
                "whose data were replaced; " if n_fell else " ") +
               f"the other {n_extra - n_fell} flags are on classes whose test recall and precision did not fall "
               "significantly by the per-class test (margin floor, Holm over 2K) — false flags by this measure.")
    return (f"{n_fell} of the {n_extra} (model, class) pairs flagged beyond the drifted classes lost test recall or "
            f"precision beyond the controls' spread." + example + verdict)


def glue_prose(C, run: Run) -> None:
    """Every number and verdict the chapter's prose quotes, glued from this run."""
    S, P, head, rb = run.S, run.P, run.tables["head"], run.rb
    hm, dm = S["headline_method"], S["decision_method"]
    glue("ch4_margin", S["margin"]); glue("ch4_alpha", S["alpha"])
    _md("ch4_datasets", ", ".join(S["datasets"]))
    from ...train import profile_data
    _md("ch4_portion_sizes", "; ".join(
        f"{d}: base {per_dataset(S['n_base'], d):,} images, each production draw {per_dataset(S['n_prod'], d):,} of "
        f"the {len(profile_data(d, 'train', P)) - per_dataset(S['n_base'], d):,} others" for d in S["datasets"]))
    gran = table2_granularity()
    g = gran[~gran["a multiple of 1/(3K)"]]
    e = g[(g.dataset == "emnist") & (g.attack == "rule-based") & (g.value == "production gray")]
    em = gran[gran.dataset == "emnist"].groupby("classes")["a multiple of 1/(3K)"].all()
    _md("ch4_granularity_sentence", "on CIFAR-10 (K = 10) " + ", ".join(
        f"{r.slides:g} × 30 = {r['value × 3K']:.2f}" for _, r in g[g.dataset == "cifar10"].iterrows())
        + f"; on EMNIST the rule-based production value {SLIDES_TABLE2['emnist']['rule'][1]} × 3K = "
        + ", ".join(f"{x:.2f}" for x in e["value × 3K"]) + " for K = "
        + ", ".join(c.split("K = ")[1].rstrip(")") for c in e["classes"])
        + (" (EMNIST's splits), and no split makes every EMNIST value a multiple." if not em.any() else
           f"; only {', '.join(em[em].index)} makes every EMNIST value a multiple."))
    _md("ch4_headline_setting", f"{NAMES[hm]} gray data"); _md("ch4_decision_method", NAMES[dm])
    glue("ch4_headline_seeds", int(head.seeds.max()))
    glue("ch4_n_controls", len(S["control_seeds"])); glue("ch4_n_drift_seeds", len(S["drift_seeds"]))
    glue("ch4_records", int(S["n_per_class"]))
    _md("ch4_controls_needed", "; ".join(f"{ds}: {n}" for ds, n in run.needed.items()))
    _md("ch4_sim_grid", f"base rates {', '.join(str(r) for r in S['sim_base_rates'])}; over-dispersion ρ "
        f"{', '.join(f'{r:g}' for r in S['sim_rhos'])} (0: binomial); {len(S['control_seeds']) - 1} controls, as many as "
        f"a control is judged against here; {S['sim_reps']:,} runs per setting")
    rule_h, bb_h = (head[(head["gray data"] == hm) & (head.attack == a)] for a in ("rule-based", "black-box, synthetic shadows"))
    glue_range("ch4_rule_base", rule_h["base gray"]); glue_range("ch4_rule_prod", rule_h["production gray"])
    glue_range("ch4_black_base", bb_h["base gray"]); glue_range("ch4_black_prod", bb_h["production gray"])
    glue("ch4_slides_rule_flags", int(rule_h["slides' rule: drift"].sum())); glue("ch4_slides_rule_models", int(rule_h.seeds.sum()))
    _md("ch4_slides_verdict", C.tally_text([k for k in C.claims if k.endswith("_slides_drop")], "(dataset, attack) pairs"))
    syn = run.tables["synthesis"]
    glue("ch4_syn_records", int(syn["records synthesised"].sum())); glue("ch4_syn_asked", int(syn["records asked"].sum()))
    glue_range("ch4_syn_classes", syn["classes with a record"], fmt="{:.0f}")
    ctrl, drifted = rb[rb.kind == "none"], rb[rb.kind != "none"]
    glue("ch4_false_alarms_slides", int(ctrl.slides_rule_drift.sum())); glue("ch4_false_alarms_before", int(ctrl.drift_before.sum()))
    glue("ch4_drifted_models", len(drifted)); glue("ch4_detected", int(drifted.drift.sum()))
    glue("ch4_detected_before", int(drifted.drift_before.sum()))
    glue("ch4_classes_exact", int(drifted.classes_exact.sum())); glue("ch4_classes_exact_before", int(drifted.classes_exact_before.sum()))
    _md("ch4_false_alarm_rate", rate(ctrl.drift.sum(), len(ctrl)))
    _md("ch4_false_alarm_verdicts", "; ".join(f"{ds}: {C.verdict(f'{ds}_false_alarms')}" for ds in S["datasets"]))
    w, wb = run.sim_worst["beta-binomial, no margin"], run.sim_worst["t-interval (before)"]
    _md("ch4_sim_sentence", f"at most {w['rate']:.3f} (largest at {w['setting']}; bound α + 2 Monte Carlo standard errors "
        f"= {w['bound']:.3f}: {C.verdict('false_alarm_simulation')}), where the t-interval rule it replaced reaches "
        f"{wb['rate']:.3f} (at {wb['setting']}: {C.verdict('false_alarm_simulation_before')})")
    _md("ch4_one_class_sentence", _one_class(run))
    glue("ch4_classes_changed", int(run.tables["beyond"]["flagged ⊆ accuracy fell"].sum()))
    _md("ch4_beyond_sentence", _beyond(run))
    glue_range("ch4_max_p_drift", [drifted.p_value.max()], fmt="{:.2g}")
    bbr = run.dec[run.dec.attack != "rule-based"]
    glue("ch4_black_false_alarms", int(bbr[bbr.kind == "none"].drift.sum())); glue("ch4_black_controls", int((bbr.kind == "none").sum()))
    glue("ch4_black_detected", int(bbr[bbr.kind != "none"].drift.sum())); glue("ch4_black_drifted", int((bbr.kind != "none").sum()))
    glue_range("ch4_balanced_accuracy", [r["balanced accuracy"] for r in run.member_rows], fmt="{:.3f}")
    inp, parts = run.tables["inputs"].reset_index(), []
    for kind in ("none",) + tuple(S["drift_kinds"]):
        r = inp[inp.drift == kind]
        parts.append(f"{'no drift' if kind == 'none' else kind}: MMD {int(r['MMD alarms'].sum())}, KS {int(r['KS alarms'].sum())}, "
                     f"gray data {int(r['gray-data alarms (rule-based)'].sum())} of {int(r.models.sum())}")
    seen = [k for k in S["drift_kinds"] if inp[inp.drift == k]["MMD alarms"].sum() == inp[inp.drift == k].models.sum()]
    missed = [k for k in S["drift_kinds"] if inp[inp.drift == k]["MMD alarms"].sum() == 0]
    _md("ch4_input_sentence", "Alarms on the production models (" + "; ".join(parts) + "). The MMD test, which needs "
        "the production data and sees no labels, flags every model of " + (", ".join(seen) or "no drift kind") +
        " and none of " + (", ".join(missed) or "no drift kind") + "; the gray-data decision needs only the production "
        "model, and cannot see a drift the production model does not learn.")
    built = [ds for ds in S["datasets"] if syn.loc[ds, "black-box attack built"]]
    unbuilt = [ds for ds in S["datasets"] if ds not in built]
    _md("ch4_syn_sentence", (f"the slides' black-box attack could not be built on {', '.join(unbuilt)} (too few records). "
                             if unbuilt else "") + (f"On {', '.join(built)} it was trained on what was synthesised." if built else ""))
    mem_ok = all(C.holds(f"{ds}_member_balanced_accuracy") for ds in S["datasets"])
    _md("ch4_member_sentence", "below the bound of the claims table on every dataset: the CNN leaks little membership, "
        "so what the rule-based 'attack' measures on gray data is agreement of the two models' concepts, not "
        "membership." if mem_ok else "above the bound of the claims table on at least one dataset: these models leak "
        "membership, and the attacks' scores on gray data mix membership with the agreement of the two models' concepts.")


def finish(C, run: Run, seconds: float):
    """Write the metrics (every table's rows) and assert the claims due at this profile."""
    from dataclasses import asdict
    t = run.tables
    return C.finish(table1_accuracy=t["table1"].reset_index().to_dict("records"),
                    training=t["training"].reset_index().to_dict("records"),
                    table2_headline=t["head"].to_dict("records"), scores=run.res.to_dict("records"),
                    member_check=run.member_rows, shadow_synthesis=t["synthesis"].reset_index().to_dict("records"),
                    false_alarms=t["alarms"].reset_index().to_dict("records"),
                    detections=t["detections"].reset_index().to_dict("records"),
                    simulation=t["simulation"].reset_index().to_dict("records"), simulation_worst=run.sim_worst,
                    controls_needed=run.needed, class_spread=t["spread"].reset_index().to_dict("records"),
                    input_tests=t["inputs"].reset_index().to_dict("records"),
                    class_accuracy=[asdict(a) for v in run.acc_changes.values() for a in v.values()],
                    flagged_vs_accuracy=t["beyond"].reset_index().to_dict("records"),
                    detect_drift_example=run.report.to_dict(), headline_method=run.S["headline_method"],
                    decision_method=run.S["decision_method"], variant_methods=list(run.S["variant_methods"]),
                    notebook_seconds=seconds)


#: the verdicts of the cold ``default`` run before the beta-binomial decision and this round's budget
BEFORE_FILE = "benchmarks/results/drift_default_before_2026-12-07.json"


def versus_before(C, run: Run):
    """This run's headline verdicts beside those of the run before this change (:data:`BEFORE_FILE`: ten
    controls, three seeds per drift, the t-interval rule) — ``default`` only; a message elsewhere or
    where the file is not in the checkout. Glues ``ch4_versus_sentence``: each detection verdict that
    changed, with the drifted class's shares against the controls' range in both runs."""
    import json
    from pathlib import Path
    import pandas as pd
    path = Path(__file__).resolve().parents[3] / BEFORE_FILE
    if run.P.name != "default" or not path.exists():
        _md("ch4_versus_sentence", f"(no run before this change at profile {run.P.name!r} in this checkout)")
        return f"no run before this change at profile {run.P.name!r} in this checkout ({BEFORE_FILE})"
    old = json.loads(path.read_text())
    before = {c["key"]: c for c in old["claims"]}
    rows, changed = [], []
    for key, b in before.items():
        if not any(key.endswith(s) for s in ("_slides_drop", "_false_alarms", "_false_alarm_rate", "_detected",
                                              "_classes", "_own_gray", "_member_balanced_accuracy")):
            continue
        a = C.claims.get(key.replace("_false_alarm_rate", "_false_alarm_share"))
        after = _row(a) if a is not None else (None, None, None)
        rows.append({"claim": str(b.get("claim") or key).split(" (")[0],
                     "before": _cell(b.get("ours"), b.get("interval"), b.get("verdict")),
                     "after": _cell(*after)})
        if key.endswith("_detected") and a is not None and a.verdict != b.get("verdict"):
            changed.append(_why(run, old, key, b, a))
    _md("ch4_versus_sentence", " ".join(changed) if changed else "No detection verdict changed.")
    return pd.DataFrame(rows).set_index("claim")


def _why(run: Run, old: dict, key: str, b: dict, a) -> str:
    """A changed detection verdict, with the drifted class's shares beside the controls' range, before and now."""
    ds = next(d for d in run.S["datasets"] if key.startswith(d + "_"))
    kind = key[len(ds) + 1:-len("_detected")]
    text = f"{ds}, {kind}: {b['ours']} detected before, {a.ours} now"
    cls = run.rb[(run.rb.dataset == ds) & (run.rb.kind == kind)].affected
    if kind.endswith("-one") and len(cls):
        c = int(cls.iloc[0][0])
        ctrl_b = [v[c] for v in old["control_per_class"][ds].values()]
        drift_b = [v[c] for n, v in old["drifted_per_class"][ds].items() if n.startswith(kind + ",")]
        ctrl_a = [p[c] for p in run.rb[(run.rb.dataset == ds) & (run.rb.kind == "none")].per_class]
        drift_a = [p[c] for p in run.rb[(run.rb.dataset == ds) & (run.rb.kind == kind)].per_class]
        text += (f" — class {c}'s share: before {', '.join(f'{v:.2f}' for v in drift_b)} against "
                 f"{len(ctrl_b)} controls' {min(ctrl_b):.2f} – {max(ctrl_b):.2f}; now "
                 f"{', '.join(f'{v:.2f}' for v in drift_a)} against {len(ctrl_a)} controls' "
                 f"{min(ctrl_a):.2f} – {max(ctrl_a):.2f}")
    return text + "."


def _row(claim):
    iv = claim.interval
    return claim.ours, None if iv is None else (iv.lo, iv.hi), claim.verdict


def _cell(ours, interval, verdict) -> str:
    if ours is None:
        return "–"
    num = f"{ours:.3g}" if isinstance(ours, float) else str(ours)
    if interval:
        num += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return num + (f" ({verdict})" if verdict else "")
