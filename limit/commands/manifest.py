"""`limit manifest STUDY [--profile P] [--out FILE] [--template]`: a study's Argo YAML, no cluster needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limit.commands.flags import add_max_steps
from limit.plan import MAX_STEPS

DEFAULT_PROFILE = "gpu"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="a study name (see `limit studies`) or a YAML path")
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help="cluster profile: a name in workflows/profiles/ or a YAML path"
    )
    parser.add_argument("--out", help="write the YAML here (default: stdout)")
    parser.add_argument(
        "--template", action="store_true", help="a WorkflowTemplate (resubmit from the Argo UI) instead"
    )
    add_max_steps(parser)


def render(study: str, profile: str, template: bool = False, max_steps: int = MAX_STEPS) -> str:
    """The manifest `limit manifest` writes and `limit submit` sends."""
    from limit.backends.argo import build_workflow
    from limit.backends.profile import load_profile
    from limit.plan import build_plan
    from limit.spec.study import load_study, resolve_study_path

    cluster = load_profile(profile)
    origin = str(resolve_study_path(study))
    plan = build_plan(load_study(study), origin=origin, gpu=cluster.gpu, max_steps=max_steps)
    return build_workflow(plan, cluster, template=template).to_yaml()


def main(args: argparse.Namespace) -> int:
    from limit.execution.io import check_output

    if args.out:
        check_output(Path(args.out), "--out")
    from limit.backends.profile import load_profile

    text = render(args.study, args.profile, template=args.template, max_steps=args.max_steps)
    if load_profile(args.profile).placeholder_image:  # after render: a refused study stays one line
        print(
            f"warning: {args.profile}: image has the placeholder digest (all zeros): set the one `PUSH=1 make image` "
            "prints before applying this manifest",
            file=sys.stderr,
        )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
