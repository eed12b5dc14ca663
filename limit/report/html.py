"""report.html: one self-contained page (no network): report.md's tables as HTML, the figure inline, and a
sample browser of judged prompts (both responses, their lengths, the verdict) and of gauntlet items
(prediction, gold, log-likelihoods), filtered by pair or by model.

The tables are report.md rendered (markdown-it), so the page and the Markdown can never disagree. Open a
pair's prompts directly with `report.html#pair=N` (N as in the pair list).
"""

from __future__ import annotations

import base64
import html
from typing import Any

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: .6em 0; } th, td { border: 1px solid #ccc; padding: .2em .5em; }
th { background: #f3f3f3; } td { vertical-align: top; } img.figure { max-width: 100%; }
.response { white-space: pre-wrap; max-width: 34em; } .won { background: #e8f5e9; } blockquote { color: #555; }
nav a { margin-right: 1em; } select { font-size: 1em; margin: .4em 0; }
"""

# Rows of the browser carry data-pair / data-model; the selects show the chosen one's rows only.
SCRIPT = """
function show(kind, value) {
  document.querySelectorAll('[data-' + kind + ']').forEach(function (row) {
    row.style.display = row.getAttribute('data-' + kind) === value ? '' : 'none';
  });
}
document.addEventListener('DOMContentLoaded', function () {
  var pair = document.getElementById('pair'), model = document.getElementById('model');
  var asked = /pair=(\\d+)/.exec(location.hash);
  if (pair) { if (asked) { pair.value = asked[1]; } show('pair', pair.value);
              pair.addEventListener('change', function () { show('pair', pair.value); }); }
  if (model) { show('model', model.value);
               model.addEventListener('change', function () { show('model', model.value); }); }
});
"""


def render_html(data: dict[str, Any], markdown_text: str, figure: bytes | None) -> str:
    from markdown_it import MarkdownIt

    tables = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    picture = ""
    if figure:
        encoded = base64.b64encode(figure).decode()
        picture = f'<h2 id="figure">Figure</h2><img class="figure" alt="figure" src="data:image/png;base64,{encoded}">'
    title = html.escape(f"limit: study {data['study']}")
    links = (("figure", "Figure"), ("judged", "Judged prompts"), ("items", "Gauntlet items"))
    nav = "<nav>" + "".join(f'<a href="#{anchor}">{text}</a>' for anchor, text in links) + "</nav>"
    heading, rest = tables.split("</h1>", 1) if "</h1>" in tables else ("", tables)
    return "\n".join(
        [
            "<!doctype html>",
            f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style>',
            f"<script>{SCRIPT}</script></head><body>",
            f"{heading}</h1>" if heading else "",
            nav,
            picture,
            rest,
            judged_browser(data["pairs"]),
            items_browser(data["models"]),
            "</body></html>",
        ]
    )


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def judged_browser(pairs: list[dict]) -> str:
    ready = [(i, p) for i, p in enumerate(pairs) if p.get("browse")]
    if not ready:
        return ""
    names = [(i, f"{p['a']} vs {p['b']} ({p['prompts']})") for i, p in ready]
    options = "".join(f'<option value="{i}">{_e(name)}</option>' for i, name in names)
    head = _header("Seed", "Prompt", "Instruction", "A", "B", "Verdict")
    rows = [_judged_row(i, p, j) for i, p in ready for j in p["browse"]]
    return (
        '<h2 id="judged">Judged prompts</h2><p>Each judged prompt of a pair (the first ones, responses cut to '
        "700 characters; lengths are of the whole response). The verdict cell is the winner's column.</p>"
        f'<select id="pair">{options}</select><table>{head}{"".join(rows)}</table>'
    )


def _judged_row(index: int, pair: dict, judged: dict) -> str:
    winner = judged.get("winner")
    verdict = {"a": f"A ({pair['a']})", "b": f"B ({pair['b']})", "tie": "tie"}.get(winner, "failed")
    cells = []
    for side in ("a", "b"):
        mark = ' class="response won"' if winner == side else ' class="response"'
        length = f"<br><small>{judged.get(f'len_{side}')} chars</small>"
        cells.append(f"<td{mark}>{_e(judged.get(f'output_{side}'))}{length}</td>")
    return (
        f'<tr data-pair="{index}"><td>{_e(judged.get("seed"))}</td><td>{_e(judged.get("prompt_id"))}</td>'
        f'<td class="response">{_e(judged.get("instruction"))}</td>{"".join(cells)}<td>{_e(verdict)}</td></tr>'
    )


def items_browser(models: list[dict]) -> str:
    ready = [m for m in models if m.get("examples")]
    if not ready:
        return ""
    options = "".join(f'<option value="{_e(m["name"])}">{_e(m["name"])}</option>' for m in ready)
    head = _header("Benchmark", "Row", "Correct", "Prediction", "Gold", "Log-likelihoods")
    rows = [
        f'<tr data-model="{_e(m["name"])}"><td>{_e(bench)}</td><td>{_e(item.get("row"))}</td>'
        f"<td>{'yes' if item.get('correct') else 'no'}</td><td>{_e(item.get('prediction', '-'))}</td>"
        f"<td>{_e(item.get('gold', '-'))}</td><td>{_e(_logliks(item))}</td></tr>"
        for m in ready
        for bench, items in m["examples"].items()
        for item in items
    ]
    return (
        '<h2 id="items">Gauntlet items</h2><p>The first rows of each benchmark where the model\'s scores come from '
        "(the chosen epoch): the choice with the highest mean log-likelihood per token is the prediction.</p>"
        f'<select id="model">{options}</select><table>{head}{"".join(rows)}</table>'
    )


def _header(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{name}</th>" for name in names) + "</tr>"


def _logliks(item: dict) -> str:
    values = item.get("logliks") or ([item["loglik"]] if item.get("loglik") is not None else [])
    return ", ".join(f"{v:.3f}" for v in values)
