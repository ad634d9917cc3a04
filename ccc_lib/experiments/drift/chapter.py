"""Chapter 4's notebook, one call per section: :class:`Run` holds what the chapter computed, and each
function below runs one section on it and returns the section's table (the notebook shows it)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ... import drift as D
from ...stats import wilson
from ...train import profile_data
from .checks import accuracy_changes, input_drift_test
from .decision import class_spread, controls_needed, false_alarm_simulation, fitted_world, simulation_table
from .models import get_model, production_models, training_table
from .scores import add_decisions, build_attacks, frame, headline_table, score_productions
from .settings import SLIDES_TABLE2

__all__ = ["NAMES", "Run", "mean_sd", "rate", "train_all", "attack_all", "score_all", "decide", "simulate",
           "before_after", "beyond", "input_tests", "one_call"]

NAMES = {"miface": "MIFace", "adam": "Adam inversion", "generator": "chapter 1's generator"}
SLIDES_RULE = "slides' rule: drift"


@dataclass
class Run:
    """What chapter 4 computed, section by section (the notebook's state)."""
    P: object
    S: dict
    seed: int = 0
    base_models: dict = field(default_factory=dict)
    base_portions: dict = field(default_factory=dict)
    base_info: dict = field(default_factory=dict)
    prods: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)      # every table the chapter shows, by name
    attacks: dict = field(default_factory=dict)
    attack_errors: dict = field(default_factory=dict)
    member_rows: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    grays: dict = field(default_factory=dict)
    acc_changes: dict = field(default_factory=dict)
    sim_worst: dict = field(default_factory=dict)
    needed: dict = field(default_factory=dict)
    report: object = None

    @property
    def res(self) -> pd.DataFrame:
        return self.tables["scores"]

    @property
    def dec(self) -> pd.DataFrame:
        """The decision experiment's rows (the decision's gray-data method)."""
        return self.res[self.res.method == self.S["decision_method"]]

    @property
    def rb(self) -> pd.DataFrame:
        """... with the rule-based attack (the one the chapter validates)."""
        return self.dec[self.dec.attack == "rule-based"]


def mean_sd(v, digits: int = 3) -> str:
    v = np.asarray(list(v), float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def rate(k, n) -> str:
    """k of n with the share's 95 % Wilson interval."""
    return "–" if n == 0 else f"{int(k)} of {int(n)}: {wilson(int(k), int(n)).fmt(2)}"


def train_all(run: Run) -> pd.DataFrame:
    """Steps 1-2: every dataset's base model and production models (trained into the cache, read in
    order); the test accuracies beside the slides' Table 1, and where each model's training stopped."""
    S, rows, stops = run.S, [], []
    for ds in S["datasets"]:
        run.base_models[ds], run.base_info[ds], run.base_portions[ds] = get_model(ds, run.P, S, "base")
        run.prods[ds] = production_models(ds, run.P, S)
        row = {"dataset": ds, "base model": f"{run.base_info[ds]['test_accuracy']:.3f}"}
        for kind in ("none",) + tuple(S["drift_kinds"]):
            a = [p.test_accuracy for p in run.prods[ds] if p.kind == kind]
            row["production, no drift" if kind == "none" else f"production, {kind}"] = f"{mean_sd(a)} (n={len(a)})"
        rows.append(row)
        stops.append(training_table(run.base_info[ds], run.prods[ds], ds))
    run.tables["training"] = pd.DataFrame(stops).set_index("dataset")
    run.tables["table1"] = pd.DataFrame(rows).set_index("dataset")
    return run.tables["table1"]


def attack_all(run: Run) -> pd.DataFrame:
    """Steps 5-6's attacks against each base model, the attacks' balanced accuracy on real members, and
    what ART's hill climbing synthesised (the table returned)."""
    S, syn = run.S, []
    for ds in S["datasets"]:
        data = profile_data(ds, "test", run.P).subset(S["n_attack"], run.seed)
        run.attacks[ds], run.attack_errors[ds] = build_attacks(run.base_models[ds], data, S, seed=run.seed)
        ctrl0 = next(p for p in run.prods[ds] if p.kind == "none")          # a portion the base model never saw
        n = min(1000, len(run.base_portions[ds]), len(ctrl0.data))
        for name, (att, which) in run.attacks[ds].items():
            mem, non = att.member_rates(run.base_portions[ds], ctrl0.data, which, n=n, seed=run.seed)
            run.member_rows.append({"dataset": ds, "attack": name, "member rate on members": mem,
                                    "member rate on non-members": non, "balanced accuracy": 0.5 * (mem + 1 - non)})
        k, built = run.base_models[ds].num_classes, "black-box, synthetic shadows" in run.attacks[ds]
        if built:
            info = run.attacks[ds]["black-box, synthetic shadows"][0].shadow_info
            n_syn, fails = info["n_synthesised"], np.asarray(info["synthesis_failures_per_class"])
        else:
            err = run.attack_errors[ds]["black-box, synthetic shadows"]
            n_syn, fails = err.n_records, np.asarray(err.failures)
        syn.append({"dataset": ds, "records asked": S["n_synthetic_per_class"] * k, "records synthesised": n_syn,
                    "classes with a record": int((fails < S["n_synthetic_per_class"]).sum()), "classes": k,
                    "black-box attack built": built})
    run.tables["members"] = pd.DataFrame(run.member_rows).set_index(["dataset", "attack"])
    run.tables["synthesis"] = pd.DataFrame(syn).set_index("dataset")
    return run.tables["synthesis"]


def _setting(S: dict, method: str, attack: str) -> str:
    if method == S["headline_method"] and attack in ("rule-based", "black-box, synthetic shadows"):
        return "our reading of the slides'"
    return "ours: " + ("real shadows" if attack.endswith("real shadows") else NAMES[method])


def score_all(run: Run) -> pd.DataFrame:
    """Steps 3-7 for every production model: the headline (MIFace) and decision (Adam) gray data on
    every model, the variant methods on the first ``variant_seeds`` no-drift models; step 7 on every
    score. Returns the slides' Table 2 beside ours (no-drift production models)."""
    S, P = run.S, run.P
    for ds in S["datasets"]:
        ctrl = [p for p in run.prods[ds] if p.kind == "none"]
        for method in (S["headline_method"],) + tuple(S["variant_methods"]):
            ps = (run.prods[ds] if method == S["decision_method"] else
                  ctrl[:S["headline_seeds"]] if method == S["headline_method"] else ctrl[:S["variant_seeds"]])
            r, g = score_productions(run.attacks[ds], run.base_models[ds], ps, method, S, dataset=ds, profile=P)
            run.scores += r
            run.grays[(ds, method)] = g
    run.scores = add_decisions(run.scores, S)
    run.tables["scores"] = frame(run.scores)
    stops = []
    for ds in S["datasets"]:
        steps = [len(g.info.get("loss") or []) for g in run.grays[(ds, S["decision_method"])].values()]
        stops.append({"dataset": ds, "inversions": len(steps), "cap (adam_steps)": S["adam_steps"],
                      "stopped at (steps)": f"{min(steps)} – {max(steps)}" if steps else "–",
                      "stopped before the cap": sum(n < S["adam_steps"] for n in steps)})
    run.tables["inversion"] = pd.DataFrame(stops).set_index("dataset")
    head = run.tables["head"] = headline_table(run.res, S["headline_seeds"])

    def slides(attack):
        key = "rule" if attack == "rule-based" else "black"
        return {f"slides, {n}": f"{SLIDES_TABLE2[d][key][0]} → {SLIDES_TABLE2[d][key][1]}"
                for d, n in (("cifar10", "CIFAR-10"), ("emnist", "EMNIST"))}
    rows = [{"dataset": h["dataset"], "gray data": NAMES[h["gray data"]], "attack": h["attack"],
             "setting": _setting(S, h["gray data"], h["attack"]),
             "base gray": f"{h['base gray']:.3f} ± {h['base gray sd']:.3f}",
             "production gray": f"{h['production gray']:.3f} ± {h['production gray sd']:.3f}",
             "models": f"{h['seeds']}" + (" (one model)" if h["seeds"] == 1 else ""),
             "slides' rule: drift": f"{h[SLIDES_RULE]} of {h['seeds']}", **slides(h["attack"]),
             "like for like": "yes (full)" if P.scale == "full" and not P.dry_run else f"no: {P.name} runs other datasets"}
            for h in head.to_dict("records")]
    run.tables["table2"] = pd.DataFrame(rows).set_index(["dataset", "gray data", "attack"])
    return run.tables["table2"]


def decide(run: Run) -> pd.DataFrame:
    """Step 7's tables for the decision experiment: false alarms on the controls (returned), detections
    of the drifted models, and each class's spread over the controls."""
    S, dec = run.S, run.dec

    def alarms(g):
        ctrl = g[g.kind == "none"]
        return pd.Series({"controls": len(ctrl), "false alarms (95 % Wilson interval of the rate)":
                          rate(ctrl.drift.sum(), len(ctrl)),
                          "false alarms, t-interval rule (before)": int(ctrl.drift_before.sum()),
                          "false alarms, slides' rule": int(ctrl.slides_rule_drift.sum())})
    run.tables["alarms"] = dec.groupby(["dataset", "attack"], sort=False)[list(dec.columns)].apply(alarms)
    det = []
    for (ds, attack, kind), g in dec[dec.kind != "none"].groupby(["dataset", "attack", "kind"], sort=False):
        det.append({"dataset": ds, "attack": attack, "drift": kind, "models": len(g),
                    "detected (95 % Wilson)": rate(g.drift.sum(), len(g)), "largest p-value": g.p_value.max(),
                    "drifted classes": str(list(g.affected.iloc[0])),
                    "classes exactly the drifted ones": int(g.classes_exact.sum()),
                    "flagged (per seed)": "; ".join(str(list(f)) for f in g.flagged),
                    "before: detected": int(g.drift_before.sum()), "before: exact": int(g.classes_exact_before.sum())})
    run.tables["detections"] = pd.DataFrame(det).set_index(["dataset", "attack", "drift"])
    run.tables["spread"] = class_spread(dec, int(S["n_per_class"])).join(_confusions(run))
    k = {ds: run.base_models[ds].num_classes for ds in S["datasets"]}
    run.needed = {ds: controls_needed(int(S["n_per_class"]), k[ds], S["alpha"], S["design_drop_to"])
                  for ds in S["datasets"]}
    return run.tables["alarms"]


def _confusions(run: Run) -> pd.DataFrame:
    """Per dataset and class: what the base model calls the controls' gray records of the class when not
    the class — the most frequent other label and its share of all the controls' records of the class."""
    from ...train import predict_logits
    rows = []
    for ds in run.S["datasets"]:
        grays = run.grays[(ds, run.S["decision_method"])]
        gs = [grays[p.name] for p in run.prods[ds] if p.kind == "none"]
        y = np.concatenate([g.y.numpy() for g in gs])
        pred = np.concatenate([predict_logits(run.base_models[ds], g.x, cache=True).argmax(1).numpy() for g in gs])
        for c in range(run.base_models[ds].num_classes):
            other = np.bincount(pred[(y == c) & (pred != c)], minlength=run.base_models[ds].num_classes)
            top = int(other.argmax())
            rows.append({"dataset": ds, "class": c, "base model's other label": top if other[top] else "–",
                         "its share": other[top] / max(int((y == c).sum()), 1)})
    return pd.DataFrame(rows).set_index(["dataset", "class"])


def simulate(run: Run) -> pd.DataFrame:
    """Step 7's false-alarm rate simulated at this run's records per class and controls (each control
    is judged against the others: n - 1), on the settings' grid and in a world fitted to each dataset's
    controls (:func:`~.decision.fitted_world`), once per class count among the datasets."""
    S, rows = run.S, []
    n = len(S["control_seeds"]) - 1
    fitted = {ds: fitted_world(np.array(list(g.per_class), float), int(S["n_per_class"]), f"{ds}: fitted to this run")
              for ds, g in run.rb[run.rb.kind == "none"].groupby("dataset", sort=False)}
    ks = sorted({run.base_models[ds].num_classes for ds in S["datasets"]})
    for k in ks:
        worlds = tuple(w for ds, w in fitted.items() if run.base_models[ds].num_classes == k)
        r = false_alarm_simulation(tuple(S["sim_base_rates"]), tuple(S["sim_rhos"]), records=int(S["n_per_class"]),
                                   n_controls=n, classes=k, reps=int(S["sim_reps"]), alpha=S["alpha"],
                                   margin=S["margin"], correction=S["correction"], worlds=worlds, seed=run.seed)
        rows += [{**x, "base rate": f"{x['base rate']} (K = {k})"} if len(ks) > 1 else x for x in r]
    run.tables["simulation"], run.sim_worst = simulation_table(rows, S["alpha"], S["sim_rho_claim"])
    return run.tables["simulation"]


def before_after(run: Run) -> pd.DataFrame:
    """The same models, gray data and scores decided by the rule it replaced (t prediction intervals on
    the shares, "before") and by the beta-binomial family ("after"); rule-based attack."""
    rows = []
    for (ds, kind), g in run.rb.groupby(["dataset", "kind"], sort=False):
        rows.append({"dataset": ds, "production": "no drift: false alarms" if kind == "none" else f"{kind}: detected",
                     "models": len(g), "before (t-interval)": int(g.drift_before.sum()),
                     "before: classes exact": "–" if kind == "none" else int(g.classes_exact_before.sum()),
                     "after (beta-binomial)": int(g.drift.sum()),
                     "after: classes exact": "–" if kind == "none" else int(g.classes_exact.sum()),
                     "drifted classes": str(list(g.affected.iloc[0])),
                     "after: flagged (per seed)": "; ".join(str(list(f)) for f in g.flagged)})
    run.tables["before_after"] = pd.DataFrame(rows).set_index(["dataset", "production"])
    return run.tables["before_after"]


def beyond(run: Run) -> pd.DataFrame:
    """Per drifted model: the flagged classes beside the classes whose test recall or precision fell
    (returned), and the evidence for every class flagged beyond the drifted ones."""
    S, brow, erow = run.S, [], []
    for ds in S["datasets"]:
        test = profile_data(ds, "test", run.P).subset(S["n_accuracy_test"], run.seed)
        run.acc_changes[ds] = {a.production: a for a in accuracy_changes(run.prods[ds], test, S)}
        ctrl = [a for a in run.acc_changes[ds].values() if a.kind == "none"]
        cr, cp = np.array([a.recall for a in ctrl]), np.array([a.precision for a in ctrl])
        for r in run.rb[(run.rb.dataset == ds) & (run.rb.kind != "none")].itertuples():
            a = run.acc_changes[ds][r.production]
            extra = sorted(set(r.flagged) - set(r.affected))
            brow.append({"dataset": ds, "production": r.production, "drifted classes": str(list(r.affected)),
                         "flagged": str(list(r.flagged)), "recall fell": str(list(a.recall_fell)),
                         "precision fell": str(list(a.precision_fell)),
                         "flagged ⊆ accuracy fell": set(r.flagged) <= set(a.changed), "flagged beyond the drifted": str(extra)})
            for c in extra:
                erow.append({"dataset": ds, "production": r.production,
                             "class": f"{c} ({run.base_portions[ds].classes[c]})", "recall": a.recall[c],
                             "recall, controls": mean_sd(cr[:, c]), "precision": a.precision[c],
                             "precision, controls": mean_sd(cp[:, c][np.isfinite(cp[:, c])]),
                             "precision drop": float(np.nanmean(cp[:, c]) - a.precision[c]),
                             "accuracy fell": c in a.changed})
    cols = ["dataset", "production", "class", "recall", "recall, controls", "precision", "precision, controls",
            "precision drop", "accuracy fell"]
    run.tables["evidence"] = pd.DataFrame(erow, columns=cols).set_index(["dataset", "production", "class"])
    run.tables["beyond"] = pd.DataFrame(brow).set_index(["dataset", "production"])
    return run.tables["beyond"]


def input_tests(run: Run) -> pd.DataFrame:
    """The MMD and KS input-drift tests on every production model beside the gray-data decision."""
    S, rows = run.S, []
    for ds in S["datasets"]:
        for i, p in enumerate(run.prods[ds]):
            r = input_drift_test(run.base_models[ds], run.base_portions[ds], p.data, n=S["n_input_test"],
                                 n_permutations=S["mmd_permutations"], alpha=S["alpha"], seed=run.seed + i)
            g = run.rb[(run.rb.dataset == ds) & (run.rb.production == p.name)]
            rows.append({"dataset": ds, "drift": p.kind, "MMD alarm": r.mmd_drift, "KS alarm": r.ks_drift,
                         "gray-data alarm": bool(g.drift.iloc[0])})
    t = pd.DataFrame(rows).groupby(["dataset", "drift"], sort=False).agg(
        models=("MMD alarm", "size"), MMD=("MMD alarm", "sum"), KS=("KS alarm", "sum"), gray=("gray-data alarm", "sum"))
    run.tables["inputs"] = t.rename(columns={"MMD": "MMD alarms", "KS": "KS alarms", "gray": "gray-data alarms (rule-based)"})
    return run.tables["inputs"]


def one_call(run: Run) -> pd.DataFrame:
    """``detect_drift`` on the first swap model of the first dataset, the no-drift models as controls."""
    S, ds = run.S, run.S["datasets"][0]
    swap = next(p for p in run.prods[ds] if p.kind == "swap")
    run.report = D.detect_drift(run.base_models[ds], swap.model, controls=[p.model for p in run.prods[ds] if p.kind == "none"],
                                method=S["decision_method"], n_per_class=S["n_per_class"],
                                attacks=run.attacks[ds]["rule-based"][0], margin=S["margin"], alpha=S["alpha"],
                                correction=S["correction"], gray_settings=S, seed=run.seed, dataset=ds, profile=run.P)
    return pd.DataFrame({k: v.to_dict() for k, v in run.report.decision.items()}).T

