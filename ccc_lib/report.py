"""Numbers that leave a notebook: glued into the book's prose and tables, and written as the
chapter's headline-metrics JSON (collected by the runner for the reproduction report)."""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .utils import absolute_path, atomic_write_json, cache_dir

__all__ = ["glue", "glue_range", "save_metrics", "load_metrics", "paper_vs_ours", "metrics_dir", "hardware",
           "reproduction_summary", "comparisons", "verdicts_without_interval", "run_problems", "verdict_figure", "CounterfeitRow", "LOOKS_AT",
           "counterfeit_rows", "counterfeit_detection", "counterfeit_margin"]


def glue(name: str, value, display: bool = False):
    """``myst_nb.glue`` when available (the book), a no-op otherwise; returns the value."""
    try:
        from myst_nb import glue as _glue
        _glue(name, value, display=display)
    except ImportError:
        pass
    return value


def glue_range(name: str, values, fmt: str = "{:.2f}") -> tuple[float, float]:
    """Glue the range of ``values`` for the prose: ``name`` as Markdown text ("0.48–0.59", or one
    number when min = max, "—" when empty; use ``{glue:md}`name```) and ``name_min`` / ``name_max``
    as numbers. Returns (min, max)."""
    import numpy as np
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (float("nan"), float("nan"))
    text = "—" if not v.size else fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"
    try:
        from IPython.display import Markdown
        glue(name, Markdown(text))
    except ImportError:
        pass
    glue(f"{name}_min", round(lo, 4))
    glue(f"{name}_max", round(hi, 4))
    return lo, hi


def metrics_dir() -> Path:
    """Where the chapters' metrics files go: ``CCC_METRICS_DIR`` (the runner sets it, absolute, to
    ``<out>/metrics``), else ``<cache>/metrics``."""
    d = absolute_path(os.environ.get("CCC_METRICS_DIR") or (cache_dir() / "metrics"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def hardware() -> dict:
    import torch
    from .utils import get_device
    dev = get_device()
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else None
    return {"device": str(dev), "gpu": gpu, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def save_metrics(chapter: str, profile, metrics: dict) -> Path:
    """Write ``<metrics_dir>/<chapter>.json`` atomically (the runner adds run time)."""
    name = getattr(profile, "name", profile)
    path = metrics_dir() / f"{chapter}.json"
    atomic_write_json(path, {"chapter": chapter, "profile": name, "hardware": hardware(), "metrics": metrics})
    return path


def load_metrics(directory=None) -> dict:
    d = Path(directory) if directory else metrics_dir()
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}


def paper_vs_ours(rows: list[dict], glue_as: str | None = None) -> pd.DataFrame:
    """A "paper vs ours" table from rows ``{"claim", "paper", "ours", "holds"}``; glued if asked."""
    df = pd.DataFrame(rows, columns=["claim", "paper", "ours", "holds"]).set_index("claim")
    if glue_as:
        glue(glue_as, df, display=False)
    return df


#: columns of the claims table of the report (one row per claim of every chapter). ``verdict`` is the
#: claim's three-valued verdict (holds / does not hold / not resolved; a comparison's wins / loses / tie
#: within uncertainty) judged on its ``interval`` ("[lo, hi]" at ``level``) where it has one; ``holds`` is
#: the point estimate's judgement that the chapter asserted.
CLAIM_COLUMNS = ["chapter", "key", "claim", "paper", "ours", "interval", "bound", "verdict", "holds", "asserted at",
                 "due", "level", "kind"]
CHAPTER_COLUMNS = ["chapter", "profile", "status", "device", "cpu cores", "run time (s)", "claims judged",
                   "hold", "do not hold", "not resolved", "due here", "failed here"]
#: verdict words by outcome: positive, negative, unresolved (claims, then comparisons)
_POSITIVE, _NEGATIVE, _UNRESOLVED = {"holds", "wins"}, {"does not hold", "loses"}, {"not resolved",
                                                                                   "tie within uncertainty"}


def _claim_rows(blob: dict) -> list[dict]:
    """A chapter's claim records: Claims' top-level ``claims`` list; files written before Claims
    (``metrics.paper_vs_ours`` rows with claim/paper/ours/holds) are read as rows without a bound."""
    if "claims" in blob:
        return [_with_verdict(r) for r in blob["claims"]]
    return [_with_verdict({"key": r.get("claim"), "claim": r.get("claim"), "paper": r.get("paper"),
                           "ours": r.get("ours"), "bound": "", "holds": r.get("holds"), "asserted at": "",
                           "due": False}) for r in blob.get("metrics", {}).get("paper_vs_ours", [])]


def _with_verdict(r: dict) -> dict:
    """A claim row with ``verdict``, ``interval`` (text), ``level`` and ``kind``: as recorded by Claims,
    or, in files written before intervals (issue 24), the point estimate's verdict and no interval."""
    r = dict(r)
    h = r.get("holds")
    if r.get("verdict") is None:
        r["verdict"] = None if h is None else ("holds" if h else "does not hold")
    if not r.get("interval_text"):
        iv = r.get("interval")
        if iv and len(iv) == 2 and None not in iv:
            from .stats import Interval
            est = r["ours"] if isinstance(r.get("ours"), (int, float)) else float("nan")
            r["interval_text"] = Interval(est, iv[0], iv[1], r.get("level") or 0.95).fmt().split(" ", 1)[1]
    r["interval"] = r.get("interval_text") or ""
    r.setdefault("level", None)
    r.setdefault("kind", "shown" if h is None else "claim")
    return r


def reproduction_summary(metrics: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From ``load_metrics()``: one row per chapter (profile, status, device, run time, claims judged /
    held / failed on the point estimate, not resolved by their interval, due at its profile / failed
    among those) and one row per claim of every chapter (key, claim, paper, ours, interval, bound,
    verdict, holds, asserted at, due, level, kind). ``holds`` is None for a number shown, not judged;
    such rows are not counted as claims. Files written before intervals get the point estimate's
    verdict and an empty interval."""
    chapters, claims = [], []
    for stem, blob in metrics.items():
        rows = _claim_rows(blob)
        hw = blob.get("hardware", {})
        judged = [r for r in rows if r.get("holds") is not None]
        held = sum(bool(r["holds"]) for r in judged)
        due = [r for r in judged if r.get("due")]
        chapters.append({"chapter": stem, "profile": blob.get("profile"), "status": blob.get("status"),
                         "device": hw.get("gpu") or hw.get("device"), "cpu cores": hw.get("cpu_count"),
                         "run time (s)": blob.get("run_seconds"), "claims judged": len(judged), "hold": held,
                         "do not hold": len(judged) - held,
                         "not resolved": sum(r.get("verdict") in _UNRESOLVED for r in judged), "due here": len(due),
                         "failed here": sum(not r["holds"] for r in due)})
        for r in rows:
            claims.append({"chapter": stem, **{k: r.get(k) for k in CLAIM_COLUMNS[1:]}})
    return (pd.DataFrame(chapters, columns=CHAPTER_COLUMNS).set_index("chapter"),
            pd.DataFrame(claims, columns=CLAIM_COLUMNS))


COMPARISON_COLUMNS = ["chapter", "key", "comparison", "difference", "verdict", "A", "B", "level", "method", "margin",
                      "baselines"]


def comparisons(metrics: dict) -> pd.DataFrame:
    """Every chapter's headline comparisons (``Claims.compare`` and ``Claims.compare_every`` rows, and the
    equivalence claims of ``Claims.matches``): the difference A − B with its interval ("0.0016 [-0.003,
    0.006]"), the verdict (wins / loses / tie within uncertainty; an equivalence's holds / does not hold /
    not resolved with its ``margin``), each side's own interval where recorded, and against every baseline
    how many baselines. Files from before intervals have none: an empty table."""
    from .stats import Interval

    def text(d):
        return str(Interval.from_dict(d)) if isinstance(d, dict) and d.get("lo") is not None else ""
    rows = []
    for stem, blob in metrics.items():
        for r in blob.get("claims") or []:
            if r.get("kind") not in ("compare", "equivalence") or not r.get("interval"):
                continue
            lo, hi = r["interval"]
            diff = Interval(r["ours"], lo, hi, r.get("level") or 0.95, r.get("method") or "")
            rows.append({"chapter": stem, "key": r.get("key"), "comparison": r.get("claim"), "difference": str(diff),
                         "verdict": r.get("verdict"), "A": text(r.get("a")), "B": text(r.get("b")),
                         "level": diff.level, "method": diff.method, "margin": r.get("margin"),
                         "baselines": len(r.get("baselines") or []) or None})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def verdicts_without_interval(metrics: dict) -> pd.DataFrame:
    """Verdicts a chapter handed to its prose (``Claims.glue_verdict``, name given; ``Claims.verdict``,
    name None) from a claim that carries no interval, i.e. judged on a point estimate: one row per
    (chapter, glue name, claim key, words)."""
    rows = [{"chapter": stem, "name": g.get("name"), "key": g.get("key"), "words": g.get("words")}
            for stem, blob in metrics.items() for g in blob.get("glued_verdicts") or [] if not g.get("interval")]
    return pd.DataFrame(rows, columns=["chapter", "name", "key", "words"])


def run_problems(metrics: dict, profile: str, expected) -> pd.DataFrame:
    """What a reader must see first: every expected chapter that is missing, failed, ran at another
    profile than ``profile``, is a dry run (when this run is not), or has claims due that failed.
    One row per problem (chapter, problem, detail); empty when there is none."""
    from .profiles import get_profile
    dry_here = bool(get_profile(profile).dry_run)
    rows = []
    for stem in expected:
        blob = metrics.get(stem)
        if blob is None:
            rows.append({"chapter": stem, "problem": "missing",
                         "detail": "no metrics file: the chapter did not run in this build"})
            continue
        if blob.get("profile") != profile:
            rows.append({"chapter": stem, "problem": "other profile",
                         "detail": f"ran at {blob.get('profile')!r}, this report at {profile!r}"})
        if bool(blob.get("dry_run")) and not dry_here:
            rows.append({"chapter": stem, "problem": "dry run", "detail": "generated files, not results"})
        status = blob.get("status")
        if status not in ("ok", "claims_ok"):
            cell = blob.get("failed_cell") or {}
            where = f" at cell {cell.get('index')} ({cell.get('source', '')})" if cell else ""
            err = (blob.get("error") or "").splitlines()
            rows.append({"chapter": stem, "problem": "failed" if status in ("failed", "claims_failed") else
                         f"status {status!r}", "detail": f"{err[0] if err else ''}{where}".strip()})
        bad = blob.get("failed_claims") or []
        if bad:
            rows.append({"chapter": stem, "problem": "claims failed", "detail": ", ".join(bad)})
    return pd.DataFrame(rows, columns=["chapter", "problem", "detail"])


def verdict_figure(claims: pd.DataFrame, ax=None, title: str | None = None):
    """Every chapter's claims as one row of squares, by verdict: held (asserted here), held (recorded
    only), not resolved (the interval straddles the bound, or a tie within uncertainty), failed
    (asserted here), failed (recorded only), shown (not judged). A comparison that wins counts as held,
    one that loses as failed. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    kinds = {"held, asserted here": "#1a9850", "held, recorded only": "#a6d96a",
             "not resolved (interval straddles the bound)": "#74add1",
             "failed, asserted here": "#d73027", "failed, recorded only": "#fdae61", "shown, not judged": "#d9d9d9"}

    def kind(r) -> str:
        if r["holds"] is None or (isinstance(r["holds"], float) and pd.isna(r["holds"])):
            return "shown, not judged"
        v = r.get("verdict")
        if v in _UNRESOLVED:
            return "not resolved (interval straddles the bound)"
        ok = v in _POSITIVE if v in _POSITIVE | _NEGATIVE else bool(r["holds"])
        return f"{'held' if ok else 'failed'}, {'asserted here' if r['due'] else 'recorded only'}"
    chapters = list(dict.fromkeys(claims["chapter"]))
    width = max([int((claims["chapter"] == c).sum()) for c in chapters] + [1])
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(2.5 + 0.32 * width, 12), 0.45 * len(chapters) + 1.3))
    fig = ax.figure
    for i, ch in enumerate(chapters):
        rows = claims[claims["chapter"] == ch]
        for j, (_, r) in enumerate(rows.iterrows()):
            ax.add_patch(plt.Rectangle((j, -i - 0.4), 0.85, 0.8, color=kinds[kind(r)]))
    ax.set_xlim(-0.2, width); ax.set_ylim(-len(chapters) + 0.4, 0.6)
    ax.set_yticks([-i for i in range(len(chapters))], chapters)
    ax.set_xticks([]); ax.set_xlabel("claims, in the order each chapter declares them")
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    present = dict.fromkeys(kind(r) for _, r in claims.iterrows())
    ax.legend([Patch(color=kinds[k]) for k in present], list(present), loc="upper center",
              bbox_to_anchor=(0.5, -0.12), ncol=min(len(present), 3), fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- cross-chapter counterfeit rows

#: what a detector looks at, in the order the report shows them
LOOKS_AT = ("confidence", "features", "layers", "one-class model")
LOOKS_AT_TEXT = {"confidence": "the classifier's confidence", "features": "the classifier's features",
                 "layers": "the classifier's layers (fingerprints)",
                 "one-class model": "a one-class model of the claimed class"}


@dataclass
class CounterfeitRow:
    """One detector scored on chapter 1's confident counterfeits; chapters 2 and 3 write a list of
    these (as dicts, ``dataclasses.asdict``) under their metrics key ``"counterfeit_rows"``.

    classifier    : the classifier whose counterfeits were scored (e.g. "fashion_mnist")
    chapter       : the chapter that scored them (2 or 3)
    detector      : the detector's display name (e.g. "ODIN (T, ε tuned on validation)", "IOCN (pixels)")
    looks_at      : one of :data:`LOOKS_AT` — "confidence" (MSP, ODIN, Energy), "features" (Mahalanobis),
                    "layers" (NeuralFP), "one-class model" (IOCN, FLOW, PyOD per claimed class)
    auroc         : AUROC, in-distribution test images vs counterfeits (counterfeits positive), in [0, 1]
    flagged_share : share of counterfeits flagged at the threshold that flags ``alpha`` of the test images
    n_counterfeits: number of counterfeits scored
    alpha         : the false-alarm budget of ``flagged_share`` (e.g. 0.05)
    auroc_lo, auroc_hi: the AUROC's interval at ``auroc_level`` (optional; e.g. ``stats.auroc_ci`` or, for a
                    mean over claimed classes, ``stats.class_mean_ci``): :func:`counterfeit_margin` needs it
                    for the cross-chapter verdict's interval"""
    classifier: str
    chapter: int
    detector: str
    looks_at: str
    auroc: float
    flagged_share: float
    n_counterfeits: int
    alpha: float
    auroc_lo: float | None = None
    auroc_hi: float | None = None
    auroc_level: float = 0.95

    def __post_init__(self):
        if self.looks_at not in LOOKS_AT:
            raise ValueError(f"looks_at must be one of {LOOKS_AT}, not {self.looks_at!r}")
        for name in ("auroc", "flagged_share", "alpha", "auroc_lo", "auroc_hi"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and (v != v or 0.0 <= v <= 1.0)):
                raise ValueError(f"{name} must be a number in [0, 1] (or NaN), not {v!r}")
        if (self.auroc_lo is None) != (self.auroc_hi is None):
            raise ValueError("give both auroc_lo and auroc_hi (the AUROC's interval) or neither")
        if self.auroc_lo is not None and self.auroc == self.auroc and not self.auroc_lo <= self.auroc <= self.auroc_hi:
            raise ValueError(f"auroc {self.auroc} lies outside its interval [{self.auroc_lo}, {self.auroc_hi}]")

    @property
    def interval(self):
        """The AUROC as a :class:`ccc_lib.stats.Interval` (None without ``auroc_lo``/``auroc_hi``)."""
        if self.auroc_lo is None or self.auroc != self.auroc:
            return None
        from .stats import Interval
        return Interval(self.auroc, self.auroc_lo, self.auroc_hi, self.auroc_level, "as recorded",
                        self.n_counterfeits)


COUNTERFEIT_COLUMNS = ["classifier", "chapter", "detector", "looks at", "counterfeits", "AUROC", "AUROC interval",
                       "flagged", "false-alarm budget"]


def counterfeit_rows(metrics: dict) -> list[CounterfeitRow]:
    """Every chapter's ``metrics["counterfeit_rows"]`` from ``load_metrics()``, validated."""
    out = []
    for stem, blob in metrics.items():
        for i, r in enumerate(blob.get("metrics", {}).get("counterfeit_rows", []) or []):
            try:
                out.append(CounterfeitRow(**r))
            except TypeError as exc:
                raise ValueError(f"{stem}: counterfeit_rows[{i}] does not follow report.CounterfeitRow "
                                 f"({exc}); fields: {list(CounterfeitRow.__dataclass_fields__)}") from exc
    return out


def counterfeit_detection(metrics: dict) -> pd.DataFrame:
    """Which detectors catch chapter 1's confident counterfeits: the structured rows chapters 2 and 3
    wrote (:class:`CounterfeitRow`), one per (classifier, detector), ordered by chapter and by what
    the detector looks at."""
    rows = [{"classifier": r.classifier, "chapter": r.chapter, "detector": r.detector,
             "looks at": LOOKS_AT_TEXT[r.looks_at], "counterfeits": r.n_counterfeits, "AUROC": r.auroc,
             "AUROC interval": "" if r.interval is None else r.interval.fmt().split(" ", 1)[1],
             "flagged": r.flagged_share, "false-alarm budget": r.alpha,
             "_rank": LOOKS_AT.index(r.looks_at)} for r in counterfeit_rows(metrics)]
    df = pd.DataFrame(rows, columns=COUNTERFEIT_COLUMNS + ["_rank"])
    return df.sort_values(["chapter", "_rank"], kind="stable").drop(columns="_rank").reset_index(drop=True)


def counterfeit_margin(metrics: dict, level: float = 0.95) -> dict:
    """The cross-chapter verdict's number with its interval: the margin (lowest AUROC among the detectors
    that look beyond the classifier's confidence) − (highest AUROC among the confidence-based scores) on
    chapter 1's counterfeits, from the chapters' :class:`CounterfeitRow` s.

    The rows come from different chapters and image sets, so they are not paired; the interval is
    simultaneous: every row's AUROC interval is taken at level 1 − α/R (Bonferroni over the R rows;
    rescaled on the logit scale from the recorded one, :func:`ccc_lib.stats.rescale`), and since the margin
    is monotone in each AUROC, ``[min lo_other − max hi_conf, min hi_other − max lo_conf]`` covers it with
    probability ≥ 1 − α. Returns ``{"estimate", "interval" (Interval, or None when a row has no interval),
    "without_interval" (those rows' detectors), "rows", "conf_best", "other_worst"}``; estimate None when
    either kind of detector is missing."""
    from .stats import Interval, rescale
    rows = [r for r in counterfeit_rows(metrics) if r.auroc == r.auroc]
    conf = [r for r in rows if r.looks_at == "confidence"]
    other = [r for r in rows if r.looks_at != "confidence"]
    out = {"estimate": None, "interval": None, "rows": len(rows), "conf_best": None, "other_worst": None,
           "without_interval": [f"{r.classifier}: {r.detector}" for r in rows if r.interval is None]}
    if not conf or not other:
        return out
    cb, ow = max(conf, key=lambda r: r.auroc), min(other, key=lambda r: r.auroc)
    est = ow.auroc - cb.auroc
    out.update(estimate=est, conf_best=f"{cb.classifier}: {cb.detector}", other_worst=f"{ow.classifier}: {ow.detector}")
    if out["without_interval"]:
        return out
    simult = 1 - (1 - level) / len(rows)
    iv = {id(r): rescale(r.interval, simult, "logit") for r in rows}
    lo = min(iv[id(r)].lo for r in other) - max(iv[id(r)].hi for r in conf)
    hi = min(iv[id(r)].hi for r in other) - max(iv[id(r)].lo for r in conf)
    out["interval"] = Interval(est, min(lo, est), max(hi, est), level,
                               f"Bonferroni over {len(rows)} detectors' AUROC intervals (not paired)", len(rows))
    return out

