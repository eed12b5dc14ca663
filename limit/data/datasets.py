"""Instruction datasets: load a `Source` with `datasets.load_dataset`, normalise, subset, mix.

Every dataset becomes rows of {prompt, response, source}, with the prompt in the instruction template:
- mosaicml datasets (`templated: true`) already hold the template in `prompt`: passed through as is;
- LIMA-style rows (`conversations`: a list of turns) keep single-turn rows only (exactly two turns),
  and the instruction is wrapped with the template;
- other rows with `templated: false` have their prompt wrapped.

Under the study's `template: chat`, rows are {messages, source} instead: every source's conversation as a
list of {role, content} (limit/data/chat.py), rendered later by each base tokenizer's chat template; a
templated prompt gives its instruction back as the user's message. Rows in the messages format
(`messages`, and `turns` saying whether a multi-turn row keeps every exchange or its first) become, under
the paper's template, the first exchange: its user message wrapped in the template, and the answer.

Hub ids and local JSON Lines files go through the same `load_dataset` call; the jsonl files the project
ships (`fixture:...`) are in the hub datasets' own schemas.
"""

from __future__ import annotations

import random
from pathlib import Path

from limit.data.chat import first_exchange, from_turns, parse_messages, reduce_turns
from limit.data.template import apply_template, instruction_of
from limit.errors import LimitError, UnavailableError, is_transient
from limit.execution.locations import local_path
from limit.spec.study import Source

Row = dict[str, str]


def source_label(source: Source) -> str:
    return source.hf or source.jsonl


def load_source(source: Source, cache_dir: Path | None = None, template: str = "paper") -> tuple[list[Row], int]:
    """The normalised rows of a source, and how many rows were dropped (multi-turn conversations)."""

    label = source_label(source)
    if source.jsonl and not local_path(source.jsonl).is_file():
        raise LimitError(f"dataset {label}: file not found: {local_path(source.jsonl)}")
    return normalise(load_table(source, f"dataset {label}", cache_dir), source, label, template)


def load_table(source: Source, label: str, cache_dir: Path | None = None):
    """`datasets.load_dataset` on a source; a failure is one line, retryable when the hub was unreachable."""
    import datasets

    path, kwargs = load_dataset_arguments(source)
    try:
        return datasets.load_dataset(path, **kwargs, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as e:
        message = f"{label} (split {source.split}): cannot load: {type(e).__name__}: {e}"
        raise (UnavailableError if is_transient(e) else LimitError)(message) from e


def load_dataset_arguments(source: Source) -> tuple[str, dict]:
    """What `datasets.load_dataset` gets for a source: a hub id, or a file builder over hub or local files."""
    if source.jsonl:
        return "json", {"data_files": {source.split: str(local_path(source.jsonl))}, "split": source.split}
    if source.data_files:
        files = f"hf://datasets/{source.hf}@{source.revision or 'main'}/{source.data_files}"
        suffix = source.data_files.rsplit(".", 1)[-1]
        builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}.get(suffix)
        if builder is None:
            raise LimitError(f"dataset {source.hf}: data_files: unknown file type '.{suffix}'")
        return builder, {"data_files": {source.split: files}, "split": source.split}
    return source.hf, {"name": source.name, "revision": source.revision, "split": source.split}


def normalise(table, source: Source, label: str, template: str = "paper") -> tuple[list[Row], int]:
    """Rows of {prompt, response, source} (template chat: {messages, source}); `table` is any iterable of
    dicts (a `datasets.Dataset`)."""
    conversation = source.messages or source.conversations
    needed = [conversation] if conversation else [source.prompt, source.response]
    columns = getattr(table, "column_names", None)
    for field in needed:
        if columns is not None and field not in columns:
            raise LimitError(f"dataset {label}: no field '{field}' (fields: {', '.join(columns)})")

    rows: list[Row] = []
    dropped = 0
    for index, record in enumerate(table):
        origin = record.get("source") if isinstance(record.get("source"), str) else label
        messages = conversation_of(record, source, f"dataset {label}: row {index}") if conversation else None
        if conversation and messages is None:
            dropped += 1
        elif template == "chat":
            rows.append({"messages": messages or pair_messages(record, source), "source": origin})
        elif messages is not None:
            instruction, response = first_exchange(messages)
            rows.append({"prompt": apply_template(instruction), "response": response, "source": origin})
        else:
            prompt, response = record[source.prompt], record[source.response]
            if not source.templated:
                prompt = apply_template(prompt)
            rows.append({"prompt": prompt, "response": response, "source": origin})
    return rows, dropped


def conversation_of(record: dict, source: Source, where: str) -> list[dict] | None:
    """A conversation row's messages as `turns` keeps them; None to drop the row (LIMA's rows without `turns`:
    all but single-turn ones; any row without an answered user message)."""
    if source.messages:
        return reduce_turns(parse_messages(record[source.messages], where), source.turns)
    turns = record[source.conversations]
    if source.turns is None:
        return from_turns(turns) if len(turns) == 2 else None
    return reduce_turns(from_turns(turns), source.turns)


def pair_messages(record: dict, source: Source) -> list[dict]:
    """A (prompt, response) row as a conversation: the instruction (out of the template, when templated)."""
    prompt = record[source.prompt]
    instruction = instruction_of(prompt) if source.templated else prompt
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": record[source.response]}]


def subset(rows: list[Row], sample: int, seed: int, label: str) -> list[Row]:
    """The first `sample` rows of one seeded permutation, kept in their original order.

    Subsets of one source and seed are nested: a 1k subset lies inside the 2k one, so sizes differ only in
    size. `random.Random(seed)` is the same Mersenne Twister everywhere, so a subset depends only on the rows
    and the seed, never on the machine.
    """
    if sample > len(rows):
        raise LimitError(f"dataset {label}: subset.sample: {sample} rows asked, it has {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in sorted(order[:sample])]


def mix(parts: list[list[Row]]) -> list[Row]:
    """Concatenation in the spec's order, not shuffled: the trainer shuffles every epoch anyway."""
    return [row for part in parts for row in part]
