"""`limit plan STUDY`: the steps, their dependencies and each step's argv, then the planner's estimates.

`--summary` prints the totals only (steps by kind, GPU pods and GPU-hours, judge calls and dollars), as
`limit run` and `limit submit` do before they start.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections import Counter
from typing import TYPE_CHECKING

from limit.commands.flags import add_max_steps
from limit.plan import Plan, build_plan
from limit.spec.study import load_study, resolve_study_path

if TYPE_CHECKING:
    from limit.backends.profile import Profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="a study name (see `limit studies`) or a YAML path")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--summary", action="store_true", help="totals only: steps by kind, GPU-hours, judge calls and dollars"
    )
    parser.add_argument(
        "--profile", default="gpu", help="cluster profile whose GPUs the estimates are checked against (default gpu)"
    )
    add_max_steps(parser)


def main(args: argparse.Namespace) -> int:
    from limit.backends.profile import load_profile

    profile = load_profile(args.profile)
    origin = str(resolve_study_path(args.study))
    plan = build_plan(load_study(args.study), origin=origin, gpu=profile.gpu, max_steps=args.max_steps)
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
        return 0
    if args.summary:
        print_summary(plan, profile)
        return 0
    print(f"study {plan.study.name}: {len(plan.steps)} steps")
    for step in plan.order():
        after = f"  after: {', '.join(step.deps)}" if step.deps else ""
        print(f"\n{step.id}  [{step.ref}]{after}")
        print(f"  {shlex.join(step.argv)}")
    print_costs(plan, args.profile)
    print()
    print_summary(plan, profile)
    return 0


def print_summary(plan: Plan, profile: Profile | None) -> None:
    """The plan's totals, as `limit plan --summary`, `limit run` (no profile: not scheduled, no GPU price) and
    `limit submit` show them."""
    from limit.judge.backends import price_per_token
    from limit.plan.summary import describe, summarize

    price = price_per_token(plan.study.judge) if plan.by_kind("judge") else None
    gpu, name = plan.gpu, profile.name if profile else "default"
    note = f"at {gpu.mfu:.0%} MFU of {gpu.peak_tflops:g} TFLOP/s, {gpu.memory_tbps:g} TB/s, profile {name}"
    summary = summarize(plan, price, profile.slots if profile else None, gpu.hour_usd)
    print(f"study {plan.study.name}: {len(plan.steps)} steps")
    for line in describe(summary, note):
        print(f"  {line}")


def print_costs(plan: Plan, profile: str) -> None:
    gpu = plan.gpu
    print(
        f"\nfinetunes: peak memory per device (estimated), checked against {gpu.memory_gib:g} GiB per GPU "
        f"(profile {profile}); GPU-hours at an assumed MFU of {gpu.mfu:.0%} of {gpu.peak_tflops:g} TFLOP/s"
    )
    total = 0.0
    for step_id, cost in plan.costs.items():
        train = plan.steps[step_id].input.train
        where = f"{train.gpus} GPUs, ZeRO-{train.zero_stage}" if train.gpus else "CPU"
        if train.cpu_processes:
            where = f"{train.cpu_processes} CPU processes, ZeRO-{train.zero_stage}"
        memory = cost.memory.describe() if cost.memory else "unknown (model shape unknown)"
        if cost.gpu_hours is not None:
            total += cost.gpu_hours
            hours = f"~{cost.gpu_hours:,.1f} GPU-hours ({cost.tokens / 1e6:,.2f}M tokens x {train.epochs} epochs)"
        else:
            hours = "GPU-hours n/a" if not train.gpus else "GPU-hours unknown (no datasets.*.source.expect)"
        disk = f"; disk ~{cost.disk.gib:,.0f} GiB" if cost.disk else ""
        print(f"  {step_id}: {where}, {train.attention} attention: {memory}; {hours}{disk}")
    if total:
        print(f"  total: ~{total:,.1f} GPU-hours of finetuning")
    print_inference_costs(plan)


def print_inference_costs(plan: Plan) -> None:
    """The GPU gauntlet and generate steps, those of one kind, model and estimate on one line."""
    groups: Counter[tuple[str, str, str]] = Counter()
    for step_id, cost in plan.inference.items():
        step = plan.steps[step_id]
        if cost.gpu_hours is None:
            estimate = f"GPU-hours unknown ({cost.unknown})"
        else:
            what = "forwarded" if step.kind == "gauntlet" else "of prompts and responses"
            estimate = f"~{cost.gpu_hours:,.2f} GPU-hours, {cost.tokens / 1e6:,.1f}M tokens {what}"
        groups[(step.kind, cost.model, estimate)] += 1
    if groups:
        print("evaluation on GPUs (limit/costs.py: forward passes at the MFU; decoding bound by bandwidth):")
    for (kind, model, estimate), count in groups.items():
        print(f"  {kind} on {model}: {count} step{'s' * (count > 1)}, each {estimate}")
