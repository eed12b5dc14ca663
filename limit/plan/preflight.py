"""Pre-flight for a local run: what would stop a step hours in, found before any step runs.

Only steps still to run count (a finished study reruns without a judge key). Each problem is one line:
the judge's API key for an API judge, the gauntlet's files for the whole suite (fetched now where they are
remote: the steps would fetch the same into the same cache), and GPUs for steps that ask for them.
"""

from __future__ import annotations

import os
from pathlib import Path

from limit.errors import LimitError, UnavailableError
from limit.execution.store import Store
from limit.plan.dag import Plan, Step


def preflight(plan: Plan, store: Store, origin: str) -> list[str]:
    """One line per problem; an unreachable service still ends the run at once (UnavailableError, exit 75)."""
    pending = [step for step in plan.order() if store.manifest(step.ref) is None]
    problems = []
    for check in (judge_key, judge_transport, gauntlet_data, gpus):
        try:
            problems += check(pending, store.workdir, origin)
        except UnavailableError:
            raise
        except LimitError as e:
            problems.append(f"{origin}: {e}")
    return problems


def judge_key(pending: list[Step], workdir: Path, origin: str) -> list[str]:
    api = [s for s in pending if s.kind == "judge" and s.input.judge.backend == "openai"]
    missing = {s.input.judge.api_key_env for s in api if s.input.judge.base_url is None}
    missing = {name for name in missing if not os.environ.get(name)}
    return [
        f"{origin}: judge.api_key_env: {name} is not set; {len(api)} judge step(s) would call "
        f"{api[0].input.judge.model} at OpenAI (export it, or point judge.base_url at another server)"
        for name in sorted(missing)
    ]


def judge_transport(pending: list[Step], workdir: Path, origin: str) -> list[str]:
    """The judge's key goes over https, or plain http to this machine only."""
    hosts = {
        s.input.judge.plain_http_host() for s in pending if s.kind == "judge" and s.input.judge.backend == "openai"
    }
    return [
        f"{origin}: judge.base_url: plain http to {host} would send the judge's key unencrypted: use https "
        "(or a loopback address)"
        for host in sorted(h for h in hosts if h)
    ]


def gauntlet_data(pending: list[Step], workdir: Path, origin: str) -> list[str]:
    from limit.gauntlet.benchmarks import suite
    from limit.gauntlet.data import fetch_files

    problems, specs = [], {}
    for step in (s for s in pending if s.kind == "gauntlet"):
        spec = step.input.gauntlet
        specs[(spec.suite, tuple(spec.tasks or ()), spec.data)] = spec
    for spec in specs.values():
        files = [b.file for b in suite(spec.suite, spec.tasks)]
        found = fetch_files(spec.locations, files, workdir)
        missing = [name for name in files if name not in found]
        if missing:
            shown = ", ".join(Path(name).stem for name in missing[:6]) + (" ..." if len(missing) > 6 else "")
            problems.append(
                f"{origin}: gauntlet.data: {len(missing)} of the suite's {len(files)} files are not in "
                f"{spec.data} ({shown}): every average would be incomplete"
            )
    return problems


def gpus(pending: list[Step], workdir: Path, origin: str) -> list[str]:
    wanting = [s for s in pending if s.resources.gpus]
    if not wanting:
        return []
    visible = _visible_gpus()
    by_kind: dict[str, list[Step]] = {}
    for step in wanting:
        if step.resources.gpus > visible:
            by_kind.setdefault(step.kind, []).append(step)
    return [
        f"{origin}: {'training.gpus' if kind == 'finetune' else f'resources.{kind}.gpus'}: {len(steps)} {kind} "
        f"step(s) need {max(s.resources.gpus for s in steps)} GPU(s) each, {visible} visible on this machine "
        "(run it on a cluster: limit submit)"
        for kind, steps in by_kind.items()
    ]


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
