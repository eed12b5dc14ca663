"""The LIMIT authors' released GPT-4 judgments (`../shared/limit_release/`, format in its SOURCE.md).

Files are `{7b,30b}_models/{lima,instruct}_prompts/[instructv3_]<size>_lima_vs_<size>_<B>_seed<N>.json`, each a
list of rows {instruction, output_1 (the LIMA model, A), output_2 (B), preference, price_per_example, ...}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from limit.errors import LimitError
from limit.judge.winrate import Judgment

FILE_NAME = re.compile(r"^(?:instructv3_)?(?P<size>\d+b)_lima_vs_(?P=size)_(?P<b>.+)_seed(?P<seed>\d+)\.json$")
PROMPT_SETS = {"lima_prompts": "LIMA", "instruct_prompts": "Instruct-v3"}
MODEL_NAMES = {
    "instructv1": "Instruct-v1",
    "instructv1_5k": "Instruct-v1-5k",
    "instructv1_5k_lima": "Instruct-v1-5k+LIMA",
    "instructv3": "Instruct-v3",
    "instructv3_1k": "Instruct-v3-1k",
    "instructv3_1k_lima": "Instruct-v3-1k+LIMA",
}


@dataclass
class Comparison:
    """One row of the paper's table: LIMA-finetuned model A against B on one prompt set, three seeds."""

    size: str  # "7B" or "30B"
    prompts: str  # "LIMA" or "Instruct-v3"
    b: str
    seed_files: dict[str, Path] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.size} {self.prompts}: LIMA vs {self.b}"

    def rows(self, seed: str) -> list[dict]:
        path = self.seed_files[seed]
        try:
            rows = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LimitError(f"{path}: cannot read released judgments: {e}") from None
        for i, row in enumerate(rows):
            missing = {"instruction", "output_1", "output_2", "preference"} - set(row)
            if missing:
                raise LimitError(f"{path}: row {i}: missing field {sorted(missing)[0]}")
        return rows


def judgments(rows: list[dict]) -> list[Judgment]:
    """The released rows as judgments; rows are grouped by instruction text only for the bootstrap."""
    return [
        Judgment(
            prompt_id=row["instruction"],
            preference=row["preference"],
            len_a=len(row["output_1"] or ""),
            len_b=len(row["output_2"] or ""),
        )
        for row in rows
    ]


def find_comparisons(release_dir: Path) -> list[Comparison]:
    """The comparisons in the release, in the paper's order: 7B then 30B, LIMA prompts then Instruct-v3."""
    if not release_dir.is_dir():
        raise LimitError(f"--release-dir: not a folder: {release_dir}")
    found: dict[tuple[str, str, str], Comparison] = {}
    for path in sorted(release_dir.glob("*_models/*_prompts/*.json")):
        match = FILE_NAME.match(path.name)
        if not match or path.parent.name not in PROMPT_SETS:
            continue
        size, b = match["size"].upper(), MODEL_NAMES.get(match["b"], match["b"])
        key = (size, PROMPT_SETS[path.parent.name], b)
        found.setdefault(key, Comparison(*key)).seed_files[match["seed"]] = path
    if not found:
        raise LimitError(f"--release-dir: no released judgment files under {release_dir}")

    def order(c: Comparison) -> tuple:
        names = list(MODEL_NAMES.values())
        return (list(PROMPT_SETS.values()).index(c.prompts), int(c.size[:-1]), names.index(c.b) if c.b in names else 99)

    return sorted(found.values(), key=order)


def expected_table(release_dir: Path) -> dict[tuple[str, str, str], float]:
    """The win rates SOURCE.md states, keyed like `Comparison` (size, prompts, B); empty if absent."""
    source = release_dir / "SOURCE.md"
    if not source.is_file():
        return {}
    table = {}
    for line in source.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"\d+(\.\d+)?", cells[3]):
            table[(cells[0], cells[1], cells[2])] = float(cells[3])
    return table
