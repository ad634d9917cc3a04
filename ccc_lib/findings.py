"""The intro page's "what we found" table, generated from the run's metrics files when the book is staged
(``static_book.stage_book``), so it can never disagree with the chapters: per paper its headline claim, our
number (with its interval when the chapter recorded one), our verdict — reproduced, not reproduced or
not resolved — the profile it was measured at, and a link to the chapter.

The headline claim of a chapter is chosen by :data:`HEADLINES`: an ordered list of patterns over the
claim keys the chapter declares (``Claims.check(key, ...)``); the first pattern that matches a judged
claim wins, and a chapter that declares several (one per dataset) shows each one's number and a verdict
over all of them. When no pattern matches (a key was renamed), the row says so and shows the chapter's
first judged claim instead, never nothing.

A paper's claim to MATCH a method (chapter 3: "matches the state of the art") is read only from an
equivalence claim (``Claims.matches``: the 90 % interval of the difference inside a margin declared in the
chapter's settings); a tie within uncertainty — or a win — is never shown as a reproduced match: without
an equivalence claim the row is "not resolved" and its note says why (issue 38). An interval from one
trained model is marked "(one model)"; a headline judged on a point estimate says so in its note."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .tables import fmt_interval, fmt_value

__all__ = ["Headline", "HEADLINES", "headline_rows", "findings_markdown", "write_findings", "MARKER",
           "PDF_MARKER", "claim_verdict"]

#: where ``book/intro.md`` receives the table (an HTML comment: invisible when not replaced)
MARKER = "<!-- ccc:findings -->"
#: where ``book/intro.md`` receives the link to the PDF of the whole book
PDF_MARKER = "<!-- ccc:pdf -->"


@dataclass(frozen=True)
class Headline:
    chapter: str                 # the notebook's stem
    title: str                   # the chapter's short title
    paper: str                   # who claimed it
    claim: str                   # the headline claim in words
    keys: tuple = ()             # regular expressions over claim keys, most preferred first
    prefer: str = ""             # among several matching rows, those whose text contains this come first
    exclude: tuple = field(default=())   # keys matching these are never the headline
    # comparisons (Claims.compare) whose paper claim is a *match*, not a win (IOCN "match[es] the state of
    # the art"): they are judged by the chapter's equivalence claim (Claims.matches, keys matching
    # ``equivalence``) instead; without one the match is "not resolved" — a tie is never a match (issue 38)
    match: tuple = field(default=())
    equivalence: tuple = field(default=())


HEADLINES = (
    Headline("01_counterfeits", "Counterfeits", "Suhail & Sethi (2025)",
             "a conditioned generator makes images the classifier labels with near-certain confidence",
             keys=(r"^confidence_",)),
    Headline("02_neuralfp", "NeuralFP", "Lee et al. (2020)",
             "per-layer autoencoder fingerprints detect out-of-distribution inputs (combined AUROC)",
             keys=(r"^auroc_.+_vs_",), exclude=(r"_eng$",)),
    Headline("03_iocn", "IOCN", "Schmier, Köthe & Straehle (2024)",
             "an invertible one-class network outperforms a standard normalizing flow and matches the best "
             "baseline (mean AUROC; the abstract's two claims)",
             keys=(r"^iocn_vs_(flow|best)_",), prefer="learned features", match=(r"^iocn_vs_best_",),
             equivalence=(r"^iocn_matches_best_",)),
    Headline("04_drift", "Drift via gray data", "the drift slides (no year stated)",
             "model inversion and membership inference detect a drifted production model",
             keys=(r"_detected$",)),
    Headline("05_report", "Across chapters", "this book",
             "detectors that look beyond the classifier's confidence catch the confident counterfeits",
             keys=(r"^cf_verdict$",)),
)

VERDICT_WORDS = {"holds": "reproduced", "does not hold": "not reproduced", "not resolved": "not resolved"}
#: a comparison's verdict (``Claims.compare``) read as a claim's
_COMPARE = {"wins": "holds", "loses": "does not hold", "tie within uncertainty": "not resolved"}
_MARK = {"reproduced": "✓", "not reproduced": "✗", "not resolved": "?", "not run": "—"}


def claim_verdict(row: dict) -> str | None:
    """"holds", "does not hold" or "not resolved" for a judged claim row (its ``verdict`` when the chapter
    recorded the three-valued one — a comparison's "wins" / "loses" / "tie within uncertainty" read as
    these — else from ``holds``); None for a number shown, not judged."""
    v = row.get("verdict")
    if isinstance(v, str):
        v = _COMPARE.get(v.strip().lower(), v.strip().lower())
        if v in VERDICT_WORDS:
            return v
    h = row.get("holds")
    if h is None:
        return None
    return "holds" if bool(h) else "does not hold"


def _interval(row: dict):
    """(lo, hi) of the claim's interval, from whichever form the chapter recorded, else None."""
    iv = row.get("interval")
    if isinstance(iv, dict) and "lo" in iv and "hi" in iv:
        return iv["lo"], iv["hi"]
    if isinstance(iv, (list, tuple)) and len(iv) in (2, 3):
        return tuple(iv[-2:])
    for lo, hi in (("lo", "hi"), ("ours_lo", "ours_hi"), ("interval_lo", "interval_hi")):
        if row.get(lo) is not None and row.get(hi) is not None:
            return row[lo], row[hi]
    return None


def _number(row: dict) -> str:
    """Our number with its interval where recorded; "(one model)" after an interval from one trained model
    (never read as an interval over seeds)."""
    iv = _interval(row)
    ours = row.get("ours")
    if iv is not None and isinstance(ours, (int, float)) and not isinstance(ours, bool):
        one = row.get("one_model") or row.get("seeds") == 1 or (isinstance(row.get("interval"), dict)
                                                                 and row["interval"].get("seeds") == 1)
        text = fmt_interval(ours, *iv) + (" (one model)" if one else "")
        if row.get("kind") == "equivalence" and row.get("margin") is not None:
            text += f", margin ±{fmt_value(row['margin'])}"
        return text
    return fmt_value(ours)


def _matches(h: Headline, rows: list[dict], claims: list[dict]) -> tuple[list[dict], str]:
    """Replace the headline's match comparisons (``h.match``) by the chapter's equivalence claims
    (``h.equivalence``, the same ``prefer`` rule); none declared: the match rows stay and read "not
    resolved" (:func:`_read`), and the note says why."""
    if not h.match and not h.equivalence:
        return rows, ""
    eq = [r for r in claims if _is(r, h.equivalence) and claim_verdict(r) is not None]
    if h.prefer and any(h.prefer in str(r.get("claim", "")) for r in eq):
        eq = [r for r in eq if h.prefer in str(r.get("claim", ""))]
    if eq:
        return [r for r in rows if not _is(r, h.match)] + eq, ""
    why = ("no equivalence test with a declared margin for the match claim: a tie within uncertainty is not a "
           "match, so it is not resolved")
    if not any(_is(r, h.match) for r in rows):      # the match claim is missing altogether: it still counts
        rows = rows + [{"key": "(match claim not declared)", "claim": "match: not declared", "ours": None,
                        "kind": "equivalence", "verdict": "not resolved"}]
    return rows, why


def _is(r: dict, patterns) -> bool:
    return any(re.search(p, str(r.get("key", ""))) for p in patterns)


def _pick(h: Headline, rows: list[dict]) -> tuple[list[dict], str]:
    judged = [r for r in rows if claim_verdict(r) is not None
              and not any(re.search(x, str(r.get("key", ""))) for x in h.exclude)]
    for pattern in h.keys:
        hit = [r for r in judged if re.search(pattern, str(r.get("key", "")))]
        if hit:
            if h.prefer and any(h.prefer in str(r.get("claim", "")) for r in hit):
                hit = [r for r in hit if h.prefer in str(r.get("claim", ""))]
            return hit, ""
    if judged:
        return judged[:1], (f"headline key ({', '.join(h.keys)}) not found in this run: showing the chapter's "
                            f"first judged claim")
    return [], "the chapter recorded no judged claim"


def _overall(verdicts: list[str]) -> str:
    if verdicts and all(v == "holds" for v in verdicts):
        return "reproduced"
    if any(v == "does not hold" for v in verdicts):
        held = sum(v == "holds" for v in verdicts)
        return "not reproduced" + (f" ({held} of {len(verdicts)} hold)" if held else "")
    return "not resolved"


def headline_rows(metrics: dict, headlines=HEADLINES) -> list[dict]:
    """One dict per headline (chapter, title, paper, claim, ours, verdict, profile, note) from
    ``report.load_metrics()``-style ``{stem: blob}``; a chapter without a metrics file says "not run"."""
    out = []
    for h in headlines:
        blob = metrics.get(h.chapter)
        row = {"chapter": h.chapter, "title": h.title, "paper": h.paper, "claim": h.claim, "ours": "—",
               "ours_parts": [],
               "verdict": "not run", "profile": "—", "note": ""}
        if blob is None:
            row["note"] = "no metrics file: the chapter did not run in this build"
            out.append(row)
            continue
        rows, note = _pick(h, list(blob.get("claims") or []))
        rows, why = _matches(h, rows, list(blob.get("claims") or []))
        if rows and all(_interval(r) is None for r in rows):
            why = "; ".join(x for x in (why, "judged on a point estimate: the chapter recorded no interval") if x)
        note = "; ".join(x for x in (note, why) if x)
        verdicts = [_read(h, r) for r in rows]
        parts = []
        for r in rows:
            label = _label(r, h, len(rows))
            parts.append(f"{label}{_number(r)}" if label else _number(r))
        status = blob.get("status")
        if status == "running":
            note = "; ".join(x for x in (note, "the chapter had not finished when this page was built") if x)
        elif status not in (None, "ok", "claims_ok"):
            failed = "the chapter failed" + ("" if status == "failed" else f" ({status})")
            note = "; ".join(x for x in (note, failed) if x)
        row.update(ours="; ".join(parts) if parts else "—", ours_parts=parts,
                   verdict=_overall(verdicts) if rows else "not resolved",
                   profile=str(blob.get("profile") or "—"), note=note,
                   paper_value=", ".join(dict.fromkeys(fmt_value(r.get("paper")) for r in rows)) if rows else "")
        out.append(row)
    return out


def _read(h: Headline, r: dict) -> str | None:
    """A headline claim row's verdict (:func:`claim_verdict`). A comparison standing for a match claim
    (``h.match``; no equivalence claim replaced it) is "not resolved" whatever its verdict: neither a tie
    nor a win shows a match; only an equivalence claim (``Claims.matches``) can."""
    if _is(r, h.match) and r.get("kind") != "equivalence":
        return "not resolved"
    return claim_verdict(r)


def _label(r: dict, h: Headline, n: int) -> str:
    """With several matching claims (one per dataset, or per comparison), the part of the claim's text
    before the first colon (e.g. "fashion_mnist"), else before the first comma (e.g. "IOCN − FLOW"), else
    the key."""
    if n == 1:
        return ""
    text = str(r.get("claim", ""))
    for sep in (":", ","):       # "fashion_mnist: …", "IOCN − FLOW, mean AUROC …"
        if sep in text:
            return text.split(sep, 1)[0].strip() + ": "
    return str(r.get("key", "")) + ": "


#: at most this many per-dataset numbers in the "ours" cell (the verdict counts all of them)
MAX_SHOWN = 3
_CSS = {"reproduced": "ccc-verdict-holds", "not reproduced": "ccc-verdict-fails", "not resolved": "ccc-verdict-open",
        "not run": "ccc-verdict-open"}


def findings_markdown(metrics: dict, link_prefix: str = "../notebooks/", headlines=HEADLINES) -> str:
    """The MyST list-table (class ``ccc-findings``, label ``tbl-findings``) of :func:`headline_rows`."""
    rows = headline_rows(metrics, headlines)
    profiles = sorted({r["profile"] for r in rows if r["profile"] != "—"})
    lines = ["```{list-table} What we found, read from this build's metrics"
             f"{' (profile ' + ', '.join(profiles) + ')' if profiles else ''}",
             ":header-rows: 1", ":name: tbl-findings", ":class: ccc-findings", ":widths: 17 37 16 22 8", "",
             "* - chapter", "  - headline claim", "  - our verdict", "  - ours (paper)", "  - profile"]
    for r in rows:
        head = r["verdict"].split(" (")[0]
        extra = r["verdict"][len(head):].strip(" ()")
        verdict = (f'<span class="{_CSS.get(head, "")}">{_MARK.get(head, "")} {head}</span>'
                   + (f" ({_esc(extra)})" if extra else ""))
        note = f" *({_esc(r['note'])})*" if r["note"] else ""
        ours = r["ours_parts"]
        shown = "; ".join(_esc(x) for x in ours[:MAX_SHOWN])
        shown += f"; … ({len(ours)} in all)" if len(ours) > MAX_SHOWN else ""
        paper = r.get("paper_value") or ""
        paper = f" (paper: {_esc(paper)})" if paper and paper not in ("not reported", "—") else ""
        lines += [f"* - [{r['title']}]({link_prefix}{r['chapter']}.ipynb) · {_esc(r['paper'])}",
                  f"  - {_esc(r['claim'])}{note}", f"  - {verdict}", f"  - {shown or '—'}{paper}",
                  f"  - `{r['profile']}`"]
    lines.append("```")
    return "\n".join(lines)


def _esc(text) -> str:
    """Markdown-safe cell text (claims may contain * or _ or backticks)."""
    return re.sub(r"([*_`\[\]<>])", r"\\\1", str(text))


def write_findings(intro: Path, metrics_dir: Path, pdf_href: str | None = None) -> bool:
    """Replace :data:`MARKER` in the (staged) intro page by the findings table read from ``metrics_dir``
    and :data:`PDF_MARKER` by a link to the book's PDF (``pdf_href``). Returns whether the table was
    written (False when the page has no marker)."""
    intro = Path(intro)
    text = intro.read_text()
    metrics = {}
    for p in sorted(Path(metrics_dir).glob("*.json")):
        try:
            metrics[p.stem] = json.loads(p.read_text())
        except json.JSONDecodeError:
            metrics[p.stem] = {"status": "unreadable metrics file", "claims": []}
    done = MARKER in text
    text = text.replace(MARKER, findings_markdown(metrics))
    if pdf_href:
        link = (f'<p class="ccc-pdf-link"><a href="{pdf_href}">The whole book as one PDF</a> '
                f'(printed from this build\'s single-page HTML).</p>')
        text = text.replace(PDF_MARKER, link)
    intro.write_text(text)
    return done
