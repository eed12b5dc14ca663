"""A judge calibrated against GPT-4-0613: how often it gives the authors' released verdict on the same pairs.

The calibration set is N pairs drawn (seeded) from the release's decided verdicts (../shared/limit_release:
GPT-4-0613 under alpaca-eval's `alpaca_eval_gpt4` prompt, real responses of the paper's models), each
distinct (instruction, output_1, output_2) once. The judge is asked them under one annotator seed, so
alpaca-eval's left/right swap applies as in a study. Reported: raw agreement and Cohen's kappa (on the
decided pairs, chance agreement from both judges' own shares), each with a percentile interval over the pairs
(`limit.stats.bootstrap`), the judge's failures, and the share of its decided verdicts that went to the
answer shown first (alpaca-eval's swap undone): 0.5 for a judge that ignores position, 1 for one that
always picks the first. A replay of the release agrees with kappa 1; a judge that always picks the first
shown answer has kappa near 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from limit.judge.ranking import is_switched
from limit.judge.types import Judge
from limit.judge.winrate import WIN_A, WIN_B, normalize_preference
from limit.stats.bootstrap import RESAMPLES, interval


def calibration_set(release_dir: Path, n: int, seed: int = 0) -> list[dict]:
    """N distinct released pairs with a decided GPT-4-0613 verdict: {instruction, output_1, output_2,
    preference}, drawn with `seed` from all of them in a fixed order."""
    found: dict[tuple[str, str, str], float] = {}
    for path in sorted(release_dir.glob("*_models/*_prompts/*.json")):
        for row in json.loads(path.read_text()):
            pref = normalize_preference(row.get("preference"))
            key = (row["instruction"], row["output_1"], row["output_2"])
            if pref in (WIN_A, WIN_B) and row["output_1"] != row["output_2"]:
                found.setdefault(key, pref)
    keys = sorted(found)
    picked = np.random.default_rng(seed).choice(len(keys), size=min(n, len(keys)), replace=False)
    return [dict(zip(("instruction", "output_1", "output_2"), keys[i], strict=True)) | {"preference": found[keys[i]]}
            for i in sorted(picked)]  # fmt: skip


def kappa(reference: np.ndarray, verdict: np.ndarray) -> float | None:
    """Cohen's kappa of two labelings (1 or 2) of the same items."""
    observed = float(np.mean(reference == verdict))
    chance = sum(float(np.mean(reference == c)) * float(np.mean(verdict == c)) for c in (WIN_A, WIN_B))
    return None if chance == 1 else (observed - chance) / (1 - chance)


def agreement(
    reference: Sequence[float], verdicts: Sequence[float | None], shown_first: Sequence[float], seed: int = 0
) -> dict:
    """Raw agreement and kappa with intervals over the decided pairs, failures, and the first-position share.
    `shown_first`: per pair, the preference (1 or 2) that means the answer shown first won."""
    decided = [i for i, v in enumerate(verdicts) if v in (WIN_A, WIN_B)]
    ref = np.array([reference[i] for i in decided])
    got = np.array([verdicts[i] for i in decided])
    first = np.array([shown_first[i] for i in decided])
    out = {"pairs": len(verdicts), "decided": len(decided), "failures": len(verdicts) - len(decided)}
    if not decided:
        return out | {"agreement": None, "kappa": None, "first_position_share": None}
    draws = np.random.default_rng(seed).integers(0, len(decided), size=(RESAMPLES, len(decided)))
    kappas = [kappa(ref[d], got[d]) for d in draws]
    return out | {
        "agreement": float(np.mean(ref == got)),
        "agreement_ci95": interval(np.mean(ref[draws] == got[draws], axis=1)),
        "kappa": kappa(ref, got),
        "kappa_ci95": interval(np.array([np.nan if k is None else k for k in kappas])),
        "first_position_share": float(np.mean(got == first)),
    }


def calibrate(judge: Judge, rows: Sequence[dict], seed: int, cache: Path) -> dict:
    """Ask the judge the calibration pairs (annotator seed `seed`, its own cache) and compare with GPT-4-0613."""
    pairs = [(r["instruction"], r["output_1"], r["output_2"]) for r in rows]
    outcomes = judge.judge(pairs, seed=seed, cache=cache)
    first = [WIN_B if is_switched(r["instruction"], seed) else WIN_A for r in rows]
    return agreement([r["preference"] for r in rows], [o.preference for o in outcomes], first, seed) | {
        "judge_tokens": sum(o.tokens for o in outcomes)
    }
