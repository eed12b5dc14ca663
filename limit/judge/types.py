"""What every judge backend takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Pair = tuple[str, str, str]  # (instruction, output of A, output of B); A is output_1 before any swap


@dataclass
class Outcome:
    preference: float | None  # 1: A preferred, 2: B preferred, 1.5: tie, None: the annotation failed
    tokens: float = 0.0  # judge tokens spent (prompt + completion) on this pair
    raw: str | None = None  # the judge's answer, as shown (after any swap)
    error: str | None = None


class Judge(Protocol):
    def judge(self, pairs: Sequence[Pair], seed: int, cache: Path) -> list[Outcome]: ...

    def cost_per_token(self) -> float | None: ...
