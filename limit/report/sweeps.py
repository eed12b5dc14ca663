"""Size sweeps and training-seed replicates in the report: each replicate group's spread, and paired
comparisons with bootstrap intervals (the arithmetic is in `stats.py`).

Which models are compared, so that the count stays bounded (at most MAX_COMPARISONS of each kind):
- gauntlet: every finetune against the base model it was finetuned from, and in a size sweep each size
  against the next smaller one of its series, seed by seed;
- win rate: every judged pair against an even match (50%), and in a size sweep each size's pair against the
  next smaller size's pair with the same opponent and prompts (paired by prompt and sampling seed).

Each comparison has a two-sided bootstrap p-value, adjusted within its family (one kind, compared one way:
gauntlet against the base model, a size against the next, ...) by Holm and by Benjamini-Hochberg.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from limit.gauntlet.benchmarks import CATEGORIES, suite
from limit.report.stats import gauntlet_difference, spread, win_rate_difference, win_rate_interval
from limit.stats.adjust import adjust
from limit.stats.bootstrap import RESAMPLES, SEED, Outcomes

MAX_COMPARISONS = 200

Rows = dict[str, dict[int, float]]  # per benchmark, each row's correctness (1/0)


def replicate_groups(models: list[dict], pairs: list[dict]) -> list[dict[str, Any]]:
    """One entry per replicate group (runs differing only in their training seed) and per size of a sweep:
    the mean and standard deviation over seeds of every gauntlet number and win rate, each seed's epoch."""
    groups: dict[str, list[dict]] = {}
    for row in models:
        if row["kind"] == "run" and (row.get("seed") is not None or row.get("series")):
            groups.setdefault(row.get("group") or row["name"], []).append(row)
    by_name = {r["name"]: r for r in models}
    return [group_row(name, rows, pairs, by_name) for name, rows in groups.items()]


def group_row(name: str, rows: list[dict], pairs: list[dict], by_name: dict[str, dict]) -> dict[str, Any]:
    ready = [r for r in rows if r.get("status") == "ready"]
    benchmarks = sorted({b for r in ready for b in r.get("benchmarks", {})})
    return {
        "group": name,
        "series": rows[0].get("series"),
        "base": rows[0]["base"],
        "dataset": rows[0].get("dataset"),
        "rows": rows[0].get("rows"),
        "models": [r["name"] for r in rows],
        "seeds": [r.get("seed") for r in rows],
        "chosen_epochs": [r.get("epoch") for r in rows],
        "average": spread([r["average"] for r in ready]),
        "categories": {c: spread([r["categories"].get(c) for r in ready]) for c in CATEGORIES},
        "benchmarks": {b: spread([(r["benchmarks"].get(b) or {}).get("score") for r in ready]) for b in benchmarks},
        "win_rates": group_win_rates([r["name"] for r in rows], pairs, by_name),
    }


def group_win_rates(members: list[str], pairs: list[dict], by_name: dict[str, dict]) -> list[dict[str, Any]]:
    """The members' win rates from their own side, by prompt set and opponent (a replicated opponent by its
    group: seed-matched pairs are one comparison; `opponent_series`: the opponent's size sweep, if any; `side`:
    whether the group was A or B in the pairs)."""
    found: dict[tuple[str, str, str | None, str], list[float]] = {}
    for pair in pairs:
        rate = pair.get("win_rate_a")
        sides = (("a", pair["a"], pair["b"], rate), ("b", pair["b"], pair["a"], None if rate is None else 1 - rate))
        for side, name, other, value in sides:
            if name in members and value is not None:
                row = by_name.get(other) or {}
                key = (pair["prompts"], row.get("group") or other, row.get("series"), side)
                found.setdefault(key, []).append(value)
    return [
        {"prompts": p, "opponent": o, "opponent_series": series, "side": side, **spread(values)}
        for (p, o, series, side), values in found.items()
    ]


def adjacent_sizes(models: list[dict]) -> list[tuple[dict, dict]]:
    """(larger, next smaller) of each series of a size sweep, for each seed both sizes have."""
    lines: dict[tuple[str, int | None], list[dict]] = {}
    for row in models:
        if row.get("series") and row.get("rows") is not None:
            lines.setdefault((row["series"], row.get("seed")), []).append(row)
    out = []
    for rows in lines.values():
        ordered = sorted(rows, key=lambda r: r["rows"])
        out += [(larger, smaller) for smaller, larger in zip(ordered, ordered[1:], strict=False)]
    return out


def gauntlet_pairs(models: list[dict]) -> list[tuple[dict, dict, str]]:
    by_name = {r["name"]: r for r in models}
    out = [
        (row, by_name[row["base"]], "base model")
        for row in models
        if row["kind"] == "run" and (by_name.get(row["base"]) or {}).get("kind") == "baseline"
    ]
    return out + [(larger, smaller, "next size") for larger, smaller in adjacent_sizes(models)]


def gauntlet_comparisons(
    models: list[dict], rows_of: Callable[[dict], Rows | None], seed: int = SEED
) -> list[dict[str, Any]]:
    """A's gauntlet average minus B's, with its paired bootstrap interval over benchmark rows."""
    out = []
    for a, b, why in gauntlet_pairs(models)[:MAX_COMPARISONS]:
        entry: dict[str, Any] = {"a": a["name"], "b": b["name"], "base": a["base"], "why": why}
        if a["average"] is None or b["average"] is None:
            out.append(entry | {"difference": None, "ci95": None, "distinguishable": None})
            continue
        reported = a["average"] - b["average"]
        rows_a, rows_b = rows_of(a), rows_of(b)
        found = None
        if rows_a and rows_b:
            found = gauntlet_difference(suite(a.get("suite") or "v0"), rows_a, rows_b, reported, seed)
        out.append(entry | (found or {"difference": reported, "ci95": None, "distinguishable": None}))
    return adjusted(out)


def win_rate_comparisons(
    models: list[dict], pairs: list[dict], outcomes_of: Callable[[dict], list[dict] | None], seed: int = SEED
) -> list[dict[str, Any]]:
    """Each judged pair against an even match; each size's pair against the next smaller size's."""
    out = []
    for pair in pairs[:MAX_COMPARISONS]:
        found = matrices([pair], outcomes_of)
        result = win_rate_interval(found[0], resamples_of(pair), seed) if found else None
        out.append(_pair_entry(pair, "even match") | (result or _unknown()))
    for pair, other in adjacent_pairs(models, pairs)[:MAX_COMPARISONS]:
        found = matrices([pair, other], outcomes_of)
        result = win_rate_difference(*found, resamples_of(pair), seed) if found else None
        opponent = pair["b"] if pair["b"] == other["b"] else f"{pair['b']} / {other['b']}"
        entry = _pair_entry(pair, "next size") | {"b": other["a"], "opponent": opponent}
        out.append(entry | (result or _unknown()))
    return adjusted(out)


def adjusted(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entry with its p-value adjusted within its family (the comparisons made the same way, `why`):
    Holm's (family-wise error) and Benjamini-Hochberg's (false discovery rate)."""
    for why in dict.fromkeys(e["why"] for e in entries):
        family = [e for e in entries if e["why"] == why]
        raw = [e.get("p_value") for e in family]
        for e, holm, bh in zip(family, adjust(raw, "holm"), adjust(raw, "bh"), strict=True):
            e |= {"p_value": e.get("p_value"), "p_holm": holm, "p_bh": bh, "family": len(family)}
    return entries


def resamples_of(pair: dict) -> int:
    """The resamples the pair's judge step drew its interval with (its result.json): with the study's seed,
    which the plan gives the judge steps and the report alike, the report's interval of the pair is that one."""
    return (pair.get("bootstrap") or {}).get("resamples") or RESAMPLES


def adjacent_pairs(models: list[dict], pairs: list[dict]) -> list[tuple[dict, dict]]:
    """(a size's pair, the next smaller size's) on the same prompts, against the same opponent or against the
    same series' model of the same seed (a sweep judged against another sweep, size by size)."""
    series = {r["name"]: r.get("series") for r in models}
    out = []
    for larger, smaller in adjacent_sizes(models):
        for pair in (p for p in pairs if p["a"] == larger["name"]):
            other = next(
                (
                    q
                    for q in pairs
                    if q["a"] == smaller["name"]
                    and q["prompts"] == pair["prompts"]
                    and (q["b"] == pair["b"] or (series.get(q["b"]) and series.get(q["b"]) == series.get(pair["b"])))
                ),
                None,
            )
            if other is not None:
                out.append((pair, other))
    return out


def _pair_entry(pair: dict, why: str) -> dict[str, Any]:
    return {"a": pair["a"], "b": pair["b"], "prompts": pair["prompts"], "base": pair.get("base"), "why": why}


def _unknown() -> dict[str, Any]:
    return {"difference": None, "ci95": None, "distinguishable": None}


def matrices(pairs: Sequence[dict], outcomes_of: Callable[[dict], list[dict] | None]) -> list[Outcomes] | None:
    """The pairs' outcomes over the same sampling seeds and prompts (their union, in string order), or None."""
    found = [outcomes_of(p) for p in pairs]
    if any(not rows for rows in found):
        return None
    seeds = sorted({str(r["seed"]) for rows in found for r in rows})
    prompts = sorted({str(r["prompt_id"]) for rows in found for r in rows})
    return [
        Outcomes.from_rows(((r["seed"], r["prompt_id"], r.get("winner")) for r in rows), seeds, prompts)
        for rows in found
    ]
