"""Adjusted p-values over one family of comparisons: Holm (family-wise error, the default) and
Benjamini-Hochberg (false discovery rate). None (an unknown p-value) stays None and is not counted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Method = Literal["holm", "bh"]


def adjust(p_values: Sequence[float | None], method: Method = "holm") -> list[float | None]:
    """The family's adjusted p-values, in the given order."""
    known = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if not known:
        return out
    p = np.array([p_values[i] for i in known], dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    if method == "holm":  # step-down: (m - k) p_(k), made monotone from the smallest up
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    else:  # step-up: m p_(k) / k, made monotone from the largest down
        stepped = np.minimum.accumulate((m * p[order] / np.arange(1, m + 1))[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    for i, value in zip(known, adjusted, strict=True):
        out[i] = float(value)
    return out
