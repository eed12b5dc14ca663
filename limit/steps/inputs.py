"""Typed inputs of every step: the contract between the plan and the step functions.

An input is everything a step needs, and nothing else: its JSON is the step's argv and its hash is the
step's output key. Upstream outputs are referenced as `Ref` strings, "<kind>/<key>", the artifact prefix of
a completed step. `tags` are descriptive (names for humans, MLflow tags) and are not hashed, so the same
work under other names is still shared.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from limit.report.inputs import ReportModel, ReportPair
from limit.spec.study import (
    ContaminationSpec,
    GauntletSpec,
    Generation,
    JudgeSpec,
    ModelSpec,
    PromptSet,
    Seed,
    Source,
    Strict,
    TrainSpec,
)

Ref = str


class StepInput(Strict):
    tags: dict[str, str] = Field(default_factory=dict)


class SubsetOf(Strict):
    of: Ref
    sample: int
    seed: int


class Decontaminate(Strict):
    of: Ref  # the prepared dataset
    check: Ref  # its contamination step: the rows it found are dropped


class PrepareInput(StepInput):
    """Exactly one of: a source to load, a seeded subset of another prepared dataset, a mix of several, another
    prepared dataset less the rows its contamination step found."""

    source: Source | None = None
    source_sha256: str | None = Field(None, description="Content hash of a local source file.")
    subset: SubsetOf | None = None
    mix: list[Ref] | None = None
    decontaminate: Decontaminate | None = None
    stats_tokenizer: ModelSpec | None = None
    template: Literal["paper", "chat"] = Field(
        "paper", description="The study's template: chat keeps conversations as messages (limit/data/chat.py)."
    )

    # template paper (the default) and no decontamination: the input, hence the key, as before these fields
    absent_when: ClassVar[dict[str, tuple]] = {"template": ("paper",), "decontaminate": (None,)}


class FinetuneInput(StepInput):
    model: ModelSpec
    data: Ref
    train: TrainSpec
    pruned_by: str | None = Field(
        None,
        description="training.keep: selected: the hash of how its epochs are scored and chosen (their gauntlet "
        "inputs). Only a plan that chooses alike shares the finetune, so no plan needs an epoch another pruned.",
    )

    absent_when: ClassVar[dict[str, tuple]] = {"pruned_by": (None,)}  # keep: all keeps the key it had


class GauntletInput(StepInput):
    """One model on the gauntlet: a base model (`model`), one epoch of a finetune (`finetune`, `epoch`), or the
    epoch a `select` step chose (`selection`)."""

    model: ModelSpec | None = None
    finetune: Ref | None = None
    epoch: int | None = None
    selection: Ref | None = None
    gauntlet: GauntletSpec
    data_sha256: str | None = Field(None, description="Content hash of local gauntlet data folders.")


class EpochScore(Strict):
    epoch: int
    gauntlet: Ref


class SelectInput(StepInput):
    finetune: Ref
    epochs: list[EpochScore]
    keep: Literal["all", "selected"] = Field("all", description="selected: delete the other epochs' weights.")
    split_seed: int | None = Field(
        None, description="gauntlet.selection_split: choose on the half of each benchmark's rows this seed draws."
    )

    absent_when: ClassVar[dict[str, tuple]] = {"split_seed": (None,)}  # the paper's selection keeps its key


class GenerateInput(StepInput):
    """Responses from a base model (`model`) or from the epoch a `select` step chose."""

    model: ModelSpec | None = None
    selection: Ref | None = None
    prompts: PromptSet
    prompts_sha256: str | None = None
    generation: Generation
    template: Literal["paper", "chat"] = Field(
        "paper", description="chat: each prompt rendered by the model's chat template, not the paper's."
    )

    absent_when: ClassVar[dict[str, tuple]] = {"template": ("paper",)}  # the paper's template keeps the key


class JudgeInput(StepInput):
    a: Ref
    b: Ref
    judge: JudgeSpec
    judge_model: ModelSpec | None = None


class CalibrateInput(StepInput):
    """The study's judge asked `pairs` released GPT-4-0613 verdicts, drawn with `seed` from `release` (a fixed
    published folder, keyed by its path like an S3 prefix)."""

    judge: JudgeSpec
    judge_model: ModelSpec | None = None
    release: str
    pairs: int
    seed: int


class ContaminationInput(StepInput):
    """One prepared dataset against the study's gauntlet benchmarks and judge prompt sets."""

    data: Ref
    gauntlet: GauntletSpec
    data_sha256: str | None = Field(None, description="Content hash of local gauntlet data folders.")
    prompts: dict[str, PromptSet]
    prompts_sha256: dict[str, str | None] = Field(default_factory=dict, description="Of local prompt files.")
    contamination: ContaminationSpec


class ReportInput(StepInput):
    study: str
    models: list[ReportModel]
    pairs: list[ReportPair]
    calibration: Ref | None = None  # the judge's calibrate step, where the study calibrates it
    bootstrap_seed: Seed = Field(0, description="The study's judge.bootstrap_seed: seeds every interval of the report.")

    # an uncalibrated study, and one with the default seed, keeps its key
    absent_when: ClassVar[dict[str, tuple]] = {"calibration": (None,), "bootstrap_seed": (0,)}
