"""One table style for the whole book: every DataFrame a chapter displays (or glues) is rendered by
:func:`to_html`, installed as IPython's HTML formatter for DataFrames and Series by
:func:`install_formatter` (which ``plots.setup_style()``, called by every chapter's set-up cell, calls).

The style, as a reader sees it:

* readable column names (``n_counterfeits`` → "n counterfeits");
* numbers rounded to what they can support: :data:`DIGITS` significant digits (integers in full, with
  thousands separators), so no rendered number carries more than 6 significant digits;
* intervals as ``0.994 [0.991, 0.996]`` (an object with ``estimate``/``lo``/``hi``, such as
  ``ccc_lib.stats.Interval``, or a dict with those keys); lists and tuples of numbers item by item;
* ✓ / ✗ instead of ``True`` / ``False`` (and for a claims table's "yes" / "NO"), "—" for a missing value;
* every table in a box (``div.ccc-table``) that scrolls sideways when the table is wider than the page,
  and a long table (more than :data:`LONG_ROWS` rows) in a box of limited height with its header kept
  in view (the print style of ``book/_static/ccc.css`` lets both grow to their full size in the PDF).

The text/plain form (what a terminal shows) is left to pandas."""
from __future__ import annotations

import html
import math
import numbers

import pandas as pd

__all__ = ["DIGITS", "LONG_ROWS", "fmt_value", "fmt_interval", "readable_name", "format_frame", "to_html",
           "install_formatter", "VERDICT_MARKS"]

#: significant digits of a non-integer number in a table
DIGITS = 4
#: tables longer than this scroll inside a box of limited height
LONG_ROWS = 20
#: items of a list or tuple cell shown before "…"
MAX_ITEMS = 12
#: the three-valued verdicts (and the claims table's yes/NO) as the table shows them
VERDICT_MARKS = {"holds": "✓ holds", "does not hold": "✗ does not hold", "not resolved": "? not resolved",
                 "yes": "✓", "no": "✗", "reproduced": "✓ reproduced", "not reproduced": "✗ not reproduced",
                 "wins": "✓ wins", "loses": "✗ loses", "tie within uncertainty": "≈ tie within uncertainty"}
_VERDICT_COLUMNS = {"holds", "verdict", "holds?", "reproduced", "passed", "ok"}


def _num(v) -> float | int | None:
    """A plain Python number for NumPy/torch scalars, else None."""
    if isinstance(v, bool):
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)) and getattr(v, "ndim", 0) == 0:
        try:
            v = v.item()
        except (ValueError, AttributeError, TypeError):
            return None
    if isinstance(v, bool):
        return None
    return v if isinstance(v, numbers.Number) and not isinstance(v, complex) else None


def fmt_value(v, digits: int = DIGITS) -> str:
    """One table cell as text: numbers to ``digits`` significant digits (integers whole, with thousands
    separators; no scientific notation between 1e-4 and 1e7), booleans as ✓/✗, intervals as
    ``est [lo, hi]``, None/NaN as "—"."""
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if _is_bool(v):
        return "✓" if bool(v) else "✗"
    iv = _interval_parts(v)
    if iv is not None:
        return fmt_interval(*iv)
    if isinstance(v, (list, tuple)) or (hasattr(v, "tolist") and getattr(v, "ndim", 0) == 1):
        items = list(v.tolist() if hasattr(v, "tolist") else v)
        inner = ", ".join(fmt_value(x, digits) for x in items[:MAX_ITEMS])
        inner += ", …" if len(items) > MAX_ITEMS else ""
        if isinstance(v, list) or hasattr(v, "tolist"):
            return f"[{inner}]"
        return f"({inner}{',' if len(items) == 1 else ''})"
    x = _num(v)
    if x is None:
        try:
            if pd.isna(v):
                return "—"
        except (TypeError, ValueError):
            pass
        return str(v)
    if isinstance(x, int) or (isinstance(x, float) and math.isfinite(x) and x.is_integer() and abs(x) >= 10 ** digits):
        return f"{int(x):,}"
    if not math.isfinite(x):
        return "—" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(float(f"{x:.{digits - 1}e}"))))     # of the rounded value: 0.99999 -> 0
    if mag >= 7 or mag < -4:
        return f"{x:.{digits - 1}e}"
    if mag >= digits - 1:                       # 1234.56 -> 1,235: the integer part already has the digits
        return f"{round(x):,}"
    decimals = max(digits - 1 - mag, 0)
    text = f"{x:.{decimals}f}"
    if "." in text and round(x, decimals) == x:        # exact: 0.5000 -> 0.5; rounded: 0.99999 -> 1.000
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_interval(estimate, lo, hi, digits: int = 3) -> str:
    """``0.994 [0.991, 0.996]``: the estimate and its interval, each to ``digits`` significant digits."""
    parts = [fmt_value(x, digits) for x in (estimate, lo, hi)]
    return f"{parts[0]} [{parts[1]}, {parts[2]}]"


def _is_bool(v) -> bool:
    return isinstance(v, bool) or type(v).__name__ in ("bool_", "bool8") or \
        (hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0 and str(v.dtype) == "bool")


def _interval_parts(v):
    """(estimate, lo, hi) of an interval-like value, else None."""
    if all(hasattr(v, a) for a in ("estimate", "lo", "hi")):
        return v.estimate, v.lo, v.hi
    if isinstance(v, dict) and {"estimate", "lo", "hi"} <= set(v):
        return v["estimate"], v["lo"], v["hi"]
    return None                     # a plain tuple is a tuple (a shape, a pair), never guessed to be an interval


def readable_name(name) -> str:
    """A column or index name for a reader: identifiers lose their underscores (``run_seconds`` →
    "run seconds"); names that already read as words are kept."""
    if isinstance(name, tuple):
        return " · ".join(readable_name(n) for n in name)
    if name is None:
        return ""
    text = str(name)
    if "_" in text and " " not in text:
        text = text.replace("_", " ").strip()
    return text


def _cell(v, column) -> str:
    if isinstance(v, str) and readable_name(column).lower() in _VERDICT_COLUMNS:
        return VERDICT_MARKS.get(v.strip().lower(), v) if v.strip() else v
    return fmt_value(v)


def format_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every cell and index label as display text and readable names."""
    out = pd.DataFrame({i: [_cell(v, col) for v in df.iloc[:, i]] for i, col in enumerate(df.columns)},
                       index=df.index)
    out.columns = pd.Index([readable_name(c) for c in df.columns]) if not isinstance(df.columns, pd.MultiIndex) \
        else pd.MultiIndex.from_tuples([tuple(readable_name(x) for x in c) for c in df.columns],
                                       names=[readable_name(n) for n in df.columns.names])
    if isinstance(df.index, pd.MultiIndex):
        out.index = pd.MultiIndex.from_tuples([tuple(fmt_value(x) for x in t) for t in df.index],
                                              names=[readable_name(n) for n in df.index.names])
    else:
        out.index = pd.Index([fmt_value(x) for x in df.index], name=readable_name(df.index.name)
                             if df.index.name is not None else None)
    return out


def _plain_index(df: pd.DataFrame) -> bool:
    """A 0..n-1 RangeIndex without a name says nothing: it is not shown."""
    return isinstance(df.index, pd.RangeIndex) and df.index.name is None and df.index.start == 0 \
        and df.index.step == 1


def to_html(obj, caption: str | None = None) -> str:
    """The book's HTML for a DataFrame or Series (see the module docstring)."""
    df = obj.to_frame() if isinstance(obj, pd.Series) else obj
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"to_html needs a pandas DataFrame or Series, not {type(obj).__name__}")
    shown = format_frame(df)
    n_index = 0
    if not _plain_index(df) and not isinstance(df.columns, pd.MultiIndex):
        # the index becomes the first column(s), so the header is one row; a grouping level (all but the
        # last of a MultiIndex) is written once per group, as a grouped table reads
        n_index = df.index.nlevels
        names = [n if n else "" for n in shown.index.names]
        levels = pd.DataFrame({f"_i{k}": shown.index.get_level_values(k) for k in range(n_index)})
        flat = levels.copy()
        same = pd.Series(True, index=flat.index)
        for k in range(n_index - 1):               # compared on the original labels, outer levels first
            same &= levels[f"_i{k}"].eq(levels[f"_i{k}"].shift())
            flat.loc[same, f"_i{k}"] = ""
        flat.columns = names
        shown = pd.concat([flat, shown.reset_index(drop=True)], axis=1)
        body = shown.to_html(index=False, escape=True, border=0, na_rep="—", justify="left",
                             classes=["ccc-table-grid", f"ccc-index-{min(n_index, 3)}"])
    else:
        body = shown.to_html(index=not _plain_index(df), escape=True, border=0, na_rep="—",
                             classes=["ccc-table-grid"], justify="left")
    long = len(df) > LONG_ROWS
    note = (f'<div class="ccc-table-note">{len(df):,} rows: the table scrolls; its header stays in view</div>'
            if long else "")
    cap = f'<div class="ccc-table-caption">{html.escape(caption)}</div>' if caption else ""
    return f'<div class="ccc-table{" ccc-table-long" if long else ""}">{cap}{body}</div>{note}'


def install_formatter(ip=None) -> bool:
    """Make :func:`to_html` IPython's HTML form of every DataFrame and Series shown (or glued) in this
    kernel. Returns False outside IPython (nothing to install)."""
    if ip is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        ip = get_ipython()
    if ip is None:
        return False
    fmt = ip.display_formatter.formatters["text/html"]
    fmt.for_type(pd.DataFrame, to_html)
    fmt.for_type(pd.Series, to_html)
    return True
