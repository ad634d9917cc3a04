"""Tiny helper to write a notebook from a list of cells (used by the authoring scripts).

    from tools.nbbuild import md, code, write
    write("notebooks/00_classifiers.ipynb", [md("# Title"), code("profile = None", tags=["parameters"])])

Notebooks are written without outputs, with a python3 kernelspec."""
from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text: str, tags=None):
    c = new_markdown_cell(text.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def code(src: str, tags=None):
    c = new_code_cell(src.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def write(path: str, cells) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):
        c["id"] = f"c{i:03d}"
    nbformat.validate(nb)
    nbformat.write(nb, path)
