"""report.png: one row of panels per base model, so 7B and 30B never share an axis.

A row is the columns that PANELS give for it: the gauntlet (average and categories, value labels, the base
model as a dashed reference line, n/a where a category is incomplete), the average per epoch, one win-rate
panel per prompt set, for the finetunes outside size sweeps, and the gauntlet average against judge strength
(the paradigm agreement: a marker per prompt set, each one's Kendall's tau in the title); then, for size
sweeps, the size curves (the gauntlet average and each category against training rows, log x, one line per
series with the replicate spread as a band, the base model dashed) and the win rate against size per prompt
set. A sweep is drawn per series, never per model, so it stays readable at any number of sizes and seeds. A
new panel is a function in PANELS returning its columns.
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
SWEEP_ROW_HEIGHT = 6.2  # a size-curve column stacks two rows of small panels

Column = tuple[float, Callable[..., None], Any]  # (width in units, draw(ax, data, base, arg), arg)


def short(name: str, base: str) -> str:
    """A finetune's name without its base model's prefix ("mpt-7b-lima" -> "lima"); the base is "base"."""
    if name == base:
        return "base"
    return name[len(base) + 1 :] if name.startswith(base + "-") else name


def finetunes(data: dict, base: str) -> list[dict]:
    """The base model's finetunes outside size sweeps (a sweep has its own panels)."""
    return [m for m in data["models"] if m["base"] == base and m["kind"] == "run" and not m.get("series")]


def single(data: dict) -> bool:
    """Whether any finetune is outside a size sweep (or there is none at all)."""
    runs = [m for m in data["models"] if m["kind"] == "run"]
    return not runs or any(not m.get("series") for m in runs)


def base_model(data: dict, base: str) -> dict | None:
    return next((m for m in data["models"] if m["name"] == base and m["kind"] == "baseline"), None)


def value_of(row: dict | None, group: str) -> float | None:
    if row is None:
        return None
    return row.get("average") if group == "average" else (row.get("categories") or {}).get(group)


def gauntlet_columns(data: dict) -> list[Column]:
    return [(2.6, draw_gauntlet, None)] if single(data) else []


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
    scored = any(m.get("epochs") for m in data["models"] if not m.get("series"))
    return [(1.25, draw_epochs, None)] if scored else []


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
    prompt_sets = list(dict.fromkeys(p["prompts"] for p in data["pairs"] if not swept(data, p)))
    return [(1.4, draw_winrates, prompts) for prompts in prompt_sets]


def swept(data: dict, pair: dict) -> bool:
    """A pair whose A is part of a size sweep: the win rate against size shows it."""
    return any(m["name"] == pair["a"] and m.get("series") for m in data["models"])


def draw_winrates(ax: Axes, data: dict, base: str, prompts: str) -> None:
    pairs = [p for p in data["pairs"] if p.get("base") == base and p["prompts"] == prompts and not swept(data, p)]
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


def curves(data: dict, base: str) -> dict[str, list[dict]]:
    """The replicate groups of each size series of the base model, smallest first."""
    found: dict[str, list[dict]] = {}
    for group in data.get("replicates") or []:
        if group.get("series") and group["base"] == base and group.get("rows") is not None:
            found.setdefault(group["series"], []).append(group)
    return {series: sorted(groups, key=lambda g: g["rows"]) for series, groups in found.items()}


def size_columns(data: dict) -> list[Column]:
    if not any(g.get("series") for g in data.get("replicates") or []):
        return []
    return [(4.2, draw_size_curves, None)]


def draw_size_curves(ax: Axes, data: dict, base: str, _) -> None:
    """The column's area as a 2 x 3 grid of small panels: the average first, then each category."""
    fig, grid = ax.get_figure(), ax.get_subplotspec().subgridspec(2, 3)
    ax.remove()
    for i, group in enumerate(GROUPS):
        draw_size_curve(fig.add_subplot(grid[i // 3, i % 3]), data, base, group)


def band(ax: Axes, xs: list[int], stats: list[dict | None], color: str, label: str | None) -> None:
    """The mean over seeds as a line, mean ± standard deviation as a band."""
    points = [(x, s) for x, s in zip(xs, stats, strict=True) if s and s.get("mean") is not None]
    if not points:
        return
    x = [p for p, _ in points]
    mean = [s["mean"] for _, s in points]
    std = [s.get("std") or 0.0 for _, s in points]
    ax.fill_between(x, [m - d for m, d in zip(mean, std, strict=True)], [m + d for m, d in zip(mean, std, strict=True)],
                    color=color, alpha=0.2, linewidth=0)  # fmt: skip
    ax.plot(x, mean, marker="o", markersize=3.5, color=color, label=label)


def draw_size_curve(ax: Axes, data: dict, base: str, group: str) -> None:
    by_series = curves(data, base)
    for i, (series, groups) in enumerate(by_series.items()):
        color = COLORS[i % len(COLORS)]
        stats = [g["average"] if group == "average" else g["categories"].get(group) for g in groups]
        band(ax, [g["rows"] for g in groups], stats, color, f"{short(series, base)} (mean ± sd over seeds)")
        for g in groups:  # each seed's own value, faint
            seeds = [m for m in data["models"] if m["name"] in g["models"]]
            values = [value_of(m, group) for m in seeds]
            ax.scatter([g["rows"]] * len(values), values, s=8, color=color, alpha=0.45, linewidths=0)
    reference = value_of(base_model(data, base), group)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1.1, label=f"{base} (base model)")
    _size_axis(ax, [g["rows"] for groups in by_series.values() for g in groups])
    title = "Av" if group == "average" else CATEGORY_TITLES[group]
    ax.set_title(f"{base}: {title} vs training rows" if group == "average" else title, fontsize=9)
    if group == "average":
        ax.set_ylabel("rescaled accuracy", fontsize=8)
        ax.legend(loc="best", fontsize=6.5, framealpha=0.7)
    if not by_series:
        ax.text(0.5, 0.5, "no sweep", ha="center", va="center", transform=ax.transAxes, color="0.5")


def _size_axis(ax: Axes, sizes: list[int]) -> None:
    ax.set_xscale("log")
    ticks = []
    for size in sorted(set(sizes)):  # a size within 30% of the last labelled one would overprint it
        if not ticks or size > 1.3 * ticks[-1]:
            ticks.append(size)
    if ticks:
        ax.set_xticks(ticks, [f"{t / 1000:g}k" if t >= 1000 else str(t) for t in ticks], fontsize=7.5)
        ax.minorticks_off()
        ax.set_xlim(min(sizes) / 1.25, max(sizes) * 1.25)
    ax.set_xlabel("training rows (log)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7.5)


def size_winrate_columns(data: dict) -> list[Column]:
    prompt_sets = list(dict.fromkeys(p["prompts"] for p in data["pairs"] if swept(data, p)))
    return [(1.4, draw_size_winrates, prompts) for prompts in prompt_sets]


def draw_size_winrates(ax: Axes, data: dict, base: str, prompts: str) -> None:
    """Per series and opponent (a model, or another series size by size): the mean win rate against size."""
    drawn = 0
    for i, (series, groups) in enumerate(curves(data, base).items()):
        lines: dict[str, list[tuple[int, dict]]] = {}
        for g in groups:
            for rate in (r for r in g["win_rates"] if r["prompts"] == prompts and r.get("side") == "a"):
                lines.setdefault(rate.get("opponent_series") or rate["opponent"], []).append((g["rows"], rate))
        for j, (opponent, points) in enumerate(lines.items()):
            color = COLORS[(i + j) % len(COLORS)]
            scaled = [{"mean": 100 * r["mean"], "std": 100 * (r.get("std") or 0)} for _, r in points]
            band(ax, [x for x, _ in points], scaled, color, f"{short(series, base)} vs {short(opponent, base)}")
            drawn += 1
    ax.axhline(50, color="black", linewidth=0.8, linestyle="--")
    _size_axis(ax, [g["rows"] for groups in curves(data, base).values() for g in groups])
    ax.set_ylim(0, 100)
    ax.set_title(f"Win rate vs size on {prompts}", fontsize=10)
    ax.set_ylabel("% (mean ± sd over seeds)", fontsize=8)
    if drawn:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, frameon=False)


def agreement_columns(data: dict) -> list[Column]:
    return [(1.5, draw_agreement, None)] if data.get("agreement") else []


MARKERS = ("o", "s", "^", "D", "v", "P")  # one per prompt set in the agreement panel


def draw_agreement(ax: Axes, data: dict, base: str, _) -> None:
    """Gauntlet average against judge strength, one point per model and prompt set (a marker each), Kendall's
    tau of each prompt set in the title."""
    found = [g for g in data.get("agreement") or [] if g["base"] == base]
    if not found:
        ax.text(0.5, 0.5, "no judged group", ha="center", va="center", transform=ax.transAxes, color="0.5")
        ax.set_axis_off()
        return
    colors = {row["name"]: COLORS[i % len(COLORS)] for i, row in enumerate(finetunes(data, base))}
    titles = []
    for k, group in enumerate(found):
        marker = MARKERS[k % len(MARKERS)]
        for m in group["models"]:
            ax.scatter(m["gauntlet"], m["judge"], color=colors.get(m["name"], "0.4"), marker=marker, s=30, zorder=3)
            ax.annotate(short(m["name"], base), (m["gauntlet"], m["judge"]), fontsize=6.5, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        tau, ci = group["tau"].get("tau"), group["tau"].get("ci95")
        shown = "n/a" if tau is None else f"{tau:+.2f}" + ("" if ci is None else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]")
        titles.append(f"{marker} {group['prompts']}: tau {shown}")
    ax.set_title("Gauntlet vs judge\n" + "\n".join(titles), fontsize=8)
    ax.set_xlabel("gauntlet average", fontsize=8)
    ax.set_ylabel(" / ".join(dict.fromkeys(g["strength"] for g in found)), fontsize=7)
    ax.tick_params(labelsize=7)
    ax.margins(0.25)


PANELS: list[Callable[[dict], list[Column]]] = [
    gauntlet_columns,
    epoch_columns,
    winrate_columns,
    agreement_columns,
    size_columns,
    size_winrate_columns,
]


def plot(data: dict[str, Any], path: Path) -> None:
    bases = list(dict.fromkeys(m["base"] for m in data["models"]))
    columns = [column for panel in PANELS for column in panel(data)]
    widths = [width for width, _, _ in columns]
    height = SWEEP_ROW_HEIGHT if any(draw is draw_size_curves for _, draw, _ in columns) else ROW_HEIGHT
    fig = Figure(figsize=(INCH_PER_UNIT * sum(widths), height * len(bases) + 0.6), layout="constrained")
    grid = fig.add_gridspec(len(bases), len(columns), width_ratios=widths)
    for r, base in enumerate(bases):
        for c, (_, draw, arg) in enumerate(columns):
            draw(fig.add_subplot(grid[r, c]), data, base, arg)
    fig.suptitle(f"Study {data['study']}", fontsize=12)
    fig.savefig(path, dpi=100)
