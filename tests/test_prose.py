"""Every number in the notebooks' prose comes from the run, or is a paper value / fixed setting listed
on purpose.

The rule, applied to the markdown cells of every notebook in ``notebooks/``:

1. Not scanned: code spans and roles (so glue roles ``{glue:text}`name``` and citations
   ``{footcite}`key```), fenced code blocks, math (``$...$``, ``$$...$$``), link targets ``](...)``,
   HTML comments, MyST targets ``(label)=`` and directive option lines ``:key: value``.
2. Allowed without listing: years (1900-2099); numbers right after "Eq.", "Eqs.", "equation", "§",
   "Section", "Sec.", "Figure", "Fig.", "Table", "Algorithm", "Appendix", "chapter(s)" or "Chapter(s)",
   with lists such as "chapters 2 and 3" or "Table 1–2"; numbers that are part of a name, i.e. glued to
   a letter (``mnist5k``, ``L2``, ``1st``, ``2D``), after a letter and a hyphen (``CIFAR-10``,
   ``ResNet-18``), or joined by × into a shape (``3×32×32``); footnote marks ``[^1]``; list item
   numbers at the start of a line (``1.``).
3. Every other number must appear, exactly as written, in the notebook's metadata
   ``metadata["ccc"]["prose_numbers"]`` (paper values and fixed settings kept typed on purpose).

A failure lists each offending number with its notebook, cell index and context. Comparative verdicts
("wins", "beats", "reproduces", ...) have their own rule in ``tests/test_prose_verdicts.py``: they must be
glued from an interval-backed verdict of ``ccc_lib.claims.Claims``. Run this file as a
script on one notebook to list them: ``python tests/test_prose.py notebooks/01_counterfeits.ipynb``."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

_FENCE = re.compile(r"^(```+|~~~+)(.*?)$.*?^\1\s*$", re.M | re.S)
_STRIP = [
    re.compile(r"<!--.*?-->", re.S),                      # HTML comments
    re.compile(r"\$\$.*?\$\$", re.S),                     # display math
    re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),            # inline math
    re.compile(r"\{[\w:-]+\}`[^`]*`"),                    # roles: glue, footcite, numref, ...
    re.compile(r"``.+?``|`[^`\n]*`"),                     # code spans
    re.compile(r"\]\([^)]*\)"),                           # link targets
    re.compile(r"^\s*\([\w:.-]+\)=\s*$", re.M),           # MyST targets
    re.compile(r"^\s*:[\w-]+:.*$", re.M),                 # directive options
    re.compile(r"\[\^[\w-]+\]"),                          # footnote marks
]
_NUM = r"\d+(?:[.,]\d+)*"
_ALLOWED = [
    re.compile(r"\b(?:19|20)\d\d\b"),                                                   # years
    re.compile(r"(?:\bEqs?\.|\bequations?|§|\bSections?|\bSec\.|\bFigures?|\bFig\.|\bTables?|\bAlgorithms?|"
               r"\bAppendix|\b[Cc]hapters?)\s*\(?" + _NUM + r"\)?"
               r"(?:\s*(?:,|and|or|to|–|-)\s*\(?" + _NUM + r"\)?)*"),                  # references
    re.compile(r"(?:\d+\s*×\s*)+\d+"),                                                  # shapes 3×32×32
    re.compile(r"[A-Za-z_]+-?" + _NUM + r"[A-Za-z_\d]*"),                               # CIFAR-10, mnist5k, L2
    re.compile(_NUM + r"[A-Za-z_]+"),                                                   # 5k, 2D, 1st
    re.compile(r"^\s*\d+\.\s", re.M),                                                   # list item numbers
]
_NUMBER = re.compile(r"(?<![\w.])" + _NUM + r"(?![\w])")


def _blank(text: str, pattern: re.Pattern) -> str:
    """Replace matches by spaces (offsets stay put for the context shown in failures)."""
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _strip_fences(text: str) -> str:
    """Code blocks are blanked; a directive block (```{note}) keeps its body, its opening line goes."""
    def repl(m):
        block = m.group(0)
        if m.group(2).strip().startswith("{"):
            lines = block.split("\n")
            return "\n".join([" " * len(lines[0])] + lines[1:-1] + [" " * len(lines[-1])])
        return re.sub(r"[^\n]", " ", block)
    return _FENCE.sub(repl, text)


def scan_markdown(text: str, allowed=()) -> list[tuple[str, str]]:
    """The numbers in ``text`` that the rule does not allow: ``[(number, context), ...]``."""
    clean = _strip_fences(text)
    for p in _STRIP:
        clean = _blank(clean, p)
    for p in _ALLOWED:
        clean = _blank(clean, p)
    out = []
    allowed = set(allowed)
    for m in _NUMBER.finditer(clean):
        if m.group(0) in allowed:
            continue
        a, b = max(0, m.start() - 40), min(len(text), m.end() + 40)
        out.append((m.group(0), " ".join(text[a:b].split())))
    return out


def scan_notebook(path) -> list[str]:
    nb = json.loads(Path(path).read_text())
    allowed = nb.get("metadata", {}).get("ccc", {}).get("prose_numbers", [])
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for num, ctx in scan_markdown(src, allowed):
            problems.append(f"{Path(path).name} cell {i}: {num!r} in «{ctx}»")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_prose_numbers_are_glued_or_listed(path):
    problems = scan_notebook(path)
    assert not problems, (
        f"{len(problems)} number(s) in the prose are neither glued from the run nor listed in the notebook's "
        "metadata ccc.prose_numbers (paper values / fixed settings):\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("text, bad", [
    ("accuracy 0.97 on the test set", ["0.97"]),
    ("the gap is 1.9× larger", ["1.9"]),
    ("trained on 6,000 images per class", ["6,000"]),
    ("{glue:text}`ch0_acc` and 0.5", ["0.5"]),
    ("see Table 2 and Eq. (3), chapters 2 and 3, in 2020", []),
    ("`n = 500` and $\\alpha = 0.05$ and $$x^2 = 4$$", []),
    ("mnist5k, CIFAR-10, ResNet-18, 3×32×32, L2, 2D", []),
    ("1. first\n2. second with 7 items", ["7"]),
    ("[link](https://x.org/2503.20187) and a footnote[^1]", []),
    ("```python\nx = 3\n```\nafter 4", ["4"]),
    ("```{note}\ninside 12 a note\n```", ["12"]),
    ("paper value 0.9826", []),
])
def test_scan_rule(text, bad):
    assert [n for n, _ in scan_markdown(text, allowed=["0.9826"])] == bad


if __name__ == "__main__":
    found = [p for a in sys.argv[1:] for p in scan_notebook(a)]
    print("\n".join(found) or "no unlisted numbers")
    sys.exit(1 if found else 0)
