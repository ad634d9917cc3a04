"""Browser test of the rendered book, as a reader sees it, offline, in a real browser (Playwright
driving Debian's Chromium).

    python scripts/browser_test.py                 # run every chapter on `smoke`, build the book, check it
    python scripts/browser_test.py --html DIR      # only check an already built site (e.g. _build/html)
    python scripts/browser_test.py --selftest      # check a tiny hand-made book with a precomputed panel

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
Screenshots of every page go to ``<site>/../screenshots/``, listed at the end. Prints its time; exit
status 1 on any failure.

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


def build_selftest_site(workdir: Path, linked: bool = True, launch: bool = True) -> Path:
    """A one-page book (the repository's Sphinx settings) with one precomputed slider panel and a figure.
    ``linked=False`` leaves the slider unlinked from the stack, ``launch=False`` drops the Colab and Thebe
    launch buttons: the checks must then fail."""
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
    wide = ("import pandas as pd\npd.DataFrame([[0.123456] * 30], columns=[f'a_rather_long_column_name_{i}' "
            "for i in range(30)])")
    nb = new_notebook(cells=[
        new_markdown_cell("# Self-test page\n\n" + long_text + "\n\nInline math $\\alpha + \\beta$ and\n\n"
                          "$$\\mathcal{L} = \\alpha \\, \\mathcal{L}_1 + \\beta \\, \\mathcal{L}_2$$"),
        new_code_cell(f"LINKED = {linked}\n" + SELFTEST_NB),
        new_markdown_cell("```{glue:figure} selftest_fig\n:name: fig-selftest\n\nA numbered, captioned figure.\n```"),
        new_code_cell("%matplotlib inline\nfrom myst_nb import glue\n" + fig.replace("plt.show()", "glue('selftest_fig', fig, display=False)")),
        new_code_cell(wide),
        new_markdown_cell("The library's own code:\n\n```{literalinclude} ../ccc_lib/metrics.py\n"
                          ":pyobject: expected_calibration_error\n:language: python\n```"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(src)}}).execute()
    nbformat.write(nb, src / "notebooks" / "01_counterfeits.ipynb")
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
          if ((s === 'auto' || s === 'scroll' || s === 'hidden') && a.getBoundingClientRect().right <= right) return true;
        } return false; };
      return Array.from(main.querySelectorAll('table, pre')).filter(e => visible(e)
          && e.getBoundingClientRect().right > right && !scrolls(e))
        .map(e => e.tagName.toLowerCase() + ' ' + (e.innerText || '').slice(0, 40).replace(/\s+/g, ' '));
    })(),
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


def check_site(site: Path, shots: Path, panel_pages=PANEL_PAGES) -> list[str]:
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
            shot = shots / (name.replace("/", "__").replace(".html", ".png"))
            page.screenshot(path=str(shot), full_page=True)
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
                  f"{time.perf_counter() - t_page:.1f} s; screenshot {shot.name}", flush=True)
            for line in panel_log:
                print(f"     {line}")
            problems += [f"{name}: {x}" for x in found]
            page.close()
        browser.close()
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", help="check this built site instead of building one from smoke runs")
    ap.add_argument("--selftest", action="store_true",
                    help="build and check a tiny hand-made book with one precomputed slider panel")
    ap.add_argument("--unlinked", action="store_true",
                    help="with --selftest: leave the slider unlinked (the panel check must fail)")
    ap.add_argument("--no-launch", action="store_true",
                    help="with --selftest: build without the Colab and Thebe buttons (the launch check must fail)")
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
            site = build_selftest_site(work, linked=not args.unlinked, launch=not args.no_launch)
        else:
            site, problems = build_smoke_site(work)
    t_build = time.perf_counter() - t0
    shots = site.parent / "screenshots"
    problems += check_site(site, shots)
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
