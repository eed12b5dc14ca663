"""The kind e2e's waits (tests/e2e/run.sh), failing fast instead of burning the whole time budget.

    python tests/e2e/cluster.py argo-manifest --out FILE          # HEAD-check, then download Argo's release
    python tests/e2e/cluster.py rollout NAMESPACE DEPLOYMENT...   # `kubectl rollout status`, watching pods
    python tests/e2e/cluster.py workflow NAMESPACE NAME           # until Succeeded; Failed/Error end it

Every wait reads `kubectl get ... -o json` and classifies the namespace's pods: a pod that can never run
(CrashLoopBackOff, ErrImageNeverPull, an image that cannot be pulled, a pod no node can take while nothing
else runs) ends the wait with one line per pod and that pod's events, exit 1. A kubectl call that fails is
retried (the API server of a busy kind node hiccups); only several failures in a row end the wait.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# The newest Argo Workflows 4.0 release whose tag could be confirmed (v4.0.15, pinned before, could not).
ARGO_VERSION = "v4.0.10"
ARGO_MANIFEST = "https://github.com/argoproj/argo-workflows/releases/download/{version}/install.yaml"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
# Seconds a waiting reason may last before it is fatal: 0 for those that no waiting resolves.
WAITING_GRACE_S = {
    "CrashLoopBackOff": 0,
    "ErrImageNeverPull": 0,
    "InvalidImageName": 0,
    "RunContainerError": 0,
    "ErrImagePull": 300,
    "ImagePullBackOff": 300,
    "CreateContainerConfigError": 120,
    "CreateContainerError": 120,
}
UNSCHEDULABLE_GRACE_S = 300
KUBECTL_FAILURES = 6  # in a row, one poll apart


@dataclass(frozen=True)
class Problem:
    pod: str
    reason: str
    detail: str

    def line(self) -> str:
        return f"pod {self.pod}: {self.reason}: {self.detail}"


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _age_s(since: datetime | None, now: datetime) -> float:
    return (now - since).total_seconds() if since else 0.0


def _container_problems(pod: dict, now: datetime) -> list[Problem]:
    name, status = pod["metadata"]["name"], pod.get("status", {})
    found = []
    for container in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        waiting = container.get("state", {}).get("waiting") or {}
        grace = WAITING_GRACE_S.get(waiting.get("reason", ""))
        if grace is None or _age_s(_time(status.get("startTime")), now) < grace:
            continue
        last = (container.get("lastState", {}).get("terminated") or {}).get("reason")
        detail = f"container {container['name']} (restarts {container.get('restartCount', 0)}"
        detail += f", last exit {last})" if last else ")"
        found.append(Problem(name, waiting["reason"], f"{detail} {waiting.get('message', '')}".strip()))
    return found


def _unschedulable(pod: dict, now: datetime, busy: bool) -> list[Problem]:
    """A pod no node takes is fatal only once nothing else runs that could free room for it."""
    if busy:
        return []
    for cond in pod.get("status", {}).get("conditions", []):
        waited = _age_s(_time(cond.get("lastTransitionTime")), now)
        if cond.get("reason") == "Unschedulable" and waited >= UNSCHEDULABLE_GRACE_S:
            return [Problem(pod["metadata"]["name"], "Unschedulable", cond.get("message", ""))]
    return []


def pod_problems(pods: dict, now: datetime) -> list[Problem]:
    """The pods of a `kubectl get pods -o json` list that will not run, however long one waits."""
    items = pods.get("items", [])
    busy = any(p.get("status", {}).get("phase") == "Running" and WORKFLOW_LABEL in p["metadata"].get("labels", {})
               for p in items)  # fmt: skip
    found = []
    for pod in items:
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        found += _container_problems(pod, now) + _unschedulable(pod, now, busy)
    return found


def workflow_phase(workflow: dict) -> tuple[str, str]:
    """(phase, what to print): the phase ('' before the controller sets one) and a progress or reason line."""
    status = workflow.get("status", {})
    phase = status.get("phase", "")
    return phase, status.get("message") or f"{phase or 'Pending'} {status.get('progress', '')}".strip()


class Kubectl:
    """`kubectl ... -o json`, tolerating a few failed calls in a row."""

    def __init__(self, run: Callable[[list[str]], subprocess.CompletedProcess] | None = None):
        self.run = run or (lambda argv: subprocess.run(argv, capture_output=True, text=True, timeout=60))
        self.failures = 0

    def get(self, *args: str) -> dict | None:
        """The parsed output, or None after a failed call (SystemExit after too many in a row)."""
        try:
            done = self.run(["kubectl", "get", *args, "-o", "json"])
            if done.returncode == 0:
                self.failures = 0
                return json.loads(done.stdout)
            error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        except (subprocess.TimeoutExpired, ValueError) as e:
            error = str(e)
        self.failures += 1
        print(f"e2e: kubectl get {' '.join(args)} failed ({self.failures} in a row): {error}", file=sys.stderr)
        if self.failures >= KUBECTL_FAILURES:
            raise SystemExit(f"e2e: kubectl failed {self.failures} times in a row: {error}")
        return None

    def events(self, namespace: str, pod: str) -> list[str]:
        found = self.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={pod}") or {}
        events = sorted(found.get("items", []), key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return [f"  {e.get('type')} {e.get('reason')}: {e.get('message', '').strip()}" for e in events[-10:]]


def fail_on_problems(kubectl: Kubectl, namespace: str) -> None:
    pods = kubectl.get("pods", "-n", namespace)
    problems = pod_problems(pods, datetime.now(UTC)) if pods else []
    if problems:
        for problem in problems:
            print(f"e2e: {problem.line()}", file=sys.stderr)
            print("\n".join(kubectl.events(namespace, problem.pod)), file=sys.stderr)
        raise SystemExit(1)


def wait_workflow(kubectl: Kubectl, namespace: str, name: str, timeout_s: float, poll_s: float) -> int:
    deadline, phase = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        workflow = kubectl.get("workflow", name, "-n", namespace)
        if workflow is not None:
            phase, line = workflow_phase(workflow)
            print(f"{name}: {line}", flush=True)
            if phase == "Succeeded":
                return 0
            if phase in ("Failed", "Error"):
                print(f"e2e: workflow {name} {phase}: {line}", file=sys.stderr)
                return 1
        fail_on_problems(kubectl, namespace)
        time.sleep(poll_s)
    print(f"e2e: workflow {name} still '{phase}' after {timeout_s:.0f}s", file=sys.stderr)
    return 1


def wait_rollout(kubectl: Kubectl, namespace: str, deployments: list[str], timeout_s: float, poll_s: float) -> int:
    deadline, todo = time.monotonic() + timeout_s, list(deployments)
    while time.monotonic() < deadline:
        for name in list(todo):
            argv = ["kubectl", "rollout", "status", f"deploy/{name}", "-n", namespace, "--timeout=5s"]
            if kubectl.run(argv).returncode == 0:
                print(f"deploy/{name} rolled out", flush=True)
                todo.remove(name)
        if not todo:
            return 0
        fail_on_problems(kubectl, namespace)
        time.sleep(poll_s)
    print(f"e2e: not rolled out after {timeout_s:.0f}s: {', '.join(todo)}", file=sys.stderr)
    return 1


def argo_manifest(version: str, out: Path) -> int:
    """Download Argo's install manifest, after a HEAD request proves the release exists (exit 2 if not)."""
    url = ARGO_MANIFEST.format(version=version)
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60).close()
    except urllib.error.HTTPError as e:
        print(f"e2e: ARGO_VERSION={version}: no release manifest at {url} (HTTP {e.code})", file=sys.stderr)
        return 2
    except (urllib.error.URLError, TimeoutError) as e:
        print(f"e2e: cannot reach {url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 75
    with urllib.request.urlopen(url, timeout=300) as response:
        out.write_bytes(response.read())
    print(f"Argo Workflows {version}: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    manifest = sub.add_parser("argo-manifest")
    manifest.add_argument("--version", default=os.environ.get("ARGO_VERSION") or ARGO_VERSION)
    manifest.add_argument("--out", type=Path, required=True)
    for name in ("rollout", "workflow"):
        cmd = sub.add_parser(name)
        cmd.add_argument("namespace")
        cmd.add_argument("names", nargs="+")
        cmd.add_argument("--timeout", type=float, default=600)
        cmd.add_argument("--poll", type=float, default=10)
    args = parser.parse_args(argv)
    if args.what == "argo-manifest":
        return argo_manifest(args.version, args.out)
    kubectl = Kubectl()
    if args.what == "rollout":
        return wait_rollout(kubectl, args.namespace, args.names, args.timeout, args.poll)
    return wait_workflow(kubectl, args.namespace, args.names[0], args.timeout, args.poll)


if __name__ == "__main__":
    sys.exit(main())
