"""The one way a judge is made from the study's `judge:` settings (the step and `limit judge-pair` alike)."""

from __future__ import annotations

from limit.errors import LimitError
from limit.judge.types import Judge
from limit.spec.study import JudgeSpec


def make_judge(spec: JudgeSpec, local_model: str | None = None) -> Judge:
    """`local_model`: the folder or hub id of the local judge's model (backend `local`)."""
    if spec.backend == "local":
        from limit.judge.local_backend import LocalJudge

        if not local_model:
            raise LimitError("judge.local_model: backend 'local' needs a judge model")
        return LocalJudge(location=local_model, annotator=spec.annotator)
    from limit.judge.openai_backend import OpenAIJudge

    return OpenAIJudge(spec)


def judge_name(spec: JudgeSpec) -> str:
    """Who judged, as the results record it."""
    return spec.model if spec.backend == "openai" else f"local:{spec.local_model}"


def price_per_token(spec: JudgeSpec) -> float | None:
    """Dollars per judge token: alpaca-eval's price for an API model (None when it does not know it), 0 for a
    local judge."""
    if spec.backend == "local":
        return 0.0
    from limit.judge.openai_backend import price_per_token as api_price

    return api_price(spec.model)
