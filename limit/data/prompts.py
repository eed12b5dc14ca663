"""Judge prompt sets: what the generate step samples responses for.

A `PromptSet` names a hub dataset split (GAIR/lima test: the first turn of `conversations`;
mosaicml/instruct-v3 test: `prompt`, already templated), a local JSON Lines file (`fixture:` paths too), or
the LIMIT authors' release text file (templated prompts one after another). Each prompt keeps both forms:
the raw `instruction` the judge sees, and the templated `prompt` the model is given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from limit.costs import CHARS_PER_TOKEN
from limit.data.template import PREAMBLE, apply_template, instruction_of
from limit.errors import LimitError
from limit.execution.io import read_text
from limit.execution.locations import local_path
from limit.spec.study import PromptSet, Source


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    instruction: str
    prompt: str


def load_prompts(spec: PromptSet, cache_dir: Path | None = None) -> list[Prompt]:
    if spec.release_txt:
        texts = split_release_file(_read(spec.release_txt, "release_txt"))
        prompts = [Prompt(f"{i:04d}", instruction_of(t), t) for i, t in enumerate(texts)]
    else:
        records, label = _records(spec, cache_dir)
        prompts = [_prompt(record, i, spec, label) for i, record in enumerate(records)]
    if spec.limit is not None:
        prompts = prompts[: spec.limit]
    if not prompts:
        raise LimitError(f"prompts {spec.hf or spec.jsonl or spec.release_txt}: no prompts")
    return prompts


def split_release_file(text: str) -> list[str]:
    """The authors' file is templated prompts back to back: each starts with the template's first sentence."""
    starts = [m.start() for m in re.finditer("^" + re.escape(PREAMBLE), text, re.MULTILINE)]
    if not starts:
        raise LimitError("release_txt: no prompt starts with the instruction template")
    bounds = [*starts, len(text)]
    return [text[a:b].rstrip() + "\n" for a, b in zip(bounds, bounds[1:], strict=False)]


def _read(location: str, field: str) -> str:
    path = local_path(location)
    if not path.is_file():
        raise LimitError(f"prompts.{field}: file not found: {location}")
    return read_text(path)


def _records(spec: PromptSet, cache_dir: Path | None) -> tuple[list[dict], str]:
    """Rows through `datasets.load_dataset`, with the same arguments a training `Source` would get."""
    from limit.data.datasets import load_table

    label = f"{spec.hf} ({spec.split})" if spec.hf else spec.jsonl
    if spec.jsonl and not local_path(spec.jsonl).is_file():
        raise LimitError(f"prompts.jsonl: file not found: {spec.jsonl}")
    source = Source(hf=spec.hf, data_files=spec.data_files, jsonl=spec.jsonl, split=spec.split)
    table = load_table(source, f"prompts {label}", cache_dir)
    if spec.field not in table.column_names:
        raise LimitError(f"prompts {label}: field: no '{spec.field}' (fields: {', '.join(table.column_names)})")
    return list(table), label


def _prompt(record: dict, index: int, spec: PromptSet, label: str) -> Prompt:
    value = record[spec.field]
    if isinstance(value, list):  # a conversation: the first turn is the instruction
        if not value or not isinstance(value[0], str):
            raise LimitError(f"prompts {label}: row {index}: field '{spec.field}' has no first turn")
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise LimitError(f"prompts {label}: row {index}: field '{spec.field}' is not a non-empty string")
    prompt_id = str(record.get("id") or record.get("prompt_id") or f"{index:04d}")
    if spec.templated:
        return Prompt(prompt_id, instruction_of(value), value)
    return Prompt(prompt_id, value.strip(), apply_template(value.strip()))


def count_prompts(spec: PromptSet) -> int | None:
    """How many prompts a set holds, without loading a dataset: local files are counted, a hub split only
    through its `limit` or `expect` (None: unknown until the generate step reads it)."""
    if spec.release_txt:
        count = len(split_release_file(_read(spec.release_txt, "release_txt")))
    elif spec.jsonl:
        count = sum(1 for line in _read(spec.jsonl, "jsonl").splitlines() if line.strip())
    else:
        known = [n for n in (spec.limit, spec.expect.rows if spec.expect else None) if n is not None]
        return min(known) if known else None
    return min(count, spec.limit) if spec.limit is not None else count


def prompt_tokens(spec: PromptSet) -> float | None:
    """The mean tokens of a templated prompt, as the planner assumes them: a local file's characters over
    CHARS_PER_TOKEN, a hub split's `expect` (None: unknown)."""
    if spec.release_txt:
        texts = split_release_file(_read(spec.release_txt, "release_txt"))
    elif spec.jsonl:  # the loader's own rule for each row, without `datasets`: plan time stays light
        texts = [_prompt(record, i, spec, spec.jsonl).prompt for i, record in enumerate(_json_rows(spec))]
    else:
        return spec.expect.tokens_mean if spec.expect else None
    texts = texts[: spec.limit] if spec.limit is not None else texts
    return sum(len(t) for t in texts) / len(texts) / CHARS_PER_TOKEN if texts else None


def _json_rows(spec: PromptSet) -> list[dict]:
    """A local prompt file's rows, each an object holding the set's field."""
    rows = []
    for n, line in enumerate(_read(spec.jsonl, "jsonl").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or spec.field not in row:
            raise LimitError(f"{spec.jsonl}:{n}: not a JSON object with a '{spec.field}' field")
        rows.append(row)
    return rows
