"""`limit check-gpu`: what a GPU node must show before a long study is trusted to it, in stages.

Each stage runs in a process of its own under its own time limit (`python -m limit.gpucheck STAGE`), so one
that hangs, crashes or runs out of memory costs only itself; the command appends each stage's result to one
JSON as soon as it ends and prints a table at the end. `--smoke --device cpu` runs every stage's plumbing on
tiny shapes, on any machine (it is part of `make test`).

The stages, in the order they run (each module's docstring says what it measures):
environment, exactness, trainer, speed, gauntlet, cuda_tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    limit_s: int  # on a GPU; the whole command keeps within its --budget-s too
    needs: tuple[str, ...] = ()  # packages beyond torch and transformers


STAGES = (
    Stage("environment", 60),
    Stage("exactness", 90),
    Stage("trainer", 180, ("deepspeed", "pydantic", "mlflow", "boto3", "datasets")),
    Stage("speed", 150),
    Stage("gauntlet", 90, ("lm_eval", "pydantic")),
    Stage("cuda_tests", 60, ("pytest", "pydantic")),
)
NAMES = tuple(stage.name for stage in STAGES)
