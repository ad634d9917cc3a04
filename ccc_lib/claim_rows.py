"""The rows behind :class:`ccc_lib.claims.Claims`: one :class:`Claim` per declared claim, how it prints
in the "paper vs ours" table and in the metrics file, and the rules that turn a number and its interval
into a verdict. :mod:`ccc_lib.claims` holds the mechanism that declares, saves and asserts them."""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

from .stats import Interval

__all__ = ["Claim", "OPS", "VERDICTS", "COMPARE_VERDICTS", "MATCH_WORDS", "fmt_number", "judge", "with_interval",
           "interval_verdict", "known_profiles", "plain", "finite_estimate"]

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
_SYMBOL = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "="}
#: a judged claim's verdict words (positive, negative, unresolved), and a comparison's
VERDICTS = ("holds", "does not hold", "not resolved")
COMPARE_VERDICTS = ("wins", "loses", "tie within uncertainty")
#: an equivalence claim's verdicts in words (Claims.matches; VERDICTS' order)
MATCH_WORDS = ("matches", "does not match", "not resolved")


def plain(v):
    """JSON-friendly scalars (NumPy and torch numbers to Python)."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    return v


def fmt_number(v, digits: int = 4) -> str:
    v = plain(v)
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
    holds: bool | None = None       # the point estimate against the bound (what finish() asserts)
    due: bool = False               # asserted at this run's profile?
    note: str = ""
    interval: Interval | None = None
    verdict: str | None = None      # VERDICTS / COMPARE_VERDICTS word; None for a shown number
    kind: str = "claim"             # "claim", "compare", "equivalence" or "shown"
    sides: dict = field(default_factory=dict)   # compare: {"a": Interval, "b": Interval} when given
    margin: float | None = None     # equivalence: the margin δ, from the chapter's settings
    margin_setting: str = ""        # equivalence: the settings key δ was read from
    baselines: list = field(default_factory=list)   # compare against every baseline: one dict per baseline

    @property
    def bound_text(self) -> str:
        if self.op is None:
            return ""
        if self.kind == "equivalence":
            return (f"|difference| ≤ δ = {fmt_number(self.margin)} (setting {self.margin_setting}; "
                    f"{self.interval.level:.0%} interval inside ±δ)")
        if self.kind == "compare":
            return "difference > 0" + (f" vs each of {len(self.baselines)} baselines" if self.baselines else "")
        who = "paper" if self.bound_from == "paper" else "ours"
        return f"{_SYMBOL[self.op]} {fmt_number(self.bound)} ({who})"

    @property
    def interval_text(self) -> str:
        """``"[0.991, 0.996]"`` (bounds rounded outwards, :meth:`Interval.fmt`), "" without one; an interval
        from one trained model says so: ``"[0.991, 0.996] (one model)"``."""
        if self.interval is None:
            return ""
        return self.interval.fmt().split(" ", 1)[1] + (f" ({self.interval.label})" if self.interval.one_model else "")

    def row(self) -> dict:
        iv = self.interval
        r = {"key": self.key, "claim": self.text, "paper": plain(self.paper), "ours": plain(self.ours),
             "bound": self.bound_text, "holds": self.holds, "asserted at": ", ".join(self.assert_at),
             "due": self.due, "note": self.note, "kind": self.kind, "verdict": self.verdict,
             "interval": None if iv is None else [iv.lo, iv.hi], "level": None if iv is None else iv.level,
             "method": "" if iv is None else iv.method, "interval_text": self.interval_text,
             "seeds": None if iv is None else iv.seeds, "one_model": bool(iv is not None and iv.one_model)}
        for side, v in self.sides.items():
            r[side] = v.to_dict()
        if self.kind == "equivalence":
            r.update(margin=self.margin, margin_setting=self.margin_setting)
        if self.baselines:
            r["baselines"] = self.baselines
        return r


def judge(ours, op: str, bound) -> bool:
    if ours is None:
        return False
    if isinstance(ours, float) and not math.isfinite(ours):
        return False
    try:
        return bool(OPS[op](ours, bound))
    except TypeError as exc:
        raise TypeError(f"cannot compare ours={ours!r} {op} bound={bound!r}") from exc


def finite_estimate(ours) -> bool:
    """False for a missing or non-finite estimate (such a claim does not hold, whatever its interval)."""
    return not (ours is None or (isinstance(ours, float) and not math.isfinite(ours)))


def with_interval(key: str, ours, interval, level: float):
    """``(point estimate, Interval or None)`` from ``ours`` (a number or an Interval) and ``interval``
    (None, ``(lo, hi)`` or an Interval); the interval must contain the estimate."""
    if isinstance(ours, Interval):
        if interval is not None:
            raise ValueError(f"claim {key!r}: ours is already an Interval; do not pass interval= as well")
        return ours.estimate, ours
    o = plain(ours)
    if interval is None:
        return o, None
    if isinstance(interval, Interval):
        iv = interval
    else:
        try:
            lo, hi = (float(plain(v)) for v in interval)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"claim {key!r}: interval must be (lo, hi) or an Interval, got {interval!r}") from exc
        iv = Interval(o if isinstance(o, (int, float)) and not isinstance(o, bool) else float("nan"),
                      lo, hi, level, "given")
    if not (math.isfinite(iv.lo) and math.isfinite(iv.hi)):
        raise ValueError(f"claim {key!r}: interval [{iv.lo}, {iv.hi}] is not finite")
    if isinstance(o, (int, float)) and math.isfinite(o) and not (iv.lo - 1e-12 <= o <= iv.hi + 1e-12):
        raise ValueError(f"claim {key!r}: ours={o!r} lies outside its interval [{iv.lo}, {iv.hi}]; pass the "
                         f"interval of this number")
    return o, iv


def interval_verdict(iv: Interval, op: str, bound) -> str:
    """"holds" when the whole interval clears ``op bound``, "does not hold" when it lies entirely on
    the wrong side, "not resolved" when it straddles the bound."""
    lo, hi, b = iv.lo, iv.hi, bound
    clears = {">=": lo >= b, ">": lo > b, "<=": hi <= b, "<": hi < b, "==": lo == hi == b}[op]
    wrong = {">=": hi < b, ">": hi <= b, "<=": lo > b, "<": lo >= b, "==": b < lo or b > hi}[op]
    return VERDICTS[0] if clears else VERDICTS[1] if wrong else VERDICTS[2]


def known_profiles():
    from .profiles import PROFILES
    return PROFILES.keys()
