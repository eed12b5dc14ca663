"""The local backend: run a plan on this machine, each step a subprocess running exactly `Step.argv`.

Ready steps run in parallel while their CPU requests fit the machine; a step whose output is already
complete in the store is reused, never redone. Killing the backend leaves partial outputs that the next
run resumes from. Each step's output goes to runs/<study>/logs/<execution>/<step>.log, one folder per
`limit run` (its start time and process id), so two executions never write one log.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from limit import tracking
from limit.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE
from limit.io import write_atomic
from limit.mlflow_store import execution_tags
from limit.plan import Plan, Step
from limit.store import Store


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    parent_run_id: str = ""
    logs: str = ""  # this execution's log folder
    exit_codes: dict[str, int] = field(default_factory=dict)  # of the failed steps

    @property
    def ok(self) -> bool:
        return not (self.failed or self.skipped)

    @property
    def exit_code(self) -> int:
        """`limit run`'s: 2 if a step failed on bad input (a retry cannot help), else 75 if one failed for a
        retryable reason, else 1 for any other failure."""
        if self.ok:
            return 0
        codes = set(self.exit_codes.values())
        return next((code for code in (EXIT_BAD_INPUT, EXIT_UNAVAILABLE) if code in codes), 1)


@dataclass
class _Running:
    step: Step
    proc: subprocess.Popen
    slots: int
    started: float
    log: Path


def _slots(step: Step, capacity: int) -> int:
    return min(capacity, max(1, math.ceil(step.resources.cpu)))


def _say(message: str) -> None:
    print(message, flush=True)


def _start(plan: Plan, store: Store) -> Outcome:
    """This execution: its own log folder, and its MLflow parent run (tagged with this process)."""
    logs = store.workdir / plan.study.name / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    tags = {"limit.backend": "local", "limit.logs": str(logs), **execution_tags()}
    return Outcome(parent_run_id=tracking.start_parent(plan.study.name, tags), logs=str(logs))


def run_plan(plan: Plan, store: Store, jobs: int | None = None) -> Outcome:
    """Run every step of `plan` that is not complete yet; return what ran, was reused or failed."""
    capacity = jobs or os.cpu_count() or 1
    outcome = _start(plan, store)
    logs = Path(outcome.logs)
    env = {
        **os.environ,
        "LIMIT_PARENT_RUN_ID": outcome.parent_run_id,
        "LIMIT_STUDY": plan.study.name,
        "LIMIT_ARTIFACTS": store.root,
        "LIMIT_WORKDIR": str(store.workdir),
        "MLFLOW_TRACKING_URI": tracking.tracking_uri(),
        # `limit` in the argv resolves to this environment's entry point, as in the image.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "5"),  # one line every few seconds in logs
    }

    done: set[str] = set()
    pending: list[Step] = []
    for step in plan.order():
        manifest = store.manifest(step.ref)
        if manifest is None:
            pending.append(step)
            continue
        done.add(step.id)
        outcome.reused.append(step.id)
        tracking.log_reused(outcome.parent_run_id, plan.study.name, step.kind, step.key, step.input.tags, manifest)
        _say(f"reuse  {step.id:48} {store.url(step.ref)}")

    running: list[_Running] = []
    failed: set[str] = set()
    status = "FINISHED"
    try:
        while pending or running:
            for step in [s for s in pending if any(d in failed for d in s.deps)]:
                pending.remove(step)
                failed.add(step.id)
                outcome.skipped.append(step.id)
                _say(f"skip   {step.id:48} (an upstream step failed)")
            free = capacity - sum(r.slots for r in running)
            for step in [s for s in pending if all(d in done for d in s.deps)]:
                slots = _slots(step, capacity)
                if slots > free:
                    continue
                free -= slots
                pending.remove(step)
                log = logs / f"{step.id}.log"
                step_env = {**env, "OMP_NUM_THREADS": str(slots)}
                with log.open("w") as fh:
                    proc = subprocess.Popen(step.argv, env=step_env, stdout=fh, stderr=subprocess.STDOUT)
                running.append(_Running(step, proc, slots, time.time(), log))
                _say(f"run    {step.id:48} log: {log}")
            time.sleep(0.2)
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                seconds = time.time() - r.started
                outcome.seconds[r.step.id] = round(seconds, 2)
                if r.proc.returncode == 0 and store.manifest(r.step.ref) is not None:
                    done.add(r.step.id)
                    outcome.ran.append(r.step.id)
                    _say(f"done   {r.step.id:48} {seconds:7.1f}s")
                else:
                    failed.add(r.step.id)
                    outcome.failed.append(r.step.id)
                    outcome.exit_codes[r.step.id] = r.proc.returncode
                    _say(f"FAIL   {r.step.id:48} exit {r.proc.returncode}; last lines of {r.log}:")
                    for line in r.log.read_text(errors="replace").splitlines()[-8:]:
                        _say(f"         {line}")
    except KeyboardInterrupt:
        status = "KILLED"
        for r in running:
            r.proc.terminate()
        for r in running:
            r.proc.wait()
        raise
    finally:
        if outcome.failed or outcome.skipped:
            status = "FAILED"
        tracking.end_parent(outcome.parent_run_id, status)
    return outcome


def collect_report(plan: Plan, store: Store) -> Path | None:
    """Copy the report step's files to runs/<study>/ (where a user looks for them)."""
    report = plan.steps.get("report")
    if report is None or store.manifest(report.ref) is None:
        return None
    target = store.workdir / plan.study.name
    target.mkdir(parents=True, exist_ok=True)
    source = store.fetch(report.ref)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("_"):  # whole or absent: another run may copy it too
            write_atomic(target / path.name, path.read_bytes())
    return target
