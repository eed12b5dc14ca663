"""`limit submit STUDY [--profile P]`: send a study's Workflow to the Argo server (Hera's WorkflowsService).

The server comes from ARGO_SERVER (https://host:2746), the token from ARGO_TOKEN (`argo auth token`, with
or without its "Bearer " prefix), ARGO_INSECURE_SKIP_VERIFY=true accepts a self-signed certificate. The
study is validated and planned before anything is sent: a bad study, a missing or unreachable server or a
refused token each end in one line and a non-zero exit, with nothing submitted. The plan's totals (as
`limit plan --summary`) are printed first.
"""

from __future__ import annotations

import argparse

from limit.commands.flags import add_max_steps
from limit.commands.manifest import DEFAULT_PROFILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="a study name (see `limit studies`) or a YAML path")
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help="cluster profile: a name in workflows/profiles/ or a YAML path"
    )
    parser.add_argument(
        "--template", action="store_true", help="create the study's WorkflowTemplate instead of running it"
    )
    add_max_steps(parser)


def main(args: argparse.Namespace) -> int:
    from limit.backends.argo import submit
    from limit.backends.profile import load_profile
    from limit.commands.plan import print_summary
    from limit.plan import build_plan
    from limit.spec.study import load_study, resolve_study_path

    profile = load_profile(args.profile)  # the plan is sized for the profile's GPUs, as `limit manifest` does
    origin = str(resolve_study_path(args.study))
    plan = build_plan(load_study(args.study), origin=origin, gpu=profile.gpu, max_steps=args.max_steps)
    print_summary(plan, profile)
    name, link = submit(plan, profile, template=args.template)
    what = "workflow template" if args.template else "workflow"
    print(f"submitted {what} {name} (study {plan.study.name}, {len(plan.steps)} steps) in {profile.namespace}")
    if link:
        print(link)
    return 0
