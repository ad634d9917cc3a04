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
* Verdicts are computed here, never written by hand: no ``holds=True`` anywhere else."""
from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field

import pandas as pd

from .profiles import Profile, get_profile
from .report import glue, hardware, metrics_dir
from .utils import atomic_write_json

__all__ = ["Claims", "Claim", "ClaimsFailed", "OPS"]

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
_SYMBOL = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "="}


class ClaimsFailed(AssertionError):
    """One or more claims due at this profile do not hold (the metrics file already records them)."""


def _plain(v):
    """JSON-friendly scalars (NumPy and torch numbers to Python)."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    return v


def fmt_number(v, digits: int = 4) -> str:
    v = _plain(v)
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{round(v, digits):g}"
    return str(v)


@dataclass
class Claim:
    key: str
    text: str
    ours: object
    paper: object = "not reported"
    op: str | None = None           # None: a number shown, not judged
    bound: object = None
    bound_from: str = ""            # "paper" or "ours" ("" for shown numbers)
    assert_at: tuple = ()
    holds: bool | None = None
    due: bool = False               # asserted at this run's profile?
    note: str = ""

    @property
    def bound_text(self) -> str:
        if self.op is None:
            return ""
        who = "paper" if self.bound_from == "paper" else "ours"
        return f"{_SYMBOL[self.op]} {fmt_number(self.bound)} ({who})"

    def row(self) -> dict:
        return {"key": self.key, "claim": self.text, "paper": _plain(self.paper), "ours": _plain(self.ours),
                "bound": self.bound_text, "holds": self.holds, "asserted at": ", ".join(self.assert_at),
                "due": self.due, "note": self.note}


@dataclass
class Claims:
    """The claims of one chapter at one profile (see the module docstring)."""
    chapter: str
    profile: object = None
    claims: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    status: str = "running"

    def __post_init__(self):
        self.profile = get_profile(self.profile)
        self._save()

    # ------------------------------------------------------------------ declaring
    def check(self, key: str, text: str, ours, op: str, bound=None, *, paper="not reported",
              bound_from: str | None = None, assert_at=("default", "full"), note: str = "") -> bool:
        """Declare a judged claim ``ours <op> bound`` and record it at once; returns whether it holds.

        ``bound`` defaults to ``paper`` when that is a number. ``bound_from`` is "paper" when the
        bound *is* the paper's number (the default when it equals it), else "ours"."""
        if op not in OPS:
            raise ValueError(f"claim {key!r}: op must be one of {list(OPS)}, not {op!r}")
        paper_num = isinstance(_plain(paper), (int, float)) and not isinstance(_plain(paper), bool)
        if bound is None:
            if not paper_num:
                raise ValueError(f"claim {key!r}: give a bound (the paper reports no number to judge against)")
            bound = paper
        if bound_from is None:
            bound_from = "paper" if paper_num and _plain(bound) == _plain(paper) else "ours"
        if bound_from not in ("paper", "ours"):
            raise ValueError(f"claim {key!r}: bound_from must be 'paper' or 'ours'")
        if bound_from == "paper" and not (paper_num and _plain(bound) == _plain(paper)):
            raise ValueError(f"claim {key!r}: bound_from='paper' but the bound {bound!r} is not the paper's "
                             f"number {paper!r}")
        if isinstance(assert_at, str):
            assert_at = (assert_at,)
        unknown = set(assert_at) - set(_known_profiles())
        if unknown:
            raise ValueError(f"claim {key!r}: unknown profiles in assert_at: {sorted(unknown)}")
        o, b = _plain(ours), _plain(bound)
        holds = _judge(o, op, b)
        self._add(Claim(key, text, o, _plain(paper), op, b, bound_from, tuple(assert_at), holds,
                        self.profile.name in assert_at, note))
        return holds

    def report(self, key: str, text: str, ours, *, paper="not reported", note: str = "") -> None:
        """Record a number shown beside the claims without judging it (``holds`` stays None)."""
        self._add(Claim(key, text, _plain(ours), _plain(paper), note=note))

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
        """The "paper vs ours" table: claim, paper, ours, bound, holds, asserted at."""
        cols = ["claim", "paper", "ours", "bound", "holds", "asserted at"]
        rows = [c.row() for c in self.claims.values()]
        df = pd.DataFrame(rows, columns=["key"] + cols + ["due", "note"])
        df["ours"] = df["ours"].map(fmt_number)
        df["paper"] = df["paper"].map(fmt_number)
        df["holds"] = df["holds"].map(lambda h: "" if h is None else ("yes" if h else "NO"))
        return df.set_index("claim") if full else df[cols].set_index("claim")

    def verdict(self, key: str, yes: str = "holds", no: str = "does not hold") -> str:
        h = self.claims[key].holds
        if h is None:
            raise ValueError(f"{key!r} is a shown number, not a judged claim")
        return yes if h else no

    def glue_verdict(self, name: str, key: str, yes: str = "reproduced", no: str = "not reproduced") -> str:
        return glue(name, self.verdict(key, yes, no))

    def glue_table(self, name: str) -> pd.DataFrame:
        df = self.table()
        glue(name, df, display=False)
        return df

    # ------------------------------------------------------------------ saving and asserting
    def _payload(self) -> dict:
        return {"chapter": self.chapter, "profile": self.profile.name, "hardware": hardware(),
                "status": self.status, "claims": [c.row() for c in self.claims.values()],
                "failed_claims": [c.key for c in self.failed_due], "metrics": self.metrics,
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


def _judge(ours, op: str, bound) -> bool:
    if ours is None:
        return False
    if isinstance(ours, float) and not math.isfinite(ours):
        return False
    try:
        return bool(OPS[op](ours, bound))
    except TypeError as exc:
        raise TypeError(f"cannot compare ours={ours!r} {op} bound={bound!r}") from exc


def _known_profiles():
    from .profiles import PROFILES
    return PROFILES.keys()
