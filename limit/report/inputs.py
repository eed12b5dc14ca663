"""What the report is given: the models to tabulate and the judged pairs, each naming the steps that scored it.

The plan builds them (the report step's input); `limit report` builds the same from a study file.
"""

from __future__ import annotations

from typing import ClassVar

from limit.spec.study import Strict


class ReportModel(Strict):
    name: str
    kind: str  # "run" or "baseline"
    model: str
    dataset: str | None = None
    selection: str | None = None  # the select step ("<kind>/<key>") of a finetune
    gauntlet: str | None = None  # the gauntlet step of a base model, or of the chosen epoch on the whole suite
    rows: int | None = None  # training rows, where the spec fixes them (a subset, a mix of subsets)
    group: str | None = None  # replicate group: runs that differ only in their training seed share it
    series: str | None = None  # size sweep: the runs of one size curve share it
    seed: int | None = None  # training seed of a replicate
    contamination: str | None = None  # its dataset's contamination step, where the study checks

    absent_when: ClassVar[dict[str, tuple]] = {"contamination": (None,)}  # unchecked studies keep their key


class ReportPair(Strict):
    a: str
    b: str
    prompts: str
    judge: str  # the judge step
