"""contamination step: how much of one prepared training dataset an evaluation set has seen.

For each gauntlet benchmark the study asks (its jsonl items, every string in a row) and each judge prompt set
(its instructions), the rows of `data.jsonl` (prompt and response) that share at least
`contamination.min_shared` 13-grams with it (limit/data/contamination.py: GPT-3's and lm-eval's rule).
Each evaluation set's 13-gram index is cached under the work folder by the content hash of what it indexes,
so studies that check against the same files build it once. Writes `contamination.json`:
{rule, n, min_shared, rows, sets: {name: {rows, share, kind}}, any: {rows, share, index: [the rows]},
missing: [benchmarks without a local file]}; logs each set's share as `contamination.<set>`, and returns the
share of rows any set has seen.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np

from limit.data.contamination import N, Words, check, index, item_text
from limit.data.prompts import load_prompts
from limit.execution.context import StepContext
from limit.execution.io import read_jsonl
from limit.gauntlet.benchmarks import suite
from limit.gauntlet.data import fetch_files
from limit.steps.inputs import ContaminationInput

RULE = "13-gram overlap, lower-cased letter and digit runs (GPT-3 appendix C; lm-eval decontamination)"


def cached_index(texts: list[str], words: Words, cache: Path) -> np.ndarray:
    """The 13-gram index of these texts, from `cache` by their content hash when an earlier step built it."""
    digest = hashlib.sha256(json.dumps([N, texts]).encode()).hexdigest()[:24]
    path = cache / f"{digest}.npy"
    if path.exists():
        return np.load(path)
    built = index(texts, words)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".partial.npy"), built)
    path.with_suffix(".partial.npy").replace(path)
    return built


def eval_sets(inp: ContaminationInput, ctx: StepContext, words: Words) -> tuple[dict, dict, list[str]]:
    """Each benchmark's and prompt set's index, what kind each is, and the benchmarks with no local file."""
    benchmarks = suite(inp.gauntlet.suite, inp.gauntlet.tasks)
    files = fetch_files(inp.gauntlet.locations, [b.file for b in benchmarks], ctx.workdir)
    cache = ctx.workdir / "contamination-index"
    sets, kinds, missing = {}, {}, []
    for bench in benchmarks:
        if bench.file not in files:
            missing.append(bench.name)
            continue
        lines = files[bench.file].read_text().split("\n")  # not splitlines: items hold U+2028
        sets[bench.name] = cached_index([item_text(json.loads(line)) for line in lines if line.strip()], words, cache)
        kinds[bench.name] = "gauntlet"
    for name, spec in inp.prompts.items():
        prompts = load_prompts(spec, cache_dir=ctx.workdir / "hf-datasets")
        sets[name] = cached_index([p.instruction for p in prompts], words, cache)
        kinds[name] = "judge prompts"
    return sets, kinds, missing


def text_of(row: dict) -> str:
    """What a training row shows the model: prompt and response, or every turn of a conversation."""
    if "messages" in row:
        return "\n".join(str(m.get("content", "")) for m in row["messages"])
    return f"{row.get('prompt', '')}\n{row.get('response', '')}"


def contamination(inp: ContaminationInput, ctx: StepContext) -> dict:
    rows = read_jsonl(ctx.fetch(inp.data) / "data.jsonl")
    texts = [text_of(row) for row in rows]
    words = Words()
    sets, kinds, missing = eval_sets(inp, ctx, words)
    table, hit = check(texts, sets, words, inp.contamination.min_shared)
    seen = table.pop("any") | {"index": np.flatnonzero(hit).tolist()}  # the rows `decontaminate` drops
    out = {
        "rule": RULE,
        "n": N,
        "min_shared": inp.contamination.min_shared,
        "rows": len(rows),
        "sets": {name: found | {"kind": kinds[name]} for name, found in table.items()},
        "any": seen,
        "missing": missing,
    }
    (ctx.out / "contamination.json").write_text(json.dumps(out, indent=2))
    mlflow.log_metrics({f"contamination.{name}": found["share"] for name, found in table.items()})
    return {"rows": len(rows), "contaminated_rows": seen["rows"], "contaminated_share": seen["share"]}
