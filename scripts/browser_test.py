"""Browser test of the rendered book, as a reader sees it, offline, in a real browser (Playwright
driving Debian's Chromium).

    python scripts/browser_test.py                 # run every chapter on `smoke`, build the book, check it
    python scripts/browser_test.py --html DIR      # only check an already built site (e.g. _build/html)
    python scripts/browser_test.py --selftest      # check a tiny hand-made book with a precomputed panel
    python scripts/browser_test.py --selftest --dead-widget --raw-table --long-cell   # ... that must fail those checks

Without ``--html`` it runs the chapters on ``smoke`` with the runner into a scratch folder, vendors the
front-end assets (``scripts/vendor_assets.sh``) and builds the book from there (``book/executed`` is left
alone). Every page is opened in headless Chromium at 1300 px with the network cut off: any request that is
not to a local file or localhost is aborted *and* reported, and so is any local file that is missing
(e.g. widget fonts). Checks per page: not empty; no Python traceback or raw LaTeX visible; equations
typeset by MathJax; saved widget states rendered; no horizontal scrolling of the page (wide tables must
scroll inside their own box); on chapter pages numbered, captioned, non-blank figures. On every page
every ``.ccc-precomputed`` panel (a slider and a stack whose visible child shows an ``<img>`` and an
HTML block with numbers) is driven: focus the slider's handle, press ArrowRight, and the visible image and
numbers must change — and chapters 1-4 must have at least one such panel. On every chapter page
(``notebooks/*``) the launch menu must offer Binder, Colab and Thebe ("Live Code") for *that* notebook of
the same repository (checked on hrefs and the thebe configuration only: nothing is clicked, no network),
and nothing may be requested outside the site before a reader clicks Thebe. Every font URL in the page's
styles must name an existing file (the widget CSS loads fonts lazily). Prints, per page, the bytes
the saved widget state (the precomputed panels' images and numbers) adds, and the time the page took.

The reader's book (issue 30), on every page: no table cut by a box that hides what does not fit (wide
tables scroll in their box); no number in a table with more than 6 significant digits; no control a
reader can move outside a precomputed panel (a live-kernel control must be tagged ``live-only``, which the
static book replaces by a note); exactly one search field; in the theme's dark mode, table and widget
text with a contrast of at least 3 and every figure on a light card. The report chapter shows no code
cell; the intro opens with the generated findings table (a verdict and a working link per row) and links
to the PDF. Served over localhost, the search lists the chapter for "IOCN", "ODIN" and "MIFace". The PDF
of the whole book (``<site>/book.pdf``, made by ``scripts/book_pdf.py`` when this script builds the site)
exists and has a bookmark for every chapter page's title.

Screenshots of every page, light and dark (``<page>.png``, ``<page>-dark.png``), go to
``<site>/../screenshots/``, listed at the end. Prints its time; exit status 1 on any failure.

Playwright comes from PyPI (``pip install playwright``); its own browser download is not needed: the
script launches ``chromium`` from the system (``apt-get install chromium``)."""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_checks import (DARK_JS, FONT_URLS_JS, LIBRARY_CODE_JS, MAX_SIGNIFICANT, MAX_VISIBLE_CODE_LINES,  # noqa: E402
                            PAGE_FACTS_JS, VISIBLE_CODE_JS, WIDGET_BYTES_JS, book_repository, check_findings, check_launch, check_search,
                            drive_panels, image_is_blank, overlong_numbers)
from browser_sites import build_selftest_site, build_smoke_site, vendor_assets  # noqa: E402
from headless import launch, wait_rendered  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VIEWPORT = {"width": 1300, "height": 900}
#: the chapters whose pages must carry precomputed slider panels
PANEL_PAGES = ("01_counterfeits", "02_neuralfp", "03_iocn", "04_drift")
SKIP_PAGES = {"genindex.html", "search.html", "index.html"}


def check_site(site: Path, shots: Path, panel_pages=PANEL_PAGES, titles: list | None = None) -> list[str]:
    from playwright.sync_api import sync_playwright
    site = site.resolve()
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(p for p in site.rglob("*.html") if p.name not in SKIP_PAGES and "_static" not in p.parts
                   and "_sources" not in p.parts)
    if not pages:
        return [f"no pages in {site}"]
    problems: list[str] = []
    repo = book_repository(site)
    with sync_playwright() as pw:
        browser = launch(pw)
        ctx = browser.new_context(viewport=VIEWPORT, service_workers="block")
        for page_path in pages:
            name = str(page_path.relative_to(site))
            t_page = time.perf_counter()
            found, outside, failed = [], [], []

            def route(r, outside=outside):
                url = r.request.url
                if url.startswith(("file:", "data:", "blob:", "about:")) or \
                        re.match(r"https?://(localhost|127\.0\.0\.1)(:\d+)?/", url):
                    r.continue_()
                else:
                    outside.append(url)
                    r.abort()

            page = ctx.new_page()
            page.route("**/*", route)
            page.on("requestfailed", lambda req, failed=failed, outside=outside:
                    None if req.url in outside else failed.append(f"{req.url} ({req.failure})"))
            page.on("response", lambda resp, failed=failed:
                    failed.append(f"{resp.url} (HTTP {resp.status})") if resp.status >= 400 else None)
            page.goto(page_path.as_uri(), wait_until="load")
            try:
                wait_rendered(page)
            except Exception:
                pass                          # reported by the checks below
            page.wait_for_timeout(300)
            f = page.evaluate(PAGE_FACTS_JS)
            text = re.sub(r"\s+", " ", f["text"])
            if len(text) < 300:
                found.append(f"almost empty ({len(text)} characters of text)")
            if "Traceback (most recent call last)" in text or re.search(r"\b\w+Error: ", text):
                found.append("a Python traceback / error is visible")
            raw = re.findall(r"(\$\$|\\begin\{|\\frac|\\mathbb|\\alpha|\\tau)", text)
            if raw:
                found.append(f"raw LaTeX visible: {sorted(set(raw))}")
            if f["rawMath"] and not f["mathjax"]:
                found.append(f"{f['rawMath']} math elements but MathJax typeset none (offline MathJax missing?)")
            if f["widgetStates"] and not f["widgets"]:
                found.append("saved widget states but no rendered widget (html-manager missing?)")
            if f["pageWidth"] > f["viewWidth"] + 2:
                found.append(f"the page scrolls sideways ({f['pageWidth']} px wide at {f['viewWidth']} px)")
            if f["offEdge"]:
                found.append(f"{len(f['offEdge'])} table(s)/code block(s) run off the right edge without a "
                             f"scrolling box: {f['offEdge'][:3]}")
            panel_log = []
            wbytes = page.evaluate(WIDGET_BYTES_JS)
            # fonts the injected widget CSS declares must exist, whether or not this load requested them
            # (the browser fetches them lazily, so a wrong path shows up only now and then as a 404)
            from urllib.parse import unquote, urlparse
            bad_fonts = sorted({u for u in page.evaluate(FONT_URLS_JS) if u.startswith("file:")
                                and not Path(unquote(urlparse(u).path)).exists()})
            if bad_fonts:
                found.append(f"{len(bad_fonts)} font URL(s) in the page's styles point to missing files: "
                             f"{bad_fonts[:3]}")
            if name.startswith("notebooks/"):
                lp, line = check_launch(page, name, repo)
                found += lp
                panel_log.append(line)
            if page_path.stem in panel_pages:
                pp, lines = drive_panels(page, required=True)
                found += pp
                panel_log += lines
            elif page.locator(".ccc-precomputed").count():
                pp, lines = drive_panels(page, required=False)
                found += pp
                panel_log += lines
            if re.match(r"0[1-4]_", page_path.stem):
                # the method's own code beside its equation: a literalinclude of ccc_lib (a code block
                # outside the notebook's cells holding a function definition)
                n_src = page.evaluate(LIBRARY_CODE_JS)
                if not n_src:
                    found.append("no library code shown beside the equations (literalinclude of ccc_lib "
                                 "missing or not found when the book was staged)")
                panel_log.append(f"library code blocks: {n_src}")
            if name.startswith("notebooks/"):
                lengths = page.evaluate(VISIBLE_CODE_JS)       # the report hides every cell: none is fine
                long = [n for n in lengths if n > MAX_VISIBLE_CODE_LINES]
                if long:
                    found.append(f"{len(long)} visible code cell(s) over {MAX_VISIBLE_CODE_LINES} lines ({long}): "
                                 "hide them or move them into ccc_lib/experiments")
                panel_log.append(f"visible code cells: {len(lengths)}, the longest {max(lengths, default=0)} lines")
                imgs = [i for i in f["images"] if "_images/" in i["src"]]
                if not imgs:
                    found.append("a chapter page without figures")
                if not f["figNumbers"]:
                    found.append("no numbered, captioned figure")
                for im in imgs:
                    file = (page_path.parent / im["src"]).resolve()
                    if not file.exists():
                        found.append(f"missing image {im['src']}")
                    elif file.suffix.lower() == ".png" and image_is_blank(file):
                        found.append(f"blank image {im['src']}")
            if f["clipped"]:
                found.append(f"{len(f['clipped'])} table(s) cut by a box that hides what does not fit (no scroll "
                             f"bar): {f['clipped'][:3]}")
            long_numbers = overlong_numbers(f["tableText"])
            if long_numbers:
                found.append(f"{len(long_numbers)} number(s) in tables with more than {MAX_SIGNIFICANT} significant "
                             f"digits: {sorted(set(long_numbers))[:5]}")
            if f["deadControls"]:
                found.append(f"{len(f['deadControls'])} control(s) outside a precomputed panel, which change nothing "
                             f"without a kernel (tag the cell live-only): {f['deadControls'][:3]}")
            if f["searchFields"] != 1:
                found.append(f"{f['searchFields']} search fields on the page (one is wanted)")
            if page_path.stem == "05_report" and f["visibleCode"]:
                found.append(f"{f['visibleCode']} code cell(s) visible in the report chapter (tag them "
                             f"remove-input/hide-input)")
            if name == "book/intro.html":
                fp, line = check_findings(page, page_path)
                found += fp
                panel_log.append(line)
            if name.startswith("notebooks/") and titles is not None and f["h1"].strip():
                titles.append(re.sub(r"[#¶]\s*$", "", f["h1"]).strip())
            shot = shots / (name.replace("/", "__").replace(".html", ".png"))
            page.screenshot(path=str(shot), full_page=True)
            dark = page.evaluate(DARK_JS)
            page.wait_for_timeout(200)
            dark_shot = shots / (name.replace("/", "__").replace(".html", "-dark.png"))
            page.screenshot(path=str(dark_shot), full_page=True)
            if sum(dark["pageBg"][:3]) > 3 * 128:
                found.append(f"dark mode did not darken the page (background {dark['pageBg']})")
            if dark["lowContrast"]:
                found.append(f"{len(dark['lowContrast'])} table/widget text(s) hard to read in dark mode: "
                             f"{dark['lowContrast'][:3]}")
            if dark["darkFigures"]:
                found.append(f"{len(dark['darkFigures'])} figure(s) without a light card in dark mode: "
                             f"{dark['darkFigures'][:2]}")
            if outside:
                found.append(f"{len(outside)} request(s) outside the site (blocked): {sorted(set(outside))[:5]}")
            if failed:
                found.append(f"{len(failed)} failed local request(s): {sorted(set(failed))[:5]}")
            status = "ok" if not found else "FAIL"
            n_panels = page.locator(".ccc-precomputed").count()
            print(f"{status:4s} {name}: {len(text)} chars, {len(f['images'])} images, {f['figNumbers']} numbered "
                  f"figures, math {f['mathjax']}, widgets {f['widgets']}/{f['widgetStates']} saved; "
                  f"{n_panels} precomputed panel(s), widget state {wbytes['total'] / 1024:.1f} kB "
                  f"({wbytes['images'] / 1024:.1f} kB of it PNG, {wbytes['models']} models); "
                  f"{time.perf_counter() - t_page:.1f} s; screenshots {shot.name}, {dark_shot.name}", flush=True)
            for line in panel_log:
                print(f"     {line}")
            problems += [f"{name}: {x}" for x in found]
            page.close()
        sp, slog = check_search(ctx, site)
        for line in slog:
            print(f"     {line}")
        problems += [f"search.html: {x}" for x in sp]
        browser.close()
    return problems


def make_pdf(out: Path, selftest: bool = False) -> list[str]:
    """Print the book's single-page HTML to ``<site>/book.pdf`` (scripts/book_pdf.py); problems."""
    import book_pdf
    try:
        if selftest:                  # the self-test book is staged in <work>/src
            index = book_pdf.build_singlehtml(out / "src", out)
            return book_pdf.print_pdf(index, out / "_build" / "html" / "book.pdf")
        return [] if book_pdf.main(["--out", str(out)]) == 0 else ["scripts/book_pdf.py failed (see above)"]
    except SystemExit as exc:
        return [f"the PDF of the book could not be made: {exc}"]


def pdf_problems(pdf: Path, titles: list[str]) -> list[str]:
    """The book's PDF exists and has a bookmark for every chapter page's title."""
    import book_pdf
    found = book_pdf.check_pdf(pdf, titles)
    if pdf.exists():
        f = book_pdf.pdf_facts(pdf)
        print(f"PDF: {pdf} ({f['pages']} pages, {f['bytes'] / 1e6:.1f} MB, {len(f['titles'])} bookmarks; "
              f"{len(titles)} chapter titles checked)")
    return [f"book.pdf: {x}" for x in found]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", help="check this built site instead of building one from smoke runs")
    ap.add_argument("--selftest", action="store_true",
                    help="build and check a tiny hand-made book with one precomputed slider panel")
    ap.add_argument("--unlinked", action="store_true",
                    help="with --selftest: leave the slider unlinked (the panel check must fail)")
    ap.add_argument("--no-launch", action="store_true",
                    help="with --selftest: build without the Colab and Thebe buttons (the launch check must fail)")
    ap.add_argument("--dead-widget", action="store_true",
                    help="with --selftest: leave the live-only slider in the static page (the check must fail)")
    ap.add_argument("--raw-table", action="store_true",
                    help="with --selftest: add a clipped table of unrounded numbers (the table checks must fail)")
    ap.add_argument("--long-cell", action="store_true",
                    help="with --selftest: show a code cell of over 20 lines (the visible-code check must fail)")
    ap.add_argument("--keep", help="folder for the scratch build, kept afterwards (default: a temporary one, "
                                   "removed when every page passes and kept, with its screenshots, when one fails)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    problems: list[str] = []
    scratch = None                    # a temporary build folder of ours, removed if everything passes
    if args.html:
        vendor_assets()
        site = Path(args.html)
    else:
        work = Path(args.keep or tempfile.mkdtemp(prefix="ccc-book-"))
        work.mkdir(parents=True, exist_ok=True)
        scratch = None if args.keep else work
        if args.selftest:
            site = build_selftest_site(work, linked=not args.unlinked, launch=not args.no_launch,
                                       static=not args.dead_widget, raw_table=args.raw_table,
                                       long_cell=args.long_cell)
        else:
            site, problems = build_smoke_site(work)
    pdf = site / "book.pdf"
    if not args.html:                 # the PDF of the whole book, from the same build (scripts/book_pdf.py)
        problems += make_pdf(work, selftest=args.selftest)
    t_build = time.perf_counter() - t0
    shots = site.parent / "screenshots"
    titles: list[str] = []
    problems += check_site(site, shots, titles=titles)
    problems += pdf_problems(pdf, titles)
    t_all = time.perf_counter() - t0
    shot_files = sorted(shots.glob("*.png"))
    print(f"\nscreenshots: {shots} ({len(shot_files)} files)")
    for sf in shot_files:
        print(f"  {sf.name} ({sf.stat().st_size / 1024:.0f} kB)")
    print(f"browser test time: {t_all:.1f} s (build {t_build:.1f} s, browser checks {t_all - t_build:.1f} s)")
    if problems:
        print(f"{len(problems)} problem(s):")
        for pr in problems:
            print("  -", pr)
        if scratch is not None:
            print(f"the scratch build and its screenshots are kept for a look: {scratch}")
        return 1
    print("all pages pass")
    if scratch is not None:           # ~150 MB per run: CI and repeated runs must not fill /tmp
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"removed the scratch build {scratch} (pass --keep DIR to keep the build and its screenshots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
