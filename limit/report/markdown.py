"""report.md: one section per function in SECTIONS, each taking the report data and giving Markdown lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from limit.gauntlet.benchmarks import CATEGORY_TITLES as CATEGORIES  # the paper's columns, in its order
from limit.judge.winrate import percent


def render_markdown(data: dict[str, Any]) -> str:
    lines = [f"# Study `{data['study']}`"]
    for section in SECTIONS:
        body = section(data)
        if body:
            lines += ["", *body]
    return "\n".join(lines) + "\n"


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def with_delta(value: float | None, base: float | None, stderr: float | None = None) -> str:
    """A score, ± its standard error where known, and its change from the base model's, e.g.
    `0.172 ± 0.010 (+0.012)`."""
    shown = fmt(value) if value is None or stderr is None else f"{value:.3f} ± {stderr:.3f}"
    return shown if value is None or base is None else f"{shown} ({value - base:+.3f})"


class Footnotes:
    """The reason for each n/a of a table: a cell reads `n/a [k]` and the lines under the table say why."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def na(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"n/a [{self.reasons.index(reason) + 1}]"

    def cell(self, shown: str, reason: str) -> str:
        """`shown`, or `n/a [k]` for `reason` where it is n/a."""
        return self.na(reason) if shown == "n/a" else shown

    def lines(self) -> list[str]:
        return ["", *(f"- [{k}] {reason}" for k, reason in enumerate(self.reasons, 1))] if self.reasons else []


PENDING = "the model's steps are not complete yet (a report of a running study)"
NO_TOKENS = "its finetune step recorded no token count"
NO_DATA = "no data: the benchmark's file was not found in gauntlet.data"


def tokens(count: int | None) -> str:
    if count is None:
        return "n/a"
    return f"{count / 1e6:,.2f}M" if count >= 1e5 else f"{count:,}"


def by_base(models: list[dict]) -> dict[str, list[dict]]:
    """Models grouped by base model, in study order, the base model itself first."""
    groups: dict[str, list[dict]] = {}
    for row in sorted(models, key=lambda r: r["kind"] != "baseline"):
        groups.setdefault(row["base"], []).append(row)
    order = list(dict.fromkeys(row["base"] for row in models))
    return {base: groups[base] for base in order}


def base_row(rows: list[dict]) -> dict | None:
    return next((r for r in rows if r["kind"] == "baseline"), None)


def gauntlet_section(data: dict) -> list[str]:
    lines = ["## Eval Gauntlet", "", "Rescaled accuracy at the epoch chosen by average ± its standard error (the"]
    lines += ["benchmarks' as lm-eval computes them, combined as independent); in brackets, the change from the base"]
    lines += ["model. A category with a benchmark missing is n/a, never averaged over fewer; n: rows scored."]
    for base, rows in by_base(data["models"]).items():
        reference, notes = base_row(rows), Footnotes()
        lines += [
            "",
            f"### {base}",
            "",
            "| Model | Dataset | Epoch | Tokens | n | Av | " + " | ".join(CATEGORIES.values()),
        ]
        lines[-1] += " |"
        lines.append("|---|---|---|---|---|---|" + "---|" * len(CATEGORIES))
        for row in rows:
            lines.append(gauntlet_row(row, reference if reference is not row else None, notes))
        lines += notes.lines()
    return lines


def gauntlet_row(row: dict, ref: dict | None, notes: Footnotes) -> str:
    """A model's line of the gauntlet table: every n/a with its reason in `notes`."""
    reasons = row.get("not_available") or {}
    pending = row.get("status") == "pending"

    def score(key: str, value: float | None, base: float | None, stderr: float | None) -> str:
        return notes.cell(with_delta(value, base, stderr), PENDING if pending else reasons.get(key, "not recorded"))

    ref_cats, errors = (ref or {}).get("categories") or {}, row.get("categories_stderr") or {}
    cells = [score(c, row["categories"].get(c), ref_cats.get(c), errors.get(c)) for c in CATEGORIES]
    average = score("average", row["average"], (ref or {}).get("average"), row.get("average_stderr"))
    epoch = row["epoch"] if row["epoch"] is not None else "-"
    name = f"{row['name']} (base)" if row["kind"] == "baseline" else row["name"]
    status = " (pending)" if pending else ""
    trained = (
        "-"
        if row["kind"] == "baseline"
        else notes.cell(tokens(row.get("train_tokens")), PENDING if pending else NO_TOKENS)
    )
    count = (row.get("scored_rows") or {}).get("total", "-")
    return (
        f"| {name}{status} | {row['dataset'] or '-'} | {epoch} | {trained} | {count} | {average} | "
        + " | ".join(cells)
        + " |"
    )


def selection_section(data: dict) -> list[str]:
    """How sure each epoch choice is (issue 9): the chosen average's standard error over the scored rows and
    whether it beats the runner-up epoch beyond noise (a paired difference on the same rows, 95%)."""
    chosen = [r for r in data["models"] if r.get("selection") is not None]
    if not chosen:
        return []
    lines = ["## Epoch selection", "", "Standard error of the chosen epoch's average over the benchmark rows it"]
    lines += ["was selected on; the runner-up is the next best epoch, compared on the same rows.", ""]
    lines += ["| Model | Epoch | Av | SE | Runner-up | Difference | SE of difference | Distinguishable |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    notes, unpaired = Footnotes(), "a benchmark has fewer than two rows scored at both epochs"
    for row in chosen:
        sel = row["selection"]
        if sel.get("runner_up") is None:
            rest = "only one epoch scored | - | - | -"
        else:
            paired = [fmt(sel.get("difference_standard_error")), yes_no(sel.get("distinguishable"))]
            rest = f"epoch {sel['runner_up']} | {fmt(sel.get('difference'))} | "
            rest += " | ".join(notes.cell(cell, unpaired) for cell in paired)
        lines.append(
            f"| {row['name']} | {row['epoch']} | {fmt(row['average'])} | {fmt(sel.get('standard_error'))} | {rest} |"
        )
    return lines + notes.lines()


def split_section(data: dict) -> list[str]:
    """gauntlet.selection_split: the chosen epoch's average on the rows it was chosen on and on the held-out
    rows (their difference: the optimism of reporting a choice on its own rows), and its held-out rank."""
    split = [r for r in data["models"] if r.get("split")]
    chosen = [r for r in data["models"] if r.get("selection") is not None or r.get("epochs")]
    if not split:
        if not chosen:
            return []
        note = "None (gauntlet.selection_split: false, the paper's selection): each epoch was chosen on the rows"
        return ["## Selection split", "", note, "it is reported on, so its score there is optimistic."]
    lines = ["## Selection split", "", "Each epoch chosen on a seeded half of every benchmark's rows; the other half"]
    lines += ["shows it unchosen. Optimism: the chosen epoch's average on the choosing half minus the held-out half."]
    lines += ["Held-out rank: the chosen epoch among all epochs on the held-out half (1: still the best).", ""]
    lines += ["| Model | Epoch | Rows choosing / held out | Av choosing | Av held out | Optimism | Held-out rank |"]
    lines.append("|---|---|---|---|---|---|---|")
    notes = Footnotes()
    for row in split:
        s = row["split"]
        mine = next(e for e in s["epochs"] if e["epoch"] == s["chosen"])
        rank = "n/a" if s.get("held_out_rank") is None else f"{s['held_out_rank']} of {len(s['epochs'])}"
        cells = [fmt(mine["selection"]), fmt(mine["held_out"]), fmt(s.get("optimism")), rank]
        lines.append(
            f"| {row['name']} | {s['chosen']} | {s['rows']['selection']} / {s['rows']['held_out']} | "
            + " | ".join(notes.cell(c, "a half has no average (a category with no rows in it)") for c in cells)
            + " |"
        )
    return lines + notes.lines()


def contamination_section(data: dict) -> list[str]:
    """Each training dataset's rows that share a 13-gram with a gauntlet benchmark or a judge prompt set."""
    checked = {r["dataset"]: r["contamination"] for r in data["models"] if r.get("contamination")}
    if not checked:
        return []
    rule = next(iter(checked.values()))
    lines = ["## Contamination", "", f"Rows of each training dataset sharing at least {rule['min_shared']} "]
    lines[-1] += f"{rule['n']}-gram(s) with an evaluation set ({rule['rule']}); the sets with any overlap."
    lines += ["", "| Dataset | Rows | Seen by any set | Sets with overlap: rows (share) | Not checked |"]
    lines.append("|---|---|---|---|---|")
    for dataset, found in checked.items():
        hits = [f"{name} ({s['kind']}): {s['rows']} ({100 * s['share']:.1f}%)" for name, s in found["sets"].items()]
        hits = [h for h, s in zip(hits, found["sets"].values(), strict=True) if s["rows"]]
        seen = found["any"]
        lines.append(
            f"| {dataset} | {found['rows']} | {seen['rows']} ({100 * seen['share']:.1f}%) | "
            f"{'; '.join(hits) or 'none'} | {', '.join(found.get('missing') or []) or '-'} |"
        )
    return lines


def yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def mean_std(stat: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    """`0.172 ± 0.004` (the mean and standard deviation over seeds), or the mean alone from one seed."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    mean = f"{scale * stat['mean']:.{digits}f}"
    return mean if stat.get("std") is None else f"{mean} ± {scale * stat['std']:.{digits}f}"


def replicates_section(data: dict) -> list[str]:
    groups = data.get("replicates") or []
    if not groups:
        return []
    lines = ["## Replicates", "", "Mean ± standard deviation over training seeds (n: seeds with scores); the epoch"]
    lines += ["each seed's selection chose; win rates from the group's own side, in %."]
    header = ["Group", "Rows", "Seeds", "Chosen epochs", "n", "Av", *CATEGORIES.values(), "Win rates"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes, unscored = Footnotes(), "no seed of the group has this score yet (pending or incomplete)"
    for g in groups:
        seeds = ", ".join("-" if s is None else str(s) for s in g["seeds"])
        epochs = ", ".join("-" if e is None else str(e) for e in g["chosen_epochs"])
        cats = [notes.cell(mean_std(g["categories"].get(c)), unscored) for c in CATEGORIES]
        rates = "; ".join(f"vs {w['opponent']} on {w['prompts']}: {mean_std(w, 100, 1)}" for w in g["win_rates"])
        count = notes.na("the spec does not fix its training rows") if g["rows"] is None else g["rows"]
        lines.append(
            f"| {g['group']} | {count} | {seeds} | {epochs} | {g['average']['n']} | "
            f"{notes.cell(mean_std(g['average']), unscored)} | " + " | ".join(cats) + f" | {rates or '-'} |"
        )
    return lines + notes.lines()


def p_cells(entry: dict) -> str:
    """Raw | Holm | BH p-values."""
    return " | ".join(fmt(entry.get(k), 3) for k in ("p_value", "p_holm", "p_bh"))


def interval_cells(entry: dict, scale: float = 1.0, digits: int = 3) -> str:
    """Difference | 95% CI | distinguishable from zero."""
    diff, ci = entry.get("difference"), entry.get("ci95")
    shown = "n/a" if diff is None else f"{scale * diff:+.{digits}f}"
    bounds = "n/a" if ci is None else f"[{scale * ci[0]:+.{digits}f}, {scale * ci[1]:+.{digits}f}]"
    return f"{shown} | {bounds} | {yes_no(entry.get('distinguishable'))}"


NO_SCORE = "one side has no score to compare (an n/a average or win rate, or a pending step)"
NOT_RESAMPLED = "no interval or p-value: the per-sample outputs it resamples are not stored"


def compared_cells(entry: dict, notes: Footnotes, scale: float = 1.0, digits: int = 3) -> str:
    """`interval_cells` and `p_cells`, each n/a with its reason: no difference, or nothing to resample."""
    reason = NO_SCORE if entry.get("difference") is None else NOT_RESAMPLED
    cells = f"{interval_cells(entry, scale, digits)} | {p_cells(entry)}".split(" | ")
    return " | ".join(notes.cell(c, reason) for c in cells)


def comparisons_section(data: dict) -> list[str]:
    found = data.get("comparisons") or {}
    gauntlet, rates = found.get("gauntlet") or [], found.get("win_rate") or []
    if not gauntlet and not rates:
        return []
    lines = ["## Paired comparisons", "", "Differences with 95% bootstrap intervals (seeded); distinguishable: the"]
    lines += ["interval excludes zero. p: two-sided bootstrap p-value of no difference, raw and adjusted over its"]
    lines += ["family (the comparisons of one table made the same way) by Holm (family-wise) and Benjamini-Hochberg"]
    lines += ["(false discovery rate). Gauntlet: A's average minus B's, resampling benchmark rows paired by row."]
    if gauntlet:
        lines += ["", "| A | B | Compared as | Av difference | 95% CI | Distinguishable | p | p Holm | p BH |"]
        lines.append("|---|---|---|---|---|---|---|---|---|")
        notes = Footnotes()
        lines += [f"| {e['a']} | {e['b']} | {e['why']} | {compared_cells(e, notes)} |" for e in gauntlet]
        lines += notes.lines()
    if rates:
        lines += ["", "Win rates (percentage points), resampling prompts and sampling seeds: a pair's win rate of A"]
        lines += ["minus 50 (even match), or one size's win rate minus the next smaller size's against the same B."]
        lines += ["", "| A | B | Prompts | Compared as | Difference | 95% CI | Distinguishable | p | p Holm | p BH |"]
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        notes = Footnotes()
        for e in rates:
            against = f"{e['b']} (both vs {e['opponent']})" if e.get("opponent") else e["b"]
            lines.append(f"| {e['a']} | {against} | {e['prompts']} | {e['why']} | {compared_cells(e, notes, 100, 1)} |")
        lines += notes.lines()
    return lines


def tau_reading(tau: dict) -> str:
    """What Kendall's tau and its interval say about the two rankings."""
    if tau.get("tau") is None:
        return "n/a (one of the two scores every model alike)"
    ci = tau.get("ci95")
    shown = f"{fmt(tau.get('tau'), 2)}" + ("" if ci is None else f" [95% CI {ci[0]:+.2f}, {ci[1]:+.2f}]")
    if ci is not None and ci[1] < 0:
        return f"{shown}: the paradigms rank these models the other way round (the interval is below zero)"
    if ci is not None and ci[0] > 0:
        return f"{shown}: the paradigms agree (the interval is above zero)"
    return f"{shown}: agreement not distinguishable from none"


def agreement_group(group: dict) -> list[str]:
    by_name = {m["name"]: m for m in group["models"]}

    def named(names: list[str]) -> str:
        return " and ".join(f"{n} ({by_name[n]['dataset'] or 'base'})" for n in names) + (
            " (tied)" if len(names) > 1 else ""
        )

    lines = ["", f"### {group['base'] or 'models'} on {group['prompts']}", ""]
    lines += [
        f"The gauntlet ranks {named(group['gauntlet_leader'])} first; the judge prefers "
        f"{named(group['judge_leader'])}. Kendall's tau, gauntlet average against the "
        f"judge: {tau_reading(group['tau'])}. Judge strength: {group['strength']}; resampled: gauntlet "
        f"{group['resampled']['gauntlet']}, judge {group['resampled']['judge']}.",
        "",
        "| Model | Dataset | Gauntlet Av | Rank | Judge strength | Rank |",
        "|---|---|---|---|---|---|",
    ]
    for name in group["gauntlet_order"]:
        m = by_name[name]
        ranks = [group["ranks"][k][name] for k in ("gauntlet", "judge")]
        lines.append(
            f"| {name} | {m['dataset'] or '-'} | {fmt(m['gauntlet'])} | {ranks[0]} | {fmt(m['judge'])} | {ranks[1]} |"
        )
    alike = " (undefined: one of the two scores every model alike there)"
    taus = ", ".join(
        f"{CATEGORIES[c]} {fmt(t, 2)}{alike if t is None else _tau_ci(group, c)}"
        for c, t in group["category_tau"].items()
    )
    lines += ["", f"Tau per category: {taus}."]
    if group["disagreements"]:
        lines += ["", "Ordered the other way round (A ahead on the gauntlet, B with the judge; A minus B):", ""]
        lines += ["| A | B | Gauntlet Av difference | 95% CI | Distinguishable | Judge difference | 95% CI | "]
        lines[-1] += "Distinguishable |"
        lines.append("|---|---|---|---|---|---|---|---|")
        lines += [
            f"| {d['a']} | {d['b']} | {interval_cells(d['gauntlet'])} | {interval_cells(d['judge'])} |"
            for d in group["disagreements"]
        ]
    return lines


def agreement_section(data: dict) -> list[str]:
    """The paper's question: do the gauntlet and the judge rank the same models alike?"""
    found = data.get("agreement") or []
    if not found:
        return []
    lines = ["## Do the paradigms agree?", "", "Each group of models the judge compared on one prompt set, ranked"]
    lines += ["by the gauntlet average and by judge strength; Kendall's tau between the two orders (tau-b, with a"]
    lines += ["seeded bootstrap interval), per category too; every pair the two orders put the other way round."]
    for group in found:
        lines += agreement_group(group)
    return lines


def calibration_section(data: dict) -> list[str]:
    """The study's judge against GPT-4-0613 on the authors' released verdicts: how comparable its win rates
    are with the paper's."""
    found = data.get("calibration")
    if not found:
        return []
    lines = ["## Judge calibration", ""]
    if found.get("status") == "pending":
        return lines + ["Pending: the calibrate step is not complete."]
    lines += [
        f"{found.get('judge') or 'The judge'} on {found['pairs']} released GPT-4-0613 verdicts (seeded draw, each "
        "distinct pair once), under alpaca-eval's left/right swap; agreement and Cohen's kappa on the pairs it "
        "decided, with percentile intervals over them. First-position share: of its decided verdicts, those for "
        "the answer shown first (0.5 ignores position, 1 always picks the first).",
        "",
        "| Pairs | Decided | Failures | Agreement | 95% CI | Cohen's kappa | 95% CI | First-position share |",
        "|---|---|---|---|---|---|---|---|",
        f"| {found['pairs']} | {found['decided']} | {found['failures']} | {fmt(found.get('agreement'))} | "
        f"{_ci(found.get('agreement_ci95'))} | {fmt(found.get('kappa'))} | {_ci(found.get('kappa_ci95'))} | "
        f"{fmt(found.get('first_position_share'))} |",
    ]
    return lines


def _tau_ci(group: dict, category: str) -> str:
    ci = (group.get("category_tau_ci95") or {}).get(category)
    return "" if not ci else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _ci(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _lengths(lengths: dict | None) -> str:
    """Mean response length in characters, as AlpacaEval measures it."""
    if not lengths:
        return "n/a"
    return "/".join(f"{lengths[side]['mean']:.0f}" if lengths.get(side) else "n/a" for side in ("a", "b"))


def _cost(cost: dict | None) -> str:
    if not cost:
        return "n/a"
    dollars = cost.get("dollars")
    count = f"{cost['tokens']:,.0f} tokens" if cost.get("tokens") is not None else "tokens n/a"
    return f"{count}, ${dollars:.2f}" if dollars is not None else f"{count}, price unknown"


def pair_groups(pairs: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for pair in pairs:
        groups.setdefault((pair.get("base") or "", pair["prompts"]), []).append(pair)
    return groups


def judge_section(data: dict) -> list[str]:
    if not data["pairs"]:
        return []
    lines = ["## Pairwise judge", "", "Win rate of A (%), ties and failures excluded; the mean over seeds."]
    columns = ["A", "B", "Per seed", "Mean", "95% CI", "Seed std", "LC win rate", "W/L/T/F", "Length A/B", "Cost"]
    for (base, prompts), pairs in pair_groups(data["pairs"]).items():
        lines += ["", f"### {base} on {prompts}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        notes = Footnotes()
        for row in pairs:
            if row.get("status") == "pending":
                lines.append(f"| {row['a']} | {row['b']} | pending |" + " |" * (len(columns) - 3))
                continue
            lines.append(judge_row(row, notes))
        lines += notes.lines()
    return lines + position_lines(data["pairs"])


NO_DECISION = "no judgment was decided (all ties or failures)"


def judge_row(row: dict, notes: Footnotes) -> str:
    """A judged pair's line: every n/a with its reason in `notes` (the LC win rate's is the judge step's)."""
    seeds = row.get("seeds", {})
    per_seed = ", ".join(percent(s.get("win_rate_a")) for s in seeds.values())
    totals = [sum(s.get(k, 0) for s in seeds.values()) for k in ("wins_a", "wins_b", "ties", "failures")]
    ci = row.get("ci95") or [None, None]
    mean = notes.cell(percent(row.get("win_rate_a")), NO_DECISION)
    interval = notes.na("fewer than two decided judgments") if ci[0] is None else f"{percent(ci[0])}-{percent(ci[1])}"
    spread = notes.cell(percent(row.get("seed_std")), "one sampling seed has no spread over seeds")
    lc = notes.cell(percent(row.get("lc_win_rate_a")), f"length-controlled: {row.get('lc_reason') or 'not computed'}")
    lengths = notes.cell(_lengths(row.get("lengths")), "the judge step recorded no response lengths")
    cost = notes.cell(_cost(row.get("cost")), "the judge step recorded no cost")
    return (
        f"| {row['a']} | {row['b']} | {per_seed} | {mean} | {interval} | {spread} | {lc} | "
        f"{'/'.join(str(t) for t in totals)} | {lengths} | {cost} |"
    )


def position_lines(pairs: list[dict]) -> list[str]:
    """The judge's position check (alpaca-eval shows A or B first, seeded per prompt): for each pair, how often
    the response shown first won, and a warning where that is outside 30-70%."""
    checked = [p for p in pairs if p.get("positions")]
    if not checked:
        return []
    lines = ["", "Position check: the share of decided judgments the response shown first won (a fair judge: near"]
    lines += ["50%; each prompt is shown in one seeded order), and unreadable judge answers.", ""]
    for row in checked:
        check = row["positions"]
        share = "n/a" if check["first_shown_share"] is None else f"{100 * check['first_shown_share']:.0f}%"
        line = f"- {row['a']} vs {row['b']} ({row['prompts']}): shown first won {share} of {check['decided']}"
        line += f", {check['unparsed']} unreadable"
        lines.append(line + (f". **Warning: {check['warning']}.**" if check.get("warning") else ""))
    return lines


def _quote(text: str | None) -> list[str]:
    return [f"> {line}" if line else ">" for line in (text or "(empty)").splitlines()] or ["> (empty)"]


def samples_section(data: dict) -> list[str]:
    ready = [p for p in data["pairs"] if p.get("samples")]
    if not ready:
        return []
    lines = ["## Sample judgments", "", "Two per pair: the first the judge gave A, the first it gave B."]
    for pair in ready:
        lines += ["", f"### {pair['a']} vs {pair['b']} ({pair['prompts']})"]
        for sample in pair["samples"]:
            winner = {"a": f"A ({pair['a']})", "b": f"B ({pair['b']})", "tie": "tie"}.get(sample["winner"], "failed")
            lines += ["", f"**Seed {sample['seed']}, prompt {sample['prompt_id']}; the judge preferred {winner}.**"]
            lines += ["", "Instruction:", "", *_quote(sample["instruction"]), "", "A:", "", *_quote(sample["output_a"])]
            lines += ["", "B:", "", *_quote(sample["output_b"])]
    return lines


def benchmarks_section(data: dict) -> list[str]:
    lines = [
        "## Appendix: every benchmark",
        "",
        "At the chosen epoch, each model's raw accuracy (%) ± its standard error (lm-eval's:",
    ]
    lines += ["the rows' sample standard deviation over sqrt(n)), then the rescaled score, (accuracy - chance) /"]
    lines += ["(1 - chance), ± the same error rescaled. n: rows scored, per model where they differ."]
    for base, rows in by_base(data["models"]).items():
        names = sorted(
            {(b["category"], n) for r in rows for n, b in r.get("benchmarks", {}).items()},
            key=lambda cn: (list(CATEGORIES).index(cn[0]) if cn[0] in CATEGORIES else 99, cn[1]),
        )
        if not names:
            continue
        notes = Footnotes()
        lines += ["", f"### {base}", "", "| Benchmark | Category | Chance | n | " + " | ".join(r["name"] for r in rows)]
        lines[-1] += " |"
        lines.append("|---|---|---|---|" + "---|" * len(rows))
        for category, name in names:
            lines.append(benchmark_line(name, CATEGORIES.get(category, category), rows, notes))
        missing = sorted({n for r in rows for n in r.get("missing") or []} - {n for _, n in names})
        lines += [f"| {n} | | | | " + " | ".join(notes.na(NO_DATA) for _ in rows) + " |" for n in missing]
        lines += notes.lines()
    return lines


def benchmark_line(name: str, category: str, rows: list[dict], notes: Footnotes) -> str:
    """One benchmark across models: `41.2 ± 1.3 → 0.216 ± 0.017` per model, n once where they all agree."""
    found = [(r.get("benchmarks") or {}).get(name) for r in rows]
    counts = {b.get("n") for b in found if b}
    chance = next((b["random_baseline"] for b in found if b and b.get("random_baseline") is not None), None)
    cells = []
    for row, bench in zip(rows, found, strict=True):
        if not bench:
            reason = PENDING if row.get("status") == "pending" else "not scored for this model"
            cells.append(notes.na(NO_DATA if name in (row.get("missing") or []) else reason))
            continue
        cell = benchmark_cell(bench)
        cells.append(cell if len(counts) == 1 else f"{cell} (n={bench.get('n')})")
    n = str(counts.pop()) if len(counts) == 1 else "varies"
    shown = "-" if chance is None else f"{100 * chance:.0f}%"
    return f"| {name} | {category} | {shown} | {n} | " + " | ".join(cells) + " |"


def benchmark_cell(bench: dict) -> str:
    accuracy, stderr = bench.get("accuracy"), bench.get("stderr")
    raw = "n/a" if accuracy is None else f"{100 * accuracy:.1f}" + ("" if stderr is None else f" ± {100 * stderr:.1f}")
    return f"{raw} → {with_delta(bench.get('score'), None, bench.get('score_stderr'))}"


def outputs_section(data: dict) -> list[str]:
    """Where the per-sample outputs behind the numbers are (those stored): gauntlet rows and judged prompts."""
    found = data.get("per_sample") or []
    if not found:
        return []
    lines = ["## Per-sample outputs", "", "Gauntlet details: per benchmark row its correctness, prediction, gold and"]
    lines += ["log-likelihoods (at the chosen epoch). Judge annotations: per judged prompt both responses, the order"]
    lines += ["they were shown in and the verdict.", ""]
    for entry in found:
        some = entry.get("benchmarks")
        count = "" if some is None or some == entry.get("of_benchmarks") else f" ({some} of {entry['of_benchmarks']})"
        lines.append(f"- {entry['of']}: `{entry['location']}`{count}")
    return lines


def provenance_section(data: dict) -> list[str]:
    source = data.get("provenance") or {}
    steps, names = source.get("steps", []), source.get("step_names") or {}
    return [
        "## Provenance",
        "",
        f"- limit {source.get('limit_version', '?')}, git commit {source.get('git_commit') or 'unknown'}",
        f"- MLflow parent run: {source.get('mlflow_parent_run') or 'none (rendered outside an execution)'}",
        f"- every bootstrap interval seeded with {source.get('bootstrap_seed', '?')} (judge.bootstrap_seed)",
        f"- {len(steps)} step outputs (kind/key in the artifact store; the step's name, as its MLflow run is named):",
        "",
        *(f"  - `{ref}`" + (f" {names[ref]}" if names.get(ref) else "") for ref in steps),
    ]


SECTIONS: list[Callable[[dict], list[str]]] = [
    gauntlet_section,
    selection_section,
    split_section,
    contamination_section,
    replicates_section,
    judge_section,
    comparisons_section,
    agreement_section,
    calibration_section,
    samples_section,
    benchmarks_section,
    outputs_section,
    provenance_section,
]
