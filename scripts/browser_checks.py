"""What the browser test (``scripts/browser_test.py``) checks on a page, apart from the page loop itself:
the JavaScript that reads a page's facts, the precomputed slider panels driven one step, the launch
controls (Binder, Colab, Thebe), blank images, numbers with too many digits, dark mode, the intro's
findings table and the site's search served on localhost."""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["drive_panels", "check_launch", "book_repository", "image_is_blank", "overlong_numbers", "check_findings",
           "check_search", "MAX_SIGNIFICANT", "SEARCH_TERMS", "VERDICTS"]


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

#: the longest visible code cell a chapter may show (longer ones are hidden or moved behind one call)
MAX_VISIBLE_CODE_LINES = 20

#: the line count of every code cell whose input the reader sees without opening a toggle
VISIBLE_CODE_JS = r"""() => Array.from(document.querySelectorAll(
    'main div.cell:not(.tag_hide-input):not(.tag_hide-cell):not(.tag_remove-input) > div.cell_input pre'))
  .map(p => p.textContent.replace(/\n+$/, '').split('\n').length)"""

FONT_URLS_JS = r"""() => Array.from(document.querySelectorAll('style')).map(s => s.textContent)
  .flatMap(t => Array.from(t.matchAll(/url\(\s*['"]?([^'")]+\.(?:woff2?|ttf|eot|otf))(?:[?#][^'")]*)?['"]?\s*\)/g), m => m[1]))"""

PANEL_STATE_JS = r"""(panel) => {
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const imgs = Array.from(panel.querySelectorAll('img')).filter(visible);
  const html = Array.from(panel.querySelectorAll('.widget-html')).filter(visible);
  return {img: imgs.length ? imgs[0].getAttribute('src') : null,
          text: html.map(h => h.innerText).join(' | ')};
}"""


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
