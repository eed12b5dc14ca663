"""Composer's in-context-learning prompt rules, as llm-foundry's gauntlet used them (composer ~0.17).

- Every string field of a row is stripped of surrounding whitespace.
- Few-shot examples come from the same file, never the test row itself, drawn by one `random.Random(seed)`
  that walks the rows in file order (so row i's shots depend on the draws for rows 0..i-1), in the
  iteration order of the index set composer builds.
- Each shot is `context + delimiter + answer`; shots and the test context are joined by "\n"; the test
  context ends with the delimiter stripped on the right and the answer is scored as " " + answer.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from limit.errors import LimitError
from limit.execution.io import read_text

EXAMPLE_DELIMITER = "\n"


def read_rows(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """A gauntlet jsonl file, each string field stripped (composer's `strip_data`)."""
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise LimitError(f"{path}:{n}: invalid JSON: {e.msg}") from None
        missing = [k for k in required if k not in row]
        if missing:
            raise LimitError(f"{path}:{n}: missing field {', '.join(missing)}")
        rows.append({k: v.strip() if isinstance(v, str) else v for k, v in row.items()})
    if not rows:
        raise LimitError(f"{path}: no rows")
    return rows


def _shot_set(size: int, shots: int, row: int, rng: random.Random) -> set[int]:
    shots = min(size - 1, shots)
    chosen = set(rng.sample(range(size), shots))
    if row in chosen:
        chosen.remove(row)
        if len(chosen) >= size - 1:
            return chosen
        replacement = rng.choice(range(size))
        while replacement in chosen or replacement == row:
            replacement = rng.choice(range(size))
        chosen.add(replacement)
    return chosen


def fewshot_indices(size: int, shots: int, seed: int) -> list[list[int]]:
    """For each row of a file of `size` rows, the rows used as its few-shot examples, in prompt order."""
    if shots == 0:
        return [[] for _ in range(size)]
    rng = random.Random(seed)
    return [list(_shot_set(size, shots, row, rng)) for row in range(size)]
