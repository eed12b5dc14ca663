"""The local backend: run a plan on this machine, each step a process running `Step.argv`'s command, forked
warm (limit/backends/warm.py; LIMIT_WARM_STEPS=0 runs exactly `Step.argv` as a subprocess).

Ready steps run in parallel while their CPU requests fit the machine; a step whose output is already
complete in the store is reused, never redone. Each step's output goes to
runs/<study>/logs/<execution>/<step>.log, one folder per `limit run` (its start time and process id), so two
executions never write one log.

The console gets one line per step event (reuse, run, done, FAIL, skip) and, every LIMIT_HEARTBEAT_S seconds
(default 30), a heartbeat for each step running longer than that: the latest `progress:` line of its log in
words (limit/execution/progress.py). SIGTERM or SIGINT stops every step's process group (SIGTERM, then SIGKILL after
STOP_GRACE_S), ends the parent run KILLED and re-raises KeyboardInterrupt; partial outputs stay, and the
next run resumes from them. An unexpected error in this process (the store unreachable mid-run) stops the
steps alike and ends the parent run FAILED, never FINISHED: exit 75 when the cause is network trouble.
Killed outright (SIGKILL), this process leaves no step behind either: each step, and each rank of a torchrun
step, gets SIGTERM when its parent dies (limit/execution/lifetime.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

from limit.backends import warm
from limit.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, LimitError, UnavailableError, is_transient
from limit.execution import progress, tracking
from limit.execution.io import write_atomic
from limit.execution.lifetime import started_by
from limit.execution.mlflow_store import execution_tags
from limit.execution.settings import settings
from limit.execution.store import Store
from limit.plan import Plan, Step

STOP_GRACE_S = 20.0  # after SIGTERM, how long steps get to end their MLflow runs and finish uploads
TAIL_BYTES = 64 * 1024  # how much of a log's end the heartbeat reads


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
    proc: subprocess.Popen | warm.WarmProcess
    slots: int
    started: float
    log: Path


def _slots(step: Step, capacity: int) -> int:
    return min(capacity, max(1, math.ceil(step.resources.cpu)))


def _say(message: str) -> None:
    print(message, flush=True)


def heartbeat_seconds() -> float:
    return settings().heartbeat_s


def _start(plan: Plan, store: Store) -> Outcome:
    """This execution: its own log folder, and its MLflow parent run (tagged with this process)."""
    logs = store.workdir / plan.study.name / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    tags = {"limit.backend": "local", "limit.execution.logs": str(logs), **execution_tags()}
    return Outcome(parent_run_id=tracking.start_parent(plan.study.name, tags), logs=str(logs))


def run_plan(plan: Plan, store: Store, jobs: int | None = None) -> Outcome:
    """Run every step of `plan` that is not complete yet; return what ran, was reused or failed."""
    capacity = jobs or os.cpu_count() or 1
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"
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
    _say(f"MLflow parent run {outcome.parent_run_id} ({tracking.tracking_uri()})")
    run = _LocalRun(plan, store, capacity, logs, env, outcome)
    status = "FINISHED"
    try:
        with _stop_on_signals() as stop:
            run.reuse_completed()
            run.loop(stop)
    except KeyboardInterrupt:
        status = "KILLED"
        run.stop_all()
        raise
    except Exception as e:
        status = "FAILED"
        run.stop_all()
        _say(f"stopped: every step process ended; MLflow parent run {outcome.parent_run_id} FAILED")
        translated = _as_limit_error(e)
        if translated is e:
            raise
        raise translated from e
    finally:
        if status != "KILLED" and (outcome.failed or outcome.skipped):
            status = "FAILED"
        tracking.end_parent(outcome.parent_run_id, status)
        if status == "KILLED":
            _say(f"stopped: every step process ended; MLflow parent run {outcome.parent_run_id} KILLED")
    return outcome


def _as_limit_error(error: Exception) -> Exception:
    """Network trouble (S3 or MLflow unreachable) is retryable, exit 75; anything else stays what it is."""
    if isinstance(error, LimitError):
        return error
    if isinstance(error, BotoConnectionError | HTTPClientError) or is_transient(error):
        return UnavailableError(f"limit run stopped: {type(error).__name__}: {error}")
    return error


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGINT set a flag the loop checks (no exception lands between a Popen and its record);
    the loop then raises KeyboardInterrupt. Step processes run in their own sessions, so a terminal's Ctrl-C
    reaches this process only, and it stops them."""
    stop: list[int] = []
    if sys.platform == "win32" or not _main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for signum in previous:
        signal.signal(signum, lambda signum, frame: stop.append(signum))
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _LocalRun:
    def __init__(self, plan: Plan, store: Store, capacity: int, logs: Path, env: dict, outcome: Outcome):
        self.plan, self.store, self.capacity, self.logs, self.env = plan, store, capacity, logs, env
        self.outcome = outcome
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.pending: list[Step] = []
        self.running: list[_Running] = []
        self.next_beat = time.time() + heartbeat_seconds()

    def reuse_completed(self) -> None:
        for step in self.plan.order():
            manifest = self.store.manifest(step.ref)
            if manifest is None:
                self.pending.append(step)
                continue
            self.done.add(step.id)
            self.outcome.reused.append(step.id)
            saved = tracking.load_record(self.store.read_text(step.ref, tracking.RECORD))
            tracking.log_reused(
                self.outcome.parent_run_id,
                self.plan.study.name,
                step.kind,
                step.key,
                step.input.tags,
                manifest,
                saved,
                lambda ref=step.ref: self.store.fetch(ref),
            )
            _say(f"reuse  {step.id:48} {self.store.url(step.ref)}")

    def loop(self, stop: list[int]) -> None:
        while self.pending or self.running:
            if stop:
                raise KeyboardInterrupt(f"signal {stop[0]}")
            self.skip_after_failures()
            self.launch_ready()
            time.sleep(0.2)
            self.collect_finished()
            if time.time() >= self.next_beat:
                self.heartbeat()

    def skip_after_failures(self) -> None:
        for step in [s for s in self.pending if any(d in self.failed for d in s.deps)]:
            self.pending.remove(step)
            self.failed.add(step.id)
            self.outcome.skipped.append(step.id)
            _say(f"skip   {step.id:48} (an upstream step failed)")

    def launch_ready(self) -> None:
        free = self.capacity - sum(r.slots for r in self.running)
        for step in [s for s in self.pending if all(d in self.done for d in s.deps)]:
            slots = _slots(step, self.capacity)
            if slots > free:
                continue
            free -= slots
            self.pending.remove(step)
            log = self.logs / f"{step.id}.log"
            step_env = started_by({**self.env, "OMP_NUM_THREADS": str(slots)})  # no orphan if we die
            proc = warm.start(step.argv, step_env, log)
            self.running.append(_Running(step, proc, slots, time.time(), log))
            _say(f"run    {step.id:48} log: {log}")

    def collect_finished(self) -> None:
        for r in [r for r in self.running if r.proc.poll() is not None]:
            self.running.remove(r)
            seconds = time.time() - r.started
            self.outcome.seconds[r.step.id] = round(seconds, 2)
            manifest = self.store.manifest(r.step.ref) if r.proc.returncode == 0 else None
            if manifest is not None:
                self.done.add(r.step.id)
                # made by another execution, which this one waited for: reused, not ran
                waited = manifest.get("parent_run") not in (None, self.outcome.parent_run_id)
                (self.outcome.reused if waited else self.outcome.ran).append(r.step.id)
                _say(f"{'reuse' if waited else 'done':6} {r.step.id:48} {seconds:7.1f}s")
                continue
            self.failed.add(r.step.id)
            self.outcome.failed.append(r.step.id)
            self.outcome.exit_codes[r.step.id] = r.proc.returncode
            tail = r.log.read_text(errors="replace").splitlines()[-8:]
            _say(f"FAIL   {r.step.id:48} exit {r.proc.returncode}; last lines of {r.log}:")
            for line in tail:
                _say(f"         {line}")
            self._record_failure(r, tail)

    def _record_failure(self, r: _Running, tail: list[str]) -> None:
        """The log's tail in the attempt record too, for `limit status` (a step killed hard wrote none)."""
        attempt = self.store.attempt(r.step.ref) or {}
        if attempt.get("state") != "running":
            return
        with contextlib.suppress(Exception):
            self.store.write_attempt(r.step.ref, {**attempt, "state": "failed", "ended": time.time(), "tail": tail})

    def heartbeat(self) -> None:
        now = time.time()
        self.next_beat = now + heartbeat_seconds()
        for r in self.running:
            if now - r.started < heartbeat_seconds():
                continue
            tail = _tail(r.log)
            record = progress.latest(tail)
            last = next((line.strip() for line in reversed(tail) if line.strip()), "(no output yet)")
            status = progress.describe(record) if record else f"last line: {last[:100]}"
            _say(f"...    {r.step.id:48} {progress.duration(now - r.started):>8}  {status}")

    def stop_all(self) -> None:
        """SIGTERM to every step's process group, SIGKILL to what is left after STOP_GRACE_S."""
        for r in self.running:
            _signal_group(r.proc, signal.SIGTERM)
            _say(f"stop   {r.step.id:48} (SIGTERM)")
        deadline = time.time() + STOP_GRACE_S
        for r in self.running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(timeout=max(0.1, deadline - time.time()))
        for r in self.running:
            _signal_group(r.proc, signal.SIGKILL)  # also children the step left behind
            r.proc.wait()


def _signal_group(proc: subprocess.Popen | warm.WarmProcess, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:  # a warm process before its setsid: no group of its own yet
            os.kill(proc.pid, signum)


def _tail(log: Path) -> list[str]:
    try:
        with log.open("rb") as fh:
            fh.seek(max(0, log.stat().st_size - TAIL_BYTES))
            return fh.read().decode(errors="replace").replace("\r", "\n").splitlines()
    except OSError:
        return []


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
