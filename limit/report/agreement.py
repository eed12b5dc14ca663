"""Do the two paradigms agree? The paper's question, per group of models the judge compared.

A group is the models connected by judged pairs on one prompt set (the paper: one size, one prompt set). Its
models are ranked by the gauntlet average (and by each category) and by judge strength (`limit.stats.ranking`:
the win rate against the common opponent when the pairs form a star, else Bradley-Terry). Kendall's tau
between the average and the judge gets a bootstrap interval: the gauntlet averages resampled by benchmark row
(paired across the group's models; held fixed where a model has no per-row details) and the win rates by
prompt and sampling seed (all the group's pairs share the draws; per-seed counts drawn binomially where a
pair has no per-prompt outcomes); each category's tau likewise, its scores resampled by its benchmarks' rows.
Every pair of models the two orders put the other way round is listed with both effect sizes: the gauntlet
difference and the judge-strength difference, each with its interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from limit.gauntlet.benchmarks import CATEGORIES, suite
from limit.gauntlet.scoring import category_weights
from limit.report.stats import counted_draws, gauntlet_average_draws
from limit.report.sweeps import Rows, matrices, resamples_of
from limit.stats.bootstrap import SEED, interval, verdict, win_rate_draws
from limit.stats.ranking import kendall_tau, order, ranks, strengths, tau_draws


def groups(pairs: list[dict]) -> list[tuple[str, list[dict]]]:
    """(prompts, pairs) per prompt set and connected set of judged models, in study order."""
    out = []
    for prompts in dict.fromkeys(p["prompts"] for p in pairs):
        rest = [p for p in pairs if p["prompts"] == prompts]
        while rest:
            members, size = {rest[0]["a"], rest[0]["b"]}, 0
            while size != len(members):  # grow until no pair links a new model
                size = len(members)
                members |= {n for p in rest if {p["a"], p["b"]} & members for n in (p["a"], p["b"])}
            out.append((prompts, [p for p in rest if p["a"] in members]))
            rest = [p for p in rest if p["a"] not in members]
    return out


def paradigm_agreement(
    models: list[dict],
    pairs: list[dict],
    rows_of: Callable[[dict], Rows | None],
    outcomes_of: Callable[[dict], list[dict] | None],
    seed: int = SEED,
) -> list[dict[str, Any]]:
    """One entry per group with at least two models that have both a gauntlet average and a judged pair; every
    bootstrap seeded with `seed`."""
    scored = {m["name"]: m for m in models if m.get("average") is not None}
    judged = [p for p in pairs if p.get("win_rate_a") is not None and p["a"] in scored and p["b"] in scored]
    out = []
    for prompts, members in groups(judged):
        names = sorted({n for p in members for n in (p["a"], p["b"])})
        out.append(group_agreement(prompts, [scored[n] for n in names], members, rows_of, outcomes_of, seed))
    return out


def judge_draws(
    pairs: list[dict], outcomes_of: Callable[[dict], list[dict] | None], seed: int
) -> tuple[np.ndarray, str]:
    """pairs x resamples win rates, and how they were drawn."""
    resamples = resamples_of(pairs[0])
    found = matrices(pairs, outcomes_of)
    if found is not None:
        return np.vstack(win_rate_draws(found, resamples, seed)), "prompts and sampling seeds"
    return np.vstack([counted_draws(p.get("seeds") or {}, resamples, seed + i) for i, p in enumerate(pairs)]), (
        "per-seed counts, binomially (no per-prompt outcomes)"
    )


def gauntlet_draws(
    rows: list[dict], resamples: int, seed: int, rows_of: Callable[[dict], Rows | None], category: str | None = None
) -> tuple:
    """models x resamples gauntlet averages (or `category`'s scores), and whether they were resampled (else
    held fixed)."""
    reported = [r["average"] if category is None else r["categories"][category] for r in rows]
    details = [rows_of(r) for r in rows]
    benchmarks = suite(rows[0].get("suite") or "v0")
    weights = category_weights(benchmarks, category) if category else None
    draws = None
    if all(details) and (category is None or weights):
        draws = gauntlet_average_draws(benchmarks, details, reported, resamples, seed, weights)
    if draws is None:
        return np.repeat(np.array(reported, dtype=float)[:, None], resamples, axis=1), False
    return draws, True


def group_agreement(
    prompts: str,
    rows: list[dict],
    pairs: list[dict],
    rows_of: Callable[[dict], Rows | None],
    outcomes_of: Callable[[dict], list[dict] | None],
    seed: int,
) -> dict[str, Any]:
    names = [r["name"] for r in rows]
    edges = [(p["a"], p["b"]) for p in pairs]
    judge, center = strengths(names, edges, np.array([p["win_rate_a"] for p in pairs]))
    judge = judge[:, 0]
    rates, judge_drawn = judge_draws(pairs, outcomes_of, seed)
    judge_resampled, _ = strengths(names, edges, rates)
    gauntlet = np.array([r["average"] for r in rows], dtype=float)
    gauntlet_resampled, resampled = gauntlet_draws(rows, rates.shape[1], seed, rows_of)
    by_gauntlet, by_judge = order(names, gauntlet), order(names, judge)
    return {
        "ranks": {
            "gauntlet": dict(zip(names, ranks(gauntlet), strict=True)),
            "judge": dict(zip(names, ranks(judge), strict=True)),
        },
        "prompts": prompts,
        "base": pairs[0].get("base"),
        "models": [
            {"name": n, "dataset": r.get("dataset"), "gauntlet": float(g), "judge": float(j)}
            for n, r, g, j in zip(names, rows, gauntlet, judge, strict=True)
        ],
        "strength": f"win rate against {center}" if center else "Bradley-Terry log-strength",
        "common_opponent": center,
        "gauntlet_order": by_gauntlet,
        "judge_order": by_judge,
        "gauntlet_leader": leaders(names, gauntlet),
        "judge_leader": leaders(names, judge),
        "tau": {"tau": kendall_tau(gauntlet, judge), "ci95": interval(tau_draws(gauntlet_resampled, judge_resampled))},
        "category_tau": {c: category_tau(rows, c, judge) for c in CATEGORIES},
        "category_tau_ci95": {c: category_interval(rows, c, judge_resampled, rows_of, seed) for c in CATEGORIES},
        "disagreements": disagreements(
            names, (gauntlet, gauntlet_resampled if resampled else None), (judge, judge_resampled)
        ),
        "resampled": {"gauntlet": "benchmark rows" if resampled else "held fixed", "judge": judge_drawn},
    }


def leaders(names: Sequence[str], scores: np.ndarray) -> list[str]:
    """The models sharing the best score (one, unless they tie)."""
    return [n for n, s in zip(names, scores, strict=True) if s == scores.max()]


def category_tau(rows: list[dict], category: str, judge: np.ndarray) -> float | None:
    values = [(r.get("categories") or {}).get(category) for r in rows]
    if None in values:
        return None
    return kendall_tau(values, judge)


def category_interval(
    rows: list[dict], category: str, judge_resampled: np.ndarray, rows_of: Callable[[dict], Rows | None], seed: int
) -> list[float] | None:
    """The interval of a category's tau, its scores resampled by row as the average's are."""
    if any((r.get("categories") or {}).get(category) is None for r in rows):
        return None
    draws, _ = gauntlet_draws(rows, judge_resampled.shape[1], seed, rows_of, category)
    return interval(tau_draws(draws, judge_resampled))


def disagreements(names: Sequence[str], gauntlet: tuple, judge: tuple) -> list[dict[str, Any]]:
    """Model pairs the gauntlet and the judge order the other way round: each difference (the first name's
    minus the second's; the first is the gauntlet's better one) with its interval (none for gauntlet scores
    held fixed)."""
    (g, g_draws), (j, j_draws) = gauntlet, judge
    out = []
    for x, y in combinations(range(len(names)), 2):
        if (g[x] - g[y]) * (j[x] - j[y]) >= 0:
            continue
        x, y = (x, y) if g[x] > g[y] else (y, x)
        out.append(
            {
                "a": names[x],
                "b": names[y],
                "gauntlet": effect(float(g[x] - g[y]), None if g_draws is None else g_draws[x] - g_draws[y]),
                "judge": effect(float(j[x] - j[y]), j_draws[x] - j_draws[y]),
            }
        )
    return out


def effect(difference: float, draws: np.ndarray | None) -> dict[str, Any]:
    """A difference with its interval, or with none (and no verdict) without draws."""
    if draws is None:
        return {"difference": difference, "ci95": None, "distinguishable": None}
    return verdict(difference, interval(draws))
