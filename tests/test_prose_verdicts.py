"""Every comparative verdict in chapters 1-4 comes from an interval, never from typed prose (issue 24).

The comparative words: **wins / won, beat(s) / beaten, outperform(s / ed / ing), loses, reproduce(s /
d), "not reproduced", "does not reproduce"** (``COMPARATIVE`` below; "to reproduce" — an intent — and
the noun "reproduction" are not verdicts). A verdict in the book is the run's own: the sentence glues it
(``{glue:text}`name``` from :meth:`ccc_lib.claims.Claims.glue_verdict`, or a fragment from
:meth:`~ccc_lib.claims.Claims.tally_text` / ``Claims.verdict`` built into a glued sentence), and Claims
computes it from the interval of the claim or of the difference (``Claims.compare``: "wins" only when
the difference's interval excludes 0). So the rule is about where a comparative word may be *typed*:

**Markdown cells** (code spans, math, roles — glue roles included — link targets and HTML comments are
blanked first, as in ``tests/test_prose.py``). A sentence with a typed comparative word fails unless

1. the word is inside a quotation ("…" or “…”): the source's own words; or
2. the sentence reports a source before the word: a source — "paper(s)", "slides", "authors",
   "article", "preprint", "abstract", "et al." or a citation role — followed, still before the word, by
   a reporting verb (reports, claims, states, shows, finds, writes, concludes, says, gives, lists,
   presents, argues, observes, suggests), or "according to" followed by a source, e.g. "The paper
   reports that IOCN beats FLOW" (but not "Unlike the paper, our IOCN beats FLOW"); or
3. the sentence contains one of the strings listed in the notebook's metadata
   ``ccc.paper_claim_sentences`` (for a source's claim the rule above misreads; each listed string
   must occur in the notebook's markdown, so a stale entry fails too); or
4. the sentence names all three verdicts of a scale — "wins", "loses" and "tie within uncertainty",
   or "reproduced", "not reproduced" and "not resolved" — so it defines the scale, not a verdict.

**Code cells** (the sentences they glue as Markdown are prose too). A string literal with a
comparative word fails unless

a. it is an argument of a Claims method (``check``, ``compare``, ``report``, ``verdict``,
   ``glue_verdict``, ``tally``, ``tally_text``), possibly inside an f-string, a concatenation or a
   conditional expression: a claim's text, the paper's column, or the wording of a verdict that Claims
   picks;
b. it is exactly a verdict word (e.g. ``"wins"``, ``"loses"``), used as a token to look up or compare
   Claims' verdicts — but not as a branch of a conditional expression (``"wins" if a > b else "loses"``
   is a verdict from point estimates) nor as a direct argument of ``glue``/``glue_md``/``Markdown``;
c. it is the key of a figure's colour code: a plot-label call (``set_title``, ``legend``, ...) whose
   text names all three verdicts (wins, loses, tie within uncertainty); or
d. it reports a source (rule 2), is listed in ``ccc.paper_claim_sentences`` or defines a scale
   (rule 4).

A code cell that does not parse (after IPython magics are blanked) fails: nothing is skipped silently.
Run as a script to list the offenders: ``python tests/test_prose_verdicts.py notebooks/0*.ipynb``."""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_prose import _blank, _strip_fences  # noqa: E402  (the same blanking as the number rule)

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p for p in (ROOT / "notebooks").glob("0[1-4]_*.ipynb"))

COMPARATIVE = re.compile(
    r"\b(?:wins|won|beats?|beaten|outperform(?:s|ed|ing)?|loses|reproduc(?:e|es|ed)|"
    r"not\s+reproduced|does\s+not\s+reproduce)\b", re.I)
_INTENT = re.compile(r"\bto\s+reproduce\b", re.I)
_SOURCE = r"(?:\bpapers?\b|\bslides?\b|\bauthors?\b|\barticle\b|\bpreprint\b|\babstract\b|\bet al\b|⟦cite⟧)"
_REPORTING = (r"\b(?:reports?|reported|claims?|claimed|states?|stated|shows?|showed|shown|finds?|found|writes?|"
              r"wrote|concludes?|concluded|says?|said|gives?|gave|lists?|listed|presents?|presented|argues?|"
              r"argued|observes?|observed|suggests?|suggested)\b")
_REPORTS = re.compile(_SOURCE + r".*?" + _REPORTING + r"|\baccording\s+to\b.*?" + _SOURCE, re.I | re.S)
_SCALES = [("wins", "loses", "tie within uncertainty"), ("reproduced", "not reproduced", "not resolved")]
_QUOTE = re.compile(r"\"[^\"\n]*\"|“[^”]*”")
_ABBREV = re.compile(r"\b(et al|e\.g|i\.e|vs|cf|Eqs?|Fig|Sec|approx|resp)\.")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+(?=[\"“(*_A-Z\d{])|\n\s*\n|\n(?=\s*(?:[-*+]|\d+\.|#+)\s)")
_MD_STRIP = [
    re.compile(r"<!--.*?-->", re.S), re.compile(r"\$\$.*?\$\$", re.S), re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),
    re.compile(r"``.+?``|`[^`\n]*`"), re.compile(r"\]\([^)]*\)"),
]
_CITE_ROLE = re.compile(r"\{(?:foot)?cite[\w:-]*\}`[^`]*`")
_ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")

CLAIMS_METHODS = {"check", "compare", "report", "verdict", "glue_verdict", "tally", "tally_text"}
PROSE_SINKS = {"glue", "glue_md", "Markdown", "display_markdown"}
PLOT_LABELS = {"set_title", "suptitle", "title", "legend", "set_xlabel", "set_ylabel", "xlabel", "ylabel",
               "text", "annotate"}
VERDICT_TOKENS = {"wins", "loses", "tie within uncertainty", "holds", "does not hold", "not resolved",
                  "reproduced", "not reproduced"}


def _sentences(text: str) -> list[str]:
    text = _ABBREV.sub(lambda m: m.group(1), text)
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text) if s.strip()]


def reports_a_source(sentence: str, word_start: int) -> bool:
    """Rule 2: a source, then a reporting verb (or "according to" + a source), before the word."""
    return bool(_REPORTS.search(sentence[:word_start]))


def names_the_scale(sentence: str) -> bool:
    """Rule 4: the sentence names all three verdicts of a scale, so it defines it rather than using it."""
    low = sentence.lower()
    return any(all(re.search(r"\b" + w + r"\b", low) for w in scale) for scale in _SCALES)


def _offending(sentence: str, listed) -> list[str]:
    """The comparative words in one (blanked) sentence that the rules do not allow."""
    if any(s in sentence for s in listed) or names_the_scale(sentence):
        return []
    unquoted = _blank(_blank(sentence, _QUOTE), _INTENT)
    return [m.group(0) for m in COMPARATIVE.finditer(unquoted) if not reports_a_source(unquoted, m.start())]


def scan_markdown(text: str, listed=()) -> list[tuple[str, str]]:
    """``[(word, sentence), ...]``: typed comparative words in Markdown that the rules do not allow."""
    clean = _strip_fences(text)
    clean = _CITE_ROLE.sub(" ⟦cite⟧ ", clean)
    for p in _MD_STRIP + [_ROLE]:
        clean = _blank(clean, p)
    return [(w, s) for s in _sentences(clean) for w in _offending(s, listed)]


def _parse(src: str) -> ast.Module:
    lines = ["" if re.match(r"\s*[%!]", ln) else ln for ln in src.splitlines()]
    return ast.parse("\n".join(lines))


def _name(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _strings(node):
    """The string pieces of a constant, f-string or concatenation (not inside nested calls)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr):
        for v in node.values:
            yield from _strings(v)
    elif isinstance(node, ast.BinOp):
        yield from _strings(node.left)
        yield from _strings(node.right)


def scan_code(src: str, listed=()) -> list[tuple[str, str]]:
    """``[(word, string), ...]``: string literals of one code cell that type a verdict (rules a-d)."""
    tree = _parse(src)
    parent = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parent[child] = node
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or not COMPARATIVE.search(node.value):
            continue
        text = node.value
        # climb through f-strings, concatenations and keyword wrappers to the enclosing expression
        up, child = parent.get(node), node
        in_ifexp = False
        while isinstance(up, (ast.JoinedStr, ast.FormattedValue, ast.BinOp, ast.keyword, ast.IfExp, ast.BoolOp)):
            in_ifexp |= isinstance(up, ast.IfExp) and child is not up.test
            up, child = parent.get(up), up
        call = up if isinstance(up, ast.Call) else None
        fname = _name(call.func) if call is not None else ""
        if fname in CLAIMS_METHODS and child is not call.func:                       # rule a
            continue
        if text.strip() in VERDICT_TOKENS and not in_ifexp and fname not in PROSE_SINKS:
            continue                                                                  # rule b
        if fname in PLOT_LABELS:                                                      # rule c
            whole = " ".join(s for a in list(call.args) + [k.value for k in call.keywords] for s in _strings(a))
            if all(w in whole for w in ("wins", "loses", "tie within uncertainty")):
                continue
        bad = _offending(" ".join(text.split()), listed)                             # rule d
        out.extend((w, " ".join(text.split())) for w in bad)
    return out


def scan_notebook(path) -> list[str]:
    nb = json.loads(Path(path).read_text())
    listed = nb.get("metadata", {}).get("ccc", {}).get("paper_claim_sentences", [])
    problems = []
    md = []
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            md.append(" ".join(src.split()))
            found = scan_markdown(src, listed)
        elif cell["cell_type"] == "code":
            try:
                found = scan_code(src, listed)
            except SyntaxError as exc:
                problems.append(f"{Path(path).name} cell {i}: code does not parse ({exc.msg}, line {exc.lineno}); "
                                f"cannot check its glued sentences")
                continue
        else:
            continue
        problems += [f"{Path(path).name} cell {i} ({cell['cell_type']}): typed {w!r} in «{ctx[:220]}»"
                     for w, ctx in found]
    for s in listed:
        if not any(s in m for m in md):
            problems.append(f"{Path(path).name}: metadata ccc.paper_claim_sentences lists «{s}», which no markdown "
                            f"cell contains (stale entry: remove it)")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_comparative_verdicts_come_from_intervals(path):
    problems = scan_notebook(path)
    assert not problems, (
        f"{len(problems)} comparative verdict(s) typed in the prose instead of glued from an interval "
        "(Claims.compare / Claims.check(..., interval=...) then glue_verdict or tally_text; a sentence that "
        "reports a source's claim says so: 'the paper reports ...', or is listed in ccc.paper_claim_sentences):"
        "\n  " + "\n  ".join(problems))


def test_the_chapters_are_found():
    assert [p.name[:2] for p in CHAPTERS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("text, bad", [
    ("NeuralFP wins on MNIST.", ["wins"]),
    ("Our IOCN beats FLOW by 0.01.", ["beats"]),
    ("Unlike the paper, our IOCN beats FLOW.", ["beats"]),
    ("The method outperforms ODIN. The paper reports it too.", ["outperforms"]),
    ("Chapter 2's headline is not reproduced here.", ["not reproduced"]),
    ("This run does not reproduce the slides' number.", ["does not reproduce"]),
    ("We reproduce Table 1.", ["reproduce"]),
    ("The paper reports that the IOCN beats FLOW.", []),
    ("The slides claim NeuralFP outperforms Mahalanobis.", []),
    ("Lee et al. {footcite}`lee2020neuralfp` report that it beats every layer.", []),
    ("According to the paper, IOCN wins.", []),
    ('In their words, NeuralFP "outperforms Mahalanobis for all scenarios".', []),
    ("NeuralFP {glue:text}`ch2_verdict` against the best baseline.", []),
    ("We set out to reproduce Table 1; the reproduction report collects the verdicts.", []),
    ("The headline `wins` is a code span, $a beats b$ is math.", []),
    ("Our run beats FLOW. See the list.", []),                      # listed in the metadata below
    ("The comparisons are recorded with their verdicts (wins, loses, tie within uncertainty).", []),
    ("NeuralFP wins; a tie within uncertainty elsewhere.", ["wins"]),
])
def test_markdown_rule(text, bad):
    assert [w for w, _ in scan_markdown(text, listed=["Our run beats FLOW"])] == bad


@pytest.mark.parametrize("src, bad", [
    ('glue_md("s", f"NeuralFP wins on {n} pairs")', ["wins"]),
    ('v = "wins" if a > b else "loses"', ["wins", "loses"]),
    ('glue("v", "reproduced")', ["reproduced"]),
    ('ax.set_title("IOCN beats FLOW")', ["beats"]),
    ('C.check("k", "IOCN beats FLOW", x, ">=", 0.0)', []),
    ('C.glue_verdict("v", "k", yes="reproduced", no="not reproduced")', []),
    ('glue("v", C.verdict("k", "reproduced", "not reproduced"))', []),
    ('n_win = (winners["verdict"] == "wins").sum()', []),
    ('glue_md("s", f"NeuralFP {C.tally_text(keys)} pairs")', []),
    ('ax.set_title("green: NeuralFP wins, red: loses, grey: tie within uncertainty")', []),
    ('glue_md("s", "The paper reports that IOCN beats FLOW")', []),
    ('%pip install x\nglue_md("s", "it loses")', ["loses"]),
    ('C.compare("k", "A − B", d, paper=("wins, except SVHN" if p else "not in the slides"))', []),
    ('glue_md("v", f"reproduced in {n}" if n else f"not reproduced in any of {m}")', ["reproduced", "not reproduced"]),
    ('glue_md("v", C.tally_text(keys, "pairs"))', []),
])
def test_code_rule(src, bad):
    assert [w for w, _ in scan_code(src)] == bad


def test_unparsable_cells_and_stale_listings_fail(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "def f(:\n", "metadata": {}, "outputs": []},
                    {"cell_type": "markdown", "source": "The paper reports X.", "metadata": {}}],
          "metadata": {"ccc": {"paper_claim_sentences": ["no such sentence"]}}, "nbformat": 4, "nbformat_minor": 5}
    p = tmp_path / "01_x.ipynb"
    p.write_text(json.dumps(nb))
    problems = scan_notebook(p)
    assert len(problems) == 2 and "does not parse" in problems[0] and "stale entry" in problems[1]


if __name__ == "__main__":
    found = [p for a in sys.argv[1:] for p in scan_notebook(a)]
    print("\n".join(found) or "no typed comparative verdicts")
    sys.exit(1 if found else 0)
