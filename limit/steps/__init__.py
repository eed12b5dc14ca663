"""The step kinds: the one registry the planner, the runner, the command line and the tests read.

A kind is its typed input (the contract with the planner), the function that does the work (named, imported
only when the step runs: most pull torch and transformers), a code version and the resources its pods ask
for unless the study says otherwise. Adding a step kind is one entry here and one module beside this one.

A step's key hashes its kind, code version and input (tags excluded): equal work, equal key. Bump a kind's
version when its outputs change meaning: every key of that kind, and downstream, changes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from limit import __version__
from limit.spec.study import Resources
from limit.steps import inputs


@dataclass(frozen=True)
class StepKind:
    input: type[inputs.StepInput]
    function: str  # "module:function", called as function(input, StepContext) -> summary dict
    version: int
    resources: Resources

    def load(self) -> Callable:
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)


KINDS: dict[str, StepKind] = {
    # prepare 2: subsets are prefixes of one seeded permutation (nested across sizes)
    "prepare": StepKind(inputs.PrepareInput, "limit.steps.prepare:prepare", 2, Resources(cpu=1, memory="8Gi")),
    "finetune": StepKind(inputs.FinetuneInput, "limit.steps.finetune:finetune", 1, Resources(cpu=1, memory="8Gi")),
    "gauntlet": StepKind(inputs.GauntletInput, "limit.steps.gauntlet:gauntlet", 1, Resources(cpu=1, memory="8Gi")),
    "select": StepKind(inputs.SelectInput, "limit.steps.select:select", 1, Resources(cpu=0.5, memory="1Gi")),
    "generate": StepKind(inputs.GenerateInput, "limit.steps.generate:generate", 1, Resources(cpu=1, memory="8Gi")),
    "judge": StepKind(inputs.JudgeInput, "limit.steps.judge:judge", 1, Resources(cpu=1, memory="4Gi")),
    "report": StepKind(inputs.ReportInput, "limit.steps.report:report", 1, Resources(cpu=0.5, memory="2Gi")),
    "calibrate": StepKind(inputs.CalibrateInput, "limit.steps.calibrate:calibrate", 1, Resources(cpu=1, memory="4Gi")),
    "contamination": StepKind(
        inputs.ContaminationInput, "limit.steps.contamination:contamination", 1, Resources(cpu=0.5, memory="2Gi")
    ),
}


def step_key(kind: str, inp: inputs.StepInput) -> str:
    payload = {
        "kind": kind,
        "code": f"{__version__}/{KINDS[kind].version}",
        "input": inp.model_dump(mode="json", exclude={"tags"}),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StepCommand:
    """The command line that runs one step, locally and in a pod alike, in its parts.

    The input is written in full (every hyperparameter visible, no reliance on the pod's defaults) and the
    key rides along, so a pod whose code would file the output under another key refuses to run. `base`
    (see `common_base`) holds input fields, at any depth, that go to `--input-base` instead: the Argo backend
    writes them once in a template that many steps use, and each task carries only the rest, `input` (the
    pod merges the two back into the step's input).
    """

    kind: str
    key: str
    input: str
    base: str | None = None

    def argv(self, key: str | None = None, input: str | None = None) -> list[str]:
        """The argv; `key` and `input` stand in for the step's own (an Argo template's parameters)."""
        argv = ["limit", "step", self.kind, "--key", key or self.key, "--input", input or self.input]
        return [*argv, "--input-base", self.base] if self.base else argv


def step_command(kind: str, inp: inputs.StepInput, base: dict | None = None) -> StepCommand:
    key = step_key(kind, inp)
    if not base:
        return StepCommand(kind, key, inp.model_dump_json())
    return StepCommand(kind, key, compact_json(_beyond(inp.model_dump(mode="json"), base)), compact_json(base))


def step_argv(kind: str, inp: inputs.StepInput) -> list[str]:
    return step_command(kind, inp).argv()


def common_base(dumps: list[dict]) -> dict:
    """The fields every input has with one value; of an object field that differs, its common fields."""
    first, rest = dumps[0], dumps[1:]
    base = {}
    for name, value in first.items():
        others = [d.get(name, _ABSENT) for d in rest]
        if all(other == value for other in others):
            base[name] = value
        elif isinstance(value, dict) and all(isinstance(other, dict) for other in others):
            inner = common_base([value, *others])
            if inner:
                base[name] = inner
    return base


_ABSENT = object()


def _beyond(data: dict, base: dict) -> dict:
    """What `data` holds that `base` (common to it and others) does not: whole fields, or their differences."""
    return {
        name: value if name not in base else _beyond(value, base[name])
        for name, value in data.items()
        if name not in base or base[name] != value
    }


def _merge(base: dict, own: dict) -> dict:
    merged = dict(base)
    for name, value in own.items():
        both_objects = isinstance(value, dict) and isinstance(merged.get(name), dict)
        merged[name] = _merge(merged[name], value) if both_objects else value
    return merged


def merged_input(raw: str, base: str | None) -> str:
    """The input JSON a step runs with: `--input-base`'s fields with `--input`'s merged in, object by object."""
    if not base:
        return raw
    return compact_json(_merge(json.loads(base), json.loads(raw)))


def compact_json(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
