"""Numbers that leave a notebook: glued into the book's prose and tables, and written as the
chapter's headline-metrics JSON (collected by the runner for the reproduction report)."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pandas as pd

from .utils import atomic_write_json, cache_dir

__all__ = ["glue", "glue_range", "save_metrics", "load_metrics", "paper_vs_ours", "metrics_dir", "hardware",
           "reproduction_summary", "counterfeit_detection"]


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
    d = Path(os.environ.get("CCC_METRICS_DIR") or (cache_dir() / "metrics"))
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


def reproduction_summary(metrics: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From ``load_metrics()``: one row per chapter (profile, device, run time, claims held) and
    one row per claim of every chapter's "paper vs ours" table."""
    chapters, claims = [], []
    for stem, blob in metrics.items():
        rows = blob.get("metrics", {}).get("paper_vs_ours", [])
        hw = blob.get("hardware", {})
        checked = [r for r in rows if r.get("holds") is not None]     # None: a number shown, not a claim
        held = sum(bool(r["holds"]) for r in checked)
        chapters.append({"chapter": stem, "profile": blob.get("profile"),
                         "device": hw.get("gpu") or hw.get("device"), "cpu cores": hw.get("cpu_count"),
                         "run time (s)": blob.get("run_seconds"), "claims": len(checked), "hold": held,
                         "do not hold": len(checked) - held})
        for r in rows:
            claims.append({"chapter": stem, **{k: r.get(k) for k in ("claim", "paper", "ours", "holds")}})
    cols = ["chapter", "profile", "device", "cpu cores", "run time (s)", "claims", "hold", "do not hold"]
    return (pd.DataFrame(chapters, columns=cols).set_index("chapter"),
            pd.DataFrame(claims, columns=["chapter", "claim", "paper", "ours", "holds"]))


#: what each of chapter 2's detectors looks at (the rest of chapter 2's are NeuralFP variants)
_CONFIDENCE_SCORES = ("MSP", "Energy", "ODIN")


def counterfeit_detection(metrics: dict) -> pd.DataFrame:
    """Which detectors catch chapter 1's confident counterfeits, from ``load_metrics()``: chapter 2's
    rows (the classifier's confidence and its inside, all test images vs all counterfeits) and
    chapter 3's (one-class models of the class a counterfeit claims, class by class). One row per
    (classifier, detector) with the AUROC and the share flagged at the chapter's false-alarm budget."""
    cols = ["classifier", "chapter", "detector", "looks at", "counterfeits", "AUROC", "flagged", "false-alarm budget"]
    rows = []
    m2 = metrics.get("02_neuralfp", {}).get("metrics", {})
    for r in m2.get("counterfeits", []):
        names = dict.fromkeys(k.rsplit(": ", 1)[0] for k in r if k.endswith((": AUROC", ": flagged")))
        for d in names:
            looks = ("the classifier's confidence" if d.split(" ")[0] in _CONFIDENCE_SCORES
                     else "the classifier's features" if d.startswith("Mahalanobis")
                     else "the classifier's layers (fingerprints)")
            rows.append({"classifier": r["model"], "chapter": 2, "detector": d, "looks at": looks,
                         "counterfeits": r.get("confidence ≥ 0.99"), "AUROC": r.get(f"{d}: AUROC"),
                         "flagged": r.get(f"{d}: flagged"), "false-alarm budget": m2.get("counterfeits_alpha")})
    c3 = metrics.get("03_iocn", {}).get("metrics", {}).get("counterfeits", {})
    for r in c3.get("per_method", []):
        rows.append({"classifier": c3["dataset"], "chapter": 3, "detector": f"{r['method']} ({r['features']})",
                     "looks at": "a one-class model of the claimed class", "counterfeits": r["counterfeits"],
                     "AUROC": r["mean AUROC over classes"], "flagged": r[f"flagged at {c3['alpha']:.0%} false alarms"],
                     "false-alarm budget": c3["alpha"]})
    order = {k: i for i, k in enumerate(("the classifier's confidence", "the classifier's features",
                                         "the classifier's layers (fingerprints)"))}
    df = pd.DataFrame(rows, columns=cols)
    rank = df["looks at"].map(lambda k: order.get(k, len(order)))
    return df.assign(_rank=rank).sort_values(["chapter", "_rank"], kind="stable").drop(columns="_rank").reset_index(drop=True)
