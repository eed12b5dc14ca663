"""What steps write for other steps to read, typed like their inputs: one reader turns a malformed file into
one line naming it (a hand-edited or truncated output never becomes a KeyError deep in a step)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from limit.errors import LimitError
from limit.execution.io import read_text
from limit.spec.loader import first_error

T = TypeVar("T", bound=BaseModel)


class Output(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # later versions may add fields


def _as_text(value):
    """Ids written as numbers by hand or by older steps read as the text they are compared as."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class BenchmarkScore(Output):
    category: str | None = None
    score: float | None = None  # rescaled against the benchmark's random baseline
    accuracy: float | None = None
    stderr: float | None = None  # the accuracy's (lm-eval's convention); absent from older outputs
    score_stderr: float | None = None
    n: int | None = None


class Scores(Output):
    """A gauntlet step's `scores.json`: per benchmark, per category and the average (None when incomplete)."""

    average: float | None
    categories: dict[str, float | None] = {}
    average_stderr: float | None = None  # standard errors (limit/gauntlet/scoring.py); absent from older outputs
    categories_stderr: dict[str, float | None] = {}
    benchmarks: dict[str, BenchmarkScore] = {}
    missing: list[str] = []  # benchmarks asked for that had no data
    suite: str = "v0"


class DetailRow(Output):
    row: int
    correct: bool


class Details(Output):
    """A gauntlet step's `details/<benchmark>.json`: the benchmark's result and each scored row (its
    correctness, prediction and log-likelihoods)."""

    result: dict = {}
    details: list[DetailRow]

    def correctness(self) -> dict[int, float]:
        return {d.row: float(d.correct) for d in self.details}


class Response(Output):
    """A row of generate's `responses.jsonl`."""

    prompt_id: str
    instruction: str
    output: str
    seed: int
    model: str | None = None  # the model's name in the study
    finish_reason: str | None = None
    error: str | None = None

    _ids = field_validator("prompt_id", mode="before")(_as_text)


class Annotation(Output):
    """A row of a judge step's `annotations.jsonl`: one judged pair."""

    seed: str
    prompt_id: str
    instruction: str
    output_a: str
    output_b: str
    preference: float | None
    winner: str | None
    shown_first: str | None = None  # "a" or "b": which response the judge read first
    error: str | None = None
    failed_generation: bool = False

    _ids = field_validator("seed", "prompt_id", mode="before")(_as_text)


class JudgedSeed(Output):
    wins_a: int
    wins_b: int
    ties: int
    failures: int
    win_rate_a: float | None


class JudgeResult(Output):
    """A judge step's `result.json` (limit.judge.compare.result)."""

    seeds: dict[str, JudgedSeed]
    win_rate_a: float | None
    seed_std: float | None
    ci95: list[float] | None
    lc_win_rate_a: float | None = None
    lc_reason: str | None = None
    lengths: dict[str, dict[str, float]] = {}
    cost: dict = {}
    failed_generations: int = 0
    positions: dict | None = None  # limit.judge.compare.position_check


class ContaminationCheck(Output):
    """A contamination step's `contamination.json` (limit/steps/contamination.py): per evaluation set the rows
    it has seen, and `any`: the rows some set has seen, with their `index`."""

    rule: str
    n: int
    min_shared: int
    rows: int
    sets: dict[str, dict]
    any: dict
    missing: list[str] = []


class Calibration(Output):
    """A calibrate step's `calibration.json` (limit/judge/calibration.py `agreement`): the judge against the
    released GPT-4-0613 verdicts."""

    judge: str | None = None
    pairs: int = 0
    decided: int = 0
    failures: int = 0
    agreement: float | None = None
    agreement_ci95: list[float] | None = None
    kappa: float | None = None
    kappa_ci95: list[float] | None = None
    first_position_share: float | None = None


class TrainLog(Output):
    """A finetune step's `train_log.json`: the Trainer's log history (a row per logged step and epoch)."""

    log_history: list[dict]


class ReportData(Output):
    """The report step's `report.json` (limit/report/data.py `assemble`): a row per model and per judged
    pair, as the report renders them."""

    study: str
    models: list[dict]
    pairs: list[dict]


class ScoredEpoch(Output):
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
    epochs: list[ScoredEpoch] = []
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
        text = read_text(path)
    except OSError as e:
        raise LimitError(f"{path}: cannot be read: {e.strerror}") from None
    return parse(text, model, str(path))


def parse_lines(text: str, model: type[T], where: str) -> list[T]:
    """JSON Lines, each line one `model`; a bad line is refused naming its number."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            rows.append(parse(line, model, f"{where}:{number}"))
    return rows


def read_lines(path: Path, model: type[T]) -> list[T]:
    try:
        text = read_text(path)
    except OSError as e:
        raise LimitError(f"{path}: cannot be read: {e.strerror}") from None
    return parse_lines(text, model, str(path))
