"""The runs of chapter 2's notebook, step by step, on one state object (:class:`Chapter`), so that the notebook's
cells stay short: the classifiers and image sets (:meth:`Chapter.load`), the fingerprints of every configuration
and the choice on validation data (:meth:`Chapter.fingerprint`), the baselines tuned on validation data and
their ε sweeps, every detector's scores, NeuralFP's further autoencoder seeds and its comparison with every
baseline. The claims and sentences are :mod:`.verdicts`; the figures :mod:`.figures`; chapter 1's counterfeits
:mod:`.counterfeits`."""
from __future__ import annotations

import time

import pandas as pd

from ... import baselines as bl
from ...cache import fingerprint
from ...metrics import ood_metrics
from ...parallel import run_jobs
from ...train import get_classifier, predict_logits, profile_data
from .comparison import auroc_over_seeds, sweep_cached, tune_baselines, versus_baselines, winners_table
from .fitting import bank_key, fit_bank_job, fit_config, tune_on_validation
from .protocol import PooledActivations, spatial_shifts, split_validation, taps_by_pool, validation_ood
from .settings import Config, auroc, chapter_models, family
from .slides import SLIDES_AUROC, SLIDES_SOURCES, eps_with_slides, per_layer_with_slides, slides_label
from .studies import false_alarm_table, per_layer_auroc

__all__ = ["Chapter", "VARIANTS", "ODIN_LABEL", "MAHA_LABEL"]

#: NeuralFP's scores in the tables: the slides' one-out rule (our max |z|) and our two variants
VARIANTS = {"max": "NeuralFP (one-out, max |z|)", "upper": "NeuralFP upper only (ours)",
            "mahalanobis": "NeuralFP joint fingerprint (ours)"}
ODIN_LABEL, MAHA_LABEL = "ODIN (T, ε tuned on validation)", "Mahalanobis (ε tuned on validation)"


class Chapter:
    """Chapter 2's run at profile ``P`` with settings ``S``; each step fills attributes the next ones read
    (the notebook shows what each returns)."""

    def __init__(self, P, S: dict, seed: int = 0, alpha=None):
        self.P, self.S, self.seed, self.alpha = P, S, seed, alpha
        self.run_models, self.skipped = chapter_models(P)
        self.stops: dict = {}                    # (model, configuration, seed) → the bank's fit_info

    # ------------------------------------------------------------------ data
    def load(self) -> None:
        """The classifiers (chapter 0's, from the cache) and, per model, the split: fit, validation ID and
        OOD, the test sets (ID, the profile's OOD sets, the spatial shifts)."""
        P, S, seed = self.P, self.S, self.seed
        for ds, why in self.skipped.items():
            print(f"skipped: {ds} classifier — {why}")
        self.models, self.infos, self.fit_data, self.val_data, self.sets, self.near, self.val_source = \
            {}, {}, {}, {}, {}, {}, {}
        for ds in self.run_models:
            model, info = get_classifier(ds, P, seed=seed)
            self.models[ds], self.infos[ds] = model, info
            shape = info["train_data"].shape
            split = split_validation(info["train_data"], info["test_data"], S["val_n"], S["test_limit"], seed=seed)
            self.fit_data[ds], val, test, self.val_source[ds] = split["fit"], split["val"], split["test"], split["source"]
            self.val_data[ds] = {"val_id": val.x, "val_ood": validation_ood(shape, S["val_ood_n"], P, seed=seed)}
            self.sets[ds] = {"test": test.x}
            for ood in P.ood_sets[ds]:
                self.sets[ds][ood] = profile_data(ood, "test", P, shape=shape).x[:S["ood_limit"]]
            shifts = spatial_shifts(test.x[:S["shift_n"]], S["shift_px"])
            self.sets[ds].update(shifts)
            self.near[ds] = list(shifts)
            print(f"{ds:14s} test accuracy {info['test_accuracy']:.4f}; fit on {len(self.fit_data[ds])}, validation "
                  f"{len(val)} ID (from the {self.val_source[ds]} split) + {len(self.val_data[ds]['val_ood'])} OOD; "
                  "test sets: " + ", ".join(f"{k} {len(v)}" for k, v in self.sets[ds].items()))
        self.OOD = {ds: [k for k in self.sets[ds] if k != "test"] for ds in self.sets}   # every test OOD set
        self.FAR = {ds: list(P.ood_sets[ds]) for ds in self.sets}                      # the other datasets

    # ------------------------------------------------------------------ fingerprints
    def fingerprint(self) -> pd.DataFrame:
        """Fit every configuration of every model (side by side into the checkpoint cache, then read back),
        score every set, pick each model's configuration on validation data; returns the ablation table."""
        P, S, seed = self.P, self.S, self.seed
        self.configs = [Config(*c) for c in S["configs"]]
        t0 = time.perf_counter()
        jobs = run_jobs(fit_bank_job, [dict(ds=ds, profile=P.name, taps=c.taps, pool_to=c.pool_to, seed=seed,
                                            clf_seed=seed, alpha=self.alpha) for ds in self.models for c in self.configs])
        print(f"{len(jobs)} autoencoder banks ready in {time.perf_counter() - t0:.0f} s "
              f"({sum(not j['from_cache'] for j in jobs)} trained, the rest from the cache)")
        self.fitted, self.chosen, rows = {}, {}, []
        for ds, model in self.models.items():
            acts = PooledActivations(model, {**self.val_data[ds], **self.sets[ds]}, taps_by_pool(model, self.configs))
            self.fitted[ds] = {}
            for cfg in self.configs:
                fc = self.fitted[ds][cfg] = fit_config(model, cfg, self.fit_data[ds], acts, S,
                                                       cache_key=self.bank_key(ds), seed=seed)
                fi = self.stops[(ds, cfg.label, seed)] = fc.det.fit_info
                how = "from cache" if fi["from_cache"] else f"trained in {fi.get('train_seconds', float('nan')):.1f} s"
                row = {"model": ds, "configuration": cfg.label, "layers": len(fc.det.taps),
                       "validation AUROC (one-out)": fc.val_auroc["max"], "validation gap (tie-break)": fc.val_gap["max"]}
                for o in self.OOD[ds]:
                    row[f"test: {o}"] = auroc(fc.det.score_errors(fc.errors["test"], "max"),
                                              fc.det.score_errors(fc.errors[o], "max"))
                rows.append(row)
                print(f"{ds:14s} {cfg.label:28s} {len(fc.det.taps):2d} layers, fit on {fi['n_fit']}, "
                      f"calibrated on {fi['n_calibration']}; autoencoders {how}")
            self.chosen[ds] = tune_on_validation({c: f.val_auroc["max"] for c, f in self.fitted[ds].items()},
                                                 tiebreak={c: f.val_gap["max"] for c, f in self.fitted[ds].items()})
            print(f"{ds}: chosen on validation data → {self.chosen[ds].label}")
            del acts
        self.dets = {ds: self.fitted[ds][self.chosen[ds]].det for ds in self.models}
        self.ERR = {ds: self.fitted[ds][self.chosen[ds]].errors for ds in self.models}
        self.ablation = pd.DataFrame(rows).set_index(["model", "configuration"])
        return self.ablation

    def bank_key(self, ds: str) -> dict:
        return bank_key(self.models[ds], ds, self.P, self.S, self.val_source[ds])

    def held_out_counts(self) -> dict:
        """``{image role: "model: count; ..."}`` for :func:`~.differ.held_out`."""
        counts = {}
        for ds in self.models:
            fi = self.dets[ds].fit_info
            for k, n in (("autoencoder fit", fi["n_fit"]), ("calibration", fi["n_calibration"]),
                         ("validation ID", len(self.val_data[ds]["val_id"])),
                         ("validation OOD", len(self.val_data[ds]["val_ood"])), ("test ID", len(self.sets[ds]["test"])),
                         ("test OOD and spatial shifts", sum(len(v) for k2, v in self.sets[ds].items() if k2 != "test"))):
                counts[k] = (counts[k] + "; " if k in counts else "") + f"{ds}: {n:,}"
        return counts

    # ------------------------------------------------------------------ NeuralFP's tables (the chosen configuration)
    def combined_tables(self) -> pd.DataFrame:
        """The combined AUROC of each variant (``self.combined``); returns the headline table (the one-out
        score beside the slides' numbers)."""
        all_ood = list(dict.fromkeys(o for ds in self.OOD for o in self.OOD[ds]))
        self.combined = {}
        for c in VARIANTS:
            tab = pd.DataFrame(index=list(self.dets), columns=all_ood, dtype=float)
            for ds, det in self.dets.items():
                for o in self.OOD[ds]:
                    tab.loc[ds, o] = auroc(det.score_errors(self.ERR[ds]["test"], c), det.score_errors(self.ERR[ds][o], c))
            self.combined[c] = tab
        slides = pd.DataFrame(index=list(self.dets), columns=all_ood, dtype=float)
        for ds in self.dets:
            for o in self.OOD[ds]:
                slides.loc[ds, o] = SLIDES_AUROC.get((family(ds), family(o)), float("nan"))
        print(f"AUROC; NaN = not applicable / not in the slides; source of the slides' row: {SLIDES_SOURCES['combined']}")
        head = pd.concat({"NeuralFP (one-out), ours": self.combined["max"], slides_label(self.P): slides})
        return head.swaplevel().sort_index().dropna(axis=1, how="all")

    def variants_table(self) -> pd.DataFrame:
        """The combined AUROC of the one-out score and of our two variants, one block each."""
        return pd.concat({VARIANTS[c]: t for c, t in self.combined.items()})

    def low_error_layers(self) -> tuple[list, int]:
        """(layer, model, other dataset) combinations whose raw-error AUROC is below 0.5 (OOD errors *lower*),
        and the number of combinations."""
        low = []
        for ds, det in self.dets.items():
            for o in self.FAR[ds]:
                for j, t in enumerate(det.taps):
                    a_raw = auroc(self.ERR[ds]["test"][:, j], self.ERR[ds][o][:, j])
                    if a_raw < 0.5:
                        low.append(f"{ds} model vs {o}, layer {j + 1} ({t}): raw-error AUROC {a_raw:.3f}")
        return low, sum(len(det.taps) * len(self.FAR[ds]) for ds, det in self.dets.items())

    def per_layer_tables(self) -> dict:
        """Per model: the per-layer table beside the slides' (other datasets) and the spatial shifts' table."""
        self.per_layer, out = {}, {}
        for ds, det in self.dets.items():
            self.per_layer[ds] = {o: per_layer_auroc(det, self.ERR[ds]["test"], self.ERR[ds][o]) for o in self.OOD[ds]}
            src = SLIDES_SOURCES.get(("per_layer", family(ds)), "no slides table for this model")
            out[f"{ds} model ({self.chosen[ds].label}) — AUROC per layer; slides' column: {src}"] = per_layer_with_slides(
                ds, {o: self.per_layer[ds][o] for o in self.FAR[ds]}, det.taps, self.P)
        for ds in self.dets:
            out[f"{ds} model, spatial shifts (not in the slides): AUROC per layer, both quantities"] = pd.concat(
                {o: self.per_layer[ds][o] for o in self.near[ds]}, axis=1)
        return out

    def false_alarms(self) -> pd.DataFrame:
        self.fa = {ds: false_alarm_table(det, self.ERR[ds]["test"], {o: self.ERR[ds][o] for o in self.OOD[ds]},
                                         alpha=self.S["alpha"]) for ds, det in self.dets.items()}
        self.false_alarm_rows = pd.concat(self.fa, names=["model"])
        return self.false_alarm_rows

    # ------------------------------------------------------------------ baselines
    def tune_baselines(self) -> pd.DataFrame:
        """Fit Mahalanobis, tune ODIN's (T, ε) and Mahalanobis' ε on validation data; the validation tables."""
        S, self.bases, self.choice = self.S, {}, {}
        for ds, model in self.models.items():
            maha = bl.Mahalanobis(model).fit(self.fit_data[ds].subset(S["maha_fit_limit"], seed=self.seed), cache=True)
            self.bases[ds] = {"MSP": bl.MSP(model), "Energy": bl.Energy(model), "Mahalanobis": maha}
            ch = self.choice[ds] = tune_baselines(model, maha, self.val_data[ds]["val_id"], self.val_data[ds]["val_ood"],
                                                  S["temperatures"], S["eps_grid"], fingerprint(model))
            print(f"{ds}: chosen on validation — ODIN T = {ch.odin_T:g}, ε = {ch.odin_eps:g}; Mahalanobis ε = {ch.maha_eps:g}")
        self.val_tables = pd.concat({f"{ds}: ODIN, T = {T:g}": self.choice[ds].odin_val[T] for ds in self.models
                                     for T in self.choice[ds].odin_val.columns}
                                    | {f"{ds}: Mahalanobis": self.choice[ds].maha_val for ds in self.models}, axis=1)
        return self.val_tables

    def eps_tables(self) -> dict:
        """ODIN (at its validation temperature) and Mahalanobis with perturbation over the ε grid on every test
        set; ``{caption: table with the slides' numbers beside}``."""
        S, t0, self.sweeps, self.eps_tabs, out = self.S, time.perf_counter(), {}, {}, {}
        for ds, model in self.models.items():
            mid = fingerprint(model)
            odin = bl.ODIN(model, temperature=self.choice[ds].odin_T)
            mo = bl.MahalanobisODIN(model, base=self.bases[ds]["Mahalanobis"])
            self.sweeps[ds] = {"ODIN": {k: sweep_cached(odin, x, S["eps_grid"], "odin", mid) for k, x in self.sets[ds].items()},
                               "Mahalanobis": {k: sweep_cached(mo, x, S["eps_grid"], "maha", mid)
                                               for k, x in self.sets[ds].items()}}
        print(f"ε sweeps on the test sets: {time.perf_counter() - t0:.1f} s")
        for ds in self.models:
            for meth in ("ODIN", "Mahalanobis"):
                sw = self.sweeps[ds][meth]
                tab = pd.DataFrame({o: {e: auroc(sw["test"][e], sw[o][e]) for e in S["eps_grid"]} for o in self.OOD[ds]})
                tab.index.name = "ε"
                label = f"{meth} (T = {self.choice[ds].odin_T:g}) — {ds} model" if meth == "ODIN" else f"{meth} — {ds} model"
                self.eps_tabs[label] = tab
                src = SLIDES_SOURCES.get((meth, family(ds)), "no slides table for this model")
                out[f"{label}; slides' columns: {src}"] = eps_with_slides(tab, meth, ds, self.P)
        return out

    # ------------------------------------------------------------------ every detector on the test sets
    def score_all(self) -> pd.DataFrame:
        """Every detector's scores on every test set (``self.scores``) and the AUROC table with the oracle rows;
        NeuralFP's rows (the first seed's autoencoders) labelled one model."""
        self.scores, rows = {}, []
        for ds in self.models:
            ch, sw, sc = self.choice[ds], self.sweeps[ds], {}
            for c, label in VARIANTS.items():
                sc[label] = {k: self.dets[ds].score_errors(e, c) for k, e in self.ERR[ds].items() if k in self.sets[ds]}
            logits = {k: predict_logits(self.models[ds], x, cache=True) for k, x in self.sets[ds].items()}
            sc["MSP"] = {k: self.bases[ds]["MSP"].score_logits(v) for k, v in logits.items()}
            sc["Energy"] = {k: self.bases[ds]["Energy"].score_logits(v) for k, v in logits.items()}
            sc[ODIN_LABEL] = {k: v[ch.odin_eps] for k, v in sw["ODIN"].items()}
            sc[MAHA_LABEL] = {k: v[ch.maha_eps] for k, v in sw["Mahalanobis"].items()}
            self.scores[ds] = sc
        for ds in self.models:
            for meth, sc in self.scores[ds].items():
                for o in self.OOD[ds]:
                    rows.append({"model": ds, "detector": meth, "OOD": o, **ood_metrics(sc["test"], sc[o])})
            for o in self.OOD[ds]:
                nf = {c: auroc(f.det.score_errors(f.errors["test"], "max"), f.det.score_errors(f.errors[o], "max"))
                      for c, f in self.fitted[ds].items()}
                rows.append({"model": ds, "detector": "oracle: NeuralFP (one-out), best configuration on test", "OOD": o,
                             "auroc": max(nf.values())})
                for meth in ("ODIN", "Mahalanobis"):
                    sw = self.sweeps[ds][meth]
                    rows.append({"model": ds, "detector": f"oracle: {meth}, best ε on test", "OOD": o,
                                 "auroc": max(auroc(sw["test"][e], sw[o][e]) for e in self.S["eps_grid"])})
        self.comparison = pd.DataFrame(rows)
        t = self.comparison.pivot_table(index=["model", "detector"], columns="OOD", values="auroc", sort=False)
        return t.rename(index=lambda m: f"{m} — one model" if "NeuralFP" in m else m, level="detector")

    # ------------------------------------------------------------------ NeuralFP's seeds, against every baseline
    def train_seeds(self) -> pd.DataFrame:
        """NeuralFP (one-out) at the chosen configuration over the autoencoder seeds (the rows the verdicts rest
        on; the first seed's is the chosen fit); returns each seed's AUROC per (model, OOD set)."""
        P, S, seed = self.P, self.S, self.seed
        self.SEEDS = [seed + k for k in range(S["nfp_seeds"])]
        t0 = time.perf_counter()
        run_jobs(fit_bank_job, [dict(ds=ds, profile=P.name, taps=self.chosen[ds].taps, pool_to=self.chosen[ds].pool_to,
                                     seed=s, clf_seed=seed, alpha=self.alpha) for ds in self.models for s in self.SEEDS[1:]])
        self.seed_scores = {}
        for ds, model in self.models.items():
            cfg = self.chosen[ds]
            acts = PooledActivations(model, {**self.val_data[ds], **self.sets[ds]}, taps_by_pool(model, [cfg]))
            self.seed_scores[ds] = {seed: self.scores[ds][VARIANTS["max"]]}
            for s in self.SEEDS[1:]:
                fc = fit_config(model, cfg, self.fit_data[ds], acts, S, cache_key=self.bank_key(ds), seed=s)
                self.stops[(ds, cfg.label, s)] = fc.det.fit_info
                self.seed_scores[ds][s] = {k: fc.det.score_errors(e, "max") for k, e in fc.errors.items()
                                           if k in self.sets[ds]}
            del acts
        self.seed_seconds = time.perf_counter() - t0
        print(f"NeuralFP over seeds {self.SEEDS} at the chosen configurations: {self.seed_seconds:.0f} s for the extra "
              "seeds (from the cache where trained before)")
        return pd.DataFrame({(ds, o): {f"seed {s}": auroc(v["test"], v[o]) for s, v in self.seed_scores[ds].items()}
                             for ds in self.models for o in self.OOD[ds]}).T

    def versus(self) -> pd.DataFrame:
        """Each (model, OOD set) against EVERY validation-tuned baseline (``self.vs``) and NeuralFP's own
        interval over the seeds (``self.nfp_ci``); returns the winners table."""
        self.BASELINES = {ds: [m for m in self.scores[ds] if not m.startswith("NeuralFP")] for ds in self.models}
        self.vs = {(ds, o): versus_baselines(self.seed_scores[ds], self.scores[ds], self.BASELINES[ds], o)
                   for ds in self.models for o in self.OOD[ds]}
        self.nfp_ci = {(ds, o): auroc_over_seeds(self.seed_scores[ds], o) for ds, o in self.vs}
        self.winners = winners_table(self.vs, self.nfp_ci, len(self.SEEDS))
        return self.winners
