"""Step `prepare`: load and normalise a dataset, or subset / mix prepared ones, and describe it.

Writes `data.jsonl` (rows of {prompt, response, source}) and `stats.json` (row count, sha256 of
data.jsonl, token statistics under the study's `stats_tokenizer`).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from limit.data.chat import require_chat_template
from limit.data.datasets import load_source, mix, source_label, subset
from limit.errors import LimitError
from limit.execution import outputs
from limit.execution.context import StepContext
from limit.execution.io import read_jsonl, write_jsonl
from limit.execution.locations import local_path
from limit.models.base import load_tokenizer, tokenizer_location
from limit.spec.study import MAX_TOKENS
from limit.steps.inputs import PrepareInput
from limit.training.examples import IGNORE_INDEX, encode_chat

# Sequence lengths worth knowing how many rows exceed (the paper trains at 2048 and 8192).
LENGTHS = (512, 1024, 2048, 4096, 8192)


def prepare(inp: PrepareInput, ctx: StepContext) -> dict:
    dropped = 0
    if inp.source:
        check_source_unchanged(inp)
        rows, dropped = load_source(inp.source, cache_dir=ctx.workdir / "hf-datasets", template=inp.template)
        what = f"{source_label(inp.source)} ({len(rows)} rows, {dropped} multi-turn dropped)"
    elif inp.subset:
        parent = read_jsonl(ctx.fetch(inp.subset.of) / "data.jsonl")
        rows = subset(parent, inp.subset.sample, inp.subset.seed, label=inp.tags.get("dataset", inp.subset.of))
        what = f"{len(rows)} of {len(parent)} rows (seed {inp.subset.seed})"
    elif inp.mix:
        rows = mix([read_jsonl(ctx.fetch(ref) / "data.jsonl") for ref in inp.mix])
        what = f"mix of {len(inp.mix)} datasets ({len(rows)} rows)"
    elif inp.decontaminate:
        rows, removed = decontaminated(inp, ctx)
        what = f"{len(rows)} rows, {removed['rows']} dropped as contaminated"
    else:
        raise LimitError("step prepare --input: give one of source, subset, mix")
    if not rows:
        raise LimitError(f"dataset {inp.tags.get('dataset', '?')}: no rows left after normalising")

    data = ctx.out / "data.jsonl"
    write_jsonl(rows, data, sort_keys=True)
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    stats = {"rows": len(rows), "sha256": sha, "dropped_multi_turn": dropped, "sources": count_sources(rows)}
    if inp.decontaminate:
        stats["dropped_contaminated"] = removed
    if inp.stats_tokenizer:
        tokenizer = load_tokenizer(tokenizer_location(inp.stats_tokenizer, ctx.workdir), inp.stats_tokenizer.revision)
        spec = inp.stats_tokenizer
        stats["tokens"] = {"tokenizer": spec.tokenizer or spec.hf or spec.path or "tiny"} | token_stats(tokenizer, rows)
    (ctx.out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    print(f"prepare: {what} -> {data}", flush=True)

    summary = {"rows": len(rows), "sha256": sha, "dropped_multi_turn": dropped}
    if inp.decontaminate:
        summary["dropped_contaminated"] = removed
    if "tokens" in stats:
        tokens = stats["tokens"]
        summary |= {
            "prompt_tokens_mean": tokens["prompt"]["mean"],
            "response_tokens_mean": tokens["response"]["mean"],
            "total_tokens_max": tokens["total"]["max"],
            "total_tokens_p95": tokens["total"]["p95"],
        }
    return summary


def decontaminated(inp: PrepareInput, ctx: StepContext) -> tuple[list[dict], dict]:
    """The dataset less the rows its contamination step found, and how many were dropped and why (per set)."""
    rows = read_jsonl(ctx.fetch(inp.decontaminate.of) / "data.jsonl")
    found = outputs.read(ctx.fetch(inp.decontaminate.check) / "contamination.json", outputs.ContaminationCheck)
    drop = set(found.any["index"])
    why = {name: s["rows"] for name, s in found.sets.items() if s["rows"]}
    removed = {"rows": len(drop), "by": why, "rule": found.rule, "check": inp.decontaminate.check}
    return [r for i, r in enumerate(rows) if i not in drop], removed


def check_source_unchanged(inp: PrepareInput) -> None:
    """A local file must still be the one the plan hashed (the hash is part of this step's key)."""
    if not (inp.source.jsonl and inp.source_sha256):
        return
    path = local_path(inp.source.jsonl)
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != inp.source_sha256:
        raise LimitError(f"dataset {inp.source.jsonl}: source.jsonl changed since the plan was made; plan again")


def count_sources(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["source"]] = counts.get(row["source"], 0) + 1
    return dict(sorted(counts.items()))


def token_counts(tokenizer, rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prompt, response and total tokens of each row as the finetune encodes it: prompt + response + EOS; a
    conversation (template: chat) rendered by the chat template, its response the assistant's turns."""
    if rows and "messages" in rows[0]:
        require_chat_template(tokenizer, "prepare: stats_tokenizer")
        examples = [encode_chat(tokenizer, r["messages"], MAX_TOKENS) for r in rows]
        labels = [[x for x in e["labels"] if x != IGNORE_INDEX] if e else [] for e in examples]
        total = np.array([len(e["input_ids"]) if e else 0 for e in examples])
        response = np.array([len(x) for x in labels])
        return total - response, response, total
    prompt = np.array(
        [len(ids) for ids in tokenizer([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]]
    )
    response = np.array(
        [len(ids) for ids in tokenizer([r["response"] for r in rows], add_special_tokens=False)["input_ids"]]
    )
    return prompt, response, prompt + response + 1


def token_stats(tokenizer, rows: list[dict]) -> dict:
    """Prompt, response and total token counts: mean, max, percentiles, overflows."""
    prompt, response, total = token_counts(tokenizer, rows)

    def describe(counts: np.ndarray) -> dict:
        p50, p90, p95, p99 = np.percentile(counts, [50, 90, 95, 99])
        return {
            "mean": round(float(counts.mean()), 2),
            "max": int(counts.max()),
            "p50": round(float(p50), 2),
            "p90": round(float(p90), 2),
            "p95": round(float(p95), 2),
            "p99": round(float(p99), 2),
            "sum": int(counts.sum()),
        }

    return {
        "prompt": describe(prompt),
        "response": describe(response),
        "total": describe(total) | {"over": {str(n): int((total > n).sum()) for n in LENGTHS}},
    }
