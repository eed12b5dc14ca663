"""The plan itself: steps with typed inputs and content-addressed keys, in a DAG, with the planner's estimates.

`Step.argv` is the single place a step's command line is made; the local backend runs it as a subprocess
and the Argo backend puts it in a pod, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from limit.costs import GIB, Gpu, Memory
from limit.errors import LimitError
from limit.spec.study import Resources, Study
from limit.steps import step_argv, step_key
from limit.steps.inputs import StepInput


@dataclass(frozen=True)
class Step:
    id: str
    kind: str
    input: StepInput
    deps: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)

    @cached_property
    def key(self) -> str:
        return step_key(self.kind, self.input)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.key}"

    @property
    def argv(self) -> list[str]:
        return step_argv(self.kind, self.input)


@dataclass(frozen=True)
class FinetuneCost:
    """The planner's estimates for one finetune (None where the model's shape or the data size is unknown)."""

    memory: Memory | None
    gpu_hours: float | None
    tokens: float | None  # real tokens per epoch, expected
    budget_gib: float | None  # the GPU memory it was checked against (None on CPU)
    disk: Memory | None = None  # the pod's local disk at its peak
    # The same finetune trained full and with LoRA: (GiB per device, GPU-hours) by method, planned one included.
    methods: dict[str, tuple[float, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class InferenceCost:
    """The planner's estimate for one gauntlet or generate step on a GPU (None where it cannot know)."""

    gpu_hours: float | None
    tokens: float | None  # forwarded (gauntlet) or prompt and sampled (generate)
    model: str = ""  # the base model's name in the study
    estimated: tuple[str, ...] = ()  # benchmarks whose volume is the shipped table's estimate, not a count
    unknown: str = ""  # why there is no estimate


@dataclass
class Plan:
    study: Study
    steps: dict[str, Step] = field(default_factory=dict)
    costs: dict[str, FinetuneCost] = field(default_factory=dict)
    inference: dict[str, InferenceCost] = field(default_factory=dict)  # GPU gauntlet and generate steps
    gpu: Gpu = field(default_factory=Gpu)

    def gpu_hours(self, step_id: str) -> float | None:
        """The planner's GPU-hours of a GPU step (None: no estimate)."""
        cost = self.costs.get(step_id) or self.inference.get(step_id)
        return cost.gpu_hours if cost else None

    def add(self, step: Step) -> Step:
        existing = self.steps.get(step.id)
        if existing is not None:
            if existing.key != step.key:
                raise LimitError(f"plan: two different steps named '{step.id}'")
            return existing
        self.steps[step.id] = step
        return step

    def order(self) -> list[Step]:
        """Steps in insertion order, which `build_plan` keeps topological."""
        return list(self.steps.values())

    def by_kind(self, kind: str) -> list[Step]:
        return [s for s in self.steps.values() if s.kind == kind]

    def to_json(self) -> dict:
        return {
            "study": self.study.name,
            "costs": {step_id: _cost_json(cost) for step_id, cost in self.costs.items()},
            "inference_costs": {step_id: _inference_json(cost) for step_id, cost in self.inference.items()},
            "steps": [
                {
                    "id": s.id,
                    "kind": s.kind,
                    "key": s.key,
                    "deps": list(s.deps),
                    "resources": s.resources.model_dump(),
                    "argv": s.argv,
                }
                for s in self.order()
            ],
        }


def _cost_json(cost: FinetuneCost) -> dict:
    return {
        "memory_gib": round(cost.memory.gib, 2) if cost.memory else None,
        "memory_terms_gib": {k: round(v / GIB, 3) for k, v in cost.memory.terms.items()} if cost.memory else None,
        "budget_gib": cost.budget_gib,
        "gpu_hours": round(cost.gpu_hours, 3) if cost.gpu_hours is not None else None,
        "tokens_per_epoch": cost.tokens,
        "disk_gib": round(cost.disk.gib, 1) if cost.disk else None,
    }


def _inference_json(cost: InferenceCost) -> dict:
    return {
        "gpu_hours": round(cost.gpu_hours, 3) if cost.gpu_hours is not None else None,
        "tokens": round(cost.tokens) if cost.tokens is not None else None,
        "estimated_benchmarks": list(cost.estimated),
        "unknown": cost.unknown or None,
    }
