"""Claims: the one way a chapter states what it reproduces, records it, and asserts it.

Every chapter declares its claims through :class:`Claims`: our number, the paper's number (or
"not reported"), the bound it is judged against (shown in the row), and the profiles at which it
is asserted. Each claim is written to the chapter's metrics file **as soon as it is declared**
(atomically), so a notebook that fails — on a claim or anywhere after it — leaves a file that
says what was checked and with which numbers. :meth:`Claims.finish` then asserts every claim due
at this profile and raises :class:`ClaimsFailed` naming all that failed, *after* the record is
written::

    C = Claims("01_counterfeits", P)
    C.check("conf_mnist", "mnist5k: worst class mean confidence", ours=0.997, op=">=",
            paper=1.0, bound=B["confidence"], bound_from="ours", assert_at=("default", "full"))
    C.report("n_samples", "counterfeits scored", ours=2000)        # a number shown, not judged
    C.metrics["modes"] = modes_table_records                         # the chapter's payload
    C.finish()                                                       # save, then assert what is due

Rules (the report and the tests rely on them):

* A row whose ``paper`` is a number is judged against the paper's number unless
  ``bound_from="ours"`` says otherwise, and then the row's text shows the bound and that it is ours
  (an engineering bound), so a reader never sees a paper number judged against something else
  without a word.
* ``assert_at`` lists profile names; a claim is recorded at every profile and asserted only where
  due. The ``full_dry`` profile (generated files, tiny sizes) asserts nothing unless it is listed.
* Verdicts are computed here, never written by hand: no ``holds=True`` anywhere else.

Uncertainty (issue 24). A claim may carry an interval — ``ours=`` an :class:`~ccc_lib.stats.Interval`,
or ``interval=(lo, hi)`` (or an Interval) beside a number — and then gets a three-valued
``verdict``::

    C.check("auroc_mnist", "NeuralFP AUROC, MNIST vs CIFAR-10", ours=auroc_ci(s_in, s_out), op=">=",
            paper=0.98)                        # verdict "holds" / "does not hold" / "not resolved"
    C.compare("nfp_vs_best", "NeuralFP − best tuned baseline (AUROC)", auroc_diff_ci(*a, *b))
    C.glue_verdict("ch2_verdict", "nfp_vs_best")   # "wins" / "loses" / "tie within uncertainty"
    C.glue_interval("ch2_diff", "nfp_vs_best")      # "0.0016 [-0.003, 0.006]"

* ``verdict`` is "holds" when the whole interval clears the bound, "does not hold" when it lies
  entirely on the wrong side, "not resolved" when it straddles the bound; without an interval it is
  the point estimate's "holds" / "does not hold". :meth:`Claims.compare` judges a difference A − B:
  "wins" only when its interval lies above 0, "loses" when below, "tie within uncertainty" otherwise.
* ``holds`` stays the point estimate's judgement against the bound, and it is what
  :meth:`Claims.finish` asserts: asserted claims keep their bounds (a claim that holds on its estimate
  but whose interval straddles the bound does not fail the notebook). The ``verdict`` is what the
  prose (:meth:`Claims.verdict`, :meth:`Claims.glue_verdict`), the table and the report show.
* A paper that claims a MATCH ("matches the state of the art") is judged by :meth:`Claims.matches`:
  equivalence with a margin δ read from the chapter's settings (two one-sided tests on the 90 %
  interval: "holds" only when it lies inside [−δ, δ]). A tie within uncertainty is never a match.
* A method against several baselines is judged by :meth:`Claims.compare_every` on
  :func:`ccc_lib.stats.versus_every` (every baseline on the same images; none picked on the test set).
* An interval from one trained model (:attr:`ccc_lib.stats.Interval.one_model`) is shown as
  "[lo, hi] (one model)", never as an interval over seeds.
* The metrics file's rows carry ``interval`` ([lo, hi] or None), ``level``, ``method``, ``seeds``,
  ``one_model``, ``verdict`` and ``kind`` ("claim", "compare", "equivalence" or "shown"); comparisons
  also ``a`` and ``b`` (each side's own interval, when given) and, against every baseline,
  ``baselines``; equivalence claims ``margin`` and ``margin_setting``. ``glued_verdicts`` lists every verdict handed to the prose
  (glued by name, or returned by :meth:`Claims.verdict`) and whether an interval was behind it."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .checks import InputError
from .claim_rows import (COMPARE_VERDICTS, MATCH_WORDS, OPS, VERDICTS, Claim, finite_estimate, fmt_number,
                         interval_verdict, judge, known_profiles, plain, with_interval)
from .profiles import get_profile
from .report import glue, hardware, metrics_dir
from .stats import EQUIVALENCE_LEVEL, Interval, VersusEvery, difference_verdict, equivalence
from .utils import atomic_write_json

__all__ = ["Claims", "Claim", "ClaimsFailed", "OPS", "VERDICTS", "COMPARE_VERDICTS", "MATCH_WORDS", "fmt_number"]


class ClaimsFailed(AssertionError):
    """One or more claims due at this profile do not hold (the metrics file already records them)."""

@dataclass
class Claims:
    """The claims of one chapter at one profile (see the module docstring)."""
    chapter: str
    profile: object = None
    claims: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    status: str = "running"
    glued: dict = field(default_factory=dict)

    def __post_init__(self):
        self.profile = get_profile(self.profile)
        self._save()

    # ------------------------------------------------------------------ declaring
    def check(self, key: str, text: str, ours, op: str, bound=None, *, paper="not reported",
              bound_from: str | None = None, assert_at=("default", "full"), note: str = "",
              interval=None, level: float = 0.95) -> bool:
        """Declare a judged claim ``ours <op> bound`` and record it at once; returns whether it holds
        (on the point estimate: what :meth:`finish` asserts).

        ``bound`` defaults to ``paper`` when that is a number. ``bound_from`` is "paper" when the
        bound *is* the paper's number (the default when it equals it), else "ours".
        ``ours`` may be an :class:`~ccc_lib.stats.Interval`, or ``interval=(lo, hi)`` (at ``level``) or
        an Interval may come beside a number; the claim's ``verdict`` is then judged on the interval
        (module docstring)."""
        if op not in OPS:
            raise ValueError(f"claim {key!r}: op must be one of {list(OPS)}, not {op!r}")
        paper_num = isinstance(plain(paper), (int, float)) and not isinstance(plain(paper), bool)
        if bound is None:
            if not paper_num:
                raise ValueError(f"claim {key!r}: give a bound (the paper reports no number to judge against)")
            bound = paper
        if bound_from is None:
            bound_from = "paper" if paper_num and plain(bound) == plain(paper) else "ours"
        if bound_from not in ("paper", "ours"):
            raise ValueError(f"claim {key!r}: bound_from must be 'paper' or 'ours'")
        if bound_from == "paper" and not (paper_num and plain(bound) == plain(paper)):
            raise ValueError(f"claim {key!r}: bound_from='paper' but the bound {bound!r} is not the paper's "
                             f"number {paper!r}")
        assert_at = self._profiles(key, assert_at)
        o, iv = with_interval(key, ours, interval, level)
        b = plain(bound)
        holds = judge(o, op, b)
        verdict = interval_verdict(iv, op, b) if iv is not None and finite_estimate(o) else \
            VERDICTS[0 if holds else 1]
        self._add(Claim(key, text, o, plain(paper), op, b, bound_from, tuple(assert_at), holds,
                        self.profile.name in assert_at, note, iv, verdict))
        return holds

    def compare(self, key: str, text: str, diff, *, a=None, b=None, paper="not reported",
                assert_at=(), note: str = "") -> str:
        """Declare the comparison of two methods through the interval ``diff`` of A − B (e.g.
        :func:`ccc_lib.stats.auroc_diff_ci` on the same images, or :func:`ccc_lib.stats.over_seeds` of
        per-seed differences) and record it; returns its verdict: "wins" only when the interval lies
        above 0, "loses" when below, "tie within uncertainty" when it contains 0. ``a`` and ``b``
        (each side's own interval) are recorded beside it when given. ``holds`` is the point estimate
        ``A − B > 0``, asserted only at the profiles in ``assert_at`` (none by default)."""
        if not isinstance(diff, Interval):
            raise TypeError(f"compare {key!r}: diff must be a ccc_lib.stats.Interval of A − B (e.g. "
                            f"auroc_diff_ci(...)), got {type(diff).__name__}")
        sides = {}
        for side, v in (("a", a), ("b", b)):
            if v is not None:
                if not isinstance(v, Interval):
                    raise TypeError(f"compare {key!r}: {side} must be an Interval, got {type(v).__name__}")
                sides[side] = v
        assert_at = self._profiles(key, assert_at)
        o, iv = with_interval(key, diff, None, diff.level)
        verdict = difference_verdict(iv)
        self._add(Claim(key, text, o, plain(paper), ">", 0.0, "ours", tuple(assert_at), judge(o, ">", 0.0),
                        self.profile.name in assert_at, note, iv, verdict, "compare", sides))
        return verdict

    def matches(self, key: str, text: str, diff, *, settings: dict, margin_key: str,
                level: float = EQUIVALENCE_LEVEL, paper="not reported", assert_at=(), note: str = "") -> str:
        """Declare "A matches B" as equivalence and record it; returns its verdict ("holds", "does not
        hold", "not resolved"; :func:`ccc_lib.stats.equivalence`).

        ``diff``: the interval of A − B, best computed at ``level`` (90 %, e.g. ``auroc_diff_ci(...,
        level=0.90)``, ``class_mean_ci(..., level=0.90)``; one at another level is rescaled, said in its
        method), or per-seed Intervals / differences. The margin δ is ``settings[margin_key]`` — the
        chapter's settings for this profile, declared before the run, never chosen from the results; both
        are recorded in the row (``margin``, ``margin_setting``). ``holds`` is the point estimate
        ``|A − B| ≤ δ``, asserted only at ``assert_at`` (none by default)."""
        if not isinstance(settings, dict) or margin_key not in settings:
            raise InputError(f"matches {key!r}: the margin must come from the chapter's settings: add "
                             f"{margin_key!r} (e.g. 0.01 AUROC) to its SETTINGS for every profile and pass "
                             f"settings=S, margin_key={margin_key!r}")
        eq = equivalence(diff, settings[margin_key], level)
        assert_at = self._profiles(key, assert_at)
        iv = eq.interval
        self._add(Claim(key, text, iv.estimate, plain(paper), "within", eq.margin, "ours", assert_at,
                        abs(iv.estimate) <= eq.margin, self.profile.name in assert_at, note, iv, eq.verdict,
                        "equivalence", margin=eq.margin, margin_setting=str(margin_key)))
        return eq.verdict

    def compare_every(self, key: str, text: str, result, *, a=None, paper="not reported", assert_at=(),
                      note: str = "") -> str:
        """Declare a method against EVERY baseline (``result`` from :func:`ccc_lib.stats.versus_every`) and
        record it as a comparison: verdict "wins" only when ahead of each baseline, "loses" when behind one
        after Holm, else "tie within uncertainty"; the interval is ``result.summary`` (A − the closest
        baseline, valid for the smallest of the differences); the row's ``baselines`` lists each baseline's
        interval, p-value and Holm-adjusted p-value. ``holds`` is the point estimate ``summary > 0``."""
        if not isinstance(result, VersusEvery):
            raise TypeError(f"compare_every {key!r}: pass the result of ccc_lib.stats.versus_every(...), got "
                            f"{type(result).__name__}")
        if a is not None and not isinstance(a, Interval):
            raise TypeError(f"compare_every {key!r}: a must be an Interval, got {type(a).__name__}")
        assert_at = self._profiles(key, assert_at)
        iv = result.summary
        rows = [{"baseline": r["baseline"], "interval": r["interval"].to_dict(), "text": str(r["interval"]),
                 "p": r["p"], "p_holm": r["p_holm"], "verdict": r["verdict"]} for r in result.rows]
        self._add(Claim(key, text, iv.estimate, plain(paper), ">", 0.0, "ours", assert_at, iv.estimate > 0,
                        self.profile.name in assert_at, note, iv, result.verdict, "compare",
                        {"a": a} if a is not None else {}, baselines=rows))
        return result.verdict

    def _profiles(self, key: str, assert_at) -> tuple:
        if isinstance(assert_at, str):
            assert_at = (assert_at,)
        unknown = set(assert_at) - set(known_profiles())
        if unknown:
            raise ValueError(f"{key!r}: unknown profiles in assert_at: {sorted(unknown)}")
        return tuple(assert_at)

    def report(self, key: str, text: str, ours, *, paper="not reported", note: str = "",
               interval=None, level: float = 0.95) -> None:
        """Record a number shown beside the claims without judging it (``holds`` stays None); with an
        interval (``ours`` an Interval, or ``interval=``) the table shows it."""
        o, iv = with_interval(key, ours, interval, level)
        self._add(Claim(key, text, o, plain(paper), note=note, interval=iv, kind="shown"))

    def _add(self, claim: Claim) -> None:
        if claim.key in self.claims:
            raise ValueError(f"claim {claim.key!r} declared twice in {self.chapter}")
        self.claims[claim.key] = claim
        self._save()

    # ------------------------------------------------------------------ reading
    def __getitem__(self, key: str) -> Claim:
        return self.claims[key]

    def holds(self, key: str) -> bool | None:
        return self.claims[key].holds

    @property
    def failed_due(self) -> list:
        return [c for c in self.claims.values() if c.due and not c.holds]

    def table(self, full: bool = False) -> pd.DataFrame:
        """The "paper vs ours" table: claim, paper, ours, interval, bound, verdict, asserted at
        (``full``: also key, holds — the point estimate's judgement — due, note, level, method)."""
        cols = ["claim", "paper", "ours", "interval", "bound", "verdict", "asserted at"]
        rows = [c.row() for c in self.claims.values()]
        df = pd.DataFrame(rows, columns=["key"] + cols + ["holds", "due", "note", "level", "method"]
                          + ["interval_text"])
        df["interval"] = df.pop("interval_text")
        df["ours"] = df["ours"].map(fmt_number)
        df["paper"] = df["paper"].map(fmt_number)
        df["verdict"] = df["verdict"].map(lambda v: "" if v is None else v)
        df["holds"] = df["holds"].map(lambda h: "" if h is None else ("yes" if h else "NO"))
        return df.set_index("claim") if full else df[cols].set_index("claim")

    def verdict(self, key: str, yes: str | None = None, no: str | None = None,
                unresolved: str | None = None) -> str:
        """The claim's verdict in words: ``yes`` when it holds (a comparison: wins), ``no`` when it does
        not (loses), ``unresolved`` when its interval straddles the bound (a tie within uncertainty);
        each defaults to the canonical word (:data:`VERDICTS`, :data:`COMPARE_VERDICTS`; an equivalence
        claim's :data:`MATCH_WORDS`: "matches" only when its 90 % interval lies inside ±δ)."""
        c = self.claims[key]
        if c.verdict is None:
            raise ValueError(f"{key!r} is a shown number, not a judged claim")
        words = COMPARE_VERDICTS if c.kind == "compare" else MATCH_WORDS if c.kind == "equivalence" else VERDICTS
        i = (COMPARE_VERDICTS if c.kind == "compare" else VERDICTS).index(c.verdict)
        word = [yes, no, unresolved][i] or words[i]
        self._record_use(None, key, word)
        return word

    def _record_use(self, name, key: str, word: str) -> None:
        """Note in the metrics file (``glued_verdicts``) a verdict handed to the prose, and whether an
        interval is behind it (:func:`ccc_lib.report.verdicts_without_interval` lists those without)."""
        c = self.claims[key]
        if name is not None:
            self.glued.pop(f"verdict:{key}", None)
        elif any(g["key"] == key for g in self.glued.values()):
            return
        self.glued[name or f"verdict:{key}"] = {"name": name, "key": key, "verdict": c.verdict, "words": word,
                                               "interval": c.interval is not None}
        self._save()

    def glue_verdict(self, name: str, key: str, yes: str | None = None, no: str | None = None,
                     unresolved: str | None = None) -> str:
        """Glue :meth:`verdict` as ``name`` (use ``{glue:text}`name``` in the prose). Default words: a
        comparison's own ("wins" / "loses" / "tie within uncertainty"), an equivalence claim's "matches" /
        "does not match" / "not resolved", a claim's "reproduced" / "not reproduced" / "not resolved". Recorded in the metrics file's ``glued_verdicts``."""
        if self.claims[key].kind == "claim":
            yes, no, unresolved = yes or "reproduced", no or "not reproduced", unresolved or "not resolved"
        word = self.verdict(key, yes, no, unresolved)
        self._record_use(name, key, word)
        return glue(name, word)

    def tally(self, keys) -> dict:
        """How many of ``keys`` got each verdict: comparisons ``{"wins": n, "loses": n, "tie within
        uncertainty": n}``, judged claims ``{"holds": n, "does not hold": n, "not resolved": n}`` (one
        kind at a time)."""
        keys = list(keys)
        kinds = {"claim" if self.claims[k].kind == "equivalence" else self.claims[k].kind for k in keys}
        if "shown" in kinds:
            raise ValueError(f"{[k for k in keys if self.claims[k].kind == 'shown']} are shown numbers, not judged")
        if len(kinds) > 1:
            raise ValueError("tally: mix of comparisons (Claims.compare) and claims (Claims.check); tally each apart")
        out = dict.fromkeys(COMPARE_VERDICTS if kinds == {"compare"} else VERDICTS, 0)
        for k in keys:
            out[self.claims[k].verdict] += 1
        return out

    def tally_text(self, keys, of: str = "", yes: str | None = None, no: str | None = None,
                   unresolved: str | None = None) -> str:
        """The tally as a sentence fragment from the claims' own verdicts, so the verdict words are never
        typed in the prose: comparisons "wins on 3, ties within uncertainty on 2 and loses on 1 of 6";
        claims "reproduced in 3, not resolved in 1 and not reproduced in 2 of 6" (``yes``/``no``/
        ``unresolved`` reword a claim's verdicts, as in :meth:`glue_verdict`). ``of`` follows the total,
        e.g. "(model, OOD set) pairs"."""
        keys = list(keys)
        t = self.tally(keys)
        if "wins" in t:
            parts = [f"wins on {t['wins']}", f"ties within uncertainty on {t['tie within uncertainty']}",
                     f"loses on {t['loses']}"]
        else:
            w = (yes or "reproduced", unresolved or "not resolved", no or "not reproduced")
            parts = [f"{w[0]} in {t['holds']}", f"{w[1]} in {t['not resolved']}", f"{w[2]} in {t['does not hold']}"]
        return f"{parts[0]}, {parts[1]} and {parts[2]} of {len(keys)}" + (f" {of}" if of else "")

    def interval_text(self, key: str) -> str:
        """``"0.9935 [0.991, 0.996]"``: the claim's number with its interval (the number alone, through
        :func:`fmt_number`, when it has none)."""
        c = self.claims[key]
        return str(c.interval) if c.interval is not None else fmt_number(c.ours)

    def glue_interval(self, name: str, key_or_interval) -> str:
        """Glue ``"0.9935 [0.991, 0.996]"`` as ``name`` (``{glue:text}`name```): a claim's number with
        its interval, or any :class:`~ccc_lib.stats.Interval`."""
        text = str(key_or_interval) if isinstance(key_or_interval, Interval) else self.interval_text(key_or_interval)
        return glue(name, text)

    def glue_table(self, name: str) -> pd.DataFrame:
        df = self.table()
        glue(name, df, display=False)
        return df

    # ------------------------------------------------------------------ saving and asserting
    def _payload(self) -> dict:
        return {"chapter": self.chapter, "profile": self.profile.name, "hardware": hardware(),
                "status": self.status, "claims": [c.row() for c in self.claims.values()],
                "failed_claims": [c.key for c in self.failed_due], "metrics": self.metrics,
                "glued_verdicts": list(self.glued.values()),
                "dry_run": bool(getattr(self.profile, "dry_run", False))}

    def _save(self) -> None:
        atomic_write_json(metrics_dir() / f"{self.chapter}.json", self._payload())

    def save(self, **metrics) -> None:
        """Merge ``metrics`` into the chapter's payload and write the file now."""
        self.metrics.update(metrics)
        self._save()

    def finish(self, **metrics) -> pd.DataFrame:
        """Write everything (claims, payload, status), then assert the claims due at this profile."""
        self.metrics.update(metrics)
        bad = self.failed_due
        self.status = "claims_failed" if bad else "claims_ok"
        self._save()
        if bad:
            lines = [f"  - {c.key}: {c.text}: ours {fmt_number(c.ours)}, bound {c.bound_text}, "
                     f"paper {fmt_number(c.paper)}" for c in bad]
            raise ClaimsFailed(f"{len(bad)} claim(s) due at profile {self.profile.name!r} do not hold "
                               f"(recorded in {metrics_dir() / (self.chapter + '.json')}):\n" + "\n".join(lines))
        return self.table()
