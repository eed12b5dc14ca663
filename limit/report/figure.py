"""report.png: one row of panels per base model, so 7B and 30B never share an axis.

A row is the columns that PANELS give for it: the gauntlet (average and categories, value labels, the base
model as a dashed reference line, n/a where a category is incomplete), the average per epoch, and one win-rate
panel per prompt set. A new panel is a function in PANELS returning its columns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from limit.gauntlet.benchmarks import CATEGORY_TITLES

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
GROUPS = ("average", *CATEGORY_TITLES)  # the bars' x groups: Av first
GROUP_TITLES = ("Av", *CATEGORY_TITLES.values())
INCH_PER_UNIT, ROW_HEIGHT = 3.0, 4.6

Column = tuple[float, Callable[..., None], Any]  # (width in units, draw(ax, data, base, arg), arg)


def short(name: str, base: str) -> str:
    """A finetune's name without its base model's prefix ("mpt-7b-lima" -> "lima"); the base is "base"."""
    if name == base:
        return "base"
    return name[len(base) + 1 :] if name.startswith(base + "-") else name


def finetunes(data: dict, base: str) -> list[dict]:
    return [m for m in data["models"] if m["base"] == base and m["kind"] == "run"]


def base_model(data: dict, base: str) -> dict | None:
    return next((m for m in data["models"] if m["name"] == base and m["kind"] == "baseline"), None)


def value_of(row: dict | None, group: str) -> float | None:
    if row is None:
        return None
    return row.get("average") if group == "average" else (row.get("categories") or {}).get(group)


def gauntlet_columns(data: dict) -> list[Column]:
    return [(2.6, draw_gauntlet, None)]


def draw_gauntlet(ax: Axes, data: dict, base: str, _) -> None:
    rows, reference = finetunes(data, base), base_model(data, base)
    width = 0.8 / max(1, len(rows))
    handles = []
    ax.axvspan(-0.5, 0.5, color="0.93", zorder=0)  # the average, the paper's first column
    for i, row in enumerate(rows):
        xs = [g - 0.4 + width * (i + 0.5) for g in range(len(GROUPS))]
        values = [value_of(row, g) for g in GROUPS]
        drawn = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        color = COLORS[i % len(COLORS)]
        ax.bar([x for x, _ in drawn], [v for _, v in drawn], width * 0.92, color=color)
        handles.append(Patch(color=color, label=legend_label(row, base)))  # an entry even with nothing drawn
        for x, value in zip(xs, values, strict=True):
            text, y = ("n/a", 0.0) if value is None else (f"{value:.3f}", value)
            ax.annotate(
                text, (x, y), xytext=(0, 2 if y >= 0 else -2), textcoords="offset points", rotation=90,
                ha="center", va="bottom" if y >= 0 else "top", fontsize=6.5, color="0.45" if value is None else "0.1",
            )  # fmt: skip
    labelled = False
    for g, group in enumerate(GROUPS):
        value = value_of(reference, group)
        if value is None:
            if reference is not None:
                ax.text(g, 0, "base n/a", ha="center", va="top", fontsize=6.5, color="0.45")
            continue
        ax.hlines(value, g - 0.45, g + 0.45, colors="black", linestyles="--", linewidth=1.2, zorder=3)
        if not labelled:
            handles.insert(0, Line2D([], [], color="black", linestyle="--", label=f"{base} (base model)"))
        labelled = True
    ax.axhline(0, color="0.3", linewidth=0.6)
    ax.set_xticks(range(len(GROUPS)), GROUP_TITLES, fontsize=9)
    ax.set_xlim(-0.5, len(GROUPS) - 0.5)
    _pad_y(ax)
    ax.set_ylabel("rescaled accuracy", fontsize=8)
    ax.set_title(f"{base}: Eval Gauntlet at the chosen epoch", fontsize=10)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=7.5, frameon=False)


def legend_label(row: dict, base: str) -> str:
    if row.get("status") == "pending":
        return f"{short(row['name'], base)} (pending)"
    return f"{short(row['name'], base)} (epoch {row['epoch']})" if row.get("epoch") else short(row["name"], base)


def _pad_y(ax: Axes) -> None:
    """Room above and below the bars for the rotated value labels."""
    low, high = ax.get_ylim()
    span = max(high - low, 0.05)
    ax.set_ylim(min(low, 0) - 0.22 * span, high + 0.3 * span)


def epoch_columns(data: dict) -> list[Column]:
    return [(1.25, draw_epochs, None)] if any(m.get("epochs") for m in data["models"]) else []


def draw_epochs(ax: Axes, data: dict, base: str, _) -> None:
    for i, row in enumerate(finetunes(data, base)):
        points = [(e["epoch"], e["average"]) for e in row.get("epochs", []) if e.get("average") is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, color=COLORS[i % len(COLORS)])
        if row.get("epoch") and row.get("average") is not None:
            ax.scatter([row["epoch"]], [row["average"]], s=90, facecolors="none", edgecolors="black", zorder=3)
    reference = value_of(base_model(data, base), "average")
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1.2)
    ax.set_title("Average per epoch (circle: chosen)", fontsize=10)
    ax.set_xlabel("epoch", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    epochs = {e["epoch"] for row in finetunes(data, base) for e in row.get("epochs", [])}
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        if len(epochs) <= 12:
            ax.set_xticks(sorted(epochs))
    ax.tick_params(labelsize=8)


def winrate_columns(data: dict) -> list[Column]:
    prompt_sets = list(dict.fromkeys(p["prompts"] for p in data["pairs"]))
    return [(1.4, draw_winrates, prompts) for prompts in prompt_sets]


def draw_winrates(ax: Axes, data: dict, base: str, prompts: str) -> None:
    pairs = [p for p in data["pairs"] if p.get("base") == base and p["prompts"] == prompts]
    ax.set_title(f"Win rate of A on {prompts}", fontsize=10)
    if not pairs:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes, color="0.5")
        ax.set_axis_off()
        return
    ys = list(range(len(pairs)))[::-1]
    colors = {row["name"]: COLORS[i % len(COLORS)] for i, row in enumerate(finetunes(data, base))}
    for y, pair in zip(ys, pairs, strict=True):
        rate = pair.get("win_rate_a")
        if rate is None:
            ax.text(50, y, "pending" if pair.get("status") == "pending" else "n/a", ha="center", va="center")
            continue
        low, high = pair.get("ci95") or [rate, rate]
        ax.barh(y, 100 * rate, height=0.6, color=colors.get(pair["b"], "0.6"), alpha=0.85)
        ax.errorbar(100 * rate, y, xerr=[[100 * (rate - low)], [100 * (high - rate)]], color="black", capsize=3)
        ax.text(1.5, y, f"{100 * rate:.1f}", fontsize=8, va="center", color="white", fontweight="bold")
    ax.set_yticks(ys, [f"{short(p['a'], base)}\nvs {short(p['b'], base)}" for p in pairs], fontsize=7.5)
    ax.set_ylim(-0.6, len(pairs) - 0.4)
    ax.axvline(50, color="black", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 100)
    ax.set_xlabel("% (95% CI); bar colour: B", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)


PANELS: list[Callable[[dict], list[Column]]] = [gauntlet_columns, epoch_columns, winrate_columns]


def plot(data: dict[str, Any], path: Path) -> None:
    bases = list(dict.fromkeys(m["base"] for m in data["models"]))
    columns = [column for panel in PANELS for column in panel(data)]
    widths = [width for width, _, _ in columns]
    fig = Figure(figsize=(INCH_PER_UNIT * sum(widths), ROW_HEIGHT * len(bases) + 0.6), layout="constrained")
    grid = fig.add_gridspec(len(bases), len(columns), width_ratios=widths)
    for r, base in enumerate(bases):
        for c, (_, draw, arg) in enumerate(columns):
            draw(fig.add_subplot(grid[r, c]), data, base, arg)
    fig.suptitle(f"Study {data['study']}", fontsize=12)
    fig.savefig(path, dpi=100)
