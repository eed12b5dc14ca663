"""Judge two models' paired responses seed by seed and turn the outcomes into `result.json`.

Shared by the judge step and `limit judge-pair`, so both count, average and price exactly alike.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from limit.judge.backends import Judge, Pair
from limit.judge.winrate import TIE, WIN_A, WIN_B, Judgment, summarize


@dataclass
class PairedPrompt:
    prompt_id: str
    pair: Pair


def judge_seeds(
    judge: Judge,
    per_seed: Mapping[str, Sequence[PairedPrompt]],
    cache_for: Callable[[str], Path],
    after_seed: Callable[[str], None] | None = None,
) -> tuple[dict[str, list[Judgment]], list[dict], float]:
    """Judge every seed with its own annotator seed and cache file (`cache_for(seed)`).

    Returns the judgments per seed, one annotation row per pair, and the judge tokens spent.
    """
    judgments: dict[str, list[Judgment]] = {}
    annotations: list[dict] = []
    tokens = 0.0
    for seed, paired in per_seed.items():
        outcomes = judge.judge([p.pair for p in paired], seed=int(seed), cache=cache_for(seed))
        judgments[seed] = []
        for p, outcome in zip(paired, outcomes, strict=True):
            instruction, out_a, out_b = p.pair
            judgments[seed].append(Judgment(p.prompt_id, outcome.preference, len(out_a), len(out_b)))
            tokens += outcome.tokens
            annotations.append(
                {
                    "seed": seed,
                    "prompt_id": p.prompt_id,
                    "instruction": instruction,
                    "output_a": out_a,
                    "output_b": out_b,
                    "preference": outcome.preference,
                    "winner": _winner(outcome.preference),
                    "judge_tokens": outcome.tokens,
                    "raw": outcome.raw,
                    "error": outcome.error,
                }
            )
        failed = sum(j.preference is None for j in judgments[seed])
        print(f"judge: seed {seed}: {len(paired)} pairs judged, {failed} failed", file=sys.stderr)
        if after_seed:
            after_seed(seed)
    return judgments, annotations, tokens


def result(
    judgments: Mapping[str, Sequence[Judgment]],
    tokens: float,
    cost_per_token: float | None,
    bootstrap: int,
    model: str,
) -> dict:
    """`result.json`: per-seed counts and rates, mean, seed spread, 95% CI, LC win rate, lengths, cost."""
    out = summarize(judgments, bootstrap=bootstrap).to_dict()
    out["cost"] = {
        "judge_model": model,
        "tokens": tokens,
        "dollars": None if cost_per_token is None else tokens * cost_per_token,
    }
    return out


def _winner(preference: float | None) -> str | None:
    return {WIN_A: "a", WIN_B: "b", TIE: "tie"}.get(preference)
