"""The study report from stored outputs: the data (`data.py`), Markdown (`markdown.py`), the figure (`figure.py`),
one browsable page of all three (`html.py`)
and the one-row-per-model table that MLflow's summary runs and `limit export` share (`table.py`).

The report step and `limit report` both call `assemble` then `write`: rendering never computes anything.
A new section is a function in `markdown.SECTIONS`; a new panel group is a function in `figure.PANELS`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

FILES = ("report.md", "report.json", "report.png", "report.html")

__all__ = ["FILES", "assemble", "plot", "render_html", "render_markdown", "write"]

# Imported when first used: the plan and every step import the report's input (limit/report/inputs.py), and
# only the report itself needs matplotlib.
_LAZY = {
    "assemble": "limit.report.data",
    "plot": "limit.report.figure",
    "render_markdown": "limit.report.markdown",
    "render_html": "limit.report.html",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def write(data: dict, folder: Path) -> None:
    """report.json, report.md, report.png and report.html (the other three in one page) in `folder`."""
    from limit.report.figure import plot
    from limit.report.html import render_html
    from limit.report.markdown import render_markdown

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(data, indent=2))
    markdown = render_markdown(data)
    (folder / "report.md").write_text(markdown)
    plot(data, folder / "report.png")
    (folder / "report.html").write_text(render_html(data, markdown, (folder / "report.png").read_bytes()))
