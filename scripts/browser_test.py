"""Browser test of the rendered book, as a reader sees it, offline, in a real browser (Playwright
driving Debian's Chromium).

    python scripts/browser_test.py                 # run every chapter on `smoke`, build the book, check it
    python scripts/browser_test.py --html DIR      # only check an already built site (e.g. _build/html)
    python scripts/browser_test.py --selftest      # check a tiny hand-made book with a precomputed panel
    python scripts/browser_test.py --selftest --dead-widget --raw-table   # ... that must fail those checks

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
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VIEWPORT = {"width": 1300, "height": 900}
#: the chapters whose pages must carry precomputed slider panels
PANEL_PAGES = ("01_counterfeits", "02_neuralfp", "03_iocn", "04_drift")
SKIP_PAGES = {"genindex.html", "search.html", "index.html"}


# ------------------------------------------------------------------ set-up
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    sys.exit("Chromium is needed: apt-get install chromium (Debian) — Playwright drives the system's browser")


def vendor_assets() -> None:
    subprocess.run([str(REPO / "scripts" / "vendor_assets.sh")], check=True)


def build_smoke_site(workdir: Path) -> tuple[Path, list[str]]:
    """Run every chapter on `smoke` with the runner into ``workdir/executed`` and build the book there."""
    try:
        from ccc_lib import runner
    except ImportError as exc:
        sys.exit(f"ccc_lib is not installed in this Python ({exc}): run scripts/setup.sh, or "
                 f"pip install -e . in {REPO}, and use that environment's python")
    os.environ.setdefault("CCC_PROGRESS", "off")
    # the kernels must draw figures inline: MPLBACKEND=Agg (set for tests and scripts) would leave
    # every chapter page without a single figure
    if os.environ.get("MPLBACKEND", "").lower() == "agg":
        os.environ.pop("MPLBACKEND")
    executed = workdir / "executed"
    problems = []
    if runner.main(["run", "all", "--profile", "smoke", "--out", str(executed), "--root", str(REPO)]):
        import json
        summary = json.loads((executed / "run_summary.json").read_text())
        problems += [f"chapter {r['chapter']} failed on smoke: {r.get('error')}" for r in summary["results"]
                     if r["status"] != "ok"]
    vendor_assets()
    # --strict: a Sphinx warning (a literalinclude object that moved, a duplicate figure label, a broken
    # reference) or a figure cell with more than one output fails the build, and so this test
    rc = runner.main(["book", "--executed", str(executed), "--out", str(workdir), "--strict", "--root", str(REPO)])
    if rc:
        problems.append(f"the book build failed or warned (exit status {rc}; its log above names the warning)")
    return workdir / "_build" / "html", problems


# ------------------------------------------------------------------ the tiny self-test book
SELFTEST_NB = r'''
import base64, io
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

def png(k):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(k).random((8, 8)), cmap="gray"); ax.axis("off")
    buf = io.BytesIO(); fig.savefig(buf, format="png"); plt.close(fig)
    return buf.getvalue()

values = ["0.0", "0.5", "1.0", "2.0"]
children = [widgets.VBox([widgets.Image(value=png(k), format="png"),
                          widgets.HTML(f"<b>mean confidence</b> {0.5 + 0.1 * k:.3f}, <b>share ≥ 0.99</b> {0.1 * k:.2f}")])
            for k in range(len(values))]
stack = widgets.Stack(children, selected_index=0)
slider = widgets.SelectionSlider(options=values, value=values[0], description="α")
if LINKED:
    widgets.jslink((slider, "index"), (stack, "selected_index"))
panel = widgets.VBox([slider, stack])
panel.add_class("ccc-precomputed")
display(panel)
'''


RAW_TABLE = ("from IPython.display import HTML, display\n"
             "cells = ''.join(f'<td>{0.123456789 * k}</td>' for k in range(1, 40))\n"
             "style = 'display:table; overflow:visible; max-width:none'\n"
             "display(HTML(f'<div style=\"overflow:hidden; width:300px\"><table style=\"{style}\"><tr>{cells}</tr>'\n"
             "             '</table></div>'))")


def build_selftest_site(workdir: Path, linked: bool = True, launch: bool = True, static: bool = True,
                        raw_table: bool = False) -> Path:
    """A one-page book (the repository's Sphinx settings) with one precomputed slider panel, a figure, a
    wide table in the book's table style and a ``live-only`` cell with a slider. ``linked=False`` leaves
    the slider unlinked from the stack, ``launch=False`` drops the Colab and Thebe launch buttons,
    ``static=False`` leaves the live-only slider in the page (as if the staging rule were missing) and
    ``raw_table=True`` adds a clipped table of unrounded numbers: the checks must then fail."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    import yaml
    src = workdir / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    vendor_assets()                        # before the copy: the site serves book/_static/vendor
    shutil.copytree(REPO / "book", src / "book", ignore=shutil.ignore_patterns("executed"))
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    cfg["title"] = "browser self-test"
    cfg.pop("bibtex_bibfiles", None)
    if not launch:
        for key in ("colab_url", "thebe"):
            cfg.get("launch_buttons", {}).pop(key, None)
    (src / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (src / "_toc.yml").write_text("format: jb-book\nroot: notebooks/01_counterfeits\n")
    long_text = " ".join(["A paragraph of prose so that the page is not empty."] * 12)
    fig = ("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3))\n"
           "ax.plot([0, 1, 2], [0, 1, 4]); ax.set_title('a figure'); plt.show()")
    wide = ("import pandas as pd\nfrom ccc_lib.tables import install_formatter\ninstall_formatter()\n"
            "pd.DataFrame([[0.123456789] * 30], columns=[f'a_rather_long_column_name_{i}' for i in range(30)])")
    live = "import ipywidgets as widgets\nwidgets.IntSlider(value=3, max=10, description='retrain')"
    nb = new_notebook(cells=[
        new_markdown_cell("# Self-test page\n\n" + long_text + "\n\nInline math $\\alpha + \\beta$ and\n\n"
                          "$$\\mathcal{L} = \\alpha \\, \\mathcal{L}_1 + \\beta \\, \\mathcal{L}_2$$"),
        new_code_cell(f"LINKED = {linked}\n" + SELFTEST_NB),
        new_markdown_cell("```{glue:figure} selftest_fig\n:name: fig-selftest\n\nA numbered, captioned figure.\n```"),
        new_code_cell("%matplotlib inline\nfrom myst_nb import glue\n" + fig.replace("plt.show()", "glue('selftest_fig', fig, display=False)")),
        new_code_cell(wide),
        new_code_cell(live, metadata={"tags": ["hide-input", "live-only"]}),
        *([new_code_cell(RAW_TABLE)] if raw_table else []),
        new_markdown_cell("The library's own code:\n\n```{literalinclude} ../ccc_lib/metrics.py\n"
                          ":pyobject: expected_calibration_error\n:language: python\n```"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(src)}}).execute()
    nbformat.write(nb, src / "notebooks" / "01_counterfeits.ipynb")
    if static:                        # the static book's rule for live-only cells, as `ccc_lib book` stages it
        import json
        from ccc_lib.static_book import static_notebook
        path = src / "notebooks" / "01_counterfeits.ipynb"
        raw = json.loads(path.read_text())
        static_notebook(raw)
        path.write_text(json.dumps(raw, indent=1))
    (src / "ccc_lib").mkdir(exist_ok=True)                        # staged as `ccc_lib book` stages it
    shutil.copy(REPO / "ccc_lib" / "metrics.py", src / "ccc_lib" / "metrics.py")
    shutil.rmtree(workdir / "_build" / "html", ignore_errors=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb) if jb.exists() else "jupyter-book", "build", str(src), "--path-output", str(workdir),
                    "--builder", "html"], check=True, stdout=subprocess.DEVNULL)
    return workdir / "_build" / "html"


# ------------------------------------------------------------------ checks in the browser
PAGE_FACTS_JS = r"""() => {
  const main = document.querySelector('main') || document.querySelector('.bd-article') || document.body;
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  return {
    text: main.innerText || '',
    images: Array.from(main.querySelectorAll('img')).filter(visible).map(i => ({src: i.getAttribute('src') || '',
             w: i.naturalWidth, h: i.naturalHeight})),
    mathjax: document.querySelectorAll('mjx-container').length,
    rawMath: main.querySelectorAll('.math').length,
    widgetStates: document.querySelectorAll('script[type^="application/vnd.jupyter.widget-view"]').length,
    widgets: document.querySelectorAll('.jupyter-widgets, .widget-box, .widget-slider, .widget-html').length,
    figNumbers: main.querySelectorAll('figure .caption-number, div.figure .caption-number').length,
    pageWidth: document.documentElement.scrollWidth, viewWidth: window.innerWidth,
    // tables/code wider than the article must sit in a box that scrolls sideways, not run off the edge
    offEdge: (() => {
      const right = main.getBoundingClientRect().right + 2;
      const scrolls = el => { for (let a = el; a && a !== main; a = a.parentElement) {
          const s = getComputedStyle(a).overflowX;
          if ((s === 'auto' || s === 'scroll') && a.getBoundingClientRect().right <= right) return true;
        } return false; };
      return Array.from(main.querySelectorAll('table, pre')).filter(e => visible(e)
          && e.getBoundingClientRect().right > right && !scrolls(e))
        .map(e => e.tagName.toLowerCase() + ' ' + (e.innerText || '').slice(0, 40).replace(/\s+/g, ' '));
    })(),
    // tables cut by a box that hides what does not fit (overflow hidden/clip): columns a reader never sees
    clipped: (() => {
      const out = [];
      for (const t of Array.from(main.querySelectorAll('table')).filter(visible)) {
        for (let a = t; a && a !== main.parentElement; a = a.parentElement) {
          const s = getComputedStyle(a).overflowX;
          if (s === 'auto' || s === 'scroll') break;
          if ((s === 'hidden' || s === 'clip') && a.scrollWidth > a.clientWidth + 1) {
            out.push((t.innerText || '').slice(0, 40).replace(/\s+/g, ' ')); break; }
        }
      }
      return out;
    })(),
    // every table cell's text, shown or collapsed (a hide-output table is read once opened)
    tableText: Array.from(main.querySelectorAll('table td, table th')).map(c => c.textContent).join('\n'),
    // code cells whose source a reader sees without clicking
    visibleCode: Array.from(main.querySelectorAll('.cell .cell_input, div.cell_input')).filter(visible).length,
    // controls a reader can move or press, outside the precomputed panels (which the test drives)
    deadControls: Array.from(document.querySelectorAll('.widget-slider, .widget-hslider, .widget-vslider, '
        + '.widget-dropdown, .widget-button, .jupyter-button, .widget-checkbox, .widget-toggle-buttons, '
        + '.widget-radio, .widget-text, .widget-play, .widget-inline-hbox input'))
      .filter(e => visible(e) && !e.closest('.ccc-precomputed'))
      .map(e => (e.className || '').toString().split(' ').filter(c => c.startsWith('widget') || c.startsWith('jupyter'))[0]
           + ': ' + ((e.closest('.widget-inline-hbox, .widget-box') || e).innerText || '').slice(0, 40).replace(/\s+/g, ' ')),
    // search entry points a reader sees (the sidebar's field, the header's button, a form's input)
    searchFields: (() => {
      const all = Array.from(document.querySelectorAll('.search-button__button, .search-button-field, '
          + 'form.bd-search input, input[type=search]')).filter(e => visible(e) && !e.closest('dialog'));
      return all.filter(e => !all.some(o => o !== e && o.contains(e))).length;
    })(),
    h1: (main.querySelector('h1') || {}).textContent || '',
  };
}"""

LAUNCH_JS = r"""() => {
  const hrefs = Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'));
  const thebeBtn = document.querySelectorAll('[onclick*="initThebe"], .btn-launch-thebe').length;
  const cfg = Array.from(document.querySelectorAll('script[type="text/x-thebe-config"]')).map(s => s.textContent).join('\n');
  const scripts = Array.from(document.querySelectorAll('script[src]')).map(s => s.getAttribute('src'));
  return {binder: hrefs.filter(h => h.includes('mybinder.org')), colab: hrefs.filter(h => h.includes('colab.research.google.com')),
          thebeBtn, thebeCfg: cfg, scripts};
}"""

WIDGET_BYTES_JS = r"""() => {
  // the saved widget state: what the precomputed panels (their PNGs and HTML numbers) add to the page
  let total = 0, images = 0, models = 0;
  for (const s of document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]')) {
    total += new Blob([s.textContent]).size;
    try {
      const st = JSON.parse(s.textContent).state || {};
      for (const m of Object.values(st)) {
        models += 1;
        if ((m.model_name || '') === 'ImageModel')
          for (const b of (m.buffers || [])) images += (b.data || '').length;
      }
    } catch (e) {}
  }
  const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'))
    .reduce((n, s) => n + new Blob([s.textContent]).size, 0);
  return {total: total + views, images, models};
}"""

LIBRARY_CODE_JS = """() => Array.from(document.querySelectorAll('div.highlight pre'))
    .filter(p => !p.closest('.cell') && /\\bdef \\w+\\(/.test(p.textContent)).length"""

FONT_URLS_JS = r"""() => Array.from(document.querySelectorAll('style')).map(s => s.textContent)
  .flatMap(t => Array.from(t.matchAll(/url\(\s*['"]?([^'")]+\.(?:woff2?|ttf|eot|otf))(?:[?#][^'")]*)?['"]?\s*\)/g), m => m[1]))"""

PANEL_STATE_JS = r"""(panel) => {
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const imgs = Array.from(panel.querySelectorAll('img')).filter(visible);
  const html = Array.from(panel.querySelectorAll('.widget-html')).filter(visible);
  return {img: imgs.length ? imgs[0].getAttribute('src') : null,
          text: html.map(h => h.innerText).join(' | ')};
}"""


def _wait_rendered(page, timeout_ms: int = 20000) -> None:
    """Until MathJax has typeset and saved widgets are rendered (or the page has neither)."""
    page.wait_for_function("""() => {
        const math = document.querySelectorAll('.math').length;
        const mj = !math || document.querySelectorAll('mjx-container').length > 0;
        const states = document.querySelectorAll('script[type^="application/vnd.jupyter.widget-view"]').length;
        const w = !states || document.querySelectorAll('.jupyter-widgets, .widget-box, .widget-slider').length > 0;
        return mj && w;
    }""", timeout=timeout_ms)


def drive_panels(page, required: bool) -> tuple[list[str], list[str]]:
    """Move every precomputed panel's slider one step; (problems, log lines)."""
    problems, log = [], []
    panels = page.locator(".ccc-precomputed")
    n = panels.count()
    if n == 0:
        if required:
            problems.append("no .ccc-precomputed slider panel (chapters 1-4 must each precompute one)")
        return problems, log
    for i in range(n):
        panel = panels.nth(i)
        panel.scroll_into_view_if_needed()
        before = panel.evaluate(PANEL_STATE_JS)
        handle = panel.locator(".noUi-handle, .ui-slider-handle, input[type=range]").first
        if handle.count() == 0:
            problems.append(f"panel {i + 1}: no slider handle")
            continue
        if not before["img"] or not re.search(r"\d", before["text"] or ""):
            problems.append(f"panel {i + 1}: the visible child shows no image and numbers ({before})")
            continue
        handle.focus()
        page.keyboard.press("ArrowRight")
        after = before
        for _ in range(50):
            page.wait_for_timeout(100)
            after = panel.evaluate(PANEL_STATE_JS)
            if after["img"] != before["img"] and after["text"] != before["text"]:
                break
        if after["img"] == before["img"]:
            problems.append(f"panel {i + 1}: moving the slider did not change the image")
        if after["text"] == before["text"]:
            problems.append(f"panel {i + 1}: moving the slider did not change the numbers ({before['text']!r})")
        log.append(f"panel {i + 1}: {before['text'][:60]!r} -> {after['text'][:60]!r}")
    return problems, log


def check_launch(page, name: str, repo: str | None) -> tuple[list[str], str]:
    """Binder, Colab and Thebe controls on a chapter page, pointing at this page's notebook in one
    repository (``org/name``; None: any, but the same for all three). Hrefs and attributes only."""
    stem = Path(name).stem
    nb = f"notebooks/{stem}.ipynb"
    f = page.evaluate(LAUNCH_JS)
    problems = []
    binder = [h for h in f["binder"] if re.search(rf"/v2/gh/[^/]+/[^/]+/[^?]+\?urlpath=(tree|lab/tree)/{re.escape(nb)}$", h)]
    colab = [h for h in f["colab"] if re.search(rf"/github/[^/]+/[^/]+/blob/[^/]+/{re.escape(nb)}$", h)]
    if not binder:
        problems.append(f"no Binder launch link to {nb} (found {f['binder'][:2]})")
    if not colab:
        problems.append(f"no Colab launch link to {nb} (found {f['colab'][:2]})")
    if not f["thebeBtn"]:
        problems.append("no Thebe (Live Code) launch button")
    m = re.search(r'repo:\s*"([^"]+)"', f["thebeCfg"])
    if not m:
        problems.append("no thebe configuration (binderOptions.repo) on the page")
    elif not re.search(r'path:\s*"(\./)?notebooks/?"', f["thebeCfg"]):
        problems.append("the thebe kernel does not start in notebooks/ (kernelOptions.path), the folder the "
                        "notebooks run from")
    repos = {re.search(r"/v2/gh/([^/]+/[^/]+)/", h).group(1) for h in binder} | \
            {re.search(r"/github/([^/]+/[^/]+)/blob/", h).group(1) for h in colab} | ({m.group(1)} if m else set())
    if len(repos) > 1:
        problems.append(f"launch controls point to different repositories: {sorted(repos)}")
    if repo and repos and repos != {repo}:
        problems.append(f"launch controls point to {sorted(repos)}, not the book's repository {repo}")
    cdn = [s for s in f["scripts"] if re.match(r"(https?:)?//", s)]
    if cdn:
        problems.append(f"script(s) loaded from outside the site before any click: {cdn[:3]}")
    return problems, f"launch: Binder, Colab, Thebe -> {sorted(repos)[0] if repos else '?'} {nb}"


def book_repository(site: Path) -> str | None:
    """``org/name`` of the staged configuration's repository.url (the build's ``_build/src`` or the
    self-test's ``src``), or None when it cannot be found."""
    import yaml
    for cfg in (site.parent / "src" / "_config.yml", site.parent.parent / "src" / "_config.yml"):
        if cfg.exists():
            url = (yaml.safe_load(cfg.read_text()).get("repository") or {}).get("url", "")
            m = re.match(r"https://github\.com/([^/]+/[^/]+?)(?:\.git)?/?$", url)
            return m.group(1) if m else None
    return None


def image_is_blank(path: Path) -> bool:
    from PIL import Image
    import numpy as np
    a = np.asarray(Image.open(path).convert("L"), dtype=float)
    return a.std() < 2.0


#: the most significant digits a number in a rendered table may show (the table style rounds to 4)
MAX_SIGNIFICANT = 6
#: technical terms the site's search must find, and the chapter page it must list for each
SEARCH_TERMS = {"IOCN": "03_iocn", "ODIN": "02_neuralfp", "MIFace": "04_drift"}
VERDICTS = ("reproduced", "not reproduced", "not resolved", "not run")


def overlong_numbers(text: str, limit: int = MAX_SIGNIFICANT) -> list[str]:
    """Numbers in ``text`` with more than ``limit`` significant digits (thousands separators ignored,
    trailing zeros of an integer not counted; digits inside words such as "mnist5k" are not numbers)."""
    out = []
    for tok in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w]|\.[A-Za-z_])", text):
        t = tok.replace(",", "")
        digits = t.replace(".", "").lstrip("0")
        if "." not in t:
            digits = digits.rstrip("0")
        if len(digits) > limit:
            out.append(tok)
    return out


DARK_JS = r"""() => {
  // the theme's dark mode, as its switch sets it; then what a reader could not read
  document.documentElement.dataset.mode = 'dark';
  document.documentElement.dataset.theme = 'dark';
  const main = document.querySelector('main') || document.querySelector('.bd-article') || document.body;
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const rgba = s => { const m = (s || '').match(/[\d.]+/g) || []; return m.map(Number); };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                     return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const bg = el => { for (let a = el; a; a = a.parentElement) { const c = rgba(getComputedStyle(a).backgroundColor);
                       if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c; }
                     return rgba(getComputedStyle(document.body).backgroundColor); };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const text = Array.from(main.querySelectorAll('table td, table th, .widget-html-content, .ccc-table-note'))
    .filter(e => visible(e) && e.textContent.trim()).slice(0, 600)
    .map(e => ({r: ratio(rgba(getComputedStyle(e).color), bg(e)), t: e.textContent.trim().slice(0, 30)}))
    .filter(x => x.r < 3);
  const figs = Array.from(main.querySelectorAll('img')).filter(i => visible(i) && /_images\//.test(i.getAttribute('src') || ''))
    .filter(i => lum(bg(i)) < 0.6).map(i => i.getAttribute('src'));
  return {lowContrast: text.map(x => x.t + ' (contrast ' + x.r.toFixed(1) + ')'), darkFigures: figs,
          pageBg: rgba(getComputedStyle(document.body).backgroundColor)};
}"""

FINDINGS_JS = r"""() => {
  const t = document.querySelector('table#tbl-findings, #tbl-findings table, table.ccc-findings');
  if (!t) return null;
  const rows = Array.from(t.querySelectorAll('tbody tr'));
  const pdf = document.querySelector('a[href$="book.pdf"]');
  return {rows: rows.map(r => ({link: (r.querySelector('td a') || {getAttribute: () => null}).getAttribute('href'),
                                verdict: (r.cells[2] || {}).innerText || ''})),
          pdf: pdf ? pdf.getAttribute('href') : null, top: t.getBoundingClientRect().top + window.scrollY};
}"""


def check_findings(page, page_path: Path) -> tuple[list[str], str]:
    """The intro's generated findings table: present near the top, one row per paper, each linked to an
    existing chapter page and carrying a verdict, and a link to the book's PDF that exists."""
    f = page.evaluate(FINDINGS_JS)
    if f is None:
        return ["no 'what we found' table (table#tbl-findings) on the intro page"], ""
    problems = []
    if len(f["rows"]) < 4:
        problems.append(f"the findings table has {len(f['rows'])} rows, not one per paper")
    for i, r in enumerate(f["rows"]):
        target = r["link"] and (page_path.parent / r["link"].split("#")[0]).resolve()
        if not target or not target.exists():
            problems.append(f"findings row {i + 1}: no link to an existing chapter page ({r['link']})")
        if not any(v in r["verdict"] for v in VERDICTS):
            problems.append(f"findings row {i + 1}: no verdict ({r['verdict']!r})")
    if f["top"] > 2500:
        problems.append(f"the findings table starts {f['top']:.0f} px down the intro page: it must come first")
    if not f["pdf"]:
        problems.append("the intro page does not link to the book's PDF")
    elif not (page_path.parent / f["pdf"]).resolve().exists():
        problems.append(f"the intro's PDF link {f['pdf']} points to a missing file")
    verdicts = ", ".join(r["verdict"].strip() for r in f["rows"])
    return problems, f"findings table: {len(f['rows'])} rows ({verdicts}); PDF link {f['pdf']}"


def check_search(ctx, site: Path) -> tuple[list[str], list[str]]:
    """The site's search, served over HTTP on localhost (Sphinx's search fetches each hit's page, which a
    browser refuses over file://), must list the chapter of each of :data:`SEARCH_TERMS`."""
    import functools
    import http.server
    import threading
    from urllib.parse import quote
    terms = {t: stem for t, stem in SEARCH_TERMS.items() if (site / "notebooks" / f"{stem}.html").exists()}
    if not terms or not (site / "search.html").exists():
        return [], []
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    problems, log = [], []
    page = ctx.new_page()
    try:
        for term, stem in terms.items():
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/search.html?q={quote(term)}", wait_until="load")
            try:
                page.wait_for_function("""() => { const s = document.querySelector('#search-results');
                    return s && /found \d+ page|did not match|Search finished/i.test(s.innerText); }""", timeout=30000)
            except Exception:
                pass
            hrefs = page.evaluate("() => Array.from(document.querySelectorAll('#search-results a, ul.search a'))"
                                  ".map(a => a.getAttribute('href'))")
            if not any(f"notebooks/{stem}.html" in (h or "") for h in hrefs):
                problems.append(f"search for {term!r} does not list notebooks/{stem}.html (found {hrefs[:4]})")
            log.append(f"search {term!r}: {len(hrefs)} hit(s), notebooks/{stem}.html "
                       f"{'listed' if any(f'notebooks/{stem}.html' in (h or '') for h in hrefs) else 'MISSING'}")
    finally:
        page.close()
        server.shutdown()
    return problems, log


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
        browser = pw.chromium.launch(executable_path=chromium(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
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
                _wait_rendered(page)
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
    sys.path.insert(0, str(Path(__file__).resolve().parent))
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
    sys.path.insert(0, str(Path(__file__).resolve().parent))
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
                                       static=not args.dead_widget, raw_table=args.raw_table)
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
