"""The `openai` judge: alpaca-eval's `PairwiseAnnotator` with an explicit annotator config, through the
`openai` client, against OpenAI or any OpenAI-compatible endpoint (vLLM, the replay server).

alpaca-eval 0.6.6 needs care (each point is handled below):
- the annotator config is passed explicitly and the metric is computed by `limit.judge.winrate`, because
  alpaca-eval's defaults switch to AlpacaEval 2 behaviour;
- pairs are built by position by the caller and handed over as (instruction, output_1, output_2) rows; they
  are never merged on instruction text;
- the left/right swap is seeded by (instruction, annotator seed), so each sampling seed gets its own
  annotator seed;
- the cache ignores the seed and by default lives in site-packages and keeps failures: every
  (comparison, seed) gets its own cache file, and failures are not stored;
- `is_store_missing_annotations=False` raises AttributeError while no cache file exists yet;
- any API error other than a rate limit aborts the whole call: we retry ourselves, chunk by chunk, and a pair
  that never gets a parseable answer is reported as a failure (never a loss, never a crash).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from limit.errors import LimitError
from limit.execution import progress
from limit.judge.ranking import ranks_both
from limit.judge.types import Outcome, Pair
from limit.judge.winrate import normalize_preference
from limit.spec.study import JudgeSpec

log = logging.getLogger(__name__)


@dataclass
class OpenAIJudge:
    spec: JudgeSpec  # annotator, model, endpoint, key variable, concurrency and retries
    chunk_size: int = 32
    timeout: float = 120.0
    _failed_streak: int = field(default=0, init=False, repr=False)  # groups in a row that ended all failed

    def judge(self, pairs: Sequence[Pair], seed: int, cache: Path) -> list[Outcome]:
        """One preference per pair, in order; `cache` is this (comparison, seed)'s own cache file."""
        annotator = self._annotator(seed, cache)
        outcomes: list[Outcome | None] = [None] * len(pairs)
        with tempfile.TemporaryDirectory(prefix="limit-judge-") as tmp:
            decoding = self._decoding_kwargs(Path(tmp))
            for start in range(0, len(pairs), self.chunk_size):
                chunk = range(start, min(start + self.chunk_size, len(pairs)))
                self._judge_chunk(annotator, decoding, pairs, list(chunk), outcomes)
                done = [o for o in outcomes if o is not None]
                failures = sum(o.preference is None for o in done)
                progress.emit("judge", seed=seed, judged=len(done), total=len(pairs), failures=failures)
        return [o or Outcome(None, error="not judged") for o in outcomes]

    def cost_per_token(self) -> float | None:
        """Dollars per token when alpaca-eval knows the model's price, else None."""
        return price_per_token(self.spec.model)

    # ------------------------------------------------------------------ internals

    def _annotator(self, seed: int, cache: Path):
        cache.parent.mkdir(parents=True, exist_ok=True)
        annotator = _pairwise_annotator_class()(
            annotators_config=self.spec.annotator,
            seed=seed,
            caching_path=cache,
            is_store_missing_annotations=False,
        )
        for single in annotator.annotators.values():
            single.completions_kwargs["model_name"] = self.spec.model
        logging.getLogger().setLevel(logging.WARNING)  # alpaca-eval sets the root logger to INFO on import
        return annotator

    def _decoding_kwargs(self, tmp: Path) -> dict:
        import yaml

        key = os.environ.get(self.spec.api_key_env)
        if not key:
            if self.spec.base_url is None:
                raise LimitError(f"judge.api_key_env: environment variable {self.spec.api_key_env} is not set")
            key = "EMPTY"  # local OpenAI-compatible servers accept any key
        # alpaca-eval builds its clients from a config file; ours names only the endpoint (the key stays in memory)
        client_config = tmp / "openai_clients.yaml"
        client_config.write_text(
            yaml.safe_dump({"default": [{"base_url": self.spec.base_url}] if self.spec.base_url else [{}]})
        )
        return {
            "num_procs": self.spec.concurrency,
            "requires_chatml": True,  # the ranking prompt is ChatML, whatever the model is called
            # alpaca-eval multiplies total tokens by this: a price of 1 makes `price_per_example` the token count
            "price_per_token": 1.0,
            "sleep_time": self.spec.retry_wait,
            "client_config_path": client_config,
            "client_kwargs": {"api_key": key, "max_retries": 0, "timeout": self.timeout},  # retries are ours
        }

    def _judge_chunk(self, annotator, decoding: dict, pairs: Sequence[Pair], chunk: list[int], outcomes: list) -> None:
        """Judge `chunk` with retries.

        alpaca-eval stores nothing of a call that raised, so when a call with several pairs fails on an API
        error, the chunk is split in two and each half is judged on its own: one bad request then costs its
        own retries, not its neighbours' answers. An unreachable endpoint is not split (every request would
        fail alike), and once three groups in a row have exhausted their retries the endpoint is taken to be
        down: later groups get one attempt each, so a dead judge ends the step in minutes, all failures.
        """
        import openai

        pending, last_error = list(chunk), "unparseable judge answer"
        attempts = 1 if self._failed_streak >= 3 else self.spec.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.spec.retry_wait * min(2 ** (attempt - 1), 8))
            rows = [{"instruction": pairs[i][0], "output_1": pairs[i][1], "output_2": pairs[i][2]} for i in pending]
            try:
                annotated = annotator.annotate_pairs(rows, **decoding)
            except Exception as e:  # openai errors other than rate limits abort alpaca-eval's call
                last_error = f"{type(e).__name__}: {e}"
                log.warning("judge: %d pair(s), attempt %d: %s", len(pending), attempt + 1, last_error)
                unreachable = isinstance(e, openai.APIConnectionError)
                if len(pending) > 1 and not unreachable and self._failed_streak < 3:
                    half = len(pending) // 2
                    self._judge_chunk(annotator, decoding, pairs, pending[:half], outcomes)
                    self._judge_chunk(annotator, decoding, pairs, pending[half:], outcomes)
                    return
                continue
            found = {(r["instruction"], r["output_1"], r["output_2"]): r for r in annotated}
            still = []
            for i in pending:
                row = found.get(tuple(str(x) for x in pairs[i]))
                pref = normalize_preference(row.get("preference")) if row else None
                if pref is not None and not ranks_both(row.get("preference_raw_completion")):
                    pref, last_error = None, "the judge's answer does not rank the outputs 1 and 2"
                if pref is None:  # unparseable answer (or none): not cached, asked again
                    still.append(i)
                    continue
                tokens = row.get("preference_price_per_example")
                tokens = 0.0 if tokens is None or (isinstance(tokens, float) and math.isnan(tokens)) else tokens
                outcomes[i] = Outcome(pref, float(tokens), row.get("preference_raw_completion"))
                self._failed_streak = 0
            pending = still
            if not pending:
                return
        for i in pending:
            outcomes[i] = Outcome(None, error=last_error)
        self._failed_streak += 1


def price_per_token(model: str) -> float | None:
    """alpaca-eval's price of `model` in dollars per token, None when it does not know it. Imported quietly:
    alpaca-eval warns on import, turns the root logger up to INFO and logs a warning for an unknown model."""
    import warnings

    root = logging.getLogger().level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.decoders.openai import _get_price_per_token
    logging.getLogger().setLevel(root)
    logging.disable(logging.WARNING)
    try:
        price = _get_price_per_token(model)
    finally:
        logging.disable(logging.NOTSET)
    return float(price) if price is not None and math.isfinite(price) else None


def _pairwise_annotator_class():
    """alpaca-eval's `PairwiseAnnotator`, with the two fixes its 0.6.6 cache needs here."""
    from alpaca_eval.annotators import PairwiseAnnotator

    class CachedPairwiseAnnotator(PairwiseAnnotator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.df_annotations is None:  # no cache file yet: with failures not stored, 0.6.6 queries None
                self.df_annotations = self._empty_annotations()

        def save(self, path=None) -> None:
            """alpaca-eval writes its cache in place: a kill mid-write left a torn file; write it whole."""
            target = Path(path or self.caching_path)
            staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            super().save(staging)
            if staging.exists():
                os.replace(staging, target)

        def load_(self, path=None) -> None:
            try:
                super().load_(path)
            except ValueError:  # a cache torn before writes were whole: what it held is asked again
                print(f"judge: {path or self.caching_path}: unreadable cache, asking again", file=sys.stderr)
                self.df_annotations = None
            # pandas reads cached 1/2 preferences back as int64; alpaca-eval then writes 1.5 (identical outputs)
            # into that column, which pandas 3 refuses
            if self.df_annotations is not None and self.annotation_key in self.df_annotations:
                self.df_annotations[self.annotation_key] = self.df_annotations[self.annotation_key].astype(float)

        def _empty_annotations(self):
            import pandas as pd

            return pd.DataFrame({c: pd.Series(dtype=object) for c in self.all_keys}).assign(
                **{self.annotation_key: pd.Series(dtype=float)}
            )

    return CachedPairwiseAnnotator
