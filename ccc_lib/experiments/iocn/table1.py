"""Chapter 3's Table 1 (one-vs-rest AUROC): every row trained on one inlier class in one input setting and
scored on the whole test set (:func:`one_vs_rest` → :class:`OneVsRest`), the table itself
(:func:`auroc_table`), and the reading of one block: the decision rules (:func:`decision_rates`), Table 2
(:func:`confusion_auroc`), Figure 3 (:func:`extreme_examples`), the INNs' budget curves
(:func:`budget_table`); chapter 1's counterfeits are scored in :mod:`.closing`."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...baselines import make_oneclass_baseline
from ...cache import fingerprint, load_or_compute
from ...checks import check_features, check_fraction
from ...iocn import IOCN, FlowDetector, INNConfig, TrainConfig
from ...metrics import ood_metrics
from ...profiles import Profile, get_profile
from ...utils import cpu_threads, get_device, to_numpy
from . import deep_baselines as D
from . import inputs
from .settings import block_name

#: the row that scores a test image by its input's norm alone (what a row gets for free from the inputs)
NORM_ROW = "norm only (‖x‖)"
#: GOAD with deepOD's initialisation call made to work (a labelled side row, not deepOD's default)
GOAD_PATCHED = "GOAD (deepOD, init patch)"


@dataclass
class OneVsRest:
    """Everything the chapter reads from one block of Table 1 (one feature kind in one input setting)."""
    feature_kind: str
    inputs: str
    class_names: list
    inliers: tuple                                  # the inlier classes run
    methods: list
    y_test: np.ndarray
    calib: np.ndarray                               # the calibration half of the test set
    auroc: dict = field(default_factory=dict)       # method -> {class: AUROC}
    scores: dict = field(default_factory=dict)      # method -> {class: scores of the whole test set}
    detectors: dict = field(default_factory=dict)   # method -> {class: fitted detector}
    evals: dict = field(default_factory=dict)       # INN method -> {class: [{step, train_seconds, auroc}]}
    seconds_per_step: dict = field(default_factory=dict)   # INN method -> {class: s}
    from_cache: dict = field(default_factory=dict)  # method -> {class: bool}
    fit_seconds: dict = field(default_factory=dict)  # method -> {class: s}, this run (0-ish when cached)
    pca: dict = field(default_factory=dict)         # class -> the split's fitted map (``transform``)
    inputs_test: dict = field(default_factory=dict)  # class -> the test rows as every row saw them
    inside_train: dict = field(default_factory=dict)  # class -> IOCN share of training inliers inside
    recon: dict = field(default_factory=dict)       # class -> max reconstruction error (IOCN)
    deepod: dict = field(default_factory=dict)      # deepOD row -> {class: {"history", "fixes", "score_seconds", "scaling"}}

    @property
    def name(self) -> str:
        return block_name(self.feature_kind, self.inputs)

    def mean_auroc(self) -> dict:
        return {m: float(np.mean(list(v.values()))) for m, v in self.auroc.items()}

    def complete(self, m: str) -> bool:
        """Whether row ``m`` ran on every inlier class of the block."""
        return set(self.auroc.get(m, {})) == set(self.inliers)


def default_methods(feature_kind: str, S: dict, inputs_setting: str | None = None) -> list:
    """The rows of a block: PyOD, deepOD (on ``S["deepod_feature_sets"]``; GOAD with the initialisation
    patch where ``S["goad_init_patch_classes"]`` and ``S["goad_init_patch_inputs"]`` say), the norm-only row,
    FLOW and IOCN."""
    methods = list(S["baselines"])
    if feature_kind in S.get("deepod_feature_sets", ()):
        methods += [f"{m} (deepOD)" for m in S.get("deepod", ())]
        if ("GOAD" in S.get("deepod", ()) and S.get("goad_init_patch_classes")
                and (inputs_setting or S["inputs"][0]) in S.get("goad_init_patch_inputs", ())):
            methods.append(GOAD_PATCHED)
    return methods + [NORM_ROW, "FLOW", "IOCN"]


def _split(feats, c, S, seed, inp):
    return inputs.one_class_split(feats, c, S["feature_dim"], S["n_train"], seed=seed, inputs=inp,
                                  noise=S.get("sphere_noise", 0.0), n_probe=tuple(S.get("probe", (0, 0))))


def _classes_of(m: str, S: dict, inp: str) -> tuple:
    if m == GOAD_PATCHED:
        return tuple(c for c in S.get("goad_init_patch_classes", ()) if c in S["classes"])
    if m.endswith(" (deepOD)"):
        return tuple(c for c in D.deepod_classes(m[:-len(" (deepOD)")], S, inp) if c in S["classes"])
    return tuple(S["classes"])


def one_vs_rest(feature_kind: str, S: dict, profile: str | Profile | None = None, inputs_setting: str | None = None,
                methods=None, seed: int = 0, cache: bool = True, verbose: bool = False) -> OneVsRest:
    """Train every row on each inlier class of ``S["classes"]`` in one input setting (default: the headline,
    ``S["inputs"][0]``) and score the whole test set. The INN rows record their AUROC at ``S["eval_at"]``
    (the budget curves); with ``S["stack_inns"]`` each INN method's classes are trained as one stacked model."""
    prof = get_profile(profile)
    inp = inputs_setting or S["inputs"][0]
    feats = inputs.fashion_features(feature_kind, prof, dataset=S.get("dataset", "fashion_mnist"),   # cached first
                                    train_pool=S.get("train_pool"))
    methods = default_methods(feature_kind, S, inp) if methods is None else list(methods)
    if cache and S.get("stack_inns") and len(S["classes"]) > 1:
        from ...batched import fit_stacked
        sps = [_split(feats, c, S, seed, inp) for c in S["classes"]]
        for m in ("IOCN", "FLOW"):
            if m in methods:
                fit_stacked([_inn_detector(m, S, sp, feature_kind, prof, c, seed, cache) for c, sp in zip(S["classes"], sps)],
                            [sp.train for sp in sps], [_inn_eval_fn(sp, m.lower()) for sp in sps])
    if cache and len(S["classes"]) > 1:
        # the classes side by side (ccc_lib.parallel.run_jobs); each job fills the cache, the loop below reads it
        from ...parallel import run_jobs
        run_jobs(class_job, [{"feature_kind": feature_kind, "S": {**S, "classes": (c,)}, "profile": prof.name,
                              "inputs_setting": inp, "methods": [m for m in methods if c in _classes_of(m, S, inp)], "seed": seed}
                             for c in S["classes"]], when_done="skip")
    y_test = feats["test"][1]
    res = OneVsRest(feature_kind, inp, feats["classes"], tuple(S["classes"]), list(methods), y_test,
                    inputs.calibration_mask(y_test, seed))
    for m in methods:
        for d in (res.auroc, res.scores, res.detectors, res.from_cache, res.fit_seconds):
            d[m] = {}
    for c in S["classes"]:
        sp = _split(feats, c, S, seed, inp)
        y = sp.is_out
        res.pca[c], res.inputs_test[c] = sp.pca, sp.test
        for m in methods:
            if c not in _classes_of(m, S, inp):
                continue
            t0 = time.perf_counter()
            det, cached = None, False
            if m in ("IOCN", "FLOW"):
                det = _inn_detector(m, S, sp, feature_kind, prof, c, seed, cache)
                det.fit(sp.train, eval_fn=_inn_eval_fn(sp, m.lower()), desc=f"{m} class {c}")
                res.evals.setdefault(m, {})[c] = det.meta.get("evals", [])
                res.seconds_per_step.setdefault(m, {})[c] = det.meta["seconds_per_step"]
                cached = bool(det.meta.get("from_cache"))
                inn = _inn_numbers(det, sp, m == "IOCN", cache)
                s = inn["scores"]
            elif m == NORM_ROW:
                s = np.linalg.norm(sp.test.astype(np.float64), axis=1)
            elif m.endswith(" (deepOD)") or m == GOAD_PATCHED:
                out = D.deepod_scores("GOAD (deepOD)" if m == GOAD_PATCHED else m, sp, S, seed, cache,
                                      init_patch=m == GOAD_PATCHED)
                s, cached = out["scores"], out["from_cache"]
                res.deepod.setdefault(m, {})[c] = {k: out[k] for k in ("history", "fixes", "score_seconds", "scaling")}
            else:
                key = {"method": m, "seed": seed, "data": sp.key}
                det = LazyBaseline(m, sp.train, seed, sp.key)
                s, cached, _ = _scores_cached("iocn-pyod-scores", key, lambda: det.score(sp.test), cache)
            res.fit_seconds[m][c] = time.perf_counter() - t0
            res.auroc[m][c] = ood_metrics(s[y == 0], s[y == 1])["auroc"]
            res.scores[m][c], res.detectors[m][c], res.from_cache[m][c] = s, det, cached
            if m == "IOCN":
                res.inside_train[c], res.recon[c] = inn["inside_train"], inn["recon"]
            if verbose:
                print(f"class {c} {m:24s} AUROC {res.auroc[m][c]:.4f}  {time.perf_counter() - t0:.1f}s", flush=True)
    return res


def class_job(feature_kind: str, S: dict, profile: str, inputs_setting: str, methods, seed: int) -> dict:
    """One inlier class of :func:`one_vs_rest` (``S["classes"]`` has one entry) through the cache: the job
    :func:`one_vs_rest` runs per class with :func:`ccc_lib.parallel.run_jobs`. Returns the AUROCs."""
    res = one_vs_rest(feature_kind, {**S, "stack_inns": False}, profile, inputs_setting, methods=methods, seed=seed)
    return {m: v for m, v in res.auroc.items()}


def _inn_detector(m: str, S: dict, sp, feature_kind: str, prof: Profile, c: int, seed: int, cache: bool):
    """Table 1's IOCN or FLOW row for inlier class ``c``, unfitted (its checkpoint tag names the class)."""
    tc = TrainConfig(objective=m.lower(), steps=S["steps"] if m == "IOCN" else S["flow_steps"], lr=S["lr"],
                     batch_size=S["batch_size"], noise=S["noise"], seed=seed, eval_at=tuple(S["eval_at"]))
    cls = IOCN if m == "IOCN" else FlowDetector
    return cls(INNConfig(dim=sp.train.shape[1], n_blocks=S["n_blocks"], clamp=S["clamp"], seed=seed), tc,
               standardise_divisor=S["divisor"], cache_tag=f"fashion-{feature_kind}-{prof.name}-class{c}" if cache else None,
               data_key=sp.key)


def _inn_numbers(det, sp, iocn: bool, cache: bool) -> dict:
    """A fitted INN row's test scores and, for the IOCN, the share of training inliers inside the cube and the
    largest reconstruction error |INN⁻¹(INN(x)) − x| over the training and test rows; through the tensor cache
    (keyed by the model's weights and the split), so a warm rebuild does not run the INN again."""
    def compute():
        out = {"scores": torch.as_tensor(np.asarray(det.score(sp.test), dtype=np.float64)), "meta": {}}
        if iocn:
            out["meta"] = {"inside_train": share_inside_cube(det, sp.train),
                           "recon": float(max(reconstruction_error(det, sp.train).max(),
                                              reconstruction_error(det, sp.test).max()))}
        return out
    if cache:
        out = load_or_compute("iocn-inn-numbers", {"model": fingerprint(det.model), "iocn": iocn, "data": sp.key}, compute)
    else:
        out = compute()
    return {"scores": out["scores"].numpy(), **out["meta"]}


def _inn_eval_fn(sp, obj: str):
    """The budget curve's evaluation during training: test AUROC (and for the IOCN the share of training
    inliers inside the cube) of the model at that step."""
    xte_t, y = torch.as_tensor(sp.test), sp.is_out

    def eval_fn(model):
        det = IOCN() if obj == "iocn" else FlowDetector()
        det.model, det.inn_cfg = model, model.cfg
        s = det.score(xte_t)
        ev = {"auroc": ood_metrics(s[y == 0], s[y == 1])["auroc"]}
        if obj == "iocn":
            ev["inside_train"] = float((det.score(sp.train) < 0).mean())
        return ev
    return eval_fn


def reconstruction_error(det, x) -> np.ndarray:
    """max_k |INN⁻¹(INN(x))_k - x_k| per row (in the input's own units)."""
    x = check_features(x, "x", dim=det.inn_cfg.dim).to(get_device())
    with torch.inference_mode(), cpu_threads(1):
        z, _ = det.model(x)
        xr = det.model.inverse(z)
    return to_numpy((xr - x).abs().amax(1))


def share_inside_cube(det: IOCN, x) -> float:
    """The share of rows that the IOCN maps inside the cube (s < 0)."""
    return float((det.score(x) < 0).mean())


def _scores_cached(kind: str, key: dict, fit_score, cache: bool) -> tuple[np.ndarray, bool, float]:
    """``fit_score()`` (fit a baseline, score the test set) through the tensor cache under ``key``; returns
    ``(scores, from_cache, seconds it took when computed)``."""
    def compute():
        t0 = time.perf_counter()
        s = fit_score()
        return {"scores": torch.as_tensor(np.asarray(s, dtype=np.float64)), "meta": {"seconds": time.perf_counter() - t0}}
    out = load_or_compute(kind, key, compute) if cache else {**compute(), "from_cache": False}
    return out["scores"].numpy(), bool(out["from_cache"]), float(out["meta"].get("seconds", float("nan")))


class LazyBaseline:
    """A PyOD row whose test scores came from the cache: fitted (on the same rows, with the same seed) only if
    something else asks it to score, e.g. chapter 1's counterfeits."""

    def __init__(self, name: str, train: np.ndarray, seed: int, data_key: dict | None = None):
        self.name, self.train, self.seed, self.det, self.data_key = name, train, seed, None, data_key

    def score(self, x, x_key: dict | None = None) -> np.ndarray:
        """Scores of ``x``, through the tensor cache (keyed by the method, its training rows, the seed and
        ``x``, or ``x_key``: what ``x`` is): a warm rebuild fits nothing."""
        def compute():
            if self.det is None:
                self.det = make_oneclass_baseline(self.name).fit(self.train, seed=self.seed)
            return {"scores": torch.as_tensor(np.asarray(self.det.score(x), dtype=np.float64))}
        key = {"method": self.name, "seed": self.seed,
               **({"data": self.data_key} if self.data_key is not None else {"train": fingerprint(torch.as_tensor(self.train))}),
               "x": x_key if x_key is not None else fingerprint(torch.as_tensor(np.asarray(x)))}
        return load_or_compute("iocn-baseline-scores", key, compute)["scores"].numpy()


def auroc_table(results: dict) -> "object":
    """Table 1: one row per (block, method), one column per inlier class, the mean over the classes it ran on
    (×100) and how many classes that is."""
    import pandas as pd
    blocks = []
    for name, res in results.items():
        t = pd.DataFrame(res.auroc).T
        t = t[[c for c in res.inliers if c in t.columns]]
        t.columns = [res.class_names[c] for c in t.columns]
        t = t * 100
        t["mean"] = t.mean(axis=1)
        t["classes"] = t.drop(columns="mean").notna().sum(axis=1)
        t.index = pd.MultiIndex.from_product([[name], t.index], names=["block", "method"])
        blocks.append(t)
    return pd.concat(blocks)


def decision_rates(res: OneVsRest, alpha: float = 0.05) -> "object":
    """The decision rules as a user would apply them, on the evaluation half of the test set (the calibration
    half is held out): per method, a threshold at the (1 − ``alpha``) quantile of the scores of the held-out
    inliers of the calibration half, and for the IOCN also the paper's rule (outside the cube, s > 0). Rates
    are means over the inlier classes: false alarms = share of the evaluation half's inliers flagged,
    detection = share of its outliers flagged."""
    import pandas as pd
    check_fraction(alpha, "alpha")
    rows = []
    ev = ~res.calib
    for m, per in res.scores.items():
        rules = {f"calibrated on held-out inliers ({alpha:.0%})": None}
        if m == "IOCN":
            rules = {"the paper's rule: outside the cube (s > 0)": 0.0, **rules}
        for rule, thr in rules.items():
            fa, det = [], []
            for c, s in per.items():
                inl = res.y_test == c
                t = np.quantile(s[res.calib & inl], 1 - alpha) if thr is None else thr
                fa.append(float((s[ev & inl] > t).mean()))
                det.append(float((s[ev & ~inl] > t).mean()))
            rows.append({"method": m, "rule": rule, "false alarms (held-out inliers)": float(np.mean(fa)),
                         "detection (held-out outliers)": float(np.mean(det))})
    return pd.DataFrame(rows)


def confusion_auroc(res: OneVsRest, method: str = "IOCN") -> "object":
    """Table 2: AUROC of the detector trained on class i (row) for class i's test images against class j's
    test images (column); the diagonal is empty."""
    import pandas as pd
    names = [res.class_names[c] for c in res.inliers]
    M = pd.DataFrame(np.nan, index=pd.Index(names, name="trained on"), columns=pd.Index(names, name="tested against"))
    for i in res.inliers:
        s = res.scores[method][i]
        for j in res.inliers:
            if i != j:
                M.loc[res.class_names[i], res.class_names[j]] = ood_metrics(s[res.y_test == i], s[res.y_test == j])["auroc"]
    return M


def extreme_examples(res: OneVsRest, c: int, k: int = 5, method: str = "IOCN") -> dict:
    """Figure 3 for inlier class ``c``: indices into the test set of the ``k`` inliers with the lowest and
    highest scores and the ``k`` outliers with the lowest and highest scores, named as the paper's Figure 3
    names them (inliers as the positive class): TP = inliers scored lowest, FN = inliers scored highest,
    FP = outliers scored lowest, TN = outliers scored highest."""
    s = res.scores[method][c]
    inl, out = np.flatnonzero(res.y_test == c), np.flatnonzero(res.y_test != c)
    oi, oo = inl[np.argsort(s[inl], kind="stable")], out[np.argsort(s[out], kind="stable")]
    return {"TP": oi[:k].copy(), "FN": oi[::-1][:k].copy(), "FP": oo[:k].copy(), "TN": oo[::-1][:k].copy()}


def budget_table(res: OneVsRest, methods=("FLOW", "IOCN")) -> "object":
    """Mean over classes of the AUROC (and the IOCN's share inside the cube) at each recorded step."""
    import pandas as pd
    rows = []
    for m in methods:
        ev = res.evals.get(m, {})
        if not ev:
            continue
        steps = [e["step"] for e in next(iter(ev.values()))]
        for i, st in enumerate(steps):
            per = [ev[c][i] for c in ev]
            row = {"method": m, "step": st, "mean AUROC": float(np.mean([e["auroc"] for e in per])),
                   "train seconds (sum over classes)": float(np.sum([e["train_seconds"] for e in per]))}
            if "inside_train" in per[0]:
                row["share of training inliers inside the cube"] = float(np.mean([e["inside_train"] for e in per]))
            rows.append(row)
    return pd.DataFrame(rows)


def time_to_reach(budget, method: str, target: float):
    """Training wall-clock (summed over classes) at the first recorded step where ``method``'s mean AUROC
    reaches ``target``; None if it never does."""
    b = budget[budget["method"] == method].sort_values("step")
    hit = b[b["mean AUROC"] >= target]
    return None if hit.empty else float(hit["train seconds (sum over classes)"].iloc[0])
