"""`limit status STUDY [--artifacts ROOT] [--watch [S]]`: where a study stands, from the artifact store alone.

Every step of the plan is done (its manifest), running (its attempt record's heartbeat is recent), failed
(the attempt says so, with the last lines of its error or log), killed, lost (an attempt whose heartbeat
stopped: its process died without a word) or pending. Unfinished steps also show what they have made durable
(a finetune's finished epochs, a gauntlet's finished benchmarks, generated or judged seeds) and a running
step its latest progress. Works the same for a local run and for pods on a cluster writing to S3.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from limit.commands.flags import add_study_and_store
from limit.execution import progress
from limit.execution.settings import settings
from limit.execution.store import Store
from limit.plan import Plan, Step

STALE_S = 180.0  # an attempt whose heartbeat is older than this (or 4 heartbeats) lost its process
FAILED = ("failed", "killed", "lost")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_and_store(parser)
    parser.add_argument(
        "--watch", nargs="?", type=float, const=10.0, metavar="SECONDS", help="redraw every SECONDS (default 10)"
    )


@dataclass
class StepState:
    step: Step
    state: str  # done, running, failed, killed, lost, pending
    made: str = ""  # what an unfinished step has made durable
    detail: list[str] = field(default_factory=list)
    seconds: float = 0.0  # how long it has run: a done step's last attempt, a running one's so far


def main(args: argparse.Namespace) -> int:
    from limit.plan import build_plan
    from limit.spec.study import load_study, resolve_study_path

    workdir = Path(args.workdir) if args.workdir else settings().workdir
    plan = build_plan(load_study(args.study), origin=str(resolve_study_path(args.study)))
    store = Store.open(root=args.artifacts, workdir=workdir)
    while True:
        states = [state_of(step, store, time.time()) for step in plan.order()]
        text = "\n".join(render(plan, store, states))
        if args.watch is None:
            print(text)
            return 0
        print("\033[2J\033[H" + text + f"\n\n(every {args.watch:g}s; Ctrl-C to stop)", flush=True)
        if all(s.state == "done" for s in states):
            return 0
        time.sleep(args.watch)


def state_of(step: Step, store: Store, now: float) -> StepState:
    manifest = store.manifest(step.ref)
    if manifest is not None:
        return StepState(step, "done", seconds=float(manifest.get("seconds", 0.0)))
    attempt = store.attempt(step.ref) or {}
    made = durable(step, store.partial_files(step.ref))
    state = attempt.get("state", "pending")
    if state == "done":  # the record outlived a manifest that is gone (outputs deleted by hand)
        state = "pending"
    detail = []
    if state == "running":
        age = now - attempt.get("heartbeat", 0)
        if age > max(STALE_S, 4 * settings().heartbeat_s):
            state = "lost"
            detail.append(f"no heartbeat for {progress.duration(age)} from {_where(attempt)}: its process died")
        else:
            record = attempt.get("progress")
            words = progress.describe(record) if record else "started, no progress line yet"
            detail.append(f"{words} ({_where(attempt)}, up {progress.duration(now - attempt.get('started', now))})")
            if attempt.get("probe"):
                detail.append(progress.describe(attempt["probe"]))
    elif state in ("failed", "killed"):
        detail.append(f"{state} {progress.duration(now - attempt.get('ended', now))} ago on {_where(attempt)}")
        detail += [f"| {line}" for line in attempt.get("tail", [])]
    seconds = now - attempt.get("started", now) if state == "running" else 0.0
    return StepState(step, state, made, detail, seconds)


def _where(attempt: dict) -> str:
    return f"{attempt.get('host', '?')} pid {attempt.get('pid', '?')}"


def durable(step: Step, files: list[str]) -> str:
    """What an unfinished step has made durable so far, in its own terms."""
    if not files:
        return ""
    if step.kind == "finetune":
        epochs = {m.group(1) for f in files if (m := re.fullmatch(r"epoch-(\d+)/config\.json", f))}
        return f"epochs {len(epochs)}/{step.input.train.epochs} finished"
    if step.kind == "gauntlet":
        from limit.gauntlet.benchmarks import suite

        done = [f for f in files if re.fullmatch(r"details/[^/]+\.json", f)]
        return f"benchmarks {len(done)}/{len(suite(step.input.gauntlet.suite, step.input.gauntlet.tasks))} finished"
    if step.kind in ("generate", "judge"):
        folder = "seeds" if step.kind == "generate" else "cache"
        done = [f for f in files if re.fullmatch(rf"{folder}/seed-[^/]+\.jsonl?", f)]
        return f"seeds {len(done)} {'generated' if step.kind == 'generate' else 'judged'}" if done else ""
    return ""


def render(plan: Plan, store: Store, states: list[StepState]) -> list[str]:
    counts = {name: sum(s.state == name for s in states) for name in ("done", "running", "pending")}
    failed = sum(s.state in FAILED for s in states)
    head = f"study {plan.study.name} ({store.root}): {len(states)} steps: " + ", ".join(
        [f"{counts['done']} done", f"{counts['running']} running", f"{counts['pending']} pending", f"{failed} failed"]
    )
    lines = [head, *gpu_hours_line(plan, states)]
    width = max(len(s.step.id) for s in states)
    for s in states:
        made = f"  [{s.made}]" if s.made and s.state != "done" else ""
        lines.append(f"  {s.state:8} {s.step.id:{width}}{made}{spent(plan, s)}".rstrip())
        lines += [f"  {'':8} {'':{width}}  {line}" for line in s.detail]
    return lines


def spent(plan: Plan, s: StepState) -> str:
    """A GPU step's GPU-hours so far beside the planner's estimate for it."""
    if not s.step.resources.gpus or not s.seconds:
        return ""
    planned = plan.gpu_hours(s.step.id)
    used = s.seconds * s.step.resources.gpus / 3600
    return f"  {used:,.2f} GPU-h" + (f" (planned ~{planned:,.2f})" if planned else "")


def gpu_hours_line(plan: Plan, states: list[StepState]) -> list[str]:
    """GPU-hours spent (done steps' last attempts and running steps so far) against the plan's."""
    gpu = [s for s in states if s.step.resources.gpus]
    if not gpu:
        return []
    used = sum(s.seconds * s.step.resources.gpus for s in gpu) / 3600
    started = [s for s in gpu if s.seconds]
    planned = [plan.gpu_hours(s.step.id) for s in started]
    total = [plan.gpu_hours(s.step.id) for s in gpu]
    them = f" (planned ~{sum(planned):,.1f} for them)" if None not in planned and started else ""
    whole = f"; planned ~{sum(total):,.1f} in all" if None not in total else "; the plan's total unknown"
    return [f"GPU-hours: spent {used:,.1f} in {len(started)} of {len(gpu)} GPU steps{them}{whole}"]
