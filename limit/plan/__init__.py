"""A study spec becomes a plan: a DAG of steps, each with a typed input and a content-addressed key.

- `dag.py`: the plan and its steps (`Step.argv` is what every backend runs);
- `build.py`: the planner, piece by piece (prepare, run, baseline, generate, pair, report);
- `sizing.py`: the memory and cost planner's part (ZeRO stage, estimates, refusals, disk);
- `checks.py`: what is refused before any step runs, beyond the spec's own validation.
"""

from limit.plan.build import MAX_STEPS, build_plan
from limit.plan.dag import FinetuneCost, Plan, Step

__all__ = ["MAX_STEPS", "FinetuneCost", "Plan", "Step", "build_plan"]
