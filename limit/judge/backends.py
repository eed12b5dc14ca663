"""What every judge backend returns, and how the judge step and `limit judge-pair` pick one."""

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


def openai_judge(
    annotator: str,
    model: str,
    base_url: str | None,
    api_key_env: str,
    concurrency: int,
    max_retries: int,
    retry_wait: float = 2.0,
) -> Judge:
    from limit.judge.openai_backend import OpenAIJudge

    return OpenAIJudge(
        annotator=annotator,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        max_retries=max_retries,
        retry_wait=retry_wait,
    )


def local_judge(location: str, annotator: str) -> Judge:
    from limit.judge.local_backend import LocalJudge

    return LocalJudge(location=location, annotator=annotator)
