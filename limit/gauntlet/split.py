"""gauntlet.selection_split: halves of each benchmark's rows, one to choose an epoch on, one to see it on.

A benchmark's halves come from a permutation of its row ids seeded by the split's seed and the benchmark's
name (so they do not depend on which other benchmarks were asked); the first ceil(n/2) rows choose. A half's
average is the gauntlet average of its rows' rescaled accuracies, macro-averaged benchmarks pooled (as the
report's row bootstrap does).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from limit.gauntlet.benchmarks import Benchmark
from limit.gauntlet.scoring import aggregate, rescale

Halves = dict[str, tuple[list[int], list[int]]]  # per benchmark: (choosing rows, held-out rows)


def halves(rows: Mapping[str, Iterable[int]], seed: int) -> Halves:
    out = {}
    for name, ids in rows.items():
        ordered = sorted(ids)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
        cut = (len(shuffled) + 1) // 2
        out[name] = (sorted(shuffled[:cut]), sorted(shuffled[cut:]))
    return out


def half_average(
    benchmarks: Sequence[Benchmark], rows: Mapping[str, Mapping[int, float]], ids: Mapping[str, list[int]]
) -> float | None:
    """The gauntlet average over the given rows of each benchmark (None where a benchmark has none)."""
    results = {
        b.name: {"score": rescale(float(np.mean([rows[b.name][i] for i in ids[b.name]])), b.random_baseline)}
        for b in benchmarks
        if ids.get(b.name)
    }
    return aggregate(benchmarks, results)["average"]
