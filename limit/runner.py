"""`limit step KIND --input JSON`: run one step, exactly as a pod runs it.

The runner owns what every step shares: parse the typed input, derive the key, reuse a completed output,
open the step's MLflow child run, hand the step function a `StepContext`, and write the manifest last.
A step function is plain: `def kind(inp: KindInput, ctx: StepContext) -> dict` (a small summary).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from limit import __version__
from limit.errors import LimitError
from limit.execution import progress, tracking
from limit.execution.context import StepContext
from limit.execution.leases import HANDOFF, FileLock, S3Lease
from limit.execution.lifetime import end_with_parent
from limit.execution.settings import settings
from limit.execution.store import Store
from limit.spec.loader import first_error
from limit.steps import KINDS, inputs, step_key
from limit.training import launch


def parse_input(kind: str, raw: str) -> inputs.StepInput:
    if kind not in KINDS:
        raise LimitError(f"unknown step kind '{kind}' (known: {', '.join(KINDS)})")
    try:
        return KINDS[kind].input.model_validate_json(raw)
    except ValidationError as e:
        field, message = first_error(e)
        raise LimitError(f"step {kind} --input: {field}: {message}") from None


def run_step(kind: str, raw_input: str, expected_key: str | None = None) -> dict[str, Any]:
    _interrupt_on_sigterm()
    end_with_parent()
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
        KINDS[kind].load()(inp, context(ref, out or store.begin(ref), store))
        _leave_process_group()
        return {}
    with store.lock(ref, adopt=os.environ.get(HANDOFF)) as lock:
        if store.manifest(ref) is not None:  # done by the execution we waited for
            return _reuse(store, kind, key, inp)
        out = out or store.begin(ref)  # only now: the lock holder alone writes there
        nproc = processes(inp)
        if nproc and "LOCAL_RANK" not in os.environ:
            relaunch_under_torchrun(kind, inp, nproc, out, lock.handoff())
        summary = _run(kind, key, inp, context(ref, out, store), lock)
    _leave_process_group()
    return summary


def context(ref: str, out: Path, store: Store) -> StepContext:
    """The step's identity, with the study execution it runs under as the environment says once."""
    return StepContext(ref=ref, out=out, store=store, study=settings().study, parent_run_id=settings().parent_run_id)


def _reuse(store: Store, kind: str, key: str, inp: inputs.StepInput) -> dict[str, Any]:
    """A complete step's summary; under a study execution (LIMIT_PARENT_RUN_ID, as on Argo) a reused child
    run carrying what the producing run held, so every execution's parent run is whole."""
    ref = f"{kind}/{key}"
    print(f"[{ref}] complete already: reusing {store.url(ref)}", file=sys.stderr)
    manifest = store.manifest(ref)
    parent = settings().parent_run_id
    if parent:
        saved = tracking.load_record(store.read_text(ref, tracking.RECORD))
        study = settings().study
        tracking.log_reused(parent, study, kind, key, inp.tags, manifest, saved, lambda: store.fetch(ref))
    _publish_summary(manifest["summary"])
    return manifest["summary"]


def _run(kind: str, key: str, inp: inputs.StepInput, ctx: StepContext, lock: FileLock | S3Lease) -> dict[str, Any]:
    """The step function in its MLflow child run, then the manifest, written last."""
    started = time.time()
    attempt = Attempt(ctx.store, ctx.ref)
    with attempt, tracking.step_run(kind, key, inp.tags, output=ctx.store.url(ctx.ref)):
        try:
            summary = KINDS[kind].load()(inp, ctx) or {}
        except BaseException:
            with contextlib.suppress(Exception):  # what was already persisting is what a retry resumes from
                ctx.store.wait()
            raise
        tracking.log_summary(summary)
        (ctx.out / tracking.RECORD).write_text(json.dumps(tracking.record()))
    manifest = {
        "kind": kind,
        "key": key,
        "code_version": KINDS[kind].version,
        "input": inp.model_dump(mode="json"),
        "summary": summary,
        "started": started,
        "seconds": round(time.time() - started, 3),
        "parent_run": ctx.parent_run_id,  # the study execution that made it
    }
    lock.check()
    ctx.store.commit(ctx.ref, ctx.out, manifest)
    attempt.finish("done")
    _publish_summary(summary)
    print(f"[{ctx.ref}] done in {manifest['seconds']:.1f}s -> {ctx.store.url(ctx.ref)}", file=sys.stderr)
    return summary


def processes(inp: inputs.StepInput) -> int:
    """GPU processes (or CPU processes standing in for GPUs) a step trains with under torchrun (0: runs in
    this process).

    Every GPU finetune is launched alike, one GPU included: without torchrun's environment DeepSpeed would
    discover its world through MPI (`mpi4py`), which the image does not have.
    """
    train = getattr(inp, "train", None)
    return train.ranks if train is not None else 0


def relaunch_under_torchrun(kind: str, inp: inputs.StepInput, nproc: int, out: Path, handoff: dict[str, str]) -> None:
    """Replace this process by `torchrun` running the same step once per GPU, sharing `out`; `handoff` is
    what rank 0 needs to go on holding the step's lock."""
    argv = launch.command(nproc, ["-m", "limit.cli", "step", kind, "--input", inp.model_dump_json()])
    env = {**os.environ, **handoff, "LIMIT_STEP_OUT": str(out)}
    if inp.train.cpu_processes:
        env |= launch.cpu_environment(nproc)
    where = "CPU processes" if inp.train.cpu_processes else "processes"
    print(f"[{kind}] relaunching as {nproc} {where} under torchrun", file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)


def _leave_process_group() -> None:
    """Torchrun ranks leave their process group together once the step succeeded (rank 0 after its commit).
    One that exits with the group alive, or while a peer still uses it, can abort (SIGABRT) as the interpreter
    tears down under gloo's threads, failing a step that had finished; a rank other than 0 has nothing left
    to write, so it ends there without the interpreter's teardown."""
    if "LOCAL_RANK" not in os.environ:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _publish_summary(summary: dict[str, Any]) -> None:
    """Where a pod's output parameters are read from (Argo sets LIMIT_OUTPUTS_DIR)."""
    outputs = os.environ.get("LIMIT_OUTPUTS_DIR")
    if outputs:
        Path(outputs).mkdir(parents=True, exist_ok=True)
        (Path(outputs) / "summary.json").write_text(json.dumps(summary, sort_keys=True))


def _interrupt_on_sigterm() -> None:
    """SIGTERM (the local backend stopping, a pod deleted) unwinds like Ctrl-C: the step's MLflow run ends
    KILLED, its attempt is recorded as killed, and what was persisting finishes first."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


class Attempt:
    """The step's latest attempt in the store, for `limit status`: running (a heartbeat every HEARTBEAT_S
    seconds, with the latest progress line), then done, failed (with the error's last lines) or killed."""

    HEARTBEAT_S = settings().heartbeat_s

    def __init__(self, store: Store, ref: str):
        self.store, self.ref = store, ref
        self.record: dict[str, Any] = {"state": "running", "host": socket.gethostname(), "pid": os.getpid()}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> Attempt:
        self.record["started"] = time.time()
        progress.listen(self._progress)
        self._write()
        threading.Thread(target=self._beat, name="limit-heartbeat", daemon=True).start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            return
        lines = "".join(traceback.format_exception(exc_type, exc, tb)).splitlines()
        self.finish("killed" if issubclass(exc_type, KeyboardInterrupt) else "failed", lines[-15:])

    def finish(self, state: str, tail: list[str] | None = None) -> None:
        self._stop.set()
        progress.unlisten(self._progress)
        self.record.update(state=state, ended=time.time(), **({"tail": tail} if tail else {}))
        with contextlib.suppress(Exception):  # the record is for humans; never fail a step over it
            self._write()

    def _progress(self, fields: dict) -> None:
        self.record["probe" if fields.get("what") == "probe" else "progress"] = fields

    def _beat(self) -> None:
        while not self._stop.wait(self.HEARTBEAT_S):
            with contextlib.suppress(Exception):
                self._write()

    def _write(self) -> None:
        with self._lock:
            self.record["heartbeat"] = time.time()
            self.store.write_attempt(self.ref, dict(self.record))
