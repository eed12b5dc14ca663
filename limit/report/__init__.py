"""The study report from stored outputs: the data (`data.py`), Markdown (`markdown.py`), the figure (`figure.py`)
and the one-row-per-model table that MLflow's summary runs and `limit export` share (`table.py`).

The report step and `limit report` both call `assemble` then `write`: rendering never computes anything.
A new section is a function in `markdown.SECTIONS`; a new panel group is a function in `figure.PANELS`.
"""

from __future__ import annotations

import json
from pathlib import Path

from limit.report.data import assemble
from limit.report.figure import plot
from limit.report.markdown import render_markdown

FILES = ("report.md", "report.json", "report.png")

__all__ = ["FILES", "assemble", "plot", "render_markdown", "write"]


def write(data: dict, folder: Path) -> None:
    """report.json, report.md and report.png in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(data, indent=2))
    (folder / "report.md").write_text(render_markdown(data))
    plot(data, folder / "report.png")
