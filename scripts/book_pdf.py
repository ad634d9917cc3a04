"""A PDF of the whole book from the same build: Jupyter Book's single-page HTML (builder ``singlehtml``,
from the sources ``python -m ccc_lib book`` staged in ``<out>/_build/src``) printed by headless Chromium
(Playwright driving Debian's ``chromium``: ``scripts/headless.py``, shared with
``scripts/browser_test.py``), offline.

    python scripts/book_pdf.py                   # <root>/_build/src -> <root>/_build/html/book.pdf
    python scripts/book_pdf.py --out DIR         # a book built with `ccc_lib book --out DIR`
    python scripts/book_pdf.py --check FILE.pdf  # only report pages, size and bookmarks of a PDF

The print style (``@media print`` in ``book/_static/ccc.css``) drops the navigation, lets wide tables
wrap to the page width and long tables grow to their full length, scales figures to the page and keeps
a figure or a table row on one page. The PDF has bookmarks (its outline) for every heading; the script
checks that every chapter's title is among them, prints the PDF's size and page count, and exits 1 when
a title is missing or the PDF could not be made. The intro page links to ``book.pdf`` next to its
``index.html``."""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from headless import launch, wait_rendered  # noqa: E402  (the browser test's Chromium, launched the same way)


def build_singlehtml(src: Path, out: Path) -> Path:
    """``jupyter-book build SRC --builder singlehtml`` into ``out/_build/singlehtml``; its index.html."""
    jb = Path(sys.executable).with_name("jupyter-book")
    shutil.rmtree(out / "_build" / "singlehtml", ignore_errors=True)
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(src), "--path-output", str(out),
           "--builder", "singlehtml"]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    index = out / "_build" / "singlehtml" / "index.html"
    if r.returncode or not index.exists():
        sys.exit(f"the single-page HTML build failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    # the root document is book/intro, so index.html only redirects to book/intro.html, whose links to
    # _static/ and _images/ are written relative to the top folder: a copy there resolves them
    m = re.search(r'url=([^"\s]+)"', index.read_text())
    if m and (index.parent / m.group(1)).exists():
        single = index.parent / "book-single.html"
        shutil.copy(index.parent / m.group(1), single)
        index = single
    add_widget_states(index, out / "_build" / "html")
    return index


_STATE = re.compile(r'<script type="application/vnd\.jupyter\.widget-state\+json">.*?</script>', re.S)
_LOADERS = re.compile(r'<script[^>]*(?:require\.min\.js|embed-amd\.js)[^>]*></script>')


def add_widget_states(single: Path, html: Path) -> int:
    """The single page holds every chapter's widget views but, its root being the intro, neither the saved
    widget states nor the widget manager: copy both from the chapters' HTML pages (``html``, the same
    build) so the precomputed panels print at the chapter's own setting. Returns the states added."""
    states, loaders = [], []
    for page in sorted((html / "notebooks").glob("*.html")) if html.is_dir() else []:
        text = page.read_text()
        states += _STATE.findall(text)
        loaders += [t.replace('src="../_static/', 'src="_static/') for t in _LOADERS.findall(text)]
    if not states:
        return 0
    text = single.read_text()
    head = "".join(dict.fromkeys(t for t in loaders if t not in text))
    text = text.replace("</head>", head + "</head>", 1)
    text = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "".join(states), text, count=1)
    single.write_text(text)
    return len(states)


#: A4 less the margins below, in CSS pixels (96 per inch): the width the print layout has
PRINT_WIDTH_PX = round((210 - 24) / 25.4 * 96)

CUT_JS = r"""() => {
  // figures and tables wider than the printed page (after the print style): they would be cut
  const right = document.documentElement.clientWidth + 1;
  const vis = el => !!(el.offsetWidth || el.offsetHeight);
  return Array.from(document.querySelectorAll('main img, main table, main svg, main pre')).filter(e => vis(e)
      && e.getBoundingClientRect().right > right)
    .map(e => e.tagName.toLowerCase() + ' ' + Math.round(e.getBoundingClientRect().width) + ' px: '
      + (e.getAttribute('src') || e.innerText || '').slice(0, 50).replace(/\s+/g, ' '));
}"""


def print_pdf(index: Path, pdf: Path, timeout_ms: int = 120000) -> list[str]:
    """Print ``index`` to ``pdf`` (A4, backgrounds, bookmarks) with no request leaving the machine.
    Returns the figures and tables that the print layout (at the page's width) would cut at the edge."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": PRINT_WIDTH_PX, "height": 1000})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:", "blob:", "about:"))
                   else r.abort())
        page.goto(index.resolve().as_uri(), wait_until="load", timeout=timeout_ms)
        try:
            wait_rendered(page, timeout_ms=60000)
        except Exception:
            print("warning: MathJax or the saved widgets did not finish rendering; printing anyway", file=sys.stderr)
        page.emulate_media(media="print", color_scheme="light")
        page.wait_for_timeout(500)
        cut = page.evaluate(CUT_JS)
        tmp = pdf.with_suffix(".pdf.part")
        page.pdf(path=str(tmp), format="A4", print_background=True, outline=True, tagged=True,
                 margin={"top": "14mm", "bottom": "14mm", "left": "12mm", "right": "12mm"})
        browser.close()
    tmp.replace(pdf)                                   # atomic: never a half-written book.pdf
    return [f"cut at the page edge in the PDF: {c}" for c in cut]


def pdf_facts(pdf: Path) -> dict:
    """Pages, size and bookmark titles of a PDF written by Chromium (Skia writes its page objects and
    its outline uncompressed; titles are literal or UTF-16 hex strings)."""
    data = pdf.read_bytes()
    titles = []
    for m in re.finditer(rb"/Title\s*(\((?:\\.|[^\\)])*\)|<[0-9A-Fa-f\s]+>)", data):
        raw = m.group(1)
        if raw.startswith(b"<"):
            h = bytes.fromhex(re.sub(rb"\s", b"", raw[1:-1]).decode())
            titles.append(h[2:].decode("utf-16-be", "replace") if h.startswith(b"\xfe\xff") else h.decode("latin-1"))
        else:
            titles.append(re.sub(rb"\\(.)", rb"\1", raw[1:-1]).decode("latin-1"))
    return {"pages": len(re.findall(rb"/Type\s*/Page\b", data)), "bytes": len(data), "titles": titles}


def chapter_titles(src: Path) -> list[str]:
    """The first-level title of every staged chapter notebook (``# Title`` in its first heading cell)."""
    import json
    out = []
    for nb in sorted((src / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text()).get("cells", []):
            text = "".join(cell.get("source", [])) if cell.get("cell_type") == "markdown" else ""
            m = re.search(r"^# +(.+)$", text, re.M)
            if m:
                out.append(re.sub(r"[*_`]", "", m.group(1)).strip())
                break
    return out


def check_pdf(pdf: Path, titles) -> list[str]:
    """Problems with the PDF: missing, empty, or a chapter title absent from its bookmarks."""
    if not pdf.exists():
        return [f"no PDF of the book at {pdf} (scripts/book_pdf.py makes it)"]
    f = pdf_facts(pdf)
    if f["pages"] < 1:
        return [f"{pdf} has no pages"]
    # Chromium's bookmark of a heading that wraps loses the space at the break ("neuralnetwork"), and a
    # heading with a hidden anchor may repeat: compare letters and digits only, as a substring
    norm = lambda s: re.sub(r"\W+", "", s).lower()        # noqa: E731
    have = [norm(t) for t in f["titles"]]
    return [f"the PDF has no bookmark for the chapter {t!r}" for t in titles if not any(norm(t) in h for h in have)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO), help="the --out folder of `ccc_lib book` (default: the repository)")
    ap.add_argument("--pdf", help="where to write the PDF (default: <out>/_build/html/book.pdf)")
    ap.add_argument("--check", metavar="PDF", help="only report on this PDF (pages, size, bookmarks)")
    args = ap.parse_args(argv)
    if args.check:
        f = pdf_facts(Path(args.check))
        print(f"{args.check}: {f['pages']} pages, {f['bytes'] / 1e6:.1f} MB, {len(f['titles'])} bookmarks")
        return 0 if f["pages"] else 1
    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    src = out / "_build" / "src"
    if not (src / "_config.yml").exists():
        sys.exit(f"no staged book in {src}: build the HTML first (python -m ccc_lib book --out {out})")
    pdf = Path(args.pdf) if args.pdf else out / "_build" / "html" / "book.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    index = build_singlehtml(src, out)
    cut = print_pdf(index, pdf)
    f = pdf_facts(pdf)
    problems = cut + check_pdf(pdf, chapter_titles(src))
    print(f"PDF of the book: {pdf} ({f['pages']} pages, {f['bytes'] / 1e6:.1f} MB, {len(f['titles'])} bookmarks; "
          f"{time.perf_counter() - t0:.0f} s)")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
