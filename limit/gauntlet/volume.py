"""How much a gauntlet benchmark costs to score: the tokens the packed scorer forwards, before any model runs.

The planner has no tokenizer (the hubs are not reachable at plan time), so tokens are characters over
CHARS_PER_TOKEN (limit/costs.py): a planning estimate, not a count. The characters are exact. Each row's
context is built by the rules of its prompt (composer's few-shot draw and delimiters, limit/gauntlet/fewshot.py)
and counted once per document, as the packed scorer forwards it: a multiple-choice or language-modeling row
is its context once and each continuation; a schema row is each context option with the continuation. A
document longer than the scored maximum is left-truncated to it, so the table keeps the tokens under each
usual maximum.

The shipped table (volumes_v0.json, measured by `make gauntlet-volumes`, with each file's sha256) stands in
when the files are not at hand, as for `llm-foundry@<commit>` data. Four files too large for this project's
snapshot are estimated there from their upstream row counts, and say so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from limit.costs import CHARS_PER_TOKEN
from limit.execution.digests import digest
from limit.execution.locations import Location
from limit.gauntlet.benchmarks import V0, Benchmark
from limit.gauntlet.fewshot import EXAMPLE_DELIMITER, fewshot_indices, read_rows
from limit.gauntlet.tasks import ANSWER_PREFIX, REQUIRED_FIELDS

CAPS = (2048, 4096, 8192, 32768)  # scored maxima the table keeps totals under; beyond the last, uncapped
TABLE = Path(__file__).with_name("volumes_v0.json")
SHIPPED_SEED = 1234  # the gauntlet's default seed, which draws the table's few-shot examples


@dataclass(frozen=True)
class Volume:
    """A benchmark's scoring volume: its rows, the documents the scorer forwards, and their tokens under each
    maximum length in CAPS ("none": untruncated)."""

    rows: int
    documents: int
    tokens: dict[str, float]
    measured: bool = True  # False: estimated from the upstream row count (the shipped table says how)

    def scored_tokens(self, max_length: int, limit: int | None = None) -> float:
        """Tokens forwarded with documents left-truncated to `max_length` (the smallest cap at or above it,
        so an over-estimate between caps), on the first `limit` rows only where given."""
        cap = next((str(c) for c in CAPS if c >= max_length), "none")
        return self.tokens[cap] * self.share(limit)

    def share(self, limit: int | None) -> float:
        """The share of the rows scored on the first `limit` rows."""
        return min(1.0, limit / self.rows) if limit else 1.0


def row_documents(bench: Benchmark, row: dict, shots: Sequence[str]) -> list[int]:
    """The characters of each document one row becomes, its few-shot examples (`shots`) in front."""
    tail = bench.delimiter.rstrip()
    prefix = "".join(shot + EXAMPLE_DELIMITER for shot in shots)
    if bench.kind == "multiple_choice":
        context = len(prefix) + len(row["query"] + tail)
        return [context + sum(len(ANSWER_PREFIX + str(choice)) for choice in row["choices"])]
    if bench.kind == "schema":
        continuation = len(ANSWER_PREFIX + row["continuation"])
        return [len(prefix) + len(option + tail) + continuation for option in row["context_options"]]
    return [len(prefix) + len(row["context"] + tail) + len(ANSWER_PREFIX + row["continuation"])]


def shot_text(bench: Benchmark, row: dict) -> str:
    """A row as a few-shot example: its context, the delimiter, its answer (composer's rule)."""
    if bench.kind == "multiple_choice":
        return row["query"] + bench.delimiter + str(row["choices"][row["gold"]])
    if bench.kind == "schema":
        return row["context_options"][row["gold"]] + bench.delimiter + row["continuation"]
    return row["context"] + bench.delimiter + row["continuation"]


def document_chars(bench: Benchmark, rows: list[dict], seed: int) -> list[int]:
    """The characters of every document the benchmark's rows become, in row order."""
    texts = [shot_text(bench, row) for row in rows]
    shots = fewshot_indices(len(rows), bench.shots, seed)
    return [
        chars
        for row, chosen in zip(rows, shots, strict=True)
        for chars in row_documents(bench, row, [texts[i] for i in chosen])
    ]


def measure(bench: Benchmark, path: Path, seed: int) -> Volume:
    rows = read_rows(path, REQUIRED_FIELDS[bench.kind])
    documents = [math.ceil(chars / CHARS_PER_TOKEN) for chars in document_chars(bench, rows, seed)]
    tokens = {str(cap): float(sum(min(d, cap) for d in documents)) for cap in CAPS}
    return Volume(len(rows), len(documents), tokens | {"none": float(sum(documents))})


@cache
def shipped() -> dict[str, dict]:
    return json.loads(TABLE.read_text())["benchmarks"]


@cache
def _measured(bench: Benchmark, path: Path, sha256: str | None, seed: int) -> Volume:
    """One file's volume, once per process: the sha256 keys it, so an edited file is measured again."""
    return measure(bench, path, seed)


def volume(bench: Benchmark, locations: Sequence[Location], seed: int) -> Volume | None:
    """The benchmark's volume: from its file where a local location holds one the shipped table does not
    describe (another version, or another suite), else from the table; None when neither knows it."""
    entry = shipped().get(bench.name) if seed == SHIPPED_SEED else None
    path = next((loc.path / bench.file for loc in locations if loc.local and (loc.path / bench.file).is_file()), None)
    if path is not None:
        sha = digest(path)["sha256"]
        if entry is None or entry.get("sha256") != sha:
            return _measured(bench, path, sha, seed)
    if entry is None:
        return None
    return Volume(entry["rows"], entry["documents"], entry["tokens"], entry.get("sha256") is not None)


def write_table(folder: Path) -> dict[str, dict]:
    """Measure v0's files in `folder` into the shipped table; a benchmark whose file is not there keeps its
    entry (an estimate, which says how it was made)."""
    old = shipped() if TABLE.is_file() else {}
    table = {}
    for bench in V0:
        path = folder / bench.file
        if not path.is_file():
            table[bench.name] = old[bench.name]
            continue
        found = measure(bench, path, SHIPPED_SEED)
        table[bench.name] = {"rows": found.rows, "documents": found.documents, "tokens": found.tokens}
        table[bench.name]["sha256"] = digest(path)["sha256"]
    head = {"chars_per_token": CHARS_PER_TOKEN, "seed": SHIPPED_SEED, "caps": list(CAPS)}
    TABLE.write_text(json.dumps(head | {"benchmarks": table}, indent=1) + "\n")
    return table
