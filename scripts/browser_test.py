"""Browser test of the rendered book, as a reader sees it, with networking disabled.

    .venv/bin/python scripts/browser_test.py            # run the notebooks on `smoke`, build, check
    .venv/bin/python scripts/browser_test.py --html _build/html   # only check an already built site

Builds the book from smoke-executed notebooks in a scratch copy (the default book in book/executed/ is
left alone), then opens every page in headless Chromium with all host names unresolvable (so nothing
can come from a CDN) and checks: the page is not empty; chapter pages show numbered, captioned figures and every figure is
non-blank; no Python traceback or raw LaTeX is visible; equations were typeset by MathJax; saved widget
states were rendered. Screenshots go to <site>/../screenshots/. Exit status 1 on any failure."""
from __future__ import annotations

import argparse
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND",      # no network: every host name fails
                "--virtual-time-budget=8000", "--run-all-compositor-stages-before-draw"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if shutil.which("chromium"):
            return shutil.which("chromium")
    sys.exit("Chromium is needed: apt-get install chromium")


def build_smoke_site(workdir: Path) -> Path:
    """Run every chapter on `smoke` into a scratch folder and build the book from it."""
    py = sys.executable
    env = {**os.environ, "CCC_PROGRESS": "off"}
    executed = workdir / "executed"
    run = subprocess.run([py, "-m", "ccc_lib", "run", "all", "--profile", "smoke", "--out", str(executed)], env=env)
    if run.returncode:
        print("WARNING: some chapters failed on smoke; checking the pages anyway")
    subprocess.run([py, "-m", "ccc_lib", "book", "--executed", str(executed), "--out", str(workdir)],
                   check=True, stdout=subprocess.DEVNULL)
    return workdir / "_build" / "html"


class Page(html.parser.HTMLParser):
    """Visible text of the main article, its images, and markers of typeset math and widgets."""

    SKIP = {"script", "style", "noscript", "template"}

    def __init__(self):
        super().__init__()
        self.text, self.images, self.stack = [], [], []
        self.in_main = 0
        self.mathjax = self.widgets = self.widget_states = self.raw_math = self.fig_numbers = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class", "") or ""
        if tag == "main" or "bd-article" in cls:
            self.in_main += 1
        if tag.startswith("mjx-container"):
            self.mathjax += 1
        if "widget-" in cls or "jupyter-widgets" in cls:
            self.widgets += 1
        if tag == "script" and a.get("type", "").startswith("application/vnd.jupyter.widget-view"):
            self.widget_states += 1
        if "caption-number" in cls.split() and self.in_main and "figure" in self.stack:
            self.fig_numbers += 1
        if tag == "img" and self.in_main:
            self.images.append(a.get("src", ""))
        if cls and ("math" in cls.split()):
            self.raw_math += 1
        self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack:
            t = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if self.in_main and not (set(self.stack) & self.SKIP):
            self.text.append(data)


def dump_dom(chrome: str, url: str, profile_dir: str) -> str:
    out = subprocess.run([chrome, *CHROME_FLAGS, f"--user-data-dir={profile_dir}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    return out.stdout


def screenshot(chrome: str, url: str, path: Path, profile_dir: str) -> None:
    subprocess.run([chrome, *CHROME_FLAGS, f"--user-data-dir={profile_dir}", "--window-size=1280,2200",
                    f"--screenshot={path}", url], capture_output=True, timeout=120)


def image_is_blank(path: Path) -> bool:
    from PIL import Image
    import numpy as np
    a = np.asarray(Image.open(path).convert("L"), dtype=float)
    return a.std() < 2.0


def check_site(site: Path, shots: Path) -> list[str]:
    chrome = chromium()
    shots.mkdir(parents=True, exist_ok=True)
    profile_dir = tempfile.mkdtemp(prefix="chromium-")
    pages = sorted(p for p in site.rglob("*.html")
                   if p.name not in ("genindex.html", "search.html", "index.html") and "_static" not in p.parts)
    problems = []
    for page in pages:
        rel = page.relative_to(site)
        url = page.resolve().as_uri()
        dom = dump_dom(chrome, url, profile_dir)
        p = Page()
        p.feed(dom)
        text = re.sub(r"\s+", " ", " ".join(p.text))
        name = str(rel)
        found = []
        if len(text) < 300:
            found.append(f"almost empty ({len(text)} characters of text)")
        if "Traceback (most recent call last)" in text or re.search(r"\b\w+Error: ", text):
            found.append("a Python traceback / error is visible")
        raw = re.findall(r"(\$\$|\\begin\{|\\frac|\\mathbb|\\alpha|\\tau)", text)
        if raw:
            found.append(f"raw LaTeX visible: {sorted(set(raw))}")
        if p.raw_math and not p.mathjax:
            found.append(f"{p.raw_math} math elements but MathJax typeset none (offline MathJax missing?)")
        if p.widget_states and not p.widgets:
            found.append("saved widget states but no rendered widget (html-manager missing?)")
        if name.startswith("notebooks/"):
            imgs = [i for i in p.images if "_images/" in i]
            if not imgs:
                found.append("a chapter page without figures")
            if not p.fig_numbers:
                found.append("no numbered, captioned figure")
            for src in imgs:
                f = (page.parent / src).resolve()
                if not f.exists():
                    found.append(f"missing image {src}")
                elif f.suffix.lower() == ".png" and image_is_blank(f):
                    found.append(f"blank image {src}")
        shot = shots / (name.replace("/", "__").replace(".html", ".png"))
        screenshot(chrome, url, shot, profile_dir)
        status = "ok" if not found else "FAIL"
        print(f"{status:4s} {name}: {len(text)} chars, {len(p.images)} images, {p.fig_numbers} numbered figures, math {p.mathjax}, "
              f"widgets {p.widgets}/{p.widget_states} saved; screenshot {shot.name}")
        problems += [f"{name}: {f}" for f in found]
    shutil.rmtree(profile_dir, ignore_errors=True)
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", help="check this built site instead of building one from smoke runs")
    ap.add_argument("--keep", help="folder for the scratch build (default: a temporary one)")
    args = ap.parse_args()
    subprocess.run([str(REPO / "scripts" / "vendor_assets.sh")], check=True)
    if args.html:
        site = Path(args.html)
    else:
        work = Path(args.keep or tempfile.mkdtemp(prefix="ccc-book-"))
        work.mkdir(parents=True, exist_ok=True)
        site = build_smoke_site(work)
    shots = site.parent / "screenshots"
    problems = check_site(site, shots)
    print(f"\nscreenshots: {shots}")
    if problems:
        print(f"{len(problems)} problem(s):")
        for pr in problems:
            print("  -", pr)
        return 1
    print("all pages pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
