"""Gauntlet files for the four v0 benchmarks missing from ../shared/gauntlet_data, made from public datasets.

    limit gauntlet-convert --out runs/gauntlet-converted [mmlu hellaswag squad bigbench_elementary_math_qa]

Each converter loads the hub dataset with `datasets.load_dataset` (or a local jsonl/parquet file in the
hub's schema, via `--source`) and writes `<out>/<category>/<name>.jsonl` in the gauntlet's format, so the
folder can be listed after the shared one: `data: "../shared/gauntlet_data,runs/gauntlet-converted"`.
llm-foundry's own files (`llm-foundry@be467aee1744566e46e9b993c1ff23ab01fe5c55`) remain the reference; these
layouts follow their documented schema (see ../shared/gauntlet_data/SOURCE.md) but are rebuilt here, so prompts
may differ in small details of wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from limit.errors import LimitError, UnavailableError, is_transient
from limit.execution.io import write_jsonl
from limit.gauntlet.benchmarks import V0


@dataclass(frozen=True)
class Converter:
    hub_id: str
    config: str | None
    splits: tuple[str, ...]
    row: Callable[[dict], dict]


def _mmlu(row: dict) -> dict:
    options = " ".join(f"({letter}) {text}" for letter, text in zip("ABCD", row["choices"], strict=True))
    return {
        "query": f"{row['question'].strip()}\n{options}",
        "choices": ["A", "B", "C", "D"],
        "gold": int(row["answer"]),
        "category": row["subject"],
    }


def _hellaswag_text(text: str) -> str:
    # WikiHow contexts carry markup such as "[title]" and "[step]"; drop it as the GPT-3 paper's prompts did
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(row: dict) -> dict:
    context = f"{row['ctx_a']} {row['ctx_b'].capitalize()}".strip()
    return {
        "query": _hellaswag_text(f"{row['activity_label']}: {context}"),
        "choices": [_hellaswag_text(ending) for ending in row["endings"]],
        "gold": int(row["label"]),
    }


def _squad(row: dict) -> dict:
    return {
        "context": f"Context: {row['context'].strip()}\nQuestion: {row['question'].strip()}\nAnswer:",
        "continuation": row["answers"]["text"][0],
    }


def _elementary_math_qa(row: dict) -> dict:
    scores = list(row["multiple_choice_scores"])
    if scores.count(1) != 1:
        raise LimitError(f"bigbench elementary_math_qa row {row.get('idx')}: expected exactly one correct choice")
    return {"query": row["inputs"].strip(), "choices": list(row["multiple_choice_targets"]), "gold": scores.index(1)}


CONVERTERS = {
    "mmlu": Converter("cais/mmlu", "all", ("test",), _mmlu),
    "hellaswag": Converter("Rowan/hellaswag", None, ("validation",), _hellaswag),
    "squad": Converter("rajpurkar/squad", None, ("validation",), _squad),
    "bigbench_elementary_math_qa": Converter(
        "tasksource/bigbench", "elementary_math_qa", ("train", "validation"), _elementary_math_qa
    ),
}


def _load(conv: Converter, source: str | None) -> Iterable[dict]:
    import datasets

    if source is None:
        for split in conv.splits:
            try:
                table = datasets.load_dataset(conv.hub_id, conv.config, split=split)
            except Exception as e:
                error = UnavailableError if is_transient(e) else LimitError
                raise error(f"{conv.hub_id} ({split}): cannot load: {type(e).__name__}: {str(e).strip()}") from None
            yield from table
        return
    path = Path(source)
    if not path.is_file():
        raise LimitError(f"--source: file not found: {source}")
    kind = "parquet" if path.suffix == ".parquet" else "json"
    yield from datasets.load_dataset(kind, data_files=str(path), split="train")


def convert(name: str, out_dir: Path, source: str | None = None) -> Path:
    """Write one benchmark's gauntlet file under `out_dir`; `source` is a local file in the hub schema."""
    if name not in CONVERTERS:
        raise LimitError(f"convert: no converter for '{name}' (have: {', '.join(CONVERTERS)})")
    bench = next(b for b in V0 if b.name == name)
    rows = [CONVERTERS[name].row(dict(r)) for r in _load(CONVERTERS[name], source)]
    target = Path(out_dir) / bench.file
    write_jsonl(rows, target)
    return target
