"""Contamination: which training rows share a 13-gram with an evaluation item (a gauntlet benchmark's rows,
the judge's prompts).

The rule is GPT-3's (Brown et al. 2020, appendix C) and lm-eval's decontamination: text lower-cased, split
into runs of letters and digits (punctuation and whitespace dropped), and a training row counts as
contaminated for an evaluation set when at least `min_shared` of its 13-grams occur in any of the set's items
(GPT-3 and lm-eval: one). Items shorter than 13 words give no 13-gram and so can match nothing (GPT-3 used a
shorter n for them; here they are reported as too short to check).

Fast: each word is hashed once (blake2b, stable across processes and machines), a 13-gram's hash is a
polynomial of its words' (numpy, wrapping uint64), an evaluation set is one sorted array of its 13-gram
hashes (`index`, built once per set, shareable by content); a dataset's distinct 13-grams are sorted once and
looked up in each set by binary search.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

N = 13
_WORD = re.compile(r"[a-z0-9]+")
_BASE = np.uint64(1_000_003)


class Words:
    """Each distinct word's stable 64-bit hash, computed once."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def ids(self, text: str) -> list[int]:
        known = self._ids
        out = []
        for word in _WORD.findall(text.lower()):
            found = known.get(word)
            if found is None:
                found = known[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            out.append(found)
        return out


def _rows(texts: Iterable[str], words: Words, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row's n-gram hashes, and the row each belongs to: the hashes of all rows' words laid end to end,
    computed in one pass, less the windows that straddle two rows."""
    ids: list[int] = []
    lengths: list[int] = []
    for text in texts:
        found = words.ids(text)
        ids += found
        lengths.append(len(found))
    flat = np.array(ids, dtype=np.uint64)
    count = len(flat) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    hashes = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            hashes = hashes * _BASE + flat[k : k + count]
    owner = np.repeat(np.arange(len(lengths)), lengths)
    inside = owner[:count] == owner[n - 1 :]
    return hashes[inside], owner[:count][inside]


def index(items: Iterable[str], words: Words | None = None, n: int = N) -> np.ndarray:
    """An evaluation set's n-grams: the sorted distinct hashes over all its items."""
    hashes, _ = _rows(items, words or Words(), n)
    return np.unique(hashes)


def item_text(row: Mapping[str, Any]) -> str:
    """An evaluation item as one text: every string in it (query, choices, context, continuation, ...)."""
    parts: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                collect(v)
        elif isinstance(value, list | tuple):
            for v in value:
                collect(v)

    collect(row)
    return "\n".join(parts)


def check(
    texts: Sequence[str], eval_sets: Mapping[str, np.ndarray], words: Words | None = None, min_shared: int = 1
) -> tuple[dict[str, dict[str, float | int]], np.ndarray]:
    """Per evaluation set, how many training rows are contaminated and their share (`any`: by some set), and
    per row whether some set contaminates it (what `decontaminate` would drop)."""
    hashes, owners = _rows(texts, words or Words(), N)
    distinct, inverse = np.unique(hashes, return_inverse=True)  # sorted once; each set is then a lookup
    table: dict[str, dict[str, float | int]] = {}
    hit_any = np.zeros(len(texts), dtype=bool)
    for name, eval_index in eval_sets.items():
        found = _members(distinct, eval_index)[inverse]
        hit = np.bincount(owners[found], minlength=len(texts)) >= min_shared
        hit_any |= hit
        table[name] = _share(hit)
    table["any"] = _share(hit_any)
    return table, hit_any


def _members(values: np.ndarray, sorted_index: np.ndarray) -> np.ndarray:
    """Whether each value is in the sorted index (a binary search each, no sort)."""
    if not len(sorted_index):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_index, values), len(sorted_index) - 1)
    return sorted_index[at] == values


def _share(hit: np.ndarray) -> dict[str, float | int]:
    return {"rows": int(hit.sum()), "share": float(hit.mean()) if len(hit) else 0.0}
