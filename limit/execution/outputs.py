"""What steps write for other steps to read, typed like their inputs: one reader turns a malformed file into
one line naming it (a hand-edited or truncated output never becomes a KeyError deep in a step)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from limit.errors import LimitError
from limit.spec.loader import first_error

T = TypeVar("T", bound=BaseModel)


class Output(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # later versions may add fields


class EpochScore(Output):
    epoch: int
    average: float | None
    categories: dict[str, float | None] = {}


class Choice(Output):
    """select's `choice.json`: the chosen epoch of a finetune, and every epoch's average."""

    epoch: int
    finetune: str
    sub: str  # the finetune's folder of that epoch, "epoch-N"
    average: float | None
    tied: list[int] = []
    epochs: list[EpochScore] = []
    selection: dict | None = None  # the selection's standard error and runner-up test (limit/steps/select.py)
    split: dict | None = None  # gauntlet.selection_split: both halves, the optimism, the held-out rank


def parse(text: str, model: type[T], where: str) -> T:
    try:
        return model.model_validate_json(text)
    except ValidationError as e:
        field, message = first_error(e)
        raise LimitError(f"{where}: not a valid {model.__name__.lower()}: {field}: {message}") from None


def read(path: Path, model: type[T]) -> T:
    try:
        text = path.read_text()
    except OSError as e:
        raise LimitError(f"{path}: cannot be read: {e.strerror}") from None
    return parse(text, model, str(path))
