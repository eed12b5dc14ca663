"""Judge strengths from judged pairs, and rank agreement.

Strength: where every judged pair includes one model (a star, as in the paper: LIMA against each other
finetune), each model's win rate against that common opponent (the opponent itself 0.5); otherwise
Bradley-Terry log-strengths fitted to the pairs' win rates (each pair one unit, a tiny ridge keeps a pair won
every time finite; mean zero). On a tree (a star is one) Bradley-Terry fits every pair exactly, so both give
the same order. Kendall's tau is scipy's tau-b (ties allowed).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

Edge = tuple[str, str]  # (a, b) of a judged pair; its rate is A's win rate
RIDGE = 1e-3


def star_center(edges: Sequence[Edge]) -> str | None:
    """The model every judged pair includes, when exactly one does; of a single pair, its B."""
    if len(edges) == 1:
        return edges[0][1]
    common = set.intersection(*({a, b} for a, b in edges)) if edges else set()
    return next(iter(common)) if len(common) == 1 else None


def bradley_terry(names: Sequence[str], edges: Sequence[Edge], rates: np.ndarray) -> np.ndarray:
    """Log-strengths of `names` (mean zero) fitted to `rates` (pairs, or pairs x resamples), by Newton steps on
    the pairs' logistic loss plus RIDGE/2 |s|^2. Returns names (x resamples)."""
    rates = np.asarray(rates, dtype=float).reshape(len(edges), -1)
    at = {n: i for i, n in enumerate(names)}
    signs = np.zeros((len(edges), len(names)))  # +1 for A, -1 for B: s_a - s_b = signs @ s
    for e, (a, b) in enumerate(edges):
        signs[e, at[a]], signs[e, at[b]] = 1.0, -1.0
    out = np.zeros((len(names), rates.shape[1]))
    for r in range(rates.shape[1]):
        s = np.zeros(len(names))
        for _ in range(100):
            p = 1 / (1 + np.exp(-(signs @ s)))
            gradient = signs.T @ (p - rates[:, r]) + RIDGE * s
            hessian = signs.T @ (signs * (p * (1 - p))[:, None]) + RIDGE * np.eye(len(names))
            step = np.linalg.solve(hessian, gradient)
            s -= step
            if np.abs(step).max() < 1e-10:
                break
        out[:, r] = s - s.mean()
    return out


def strengths(names: Sequence[str], edges: Sequence[Edge], rates: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Each model's judge strength (names x resamples for rates pairs x resamples) and the common opponent when
    the pairs form a star (then strengths are win rates against it), else None (Bradley-Terry)."""
    rates = np.asarray(rates, dtype=float).reshape(len(edges), -1)
    center = star_center(edges)
    if center is None:
        return bradley_terry(names, edges, rates), None
    out = np.full((len(names), rates.shape[1]), np.nan)
    out[list(names).index(center)] = 0.5
    for (a, b), rate in zip(edges, rates, strict=True):
        other, won = (b, 1 - rate) if a == center else (a, rate)
        out[list(names).index(other)] = won
    return out, center


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two scorings of the same items (None with fewer than two or a constant one)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tau = scipy_stats.kendalltau(x, y).statistic
    return None if np.isnan(tau) else float(tau)


def tau_draws(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau in each resample of items x resamples scorings (NaN where undefined)."""
    out = [kendall_tau(x[:, r], y[:, r]) for r in range(x.shape[1])]
    return np.array([np.nan if t is None else t for t in out])


def order(names: Sequence[str], scores: Sequence[float]) -> list[str]:
    """Names best first (ties in the given order)."""
    return [names[i] for i in sorted(range(len(names)), key=lambda i: -scores[i])]


def ranks(scores: Sequence[float]) -> list[int]:
    """Each score's rank, 1 best, equal scores sharing the better rank (1, 1, 3)."""
    return [1 + int(sum(other > score for other in scores)) for score in scores]
