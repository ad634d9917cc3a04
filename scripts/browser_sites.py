"""The sites the browser test (``scripts/browser_test.py``) checks when it is not given one: the whole book
run on ``smoke`` with the runner and built with ``--strict`` in a scratch folder, or a tiny hand-made
self-test book (one precomputed slider panel, a figure, a wide table, a ``live-only`` cell) whose variants
must fail the checks."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["vendor_assets", "build_smoke_site", "build_selftest_site", "SELFTEST_NB", "RAW_TABLE"]

REPO = Path(__file__).resolve().parent.parent


def vendor_assets() -> None:
    subprocess.run([str(REPO / "scripts" / "vendor_assets.sh")], check=True)


def build_smoke_site(workdir: Path) -> tuple[Path, list[str]]:
    """Run every chapter on `smoke` with the runner into ``workdir/executed`` and build the book there."""
    try:
        from ccc_lib.cli import main as ccc_lib_main
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
    if ccc_lib_main(["run", "all", "--profile", "smoke", "--out", str(executed), "--root", str(REPO)]):
        import json
        summary = json.loads((executed / "run_summary.json").read_text())
        problems += [f"chapter {r['chapter']} failed on smoke: {r.get('error')}" for r in summary["results"]
                     if r["status"] != "ok"]
    vendor_assets()
    # --strict: a Sphinx warning (a literalinclude object that moved, a duplicate figure label, a broken
    # reference) or a figure cell with more than one output fails the build, and so this test
    rc = ccc_lib_main(["book", "--executed", str(executed), "--out", str(workdir), "--strict", "--root", str(REPO)])
    if rc:
        problems.append(f"the book build failed or warned (exit status {rc}; its log above names the warning)")
    return workdir / "_build" / "html", problems


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
                        raw_table: bool = False, long_cell: bool = False) -> Path:
    """A one-page book (the repository's Sphinx settings) with one precomputed slider panel, a figure, a
    wide table in the book's table style and a ``live-only`` cell with a slider. ``linked=False`` leaves
    the slider unlinked from the stack, ``launch=False`` drops the Colab and Thebe launch buttons,
    ``static=False`` leaves the live-only slider in the page (as if the staging rule were missing) and
    ``raw_table=True`` adds a clipped table of unrounded numbers and ``long_cell=True`` shows the panel's
    plumbing cell (over 20 lines) instead of hiding it: the checks must then fail."""
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
        new_code_cell(f"LINKED = {linked}\n" + SELFTEST_NB, metadata={} if long_cell else {"tags": ["hide-input"]}),
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
