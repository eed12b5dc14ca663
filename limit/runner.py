"""`limit step KIND --input JSON`: run one step, exactly as a pod runs it.

The runner owns what every step shares: parse the typed input, derive the key, reuse a completed output,
open the step's MLflow child run, hand the step function a `StepContext`, and write the manifest last.
A step function is plain: `def kind(inp: KindInput, ctx: StepContext) -> dict` (a small summary).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from limit import __version__, tracking
from limit.errors import LimitError
from limit.leases import HANDOFF, FileLock, S3Lease
from limit.steps import KINDS, inputs, step_key
from limit.steps.context import StepContext
from limit.store import Store
from limit.yaml_models import first_error


def parse_input(kind: str, raw: str) -> inputs.StepInput:
    if kind not in KINDS:
        raise LimitError(f"unknown step kind '{kind}' (known: {', '.join(KINDS)})")
    try:
        return KINDS[kind].input.model_validate_json(raw)
    except ValidationError as e:
        field, message = first_error(e)
        raise LimitError(f"step {kind} --input: {field}: {message}") from None


def run_step(kind: str, raw_input: str, expected_key: str | None = None) -> dict[str, Any]:
    inp = parse_input(kind, raw_input)
    key = step_key(kind, inp)
    if expected_key and key != expected_key:
        raise LimitError(
            f"step {kind}: the plan expects output key {expected_key}, this code (limit {__version__}) computes "
            f"{key}: the image and the planning client differ; use one version for both"
        )
    ref = f"{kind}/{key}"
    store = Store.open()
    if store.manifest(ref) is not None:
        return _reuse(store, kind, key, inp)
    out = Path(os.environ["LIMIT_STEP_OUT"]) if "LIMIT_STEP_OUT" in os.environ else None
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun workers: rank 0 holds the lock, tracks and commits
        KINDS[kind].load()(inp, StepContext(ref=ref, out=out or store.begin(ref), store=store))
        return {}
    with store.lock(ref, adopt=os.environ.get(HANDOFF)) as lock:
        if store.manifest(ref) is not None:  # done by the execution we waited for
            return _reuse(store, kind, key, inp)
        out = out or store.begin(ref)  # only now: the lock holder alone writes there
        nproc = processes(inp)
        if nproc and "LOCAL_RANK" not in os.environ:
            relaunch_under_torchrun(kind, inp, nproc, out, lock.handoff())
        return _run(kind, key, inp, StepContext(ref=ref, out=out, store=store), lock)


def _reuse(store: Store, kind: str, key: str, inp: inputs.StepInput) -> dict[str, Any]:
    """A complete step's summary; under a study execution, a reused child run, so its parent run is whole."""
    ref = f"{kind}/{key}"
    print(f"[{ref}] complete already: reusing {store.url(ref)}", file=sys.stderr)
    manifest = store.manifest(ref)
    parent = os.environ.get("LIMIT_PARENT_RUN_ID")
    if parent:
        tracking.log_reused(parent, os.environ.get("LIMIT_STUDY", "adhoc"), kind, key, inp.tags, manifest)
    _publish_summary(manifest["summary"])
    return manifest["summary"]


def _run(kind: str, key: str, inp: inputs.StepInput, ctx: StepContext, lock: FileLock | S3Lease) -> dict[str, Any]:
    """The step function in its MLflow child run, then the manifest, written last."""
    started = time.time()
    with tracking.step_run(kind, key, inp.tags, output=ctx.store.url(ctx.ref)):
        try:
            summary = KINDS[kind].load()(inp, ctx) or {}
        except BaseException:
            with contextlib.suppress(Exception):  # what was already persisting is what a retry resumes from
                ctx.store.wait()
            raise
        tracking.log_summary(summary)
    manifest = {
        "kind": kind,
        "key": key,
        "code_version": KINDS[kind].version,
        "input": inp.model_dump(mode="json"),
        "summary": summary,
        "started": started,
        "seconds": round(time.time() - started, 3),
    }
    lock.check()
    ctx.store.commit(ctx.ref, ctx.out, manifest)
    _publish_summary(summary)
    print(f"[{ctx.ref}] done in {manifest['seconds']:.1f}s -> {ctx.store.url(ctx.ref)}", file=sys.stderr)
    return summary


def processes(inp: inputs.StepInput) -> int:
    """GPU processes a step trains with under torchrun (0: runs in this process).

    Every GPU finetune is launched alike, one GPU included: without torchrun's environment DeepSpeed would
    discover its world through MPI (`mpi4py`), which the image does not have.
    """
    train = getattr(inp, "train", None)
    return train.gpus if train is not None else 0


def relaunch_under_torchrun(kind: str, inp: inputs.StepInput, nproc: int, out: Path, handoff: dict[str, str]) -> None:
    """Replace this process by `torchrun` running the same step once per GPU, sharing `out`; `handoff` is
    what rank 0 needs to go on holding the step's lock."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    argv = [*torchrun, "-m", "limit.cli", "step", kind, "--input", inp.model_dump_json()]
    print(f"[{kind}] relaunching as {nproc} processes under torchrun", file=sys.stderr, flush=True)
    os.execve(argv[0], argv, {**os.environ, **handoff, "LIMIT_STEP_OUT": str(out)})


def _publish_summary(summary: dict[str, Any]) -> None:
    """Where a pod's output parameters are read from (Argo sets LIMIT_OUTPUTS_DIR)."""
    outputs = os.environ.get("LIMIT_OUTPUTS_DIR")
    if outputs:
        Path(outputs).mkdir(parents=True, exist_ok=True)
        (Path(outputs) / "summary.json").write_text(json.dumps(summary, sort_keys=True))
