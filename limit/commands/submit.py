"""`limit submit STUDY [--profile P]`: send a study's Workflow to the Argo server (Hera's WorkflowsService).

The server comes from ARGO_SERVER (https://host:2746), the token from ARGO_TOKEN (`argo auth token`, with
or without its "Bearer " prefix), ARGO_INSECURE_SKIP_VERIFY=true accepts a self-signed certificate. The
study is validated and planned before anything is sent: a bad study, a missing or unreachable server or a
refused token each end in one line and a non-zero exit, with nothing submitted. The plan's totals (as
`limit plan --summary`) are printed first.
"""

from __future__ import annotations

import argparse
import os

import requests

from limit.commands.flags import add_max_steps
from limit.commands.manifest import DEFAULT_PROFILE
from limit.errors import LimitError, UnavailableError

TIMEOUT_S = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="a study name (see `limit studies`) or a YAML path")
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help="cluster profile: a name in workflows/profiles/ or a YAML path"
    )
    parser.add_argument(
        "--template", action="store_true", help="create the study's WorkflowTemplate instead of running it"
    )
    add_max_steps(parser)


class _TimeoutSession(requests.Session):
    """Hera sends requests without a timeout; an unreachable server must not hang the command."""

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT_S)
        return super().request(*args, **kwargs)


def main(args: argparse.Namespace) -> int:
    from hera.exceptions import Forbidden, HeraException, Unauthorized
    from hera.workflows import WorkflowsService

    from limit.backends.argo import build_workflow
    from limit.backends.profile import load_profile
    from limit.commands.plan import print_summary
    from limit.plan import build_plan
    from limit.spec.study import load_study, resolve_study_path

    profile = load_profile(args.profile)  # the plan is sized for the profile's GPUs, as `limit manifest` does
    origin = str(resolve_study_path(args.study))
    plan = build_plan(load_study(args.study), origin=origin, gpu=profile.gpu, max_steps=args.max_steps)
    print_summary(plan, args.profile)
    server = os.environ.get("ARGO_SERVER", "").strip()
    if not server:
        raise LimitError("ARGO_SERVER is not set: give the Argo server's URL, e.g. https://localhost:2746")
    if not server.startswith(("http://", "https://")):
        server = f"https://{server}"  # the argo CLI's ARGO_SERVER is host:port, served over TLS
    insecure = os.environ.get("ARGO_INSECURE_SKIP_VERIFY", "").lower() in ("1", "true", "yes")
    service = WorkflowsService(
        host=server,
        token=os.environ.get("ARGO_TOKEN") or None,
        namespace=profile.namespace,
        verify_ssl=not insecure,
        session=_TimeoutSession(),
    )
    workflow = build_workflow(plan, profile, template=args.template)
    workflow.workflows_service = service
    what = "workflow template" if args.template else "workflow"
    try:
        created = workflow.create()
    except requests.exceptions.SSLError:
        raise LimitError(
            f"{server}: TLS verification failed (self-signed? set ARGO_INSECURE_SKIP_VERIFY=true)"
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
        raise UnavailableError(f"cannot reach the Argo server at {server} (ARGO_SERVER): {type(e).__name__}") from None
    except requests.exceptions.RequestException as e:
        raise LimitError(f"the Argo server at {server} (ARGO_SERVER) failed: {type(e).__name__}") from None
    except Unauthorized:
        raise LimitError(
            f"{server} refused the token (401): set ARGO_TOKEN to a valid one (`argo auth token`)"
        ) from None
    except Forbidden:
        raise LimitError(
            f"{server}: the token may not create a {what} in namespace '{profile.namespace}' (403)"
        ) from None
    except HeraException as e:
        raise LimitError(f"{server} rejected the {what}: {e}") from None

    name = created.metadata.name
    link_service = WorkflowsService(host=profile.ui_url, namespace=profile.namespace) if profile.ui_url else service
    print(f"submitted {what} {name} (study {plan.study.name}, {len(plan.steps)} steps) in {profile.namespace}")
    if not args.template:
        print(link_service.get_workflow_link(name))
    return 0
