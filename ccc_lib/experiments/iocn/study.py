"""Chapter 3's study (``benchmarks/iocn_study.py``): IOCN against FLOW across settings, one axis at a time, read
from its results file (not run by the chapter), and the configuration the chapter then runs as a labelled
setting (:func:`study_choice`)."""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass


def study_overrides(axis: str, value) -> dict:
    """The settings that the study's configuration ``axis = value`` changes (for ``steps`` both INNs'
    budgets and their evaluation points)."""
    ov = {axis: value}
    if axis == "steps":
        ov.update(flow_steps=value, eval_at=tuple(s for s in (value // 4, value // 2, value) if s > 0))
    return ov


@dataclass
class StudyChoice:
    """A configuration of the study under which the IOCN is at least as good as the FLOW and that costs no
    more training time than the chapter's settings: the chapter then runs it as a labelled setting."""
    axis: str
    value: object
    overrides: dict
    iocn_minus_flow: float
    seconds_ratio: float        # (IOCN + FLOW training seconds) of the configuration / of the base


def study_choice(study: dict, max_time_ratio: float = 1.0) -> StudyChoice | None:
    """From the study's results (its JSON), the configuration with the largest IOCN − FLOW among those with
    IOCN ≥ FLOW (mean over seeds) whose training time is at most ``max_time_ratio`` × the base's; None if
    there is none. The study scores the test set, so a row run with this setting is chosen on test data for
    both INNs alike (the chapter labels it so)."""
    rows = study["rows"]
    base = next(r for r in rows if r["axis"] == "base")
    cost = lambda r: r["IOCN"]["train_seconds"] + r["FLOW"]["train_seconds"]  # noqa: E731
    ok = [r for r in rows if r["axis"] != "base" and r["iocn_minus_flow"] >= 0 and cost(r) <= max_time_ratio * cost(base)]
    if not ok:
        return None
    r = max(ok, key=lambda r: r["iocn_minus_flow"])
    return StudyChoice(r["axis"], r["value"], study_overrides(r["axis"], r["value"]), float(r["iocn_minus_flow"]),
                       cost(r) / cost(base))


def study_file(scale: str, here=None) -> pathlib.Path:
    """Where the study's results file for a profile scale is (``benchmarks/results/iocn_study_<scale>.json``;
    smoke reads default's), looked for above the working directory and beside the package."""
    name = f"iocn_study_{scale if scale != 'smoke' else 'default'}.json"
    here = pathlib.Path.cwd() if here is None else pathlib.Path(here)
    roots = [here.parent, here, pathlib.Path(__file__).resolve().parents[3]]
    return next((r / "benchmarks" / "results" / name for r in roots if (r / "benchmarks" / "results" / name).exists()),
                pathlib.Path("benchmarks") / "results" / name)


def read_study(path) -> dict | None:
    path = pathlib.Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def study_table(study: dict) -> "object":
    """The study's rows as a table: per configuration each INN's mean AUROC over seeds and its range, IOCN −
    FLOW, the training seconds and the seeds in which the IOCN reached the FLOW's final AUROC in no more time."""
    import pandas as pd
    return pd.DataFrame([{"varied": r["axis"], "value": r["value"],
                          "FLOW mean AUROC": r["FLOW"]["mean_auroc"],
                          "FLOW range over seeds": f"{r['FLOW']['min_auroc']:.3f}–{r['FLOW']['max_auroc']:.3f}",
                          "IOCN mean AUROC": r["IOCN"]["mean_auroc"],
                          "IOCN range over seeds": f"{r['IOCN']['min_auroc']:.3f}–{r['IOCN']['max_auroc']:.3f}",
                          "IOCN − FLOW": r["iocn_minus_flow"],
                          "IOCN train s": r["IOCN"]["train_seconds"], "FLOW train s": r["FLOW"]["train_seconds"],
                          "goal met (seeds)": f"{r['goal_met_seeds']}/{len(study['seeds'])}"} for r in study["rows"]])


def study_text(study: dict, S: dict) -> str:
    """The chapter's paragraph on the study, from its results file: in how many configurations the IOCN is at
    least as good as the FLOW, the range of the gap, the time goal, the best of each, and which inputs the
    file was run on (files written before the input setting was recorded say so)."""
    st = study_table(study)
    label = lambda r: "the chapter's settings" if r["varied"] == "base" else f"{r['varied']} = {r['value']}"  # noqa: E731
    n_ge = int((st["IOCN − FLOW"] >= 0).sum())
    n_goal = sum(r["goal_met_seeds"] for r in study["rows"])
    best, worst = st.loc[st["IOCN − FLOW"].idxmax()], st.loc[st["IOCN − FLOW"].idxmin()]
    axes = [a for a in dict.fromkeys(st["varied"]) if a != "base"]
    bi, bf = st.loc[st["IOCN mean AUROC"].idxmax()], st.loc[st["FLOW mean AUROC"].idxmax()]
    base = study.get("settings") or {}
    inputs = base.get("inputs", ["zscore"])[0] if base else None
    where = ("on the chapter's headline inputs" if inputs == S["inputs"][0] else
             "on our z-scored variant of the inputs, not the paper's (the file predates the input setting: it was "
             "written with the chapter's earlier settings and is not re-run at every build)" if inputs is None else
             f"on the {inputs!r} inputs, not the chapter's headline ones")
    return (f"In the study (read from its results file: profile `{study['profile']}`, {len(study['seeds'])} seeds, classes "
            f"{', '.join(map(str, study['classes']))}, {where}; varied one at a time: {', '.join(axes)}) the IOCN's mean "
            f"AUROC is at least the FLOW's in **{n_ge} of {len(st)}** configurations. "
            + ("**No condition we tried makes the IOCN at least as good as the FLOW**: " if n_ge == 0 else
               f"The IOCN is at least as good as the FLOW with {', '.join(label(r) for _, r in st[st['IOCN − FLOW'] >= 0].iterrows())}; ")
            + f"the gap IOCN − FLOW ranges from {worst['IOCN − FLOW']:+.4f} ({label(worst)}) to "
            f"{best['IOCN − FLOW']:+.4f} ({label(best)}). The IOCN reaches the FLOW's final mean AUROC within the "
            f"FLOW's training wall-clock in {n_goal} of {len(st) * len(study['seeds'])} (configuration, seed) runs"
            + (" — never." if n_goal == 0 else ".")
            + f" Across all configurations the IOCN's best mean AUROC is {bi['IOCN mean AUROC']:.4f} ({label(bi)}) and the "
            f"FLOW's best {bf['FLOW mean AUROC']:.4f} ({label(bf)}): the IOCN's best is "
            + ("at least" if bi["IOCN mean AUROC"] >= bf["FLOW mean AUROC"] else "**below**") + " the FLOW's best.")
