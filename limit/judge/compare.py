"""Judge two models' responses seed by seed and turn the outcomes into `result.json`.

Shared by the judge step and `limit judge-pair`, so both pair, count, average and price exactly alike.
Responses are rows {prompt_id, instruction, output, seed} (generate's `responses.jsonl`); seed s of A is
judged against seed s of B, prompt by prompt, never matched on instruction text.

Only a trustworthy result is returned: when the judge failed on more than `judge.max_failure_rate` of the
judgments, judging ends retryable (exit 75) with nothing written but the caches of what succeeded, so the
next attempt asks only for the failed ones. A pair whose response failed to generate is not asked at all: it
counts as a failure (never a loss), one the generate step already accepted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from limit.errors import LimitError, UnavailableError
from limit.execution import outputs, progress
from limit.execution.outputs import Response
from limit.judge.backends import judge_name
from limit.judge.ranking import is_switched
from limit.judge.types import Judge, Outcome, Pair
from limit.judge.winrate import TIE, WIN_A, WIN_B, Judgment, summarize
from limit.spec.study import JudgeSpec


@dataclass
class PairedPrompt:
    prompt_id: str
    pair: Pair
    failed_generation: str | None = None  # why a side has no response to judge


def _failed_generation(a: Response, b: Response) -> str | None:
    for side, row in (("a", a), ("b", b)):
        if row.finish_reason == "error":
            return f"generation failed ({side}): {row.error}"
    return None


def read_responses(path: Path, which: str) -> list[Response]:
    """generate's responses.jsonl; `which` names the side (a, b, --a, ...) in errors."""
    try:
        return outputs.read_lines(path, Response)
    except LimitError as e:
        raise LimitError(f"{which}: {e}") from None


def check_complete(rows: list[Response], summary: dict, which: str) -> None:
    """Refuse responses that are not one per prompt and seed of the generate step that wrote them (its
    `summary`: how many prompts and seeds it sampled): a short file would be judged on fewer pairs."""
    prompts, seeds = summary.get("prompts"), summary.get("seeds")
    if not isinstance(prompts, int) or not isinstance(seeds, int):
        raise LimitError(f"{which}: its generate step's summary does not say how many prompts and seeds it has")
    per_seed: dict[str, set[str]] = {}
    for row in rows:
        per_seed.setdefault(str(row.seed), set()).add(row.prompt_id)
    short = next((seed for seed, ids in per_seed.items() if len(ids) != prompts), None)
    if len(per_seed) != seeds or short is not None or len(rows) != prompts * seeds:
        found = f"seed {short}: {len(per_seed[short])}" if short else f"{len(per_seed)} seeds, {len(rows)} rows"
        raise LimitError(f"{which}: {found}; expected one response per prompt and seed ({prompts} x {seeds})")


def pair_by_prompt(
    a: list[Response], b: list[Response], names: tuple[str, str] = ("judge: a", "judge: b")
) -> dict[str, list[PairedPrompt]]:
    """Seed s of A with seed s of B, prompt by prompt (A's order): {seed: [PairedPrompt]}. Both must cover the
    same seeds and prompts; `names` say which side is which in errors."""
    b_index = {(str(r.seed), r.prompt_id): r for r in b}
    per_seed: dict[str, list[PairedPrompt]] = {}
    seen = set()
    for row in a:
        key = (str(row.seed), row.prompt_id)
        if key in seen:
            raise LimitError(f"{names[0]}: seed {key[0]} has prompt_id {key[1]} twice")
        seen.add(key)
        other = b_index.get(key)
        if other is None:
            raise LimitError(f"{names[1]}: no response for seed {key[0]}, prompt_id {key[1]}")
        if other.instruction != row.instruction:
            raise LimitError(f"{names[1]}: seed {key[0]}, prompt_id {key[1]}: answers another instruction than a")
        pair = (row.instruction, row.output, other.output)
        per_seed.setdefault(key[0], []).append(PairedPrompt(key[1], pair, _failed_generation(row, other)))
    if len(seen) != len(b_index):
        extra = sorted(set(b_index) - seen)[0]
        raise LimitError(f"{names[0]}: no response for seed {extra[0]}, prompt_id {extra[1]}")
    return per_seed


def judge_responses(
    judge: Judge,
    spec: JudgeSpec,
    per_seed: Mapping[str, Sequence[PairedPrompt]],
    cache_for: Callable[[str], Path],
    after_seed: Callable[[str], None] | None = None,
) -> tuple[dict, list[dict]]:
    """`result.json` and one annotation row per judged pair; UnavailableError when too many judgments failed."""
    judgments, annotations, tokens = judge_seeds(judge, per_seed, cache_for, after_seed)
    check_failures(annotations, spec.max_failure_rate)
    out = result(judgments, tokens, judge.cost_per_token(), spec, judge_name(spec))
    out["failed_generations"] = sum(p.failed_generation is not None for ps in per_seed.values() for p in ps)
    out["positions"] = position_check(annotations)
    if out["positions"]["warning"]:
        print(f"judge: warning: {out['positions']['warning']}", file=sys.stderr)
    return out, annotations


FIRST_SHOWN_BAND = (0.3, 0.7)  # a judge outside it prefers a position, whatever the responses say
POSITION_P = 0.05  # ... and beyond chance: a fair judge's few judgments stray outside the band


def position_check(annotations: Sequence[dict]) -> dict:
    """How often the response shown first won (alpaca-eval shows A or B first, seeded per prompt), and how
    often the judge's answer could not be read. Each pair is asked in one order only, so how often swapping
    the order changes a verdict is not measured. The warning needs the share outside FIRST_SHOWN_BAND and a
    two-sided binomial test against 50% below POSITION_P."""
    from scipy.stats import binomtest

    decided = [a for a in annotations if a["winner"] in ("a", "b")]
    first = sum(a["winner"] == a["shown_first"] for a in decided)
    asked = [a for a in annotations if not a["failed_generation"]]
    share = first / len(decided) if decided else None
    low, high = FIRST_SHOWN_BAND
    p_value = binomtest(first, len(decided)).pvalue if decided else None
    warning = None
    if share is not None and not low <= share <= high and p_value < POSITION_P:
        warning = (
            f"the judge preferred the response shown first in {share:.0%} of {len(decided)} decided judgments "
            f"(outside {low:.0%}-{high:.0%}): a position bias, the win rate is not a verdict on the models"
        )
    unparsed = sum(a["preference"] is None for a in asked)
    return {
        "first_shown_wins": first,
        "decided": len(decided),
        "first_shown_share": share,
        "p_value": p_value,
        "unparsed": unparsed,
        "unparsed_share": unparsed / len(asked) if asked else None,
        "warning": warning,
    }


def check_failures(annotations: Sequence[dict], max_rate: float) -> None:
    """Refuse a result in which the judge failed on more than `max_rate` of the judgments it was asked for."""
    asked = [a for a in annotations if not a["failed_generation"]]
    failed = [a for a in asked if a["preference"] is None]
    if len(failed) > max_rate * len(asked):
        raise UnavailableError(
            f"judge: {len(failed)} of {len(asked)} judgments failed, more than judge.max_failure_rate "
            f"({max_rate:g}); first: {failed[0]['error']}; the {len(asked) - len(failed)} that succeeded are "
            "cached: a rerun asks only for the failed ones"
        )


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
        asked = [p for p in paired if p.failed_generation is None]
        answers = iter(judge.judge([p.pair for p in asked], seed=int(seed), cache=cache_for(seed)))
        outcomes = [Outcome(None, error=p.failed_generation) if p.failed_generation else next(answers) for p in paired]
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
                    "shown_first": "b" if is_switched(instruction, int(seed)) else "a",  # alpaca-eval's swap
                    "judge_tokens": outcome.tokens,
                    "raw": outcome.raw,
                    "error": outcome.error,
                    "failed_generation": p.failed_generation is not None,
                }
            )
        failed = sum(j.preference is None for j in judgments[seed])
        print(f"judge: seed {seed}: {len(paired)} pairs judged, {failed} failed", file=sys.stderr)
        progress.emit("judge", seed=seed, judged=len(paired), total=len(paired), failures=failed)
        if after_seed:
            after_seed(seed)
    return judgments, annotations, tokens


def result(
    judgments: Mapping[str, Sequence[Judgment]],
    tokens: float,
    cost_per_token: float | None,
    spec: JudgeSpec,
    model: str,
) -> dict:
    """`result.json`: per-seed counts and rates, mean, seed spread, 95% CI (seeded from the spec), LC win rate,
    lengths, cost."""
    out = summarize(judgments, bootstrap=spec.bootstrap, bootstrap_seed=spec.bootstrap_seed).to_dict()
    out["cost"] = {
        "judge_model": model,
        "tokens": tokens,
        "dollars": None if cost_per_token is None else tokens * cost_per_token,
    }
    return out


def seed_totals(out: dict) -> dict[str, int]:
    """Wins of A, of B, ties and failures over every seed of a `result.json`."""
    return {k: sum(c[k] for c in out["seeds"].values()) for k in ("wins_a", "wins_b", "ties", "failures")}


def _winner(preference: float | None) -> str | None:
    return {WIN_A: "a", WIN_B: "b", TIE: "tie"}.get(preference)
