"""Gauntlet benchmarks as lm-eval tasks: config dicts over the jsonl rows, few-shot by composer's rules.

Every benchmark becomes a log-likelihood task, so lm-eval computes, per request, the summed log-likelihood
of the continuation and whether it is the greedy decode. Prompts follow composer (see `fewshot`): the
context ends with the benchmark's delimiter stripped on the right, the continuation is " " + answer, shots
are `context + delimiter + answer` joined by "\\n". lm-eval's own sampler cannot express composer's draw,
so `ComposerSampler` hands lm-eval the shots precomputed for each row (`_shots` holds their row indices).
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.samplers import ContextSampler

from limit.gauntlet.benchmarks import Benchmark
from limit.gauntlet.fewshot import EXAMPLE_DELIMITER, fewshot_indices

REQUIRED_FIELDS = {
    "multiple_choice": ("query", "choices", "gold"),
    "schema": ("context_options", "continuation", "gold"),
    "language_modeling": ("context", "continuation"),
}
ANSWER_PREFIX = " "  # composer prefixes answers with a space for GPT-style BPE tokenizers (MPT's included)


class ComposerSampler(ContextSampler):
    """Few-shot examples chosen ahead of time, per row, with composer's seeded draw."""

    def sample(self, n: int, eval_doc: dict[str, Any] | None = None, df=None, **kwargs) -> list[dict]:
        if n == 0:
            return []
        if eval_doc is None:
            raise ValueError("ComposerSampler needs the evaluated row (fewshot split must be the test split)")
        return [self.df[i] for i in eval_doc["_shots"]]


def prepare_docs(bench: Benchmark, rows: list[dict], seed: int) -> list[dict]:
    """Rows with their few-shot row indices and their position in the file."""
    shots = fewshot_indices(len(rows), bench.shots, seed)
    return [{**row, "_row": i, "_shots": shots[i]} for i, row in enumerate(rows)]


def task_config(bench: Benchmark, docs: list[dict], task_name: str | None = None) -> dict[str, Any]:
    """An lm-eval task config dict for one benchmark over its prepared rows."""
    import datasets

    def load(**_: Any) -> datasets.DatasetDict:
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})

    tail = bench.delimiter.rstrip()
    config: dict[str, Any] = {
        "task": task_name or f"gauntlet_{bench.name}",
        "custom_dataset": load,
        "test_split": "test",
        "fewshot_split": "test",
        "num_fewshot": bench.shots,
        "fewshot_delimiter": EXAMPLE_DELIMITER,
        "target_delimiter": ANSWER_PREFIX,
        "metadata": {"version": 0},
    }
    if bench.kind == "multiple_choice":
        config |= {
            "output_type": "multiple_choice",
            "doc_to_text": lambda doc: doc["query"] + tail,
            "doc_to_choice": lambda doc: list(doc["choices"]),
            "doc_to_target": lambda doc: doc["gold"],
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    elif bench.kind == "schema":
        # lm-eval's "multiple input" form: doc_to_text gives the gold index, the choices are the contexts,
        # and every context is scored with the same continuation.
        config |= {
            "output_type": "multiple_choice",
            "doc_to_text": lambda doc: doc["gold"],
            "doc_to_choice": lambda doc: [option + tail for option in doc["context_options"]],
            "doc_to_target": lambda doc: doc["continuation"],
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    else:
        # A loglikelihood request is (context, target) with no delimiter added, so the test target carries
        # the answer prefix and the shots' target does not (lm-eval adds the delimiter between shot parts).
        config |= {
            "output_type": "loglikelihood",
            "doc_to_text": lambda doc: doc["context"] + tail,
            "doc_to_target": lambda doc: ANSWER_PREFIX + doc["continuation"],
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    config["fewshot_config"] = {"sampler": ComposerSampler}
    if bench.kind == "language_modeling":
        config["fewshot_config"]["doc_to_target"] = lambda doc: doc["continuation"]
    return config
